//! The LINE inbox's processor: each webhook event, in the order LINE sent
//! them, applied once in one transaction with its audit entry and its
//! inbox mark. What LINE must tell first (a profile, a message's content)
//! is fetched before the transaction; LINE being unavailable leaves the
//! event in the inbox for later, in order.
//!
//! - `follow`: the LINE user is recorded with LINE's name and photo and
//!   gets the admin's greeting.
//! - A message in the 1:1 chat carrying a member's code (their member id)
//!   binds the LINE user to that member: their 1:1 room (a LINE room) and
//!   the LINE user as the member's contact. Bound to several members, the
//!   LINE user chooses whom they write to (quick replies carrying the
//!   codes), and later messages go to that member's room.
//! - A member's code posted in a LINE group links the group to a room with
//!   that member as master; LINE users join it as they speak or are added.
//! - `unsend` takes the message back here; the audit keeps it.
//! - Events LINE sends in `standby` mode are recorded, never answered.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::ids::{self, MemberId, RoomId};
use crate::messaging_api::{CallError, Channel, LineProfile};
use crate::model::{AttachmentMeta, EventBody, Photo};
use crate::outbox::lease::Lease;
use crate::rooms::{Applied, Change};
use crate::store::audit::{self, NewEntry};
use crate::store::{WriteTx, attachments, line, now_ms, rooms};
use crate::tenant::Tenant;

const BATCH: u32 = 32;
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A LINE user's picture is kept as a photo at most this large.
const MAX_PICTURE_BYTES: usize = 4 * 1024 * 1024;
/// Quick-reply labels are at most 20 characters.
const LABEL_CHARS: usize = 20;

/// Processes the inbox for as long as the node runs.
pub async fn run(tenant: Arc<Tenant>) {
    let Some(channel) = tenant.line.clone() else {
        return;
    };
    let mut backoff = MIN_BACKOFF;
    // Among replicas, the lease's holder alone processes the inbox, in order.
    let mut lease = Lease::new("line.inbox");
    loop {
        match lease.hold(&tenant).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                tokio::time::sleep(crate::outbox::lease::RENEWAL).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot take the LINE inbox's lease");
                tokio::time::sleep(backoff).await;
                continue;
            }
        }
        let next = match tenant.store.pool().acquire().await {
            Ok(mut conn) => line::inbox_next(&mut conn, BATCH).await,
            Err(e) => Err(e.into()),
        };
        let batch = match next {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the LINE inbox");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        if batch.is_empty() {
            let _ =
                tokio::time::timeout(crate::outbox::lease::RENEWAL, tenant.line_inbox.notified())
                    .await;
            continue;
        }
        for (id, text) in batch {
            match tenant
                .process_line_event(&channel, &mut lease, id, &text)
                .await
            {
                Ok(()) => backoff = MIN_BACKOFF,
                Err(e) => {
                    tracing::info!(error = %e, "a LINE event waits; will retry");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    break;
                }
            }
        }
    }
}

/// Where a LINE event happened.
#[derive(Debug, Clone)]
enum Source {
    User(String),
    Group { group: String, user: Option<String> },
    Other,
}

impl Source {
    fn of(event: &Value) -> Source {
        let source = &event["source"];
        let user = source["userId"].as_str().map(str::to_string);
        match source["type"].as_str() {
            Some("user") => user.map(Source::User).unwrap_or(Source::Other),
            Some("group") => match source["groupId"].as_str() {
                Some(group) => Source::Group {
                    group: group.to_string(),
                    user,
                },
                None => Source::Other,
            },
            _ => Source::Other,
        }
    }

    fn user(&self) -> Option<&str> {
        match self {
            Source::User(user) => Some(user),
            Source::Group { user, .. } => user.as_deref(),
            Source::Other => None,
        }
    }
}

/// What LINE told before the transaction.
#[derive(Default)]
struct Fetched {
    /// The speaking user's profile, when they are new here.
    profile: Option<(String, Option<Photo>)>,
    /// Users a group event names, with their profiles.
    joined: Vec<(String, String, Option<Photo>)>,
    /// A message's content.
    content: Option<crate::messaging_api::Content>,
    group_name: Option<String>,
}

/// What applying an event did.
struct Done {
    outcome: String,
    applied: Vec<Applied>,
    pushed: bool,
    member: Option<MemberId>,
}

impl Done {
    /// A LINE user's message stored in `room` (or not kept at all).
    fn stored(&mut self, applied: Option<Applied>, room: &RoomId) {
        self.outcome = match &applied {
            Some(a) => format!("stored as #{} in room {room}", a.event.seq),
            None => "ignored: a kind of message the product does not keep".into(),
        };
        self.applied.extend(applied);
    }

    fn just(outcome: impl Into<String>) -> Done {
        Done {
            outcome: outcome.into(),
            applied: Vec::new(),
            pushed: false,
            member: None,
        }
    }
}

/// LINE unavailable (try later) or a refusal for good (`Ok(None)`).
fn later_or_none<T>(result: std::result::Result<T, CallError>) -> Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(CallError::Later { reason, .. }) => {
            Err(Error::Unavailable(format!("LINE is unavailable: {reason}")))
        }
        Err(e) => {
            tracing::info!(error = %e, "LINE refused a call; going on without it");
            Ok(None)
        }
    }
}

impl Tenant {
    async fn process_line_event(
        &self,
        channel: &Channel,
        lease: &mut Lease,
        id: i64,
        text: &str,
    ) -> Result<()> {
        let event: Value = match serde_json::from_str(text) {
            Ok(event) => event,
            Err(e) => {
                return self
                    .unreadable_line_event(lease, id, &format!("unreadable: {e}"))
                    .await;
            }
        };
        let source = Source::of(&event);
        let fetched = self.fetch_for(channel, &event, &source).await?;
        let mut w = self.store.begin_write().await?;
        let done = match self
            .apply_line_event(&mut w, &event, &source, fetched)
            .await
        {
            Ok(done) => done,
            Err(e) if e.is_fault() => return Err(e),
            Err(refused) => {
                drop(w);
                w = self.store.begin_write().await?;
                tracing::info!(reason = %refused, "a LINE event was refused");
                Done::just(format!("refused: {refused}"))
            }
        };
        let kind = event["type"].as_str().unwrap_or("?");
        let mut entry = NewEntry::new(&format!("line.{kind}"), source.user().unwrap_or("line"))
            .peer(ids::LINE_TENANT)
            .detail(summary(&event, &done.outcome));
        if let Some(user) = source.user().and_then(ids::line_member) {
            entry = entry.external(user);
        }
        if let Some(member) = &done.member {
            entry = entry.member(member);
        }
        if !lease.fence(self, &mut w.tx).await? {
            return Err(Error::Unavailable(
                "another replica processes the LINE inbox now".into(),
            ));
        }
        audit::append(&mut w.tx, &entry, now_ms()).await?;
        line::inbox_done(&mut w.tx, id, &done.outcome, now_ms()).await?;
        w.commit().await?;
        for applied in done.applied {
            self.announce(applied);
        }
        if done.pushed {
            self.outbox.wake(&ids::line_tenant());
        }
        Ok(())
    }

    /// Closes an event that cannot be read, with its audit entry, while this
    /// replica holds the inbox.
    async fn unreadable_line_event(&self, lease: &mut Lease, id: i64, outcome: &str) -> Result<()> {
        let mut w = self.store.begin_write().await?;
        if !lease.fence(self, &mut w.tx).await? {
            return Err(Error::Unavailable(
                "another replica processes the LINE inbox now".into(),
            ));
        }
        audit::append(
            &mut w.tx,
            &NewEntry::new("line.unreadable", "line").detail(outcome.to_string()),
            now_ms(),
        )
        .await?;
        line::inbox_done(&mut w.tx, id, outcome, now_ms()).await?;
        w.commit().await
    }

    /// Fetches what LINE must tell before the event can be applied.
    async fn fetch_for(
        &self,
        channel: &Channel,
        event: &Value,
        source: &Source,
    ) -> Result<Fetched> {
        let mut fetched = Fetched::default();
        let kind = event["type"].as_str().unwrap_or_default();
        let known = |user: &str| {
            let user = user.to_string();
            async move {
                let mut conn = self.store.pool().acquire().await?;
                Ok::<bool, Error>(line::user(&mut conn, &user).await?.is_some())
            }
        };
        let profile = |user: String| async move {
            let found = match source {
                Source::Group { group, .. } => {
                    later_or_none(channel.group_member_profile(group, &user).await)?
                }
                _ => later_or_none(channel.profile(&user).await)?,
            };
            Ok::<_, Error>(match found {
                Some(p) => Some((p.display_name.clone(), self.picture(channel, &p).await?)),
                None => None,
            })
        };
        match kind {
            "follow" => {
                if let Some(user) = source.user() {
                    fetched.profile = profile(user.to_string()).await?;
                }
            }
            "message" => {
                if let Some(user) = source.user()
                    && !known(user).await?
                {
                    fetched.profile = profile(user.to_string()).await?;
                }
                let message = &event["message"];
                if matches!(
                    message["type"].as_str(),
                    Some("image" | "video" | "audio" | "file")
                ) && let Some(message_id) = message["id"].as_str()
                {
                    fetched.content = later_or_none(
                        channel
                            .content(message_id, self.limits.max_attachment_bytes)
                            .await,
                    )?;
                }
            }
            "join" => {
                if let Source::Group { group, .. } = source {
                    fetched.group_name =
                        later_or_none(channel.group_summary(group).await)?.map(|s| s.group_name);
                }
            }
            "memberJoined" => {
                if let Some(members) = event["joined"]["members"].as_array() {
                    for m in members {
                        if let Some(user) = m["userId"].as_str() {
                            let (name, photo) = profile(user.to_string())
                                .await?
                                .unwrap_or_else(|| ("LINE user".into(), None));
                            fetched.joined.push((user.to_string(), name, photo));
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(fetched)
    }

    /// A LINE profile picture as a photo, when there is one we can read.
    async fn picture(&self, channel: &Channel, profile: &LineProfile) -> Result<Option<Photo>> {
        let Some(url) = &profile.picture_url else {
            return Ok(None);
        };
        let Some(content) = later_or_none(channel.fetch_public(url, MAX_PICTURE_BYTES).await)?
        else {
            return Ok(None);
        };
        match crate::accounts::photo::normalize(content.bytes, MAX_PICTURE_BYTES).await {
            Ok(photo) => Ok(Some(photo)),
            Err(e) => {
                tracing::info!(error = %e, "a LINE profile picture is not a photo we keep");
                Ok(None)
            }
        }
    }

    async fn apply_line_event(
        &self,
        w: &mut WriteTx,
        event: &Value,
        source: &Source,
        fetched: Fetched,
    ) -> Result<Done> {
        let kind = event["type"].as_str().unwrap_or_default();
        let standby = event["mode"].as_str() == Some("standby");
        if standby {
            return Ok(Done::just("standby: recorded, not answered"));
        }
        let conn = &mut w.tx;
        match (kind, source) {
            ("follow", Source::User(user)) => {
                let (name, photo) = fetched
                    .profile
                    .unwrap_or_else(|| ("LINE user".into(), None));
                self.record_line_user(conn, user, &name, photo.as_ref(), Some(true))
                    .await?;
                let mut done = Done::just("followed");
                let settings = self.read_line_settings_in(conn).await?;
                if settings.enabled && !settings.greeting.is_empty() {
                    self.queue_line_notice(conn, user, &settings.greeting, None)
                        .await?;
                    done.pushed = true;
                    done.outcome = "followed; greeted".into();
                }
                Ok(done)
            }
            ("unfollow", Source::User(user)) => {
                line::set_following(conn, user, false).await?;
                Ok(Done::just("unfollowed"))
            }
            ("message", Source::User(user)) => {
                let lu = self
                    .known_line_user(conn, user, &fetched, Some(true))
                    .await?;
                self.line_direct_message(w, &lu, event, fetched).await
            }
            (
                "unsend",
                Source::User(user)
                | Source::Group {
                    user: Some(user), ..
                },
            ) => self.line_unsend(conn, user, event).await,
            ("join", Source::Group { group, .. }) => {
                let name = fetched.group_name.unwrap_or_else(|| "LINE group".into());
                line::joined_group(conn, group, &name, now_ms()).await?;
                Ok(Done::just("joined the group"))
            }
            ("leave", Source::Group { group, .. }) => {
                line::left_group(conn, group, now_ms()).await?;
                Ok(Done::just("left the group"))
            }
            ("memberJoined", Source::Group { group, .. }) => {
                let Some(room) = line::group(conn, group).await?.and_then(|g| g.room) else {
                    return Ok(Done::just("group not linked to a room"));
                };
                let mut joiners = Vec::new();
                for (user, name, photo) in &fetched.joined {
                    let lu = self
                        .record_line_user(conn, user, name, photo.as_ref(), None)
                        .await?;
                    joiners.push(lu.member);
                }
                let applied = self.bring_into_line_room(conn, &room, joiners).await?;
                Ok(Done {
                    outcome: "members joined".into(),
                    applied: applied.into_iter().collect(),
                    pushed: false,
                    member: None,
                })
            }
            ("memberLeft", Source::Group { group, .. }) => {
                let Some(room) = line::group(conn, group).await?.and_then(|g| g.room) else {
                    return Ok(Done::just("group not linked to a room"));
                };
                let mut applied = Vec::new();
                let left: Vec<&str> = event["left"]["members"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|m| m["userId"].as_str()).collect())
                    .unwrap_or_default();
                for user in left {
                    let Some(member) = ids::line_member(user) else {
                        continue;
                    };
                    let row = line_room(conn, &room).await?;
                    let members = rooms::member_ids(conn, &room).await?;
                    if !members.contains(&member) {
                        continue;
                    }
                    let Some(master) = acting_member(&row, &members, &self.id) else {
                        continue;
                    };
                    let change = Change::new(&master, EventBody::Removed { member }, None);
                    applied.push(self.host_change(conn, &row, change).await?);
                }
                Ok(Done {
                    outcome: "members left".into(),
                    applied,
                    pushed: false,
                    member: None,
                })
            }
            (
                "message",
                Source::Group {
                    group,
                    user: Some(user),
                },
            ) => {
                let lu = self.known_line_user(conn, user, &fetched, None).await?;
                self.line_group_message(w, group, &lu, event, fetched).await
            }
            _ => Ok(Done::just(format!("ignored: {kind} event"))),
        }
    }

    /// The LINE user who wrote, recorded now (with the profile fetched for
    /// them) if they are new here.
    async fn known_line_user(
        &self,
        conn: &mut sqlx::AnyConnection,
        user: &str,
        fetched: &Fetched,
        following: Option<bool>,
    ) -> Result<line::LineUserRow> {
        if let Some(lu) = line::user(conn, user).await? {
            return Ok(lu);
        }
        let (name, photo) = fetched
            .profile
            .clone()
            .unwrap_or_else(|| ("LINE user".into(), None));
        self.record_line_user(conn, user, &name, photo.as_ref(), following)
            .await
    }

    /// Records a LINE user with LINE's profile; the contacts of members
    /// bound to them follow LINE's name and photo.
    async fn record_line_user(
        &self,
        conn: &mut sqlx::AnyConnection,
        user: &str,
        name: &str,
        photo: Option<&Photo>,
        following: Option<bool>,
    ) -> Result<line::LineUserRow> {
        let member = ids::line_member(user)
            .ok_or_else(|| Error::invalid("source.userId", "is not a LINE user id"))?;
        let name: String = name.chars().filter(|c| !c.is_control()).take(100).collect();
        let name = if name.trim().is_empty() {
            "LINE user".to_string()
        } else {
            name.trim().to_string()
        };
        line::upsert_user(conn, user, &member, &name, photo, following, now_ms()).await?;
        for (owner, _) in line::bindings(conn, user).await? {
            self.line_contact(conn, &owner, &member, &name, photo, now_ms())
                .await?;
        }
        line::user(conn, user)
            .await?
            .ok_or_else(|| Error::Internal("a LINE user just recorded is not there".into()))
    }

    /// A message in the 1:1 chat with the account.
    async fn line_direct_message(
        &self,
        w: &mut WriteTx,
        lu: &line::LineUserRow,
        event: &Value,
        fetched: Fetched,
    ) -> Result<Done> {
        let conn = &mut w.tx;
        let message = &event["message"];
        let code = self.member_code(conn, message).await?;
        let mut done = Done::just("");
        let bound = line::bindings(conn, &lu.user_id).await?;
        let target = match code {
            Some(member) => match bound.iter().find(|(m, _)| *m == member) {
                Some((_, room)) => {
                    if lu.writes_to.as_ref() != Some(&member) && bound.len() > 1 {
                        let name = self.display_name(conn, &member).await?;
                        self.queue_line_notice(
                            conn,
                            &lu.user_id,
                            &format!("You are now writing to {name}."),
                            None,
                        )
                        .await?;
                        done.pushed = true;
                    }
                    line::set_writes_to(conn, &lu.user_id, &member).await?;
                    (member, *room)
                }
                None => {
                    let room = self.bind_line_user(conn, lu, &member, &mut done).await?;
                    let mut all: Vec<MemberId> = bound.iter().map(|(m, _)| m.clone()).collect();
                    all.push(member.clone());
                    if all.len() > 1 {
                        let quick = self.choice_of(conn, &all).await?;
                        self.queue_line_notice(
                            conn,
                            &lu.user_id,
                            "You can write to several people here. Choose whom you write to:",
                            Some(quick),
                        )
                        .await?;
                        done.pushed = true;
                    }
                    line::set_writes_to(conn, &lu.user_id, &member).await?;
                    (member, room)
                }
            },
            None => {
                let chosen = lu
                    .writes_to
                    .as_ref()
                    .and_then(|w| bound.iter().find(|(m, _)| m == w))
                    .or_else(|| bound.last());
                match chosen {
                    Some((member, room)) => (member.clone(), *room),
                    None => {
                        if self.read_line_settings_in(conn).await?.enabled {
                            self.queue_line_notice(
                                conn,
                                &lu.user_id,
                                "Send the message ID of the person you want to talk to.",
                                None,
                            )
                            .await?;
                            done.pushed = true;
                        }
                        done.outcome = "not bound to a member: asked for a message ID".into();
                        return Ok(done);
                    }
                }
            }
        };
        let (member, room) = target;
        done.member = Some(member.clone());
        let applied = self
            .store_line_message(conn, &room, &lu.member, message, fetched)
            .await?;
        done.stored(applied, &room);
        Ok(done)
    }

    /// Binds a LINE user to our member: their 1:1 room and the contact.
    async fn bind_line_user(
        &self,
        conn: &mut sqlx::AnyConnection,
        lu: &line::LineUserRow,
        member: &MemberId,
        done: &mut Done,
    ) -> Result<RoomId> {
        let room = RoomId::generate();
        let applied = self
            .host_new_room_in(
                conn,
                &room,
                member,
                crate::model::RoomKind::Direct,
                "",
                vec![member.clone(), lu.member.clone()],
                Some(&lu.user_id),
            )
            .await?;
        line::bind(conn, &lu.user_id, member, &room, now_ms()).await?;
        let photo = line::photo(conn, &lu.member).await?;
        self.line_contact(
            conn,
            member,
            &lu.member,
            &lu.display_name,
            photo.as_ref(),
            now_ms(),
        )
        .await?;
        done.applied.push(applied);
        tracing::info!(member = %member, line_user = %lu.member, room = %room, "LINE user bound to a member");
        Ok(room)
    }

    /// Quick replies, one per member the LINE user may write to; each sends
    /// that member's code.
    async fn choice_of(
        &self,
        conn: &mut sqlx::AnyConnection,
        members: &[MemberId],
    ) -> Result<Value> {
        let mut items = Vec::new();
        for member in members.iter().take(13) {
            let name = self.display_name(conn, member).await?;
            let label: String = name.chars().take(LABEL_CHARS).collect();
            items.push(json!({
                "type": "action",
                "action": { "type": "message", "label": label, "text": format!("To {member}") },
            }));
        }
        Ok(json!({ "items": items }))
    }

    async fn display_name(
        &self,
        conn: &mut sqlx::AnyConnection,
        member: &MemberId,
    ) -> Result<String> {
        Ok(crate::store::members::member(conn, member)
            .await?
            .map(|m| m.display_name)
            .unwrap_or_else(|| member.name().to_string()))
    }

    /// The first member of ours a text message names by their code (member
    /// id) who may chat with LINE users now.
    async fn member_code(
        &self,
        conn: &mut sqlx::AnyConnection,
        message: &Value,
    ) -> Result<Option<MemberId>> {
        if message["type"].as_str() != Some("text") {
            return Ok(None);
        }
        let text = message["text"].as_str().unwrap_or_default();
        let suffix = format!("@{}", self.id);
        for word in text.split(|c: char| c.is_whitespace() || ",;:()[]<>\"'「」、。".contains(c))
        {
            let word = word.trim_end_matches(['.', '!', '?']);
            if word.len() > suffix.len() && word.to_ascii_lowercase().ends_with(&suffix) {
                let Ok(member) = MemberId::parse(word) else {
                    continue;
                };
                if line::usable_by(conn, &member).await? {
                    return Ok(Some(member));
                }
            }
        }
        Ok(None)
    }

    /// Stores what a LINE user sent in a room: text, a sticker (by LINE's
    /// ids), a file fetched from LINE, or a location as text.
    async fn store_line_message(
        &self,
        conn: &mut sqlx::AnyConnection,
        room: &RoomId,
        sender: &MemberId,
        message: &Value,
        fetched: Fetched,
    ) -> Result<Option<Applied>> {
        let line_id = message["id"].as_str().unwrap_or_default().to_string();
        let body = match message["type"].as_str() {
            Some("text") => {
                let text = message["text"].as_str().unwrap_or_default();
                let limit = self.limits.max_text_bytes;
                let mut cut = text.len().min(limit);
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                EventBody::Text {
                    text: text[..cut].to_string(),
                }
            }
            Some("sticker") => {
                let package = message["packageId"].as_str().unwrap_or_default();
                let sticker = message["stickerId"].as_str().unwrap_or_default();
                let name = format!("line:{package}:{sticker}");
                if crate::outbox::line::line_sticker(&name).is_none() {
                    return Err(Error::invalid("message", "a sticker without LINE's ids"));
                }
                EventBody::Sticker { name }
            }
            Some(kind @ ("image" | "video" | "audio" | "file")) => {
                let Some(content) = fetched.content else {
                    return Err(Error::NotFound(format!(
                        "the content of LINE message {line_id}"
                    )));
                };
                let name = match message["fileName"].as_str() {
                    Some(name) if kind == "file" => clean_file_name(name),
                    _ => format!("{kind}-{line_id}.{}", extension(&content.content_type)),
                };
                let meta = AttachmentMeta {
                    id: ulid::Ulid::new().to_string(),
                    name,
                    content_type: content.content_type.clone(),
                    size: content.bytes.len() as u64,
                    sha256: works_certs::sha256_hex(&content.bytes),
                };
                attachments::insert(
                    conn,
                    &meta,
                    room,
                    sender,
                    None,
                    Some(&content.bytes),
                    now_ms(),
                )
                .await?;
                EventBody::Attachment(meta)
            }
            Some("location") => {
                let title = message["title"].as_str().unwrap_or_default();
                let address = message["address"].as_str().unwrap_or_default();
                EventBody::Text {
                    text: format!(
                        "[location] {title} {address} ({}, {})",
                        message["latitude"], message["longitude"]
                    )
                    .trim()
                    .to_string(),
                }
            }
            _ => return Ok(None),
        };
        crate::rooms::content::event(&body, &self.limits)?;
        let row = line_room(conn, room).await?;
        let key = (!line_id.is_empty()).then_some(line_id.as_str());
        let applied = self
            .host_change(conn, &row, Change::new(sender, body, key))
            .await?;
        if !line_id.is_empty() {
            line::remember_message(conn, &line_id, room, &applied.event.id, applied.event.seq)
                .await?;
        }
        Ok(Some(applied))
    }

    /// A LINE user took a message back: it stops being shown here.
    async fn line_unsend(
        &self,
        conn: &mut sqlx::AnyConnection,
        user: &str,
        event: &Value,
    ) -> Result<Done> {
        let Some(message_id) = event["unsend"]["messageId"].as_str() else {
            return Ok(Done::just("ignored: unsend without a message id"));
        };
        let Some((room, seq)) = line::message(conn, message_id).await? else {
            return Ok(Done::just("ignored: unsend of a message not kept here"));
        };
        let member = ids::line_member(user)
            .ok_or_else(|| Error::invalid("source.userId", "is not a LINE user id"))?;
        let row = line_room(conn, &room).await?;
        let applied = self
            .host_change(
                conn,
                &row,
                Change::new(&member, EventBody::Unsent { seq }, None),
            )
            .await?;
        Ok(Done {
            outcome: format!("message #{seq} of room {room} taken back"),
            applied: vec![applied],
            pushed: false,
            member: None,
        })
    }

    /// A message in a LINE group: links the group to a room by the first
    /// member's code posted there, brings in its speakers and the members
    /// their codes name, and stores it.
    async fn line_group_message(
        &self,
        w: &mut WriteTx,
        group: &str,
        lu: &line::LineUserRow,
        event: &Value,
        fetched: Fetched,
    ) -> Result<Done> {
        let conn = &mut w.tx;
        let message = &event["message"];
        let code = self.member_code(conn, message).await?;
        let mut done = Done::just("");
        let linked = match line::group(conn, group).await? {
            Some(g) if g.left => return Ok(Done::just("ignored: the account left the group")),
            Some(g) => g.room.map(|room| (room, g.name)),
            None => {
                line::joined_group(conn, group, "LINE group", now_ms()).await?;
                None
            }
        };
        let room = match (linked, code.clone()) {
            (Some((room, _)), _) => room,
            (None, Some(member)) => {
                let name = line::group(conn, group)
                    .await?
                    .map(|g| g.name)
                    .unwrap_or_else(|| "LINE group".into());
                let name = crate::rooms::content::room_name(&name)
                    .unwrap_or_else(|_| "LINE group".to_string());
                let room = RoomId::generate();
                let applied = self
                    .host_new_room_in(
                        conn,
                        &room,
                        &member,
                        crate::model::RoomKind::Group,
                        &name,
                        vec![member.clone(), lu.member.clone()],
                        Some(group),
                    )
                    .await?;
                line::link_group(conn, group, &room).await?;
                done.applied.push(applied);
                tracing::info!(group, room = %room, member = %member, "LINE group linked to a room");
                room
            }
            (None, None) => return Ok(Done::just("ignored: the group is not linked to a room")),
        };
        let mut joiners = vec![lu.member.clone()];
        if let Some(member) = code {
            joiners.push(member);
        }
        if let Some(applied) = self.bring_into_line_room(conn, &room, joiners).await? {
            done.applied.push(applied);
        }
        let applied = self
            .store_line_message(conn, &room, &lu.member, message, fetched)
            .await?;
        done.stored(applied, &room);
        Ok(done)
    }

    /// Brings whoever of `joiners` is not yet in a LINE group's room in, in
    /// the name of the room's master (our member).
    async fn bring_into_line_room(
        &self,
        conn: &mut sqlx::AnyConnection,
        room: &RoomId,
        joiners: Vec<MemberId>,
    ) -> Result<Option<Applied>> {
        let row = line_room(conn, room).await?;
        let members = rooms::member_ids(conn, room).await?;
        let mut new: Vec<MemberId> = Vec::new();
        for j in joiners {
            if !members.contains(&j) && !new.contains(&j) {
                new.push(j);
            }
        }
        if new.is_empty() {
            return Ok(None);
        }
        let Some(master) = acting_member(&row, &members, &self.id) else {
            return Err(Error::FailedPrecondition(format!(
                "room {room} has no member of ours left to bring LINE users in"
            )));
        };
        let change = Change::new(&master, EventBody::Joined { members: new }, None);
        Ok(Some(self.host_change(conn, &row, change).await?))
    }
}

async fn line_room(conn: &mut sqlx::AnyConnection, room: &RoomId) -> Result<rooms::RoomRow> {
    rooms::room(conn, room)
        .await?
        .ok_or_else(|| Error::NotFound(format!("room {room}")))
}

/// Who acts for a LINE group's room here: its master when ours, else its
/// longest-standing member of ours.
fn acting_member(
    row: &rooms::RoomRow,
    members: &[MemberId],
    us: &crate::ids::TenantId,
) -> Option<MemberId> {
    row.master
        .clone()
        .filter(|m| m.belongs_to(us))
        .or_else(|| members.iter().find(|m| m.belongs_to(us)).cloned())
}

fn extension(content_type: &str) -> &'static str {
    match content_type.split(';').next().unwrap_or_default().trim() {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/gif" => "gif",
        "video/mp4" => "mp4",
        "audio/x-m4a" | "audio/mp4" | "audio/m4a" => "m4a",
        _ => "bin",
    }
}

fn clean_file_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '/' | '\\'))
        .take(200)
        .collect();
    if cleaned.trim().is_empty() {
        "file".into()
    } else {
        cleaned.trim().to_string()
    }
}

/// The audit entry's detail: the event's kind, ids and text, and what came
/// of it.
fn summary(event: &Value, outcome: &str) -> String {
    let message = &event["message"];
    let what = match event["type"].as_str() {
        Some("message") => {
            let kind = message["type"].as_str().unwrap_or("?");
            let id = message["id"].as_str().unwrap_or_default();
            match kind {
                "text" => format!(
                    "text {id}: {}",
                    message["text"]
                        .as_str()
                        .unwrap_or_default()
                        .chars()
                        .take(500)
                        .collect::<String>()
                ),
                "sticker" => format!(
                    "sticker {id}: {}:{}",
                    message["packageId"].as_str().unwrap_or_default(),
                    message["stickerId"].as_str().unwrap_or_default()
                ),
                other => format!("{other} {id}"),
            }
        }
        Some("unsend") => format!(
            "unsend of {}",
            event["unsend"]["messageId"].as_str().unwrap_or_default()
        ),
        Some(kind) => kind.to_string(),
        None => "?".into(),
    };
    let place = match Source::of(event) {
        Source::Group { group, .. } => format!(" in group {group}"),
        _ => String::new(),
    };
    format!("{what}{place}; {outcome}")
}
