//! Files in rooms: upload, the file-transfer restriction (on what our
//! members send to other companies), and fetching the bytes across
//! companies the first time a member downloads them.
//!
//! The uploader's node keeps the bytes. Every other participating node gets
//! the metadata (name, type, size, SHA-256) with the relayed event and
//! fetches the bytes over the bridge on first download: from the uploader's
//! node when peered with it, otherwise from the room's host, which fetches
//! them the same way. Each node checks size and hash before it keeps them.

use sqlx::AnyConnection;

use crate::error::{Error, Result};
use crate::ids::{MemberId, RoomId, TenantId};
use crate::model::{AttachmentMeta, Caller, EventBody, RoomEvent};
use crate::rooms::content;
use crate::rooms::require_member;
use crate::store::attachments::{self as store, AttachmentRow};
use crate::store::{now_ms, policy, rooms};
use crate::tenant::Tenant;
use works_bridge::error::clip;

impl Tenant {
    /// Stores an uploaded file for a room the caller is in; posting it is
    /// a separate `SendMessage`.
    pub async fn upload_attachment(
        &self,
        caller: &Caller,
        room: &RoomId,
        name: &str,
        content_type: &str,
        data: Vec<u8>,
    ) -> Result<AttachmentMeta> {
        let name = content::file_name(name)?;
        let content_type = content::content_type(content_type)?;
        self.check_attachment_size(data.len())?;
        let meta = AttachmentMeta {
            id: ulid::Ulid::new().to_string(),
            name,
            content_type: content_type.to_string(),
            size: data.len() as u64,
            sha256: works_certs::sha256_hex(&data),
        };
        let mut w = self.store.begin_write().await?;
        self.upload_allowed(&mut w.tx, caller, room).await?;
        store::insert(
            &mut w.tx,
            &meta,
            room,
            &caller.member,
            None,
            Some(&data),
            now_ms(),
        )
        .await?;
        w.commit().await?;
        tracing::info!(room = %room, by = %caller.member, size = meta.size, "attachment uploaded");
        Ok(meta)
    }

    /// Whether the caller may upload a file for `room` now, checked before
    /// an upload in parts holds any byte (`upload_attachment` checks again
    /// when it stores the file).
    pub(crate) async fn check_upload_allowed(&self, caller: &Caller, room: &RoomId) -> Result<()> {
        let mut conn = self.store.pool().acquire().await?;
        self.upload_allowed(&mut conn, caller, room).await
    }

    /// The room exists, the caller is in it, and file transfer is allowed
    /// with whoever else is in it.
    async fn upload_allowed(
        &self,
        conn: &mut AnyConnection,
        caller: &Caller,
        room: &RoomId,
    ) -> Result<()> {
        rooms::room(conn, room)
            .await?
            .ok_or_else(|| Error::NotFound(format!("room {room}")))?;
        require_member(conn, room, &caller.member).await?;
        let members = rooms::member_ids(conn, room).await?;
        self.files_allowed(conn, &caller.member, &members).await
    }

    /// Refuses a size over the configured limit, as soon as it is known.
    pub fn check_attachment_size(&self, size: usize) -> Result<()> {
        if size > self.limits.max_attachment_bytes {
            return Err(Error::ResourceExhausted(format!(
                "the file is larger than the {} byte limit",
                self.limits.max_attachment_bytes
            )));
        }
        Ok(())
    }

    /// The body that posts an uploaded file, checked: the caller's own
    /// upload for this room, not posted yet.
    pub(crate) async fn attachment_body(
        &self,
        caller: &Caller,
        room: &crate::ids::RoomId,
        id: &str,
    ) -> Result<EventBody> {
        let mut conn = self.store.pool().acquire().await?;
        let row = store::get(&mut conn, id)
            .await?
            .filter(|r| r.uploader == caller.member && &r.room == room && r.has_data)
            .ok_or_else(|| {
                Error::NotFound(format!("attachment {id} uploaded by you for room {room}"))
            })?;
        if row.event_id.is_some() {
            return Err(Error::AlreadyExists(format!(
                "attachment {id} was posted already"
            )));
        }
        Ok(EventBody::Attachment(row.meta))
    }

    /// Whether `actor` may send a file into a room with `members`, as this
    /// company's file-transfer restriction says: when it is on, our own
    /// members send no file into a room with someone of another company
    /// (the admin guide: "members cannot ... send files" in rooms with
    /// other companies). It restricts what leaves this company: a file
    /// another company's member sends is received, shown and downloaded
    /// here as any message is.
    pub(crate) async fn files_allowed(
        &self,
        conn: &mut AnyConnection,
        actor: &MemberId,
        members: &[MemberId],
    ) -> Result<()> {
        if !actor.belongs_to(&self.id) {
            return Ok(());
        }
        if members.iter().any(crate::ids::is_line) {
            // Files reach LINE users as links to this node (bots have no
            // file message), under LINE's own restriction.
            if crate::store::policy::flag(conn, crate::store::line::LINE_RESTRICT_FILES).await? {
                return Err(Error::FailedPrecondition(
                    "your company restricts file transfer in rooms with LINE users".to_string(),
                ));
            }
            if self.public_url.is_none() {
                return Err(Error::FailedPrecondition(
                    "files cannot reach LINE users: this node has no [web] public_url for LINE to link to".to_string(),
                ));
            }
        }
        let external = members
            .iter()
            .any(|m| !m.belongs_to(&self.id) && !crate::ids::is_line(m));
        if external && policy::flag(conn, policy::EXTERNAL_RESTRICT_FILES).await? {
            return Err(Error::FailedPrecondition(
                "your company restricts file transfer with other companies, and this room has members of other companies".to_string(),
            ));
        }
        Ok(())
    }

    /// Keeps the metadata of a file a stored event posts (the bytes come
    /// on first download), and marks our own upload as posted.
    pub(crate) async fn record_attachment(
        &self,
        conn: &mut AnyConnection,
        event: &RoomEvent,
    ) -> Result<()> {
        let EventBody::Attachment(meta) = &event.body else {
            return Ok(());
        };
        store::insert(
            conn,
            meta,
            &event.room,
            &event.sender,
            Some(&event.id),
            None,
            event.at_ms,
        )
        .await?;
        store::mark_posted(conn, &meta.id, &event.id).await?;
        Ok(())
    }

    /// A posted file for a member of its room, fetched from another company's
    /// node the first time.
    pub async fn download_attachment(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(AttachmentMeta, Vec<u8>)> {
        let mut conn = self.store.pool().acquire().await?;
        let row = store::get(&mut conn, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("attachment {}", clip(id))))?;
        require_member(&mut conn, &row.room, &caller.member).await?;
        // A file in a message kept out of the caller's sight is not theirs.
        if let Some(event) = &row.event_id
            && let Ok(event) = crate::ids::EventId::parse(event)
            && let Some(event) = crate::store::events::by_id(&mut conn, &event).await?
            && crate::store::events::unseen(
                &mut conn,
                &event.room,
                &caller.member,
                event.seq.saturating_sub(1),
                event.seq,
            )
            .await?
            .contains(&event.seq)
        {
            return Err(Error::NotFound(format!("attachment {}", clip(id))));
        }
        drop(conn);
        let data = self.attachment_data(&row, &caller.member).await?;
        Ok((row.meta, data))
    }

    /// A peer's member asks for a file of a room they are in (as this node
    /// knows the room), and this node's half allows it at the time of
    /// asking: for our own member's file, file transfer not restricted
    /// here and admission of the two (another company's file, which a host
    /// passes on, is theirs to restrict). Anything else is "not found".
    pub async fn serve_attachment(
        &self,
        peer: &TenantId,
        requester: &MemberId,
        id: &str,
    ) -> Result<Vec<u8>> {
        let not_found = || Error::NotFound(format!("attachment {}", clip(id)));
        let mut conn = self.store.pool().acquire().await?;
        let row = store::get(&mut conn, id)
            .await?
            .filter(|r| r.event_id.is_some())
            .ok_or_else(not_found)?;
        let Some((room, members)) = rooms::room_with_members(&mut conn, &row.room).await? else {
            return Err(not_found());
        };
        if !members.contains(requester) {
            tracing::info!(peer = %peer, %requester, attachment = id, "attachment refused: not in the room");
            return Err(not_found());
        }
        // Our half, as it stands now, for our own member's file: the
        // file-transfer restriction, and admission of uploader and requester.
        let allowed = match self.files_allowed(&mut conn, &row.uploader, &members).await {
            Ok(()) if row.uploader.belongs_to(&self.id) => self
                .may_message(
                    &mut conn,
                    &room.id,
                    room.kind,
                    room.host.as_ref(),
                    &row.uploader,
                    std::slice::from_ref(requester),
                )
                .await
                .map(|_| ()),
            other => other,
        };
        match allowed {
            Ok(()) => {}
            Err(e) if e.is_fault() => return Err(e),
            Err(e) => {
                tracing::info!(peer = %peer, %requester, attachment = id, reason = %e, "attachment refused by this node's policy");
                return Err(not_found());
            }
        }
        drop(conn);
        self.attachment_data(&row, requester).await
    }

    /// The bytes, from storage or, the first time, from the node that has
    /// them: the uploader's when peered with it, else the room's host.
    async fn attachment_data(&self, row: &AttachmentRow, requester: &MemberId) -> Result<Vec<u8>> {
        let id = &row.meta.id;
        if let Some(data) = store::data(&mut *self.store.pool().acquire().await?, id).await? {
            return Ok(data);
        }
        let origin = row.uploader.tenant();
        let mut conn = self.store.pool().acquire().await?;
        let source = if crate::store::peers::peer(&mut conn, origin)
            .await?
            .is_some()
        {
            origin.clone()
        } else {
            rooms::room(&mut conn, &row.room)
                .await?
                .and_then(|r| r.host)
                .ok_or_else(|| {
                    Error::Unavailable(format!("no node to fetch attachment {id} from"))
                })?
        };
        let peer = crate::store::peers::peer(&mut conn, &source)
            .await?
            .ok_or_else(|| Error::Unavailable(format!("{source} is not a peer")))?;
        drop(conn);
        let mut client = self
            .dial(&peer)
            .await
            .map_err(|e| crate::wire::status::from_peer(&source, e))?;
        // The host fetches on behalf of a requester of another company; the
        // uploader's node sees the host's member-less request as the host's.
        let asking = if requester.belongs_to(&self.id) {
            requester.clone()
        } else {
            self.any_local_member_of(&row.room).await?
        };
        let data = client
            .fetch_attachment(&asking, id, row.meta.size)
            .await
            .map_err(|e| crate::wire::status::from_peer(&source, e))?;
        if data.len() as u64 != row.meta.size || works_certs::sha256_hex(&data) != row.meta.sha256 {
            return Err(Error::Unavailable(format!(
                "attachment {id} from {source} does not match its size and SHA-256"
            )));
        }
        let mut w = self.store.begin_write().await?;
        store::set_data(&mut w.tx, id, &data).await?;
        w.commit().await?;
        tracing::info!(attachment = %id, from = %source, size = data.len(), "attachment fetched");
        Ok(data)
    }

    async fn any_local_member_of(&self, room: &crate::ids::RoomId) -> Result<MemberId> {
        let mut conn = self.store.pool().acquire().await?;
        rooms::member_ids(&mut conn, room)
            .await?
            .into_iter()
            .find(|m| m.belongs_to(&self.id))
            .ok_or_else(|| Error::NotFound(format!("attachment of room {room}")))
    }

    /// A file a member posted in a room with LINE users, for the link it
    /// went to LINE as: `tag` must be the one this node signed for it.
    pub async fn line_file(
        &self,
        id: &str,
        tag: &str,
    ) -> Result<Option<(crate::model::AttachmentMeta, Vec<u8>)>> {
        let Some(channel) = &self.line else {
            return Ok(None);
        };
        let expected = channel.link_tag(id);
        let same = expected.len() == tag.len()
            && expected
                .bytes()
                .zip(tag.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same {
            return Ok(None);
        }
        let mut conn = self.store.pool().acquire().await?;
        let Some(row) = store::get(&mut conn, id)
            .await?
            .filter(|r| r.event_id.is_some())
        else {
            return Ok(None);
        };
        let in_line_room = rooms::room(&mut conn, &row.room)
            .await?
            .is_some_and(|r| r.line_chat.is_some());
        if !in_line_room || !row.uploader.belongs_to(&self.id) {
            return Ok(None);
        }
        let data = store::data(&mut conn, id).await?;
        Ok(data.map(|d| (row.meta, d)))
    }
}
