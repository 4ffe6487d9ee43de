//! What crosses companies on the relay: the envelope as this node holds
//! it (`Envelope`: a room event with the room after it, a proposal to a
//! room's host, or a host's delivery receipt) and, in `convert`, its
//! protobuf form (`federation.proto`), converted both ways with every id
//! parsed there.
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

/// An envelope on the relay, as this node reads and writes it; its
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
