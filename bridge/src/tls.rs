//! rustls configurations. TLS 1.3 only, ALPN `h2`, the `ring` provider.
//!
//! The server requires a client certificate and checks at the TLS layer only
//! that the client holds its key; which tenant it is, if any, is decided per
//! call by `identity` against the current trust store, so that a node with an
//! unknown certificate can still redeem an invitation and nothing else.

use std::sync::{Arc, Mutex, RwLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use works_certs::{NodeCert, certificates, fingerprint};

use crate::error::BridgeError;

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A node's own certificate chain and key, as presented on both ends.
#[derive(Clone)]
pub struct NodeIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    pub fn from_node_cert(node: &NodeCert) -> Result<NodeIdentity, BridgeError> {
        let chain = certificates(&node.chain_pem).map_err(|e| BridgeError::Tls(e.to_string()))?;
        let key = rustls::pki_types::pem::PemObject::from_pem_slice(node.key_pem.as_bytes())
            .map_err(|e| BridgeError::Tls(format!("node key: {e}")))?;
        Ok(NodeIdentity {
            chain,
            key: Arc::new(key),
        })
    }

    /// The CA at the end of the chain: what peers pin.
    pub fn ca(&self) -> &CertificateDer<'static> {
        self.chain.last().unwrap_or(&self.chain[0])
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

fn tls(e: rustls::Error) -> BridgeError {
    BridgeError::Tls(e.to_string())
}

/// The certificate the bridge server presents, replaced in place when the
/// node's certificate is renewed or its CA rotated.
#[derive(Debug)]
pub struct ServerCert(RwLock<Arc<CertifiedKey>>);

impl ServerCert {
    pub fn new(identity: &NodeIdentity) -> Result<Arc<ServerCert>, BridgeError> {
        Ok(Arc::new(ServerCert(RwLock::new(certified_key(identity)?))))
    }

    pub fn replace(&self, identity: &NodeIdentity) -> Result<(), BridgeError> {
        let key = certified_key(identity)?;
        if let Ok(mut slot) = self.0.write() {
            *slot = key;
        }
        Ok(())
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|k| k.clone())
    }
}

fn certified_key(identity: &NodeIdentity) -> Result<Arc<CertifiedKey>, BridgeError> {
    CertifiedKey::from_der(identity.chain.clone(), identity.key(), &provider())
        .map(Arc::new)
        .map_err(tls)
}

/// The bridge server: TLS 1.3, a client certificate required.
pub fn server_config(cert: Arc<ServerCert>) -> Result<Arc<ServerConfig>, BridgeError> {
    let provider = provider();
    let mut config = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls)?
        .with_client_cert_verifier(Arc::new(RequireClientCert { provider }))
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Dialing a peer whose CAs are pinned: the server must chain to one of
/// `anchors` and name `tenant`.
pub fn client_config_pinned(
    identity: &NodeIdentity,
    anchors: &[CertificateDer<'static>],
) -> Result<Arc<ClientConfig>, BridgeError> {
    let mut roots = RootCertStore::empty();
    for anchor in anchors {
        roots.add(anchor.clone()).map_err(tls)?;
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| BridgeError::Tls(e.to_string()))?;
    client_config(identity, verifier)
}

/// Dialing a node for the first time, from an invitation: its chain must end
/// in a CA with this SHA-256 fingerprint, and the CA it presented is kept in
/// `seen_ca` so the caller can pin it.
pub fn client_config_fingerprint(
    identity: &NodeIdentity,
    expected: &str,
    seen_ca: Arc<Mutex<Option<CertificateDer<'static>>>>,
) -> Result<Arc<ClientConfig>, BridgeError> {
    let verifier = Arc::new(FingerprintVerifier {
        expected: expected.to_ascii_lowercase(),
        seen_ca,
        provider: provider(),
    });
    client_config(identity, verifier)
}

fn client_config(
    identity: &NodeIdentity,
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<Arc<ClientConfig>, BridgeError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(identity.chain.clone(), identity.key())
        .map_err(tls)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Requires a client certificate and proof of its key; trust is decided later.
#[derive(Debug)]
struct RequireClientCert {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for RequireClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| rustls::Error::General(format!("unparseable client certificate: {e}")))?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not accepted".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[derive(Debug)]
struct FingerprintVerifier {
    expected: String,
    seen_ca: Arc<Mutex<Option<CertificateDer<'static>>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for FingerprintVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates.last().ok_or_else(|| {
            rustls::Error::General("the peer sent no CA certificate in its chain".into())
        })?;
        let got = fingerprint(ca);
        if got != self.expected {
            return Err(rustls::Error::General(format!(
                "CA fingerprint mismatch: the invitation says {}, the node presented {got}",
                self.expected
            )));
        }
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        let verified =
            inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        if let Ok(mut slot) = self.seen_ca.lock() {
            *slot = Some(ca.clone().into_owned());
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not accepted".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// All certificates of a PEM text (re-exported for callers that load CA files).
pub fn pem_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, BridgeError> {
    certificates(pem).map_err(|e| BridgeError::Tls(e.to_string()))
}
