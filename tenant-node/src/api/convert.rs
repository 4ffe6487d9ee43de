//! Domain types to protobuf and back. Nothing else in the node touches `pb`.

use works_proto::client::v1 as pb;

use crate::contacts::line::LineInvite;
use crate::error::{Error, Result};
use crate::ids::{EventId, MemberId, RoomId, TenantId};
use crate::live::watch::WatchItem;
use crate::model::Notice;
use crate::model::{EventBody, Member, MemberState, Profile, Role, Room, RoomEvent, RoomKind};
use crate::outbox::{Delivery, DeliveryState};
use crate::peers::{CaStatus, PeerNotice, PeerStatus, PeerTest};
use crate::policy::line::LineSettings;
use crate::policy::{Connected, ExternalSettings};
use crate::store::audit::{Entry, Filter};
use crate::store::outbox::OutboxState;
use crate::store::peers::PeerSource;

/// A room id the client sent, named by its field in errors.
pub fn room_id(input: &str) -> Result<RoomId> {
    RoomId::parse(input).map_err(Error::bad_id("room_id"))
}

/// An event id the client sent.
pub fn event_id(input: &str) -> Result<EventId> {
    EventId::parse(input).map_err(Error::bad_id("event_id"))
}

/// A member id of any company the client sent in `field`.
pub fn member_id(field: &'static str, input: &str) -> Result<MemberId> {
    MemberId::parse(input).map_err(Error::bad_id(field))
}

/// Member ids of any company the client sent in `field`, in order.
pub fn member_ids(field: &'static str, inputs: &[String]) -> Result<Vec<MemberId>> {
    inputs.iter().map(|m| member_id(field, m)).collect()
}

/// A tenant id the client sent in `field`.
pub fn tenant_id(field: &'static str, input: &str) -> Result<TenantId> {
    TenantId::parse(input).map_err(|e| Error::invalid(field, e.to_string()))
}

pub fn role_from_pb(value: i32) -> Result<Role> {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Unspecified) | Ok(pb::Role::Member) => Ok(Role::Member),
        Ok(pb::Role::Admin) => Ok(Role::Admin),
        Err(_) => Err(Error::invalid("role", format!("unknown role {value}"))),
    }
}

pub fn room_kind_from_pb(value: i32) -> Result<RoomKind> {
    match pb::RoomKind::try_from(value) {
        Ok(pb::RoomKind::Direct) => Ok(RoomKind::Direct),
        Ok(pb::RoomKind::Group) => Ok(RoomKind::Group),
        Ok(pb::RoomKind::Unspecified) => Err(Error::invalid(
            "kind",
            "say whether the room is direct or group",
        )),
        Err(_) => Err(Error::invalid("kind", format!("unknown room kind {value}"))),
    }
}

fn room_kind_to_pb(kind: RoomKind) -> pb::RoomKind {
    match kind {
        RoomKind::Direct => pb::RoomKind::Direct,
        RoomKind::Group => pb::RoomKind::Group,
    }
}

impl From<Member> for pb::Member {
    fn from(m: Member) -> Self {
        pb::Member {
            id: m.id.to_string(),
            display_name: m.display_name,
            has_photo: m.has_photo,
            role: match m.role {
                Role::Member => pb::Role::Member,
                Role::Admin => pb::Role::Admin,
            } as i32,
            state: match m.state {
                MemberState::Active => pb::MemberState::Active,
                MemberState::Suspended => pb::MemberState::Suspended,
            } as i32,
            created_at_ms: m.created_at_ms,
        }
    }
}

impl From<Profile> for pb::Profile {
    fn from(p: Profile) -> Self {
        let (photo, photo_content_type) = match p.photo {
            Some(photo) => (photo.bytes, photo.content_type),
            None => (Vec::new(), String::new()),
        };
        pb::Profile {
            member_id: p.member_id.to_string(),
            display_name: p.display_name,
            photo,
            photo_content_type,
            company: p.company,
        }
    }
}

/// A room for the client; `tenant` is this node's, the host when the room
/// names none.
pub fn room_to_pb(r: Room, tenant: &crate::ids::TenantId) -> pb::Room {
    {
        pb::Room {
            id: r.id.to_string(),
            kind: room_kind_to_pb(r.kind) as i32,
            name: r.name,
            members: r.members.iter().map(ToString::to_string).collect(),
            master: r.master.map(|m| m.to_string()).unwrap_or_default(),
            last_seq: r.last_seq,
            last_read_seq: r.last_read_seq,
            unread: r.unread,
            created_at_ms: r.created_at_ms,
            last_event_at_ms: r.last_event_at_ms,
            host: r
                .host
                .map(|h| h.to_string())
                .unwrap_or_else(|| tenant.to_string()),
            external: r.external,
            line: r.line,
        }
    }
}

impl From<RoomEvent> for pb::RoomEvent {
    fn from(e: RoomEvent) -> Self {
        use pb::room_event::Body;
        let body = match e.body {
            EventBody::Text { text } => Body::Text(pb::TextMessage { text }),
            EventBody::Created {
                room_kind,
                name,
                members,
            } => Body::Created(pb::RoomCreated {
                kind: room_kind_to_pb(room_kind) as i32,
                name,
                members: members.iter().map(ToString::to_string).collect(),
            }),
            EventBody::Joined { members } => Body::Joined(pb::MembersJoined {
                members: members.iter().map(ToString::to_string).collect(),
            }),
            EventBody::Left { new_master } => Body::Left(pb::MemberLeft {
                new_master: new_master.map(|m| m.to_string()).unwrap_or_default(),
            }),
            EventBody::Removed { member } => Body::Removed(pb::MemberRemoved {
                member: member.to_string(),
            }),
            EventBody::Renamed { name } => Body::Renamed(pb::RoomRenamed { name }),
            EventBody::Sticker { name } => Body::Sticker(pb::Sticker { name }),
            EventBody::Attachment(meta) => Body::Attachment(meta.into()),
            EventBody::Unsent { seq } => Body::Unsent(pb::MessageUnsent { seq }),
            EventBody::Unknown => Body::Unknown(pb::MemberUnknown {}),
            // Never shown: history and streams skip it.
            EventBody::Withheld => Body::Unknown(pb::MemberUnknown {}),
        };
        pb::RoomEvent {
            event_id: e.id.to_string(),
            room_id: e.room.to_string(),
            seq: e.seq,
            sender: e.sender.to_string(),
            at_ms: e.at_ms,
            body: Some(body),
        }
    }
}

impl From<PeerStatus> for pb::Peer {
    fn from(p: PeerStatus) -> Self {
        pb::Peer {
            tenant: p.tenant.to_string(),
            endpoint: p.endpoint,
            state: p.state.to_string(),
            source: match p.source {
                PeerSource::Invitation => "invitation",
                PeerSource::Config => "config",
            }
            .to_string(),
            created_at_ms: p.created_at_ms,
            last_contact_at_ms: p.last_contact_at_ms.unwrap_or(0),
            last_error: p.last_error.unwrap_or_default(),
            queue_depth: p.queue_depth,
            lag_ms: p.lag_ms,
            ca_fingerprints: p.ca_fingerprints,
        }
    }
}

impl From<PeerTest> for pb::PeerTestReport {
    fn from(t: PeerTest) -> Self {
        pb::PeerTestReport {
            tenant: t.tenant.to_string(),
            ok: t.ok,
            checks: t
                .checks
                .into_iter()
                .map(|c| pb::PeerCheck {
                    name: c.name.to_string(),
                    ok: c.ok,
                    detail: c.detail,
                })
                .collect(),
        }
    }
}

impl From<CaStatus> for pb::CaStatus {
    fn from(c: CaStatus) -> Self {
        pb::CaStatus {
            fingerprint: c.fingerprint,
            not_after_ms: c.not_after_ms,
            node_cert_not_after_ms: c.node_cert_not_after_ms,
            previous_fingerprint: c.previous_fingerprint.unwrap_or_default(),
        }
    }
}

impl From<PeerNotice> for pb::PeerNotice {
    fn from(n: PeerNotice) -> Self {
        pb::PeerNotice {
            tenant: n.tenant.to_string(),
            told: n.told,
            detail: n.detail,
        }
    }
}

pub fn ca_change(ca: CaStatus, notices: Vec<PeerNotice>) -> pb::CaChange {
    pb::CaChange {
        ca: Some(ca.into()),
        peers: notices.into_iter().map(Into::into).collect(),
    }
}

impl From<Notice> for pb::Notice {
    fn from(n: Notice) -> Self {
        pb::Notice {
            id: n.id,
            kind: n.kind,
            text: n.text,
            at_ms: n.at_ms,
        }
    }
}

impl From<WatchItem> for pb::WatchEvent {
    fn from(item: WatchItem) -> Self {
        let kind = match item {
            WatchItem::Room(event) => pb::watch_event::Kind::RoomEvent(event.into()),
            WatchItem::Notice(notice) => pb::watch_event::Kind::Notice(notice.into()),
        };
        pb::WatchEvent { kind: Some(kind) }
    }
}

impl From<ExternalSettings> for pb::ExternalSettings {
    fn from(s: ExternalSettings) -> Self {
        pb::ExternalSettings {
            enabled: s.enabled,
            auto_grant: s.auto_grant,
            restrict_files: s.restrict_files,
            company: s.company,
        }
    }
}

impl From<LineSettings> for pb::LineSettings {
    fn from(s: LineSettings) -> Self {
        let (channel_id, basic_id) = s.channel.unwrap_or_default();
        pb::LineSettings {
            enabled: s.enabled,
            auto_grant: s.auto_grant,
            restrict_files: s.restrict_files,
            greeting: s.greeting,
            channel_id,
            basic_id,
        }
    }
}

impl From<LineInvite> for pb::LineInvite {
    fn from(i: LineInvite) -> Self {
        pb::LineInvite {
            message_id: i.message_id,
            basic_id: i.basic_id,
            link: i.link,
            qr_svg: i.qr_svg,
            qr_png: i.qr_png,
            qr_terminal: i.qr_terminal,
        }
    }
}

impl From<Connected> for pb::ConnectedMember {
    fn from(c: Connected) -> Self {
        pb::ConnectedMember {
            member_id: c.member.to_string(),
            display_name: c.display_name,
            granted_by: c.granted_by,
            granted_at_ms: c.granted_at_ms,
        }
    }
}

impl From<Entry> for pb::AuditEntry {
    fn from(e: Entry) -> Self {
        pb::AuditEntry {
            seq: e.seq,
            at_ms: e.at_ms,
            kind: e.kind,
            actor: e.actor,
            member: e.member.unwrap_or_default(),
            external_user: e.external_user.unwrap_or_default(),
            peer_tenant: e.peer_tenant.unwrap_or_default(),
            detail: e.detail,
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

/// Empty strings and zeros mean "no filter".
pub fn audit_filter(r: &pb::AuditSearchRequest) -> Filter {
    let text = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_lowercase());
    let time = |t: i64| (t != 0).then_some(t);
    Filter {
        member: text(&r.member),
        external_user: text(&r.external_user),
        peer_tenant: text(&r.peer_tenant),
        text: text(&r.text),
        since_ms: time(r.since_ms),
        until_ms: time(r.until_ms),
        after_seq: r.after_seq.max(0),
        limit: i64::from(r.limit),
    }
}

/// A profile found at another company (`find_external` checked that it is
/// the user asked for, so the tenant is the one that answered).
pub fn external_profile(p: works_bridge::PublicProfile) -> pb::ExternalProfile {
    pb::ExternalProfile {
        tenant: p.user.tenant().to_string(),
        user_id: p.user.to_string(),
        display_name: p.display_name,
        photo: p.photo,
        photo_content_type: p.photo_content_type,
        company: p.company,
    }
}

impl From<crate::contacts::FriendRequestView> for pb::FriendRequest {
    fn from(r: crate::contacts::FriendRequestView) -> Self {
        pb::FriendRequest {
            id: r.id,
            user_id: r.external_user,
            outgoing: r.outgoing,
            state: r.state,
            display_name: r.display_name,
            company: r.company,
            created_at_ms: r.created_at_ms,
            tenant: r.tenant,
        }
    }
}

impl From<crate::contacts::ContactView> for pb::ExternalContact {
    fn from(c: crate::contacts::ContactView) -> Self {
        pb::ExternalContact {
            user_id: c.user_id,
            display_name: c.display_name,
            photo: c.photo,
            photo_content_type: c.photo_content_type,
            status: c.status,
            fields_json: c.fields.to_string(),
            trashed: c.trashed,
            created_at_ms: c.created_at_ms,
            tenant: c.tenant,
        }
    }
}

pub fn contact_edit(r: pb::EditContactRequest) -> crate::contacts::ContactEdit {
    let mut synced = Vec::new();
    if r.display_name.is_some() {
        synced.push("the display name");
    }
    if r.photo.is_some() {
        synced.push("the photo");
    }
    if r.status.is_some() {
        synced.push("the status");
    }
    let mut messengers: Vec<(String, String)> = r.messengers.into_iter().collect();
    messengers.sort();
    crate::contacts::ContactEdit {
        name: r.name,
        phones: r.replace_phones.then_some(r.phones),
        emails: r.replace_emails.then_some(r.emails),
        texts: vec![
            ("group", r.group),
            ("company", r.company),
            ("team", r.team),
            ("position", r.position),
            ("website", r.website),
            ("memo", r.memo),
        ],
        birth_date: r.birth_date,
        messengers,
        synced,
    }
}

impl From<Delivery> for pb::Delivery {
    fn from(d: Delivery) -> Self {
        pb::Delivery {
            state: delivery_state_to_pb(d.state) as i32,
            reason: d.reason.unwrap_or_default(),
            peers: d
                .peers
                .into_iter()
                .map(|p| pb::PeerDelivery {
                    tenant: p.peer.to_string(),
                    state: delivery_state_to_pb(match p.state {
                        OutboxState::Queued => DeliveryState::Queued,
                        OutboxState::Delivered => DeliveryState::Delivered,
                        OutboxState::Refused => DeliveryState::Refused,
                    }) as i32,
                    reason: p.reason.unwrap_or_default(),
                    attempts: p.attempts,
                })
                .collect(),
        }
    }
}

fn delivery_state_to_pb(s: DeliveryState) -> pb::DeliveryState {
    match s {
        DeliveryState::Stored => pb::DeliveryState::Stored,
        DeliveryState::Queued => pb::DeliveryState::Queued,
        DeliveryState::Delivered => pb::DeliveryState::Delivered,
        DeliveryState::Refused => pb::DeliveryState::Refused,
    }
}

impl From<crate::model::AttachmentMeta> for pb::Attachment {
    fn from(m: crate::model::AttachmentMeta) -> Self {
        pb::Attachment {
            id: m.id,
            name: m.name,
            content_type: m.content_type,
            size: m.size,
            sha256: m.sha256,
        }
    }
}
