//! A node's TLS files in its data directory: `tls/ca.pem`, `tls/ca.key`,
//! `tls/node.pem` (chain), `tls/node.key`; during a CA change-over also
//! `tls/ca.prev.pem` and the previous node certificate,
//! `tls/node.prev.pem` and `tls/node.prev.key`. Keys are written 0600.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{CertError, NodeCert, TenantCa, TenantId, Validity};

pub struct NodeTlsFiles {
    dir: PathBuf,
}

impl NodeTlsFiles {
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        NodeTlsFiles { dir: dir.into() }
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    /// The CA being retired during a change-over, while peers still trust it.
    pub fn previous_ca_cert(&self) -> PathBuf {
        self.dir.join("ca.prev.pem")
    }
    /// The node certificate of the CA being retired, presented to a peer
    /// until it has heard of the new CA.
    pub fn previous_node_chain(&self) -> PathBuf {
        self.dir.join("node.prev.pem")
    }
    pub fn previous_node_key(&self) -> PathBuf {
        self.dir.join("node.prev.key")
    }
    pub fn node_chain(&self) -> PathBuf {
        self.dir.join("node.pem")
    }
    pub fn node_key(&self) -> PathBuf {
        self.dir.join("node.key")
    }

    pub fn exist(&self) -> bool {
        self.ca_cert().exists() && self.node_chain().exists() && self.node_key().exists()
    }

    /// Mints a new CA and a node certificate for `tenant` and writes them.
    pub fn create(
        &self,
        tenant: &TenantId,
        hosts: &[String],
    ) -> Result<(TenantCa, NodeCert), CertError> {
        let ca = TenantCa::generate(tenant, Validity::from_now(crate::CA_VALIDITY))?;
        let node = ca.issue_node(tenant, hosts, Validity::from_now(crate::NODE_VALIDITY))?;
        self.write(&ca, &node)?;
        Ok((ca, node))
    }

    pub fn write(&self, ca: &TenantCa, node: &NodeCert) -> Result<(), CertError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| io(&self.dir, source))?;
        write_public(&self.ca_cert(), ca.cert_pem())?;
        write_private(&self.ca_key(), ca.key_pem())?;
        write_public(&self.node_chain(), &node.chain_pem)?;
        write_private(&self.node_key(), &node.key_pem)?;
        Ok(())
    }

    /// Starts a CA change-over: the current CA is kept as the previous one,
    /// a new CA and node certificate replace the current ones.
    pub fn rotate(
        &self,
        tenant: &TenantId,
        hosts: &[String],
    ) -> Result<(TenantCa, NodeCert), CertError> {
        let old = read(&self.ca_cert())?;
        let old_node = self.load_node()?;
        let ca = TenantCa::generate(tenant, Validity::from_now(crate::CA_VALIDITY))?;
        let node = ca.issue_node(tenant, hosts, Validity::from_now(crate::NODE_VALIDITY))?;
        write_public(&self.previous_ca_cert(), &old)?;
        write_public(&self.previous_node_chain(), &old_node.chain_pem)?;
        write_private(&self.previous_node_key(), &old_node.key_pem)?;
        self.write(&ca, &node)?;
        Ok((ca, node))
    }

    /// Ends a change-over: the previous CA is forgotten.
    pub fn retire_previous(&self) -> Result<(), CertError> {
        for path in [
            self.previous_node_key(),
            self.previous_node_chain(),
            self.previous_ca_cert(),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(io(&path, source)),
            }
        }
        Ok(())
    }

    /// The previous node certificate during a change-over, if kept.
    pub fn load_previous_node(&self) -> Result<Option<NodeCert>, CertError> {
        if !self.previous_node_chain().exists() {
            return Ok(None);
        }
        Ok(Some(NodeCert {
            chain_pem: read(&self.previous_node_chain())?,
            key_pem: read(&self.previous_node_key())?,
        }))
    }

    pub fn load_previous_ca(&self) -> Result<Option<String>, CertError> {
        match std::fs::read_to_string(self.previous_ca_cert()) {
            Ok(pem) => Ok(Some(pem)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(io(&self.previous_ca_cert(), source)),
        }
    }

    /// Re-issues the node certificate from the current CA (renewal).
    pub fn renew_node(&self, tenant: &TenantId, hosts: &[String]) -> Result<NodeCert, CertError> {
        let ca = self.load_ca()?;
        let node = ca.issue_node(tenant, hosts, Validity::from_now(crate::NODE_VALIDITY))?;
        write_public(&self.node_chain(), &node.chain_pem)?;
        write_private(&self.node_key(), &node.key_pem)?;
        Ok(node)
    }

    pub fn load_ca(&self) -> Result<TenantCa, CertError> {
        TenantCa::from_pem(&read(&self.ca_cert())?, &read(&self.ca_key())?)
    }

    pub fn load_node(&self) -> Result<NodeCert, CertError> {
        Ok(NodeCert {
            chain_pem: read(&self.node_chain())?,
            key_pem: read(&self.node_key())?,
        })
    }
}

fn io(path: &Path, source: std::io::Error) -> CertError {
    CertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| io(path, source))
}

fn write_public(path: &Path, text: &str) -> Result<(), CertError> {
    std::fs::write(path, text).map_err(|source| io(path, source))
}

/// Writes a secret readable by its owner only (0600), replacing any old file.
pub fn write_private(path: &Path, text: &str) -> Result<(), CertError> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(|source| io(&tmp, source))?;
    file.write_all(text.as_bytes())
        .map_err(|source| io(&tmp, source))?;
    file.sync_all().map_err(|source| io(&tmp, source))?;
    std::fs::rename(&tmp, path).map_err(|source| io(path, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_private_and_files_reload() {
        let dir = tempfile::tempdir().unwrap();
        let files = NodeTlsFiles::in_dir(dir.path().join("tls"));
        let tenant = TenantId::parse("acme.example").unwrap();
        let (ca, node) = files.create(&tenant, &[]).unwrap();
        assert!(files.exist());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for key in [files.ca_key(), files.node_key()] {
                let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", key.display());
            }
        }
        assert_eq!(files.load_ca().unwrap().fingerprint(), ca.fingerprint());
        assert_eq!(files.load_node().unwrap().chain_pem, node.chain_pem);

        let (new_ca, _) = files.rotate(&tenant, &[]).unwrap();
        assert_ne!(new_ca.fingerprint(), ca.fingerprint());
        assert_eq!(
            files.load_previous_ca().unwrap().as_deref(),
            Some(ca.cert_pem())
        );
        assert_eq!(files.load_ca().unwrap().fingerprint(), new_ca.fingerprint());
        let renewed = files.renew_node(&tenant, &[]).unwrap();
        assert_eq!(
            crate::certificates(&renewed.chain_pem).unwrap()[1],
            *new_ca.der()
        );
        files.retire_previous().unwrap();
        assert!(files.load_previous_ca().unwrap().is_none());
    }
}
