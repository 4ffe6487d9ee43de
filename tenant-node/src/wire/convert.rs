//! The relay's wire format: the protobuf `Envelope` of `federation.proto`
//! to and from the node's own `wire::Message` (a room's `Envelope` or a
//! `ControlMessage`), both ways, with every id
//! parsed here. A field that does not parse is refused with its name; an
//! envelope that carries no payload this node knows, or an enum value it
//! does not know (both what a newer node may send), is `WireError::Unknown`,
//! which the receiving gate answers with retry.

use works_proto::federation::v1 as pb;
use works_proto::federation::v1::envelope::Payload as PbPayload;

use super::{
    Control, ControlMessage, Envelope, Message, Payload, Profile, ReceiptEntry, Relayed, Snapshot,
};
use crate::error::Error;
use crate::ids::{EventId, MemberId, RoomId, TenantId};
use crate::model::{AttachmentMeta, EventBody, RoomKind};
use crate::store::outbox::{OutboxRow, OutboxState};

/// Why an envelope cannot be read (or written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A field that does not hold what it must: refused for good.
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A kind this node does not know: not refused, as a newer node may
    /// send it; the envelope waits at the sender.
    #[error(
        "unknown kind of {field} ({detail}); the envelope stays queued at the sender until this node knows it"
    )]
    Unknown { field: &'static str, detail: String },
}

fn invalid(field: &'static str, reason: impl ToString) -> WireError {
    WireError::Invalid {
        field,
        reason: reason.to_string(),
    }
}

fn member(field: &'static str, text: &str) -> Result<MemberId, WireError> {
    MemberId::parse(text).map_err(|e| invalid(field, e))
}

fn members(field: &'static str, texts: &[String]) -> Result<Vec<MemberId>, WireError> {
    texts.iter().map(|m| member(field, m)).collect()
}

fn optional_member(field: &'static str, text: Option<&str>) -> Result<Option<MemberId>, WireError> {
    text.map(|m| member(field, m)).transpose()
}

fn strings(ids: &[MemberId]) -> Vec<String> {
    ids.iter().map(ToString::to_string).collect()
}

fn room_kind(field: &'static str, value: i32) -> Result<RoomKind, WireError> {
    match pb::RoomKind::try_from(value) {
        Ok(pb::RoomKind::Direct) => Ok(RoomKind::Direct),
        Ok(pb::RoomKind::Group) => Ok(RoomKind::Group),
        Ok(pb::RoomKind::Unspecified) => Err(invalid(field, "is unspecified")),
        Err(_) => Err(WireError::Unknown {
            field,
            detail: format!("value {value}"),
        }),
    }
}

fn pb_room_kind(kind: RoomKind) -> i32 {
    match kind {
        RoomKind::Direct => pb::RoomKind::Direct,
        RoomKind::Group => pb::RoomKind::Group,
    }
    .into()
}

fn delivery_state(value: i32) -> Result<OutboxState, WireError> {
    match pb::DeliveryState::try_from(value) {
        Ok(pb::DeliveryState::Queued) => Ok(OutboxState::Queued),
        Ok(pb::DeliveryState::Delivered) => Ok(OutboxState::Delivered),
        Ok(pb::DeliveryState::Refused) => Ok(OutboxState::Refused),
        Ok(pb::DeliveryState::Unspecified) => Err(invalid("receipt.state", "is unspecified")),
        Err(_) => Err(WireError::Unknown {
            field: "receipt.state",
            detail: format!("value {value}"),
        }),
    }
}

fn pb_delivery_state(state: OutboxState) -> i32 {
    match state {
        OutboxState::Queued => pb::DeliveryState::Queued,
        OutboxState::Delivered => pb::DeliveryState::Delivered,
        OutboxState::Refused => pb::DeliveryState::Refused,
    }
    .into()
}

impl TryFrom<pb::RoomSnapshot> for Snapshot {
    type Error = WireError;

    fn try_from(room: pb::RoomSnapshot) -> Result<Self, WireError> {
        Ok(Snapshot {
            kind: room_kind("room.kind", room.kind)?,
            name: room.name,
            master: optional_member("room.master", room.master.as_deref())?,
            members: members("room.members", &room.members)?,
        })
    }
}

impl From<&Snapshot> for pb::RoomSnapshot {
    fn from(room: &Snapshot) -> Self {
        pb::RoomSnapshot {
            kind: pb_room_kind(room.kind),
            name: room.name.clone(),
            master: room.master.as_ref().map(ToString::to_string),
            members: strings(&room.members),
        }
    }
}

fn snapshot(room: Option<pb::RoomSnapshot>) -> Result<Option<Snapshot>, WireError> {
    room.map(Snapshot::try_from).transpose()
}

fn event(
    sender: &str,
    body: EventBody,
    room: Option<pb::RoomSnapshot>,
) -> Result<Payload, WireError> {
    Ok(Payload::Event(Relayed {
        sender: member("sender", sender)?,
        body,
        room: snapshot(room)?,
    }))
}

impl TryFrom<PbPayload> for Payload {
    type Error = WireError;

    fn try_from(payload: PbPayload) -> Result<Self, WireError> {
        match payload {
            PbPayload::Text(e) => event(&e.sender, EventBody::Text { text: e.text }, None),
            PbPayload::Sticker(e) => event(&e.sender, EventBody::Sticker { name: e.name }, None),
            PbPayload::Attachment(e) => {
                let meta = e
                    .attachment
                    .ok_or_else(|| invalid("attachment", "is missing"))?;
                let meta = AttachmentMeta {
                    id: meta.id,
                    name: meta.name,
                    content_type: meta.content_type,
                    size: meta.size,
                    sha256: meta.sha256,
                };
                event(&e.sender, EventBody::Attachment(meta), None)
            }
            PbPayload::Created(e) => {
                let body = EventBody::Created {
                    room_kind: room_kind("room_kind", e.room_kind)?,
                    name: e.name,
                    members: members("members", &e.members)?,
                };
                event(&e.sender, body, e.room)
            }
            PbPayload::Joined(e) => {
                let body = EventBody::Joined {
                    members: members("members", &e.members)?,
                };
                event(&e.sender, body, e.room)
            }
            PbPayload::Left(e) => {
                let body = EventBody::Left {
                    new_master: optional_member("new_master", e.new_master.as_deref())?,
                };
                event(&e.sender, body, e.room)
            }
            PbPayload::Removed(e) => {
                let body = EventBody::Removed {
                    member: member("member", &e.member)?,
                };
                event(&e.sender, body, e.room)
            }
            PbPayload::Renamed(e) => event(&e.sender, EventBody::Renamed { name: e.name }, e.room),
            PbPayload::BecameUnknown(e) => event(&e.sender, EventBody::Unknown, e.room),
            PbPayload::Receipt(r) => {
                let receipt = r
                    .entries
                    .into_iter()
                    .map(|entry| {
                        Ok(ReceiptEntry {
                            tenant: TenantId::parse(&entry.tenant)
                                .map_err(|e| invalid("receipt.tenant", e))?,
                            state: delivery_state(entry.state)?,
                            reason: entry.reason,
                        })
                    })
                    .collect::<Result<_, WireError>>()?;
                Ok(Payload::Receipt { receipt })
            }
            PbPayload::Reachability(_) | PbPayload::Profile(_) | PbPayload::Cas(_) => {
                Err(invalid("payload", "a control message is not about a room"))
            }
        }
    }
}

impl TryFrom<&Payload> for PbPayload {
    type Error = WireError;

    /// Fails only for a withheld event, which no node relays. The snapshot
    /// goes only with events that change the room.
    fn try_from(payload: &Payload) -> Result<Self, WireError> {
        let relayed = match payload {
            Payload::Receipt { receipt } => {
                let entries = receipt
                    .iter()
                    .map(|entry| pb::ReceiptEntry {
                        tenant: entry.tenant.to_string(),
                        state: pb_delivery_state(entry.state),
                        reason: entry.reason.clone(),
                    })
                    .collect();
                return Ok(PbPayload::Receipt(pb::DeliveryReceipt { entries }));
            }
            Payload::Event(relayed) => relayed,
        };
        let sender = relayed.sender.to_string();
        let room = relayed.room.as_ref().map(pb::RoomSnapshot::from);
        Ok(match &relayed.body {
            EventBody::Text { text } => PbPayload::Text(pb::TextEvent {
                sender,
                text: text.clone(),
            }),
            EventBody::Sticker { name } => PbPayload::Sticker(pb::StickerEvent {
                sender,
                name: name.clone(),
            }),
            EventBody::Attachment(meta) => PbPayload::Attachment(pb::AttachmentEvent {
                sender,
                attachment: Some(pb::AttachmentMeta {
                    id: meta.id.clone(),
                    name: meta.name.clone(),
                    content_type: meta.content_type.clone(),
                    size: meta.size,
                    sha256: meta.sha256.clone(),
                }),
            }),
            EventBody::Created {
                room_kind,
                name,
                members,
            } => PbPayload::Created(pb::CreatedEvent {
                sender,
                room_kind: pb_room_kind(*room_kind),
                name: name.clone(),
                members: strings(members),
                room,
            }),
            EventBody::Joined { members } => PbPayload::Joined(pb::JoinedEvent {
                sender,
                members: strings(members),
                room,
            }),
            EventBody::Left { new_master } => PbPayload::Left(pb::LeftEvent {
                sender,
                new_master: new_master.as_ref().map(ToString::to_string),
                room,
            }),
            EventBody::Removed { member } => PbPayload::Removed(pb::RemovedEvent {
                sender,
                member: member.to_string(),
                room,
            }),
            EventBody::Renamed { name } => PbPayload::Renamed(pb::RenamedEvent {
                sender,
                name: name.clone(),
                room,
            }),
            EventBody::Unknown => PbPayload::BecameUnknown(pb::BecameUnknownEvent { sender, room }),
            EventBody::Withheld => return Err(invalid("body", "a withheld event is not relayed")),
            EventBody::Unsent { .. } => {
                return Err(invalid("body", "a LINE user's unsend is not relayed"));
            }
        })
    }
}

impl TryFrom<pb::Envelope> for Envelope {
    type Error = WireError;

    fn try_from(envelope: pb::Envelope) -> Result<Self, WireError> {
        let event_id = EventId::parse(&envelope.event_id).map_err(|e| invalid("event_id", e))?;
        let room = RoomId::parse(&envelope.room_id).map_err(|e| invalid("room_id", e))?;
        // prost reads a payload of a kind it was not built with as none.
        let payload = envelope.payload.ok_or_else(|| WireError::Unknown {
            field: "payload",
            detail: "none set, or one this node does not know".into(),
        })?;
        let payload = Payload::try_from(payload)?;
        let host = TenantId::parse(&envelope.host).map_err(|e| invalid("host", e))?;
        Ok(Envelope {
            event_id,
            host,
            room,
            host_seq: envelope.host_seq,
            at_ms: envelope.at_ms,
            payload,
        })
    }
}

impl TryFrom<&Envelope> for pb::Envelope {
    type Error = WireError;

    fn try_from(envelope: &Envelope) -> Result<Self, WireError> {
        Ok(pb::Envelope {
            event_id: envelope.event_id.to_string(),
            host: envelope.host.to_string(),
            room_id: envelope.room.to_string(),
            host_seq: envelope.host_seq,
            at_ms: envelope.at_ms,
            payload: Some(PbPayload::try_from(&envelope.payload)?),
        })
    }
}

impl TryFrom<pb::Envelope> for Message {
    type Error = WireError;

    /// A control message names no room (`room_id` empty, `host_seq` 0);
    /// `host` is its sender. Anything else is a room's envelope.
    fn try_from(envelope: pb::Envelope) -> Result<Self, WireError> {
        let control = match envelope.payload {
            Some(PbPayload::Reachability(r)) => {
                if r.all_members != r.members.is_empty() {
                    return Err(invalid(
                        "reachability",
                        "name members, or set all_members, not both",
                    ));
                }
                Control::Reachability {
                    members: members("reachability.members", &r.members)?,
                    reachable: r.reachable,
                }
            }
            Some(PbPayload::Profile(p)) => {
                let profile = p.profile.ok_or_else(|| invalid("profile", "is missing"))?;
                Control::Profile {
                    profile: Profile {
                        user: member("profile.user", &profile.user)?,
                        display_name: profile.display_name,
                        photo: profile.photo,
                        photo_content_type: profile.photo_content_type,
                        company: profile.company,
                    },
                    holders: members("profile.holders", &p.holders)?,
                }
            }
            Some(PbPayload::Cas(c)) => Control::Cas {
                cas: c.ca_certificates,
            },
            _ => return Envelope::try_from(envelope).map(Message::Room),
        };
        if !envelope.room_id.is_empty() || envelope.host_seq != 0 {
            return Err(invalid(
                "room_id",
                "a control message names no room and no seq",
            ));
        }
        Ok(Message::Control(ControlMessage {
            id: EventId::parse(&envelope.event_id).map_err(|e| invalid("event_id", e))?,
            from: TenantId::parse(&envelope.host).map_err(|e| invalid("host", e))?,
            at_ms: envelope.at_ms,
            control,
        }))
    }
}

impl From<&ControlMessage> for pb::Envelope {
    fn from(message: &ControlMessage) -> Self {
        let payload = match &message.control {
            Control::Reachability { members, reachable } => {
                PbPayload::Reachability(pb::ReachabilityChange {
                    all_members: members.is_empty(),
                    members: strings(members),
                    reachable: *reachable,
                })
            }
            Control::Profile { profile, holders } => PbPayload::Profile(pb::ProfileSync {
                profile: Some(pb::PublicProfile {
                    user: profile.user.to_string(),
                    display_name: profile.display_name.clone(),
                    photo: profile.photo.clone(),
                    photo_content_type: profile.photo_content_type.clone(),
                    company: profile.company.clone(),
                }),
                holders: strings(holders),
            }),
            Control::Cas { cas } => PbPayload::Cas(pb::CaAnnouncement {
                ca_certificates: cas.clone(),
            }),
        };
        pb::Envelope {
            event_id: message.id.to_string(),
            host: message.from.to_string(),
            room_id: String::new(),
            host_seq: 0,
            at_ms: message.at_ms,
            payload: Some(payload),
        }
    }
}

impl TryFrom<&Message> for pb::Envelope {
    type Error = WireError;

    fn try_from(message: &Message) -> Result<Self, WireError> {
        match message {
            Message::Room(envelope) => pb::Envelope::try_from(envelope),
            Message::Control(control) => Ok(pb::Envelope::from(control)),
        }
    }
}

/// An outbox row as it goes on the wire from `me` to the row's peer. The
/// row holds its payload as JSON: one that does not read or cannot be
/// encoded is a fault of this node.
pub(crate) fn outgoing(row: &OutboxRow, me: &TenantId) -> Result<pb::Envelope, Error> {
    let stored = |what: &str, e: &dyn std::fmt::Display| {
        Error::Internal(format!(
            "outbox row {} holds {what} that cannot be relayed: {e}",
            row.id
        ))
    };
    let Some(room) = row.room_id else {
        let control: Control =
            serde_json::from_str(&row.payload).map_err(|e| stored("a control message", &e))?;
        return Ok(pb::Envelope::from(&ControlMessage {
            id: row.event_id,
            from: me.clone(),
            at_ms: row.created_at_ms,
            control,
        }));
    };
    // A proposal goes to the room's host, the peer; with a seq, this node
    // is the host.
    let host = if row.host_seq == 0 { &row.peer } else { me };
    let envelope = Envelope {
        event_id: row.event_id,
        host: host.clone(),
        room,
        host_seq: row.host_seq,
        at_ms: row.created_at_ms,
        payload: serde_json::from_str(&row.payload).map_err(|e| stored("a payload", &e))?,
    };
    pb::Envelope::try_from(&envelope).map_err(|e| stored("a payload", &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> MemberId {
        MemberId::parse(text).unwrap()
    }

    fn room() -> Snapshot {
        Snapshot {
            kind: RoomKind::Group,
            name: "Launch".into(),
            master: Some(id("bob@b.example")),
            members: vec![id("bob@b.example"), id("alice@a.example")],
        }
    }

    fn relayed(body: EventBody, room: Option<Snapshot>) -> Payload {
        Payload::Event(Relayed {
            sender: id("bob@b.example"),
            body,
            room,
        })
    }

    fn envelope(payload: Payload) -> Envelope {
        Envelope {
            event_id: EventId::generate(),
            host: TenantId::parse("b.example").unwrap(),
            room: RoomId::generate(),
            host_seq: 7,
            at_ms: 1_700_000_000_000,
            payload,
        }
    }

    /// One payload of every kind, as a host relays it.
    fn every_kind() -> Vec<Payload> {
        vec![
            relayed(EventBody::Text { text: "hi".into() }, None),
            relayed(
                EventBody::Sticker {
                    name: "wave".into(),
                },
                None,
            ),
            relayed(
                EventBody::Attachment(AttachmentMeta {
                    id: RoomId::generate().to_string(),
                    name: "plan.pdf".into(),
                    content_type: "application/pdf".into(),
                    size: 1234,
                    sha256: "ab".repeat(32),
                }),
                None,
            ),
            relayed(
                EventBody::Created {
                    room_kind: RoomKind::Group,
                    name: "Launch".into(),
                    members: room().members,
                },
                Some(room()),
            ),
            relayed(
                EventBody::Created {
                    room_kind: RoomKind::Direct,
                    name: String::new(),
                    members: room().members,
                },
                Some(Snapshot {
                    kind: RoomKind::Direct,
                    name: String::new(),
                    master: None,
                    members: room().members,
                }),
            ),
            relayed(
                EventBody::Joined {
                    members: vec![id("carol@a.example")],
                },
                Some(room()),
            ),
            relayed(EventBody::Left { new_master: None }, Some(room())),
            relayed(
                EventBody::Left {
                    new_master: Some(id("alice@a.example")),
                },
                Some(room()),
            ),
            relayed(
                EventBody::Removed {
                    member: id("alice@a.example"),
                },
                Some(room()),
            ),
            relayed(
                EventBody::Renamed {
                    name: "Renamed".into(),
                },
                Some(room()),
            ),
            relayed(EventBody::Unknown, Some(room())),
            // A proposal carries no snapshot.
            relayed(EventBody::Unknown, None),
            Payload::Receipt {
                receipt: vec![
                    ReceiptEntry {
                        tenant: TenantId::parse("a.example").unwrap(),
                        state: OutboxState::Delivered,
                        reason: None,
                    },
                    ReceiptEntry {
                        tenant: TenantId::parse("c.example").unwrap(),
                        state: OutboxState::Refused,
                        reason: Some("user x@c.example not found".into()),
                    },
                    ReceiptEntry {
                        tenant: TenantId::parse("d.example").unwrap(),
                        state: OutboxState::Queued,
                        reason: None,
                    },
                ],
            },
            Payload::Receipt {
                receipt: Vec::new(),
            },
        ]
    }

    #[test]
    fn every_kind_goes_there_and_back() {
        for payload in every_kind() {
            let sent = envelope(payload);
            let wire = pb::Envelope::try_from(&sent).expect("encodes");
            let bytes = prost::Message::encode_to_vec(&wire);
            let decoded = <pb::Envelope as prost::Message>::decode(bytes.as_slice()).unwrap();
            assert_eq!(decoded, wire);
            assert_eq!(Envelope::try_from(decoded), Ok(sent));
        }
    }

    #[test]
    fn an_outbox_row_of_every_kind_goes_on_the_wire() {
        let host = TenantId::parse("b.example").unwrap();
        for payload in every_kind() {
            let sent = envelope(payload);
            let row = OutboxRow {
                id: 1,
                peer: TenantId::parse("a.example").unwrap(),
                event_id: sent.event_id,
                room_id: Some(sent.room),
                host_seq: sent.host_seq,
                payload: serde_json::to_string(&sent.payload).unwrap(),
                attempts: 0,
                created_at_ms: sent.at_ms,
            };
            let wire = outgoing(&row, &host).expect("relayed");
            assert_eq!(Envelope::try_from(wire), Ok(sent));
        }
    }

    fn controls() -> Vec<Control> {
        vec![
            Control::Reachability {
                members: vec![id("bob@b.example"), id("carol@b.example")],
                reachable: false,
            },
            Control::Reachability {
                members: Vec::new(),
                reachable: true,
            },
            Control::Profile {
                profile: Profile {
                    user: id("bob@b.example"),
                    display_name: "Bob".into(),
                    photo: vec![0x89, b'P', b'N', b'G', 0, 255],
                    photo_content_type: "image/png".into(),
                    company: "Globex".into(),
                },
                holders: vec![id("alice@a.example")],
            },
            Control::Cas {
                cas: vec![vec![1, 2, 3], vec![0, 255]],
            },
        ]
    }

    /// A control message goes on the wire and back, and through an outbox
    /// row (JSON) onto the wire, as itself; it names no room and no seq.
    #[test]
    fn every_control_message_goes_there_and_back() {
        let me = TenantId::parse("b.example").unwrap();
        for control in controls() {
            let sent = ControlMessage {
                id: EventId::generate(),
                from: me.clone(),
                at_ms: 1_700_000_000_000,
                control: control.clone(),
            };
            let wire = pb::Envelope::from(&sent);
            assert_eq!((wire.room_id.as_str(), wire.host_seq), ("", 0));
            assert_eq!(
                Message::try_from(wire.clone()),
                Ok(Message::Control(sent.clone()))
            );
            let row = OutboxRow {
                id: 1,
                peer: TenantId::parse("a.example").unwrap(),
                event_id: sent.id,
                room_id: None,
                host_seq: 0,
                payload: serde_json::to_string(&control).unwrap(),
                attempts: 0,
                created_at_ms: sent.at_ms,
            };
            assert_eq!(outgoing(&row, &me).expect("relayed"), wire);
        }
    }

    #[test]
    fn a_malformed_control_message_is_refused_by_name() {
        let me = TenantId::parse("b.example").unwrap();
        let wire = |control: Control| {
            pb::Envelope::from(&ControlMessage {
                id: EventId::generate(),
                from: me.clone(),
                at_ms: 1,
                control,
            })
        };
        let refused = |envelope: pb::Envelope, fragment: &str| {
            let err = Message::try_from(envelope).expect_err(fragment).to_string();
            assert!(err.contains(fragment), "{err:?} lacks {fragment:?}");
        };
        let mut in_room = wire(controls().remove(0));
        in_room.room_id = RoomId::generate().to_string();
        refused(in_room, "a control message names no room and no seq");
        let mut both = wire(controls().remove(0));
        if let Some(PbPayload::Reachability(r)) = &mut both.payload {
            r.all_members = true;
        }
        refused(both, "name members, or set all_members, not both");
        let mut bad_member = wire(controls().remove(2));
        if let Some(PbPayload::Profile(p)) = &mut bad_member.payload {
            p.holders.push("not a member".into());
        }
        refused(bad_member, "invalid profile.holders");
        let mut no_profile = wire(controls().remove(2));
        if let Some(PbPayload::Profile(p)) = &mut no_profile.payload {
            p.profile = None;
        }
        refused(no_profile, "invalid profile: is missing");
        // A room's envelope reader never takes a control message.
        let mut cas = wire(controls().remove(3));
        cas.room_id = RoomId::generate().to_string();
        let err = Envelope::try_from(cas).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid payload: a control message is not about a room"
        );
    }

    #[test]
    fn a_withheld_event_is_not_relayed() {
        let withheld = envelope(relayed(EventBody::Withheld, None));
        assert_eq!(
            pb::Envelope::try_from(&withheld).unwrap_err().to_string(),
            "invalid body: a withheld event is not relayed"
        );
    }

    fn text(sender: &str) -> pb::Envelope {
        pb::Envelope {
            event_id: EventId::generate().to_string(),
            host: "b.example".into(),
            room_id: RoomId::generate().to_string(),
            host_seq: 1,
            at_ms: 1,
            payload: Some(PbPayload::Text(pb::TextEvent {
                sender: sender.into(),
                text: "hi".into(),
            })),
        }
    }

    fn snapshot_with(change: impl FnOnce(&mut pb::RoomSnapshot)) -> pb::Envelope {
        let mut room = pb::RoomSnapshot::from(&room());
        change(&mut room);
        pb::Envelope {
            payload: Some(PbPayload::Renamed(pb::RenamedEvent {
                sender: "bob@b.example".into(),
                name: "n".into(),
                room: Some(room),
            })),
            ..text("bob@b.example")
        }
    }

    fn with_payload(payload: PbPayload) -> pb::Envelope {
        pb::Envelope {
            payload: Some(payload),
            ..text("bob@b.example")
        }
    }

    fn receipt(entry: pb::ReceiptEntry) -> pb::Envelope {
        with_payload(PbPayload::Receipt(pb::DeliveryReceipt {
            entries: vec![entry],
        }))
    }

    fn entry() -> pb::ReceiptEntry {
        pb::ReceiptEntry {
            tenant: "a.example".into(),
            state: pb::DeliveryState::Delivered.into(),
            reason: None,
        }
    }

    /// `envelope` is refused with a message holding `fragment`, and as
    /// unknown (retry) or invalid (refused for good).
    fn check(envelope: pb::Envelope, unknown: bool, fragment: &str) {
        let err = Envelope::try_from(envelope).expect_err(fragment);
        assert_eq!(matches!(err, WireError::Unknown { .. }), unknown, "{err:?}");
        let message = err.to_string();
        assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
    }

    #[test]
    fn each_malformed_field_is_refused_by_name() {
        check(
            pb::Envelope {
                event_id: "not-an-id".into(),
                ..text("bob@b.example")
            },
            false,
            "invalid event_id: event id \"not-an-id\" is not a valid ULID",
        );
        check(
            pb::Envelope {
                room_id: String::new(),
                ..text("bob@b.example")
            },
            false,
            "invalid room_id: room id is empty",
        );
        check(
            pb::Envelope {
                host: "localhost".into(),
                ..text("bob@b.example")
            },
            false,
            "invalid host: ",
        );
        check(text("bob"), false, "invalid sender: member id \"bob\"");
        let members = |members: Vec<String>| {
            with_payload(PbPayload::Joined(pb::JoinedEvent {
                sender: "bob@b.example".into(),
                members,
                room: None,
            }))
        };
        check(
            members(vec!["alice@a.example".into(), "@a.example".into()]),
            false,
            "invalid members: member name is empty",
        );
        check(
            with_payload(PbPayload::Created(pb::CreatedEvent {
                sender: "bob@b.example".into(),
                room_kind: pb::RoomKind::Unspecified.into(),
                name: "n".into(),
                members: vec!["bob@b.example".into()],
                room: None,
            })),
            false,
            "invalid room_kind: is unspecified",
        );
        check(
            with_payload(PbPayload::Left(pb::LeftEvent {
                sender: "bob@b.example".into(),
                new_master: Some(String::new()),
                room: None,
            })),
            false,
            "invalid new_master: ",
        );
        check(
            with_payload(PbPayload::Removed(pb::RemovedEvent {
                sender: "bob@b.example".into(),
                member: "alice".into(),
                room: None,
            })),
            false,
            "invalid member: member id \"alice\"",
        );
        check(
            with_payload(PbPayload::Attachment(pb::AttachmentEvent {
                sender: "bob@b.example".into(),
                attachment: None,
            })),
            false,
            "invalid attachment: is missing",
        );
        check(
            snapshot_with(|r| r.kind = pb::RoomKind::Unspecified.into()),
            false,
            "invalid room.kind: is unspecified",
        );
        check(
            snapshot_with(|r| r.master = Some("nobody".into())),
            false,
            "invalid room.master: member id \"nobody\"",
        );
        check(
            snapshot_with(|r| r.members.push("x@y".into())),
            false,
            "invalid room.members: ",
        );
        check(
            receipt(pb::ReceiptEntry {
                tenant: "-bad.example".into(),
                ..entry()
            }),
            false,
            "invalid receipt.tenant: ",
        );
        check(
            receipt(pb::ReceiptEntry {
                state: pb::DeliveryState::Unspecified.into(),
                ..entry()
            }),
            false,
            "invalid receipt.state: is unspecified",
        );
    }

    #[test]
    fn an_unknown_payload_or_enum_value_is_an_unknown_kind() {
        check(
            pb::Envelope {
                payload: None,
                ..text("bob@b.example")
            },
            true,
            "unknown kind of payload (none set, or one this node does not know)",
        );
        // Field 99, as a newer node would send it, reads as none.
        let mut bytes = prost::Message::encode_to_vec(&pb::Envelope {
            payload: None,
            ..text("bob@b.example")
        });
        bytes.extend([0x9a, 0x06, 0x02, 0x08, 0x01]);
        let decoded = <pb::Envelope as prost::Message>::decode(bytes.as_slice()).unwrap();
        check(decoded, true, "unknown kind of payload");
        check(
            receipt(pb::ReceiptEntry {
                state: 9,
                ..entry()
            }),
            true,
            "unknown kind of receipt.state (value 9)",
        );
        check(
            snapshot_with(|r| r.kind = 5),
            true,
            "unknown kind of room.kind (value 5)",
        );
        check(
            with_payload(PbPayload::Created(pb::CreatedEvent {
                sender: "bob@b.example".into(),
                room_kind: 3,
                name: "n".into(),
                members: vec!["bob@b.example".into()],
                room: None,
            })),
            true,
            "unknown kind of room_kind (value 3)",
        );
    }

    #[test]
    fn ids_are_read_as_their_one_spelling() {
        let read = Envelope::try_from(text(" Bob@B.Example ")).unwrap();
        let Payload::Event(relayed) = &read.payload else {
            panic!("an event");
        };
        assert_eq!(relayed.sender.as_str(), "bob@b.example");
        let again = pb::Envelope::try_from(&read).unwrap();
        assert_eq!(Envelope::try_from(again), Ok(read));
    }
}
