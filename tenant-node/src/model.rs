//! Domain types. They carry validated ids and know nothing of protobuf or SQL.

use serde::{Deserialize, Serialize};

use crate::ids::{EventId, MemberId, RoomId};

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
        members: Vec<String>,
    },
    /// The sender added these members.
    Joined {
        members: Vec<String>,
    },
    /// The sender left; `new_master` took over when they were the master.
    Left {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new_master: Option<String>,
    },
    /// The sender removed `member`.
    Removed {
        member: String,
    },
    Renamed {
        name: String,
    },
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
        }
    }
}
