//! How client subcommands print: a line per item for people, one JSON
//! document for scripts (`--json`).
//!
//! Names, texts and ids shown here come from other members and other
//! companies, not from the person at the terminal: every one of them goes
//! through [`safe`] before it is printed for people. `--json` prints them
//! exactly ([`json_line`]).

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::{Value, json};
use works_proto::client::v1 as pb;

/// Text from others made harmless for a terminal: control characters (C0,
/// DEL, C1) and the invisible format characters that reorder or hide text
/// (bidi embeddings, overrides and isolates, zero-width space, line and
/// paragraph separators, byte-order mark) are shown escaped, as `\x1b` or
/// `\u{202e}`; every other character, accents, CJK and emoji (with their
/// zero-width joiners) included, is shown as it is.
///
/// A newline is escaped too, as `\n`, rather than indented: every listing
/// prints one line per item, so `room history` and `room watch` stay one
/// line per event for people and for `grep`, and a sender cannot put a line
/// at the start of the terminal that looks like another event, a notice or
/// a prompt. `--json` has the exact text, line breaks and all.
pub fn safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => shown.push_str("\\n"),
            '\r' => shown.push_str("\\r"),
            '\t' => shown.push_str("\\t"),
            c if c < '\u{80}' && needs_escape(c) => {
                let _ = write!(shown, "\\x{:02x}", u32::from(c));
            }
            c if needs_escape(c) => {
                let _ = write!(shown, "\\u{{{:x}}}", u32::from(c));
            }
            c => shown.push(c),
        }
    }
    Cow::Owned(shown)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'                    // Arabic letter mark
            | '\u{180e}'                  // Mongolian vowel separator
            | '\u{200b}'                  // zero-width space
            | '\u{200e}' | '\u{200f}'     // left-to-right and right-to-left marks
            | '\u{2028}' | '\u{2029}'     // line and paragraph separators
            | '\u{202a}'..='\u{202e}'     // bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}'     // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}'     // bidi isolates
            | '\u{206a}'..='\u{206f}'     // deprecated format characters
            | '\u{feff}'                  // byte-order mark
            | '\u{fff9}'..='\u{fffb}' // interlinear annotation
        )
}

/// [`safe`] over a list: `a, b, c`.
fn safe_list(items: &[String]) -> String {
    items.iter().map(|i| safe(i)).collect::<Vec<_>>().join(", ")
}

/// One JSON document on a line. JSON escapes C0 controls but not DEL, C1
/// or the bidi controls: those are written as `\u` escapes too, so the
/// document decodes to exactly the same strings and is still safe to
/// print on a terminal.
pub fn json_line(value: &Value) -> String {
    let text = value.to_string();
    if !text.chars().any(needs_escape) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        // Every such character is in the Basic Multilingual Plane, and
        // only ever inside a string: the compact form has no other
        // whitespace and C0 is already escaped.
        if needs_escape(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

pub fn print(json_mode: bool, value: Value, text: impl FnOnce() -> String) {
    if json_mode {
        println!("{}", json_line(&value));
    } else {
        println!("{}", text());
    }
}

/// A connected-members list (other companies' or LINE's).
pub fn connected_json(members: &[pb::ConnectedMember]) -> Value {
    json!({"members": members.iter().map(|m| json!({"member_id": m.member_id, "display_name": m.display_name,
        "granted_by": m.granted_by, "granted_at_ms": m.granted_at_ms})).collect::<Vec<_>>()})
}

pub fn connected_text(members: &[pb::ConnectedMember]) -> String {
    members
        .iter()
        .map(|m| {
            format!(
                "{:<32} {:<24} granted by {}",
                safe(&m.member_id),
                safe(&m.display_name),
                safe(&m.granted_by)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn line_settings_json(s: &pb::LineSettings) -> Value {
    json!({"enabled": s.enabled, "auto_grant": s.auto_grant, "restrict_files": s.restrict_files,
           "greeting": s.greeting, "channel_id": s.channel_id, "basic_id": s.basic_id})
}

pub fn line_settings_text(s: &pb::LineSettings) -> String {
    let on = |b: bool| if b { "on" } else { "off" };
    let channel = if s.channel_id.is_empty() {
        "none (add a [line] section to node.toml)".to_string()
    } else {
        format!("{} ({})", safe(&s.channel_id), safe(&s.basic_id))
    };
    format!(
        "chat with LINE users:    {}\nauto-grant new members:  {}\nrestrict files:          {}\nchannel:                 {}\ngreeting:                {}",
        on(s.enabled),
        on(s.auto_grant),
        on(s.restrict_files),
        channel,
        safe(&s.greeting)
    )
}

pub fn member_json(m: &pb::Member) -> Value {
    json!({
        "id": m.id,
        "display_name": m.display_name,
        "has_photo": m.has_photo,
        "role": role_name(m.role),
        "state": state_name(m.state),
        "created_at_ms": m.created_at_ms,
    })
}

pub fn member_line(m: &pb::Member) -> String {
    format!(
        "{:<32} {:<24} {:<6} {}",
        safe(&m.id),
        safe(&m.display_name),
        role_name(m.role),
        state_name(m.state)
    )
}

fn role_name(role: i32) -> &'static str {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Admin) => "admin",
        _ => "member",
    }
}

fn state_name(state: i32) -> &'static str {
    match pb::MemberState::try_from(state) {
        Ok(pb::MemberState::Suspended) => "suspended",
        _ => "active",
    }
}

fn kind_name(kind: i32) -> &'static str {
    match pb::RoomKind::try_from(kind) {
        Ok(pb::RoomKind::Direct) => "direct",
        Ok(pb::RoomKind::Group) => "group",
        _ => "unknown",
    }
}

pub fn profile_json(p: &pb::Profile) -> Value {
    json!({
        "member_id": p.member_id,
        "display_name": p.display_name,
        "company": p.company,
        "photo_content_type": p.photo_content_type,
        "photo_bytes": p.photo.len(),
    })
}

pub fn profile_text(p: &pb::Profile) -> String {
    let photo = if p.photo.is_empty() {
        "none".to_string()
    } else {
        format!("{} ({} bytes)", safe(&p.photo_content_type), p.photo.len())
    };
    format!(
        "id:           {}\nname:         {}\ncompany:      {}\nphoto:        {}",
        safe(&p.member_id),
        safe(&p.display_name),
        safe(&p.company),
        photo
    )
}

pub fn room_json(r: &pb::Room) -> Value {
    json!({
        "id": r.id,
        "kind": kind_name(r.kind),
        "name": r.name,
        "members": r.members,
        "master": (!r.master.is_empty()).then_some(&r.master),
        "last_seq": r.last_seq,
        "last_read_seq": r.last_read_seq,
        "unread": r.unread,
        "created_at_ms": r.created_at_ms,
        "last_event_at_ms": r.last_event_at_ms,
        "host": r.host,
        "external": r.external,
        "line": r.line,
    })
}

/// The name a member sees for a room: a 1:1 room is named after the other.
pub fn room_title(r: &pb::Room, me: Option<&str>) -> String {
    if pb::RoomKind::try_from(r.kind) == Ok(pb::RoomKind::Direct) {
        let other = r.members.iter().find(|m| Some(m.as_str()) != me);
        return format!(
            "1:1 with {}",
            safe(other.map(String::as_str).unwrap_or("nobody"))
        );
    }
    safe(&r.name).into_owned()
}

/// What marks a room with members of other companies, in front of its name.
pub const EXTERNAL_MARK: &str = "[external]";
/// A LINE chat's room: LINE users are in it.
pub const LINE_MARK: &str = "[LINE]";

/// `ID  [external] NAME  N members  host TENANT  N unread`: the mark and
/// the host only for a room with members of other companies.
pub fn room_line(r: &pb::Room, me: Option<&str>) -> String {
    let mut title = room_title(r, me);
    if r.external {
        title = format!("{EXTERNAL_MARK} {title}");
    }
    if r.line {
        title = format!("{LINE_MARK} {title}");
    }
    let mut line = format!(
        "{}  {:<40} {:>3} members",
        safe(&r.id),
        title,
        r.members.len()
    );
    if r.external {
        line.push_str(&format!("  host {}", safe(&r.host)));
    }
    if r.unread > 0 {
        line.push_str(&format!("  {} unread", r.unread));
    }
    line
}

pub fn room_text(r: &pb::Room) -> String {
    let master = if r.master.is_empty() {
        String::new()
    } else {
        format!("\nmaster:   {}", safe(&r.master))
    };
    let external = match (r.external, r.line) {
        (true, true) => " (with members of other companies and LINE users)",
        (true, false) => " (with members of other companies)",
        (false, true) => " (with LINE users)",
        (false, false) => "",
    };
    format!(
        "room:     {}\nkind:     {}{}\nname:     {}{}\nhost:     {}\nmembers:  {}\nlast seq: {}\nunread:   {}",
        safe(&r.id),
        kind_name(r.kind),
        external,
        safe(&r.name),
        master,
        safe(&r.host),
        safe_list(&r.members),
        r.last_seq,
        r.unread
    )
}

pub fn notice_json(n: &pb::Notice) -> Value {
    json!({
        "id": n.id,
        "kind": n.kind,
        "text": n.text,
        "at_ms": n.at_ms,
    })
}

/// `notice KIND: TEXT`: the kind and text come from this node, but the text
/// may quote another company's names.
pub fn notice_line(n: &pb::Notice) -> String {
    format!("notice {}: {}", safe(&n.kind), safe(&n.text))
}

pub fn event_json(e: &pb::RoomEvent) -> Value {
    use pb::room_event::Body;
    let (kind, body) = match &e.body {
        Some(Body::Text(t)) => ("text", json!({"text": t.text})),
        Some(Body::Created(c)) => (
            "created",
            json!({"room_kind": kind_name(c.kind), "name": c.name, "members": c.members}),
        ),
        Some(Body::Joined(j)) => ("joined", json!({"members": j.members})),
        Some(Body::Left(l)) => (
            "left",
            json!({"new_master": (!l.new_master.is_empty()).then_some(&l.new_master)}),
        ),
        Some(Body::Removed(r)) => ("removed", json!({"member": r.member})),
        Some(Body::Renamed(r)) => ("renamed", json!({"name": r.name})),
        Some(Body::Sticker(s)) => ("sticker", json!({"name": s.name})),
        Some(Body::Attachment(a)) => (
            "attachment",
            json!({"id": a.id, "name": a.name, "content_type": a.content_type, "size": a.size, "sha256": a.sha256}),
        ),
        Some(Body::Unknown(_)) => ("unknown", Value::Null),
        Some(Body::Unsent(u)) => ("unsent", json!({"seq": u.seq})),
        None => ("unrecognised", Value::Null),
    };
    json!({
        "event_id": e.event_id,
        "room_id": e.room_id,
        "seq": e.seq,
        "sender": e.sender,
        "at_ms": e.at_ms,
        "kind": kind,
        "body": body,
    })
}

/// `#seq sender: text` for messages, `#seq * sender did something` for the rest.
pub fn event_line(e: &pb::RoomEvent) -> String {
    use pb::room_event::Body;
    let sender = safe(&e.sender);
    let what = match &e.body {
        Some(Body::Text(t)) => return format!("#{} {sender}: {}", e.seq, safe(&t.text)),
        Some(Body::Sticker(s)) => {
            return format!("#{} {sender}: [sticker {}]", e.seq, safe(&s.name));
        }
        Some(Body::Attachment(a)) => {
            return format!(
                "#{} {sender}: [file {} ({} bytes, {}) id {}]",
                e.seq,
                safe(&a.name),
                a.size,
                safe(&a.content_type),
                safe(&a.id)
            );
        }
        Some(Body::Unknown(_)) => "became unknown and left the room".to_string(),
        Some(Body::Unsent(u)) => format!("took back message #{}", u.seq),
        Some(Body::Created(c)) if c.name.is_empty() => {
            format!("started a 1:1 room with {}", safe_list(&c.members))
        }
        Some(Body::Created(c)) => format!(
            "created \"{}\" with {}",
            safe(&c.name),
            safe_list(&c.members)
        ),
        Some(Body::Joined(j)) => format!("added {}", safe_list(&j.members)),
        Some(Body::Left(l)) if !l.new_master.is_empty() => {
            format!("left; {} is the group master now", safe(&l.new_master))
        }
        Some(Body::Left(_)) => "left".to_string(),
        Some(Body::Removed(r)) => format!("removed {}", safe(&r.member)),
        Some(Body::Renamed(r)) => format!("renamed the room to \"{}\"", safe(&r.name)),
        None => "did something this client does not know".to_string(),
    };
    format!("#{} * {sender} {what}", e.seq)
}

pub fn peer_json(p: &pb::Peer) -> Value {
    json!({
        "tenant": p.tenant,
        "endpoint": p.endpoint,
        "state": p.state,
        "source": p.source,
        "created_at_ms": p.created_at_ms,
        "last_contact_at_ms": (p.last_contact_at_ms > 0).then_some(p.last_contact_at_ms),
        "last_error": (!p.last_error.is_empty()).then_some(&p.last_error),
        "queue_depth": p.queue_depth,
        "lag_ms": p.lag_ms,
        "ca_fingerprints": p.ca_fingerprints,
    })
}

pub fn peer_line(p: &pb::Peer) -> String {
    let contact = if p.last_contact_at_ms > 0 {
        let ago = (now_ms() - p.last_contact_at_ms).max(0) / 1000;
        format!("last contact {ago}s ago")
    } else {
        "never contacted".to_string()
    };
    let error = if p.last_error.is_empty() {
        String::new()
    } else {
        format!("  error: {}", safe(&p.last_error))
    };
    format!(
        "{:<28} {:<8} {:<24} {:<22} queue {} lag {}ms  ({}){}",
        safe(&p.tenant),
        safe(&p.state),
        safe(&p.endpoint),
        contact,
        p.queue_depth,
        p.lag_ms,
        safe(&p.source),
        error
    )
}

pub fn peer_test_json(r: &pb::PeerTestReport) -> Value {
    json!({
        "tenant": r.tenant,
        "ok": r.ok,
        "checks": r.checks.iter().map(|c| json!({"name": c.name, "ok": c.ok, "detail": c.detail})).collect::<Vec<_>>(),
    })
}

pub fn peer_test_text(r: &pb::PeerTestReport) -> String {
    let mut text = format!(
        "peering with {}: {}",
        safe(&r.tenant),
        if r.ok { "ok" } else { "PROBLEMS" }
    );
    for c in &r.checks {
        text.push_str(&format!(
            "\n  {} {:<16} {}",
            if c.ok { "ok  " } else { "FAIL" },
            safe(&c.name),
            safe(&c.detail)
        ));
    }
    text
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn ca_json(ca: &pb::CaStatus, notices: &[pb::PeerNotice]) -> Value {
    json!({
        "fingerprint": ca.fingerprint,
        "not_after_ms": ca.not_after_ms,
        "node_cert_not_after_ms": ca.node_cert_not_after_ms,
        "previous_fingerprint": (!ca.previous_fingerprint.is_empty()).then_some(&ca.previous_fingerprint),
        "peers": notices.iter().map(|n| json!({"tenant": n.tenant, "told": n.told, "detail": n.detail})).collect::<Vec<_>>(),
    })
}

pub fn ca_text(ca: &pb::CaStatus, notices: &[pb::PeerNotice]) -> String {
    let days = |ms: i64| (ms - now_ms()) / 86_400_000;
    let mut text = format!(
        "CA:               sha256 {} (valid {} more days)\nnode certificate: valid {} more days",
        safe(&ca.fingerprint),
        days(ca.not_after_ms),
        days(ca.node_cert_not_after_ms)
    );
    if !ca.previous_fingerprint.is_empty() {
        text.push_str(&format!(
            "\nchange-over:      peers still trust the previous CA sha256 {} until `admin ca retire`",
            safe(&ca.previous_fingerprint)
        ));
    }
    for n in notices {
        text.push_str(&format!(
            "\n  {} {}",
            if n.told { "told" } else { "NOT TOLD" },
            safe(&n.detail)
        ));
    }
    text
}

pub fn audit_json(e: &pb::AuditEntry) -> Value {
    let opt = |s: &String| (!s.is_empty()).then(|| s.clone());
    json!({
        "seq": e.seq,
        "at_ms": e.at_ms,
        "kind": e.kind,
        "actor": e.actor,
        "member": opt(&e.member),
        "external_user": opt(&e.external_user),
        "peer_tenant": opt(&e.peer_tenant),
        "detail": e.detail,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    })
}

pub fn audit_line(e: &pb::AuditEntry) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(e.at_ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| e.at_ms.to_string());
    let mut parts = vec![format!(
        "#{:<5} {at}  {:<18} by {}",
        e.seq,
        safe(&e.kind),
        safe(&e.actor)
    )];
    for (label, value) in [
        ("member", &e.member),
        ("external", &e.external_user),
        ("peer", &e.peer_tenant),
    ] {
        if !value.is_empty() {
            parts.push(format!("{label} {}", safe(value)));
        }
    }
    if !e.detail.is_empty() {
        parts.push(format!("— {}", safe(&e.detail)));
    }
    parts.join("  ")
}

pub const AUDIT_CSV_HEADER: [&str; 10] = [
    "seq",
    "at_ms",
    "kind",
    "actor",
    "member",
    "external_user",
    "peer_tenant",
    "detail",
    "prev_hash",
    "hash",
];

pub fn audit_csv_record(e: &pb::AuditEntry) -> [String; 10] {
    [
        e.seq.to_string(),
        e.at_ms.to_string(),
        e.kind.clone(),
        e.actor.clone(),
        e.member.clone(),
        e.external_user.clone(),
        e.peer_tenant.clone(),
        e.detail.clone(),
        e.prev_hash.clone(),
        e.hash.clone(),
    ]
}

pub fn request_json(r: &pb::FriendRequest) -> Value {
    json!({
        "id": r.id,
        "user_id": r.user_id,
        "direction": if r.outgoing { "outgoing" } else { "incoming" },
        "state": r.state,
        "display_name": (!r.display_name.is_empty()).then_some(&r.display_name),
        "company": (!r.company.is_empty()).then_some(&r.company),
        "tenant": r.tenant,
        "created_at_ms": r.created_at_ms,
    })
}

pub fn request_line(r: &pb::FriendRequest) -> String {
    if r.outgoing {
        format!(
            "{}  to   {:<32} {}",
            safe(&r.id),
            safe(&r.user_id),
            safe(&r.state)
        )
    } else {
        format!(
            "{}  from {:<32} {} ({})  {}",
            safe(&r.id),
            safe(&r.user_id),
            safe(&r.display_name),
            safe(&company_with_tenant(&r.company, &r.tenant)),
            safe(&r.state)
        )
    }
}

/// Another company's name as members see it: always with its verified
/// tenant id, as the name is whatever that company chose.
pub fn company_with_tenant(company: &str, tenant: &str) -> String {
    if company.is_empty() || company == tenant {
        tenant.to_string()
    } else {
        format!("{company} ({tenant})")
    }
}

pub fn contact_json(c: &pb::ExternalContact) -> Value {
    json!({
        "user_id": c.user_id,
        "display_name": c.display_name,
        "status": c.status,
        "tenant": c.tenant,
        "photo_content_type": c.photo_content_type,
        "photo_bytes": c.photo.len(),
        "fields": serde_json::from_str::<Value>(&c.fields_json).unwrap_or(Value::Null),
        "trashed": c.trashed,
        "created_at_ms": c.created_at_ms,
    })
}

pub fn contact_line(c: &pb::ExternalContact) -> String {
    format!(
        "{:<32} {:<24} {}",
        safe(&c.user_id),
        safe(&c.display_name),
        safe(&company_with_tenant(&c.status, &c.tenant))
    )
}

pub fn contact_text(c: &pb::ExternalContact) -> String {
    format!(
        "id:       {}\nname:     {} (synced from their company)\nstatus:   {}\nfields:   {}{}",
        safe(&c.user_id),
        safe(&c.display_name),
        safe(&company_with_tenant(&c.status, &c.tenant)),
        // JSON escapes C0 controls, not DEL, C1 or bidi controls.
        safe(&c.fields_json),
        if c.trashed { "\n(in the trash)" } else { "" }
    )
}

fn delivery_state_name(state: i32) -> &'static str {
    match pb::DeliveryState::try_from(state).unwrap_or_default() {
        pb::DeliveryState::Stored => "stored",
        pb::DeliveryState::Queued => "queued",
        pb::DeliveryState::Delivered => "delivered",
        pb::DeliveryState::Refused => "refused",
        pb::DeliveryState::Unspecified => "unknown",
    }
}

pub fn delivery_json(d: &pb::Delivery) -> Value {
    json!({
        "state": delivery_state_name(d.state),
        "reason": (!d.reason.is_empty()).then_some(&d.reason),
        "peers": d.peers.iter().map(|p| json!({
            "tenant": p.tenant,
            "state": delivery_state_name(p.state),
            "reason": (!p.reason.is_empty()).then_some(&p.reason),
            "attempts": p.attempts,
        })).collect::<Vec<_>>(),
    })
}

/// `delivered`, `queued for b.example`, `refused: why`.
pub fn delivery_line(d: &pb::Delivery) -> String {
    let state = delivery_state_name(d.state);
    if d.state == pb::DeliveryState::Queued as i32 {
        let waiting: Vec<Cow<str>> = d
            .peers
            .iter()
            .filter(|p| p.state == pb::DeliveryState::Queued as i32)
            .map(|p| {
                if p.tenant == crate::ids::LINE_TENANT {
                    Cow::Borrowed("LINE")
                } else {
                    safe(&p.tenant)
                }
            })
            .collect();
        format!("queued for {}", waiting.join(", "))
    } else if !d.reason.is_empty() {
        format!("{state}: {}", safe(&d.reason))
    } else {
        state.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, shown: &str) {
        assert_eq!(safe(input), shown, "input {input:?}");
    }

    #[test]
    fn ordinary_text_is_shown_as_it_is() {
        for text in [
            "hello, world",
            "Ünïcødé 日本語 한국어 العربية",
            "emoji 🦀 👨‍👩‍👧 🏳️‍🌈 👍🏽",
            "a backslash \\ and quotes \" '",
            "",
        ] {
            check(text, text);
            assert!(matches!(safe(text), Cow::Borrowed(_)));
        }
    }

    #[test]
    fn terminal_controls_are_escaped() {
        check("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07");
        check("\x1b[2J", "\\x1b[2J");
        check("nul\0 del\x7f", "nul\\x00 del\\x7f");
        check("csi \u{9b}2J", "csi \\u{9b}2J");
        check("tab\tcr\r", "tab\\tcr\\r");
    }

    #[test]
    fn a_line_break_cannot_start_a_line_of_its_own() {
        let shown = safe("hi\n#99 admin@a.example: send me your password\u{2028}x");
        assert!(!shown.contains('\n'));
        assert_eq!(
            shown,
            "hi\\n#99 admin@a.example: send me your password\\u{2028}x"
        );
    }

    #[test]
    fn text_that_reorders_or_hides_itself_is_escaped() {
        check("\u{202e}gnp.exe", "\\u{202e}gnp.exe");
        for c in ('\u{202a}'..='\u{202e}').chain('\u{2066}'..='\u{2069}') {
            let text = format!("a{c}b");
            assert_eq!(safe(&text), format!("a\\u{{{:x}}}b", u32::from(c)));
        }
        check("zero\u{200b}width\u{feff}", "zero\\u{200b}width\\u{feff}");
    }

    #[test]
    fn lines_escape_every_field_from_others() {
        let request = pb::FriendRequest {
            id: "01REQ".into(),
            user_id: "mallory@b.example".into(),
            display_name: "\x1b]0;pwned\x07Mallory".into(),
            company: "\x1b[2JEvil \u{202e}Corp".into(),
            state: "pending".into(),
            ..Default::default()
        };
        let line = request_line(&request);
        assert!(!line.chars().any(needs_escape), "{line:?}");
        assert!(line.contains("\\x1b]0;pwned\\x07Mallory"), "{line}");
        assert!(line.contains("\\x1b[2JEvil \\u{202e}Corp"), "{line}");
        // Scripts get the exact text.
        let json = request_json(&request);
        assert_eq!(json["display_name"], "\x1b]0;pwned\x07Mallory");
        assert_eq!(json["company"], "\x1b[2JEvil \u{202e}Corp");
    }

    #[test]
    fn an_external_room_is_marked_with_its_host() {
        let room = pb::Room {
            id: "01ROOM".into(),
            kind: pb::RoomKind::Group as i32,
            name: "Launch\x1b[2J".into(),
            members: vec!["alice@a.example".into(), "bob@b.example".into()],
            host: "b.example\u{202e}".into(),
            external: true,
            unread: 2,
            ..Default::default()
        };
        let line = room_line(&room, Some("alice@a.example"));
        assert!(!line.chars().any(needs_escape), "{line:?}");
        assert!(
            line.starts_with("01ROOM  [external] Launch\\x1b[2J "),
            "{line}"
        );
        assert!(
            line.ends_with("2 members  host b.example\\u{202e}  2 unread"),
            "{line}"
        );
        let internal = pb::Room {
            external: false,
            host: "a.example".into(),
            unread: 0,
            ..room.clone()
        };
        let line = room_line(&internal, None);
        assert!(
            !line.contains(EXTERNAL_MARK) && !line.contains("host"),
            "{line}"
        );
        let json = room_json(&room);
        assert_eq!(
            (&json["external"], &json["host"]),
            (&json!(true), &json!("b.example\u{202e}"))
        );
    }

    #[test]
    fn a_line_room_is_marked() {
        let room = pb::Room {
            id: "01ROOM".into(),
            kind: pb::RoomKind::Direct as i32,
            members: vec!["alice@a.example".into(), "uabc@line.invalid".into()],
            host: "a.example".into(),
            line: true,
            ..Default::default()
        };
        let line = room_line(&room, Some("alice@a.example"));
        assert!(
            line.starts_with("01ROOM  [LINE] 1:1 with uabc@line.invalid "),
            "{line}"
        );
        assert!(!line.contains(EXTERNAL_MARK), "{line}");
        assert!(room_text(&room).contains("(with LINE users)"));
        assert_eq!(room_json(&room)["line"], json!(true));
        let plain = room_line(
            &pb::Room {
                line: false,
                ..room
            },
            None,
        );
        assert!(!plain.contains(LINE_MARK), "{plain}");
    }

    #[test]
    fn json_is_exact_and_safe_to_print() {
        let value = json!({"text": "\x1b]0;pwned\x07 \x7f \u{9b}2J \u{202e}x\ny 日本語 👨‍👩‍👧"});
        let line = json_line(&value);
        assert!(!line.chars().any(needs_escape), "{line:?}");
        assert!(
            line.contains("\\u009b") && line.contains("\\u202e"),
            "{line}"
        );
        let back: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back, value);
    }
}
