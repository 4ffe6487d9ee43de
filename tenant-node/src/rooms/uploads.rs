//! Uploads in unary parts, for clients that cannot stream a request (a
//! browser over grpc-web): the bytes are gathered here, part by part in
//! order, and the last part stores the file through `upload_attachment`,
//! so a file uploaded either way meets the same rules.
//!
//! In-progress uploads are held in memory and bounded: per member, in
//! number and in declared bytes all together, and each is dropped after
//! `IDLE` without a part. The declared size is reserved when the upload
//! starts, so the bounds hold before any byte arrives.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::ids::{MemberId, RoomId};
use crate::model::{AttachmentMeta, Caller};
use crate::rooms::content;
use crate::tenant::Tenant;
use works_bridge::error::clip;

/// Largest part's data; a browser sends a large file as many small calls.
pub const MAX_PART_BYTES: usize = 256 * 1024;
/// Uploads one member may have in progress at once.
pub const MAX_UPLOADS_PER_MEMBER: usize = 4;
/// Uploads in progress on this node at once.
pub const MAX_UPLOADS: usize = 64;
/// Declared bytes of all uploads in progress together.
pub const MAX_RESERVED_BYTES: u64 = 256 * 1024 * 1024;
/// An upload without a part for this long is dropped.
pub const IDLE: Duration = Duration::from_secs(600);

/// Which upload a part belongs to.
pub enum UploadTarget<'a> {
    /// The first part: it starts an upload of `size` bytes.
    New {
        room: &'a RoomId,
        name: &'a str,
        content_type: &'a str,
        size: u64,
    },
    /// A later part, of the upload this id names.
    Existing(&'a str),
}

/// A part as the client sent it, fields parsed.
pub struct Part<'a> {
    pub target: UploadTarget<'a>,
    pub offset: u64,
    pub data: Vec<u8>,
    pub last: bool,
}

/// What a part did.
#[derive(Debug)]
pub struct PartOutcome {
    pub upload_id: String,
    /// Bytes received so far: where the next part starts.
    pub received: u64,
    /// The stored file, after the last part.
    pub stored: Option<AttachmentMeta>,
}

/// The uploads in progress.
#[derive(Default)]
pub struct Uploads {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    uploads: HashMap<String, Upload>,
    reserved: u64,
}

struct Upload {
    owner: MemberId,
    room: RoomId,
    name: String,
    content_type: String,
    size: u64,
    data: Vec<u8>,
    touched: Instant,
}

/// A finished upload, taken out of the table to be stored.
#[derive(Debug)]
struct Finished {
    room: RoomId,
    name: String,
    content_type: String,
    data: Vec<u8>,
}

impl Inner {
    fn drop_expired(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .uploads
            .iter()
            .filter(|(_, u)| now.duration_since(u.touched) >= IDLE)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.remove(&id);
            tracing::info!(upload = %id, "upload dropped: no part for 10 minutes");
        }
    }

    fn remove(&mut self, id: &str) -> Option<Upload> {
        let upload = self.uploads.remove(id)?;
        self.reserved -= upload.size;
        Some(upload)
    }
}

impl Uploads {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Opens an upload of `size` bytes for `owner`, within the bounds.
    fn start(
        &self,
        owner: &MemberId,
        room: &RoomId,
        name: String,
        content_type: String,
        size: u64,
        now: Instant,
    ) -> Result<String> {
        let mut inner = self.lock();
        inner.drop_expired(now);
        let mine = inner.uploads.values().filter(|u| &u.owner == owner).count();
        if mine >= MAX_UPLOADS_PER_MEMBER {
            return Err(Error::ResourceExhausted(format!(
                "you have {MAX_UPLOADS_PER_MEMBER} uploads in progress already: finish one or let it expire"
            )));
        }
        // Only when `limits.max_attachment_bytes` is set above it.
        if size > MAX_RESERVED_BYTES {
            return Err(Error::ResourceExhausted(format!(
                "an upload in parts takes at most {MAX_RESERVED_BYTES} bytes: use UploadAttachment"
            )));
        }
        if inner.uploads.len() >= MAX_UPLOADS
            || inner.reserved.saturating_add(size) > MAX_RESERVED_BYTES
        {
            return Err(Error::ResourceExhausted(
                "too many uploads are in progress on this node: try again later".into(),
            ));
        }
        let id = ulid::Ulid::new().to_string();
        inner.reserved += size;
        inner.uploads.insert(
            id.clone(),
            Upload {
                owner: owner.clone(),
                room: *room,
                name,
                content_type,
                size,
                data: Vec::new(),
                touched: now,
            },
        );
        Ok(id)
    }

    /// Adds a part's bytes at `offset`; the whole upload, taken out, when
    /// it is the last. A part refused here (out of order, past the size)
    /// leaves the upload as it was, so the client may send it again; a last
    /// part that is accepted ends the upload, whether its bytes add up to
    /// the size and pass the rules at storing or not.
    fn append(
        &self,
        owner: &MemberId,
        id: &str,
        offset: u64,
        data: &[u8],
        last: bool,
        now: Instant,
    ) -> Result<(u64, Option<Finished>)> {
        let mut inner = self.lock();
        inner.drop_expired(now);
        let unknown = || Error::NotFound(format!("upload {} of yours in progress", clip(id)));
        let upload = inner
            .uploads
            .get_mut(id)
            .filter(|u| &u.owner == owner)
            .ok_or_else(unknown)?;
        let received = upload.data.len() as u64;
        if offset != received {
            return Err(Error::FailedPrecondition(format!(
                "upload {id} has {received} bytes: the next part starts at offset {received}, not {offset}"
            )));
        }
        if received + data.len() as u64 > upload.size {
            return Err(Error::invalid(
                "data",
                format!(
                    "the part ends at byte {}, past the declared size of {} bytes",
                    received + data.len() as u64,
                    upload.size
                ),
            ));
        }
        upload.data.extend_from_slice(data);
        upload.touched = now;
        let received = upload.data.len() as u64;
        if !last {
            return Ok((received, None));
        }
        let size = upload.size;
        let Some(upload) = inner.remove(id) else {
            return Err(unknown());
        };
        if received != size {
            return Err(Error::invalid(
                "last",
                format!("upload {id} ended with {received} of its {size} bytes; it is dropped"),
            ));
        }
        Ok((
            received,
            Some(Finished {
                room: upload.room,
                name: upload.name,
                content_type: upload.content_type,
                data: upload.data,
            }),
        ))
    }

    /// Drops an upload, when its first part failed after it was opened.
    fn abandon(&self, id: &str) {
        self.lock().remove(id);
    }

    #[cfg(test)]
    fn in_progress(&self) -> (usize, u64) {
        let inner = self.lock();
        (inner.uploads.len(), inner.reserved)
    }
}

impl Tenant {
    /// One part of an upload in parts. The first part is checked as the
    /// file will be (name, type, size, the room, the file restriction)
    /// before anything is held; the last stores it with
    /// `upload_attachment`, which checks everything again as it stands then.
    pub async fn upload_part(&self, caller: &Caller, part: Part<'_>) -> Result<PartOutcome> {
        if part.data.len() > MAX_PART_BYTES {
            return Err(Error::invalid(
                "data",
                format!(
                    "a part carries at most {MAX_PART_BYTES} bytes, not {}",
                    part.data.len()
                ),
            ));
        }
        let now = Instant::now();
        let (id, new) = match part.target {
            UploadTarget::Existing(id) => (id.to_string(), false),
            UploadTarget::New {
                room,
                name,
                content_type,
                size,
            } => {
                let name = content::file_name(name)?;
                let content_type = content::content_type(content_type)?;
                self.check_attachment_size(usize::try_from(size).unwrap_or(usize::MAX))?;
                self.check_upload_allowed(caller, room).await?;
                let id = self.uploads.start(
                    &caller.member,
                    room,
                    name,
                    content_type.to_string(),
                    size,
                    now,
                )?;
                tracing::info!(upload = %id, room = %room, by = %caller.member, size, "upload started");
                (id, true)
            }
        };
        let appended =
            self.uploads
                .append(&caller.member, &id, part.offset, &part.data, part.last, now);
        let (received, finished) = match appended {
            Ok(done) => done,
            Err(e) => {
                // The client never learns the id of an upload whose first
                // part failed: it must not hold a slot until it expires.
                if new {
                    self.uploads.abandon(&id);
                }
                return Err(e);
            }
        };
        let stored = match finished {
            None => None,
            Some(f) => Some(
                self.upload_attachment(caller, &f.room, &f.name, &f.content_type, f.data)
                    .await?,
            ),
        };
        Ok(PartOutcome {
            upload_id: id,
            received,
            stored,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str) -> MemberId {
        MemberId::parse(&format!("{name}@a.example")).unwrap()
    }

    fn room() -> RoomId {
        RoomId::parse("01JZ0000000000000000000001").unwrap()
    }

    fn start(uploads: &Uploads, owner: &MemberId, size: u64, now: Instant) -> Result<String> {
        uploads.start(
            owner,
            &room(),
            "a.txt".into(),
            "text/plain".into(),
            size,
            now,
        )
    }

    #[test]
    fn parts_arrive_in_order_and_the_last_hands_over_the_file() {
        let uploads = Uploads::default();
        let alice = member("alice");
        let now = Instant::now();
        let id = start(&uploads, &alice, 5, now).unwrap();
        assert_eq!(
            uploads.append(&alice, &id, 0, b"ab", false, now).unwrap().0,
            2
        );
        let err = uploads
            .append(&alice, &id, 0, b"ab", false, now)
            .unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
        let err = uploads
            .append(&alice, &id, 2, b"cdef", false, now)
            .unwrap_err();
        assert!(matches!(err, Error::Invalid { field: "data", .. }), "{err}");
        let (received, done) = uploads.append(&alice, &id, 2, b"cde", true, now).unwrap();
        assert_eq!(received, 5);
        assert_eq!(done.unwrap().data, b"abcde");
        assert_eq!(uploads.in_progress(), (0, 0));
    }

    #[test]
    fn another_members_upload_is_not_found() {
        let uploads = Uploads::default();
        let now = Instant::now();
        let id = start(&uploads, &member("alice"), 5, now).unwrap();
        let err = uploads
            .append(&member("bob"), &id, 0, b"a", false, now)
            .unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err}");
    }

    #[test]
    fn a_short_last_part_drops_the_upload() {
        let uploads = Uploads::default();
        let alice = member("alice");
        let now = Instant::now();
        let id = start(&uploads, &alice, 5, now).unwrap();
        let err = uploads
            .append(&alice, &id, 0, b"ab", true, now)
            .unwrap_err();
        assert!(matches!(err, Error::Invalid { field: "last", .. }), "{err}");
        assert_eq!(uploads.in_progress(), (0, 0));
    }

    #[test]
    fn uploads_are_bounded_per_member_in_total_and_in_time() {
        let uploads = Uploads::default();
        let alice = member("alice");
        let now = Instant::now();
        for _ in 0..MAX_UPLOADS_PER_MEMBER {
            start(&uploads, &alice, 1, now).unwrap();
        }
        let err = start(&uploads, &alice, 1, now).unwrap_err();
        assert!(matches!(err, Error::ResourceExhausted(_)), "{err}");
        let bob = member("bob");
        let err = start(&uploads, &bob, MAX_RESERVED_BYTES, now).unwrap_err();
        assert!(err.to_string().contains("too many uploads"), "{err}");
        let err = start(&uploads, &bob, MAX_RESERVED_BYTES + 1, now).unwrap_err();
        assert!(err.to_string().contains("use UploadAttachment"), "{err}");
        // Idle ones expire, and free their slots and bytes.
        let later = now + IDLE;
        start(&uploads, &alice, 1, later).unwrap();
        assert_eq!(uploads.in_progress(), (1, 1));
        for i in 1..MAX_UPLOADS {
            start(&uploads, &member(&format!("m{i}")), 1, later).unwrap();
        }
        let err = start(&uploads, &bob, 1, later).unwrap_err();
        assert!(matches!(err, Error::ResourceExhausted(_)), "{err}");
    }
}
