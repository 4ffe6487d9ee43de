//! A replica's hold on a shared work queue (a peer's outbox, LINE's, the
//! LINE inbox): taken when free or expired, renewed a third of the way
//! through its term, fenced at every acknowledgement, given up at stop.
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
        if self.epoch.is_some() && self.renewed.elapsed() < TERM / 3 {
            return Ok(self.epoch);
        }
        let now = now_ms();
        let mut w = tenant.store.begin_write().await?;
        // A holder inside its acknowledging transaction locks the lease's
        // row: wait for it briefly, not for as long as it stalls.
        leases::short_lock_wait(&mut w.tx).await?;
        let epoch = leases::take(
            &mut w.tx,
            &self.queue,
            &tenant.replica,
            now,
            now + TERM.as_millis() as i64,
        )
        .await?;
        w.commit().await?;
        if epoch != self.epoch {
            match epoch {
                Some(e) => {
                    tracing::info!(queue = %self.queue, epoch = e, "this replica holds the queue")
                }
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
            let _ = leases::release(&mut w.tx, &self.queue, &tenant.replica).await;
            let _ = w.commit().await;
        }
    }
}
