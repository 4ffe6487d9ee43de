//! What a room event may hold, whoever made it: our own client API, a
//! member's node proposing a change to a room this node hosts, or a room's
//! host relaying the events it sequenced. One set of limits for all three,
//! so nothing a peer relays gets past a limit our own members are held to.

use crate::config::Limits;
use crate::error::{Error, Result};
use crate::ids::MemberId;
use crate::model::{AttachmentMeta, EventBody, RoomKind};
use crate::tenant::clean_name;

pub const MAX_ROOM_NAME_CHARS: usize = 100;
pub const MAX_STICKER_CHARS: usize = 64;
pub const MAX_FILE_NAME_CHARS: usize = 200;
pub const MAX_CONTENT_TYPE: usize = 100;
/// How far ahead of this node's clock another node's timestamp may be
/// before this node stamps the event with its own time instead.
pub const MAX_CLOCK_AHEAD_MS: i64 = 5 * 60 * 1000;

/// A text message: not blank, within `limits.max_text_bytes`.
pub fn text(text: &str, limits: &Limits) -> Result<()> {
    if text.trim().is_empty() {
        return Err(Error::invalid("text", "message is empty"));
    }
    if text.len() > limits.max_text_bytes {
        return Err(Error::ResourceExhausted(format!(
            "message is {} bytes; the limit is {}",
            text.len(),
            limits.max_text_bytes
        )));
    }
    Ok(())
}

/// A sticker's name: a short token, never a path or markup.
pub fn sticker(name: &str) -> Result<()> {
    if crate::outbox::line::line_sticker(name).is_some() {
        return Ok(());
    }
    if name.is_empty()
        || name.chars().count() > MAX_STICKER_CHARS
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::invalid(
            "sticker",
            format!("must be 1 to {MAX_STICKER_CHARS} letters, digits, '-' or '_'"),
        ));
    }
    Ok(())
}

/// A group room's name, trimmed.
pub fn room_name(name: &str) -> Result<String> {
    clean_name("name", name, MAX_ROOM_NAME_CHARS)
}

/// A file's name, trimmed: no path.
pub fn file_name(name: &str) -> Result<String> {
    let name = clean_name("name", name, MAX_FILE_NAME_CHARS)?;
    if name.contains('/') || name.contains('\\') {
        return Err(Error::invalid("name", "a file name, without a path"));
    }
    Ok(name)
}

/// A MIME type such as `image/png`; empty means `application/octet-stream`.
pub fn content_type(input: &str) -> Result<&str> {
    let content_type = input.trim();
    if content_type.is_empty() {
        return Ok("application/octet-stream");
    }
    if content_type.len() > MAX_CONTENT_TYPE
        || !content_type.contains('/')
        || content_type
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::invalid(
            "content_type",
            "a MIME type such as image/png",
        ));
    }
    Ok(content_type)
}

/// A file's metadata as another node describes it.
pub fn attachment(meta: &AttachmentMeta, limits: &Limits) -> Result<()> {
    if ulid::Ulid::from_string(&meta.id).is_err() {
        return Err(Error::invalid("attachment", "its id is not a valid id"));
    }
    if file_name(&meta.name)? != meta.name {
        return Err(Error::invalid(
            "name",
            "must not start or end with white space",
        ));
    }
    if content_type(&meta.content_type)? != meta.content_type {
        return Err(Error::invalid(
            "content_type",
            "a MIME type such as image/png",
        ));
    }
    if meta.size > limits.max_attachment_bytes as u64 {
        return Err(Error::ResourceExhausted(format!(
            "the file is larger than the {} byte limit",
            limits.max_attachment_bytes
        )));
    }
    if meta.sha256.len() != 64
        || !meta
            .sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(Error::invalid("sha256", "64 lowercase hexadecimal digits"));
    }
    Ok(())
}

/// Every limit an event body is held to, of any kind. Member ids in it
/// must parse; how many members a room holds is checked where the room's
/// members are known.
pub fn event(body: &EventBody, limits: &Limits) -> Result<()> {
    match body {
        EventBody::Text { text: t } => text(t, limits),
        EventBody::Sticker { name } => sticker(name),
        EventBody::Attachment(meta) => attachment(meta, limits),
        EventBody::Renamed { name } => exact_room_name(name),
        EventBody::Created {
            room_kind,
            name,
            members,
        } => {
            match room_kind {
                RoomKind::Direct if !name.is_empty() => {
                    return Err(Error::invalid("name", "a direct room has no name"));
                }
                RoomKind::Direct => {}
                RoomKind::Group => exact_room_name(name)?,
            }
            members_within(members, limits)
        }
        EventBody::Joined { members } => members_within(members, limits),
        EventBody::Removed { .. } | EventBody::Left { .. } => Ok(()),
        EventBody::Unknown | EventBody::Withheld | EventBody::Unsent { .. } => Ok(()),
    }
}

/// A room name another node sends: one our own members could have set.
fn exact_room_name(name: &str) -> Result<()> {
    if room_name(name)? != name {
        return Err(Error::invalid(
            "name",
            "must not start or end with white space",
        ));
    }
    Ok(())
}

/// A list of members: at least one, at most a room's worth, each once.
pub fn members_within(members: &[MemberId], limits: &Limits) -> Result<()> {
    if members.is_empty() {
        return Err(Error::invalid("members", "names no member"));
    }
    if members.len() > limits.max_room_members {
        return Err(Error::ResourceExhausted(format!(
            "a room holds at most {} members",
            limits.max_room_members
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(members.len());
    if let Some(twice) = members.iter().find(|m| !seen.insert(*m)) {
        return Err(Error::invalid("members", format!("names {twice} twice")));
    }
    Ok(())
}

/// The time this node keeps for an event another node stamped: its own
/// clock when the other's is implausible (before 2020, or more than
/// `MAX_CLOCK_AHEAD_MS` ahead of ours).
pub fn timestamp(at_ms: i64, now_ms: i64) -> i64 {
    const YEAR_2020_MS: i64 = 1_577_836_800_000;
    if at_ms < YEAR_2020_MS || at_ms > now_ms.saturating_add(MAX_CLOCK_AHEAD_MS) {
        now_ms
    } else {
        at_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    fn meta() -> AttachmentMeta {
        AttachmentMeta {
            id: ulid::Ulid::new().to_string(),
            name: "plan.pdf".into(),
            content_type: "application/pdf".into(),
            size: 10,
            sha256: "a".repeat(64),
        }
    }

    #[test]
    fn texts_are_bounded_and_not_blank() {
        let l = limits();
        assert!(text("hi", &l).is_ok());
        assert!(matches!(text(" \n", &l), Err(Error::Invalid { .. })));
        let long = "x".repeat(l.max_text_bytes + 1);
        assert!(matches!(text(&long, &l), Err(Error::ResourceExhausted(_))));
    }

    #[test]
    fn stickers_are_tokens_not_paths() {
        assert!(sticker("thumbs-up_2").is_ok());
        for bad in ["", "../../<script>", "a b", &"x".repeat(65)] {
            assert!(sticker(bad).is_err(), "{bad}");
        }
    }

    fn m(id: &str) -> MemberId {
        MemberId::parse(id).unwrap()
    }

    // A member id that does not parse is refused where it is read
    // (`wire`); the body holds parsed ones.
    #[test]
    fn relayed_bodies_meet_the_clients_limits() {
        let l = limits();
        let ok = [
            EventBody::Renamed {
                name: "Launch".into(),
            },
            EventBody::Created {
                room_kind: RoomKind::Direct,
                name: String::new(),
                members: vec![m("a@a.example"), m("b@b.example")],
            },
            EventBody::Attachment(meta()),
            EventBody::Left { new_master: None },
        ];
        for body in &ok {
            assert!(event(body, &l).is_ok(), "{body:?}");
        }
        let bad = [
            EventBody::Renamed {
                name: "x".repeat(MAX_ROOM_NAME_CHARS + 1),
            },
            EventBody::Renamed {
                name: " padded ".into(),
            },
            EventBody::Renamed {
                name: "bell\u{7}".into(),
            },
            EventBody::Created {
                room_kind: RoomKind::Direct,
                name: "named".into(),
                members: vec![m("a@a.example"), m("b@b.example")],
            },
            EventBody::Joined {
                members: vec![m("a@a.example"), m("a@a.example")],
            },
            EventBody::Joined {
                members: (0..=l.max_room_members)
                    .map(|i| m(&format!("m{i}@b.example")))
                    .collect(),
            },
            EventBody::Attachment(AttachmentMeta {
                size: l.max_attachment_bytes as u64 + 1,
                ..meta()
            }),
            EventBody::Attachment(AttachmentMeta {
                name: "../etc/passwd".into(),
                ..meta()
            }),
            EventBody::Attachment(AttachmentMeta {
                sha256: "Z".repeat(64),
                ..meta()
            }),
            EventBody::Attachment(AttachmentMeta {
                content_type: "text/html; x".into(),
                ..meta()
            }),
        ];
        for body in &bad {
            assert!(event(body, &l).is_err(), "{body:?}");
        }
    }

    #[test]
    fn implausible_times_become_this_nodes_own() {
        let now = 1_800_000_000_000;
        assert_eq!(timestamp(now - 1000, now), now - 1000);
        assert_eq!(timestamp(now + 1000, now), now + 1000);
        assert_eq!(timestamp(253_402_300_799_000, now), now, "year 9999");
        assert_eq!(timestamp(1, now), now);
        assert_eq!(timestamp(i64::MAX, now), now);
    }
}
