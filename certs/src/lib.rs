//! PKI for tenant nodes.
//!
//! Each company has its own CA. A node certificate is issued by it, carries the
//! tenant id as a DNS subject alternative name, and serves both ends of the
//! bridge (server and client authentication). Peers pin a company's CA by its
//! SHA-256 fingerprint. Rotation issues a new CA and node certificate while
//! peers hold both CAs for a change-over period.
//!
//! Private keys are written with mode 0600 and never logged.
#![forbid(unsafe_code)]

mod files;
mod tenant;

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};

pub use files::{NodeTlsFiles, write_private};
pub use tenant::{TenantId, TenantIdError};

/// Default lifetimes: a CA for ten years, a node certificate for one.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
pub const NODE_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("no certificate in PEM input")]
    NoCertificate,
    #[error("malformed PEM: {0}")]
    Pem(String),
    #[error("malformed certificate: {0}")]
    Parse(String),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// From an hour ago (tolerating clock skew) for `lifetime`.
    pub fn from_now(lifetime: Duration) -> Validity {
        let now = SystemTime::now();
        Validity {
            not_before: now - Duration::from_secs(3600),
            not_after: now + lifetime,
        }
    }

    fn apply(&self, params: &mut CertificateParams) {
        params.not_before = self.not_before.into();
        params.not_after = self.not_after.into();
    }
}

/// A company's certificate authority.
pub struct TenantCa {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

/// A node certificate: the chain (node certificate, then the CA) and its key.
#[derive(Clone)]
pub struct NodeCert {
    pub chain_pem: String,
    pub key_pem: String,
}

impl TenantCa {
    pub fn generate(tenant: &TenantId, validity: Validity) -> Result<TenantCa, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, format!("{tenant} tenant CA"));
        name.push(DnType::OrganizationName, tenant.as_str());
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial());
        validity.apply(&mut params);
        let cert = params.self_signed(&key)?;
        Ok(TenantCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        })
    }

    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<TenantCa, CertError> {
        let der = first_certificate(cert_pem)?;
        KeyPair::from_pem(key_pem)?;
        Ok(TenantCa {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            der,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.der)
    }

    /// Issues a node certificate naming `tenant` (plus any extra host names or
    /// IP addresses), good for both server and client authentication.
    ///
    /// The CA does not refuse another tenant's name: a peer must, and tests
    /// use this to build spoofing certificates.
    pub fn issue_node(
        &self,
        tenant: &TenantId,
        extra_hosts: &[String],
        validity: Validity,
    ) -> Result<NodeCert, CertError> {
        let key = KeyPair::generate()?;
        let mut names = vec![tenant.to_string()];
        names.extend(extra_hosts.iter().cloned());
        let mut params = CertificateParams::new(names)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, tenant.as_str());
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        validity.apply(&mut params);
        let ca_key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::from_ca_cert_der(&self.der, ca_key)?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(NodeCert {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
        })
    }
}

fn random_serial() -> rcgen::SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive and non-zero, as RFC 5280 asks.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    rcgen::SerialNumber::from_slice(&bytes)
}

/// The SHA-256 fingerprint of a DER certificate, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    sha256_hex(der)
}

/// The SHA-256 digest of `bytes`, lowercase hex: how every crate of the
/// workspace writes one (fingerprints, file checksums, stored secrets).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Every certificate in a PEM text, in order.
pub fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(CertError::NoCertificate);
    }
    Ok(certs)
}

pub fn first_certificate(pem: &str) -> Result<CertificateDer<'static>, CertError> {
    certificates(pem)?
        .into_iter()
        .next()
        .ok_or(CertError::NoCertificate)
}

/// A DER certificate as PEM text.
pub fn to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// What a peer needs to know of a certificate.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub dns_names: Vec<String>,
    pub is_ca: bool,
    /// The subject's organization: a tenant CA's own tenant.
    pub organization: Option<String>,
}

pub fn inspect(der: &[u8]) -> Result<CertInfo, CertError> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertError::Parse(e.to_string()))?;
    let to_system = |t: ASN1Time| {
        let secs = t.timestamp();
        if secs >= 0 {
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            SystemTime::UNIX_EPOCH
        }
    };
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(n) = name {
                dns_names.push(n.to_string());
            }
        }
    }
    Ok(CertInfo {
        not_before: to_system(cert.validity().not_before),
        not_after: to_system(cert.validity().not_after),
        dns_names,
        is_ca: cert.is_ca(),
        organization: cert
            .subject()
            .iter_organization()
            .next()
            .and_then(|o| o.as_str().ok())
            .map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    #[test]
    fn node_certificates_name_the_tenant_and_chain_to_the_ca() {
        let ca =
            TenantCa::generate(&tenant("acme.example"), Validity::from_now(CA_VALIDITY)).unwrap();
        let node = ca
            .issue_node(
                &tenant("acme.example"),
                &["localhost".into()],
                Validity::from_now(NODE_VALIDITY),
            )
            .unwrap();
        let chain = certificates(&node.chain_pem).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1], *ca.der());
        let info = inspect(&chain[0]).unwrap();
        assert_eq!(info.dns_names, vec!["acme.example", "localhost"]);
        assert!(!info.is_ca);
        assert!(inspect(ca.der()).unwrap().is_ca);
        assert!(info.not_after > SystemTime::now() + Duration::from_secs(364 * 24 * 3600));
    }

    #[test]
    fn a_ca_reloads_from_pem_and_keeps_its_fingerprint() {
        let ca =
            TenantCa::generate(&tenant("acme.example"), Validity::from_now(CA_VALIDITY)).unwrap();
        let again = TenantCa::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        assert_eq!(again.fingerprint(), ca.fingerprint());
        assert_eq!(ca.fingerprint().len(), 64);
        let other =
            TenantCa::generate(&tenant("acme.example"), Validity::from_now(CA_VALIDITY)).unwrap();
        assert_ne!(other.fingerprint(), ca.fingerprint());
    }

    #[test]
    fn pem_round_trip() {
        let ca =
            TenantCa::generate(&tenant("acme.example"), Validity::from_now(CA_VALIDITY)).unwrap();
        assert_eq!(first_certificate(&to_pem(ca.der())).unwrap(), *ca.der());
        assert!(matches!(
            certificates("nothing here"),
            Err(CertError::NoCertificate)
        ));
    }

    #[test]
    fn validity_can_lie_in_the_past() {
        let ca =
            TenantCa::generate(&tenant("acme.example"), Validity::from_now(CA_VALIDITY)).unwrap();
        let past = Validity {
            not_before: SystemTime::now() - Duration::from_secs(7200),
            not_after: SystemTime::now() - Duration::from_secs(3600),
        };
        let node = ca.issue_node(&tenant("acme.example"), &[], past).unwrap();
        let info = inspect(&certificates(&node.chain_pem).unwrap()[0]).unwrap();
        assert!(info.not_after < SystemTime::now());
    }
}
