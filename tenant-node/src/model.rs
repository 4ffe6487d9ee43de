//! Domain types. They carry validated ids and know nothing of protobuf or SQL.

use serde::{Deserialize, Serialize};

use crate::ids::{EventId, MemberId, RoomId, TenantId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Member,
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Active,
    Suspended,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub id: MemberId,
    pub display_name: String,
    pub has_photo: bool,
    pub role: Role,
    pub state: MemberState,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Photo {
    pub bytes: Vec<u8>,
    pub content_type: String,
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub member_id: MemberId,
    pub display_name: String,
    pub photo: Option<Photo>,
    pub company: String,
}

/// Who is calling, established from a valid token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub member: MemberId,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomKind {
    Direct,
    Group,
}

#[derive(Debug, Clone)]
pub struct Room {
    pub id: RoomId,
    pub kind: RoomKind,
    pub name: String,
    pub members: Vec<MemberId>,
    pub master: Option<MemberId>,
    pub last_seq: u64,
    /// The caller's read marker and unread count; zero when not asked for a member.
    pub last_read_seq: u64,
    pub unread: u64,
    pub created_at_ms: i64,
    pub last_event_at_ms: i64,
    /// The node that orders the room's events: `None` for this one.
    pub host: Option<TenantId>,
    /// Members of other companies are in the room.
    pub external: bool,
    /// The room of a LINE chat: LINE users are in it.
    pub line: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomEvent {
    pub id: EventId,
    pub room: RoomId,
    pub seq: u64,
    pub sender: MemberId,
    pub at_ms: i64,
    pub body: EventBody,
}

/// What happened. Stored as JSON, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    Text {
        text: String,
    },
    Created {
        room_kind: RoomKind,
        name: String,
        #[serde(with = "member_ids")]
        members: Vec<MemberId>,
    },
    /// The sender added these members.
    Joined {
        #[serde(with = "member_ids")]
        members: Vec<MemberId>,
    },
    /// The sender left; `new_master` took over when they were the master.
    Left {
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "optional_member_id"
        )]
        new_master: Option<MemberId>,
    },
    /// The sender removed `member`.
    Removed {
        #[serde(with = "member_id")]
        member: MemberId,
    },
    Renamed {
        name: String,
    },
    Sticker {
        name: String,
    },
    /// A file; its bytes are fetched separately, by id.
    Attachment(AttachmentMeta),
    /// The sender stopped being reachable from the room's other companies
    /// and left the room.
    Unknown,
    /// A LINE user took back their message at `seq`: it is no longer shown
    /// (the audit keeps it).
    Unsent {
        seq: u64,
    },
    /// An event this node stored to keep the room's sequence whole but does
    /// not show: the host sequenced it, and this node's half refused it (a
    /// member here blocked its sender).
    Withheld,
}

impl EventBody {
    /// The `kind` column value; only text events count as unread.
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::Text { .. } => "text",
            EventBody::Created { .. } => "created",
            EventBody::Joined { .. } => "joined",
            EventBody::Left { .. } => "left",
            EventBody::Removed { .. } => "removed",
            EventBody::Renamed { .. } => "renamed",
            EventBody::Sticker { .. } => "sticker",
            EventBody::Attachment(_) => "attachment",
            EventBody::Unknown => "unknown",
            EventBody::Unsent { .. } => "unsent",
            EventBody::Withheld => "withheld",
        }
    }

    /// A message (counts as unread), as opposed to a system event.
    pub fn is_message(&self) -> bool {
        matches!(
            self,
            EventBody::Text { .. } | EventBody::Sticker { .. } | EventBody::Attachment(_)
        )
    }

    /// Whether the room's membership, name or master changes with it.
    pub fn changes_room(&self) -> bool {
        matches!(
            self,
            EventBody::Created { .. }
                | EventBody::Joined { .. }
                | EventBody::Left { .. }
                | EventBody::Removed { .. }
                | EventBody::Renamed { .. }
                | EventBody::Unknown
        )
    }
}

/// What a room's members see of a file before they download it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentMeta {
    pub id: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    /// Hex SHA-256 of the bytes; every node checks it.
    pub sha256: String,
}

/// Something a member is told outside any room (a friend request, a change
/// of what their admin allows), kept for them and shown on their stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub id: String,
    pub member: MemberId,
    pub kind: String,
    pub text: String,
    pub at_ms: i64,
}

impl Notice {
    /// A new notice for `member`, with its own id, dated now.
    pub fn new(member: &MemberId, kind: &str, text: impl Into<String>) -> Notice {
        Notice {
            id: ulid::Ulid::new().to_string(),
            member: member.clone(),
            kind: kind.into(),
            text: text.into(),
            at_ms: crate::store::now_ms(),
        }
    }
}

// Typed ids in what is stored as JSON (events, outbox rows): each written
// as the same string it always was, and parsed again when read, so rows
// written before the ids were typed still read.

/// A `MemberId` as its string.
pub(crate) mod member_id {
    use serde::{Deserialize, Deserializer, Serializer, de};

    use crate::ids::MemberId;

    pub fn serialize<S: Serializer>(id: &MemberId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(id.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MemberId, D::Error> {
        let text = String::deserialize(d)?;
        MemberId::parse(&text).map_err(de::Error::custom)
    }
}

/// An optional `MemberId` as a string or null.
pub(crate) mod optional_member_id {
    use serde::{Deserialize, Deserializer, Serializer, de};

    use crate::ids::MemberId;

    pub fn serialize<S: Serializer>(id: &Option<MemberId>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => s.serialize_some(id.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<MemberId>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| MemberId::parse(&text).map_err(de::Error::custom))
            .transpose()
    }
}

/// A list of `MemberId`s as strings.
pub(crate) mod member_ids {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer, de};

    use crate::ids::MemberId;

    pub fn serialize<S: Serializer>(ids: &[MemberId], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(ids.len()))?;
        for id in ids {
            seq.serialize_element(id.as_str())?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<MemberId>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|text| MemberId::parse(text).map_err(de::Error::custom))
            .collect()
    }
}

/// A `TenantId` as its string.
pub(crate) mod tenant_id {
    use serde::{Deserialize, Deserializer, Serializer, de};

    use crate::ids::TenantId;

    pub fn serialize<S: Serializer>(id: &TenantId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(id.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TenantId, D::Error> {
        let text = String::deserialize(d)?;
        TenantId::parse(&text).map_err(de::Error::custom)
    }
}
