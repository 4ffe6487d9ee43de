//! The send path's own end: group commit of messages, and the
//! after-commit step of every stored message (`Stored`, `committed`).
//!
//! SQLite has one writer at a time, so concurrent sends queue for the write
//! lock anyway; on PostgreSQL a transaction per send costs the server more
//! than the sends share. Instead of one transaction each, a writer task
//! takes every send waiting at that moment (up to `MAX_GROUP`) into one
//! transaction and stores them together (`group`: a few statements for the
//! whole group). A send refused by the room's rules or by admission wrote
//! nothing and gets its own error; the others commit together. Each send is
//! answered only after the commit, and is shown to live streams and woken
//! for the relay in the group's order.
//!
//! When the group as a whole cannot commit (a storage error), nothing of it
//! is kept and every send in it is stored again in a transaction of its own,
//! which gives each its precise error; the idempotency key makes that safe
//! even if the commit's outcome were in doubt.
//!
//! A group is sorted by room (each room's sends keep their order), so it
//! takes its rooms' rows in room order and two replicas' groups on
//! PostgreSQL never wait on each other in a cycle.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::error::Result;
use crate::ids::TenantId;
use crate::ids::{MemberId, RoomId};
use crate::model::EventBody;
use crate::model::RoomEvent;
use crate::rooms::Applied;
use crate::rooms::group::Message;
use crate::tenant::Tenant;

/// A message stored in a transaction, and what follows its commit.
pub(crate) struct Stored {
    pub event: RoomEvent,
    pub duplicate: bool,
    /// The peers it was just queued for; `None` for a message stored
    /// before, whose delivery state is read back.
    pub queued: Option<Vec<TenantId>>,
    after_commit: AfterCommit,
}

enum AfterCommit {
    Nothing,
    Announce(Box<Applied>),
    WakeHost(TenantId),
}

impl Stored {
    /// A message stored before, with the same idempotency key.
    pub(super) fn earlier((event, duplicate): (RoomEvent, bool)) -> Stored {
        Stored {
            event,
            duplicate,
            queued: None,
            after_commit: AfterCommit::Nothing,
        }
    }

    /// A message stored in a room hosted here: shown and relayed after
    /// the commit.
    pub(super) fn hosted(applied: Applied) -> Stored {
        Stored {
            event: applied.event.clone(),
            duplicate: false,
            queued: Some(applied.peers.clone()),
            after_commit: AfterCommit::Announce(Box::new(applied)),
        }
    }

    /// A message queued for the room's host: its host's deliverer wakes
    /// after the commit.
    pub(super) fn proposed(event: RoomEvent, host: TenantId) -> Stored {
        Stored {
            event,
            duplicate: false,
            queued: Some(vec![host.clone()]),
            after_commit: AfterCommit::WakeHost(host),
        }
    }
}

impl Tenant {
    /// What follows a stored message's commit: local streams see it and the
    /// deliverers of the peers it was queued for wake up.
    pub(crate) fn committed(&self, stored: &mut Stored) {
        match std::mem::replace(&mut stored.after_commit, AfterCommit::Nothing) {
            AfterCommit::Announce(applied) => {
                tracing::debug!(room = %stored.event.room, seq = stored.event.seq, sender = %stored.event.sender, "message stored");
                self.announce(*applied);
            }
            AfterCommit::WakeHost(host) => {
                self.outbox.wake(&host);
                tracing::debug!(room = %stored.event.room, host = %host, sender = %stored.event.sender, "message queued for the host");
            }
            AfterCommit::Nothing => {}
        }
    }
}

/// Most sends in one transaction.
const MAX_GROUP: usize = 128;

/// The queue of sends waiting for the writer task.
pub struct Sends {
    queue: mpsc::UnboundedSender<Job>,
    jobs: Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
    /// The writer task runs: sends go through it.
    running: AtomicBool,
}

struct Job {
    sender: MemberId,
    room: RoomId,
    key: String,
    body: EventBody,
    reply: oneshot::Sender<Reply>,
}

/// The outcome of a send in a group; `ALONE` when the group did not commit
/// and the message is to be stored in a transaction of its own.
type Reply = Option<Result<Stored>>;
const ALONE: Reply = None;

impl Default for Sends {
    fn default() -> Self {
        let (queue, jobs) = mpsc::unbounded_channel();
        Sends {
            queue,
            jobs: Mutex::new(Some(jobs)),
            running: AtomicBool::new(false),
        }
    }
}

impl Sends {
    /// Stores a message with the next group and answers once it committed;
    /// `None` when the caller must store it in a transaction of its own (no
    /// writer task, or the group failed).
    pub(crate) async fn submit(
        &self,
        sender: &MemberId,
        room: &RoomId,
        key: &str,
        body: &EventBody,
    ) -> Option<Result<Stored>> {
        if !self.running.load(Ordering::Acquire) {
            return None;
        }
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job {
                sender: sender.clone(),
                room: *room,
                key: key.to_string(),
                body: body.clone(),
                reply,
            })
            .ok()?;
        // A writer stopped with the node answers `ALONE` too.
        answer.await.unwrap_or(ALONE)
    }
}

/// The writer task: runs while the node serves.
pub async fn run(tenant: Arc<Tenant>) {
    let Some(mut jobs) = tenant.sends.jobs.lock().ok().and_then(|mut j| j.take()) else {
        return;
    };
    tenant.sends.running.store(true, Ordering::Release);
    let mut group = Vec::with_capacity(MAX_GROUP);
    while jobs.recv_many(&mut group, MAX_GROUP).await > 0 {
        tenant.commit_group(std::mem::take(&mut group)).await;
    }
}

impl Tenant {
    async fn commit_group(&self, mut jobs: Vec<Job>) {
        let mut w = match self.store.begin_write().await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, sends = jobs.len(), "cannot begin a group of messages; storing them one by one");
                for job in jobs {
                    let _ = job.reply.send(ALONE);
                }
                return;
            }
        };
        // Stable: each room's sends stay in the order they came.
        jobs.sort_by_key(|job| job.room);
        let messages: Vec<Message<'_>> = jobs
            .iter()
            .map(|job| Message {
                sender: &job.sender,
                room: job.room,
                key: &job.key,
                body: &job.body,
            })
            .collect();
        let outcomes = self.store_messages_in(&mut w.tx, &messages).await;
        drop(messages);
        let outcomes = match outcomes {
            Ok(outcomes) => outcomes,
            Err(e) => {
                // The transaction is in doubt: drop all of it.
                tracing::warn!(error = %e, sends = jobs.len(), "a group of messages failed; storing them one by one");
                drop(w);
                for job in jobs {
                    let _ = job.reply.send(ALONE);
                }
                return;
            }
        };
        if let Err(e) = w.commit().await {
            tracing::warn!(error = %e, sends = jobs.len(), "a group of messages did not commit; storing them one by one");
            for (job, outcome) in jobs.into_iter().zip(outcomes) {
                let _ = job.reply.send(match outcome {
                    Ok(_) => ALONE,
                    // Refused on its own merits: nothing of it was written.
                    Err(e) => Some(Err(e)),
                });
            }
            return;
        }
        for (job, mut outcome) in jobs.into_iter().zip(outcomes) {
            if let Ok(stored) = &mut outcome {
                self.committed(stored);
            }
            // A caller that went away still had its message stored.
            let _ = job.reply.send(Some(outcome));
        }
    }
}
