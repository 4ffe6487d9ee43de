//! What each fuzz target checks. `tests/it/properties.rs` includes this file too
//! and replays every input kept in `fuzz/regressions/<target>/` through
//! [`replay`], so a crash once found stays fixed on stable Rust.
//!
//! Each check takes bytes or text that another company's node (or whoever
//! holds an invitation link) controls, runs it through the node's own
//! decoders and parsers, and panics only on a defect:
//! - a decoder or parser that panics;
//! - a message whose re-encoding does not decode to the same message;
//! - a parsed id that does not round-trip, or has two spellings;
//! - a relayed envelope that the node's wire module reads but that does not
//!   convert back to protobuf and read again as itself;
//! - a member id whose tenant is not the one the bridge compares with the
//!   caller's certificate (the text after the last `@`): that would let a
//!   peer speak for another company's member;
//! - an invitation link that verifies under a key its author never had.
#![forbid(unsafe_code)]

use std::fmt::Debug;
use std::sync::OnceLock;

use prost::Message;
use rustls::pki_types::CertificateDer;
use tenant_node::contacts::invitations::{parse_link, sign_link};
use tenant_node::ids::{EventId, MemberId, RoomId, TenantId};
use works_bridge::identity;
use works_proto::federation::v1 as pb;

/// Every target, as named in `fuzz/Cargo.toml` and under `fuzz/regressions/`.
pub const TARGETS: &[&str] = &[
    "invitation_link",
    "redeem_request",
    "ping_request",
    "public_profile",
    "friend_request",
    "friend_answer",
    "lookup_user_request",
    "envelope_batch",
    "envelope",
    "relayed_envelope",
];

/// A key the input's author cannot know: no input may verify under it
/// unless this module signed it.
const UNKNOWN_KEY: &[u8] = b"a key no fuzz input was signed with";

/// Runs `target`'s check on `data`; false if there is no such target.
pub fn replay(target: &str, data: &[u8]) -> bool {
    match target {
        "invitation_link" => invitation_link(data),
        "redeem_request" => redeem_request(data),
        "ping_request" => ping_request(data),
        "public_profile" => public_profile(data),
        "friend_request" => friend_request(data),
        "friend_answer" => friend_answer(data),
        "lookup_user_request" => lookup_user_request(data),
        "envelope_batch" => envelope_batch(data),
        "envelope" => envelope(data),
        "relayed_envelope" => relayed_envelope(data),
        _ => return false,
    }
    true
}

/// An invitation link as a holder pastes it (any bytes, read as UTF-8).
pub fn invitation_link(data: &[u8]) {
    link(&String::from_utf8_lossy(data));
}

pub fn redeem_request(data: &[u8]) {
    let Some(request) = decode::<pb::RedeemRequest>(data) else {
        return;
    };
    tenant(&request.tenant);
    certificates(std::slice::from_ref(&request.ca_certificate));
}

pub fn ping_request(data: &[u8]) {
    let Some(request) = decode::<pb::PingRequest>(data) else {
        return;
    };
    tenant(&request.from_tenant);
}

pub fn public_profile(data: &[u8]) {
    let Some(profile) = decode::<pb::PublicProfile>(data) else {
        return;
    };
    member(&profile.user);
}

pub fn friend_request(data: &[u8]) {
    let Some(request) = decode::<pb::FriendRequest>(data) else {
        return;
    };
    member(&request.from);
    member(&request.to);
    if let Some(profile) = &request.from_profile {
        member(&profile.user);
    }
    if !request.invitation.is_empty() {
        link(&request.invitation);
    }
}

pub fn friend_answer(data: &[u8]) {
    let Some(answer) = decode::<pb::FriendAnswer>(data) else {
        return;
    };
    member(&answer.from);
    member(&answer.to);
    if let Some(profile) = &answer.from_profile {
        member(&profile.user);
    }
}

pub fn lookup_user_request(data: &[u8]) {
    let Some(request) = decode::<pb::LookupUserRequest>(data) else {
        return;
    };
    member(&request.requester);
    member(&request.user);
}

pub fn envelope_batch(data: &[u8]) {
    let Some(batch) = decode::<pb::EnvelopeBatch>(data) else {
        return;
    };
    batch.envelopes.iter().for_each(envelope_fields);
}

pub fn envelope(data: &[u8]) {
    if let Some(envelope) = decode::<pb::Envelope>(data) {
        envelope_fields(&envelope);
    }
}

/// An envelope read as the receiving gate reads it (bounded in size, then
/// converted by `wire`), its event checked against the limits
/// our own members are held to: none of it may panic, and an envelope that
/// reads converts back to protobuf, which reads as the same envelope and
/// converts back to the same protobuf (the ids in their one spelling).
pub fn relayed_envelope(data: &[u8]) {
    use tenant_node::federation::inbound::{Read, read_envelope};
    use tenant_node::wire::{Control, Message, Payload};
    let limits = tenant_node::config::Limits::default();
    let Some(envelope) = decode::<pb::Envelope>(data) else {
        return;
    };
    let Ok(Read::Known(read)) = read_envelope(envelope, &limits) else {
        return;
    };
    match &read {
        Message::Room(envelope) => {
            if let Payload::Event(relayed) = &envelope.payload {
                let _ = tenant_node::rooms::content::event(&relayed.body, &limits);
                member(relayed.sender.as_str());
            }
        }
        Message::Control(message) => match &message.control {
            Control::Reachability { members, .. } => {
                members.iter().for_each(|m| member(m.as_str()))
            }
            Control::Profile { profile, holders } => {
                member(profile.user.as_str());
                holders.iter().for_each(|m| member(m.as_str()));
            }
            Control::Cas { cas } => certificates(cas),
        },
    }
    let wire = pb::Envelope::try_from(&read).expect("an envelope that reads converts back");
    let again = Message::try_from(wire.clone()).expect("an envelope this node wrote reads");
    assert_eq!(again, read, "an envelope reads back as itself");
    assert_eq!(
        pb::Envelope::try_from(&again).expect("an envelope that reads converts back"),
        wire,
        "an envelope converts back to the same protobuf"
    );
}

/// Decodes `M` as the bridge does; a message that decodes must re-encode
/// to bytes that decode to the same message.
fn decode<M: Message + Default + PartialEq + Debug>(data: &[u8]) -> Option<M> {
    let message = M::decode(data).ok()?;
    let encoded = message.encode_to_vec();
    assert_eq!(encoded.len(), message.encoded_len());
    let again = M::decode(encoded.as_slice()).expect("a re-encoded message decodes");
    assert_eq!(again, message, "a re-encoded message decodes to itself");
    Some(message)
}

fn tenant(text: &str) {
    let Ok(tenant) = TenantId::parse(text) else {
        return;
    };
    assert_eq!(
        TenantId::parse(tenant.as_str()).ok().as_ref(),
        Some(&tenant)
    );
    assert_eq!(tenant.as_str(), text.trim().to_ascii_lowercase());
}

fn member(text: &str) {
    let Ok(member) = MemberId::parse(text) else {
        return;
    };
    assert_eq!(
        MemberId::parse(member.as_str()).ok().as_ref(),
        Some(&member)
    );
    assert_eq!(member.to_string(), member.as_str());
    assert_eq!(
        format!("{}@{}", member.name(), member.tenant()),
        member.as_str()
    );
    assert!(!member.as_str().bytes().any(|b| b.is_ascii_uppercase()));
    // The bridge checks a claimed member by the text after its last '@'.
    let claimed = text
        .rsplit_once('@')
        .and_then(|(_, tenant)| TenantId::parse(tenant).ok());
    assert_eq!(claimed.as_ref(), Some(member.tenant()), "{text:?}");
}

fn envelope_fields(envelope: &pb::Envelope) {
    tenant(&envelope.host);
    if let Ok(id) = EventId::parse(&envelope.event_id) {
        assert_eq!(
            id.to_string(),
            envelope.event_id.trim().to_ascii_uppercase()
        );
        assert_eq!(EventId::parse(&id.to_string()), Ok(id));
    }
    if let Ok(id) = RoomId::parse(&envelope.room_id) {
        assert_eq!(id.to_string(), envelope.room_id.trim().to_ascii_uppercase());
        assert_eq!(RoomId::parse(&id.to_string()), Ok(id));
    }
}

/// CA certificates a peer presents: inspected as the bridge does, then used
/// as trust anchors for a real node certificate (which none of them signed).
fn certificates(ders: &[Vec<u8>]) {
    let anchors: Vec<CertificateDer<'static>> = ders
        .iter()
        .map(|der| CertificateDer::from(der.clone()))
        .collect();
    for anchor in &anchors {
        if works_certs::inspect(anchor).is_ok() {
            identity::dns_names(anchor);
        }
    }
    if !anchors.is_empty() {
        let verified = identity::verify_chain(std::slice::from_ref(node_certificate()), &anchors);
        assert!(
            verified.is_err(),
            "a stranger's CA verified our certificate"
        );
    }
}

/// A node certificate from a CA made here, which no input can hold.
fn node_certificate() -> &'static CertificateDer<'static> {
    static CERT: OnceLock<CertificateDer<'static>> = OnceLock::new();
    CERT.get_or_init(|| {
        let tenant = TenantId::parse("fuzz.example").expect("a valid tenant id");
        let validity = works_certs::Validity::from_now(std::time::Duration::from_secs(86_400));
        let ca = works_certs::TenantCa::generate(&tenant, validity).expect("a CA");
        let validity = works_certs::Validity::from_now(std::time::Duration::from_secs(86_400));
        let node = ca
            .issue_node(&tenant, &[], validity)
            .expect("a node certificate");
        works_certs::first_certificate(&node.chain_pem).expect("a PEM certificate")
    })
}

/// An invitation link: parsing never panics, the issuer is a valid member id,
/// no input verifies under a key it was not signed with, and the claims
/// re-sign to a link that parses back to them.
fn link(text: &str) {
    let Ok(parsed) = parse_link(text) else {
        return;
    };
    assert_eq!(
        MemberId::parse(&parsed.claims.issuer).ok().as_ref(),
        Some(&parsed.issuer)
    );
    assert!(!parsed.signed_with(UNKNOWN_KEY).expect("hmac takes any key"));
    let resigned = sign_link(UNKNOWN_KEY, &parsed.claims).expect("claims serialise");
    let again = parse_link(&resigned).expect("a signed link parses");
    assert_eq!(again.claims, parsed.claims);
    assert!(again.signed_with(UNKNOWN_KEY).expect("hmac takes any key"));
}
