//! A member's live event stream: replay from cursors, then live events, with
//! no gap and no duplicate per room.
//!
//! The watcher subscribes to the hub before it reads storage, keeps the last
//! delivered seq of every room, skips what it already sent and fills any gap
//! (a reordered or lagged hub) from storage before delivering.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use crate::error::{Error, Result};
use crate::ids::RoomId;
use crate::live::hub::Live;
use crate::model::Notice;
use crate::model::{Caller, EventBody, RoomEvent};
use crate::store::{events, rooms};
use crate::tenant::Tenant;

const REPLAY_PAGE: u32 = 500;
const STREAM_BUFFER: usize = 128;
/// How long a stream waits out a database it cannot reach (a restart, say)
/// before it ends with UNAVAILABLE; how often it tries again meanwhile.
const STORAGE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);
const STORAGE_RETRY: std::time::Duration = std::time::Duration::from_millis(250);

pub struct WatchRequest {
    /// (room, last seq the client has) pairs, as given by the client.
    pub cursors: Vec<(RoomId, u64)>,
    /// Only this room, when set.
    pub room: Option<RoomId>,
}

/// What a live stream carries.
#[derive(Debug, Clone)]
pub enum WatchItem {
    Room(RoomEvent),
    Notice(Notice),
}

pub type WatchStream = mpsc::Receiver<Result<WatchItem>>;

struct Watcher {
    tenant: Arc<Tenant>,
    caller: Caller,
    only: Option<RoomId>,
    /// Last delivered seq per room the member is in.
    cursors: HashMap<RoomId, u64>,
    out: mpsc::Sender<Result<WatchItem>>,
}

/// Why the watcher stopped.
enum Stop {
    /// The client went away.
    Gone,
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Failed(e)
    }
}

impl Tenant {
    pub async fn watch(
        self: &Arc<Self>,
        caller: Caller,
        request: WatchRequest,
    ) -> Result<WatchStream> {
        let only = request.room;
        let given: HashMap<RoomId, u64> = request.cursors.into_iter().collect();
        // Subscribe first: whatever commits from now on reaches us live.
        let live = self.hub.subscribe(&caller.member);
        let mut conn = self.store.pool().acquire().await?;
        let mine = rooms::rooms_of(&mut conn, &caller.member).await?;
        for room in given.keys() {
            if !mine.iter().any(|(r, _)| &r.id == room) {
                return Err(Error::PermissionDenied(format!(
                    "{} is not a member of room {room}",
                    caller.member
                )));
            }
        }
        if let Some(room) = &only {
            if rooms::room(&mut conn, room).await?.is_none() {
                return Err(Error::NotFound(format!("room {room}")));
            }
            if !mine.iter().any(|(r, _)| &r.id == room) {
                return Err(Error::PermissionDenied(format!(
                    "{} is not a member of room {room}",
                    caller.member
                )));
            }
        }
        drop(conn);
        let cursors = mine
            .iter()
            .filter(|(r, _)| only.is_none_or(|o| o == r.id))
            .map(|(r, m)| (r.id, given.get(&r.id).copied().unwrap_or(m.last_read_seq)))
            .collect();
        let (out, rx) = mpsc::channel(STREAM_BUFFER);
        let watcher = Watcher {
            tenant: Arc::clone(self),
            caller,
            only,
            cursors,
            out,
        };
        tokio::spawn(watcher.run(live));
        Ok(rx)
    }
}

impl Watcher {
    async fn run(mut self, mut live: broadcast::Receiver<Live>) {
        let member = self.caller.member.clone();
        let result = self.serve(&mut live).await;
        match result {
            Err(Stop::Gone) | Ok(()) => {
                tracing::debug!(member = %member, "watch stream closed");
            }
            Err(Stop::Failed(e)) => {
                tracing::info!(member = %member, error = %e, "watch stream ended");
                let _ = self.out.send(Err(e)).await;
            }
        }
    }

    async fn serve(&mut self, live: &mut broadcast::Receiver<Live>) -> Result<(), Stop> {
        self.replay_all().await?;
        loop {
            tokio::select! {
                _ = self.out.closed() => return Err(Stop::Gone),
                received = live.recv() => match received {
                    Ok(Live::Event { event, recipients }) => {
                        if recipients.contains(&self.caller.member) {
                            match self.deliver(&event).await {
                                Err(Stop::Failed(e)) if e.is_storage_unreachable() => {
                                    self.resync_patiently().await?;
                                }
                                other => other?,
                            }
                        }
                    }
                    Ok(Live::Suspended(member)) if member == self.caller.member => {
                        return Err(Stop::Failed(Error::PermissionDenied(format!(
                            "member {member} is suspended"
                        ))));
                    }
                    Ok(Live::Suspended(_)) => {}
                    Ok(Live::Resync) => self.resync_patiently().await?,
                    Ok(Live::Notice(notice)) => {
                        if notice.member == self.caller.member {
                            let item = WatchItem::Notice((*notice).clone());
                            self.out.send(Ok(item)).await.map_err(|_| Stop::Gone)?;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(member = %self.caller.member, missed, "watcher lagged; resyncing from storage");
                        self.resync_patiently().await?;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    }

    /// Reads the member's rooms and every room from its cursor again,
    /// waiting out a database that cannot be reached for a moment rather
    /// than ending the member's stream (what was sent stays sent: the
    /// cursors only move forward).
    async fn resync_patiently(&mut self) -> Result<(), Stop> {
        let deadline = tokio::time::Instant::now() + STORAGE_PATIENCE;
        loop {
            let result = match self.refresh_rooms().await {
                Ok(()) => self.replay_all().await,
                Err(e) => Err(e),
            };
            match result {
                Err(Stop::Failed(e))
                    if e.is_storage_unreachable() && tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(member = %self.caller.member, error = %e, "the stream waits for the database");
                    tokio::select! {
                        _ = self.out.closed() => return Err(Stop::Gone),
                        _ = tokio::time::sleep(STORAGE_RETRY) => {}
                    }
                }
                other => return other,
            }
        }
    }

    async fn send(&mut self, event: RoomEvent) -> Result<(), Stop> {
        let room = event.room;
        let seq = event.seq;
        if event.body == EventBody::Withheld {
            // Kept only to hold the room's order; nothing to show.
            self.cursors.insert(room, seq);
            return Ok(());
        }
        let ends_membership = match &event.body {
            EventBody::Left { .. } => event.sender == self.caller.member,
            EventBody::Removed { member } => member == &self.caller.member,
            EventBody::Unknown => event.sender == self.caller.member,
            _ => false,
        };
        self.out
            .send(Ok(WatchItem::Room(event)))
            .await
            .map_err(|_| Stop::Gone)?;
        if ends_membership {
            // Nothing after our own departure is ours to see.
            self.cursors.remove(&room);
        } else {
            self.cursors.insert(room, seq);
        }
        Ok(())
    }

    /// Sends every stored event after each room's cursor.
    async fn replay_all(&mut self) -> Result<(), Stop> {
        let rooms: Vec<RoomId> = self.cursors.keys().copied().collect();
        for room in rooms {
            self.replay(room, u64::MAX).await?;
        }
        Ok(())
    }

    /// Sends stored events of `room` after its cursor, up to `upto`.
    async fn replay(&mut self, room: RoomId, upto: u64) -> Result<(), Stop> {
        loop {
            let Some(after) = self.cursors.get(&room).copied() else {
                return Ok(());
            };
            if after >= upto {
                return Ok(());
            }
            let (page, unseen) = {
                let mut conn = self
                    .tenant
                    .store
                    .pool()
                    .acquire()
                    .await
                    .map_err(Error::from)?;
                let page = events::range(&mut conn, &room, after, upto, REPLAY_PAGE).await?;
                let last = page.last().map_or(after, |e| e.seq);
                let unseen =
                    events::unseen(&mut conn, &room, &self.caller.member, after, last).await?;
                (page, unseen)
            };
            let full = page.len() == REPLAY_PAGE as usize;
            for event in page {
                if unseen.contains(&event.seq) {
                    // Kept out of this member's sight: step over it.
                    self.cursors.insert(room, event.seq);
                    continue;
                }
                self.send(event).await?;
                if !self.cursors.contains_key(&room) {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Picks up rooms joined while we were not looking.
    async fn refresh_rooms(&mut self) -> Result<(), Stop> {
        let mut conn = self
            .tenant
            .store
            .pool()
            .acquire()
            .await
            .map_err(Error::from)?;
        for (row, membership) in rooms::rooms_of(&mut conn, &self.caller.member).await? {
            if self.only.is_none_or(|o| o == row.id) {
                self.cursors
                    .entry(row.id)
                    .or_insert(membership.joined_seq.saturating_sub(1));
            }
        }
        Ok(())
    }

    async fn deliver(&mut self, event: &RoomEvent) -> Result<(), Stop> {
        if self.only.is_some_and(|o| o != event.room) {
            return Ok(());
        }
        let cursor = match self.cursors.get(&event.room) {
            Some(c) => *c,
            None => {
                // A room we just joined: start where our membership starts.
                let mut conn = self
                    .tenant
                    .store
                    .pool()
                    .acquire()
                    .await
                    .map_err(Error::from)?;
                let joined = rooms::membership(&mut conn, &event.room, &self.caller.member)
                    .await?
                    .map(|m| m.joined_seq)
                    .unwrap_or(event.seq);
                let start = joined.min(event.seq).saturating_sub(1);
                self.cursors.insert(event.room, start);
                start
            }
        };
        if event.seq <= cursor {
            return Ok(());
        }
        if event.seq == cursor + 1 {
            self.send(event.clone()).await?;
        } else {
            self.replay(event.room, event.seq).await?;
        }
        Ok(())
    }
}
