//! What crosses companies on the relay, as this node holds it (`Message`):
//! a room's envelope (`Envelope`: a room event with the room after it, a
//! proposal to a room's host, or a host's delivery receipt) or a control
//! message (`ControlMessage`: reachability, a profile, the sender's CAs);
//! and, in `convert`, its protobuf form (`federation.proto`), converted
//! both ways with every id parsed there.
//!
//! `status` maps errors across the peer boundary, both ways.
//!
//! Both the outbox (which queues and sends envelopes) and the federation
//! edge (which reads what peers relay) use it; it uses neither.
//!
//! **Invariant:** nothing crosses companies as serde: outbox rows keep the
//! envelope as JSON (a storage format, read back only by this node), the
//! wire carries protobuf only.

pub mod convert;
pub mod status;

use serde::{Deserialize, Serialize};

use crate::ids::{EventId, MemberId, RoomId, TenantId};
use crate::model::{EventBody, RoomKind};
use crate::store::outbox::OutboxState;

pub use convert::WireError;
pub(crate) use convert::outgoing;

/// What one relayed envelope carries: about a room, or about the sender's
/// node and members.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum Message {
    Room(Envelope),
    Control(ControlMessage),
}

/// A control message: it changes what the receiving node shows or trusts
/// of the sender, outside any room. It travels in the sender's outbox, in
/// order with room events, and is applied once, by its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlMessage {
    pub id: EventId,
    /// The sender's tenant, as the envelope says (the gate compares it
    /// with the verified caller).
    pub from: TenantId,
    pub at_ms: i64,
    pub control: Control,
}

/// What a control message says. Outbox rows hold it as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "control", rename_all = "snake_case")]
pub enum Control {
    /// Some of the sender's members (all of them, when `members` is empty)
    /// became unknown to the receiver, or reachable again.
    Reachability {
        #[serde(with = "crate::model::member_ids")]
        members: Vec<MemberId>,
        reachable: bool,
    },
    /// A member of the sender changed their public profile (or the company
    /// its name), for the receiver's members in `holders`, each of whom the
    /// sender's half of admission admits with that member.
    Profile {
        profile: Profile,
        #[serde(with = "crate::model::member_ids")]
        holders: Vec<MemberId>,
    },
    /// The sender's CAs from now on (DER): one, or two during a change-over.
    Cas {
        #[serde(with = "base64_list")]
        cas: Vec<Vec<u8>>,
    },
}

impl Control {
    /// What the message is about, for a newer one to replace an older one
    /// still queued: a member's profile; the CAs. A reachability notice
    /// replaces none (each says something of its own members).
    pub fn topic(&self) -> Option<String> {
        match self {
            Control::Reachability { .. } => None,
            Control::Profile { profile, .. } => Some(format!("profile:{}", profile.user)),
            Control::Cas { .. } => Some(CAS_TOPIC.to_string()),
        }
    }
}

/// The topic of CA announcements.
pub const CAS_TOPIC: &str = "cas";

/// A member's public profile as it travels to another company.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(with = "crate::model::member_id")]
    pub user: MemberId,
    pub display_name: String,
    /// Encoded image bytes; empty for none.
    #[serde(with = "base64_bytes")]
    pub photo: Vec<u8>,
    pub photo_content_type: String,
    /// The company name, the fixed status shown to other companies.
    pub company: String,
}

impl From<works_bridge::PublicProfile> for Profile {
    fn from(p: works_bridge::PublicProfile) -> Self {
        Profile {
            user: p.user,
            display_name: p.display_name,
            photo: p.photo,
            photo_content_type: p.photo_content_type,
            company: p.company,
        }
    }
}

/// Bytes as base64 in stored JSON.
mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        STANDARD
            .decode(String::deserialize(d)?)
            .map_err(de::Error::custom)
    }
}

/// A list of byte strings as base64 in stored JSON.
mod base64_list {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(items: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(items.len()))?;
        for item in items {
            seq.serialize_element(&STANDARD.encode(item))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|text| STANDARD.decode(text).map_err(de::Error::custom))
            .collect()
    }
}

/// A room's envelope on the relay, as this node reads and writes it; its
/// protobuf form is `convert`'s business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub event_id: EventId,
    /// The node that hosts the room.
    pub host: TenantId,
    pub room: RoomId,
    /// The host's seq; 0 for a change proposed to the host.
    pub host_seq: u64,
    pub at_ms: i64,
    pub payload: Payload,
}

/// What an envelope carries: a room event, or a host's delivery receipt for
/// a message whose sender is on the receiving node. Outbox rows hold it as
/// JSON. Held one per envelope in hand, so a receipt's small size is no
/// saving worth a box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)]
pub enum Payload {
    Receipt { receipt: Vec<ReceiptEntry> },
    Event(Relayed),
}

/// One participating node's answer, as a host reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptEntry {
    #[serde(with = "crate::model::tenant_id")]
    pub tenant: TenantId,
    pub state: OutboxState,
    #[serde(default)]
    pub reason: Option<String>,
}

/// The event inside an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relayed {
    #[serde(with = "crate::model::member_id")]
    pub sender: MemberId,
    pub body: EventBody,
    /// The room after the change, on every event that changes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<Snapshot>,
}

/// A room as its host has it after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub kind: RoomKind,
    pub name: String,
    #[serde(default, with = "crate::model::optional_member_id")]
    pub master: Option<MemberId>,
    #[serde(with = "crate::model::member_ids")]
    pub members: Vec<MemberId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outbox rows and events written before the ids were typed read, and
    /// are written again byte for byte.
    #[test]
    fn stored_json_reads_and_writes_as_before() {
        let rows = [
            r#"{"sender":"bob@b.example","body":{"kind":"text","text":"hi"}}"#,
            r#"{"sender":"bob@b.example","body":{"kind":"created","room_kind":"group","name":"Launch","members":["bob@b.example","alice@a.example"]},"room":{"kind":"group","name":"Launch","master":"bob@b.example","members":["bob@b.example","alice@a.example"]}}"#,
            r#"{"sender":"bob@b.example","body":{"kind":"left"},"room":{"kind":"direct","name":"","master":null,"members":["alice@a.example"]}}"#,
            r#"{"sender":"bob@b.example","body":{"kind":"left","new_master":"alice@a.example"}}"#,
            r#"{"sender":"bob@b.example","body":{"kind":"removed","member":"alice@a.example"}}"#,
            r#"{"sender":"bob@b.example","body":{"kind":"joined","members":["carol@a.example"]}}"#,
            r#"{"receipt":[{"tenant":"a.example","state":"delivered","reason":null},{"tenant":"c.example","state":"refused","reason":"no"}]}"#,
            r#"{"receipt":[]}"#,
        ];
        for row in rows {
            let payload: Payload = serde_json::from_str(row).expect(row);
            assert_eq!(serde_json::to_string(&payload).unwrap(), row);
        }
        // Control messages, as outbox rows hold them.
        for row in [
            r#"{"control":"reachability","members":["bob@b.example"],"reachable":false}"#,
            r#"{"control":"profile","profile":{"user":"bob@b.example","display_name":"Bob","photo":"AAH/","photo_content_type":"image/png","company":"Globex"},"holders":["alice@a.example"]}"#,
            r#"{"control":"cas","cas":["AQID"]}"#,
        ] {
            let control: Control = serde_json::from_str(row).expect(row);
            assert_eq!(serde_json::to_string(&control).unwrap(), row);
        }
        let event: EventBody =
            serde_json::from_str(r#"{"kind":"joined","members":["carol@a.example"]}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"kind":"joined","members":["carol@a.example"]}"#
        );
        // What no longer parses is refused, never defaulted.
        for bad in [
            r#"{"sender":"bob","body":{"kind":"text","text":"hi"}}"#,
            r#"{"receipt":[{"tenant":"a.example","state":"lost","reason":null}]}"#,
        ] {
            assert!(serde_json::from_str::<Payload>(bad).is_err(), "{bad}");
        }
    }
}
