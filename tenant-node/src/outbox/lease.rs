//! A replica's hold on a shared work queue (a peer's outbox, LINE's, the
//! LINE inbox): taken when free or expired, renewed a third of the way
//! through its term, fenced at every acknowledgement, given up at stop.
//! Each replica holds its share: the queues over the replicas alive (by
//! their heartbeats), rounded up. A replica over its share gives a lease up
//! at renewal and one under it takes it; a lease nobody took within a term
//! of its expiry goes to whoever asks.
//! On SQLite, which one process owns, there is nothing to share: the lease
//! is always held and never written (a node restarted after `kill -9`
//! delivers at once, rather than waiting out its previous life's lease).

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::store::{Backend, leases, now_ms};
use crate::tenant::Tenant;

/// How long a lease lasts unrenewed: a replica killed while holding one
/// is replaced within this time.
pub const TERM: Duration = Duration::from_secs(5);
/// A holder renews its lease, and a replica writes its heartbeat, this
/// often; a worker with nothing to do checks back as often, so an idle
/// queue's lease never lapses.
pub const RENEWAL: Duration = Duration::from_millis(TERM.as_millis() as u64 / 3);
/// A queue whose lease lapsed this long ago no longer counts (a removed
/// peer's, say) when shares are reckoned; a replica silent this long is
/// forgotten.
const FORGOTTEN: Duration = Duration::from_secs(60);

/// What a replica does with a queue's lease, given where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    /// Take it (or renew it).
    Take,
    /// Give it up for a replica under its share.
    GiveUp,
    /// Another holds it, or a replica under its share should take it.
    Wait,
}

fn decide(standing: &leases::Standing, replica: &str, now_ms: i64) -> Move {
    let share = (standing.queues + standing.replicas - 1) / standing.replicas.max(1);
    let under = standing.held_elsewhere < share;
    match &standing.lease {
        Some((holder, expires)) if *expires > now_ms => match (holder == replica, under) {
            (true, true) => Move::Take,
            (true, false) => Move::GiveUp,
            (false, _) => Move::Wait,
        },
        Some((_, expires)) if !under && now_ms - expires < TERM.as_millis() as i64 => Move::Wait,
        _ => Move::Take,
    }
}

pub struct Lease {
    queue: String,
    epoch: Option<i64>,
    renewed: Instant,
}

impl Lease {
    pub fn new(queue: impl Into<String>) -> Lease {
        Lease {
            queue: queue.into(),
            epoch: None,
            renewed: Instant::now(),
        }
    }

    /// The epoch this replica holds the queue under now, renewing or taking
    /// the lease as needed; `None` while another replica holds it.
    pub async fn hold(&mut self, tenant: &Tenant) -> Result<Option<i64>> {
        if tenant.store.backend() == Backend::Sqlite {
            if self.epoch.is_none() {
                self.epoch = Some(0);
                tenant.metrics.set_delivering(&self.queue, true);
            }
            return Ok(self.epoch);
        }
        if self.epoch.is_some() && self.renewed.elapsed() < RENEWAL {
            return Ok(self.epoch);
        }
        let now = now_ms();
        let term = TERM.as_millis() as i64;
        let mut w = tenant.store.begin_write().await?;
        // A holder inside its acknowledging transaction locks the lease's
        // row: wait for it briefly, not for as long as it stalls.
        leases::short_lock_wait(&mut w.tx).await?;
        let standing = leases::standing(
            &mut w.tx,
            &self.queue,
            &tenant.replica,
            now,
            now - term,
            now - FORGOTTEN.as_millis() as i64,
        )
        .await?;
        let step = decide(&standing, &tenant.replica, now);
        let epoch = match step {
            Move::Take => {
                leases::take(&mut w.tx, &self.queue, &tenant.replica, now, now + term).await?
            }
            Move::GiveUp => {
                leases::release(&mut w.tx, &self.queue, &tenant.replica, now).await?;
                None
            }
            Move::Wait => None,
        };
        w.commit().await?;
        if epoch != self.epoch {
            match epoch {
                Some(e) => {
                    tracing::info!(queue = %self.queue, epoch = e, "this replica holds the queue")
                }
                None if step == Move::GiveUp => tracing::info!(
                    queue = %self.queue,
                    held = standing.held_elsewhere + 1,
                    replicas = standing.replicas,
                    queues = standing.queues,
                    "this replica holds more than its share; it gives the queue up"
                ),
                None if self.epoch.is_some() => {
                    tracing::info!(queue = %self.queue, "another replica holds the queue now")
                }
                None => {}
            }
        }
        self.epoch = epoch;
        self.renewed = Instant::now();
        tenant.metrics.set_delivering(&self.queue, epoch.is_some());
        Ok(epoch)
    }

    /// Whether the lease is still ours, in the caller's transaction, before
    /// it records what the queue's receiver acknowledged.
    pub async fn fence(&mut self, tenant: &Tenant, conn: &mut sqlx::AnyConnection) -> Result<bool> {
        let Some(epoch) = self.epoch else {
            return Ok(false);
        };
        if tenant.store.backend() == Backend::Sqlite {
            return Ok(true);
        }
        let held = leases::fence(conn, &self.queue, &tenant.replica, epoch, now_ms()).await?;
        if !held {
            tracing::warn!(queue = %self.queue, epoch, "the lease was lost; what was sent stays queued");
            self.epoch = None;
            tenant.metrics.set_delivering(&self.queue, false);
        }
        Ok(held)
    }

    /// Gives the lease up, so another replica takes over at once.
    pub async fn release(&mut self, tenant: &Tenant) {
        if self.epoch.take().is_none() {
            return;
        }
        tenant.metrics.set_delivering(&self.queue, false);
        if tenant.store.backend() == Backend::Sqlite {
            return;
        }
        if let Ok(mut w) = tenant.store.begin_write().await {
            // Gone first, so that the others' shares already count without
            // this replica when they see the lease free.
            let _ = leases::depart(&mut w.tx, &tenant.replica).await;
            let _ = leases::release(&mut w.tx, &self.queue, &tenant.replica, now_ms()).await;
            let _ = w.commit().await;
        }
    }
}

/// Writes this replica's heartbeat until `stop` turns true, then says it
/// left (PostgreSQL; on SQLite one process owns every queue).
pub async fn attend(tenant: std::sync::Arc<Tenant>, mut stop: tokio::sync::watch::Receiver<bool>) {
    if tenant.store.backend() == Backend::Sqlite {
        return;
    }
    while !*stop.borrow() {
        let now = now_ms();
        let beat = async {
            let mut w = tenant.store.begin_write().await?;
            leases::attend(
                &mut w.tx,
                &tenant.replica,
                now,
                now - FORGOTTEN.as_millis() as i64,
            )
            .await?;
            w.commit().await
        };
        if let Err(e) = beat.await {
            tracing::warn!(error = %e, "cannot write this replica's heartbeat");
        }
        tokio::select! {
            _ = tokio::time::sleep(RENEWAL) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
    if let Ok(mut w) = tenant.store.begin_write().await {
        let _ = leases::depart(&mut w.tx, &tenant.replica).await;
        let _ = w.commit().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::leases::Standing;

    const NOW: i64 = 1_000_000;

    fn standing(
        held_elsewhere: i64,
        queues: i64,
        replicas: i64,
        lease: Option<(&str, i64)>,
    ) -> Standing {
        Standing {
            held_elsewhere,
            queues,
            replicas,
            lease: lease.map(|(h, e)| (h.to_string(), e)),
        }
    }

    #[test]
    fn a_replica_takes_free_queues_up_to_its_share() {
        // Three queues, three replicas: a share of one each.
        assert_eq!(decide(&standing(0, 3, 3, None), "r1", NOW), Move::Take);
        assert_eq!(
            decide(&standing(0, 3, 3, Some(("r2", NOW - 1))), "r1", NOW),
            Move::Take
        );
        assert_eq!(
            decide(&standing(1, 3, 3, Some(("r2", NOW - 1))), "r1", NOW),
            Move::Wait
        );
        // Alone, a replica takes everything.
        assert_eq!(
            decide(&standing(5, 6, 1, Some(("r2", NOW - 1))), "r1", NOW),
            Move::Take
        );
    }

    #[test]
    fn a_replica_over_its_share_gives_a_queue_up_and_keeps_the_rest() {
        let mine = Some(("r1", NOW + 3_000));
        // Holding all three of three queues when a second replica appears:
        // a share of two.
        assert_eq!(decide(&standing(2, 3, 2, mine), "r1", NOW), Move::GiveUp);
        assert_eq!(decide(&standing(1, 3, 2, mine), "r1", NOW), Move::Take);
        assert_eq!(decide(&standing(0, 1, 3, mine), "r1", NOW), Move::Take);
    }

    #[test]
    fn another_replicas_live_lease_is_left_alone() {
        assert_eq!(
            decide(&standing(0, 3, 3, Some(("r2", NOW + 1))), "r1", NOW),
            Move::Wait
        );
    }

    #[test]
    fn a_lease_nobody_took_within_a_term_goes_to_whoever_asks() {
        let lapsed = NOW - TERM.as_millis() as i64;
        assert_eq!(
            decide(&standing(4, 3, 3, Some(("r2", lapsed))), "r1", NOW),
            Move::Take
        );
        assert_eq!(
            decide(&standing(4, 3, 3, Some(("r2", lapsed + 1))), "r1", NOW),
            Move::Wait
        );
    }
}
