//! Who is calling: the peer's tenant id, from its verified certificate only.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use works_certs::TenantId;

use crate::tls::provider;

/// The CAs pinned for each peer tenant: one, or two during a CA change-over.
/// A CA is pinned for one tenant only, so a certificate that chains to a
/// pinned CA proves at most one tenant, whatever the order of the pins.
#[derive(Clone, Default)]
pub struct TrustStore {
    pins: Arc<RwLock<BTreeMap<TenantId, Vec<CertificateDer<'static>>>>>,
}

/// Why a CA cannot be pinned for a tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    #[error("a CA in it is already trusted for {0}; one CA belongs to one tenant")]
    TakenBy(TenantId),
    #[error("no CA to pin")]
    Empty,
    #[error("trust store unavailable")]
    Unavailable,
}

/// Why a peer's announcement of its CAs is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnouncementError {
    /// Malformed: no CA, more than two, or not CAs.
    #[error("{0}")]
    Invalid(String),
    /// The announced CAs would not trust the certificate the peer presents
    /// now: taking them would lock it out.
    #[error("{0}")]
    LocksOut(String),
    /// A CA that is not the peer's own, or is trusted for another tenant.
    #[error("{0}")]
    NotOwn(String),
}

impl TrustStore {
    /// Checks the CAs `peer` announces, presenting `chain`: one, or two
    /// during a change-over, each a CA, the chain trusted by them, and only
    /// the peer's own (each issues the certificate it presents now, is one
    /// already trusted for it, or is a CA of its tenant), none trusted for
    /// another tenant. Returns them, parsed.
    pub fn check_announcement(
        &self,
        peer: &TenantId,
        chain: &[CertificateDer<'static>],
        ders: Vec<Vec<u8>>,
    ) -> Result<Vec<CertificateDer<'static>>, AnnouncementError> {
        if ders.is_empty() || ders.len() > 2 {
            return Err(AnnouncementError::Invalid(
                "name one CA, or two during a change-over".into(),
            ));
        }
        let cas: Vec<CertificateDer<'static>> =
            ders.into_iter().map(CertificateDer::from).collect();
        for ca in &cas {
            match works_certs::inspect(ca) {
                Ok(info) if info.is_ca => {}
                Ok(_) => {
                    return Err(AnnouncementError::Invalid(
                        "ca_certificates holds a certificate that is not a CA".into(),
                    ));
                }
                Err(e) => {
                    return Err(AnnouncementError::Invalid(format!(
                        "ca_certificates holds a malformed certificate: {e}"
                    )));
                }
            }
        }
        verify_chain(chain, &cas).map_err(|reason| {
            AnnouncementError::LocksOut(format!(
                "the caller's own certificate does not chain to the announced CAs ({reason}); it would lock itself out"
            ))
        })?;
        let pinned = self.anchors(peer).unwrap_or_default();
        for ca in &cas {
            let own = pinned.contains(ca)
                || verify_chain(chain, std::slice::from_ref(ca)).is_ok()
                || works_certs::inspect(ca)
                    .is_ok_and(|info| info.organization.as_deref() == Some(peer.as_str()));
            if !own {
                return Err(AnnouncementError::NotOwn(format!(
                    "CA sha256 {} is not {peer}'s: it neither issues the caller's certificate nor is a CA of {peer}",
                    works_certs::fingerprint(ca)
                )));
            }
        }
        self.can_pin(peer, &cas)
            .map_err(|e| AnnouncementError::NotOwn(format!("announced CAs refused: {e}")))?;
        Ok(cas)
    }

    pub fn new() -> TrustStore {
        TrustStore::default()
    }

    /// Trusts exactly these CAs for `tenant`, replacing what was pinned,
    /// unless one of them is pinned for another tenant.
    pub fn pin(&self, tenant: TenantId, cas: Vec<CertificateDer<'static>>) -> Result<(), PinError> {
        let mut pins = self.pins.write().map_err(|_| PinError::Unavailable)?;
        check_pin(&pins, &tenant, &cas)?;
        pins.insert(tenant, cas);
        Ok(())
    }

    /// Whether `pin(tenant, cas)` would be accepted now.
    pub fn can_pin(
        &self,
        tenant: &TenantId,
        cas: &[CertificateDer<'static>],
    ) -> Result<(), PinError> {
        let pins = self.pins.read().map_err(|_| PinError::Unavailable)?;
        check_pin(&pins, tenant, cas)
    }

    pub fn unpin(&self, tenant: &TenantId) {
        if let Ok(mut pins) = self.pins.write() {
            pins.remove(tenant);
        }
    }

    pub fn anchors(&self, tenant: &TenantId) -> Option<Vec<CertificateDer<'static>>> {
        self.pins.read().ok()?.get(tenant).cloned()
    }

    pub fn tenants(&self) -> Vec<TenantId> {
        self.pins
            .read()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Resolves a client's certificate chain to the peer tenant it proves:
    /// the tenant it names, when it chains to that tenant's pinned CA.
    /// A chain to another tenant's CA is spoofing. Tenants are tried in
    /// their sorted order, so the answer never depends on iteration order.
    pub fn identify(&self, certs: &PeerCerts) -> Result<TenantId, IdentityError> {
        let pins = self
            .pins
            .read()
            .map_err(|_| IdentityError::Unknown("trust store unavailable".into()))?;
        let Some(leaf) = certs.chain.first() else {
            return Err(IdentityError::Invalid("no certificate".into()));
        };
        let mut closest: Option<IdentityError> = None;
        for (tenant, anchors) in pins.iter().filter(|(t, _)| names(leaf, t)) {
            match verify_chain(&certs.chain, anchors) {
                Ok(()) => return Ok(tenant.clone()),
                Err(ChainError::OtherIssuer) => {}
                Err(ChainError::Invalid(reason)) => closest = Some(IdentityError::Invalid(reason)),
            }
        }
        if let Some(invalid) = closest {
            return Err(invalid);
        }
        for (tenant, anchors) in pins.iter().filter(|(t, _)| !names(leaf, t)) {
            match verify_chain(&certs.chain, anchors) {
                Ok(()) => {
                    return Err(IdentityError::Spoofing {
                        pinned_for: tenant.clone(),
                        names: dns_names(leaf),
                    });
                }
                Err(ChainError::OtherIssuer) => {}
                Err(ChainError::Invalid(reason)) => closest = Some(IdentityError::Invalid(reason)),
            }
        }
        Err(closest.unwrap_or_else(|| {
            IdentityError::Unknown(
                "the certificate is not issued by the CA of any peer of this node".into(),
            )
        }))
    }
}

/// A CA may be pinned for `tenant` only if no other tenant has it.
fn check_pin(
    pins: &BTreeMap<TenantId, Vec<CertificateDer<'static>>>,
    tenant: &TenantId,
    cas: &[CertificateDer<'static>],
) -> Result<(), PinError> {
    if cas.is_empty() {
        return Err(PinError::Empty);
    }
    for (other, anchors) in pins.iter().filter(|(t, _)| *t != tenant) {
        if anchors.iter().any(|a| cas.contains(a)) {
            return Err(PinError::TakenBy(other.clone()));
        }
    }
    Ok(())
}

/// The certificate chain a TLS client presented, attached to each request.
#[derive(Debug, Clone)]
pub struct PeerCerts {
    pub chain: Arc<[CertificateDer<'static>]>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    Unknown(String),
    #[error("the certificate is not valid: {0}")]
    Invalid(String),
    #[error("the certificate chains to the CA pinned for {pinned_for} but names {}", .names.join(", "))]
    Spoofing {
        pinned_for: TenantId,
        names: Vec<String>,
    },
}

/// Why a chain does not verify against a set of anchors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// Another CA issued it: nothing to say about it here.
    #[error("the certificate is issued by another CA")]
    OtherIssuer,
    /// It chains to the anchors but is not valid (expired, not valid yet,
    /// not for client authentication, malformed), or the anchors are.
    #[error("{0}")]
    Invalid(String),
}

/// Checks `chain` (leaf first) against `anchors` for client authentication,
/// with validity dates as of now.
pub fn verify_chain(
    chain: &[CertificateDer<'static>],
    anchors: &[CertificateDer<'static>],
) -> Result<(), ChainError> {
    use rustls::{CertificateError, Error};
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err(ChainError::Invalid("no certificate".into()));
    };
    let mut roots = RootCertStore::empty();
    for anchor in anchors {
        roots
            .add(anchor.clone())
            .map_err(|e| ChainError::Invalid(e.to_string()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| ChainError::Invalid(e.to_string()))?;
    match verifier.verify_client_cert(leaf, intermediates, UnixTime::now()) {
        Ok(_) => Ok(()),
        Err(Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        )) => Err(ChainError::OtherIssuer),
        Err(e) => Err(ChainError::Invalid(invalid_reason(&e))),
    }
}

/// Why a chain that reaches the anchors is refused: the error's name
/// ("Expired", "NotValidYet"), which says what to fix, and what it means.
fn invalid_reason(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(e) = e else {
        return e.to_string();
    };
    let (name, what) = match e {
        C::Expired | C::ExpiredContext { .. } => ("Expired", "its validity period has ended"),
        C::NotValidYet | C::NotValidYetContext { .. } => {
            ("NotValidYet", "its validity period has not begun")
        }
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => (
            "InvalidPurpose",
            "it is not issued for client authentication",
        ),
        C::BadEncoding => ("BadEncoding", "it is malformed"),
        C::Revoked => ("Revoked", "its issuer revoked it"),
        C::UnhandledCriticalExtension => (
            "UnhandledCriticalExtension",
            "it has a critical extension this node does not know",
        ),
        C::UnsupportedSignatureAlgorithmContext { .. }
        | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => (
            "UnsupportedSignatureAlgorithm",
            "it is signed with an algorithm this node does not accept",
        ),
        other => return other.to_string(),
    };
    format!("{name}: {what}")
}

/// Whether the certificate carries `tenant` as a DNS subject alternative name.
pub fn names(leaf: &CertificateDer<'_>, tenant: &TenantId) -> bool {
    dns_names(leaf)
        .iter()
        .any(|n| n.eq_ignore_ascii_case(tenant.as_str()))
}

pub fn dns_names(leaf: &CertificateDer<'_>) -> Vec<String> {
    works_certs::inspect(leaf)
        .map(|info| info.dns_names)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use works_certs::{CA_VALIDITY, NODE_VALIDITY, TenantCa, Validity, certificates};

    fn tenant(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    fn chain_of(ca: &TenantCa, name: &str, validity: Validity) -> PeerCerts {
        let node = ca.issue_node(&tenant(name), &[], validity).unwrap();
        PeerCerts {
            chain: certificates(&node.chain_pem).unwrap().into(),
        }
    }

    #[test]
    fn identity_comes_from_the_pinned_ca_and_the_san() {
        let a = TenantCa::generate(&tenant("a.example"), Validity::from_now(CA_VALIDITY)).unwrap();
        let b = TenantCa::generate(&tenant("b.example"), Validity::from_now(CA_VALIDITY)).unwrap();
        let trust = TrustStore::new();
        trust
            .pin(tenant("a.example"), vec![a.der().clone()])
            .unwrap();

        let good = chain_of(&a, "a.example", Validity::from_now(NODE_VALIDITY));
        assert_eq!(trust.identify(&good).unwrap(), tenant("a.example"));

        let spoof = chain_of(&a, "c.example", Validity::from_now(NODE_VALIDITY));
        assert!(matches!(
            trust.identify(&spoof),
            Err(IdentityError::Spoofing { .. })
        ));

        let stranger = chain_of(&b, "b.example", Validity::from_now(NODE_VALIDITY));
        assert!(matches!(
            trust.identify(&stranger),
            Err(IdentityError::Unknown(_))
        ));

        let past = Validity {
            not_before: std::time::SystemTime::now() - std::time::Duration::from_secs(7200),
            not_after: std::time::SystemTime::now() - std::time::Duration::from_secs(3600),
        };
        let expired = chain_of(&a, "a.example", past);
        let err = trust.identify(&expired).unwrap_err().to_string();
        assert!(err.contains("Expired"), "{err}");

        // Two anchors during a CA change-over: both are accepted.
        let a2 = TenantCa::generate(&tenant("a.example"), Validity::from_now(CA_VALIDITY)).unwrap();
        trust
            .pin(tenant("a.example"), vec![a.der().clone(), a2.der().clone()])
            .unwrap();
        let rotated = chain_of(&a2, "a.example", Validity::from_now(NODE_VALIDITY));
        assert_eq!(trust.identify(&rotated).unwrap(), tenant("a.example"));
        assert_eq!(trust.identify(&good).unwrap(), tenant("a.example"));

        trust.unpin(&tenant("a.example"));
        assert!(trust.identify(&good).is_err());
    }

    #[test]
    fn one_ca_proves_one_tenant_whatever_the_order_of_the_pins() {
        let a = TenantCa::generate(&tenant("a.example"), Validity::from_now(CA_VALIDITY)).unwrap();
        let c = TenantCa::generate(&tenant("c.example"), Validity::from_now(CA_VALIDITY)).unwrap();
        let trust = TrustStore::new();
        trust
            .pin(tenant("c.example"), vec![c.der().clone()])
            .unwrap();
        // a.example announces c.example's CA beside its own: refused.
        assert_eq!(
            trust.pin(tenant("a.example"), vec![a.der().clone(), c.der().clone()]),
            Err(PinError::TakenBy(tenant("c.example")))
        );
        trust
            .pin(tenant("a.example"), vec![a.der().clone()])
            .unwrap();
        // Pinned again for the same tenant (a renewal): accepted.
        trust
            .pin(tenant("c.example"), vec![c.der().clone()])
            .unwrap();
        let genuine_c = chain_of(&c, "c.example", Validity::from_now(NODE_VALIDITY));
        assert_eq!(trust.identify(&genuine_c).unwrap(), tenant("c.example"));
        let c_naming_a = chain_of(&c, "a.example", Validity::from_now(NODE_VALIDITY));
        assert!(matches!(
            trust.identify(&c_naming_a),
            Err(IdentityError::Spoofing { pinned_for, .. }) if pinned_for == tenant("c.example")
        ));
        assert_eq!(
            trust.pin(tenant("b.example"), Vec::new()),
            Err(PinError::Empty)
        );
    }
}
