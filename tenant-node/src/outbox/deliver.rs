//! The deliverers: one task per peer with something queued, sending its
//! queue in order in batches on one relay stream, with backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use works_bridge::Outcome;
use works_bridge::client::RelayStream;

use super::lease::{self, Lease};
use super::signal::{Refused, Signal, Signals};
use crate::error::{Error, Result};
use crate::ids::TenantId;
use crate::model::EventBody;
use crate::store::now_ms;
use crate::store::outbox::{self as outbox, OutboxRow, OutboxState};
use crate::tenant::Tenant;
use crate::wire::{self, Payload};

/// Envelopes per batch on the relay stream.
const BATCH: u32 = 256;
/// Payload bytes per batch: 256 of the largest text messages would not fit
/// the bridge's message limit (16 MiB), so a batch also stops here. A
/// single larger envelope still goes, alone.
const BATCH_BYTES: usize = 4 * 1024 * 1024;
/// First retry delay after a failed delivery; doubles up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How long the deliverers may take to finish their current batch when
/// the node stops; then they are dropped (what they sent and was not
/// acknowledged stays queued, and receivers drop duplicates).
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Runs the deliverers: one task per peer with something queued, until
/// `stop` turns true; then each finishes its current batch.
pub async fn run(tenant: Arc<Tenant>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let Some(mut woken) = tenant.outbox.woken.lock().ok().and_then(|mut w| w.take()) else {
        return;
    };
    let mut deliverers: HashMap<TenantId, Arc<Signals>> = HashMap::new();
    // Dropped, with every deliverer in it, when this task is aborted.
    let mut tasks = tokio::task::JoinSet::new();
    // LINE's deliverer has no stop signal of its own: it is dropped at stop.
    let mut line_tasks = tokio::task::JoinSet::new();
    // Among replicas, the heartbeat that tells the others' shares.
    tasks.spawn(lease::attend(tenant.clone(), stop.clone()));
    match tenant.store.pool().acquire().await {
        Ok(mut conn) => match outbox::queues_to_deliver(&mut conn).await {
            Ok(peers) => peers.iter().for_each(|p| tenant.outbox.wake(p)),
            Err(e) => tracing::warn!(error = %e, "cannot read the outbox"),
        },
        Err(e) => tracing::warn!(error = %e, "cannot read the outbox"),
    }
    loop {
        let (peer, signal) = tokio::select! {
            woke = woken.recv() => match woke {
                Some(woke) => woke,
                None => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        match signal {
            Signal::Queued => {
                let signals = deliverers.entry(peer.clone()).or_insert_with(|| {
                    let signals = Arc::new(Signals::default());
                    if peer.as_str() == crate::ids::LINE_TENANT {
                        line_tasks.spawn(super::line::deliver(tenant.clone(), signals.clone()));
                    } else {
                        tasks.spawn(deliver(tenant.clone(), peer, signals.clone(), stop.clone()));
                    }
                    signals
                });
                signals.queued.notify_one();
            }
            // Without a deliverer nothing waits for the peer.
            Signal::Back => {
                if let Some(signals) = deliverers.get(&peer) {
                    signals.back.notify_one();
                }
            }
        }
    }
    line_tasks.abort_all();
    let finished = tokio::time::timeout(STOP_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::info!("deliverers still waiting for acknowledgements at stop were dropped");
    }
    for peer in deliverers.keys() {
        tenant.metrics.set_delivering(peer.as_str(), false);
    }
}

/// Delivers one peer's queue, in order, until `stop` turns true: then it
/// returns between batches (a batch on its way is finished first).
async fn deliver(
    tenant: Arc<Tenant>,
    peer: TenantId,
    signals: Arc<Signals>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut stream: Option<(RelayStream, u64)> = None;
    let mut backoff = MIN_BACKOFF;
    let mut failing = false;
    let mut lease = Lease::new(peer.as_str());
    while !*stop.borrow() {
        // Among replicas sharing the database, only the lease's holder
        // delivers; the others stand by until it lapses.
        match lease.hold(&tenant).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                stream = None;
                tokio::select! {
                    _ = tokio::time::sleep(lease::RENEWAL) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(peer = %peer, error = %e, "cannot take the queue's lease");
                let _ = tokio::time::timeout(backoff, stop.wait_for(|s| *s)).await;
                continue;
            }
        }
        let rows = match queued(&tenant, &peer).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(peer = %peer, error = %e, "cannot read the outbox");
                let _ = tokio::time::timeout(backoff, stop.wait_for(|s| *s)).await;
                continue;
            }
        };
        if rows.is_empty() {
            tokio::select! {
                _ = tokio::time::timeout(lease::RENEWAL, signals.queued.notified()) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
            continue;
        }
        // The peer's state in `peer list` follows the relay: failing (with
        // the reason) until a batch goes through again.
        match send(&tenant, &peer, &mut stream, &rows, &mut lease).await {
            Ok(None) => {
                backoff = MIN_BACKOFF;
                if std::mem::take(&mut failing) {
                    let _ = tenant.store.peer_contacted(&peer).await;
                }
            }
            Ok(Some(reason)) => {
                failing = true;
                tenant.metrics.delivery_failed(peer.as_str());
                let _ = tenant.store.peer_failed(&peer, &reason).await;
                backoff = retry_after(backoff, &signals.back, &mut stop).await;
            }
            Err(e) => {
                stream = None;
                failing = true;
                tenant.metrics.delivery_failed(peer.as_str());
                let _ = tenant.store.peer_failed(&peer, &e.to_string()).await;
                tracing::info!(peer = %peer, queued = rows.len(), error = %e, "relay to peer failed; will retry");
                let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
                if let Ok(mut w) = tenant.store.begin_write().await {
                    let _ = outbox::attempted(&mut w.tx, &ids, &e.to_string()).await;
                    let _ = w.commit().await;
                }
                backoff = retry_after(backoff, &signals.back, &mut stop).await;
            }
        }
    }
    // Stopping: the next replica takes the queue over at once.
    lease.release(&tenant).await;
}

/// Waits `backoff` before a retry, or less when the peer says it is back;
/// the next wait: doubled up to `MAX_BACKOFF`, or the shortest again. The
/// node stopping ends the wait too.
async fn retry_after(
    backoff: Duration,
    back: &Notify,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Duration {
    tokio::select! {
        _ = tokio::time::sleep(backoff) => (backoff * 2).min(MAX_BACKOFF),
        _ = back.notified() => MIN_BACKOFF,
        _ = stop.wait_for(|s| *s) => backoff,
    }
}

async fn queued(tenant: &Tenant, peer: &TenantId) -> Result<Vec<OutboxRow>> {
    let mut conn = tenant.store.pool().acquire().await?;
    let mut rows = outbox::queued(&mut conn, peer, BATCH).await?;
    rows.truncate(within_batch_bytes(&rows));
    Ok(rows)
}

/// How many of `rows`, from the first, fit `BATCH_BYTES` (at least one).
fn within_batch_bytes(rows: &[OutboxRow]) -> usize {
    let mut total = 0;
    rows.iter()
        .position(|r| {
            total += r.payload.len();
            total > BATCH_BYTES
        })
        .map_or(rows.len(), |over| over.max(1))
}

/// Sends one batch and records the answers. `Ok(Some(reason))`: the peer
/// asked to retry part of it later.
async fn send(
    tenant: &Tenant,
    peer: &TenantId,
    stream: &mut Option<(RelayStream, u64)>,
    rows: &[OutboxRow],
    lease: &mut Lease,
) -> Result<Option<String>> {
    let Some(row) = tenant.store.peer(peer).await? else {
        // Unpeered: nothing queued for it can ever be delivered.
        *stream = None;
        let reason = format!("{peer} is no longer a peer");
        let mut w = tenant.store.begin_write().await?;
        let n = outbox::refuse_queued(&mut w.tx, peer, &reason, now_ms()).await?;
        w.commit().await?;
        tracing::info!(peer = %peer, refused = n, "queue of a former peer closed");
        return Ok(None);
    };
    if stream.as_ref().is_some_and(|(s, _)| s.outlived()) {
        tracing::info!(peer = %peer, "the peer's certificate expired; reconnecting");
        *stream = None;
    }
    // What this node presents changed (a CA change-over): the stream
    // carries the certificate it was opened with.
    let epoch = tenant.identity_epoch();
    if stream.as_ref().is_some_and(|(_, opened)| *opened != epoch) {
        tracing::info!(peer = %peer, "this node's certificate changed; reconnecting");
        *stream = None;
    }
    if stream.is_none() {
        let mut client = tenant
            .dial(&row)
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        *stream = Some((
            client
                .open_relay(tenant.limits.relay_ack_timeout())
                .await
                .map_err(|e| Error::Unavailable(e.to_string()))?,
            epoch,
        ));
    }
    let Some((open, _)) = stream.as_mut() else {
        return Err(Error::Internal("relay stream missing".into()));
    };
    // A row that cannot be encoded is this node's fault: the queue waits
    // on it, the reason shown in `peer list`, rather than drop it.
    let envelopes = rows
        .iter()
        .map(|row| wire::outgoing(row, &tenant.id))
        .collect::<Result<Vec<_>>>()?;
    let outcomes = open
        .send(envelopes)
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))?;
    let at = now_ms();
    let mut retry = None;
    let mut w = tenant.store.begin_write().await?;
    // A replica that lost the lease while the batch was out records
    // nothing: the new holder sends it again, and the peer drops what it
    // already stored.
    if !lease.fence(tenant, &mut w.tx).await? {
        *stream = None;
        return Err(Error::Unavailable(format!(
            "this replica no longer holds {peer}'s queue"
        )));
    }
    let mut answered = Vec::new();
    let mut delivered = Vec::new();
    for (row, outcome) in rows.iter().zip(outcomes) {
        match outcome {
            Outcome::Stored => {
                delivered.push(row.id);
                answered.push((row.clone(), false));
            }
            Outcome::Refused(reason) => {
                tracing::info!(peer = %peer, event = %row.event_id, %reason, "peer refused an event");
                outbox::finish(&mut w.tx, row.id, OutboxState::Refused, Some(&reason), at).await?;
                answered.push((row.clone(), true));
            }
            Outcome::Retry(reason) => {
                tracing::debug!(peer = %peer, event = %row.event_id, %reason, "peer asks to retry");
                outbox::attempted(&mut w.tx, &[row.id], &reason).await?;
                retry = Some(reason);
                break;
            }
        }
    }
    outbox::delivered(&mut w.tx, &delivered, at).await?;
    w.commit().await?;
    let refused = answered.iter().filter(|(_, refused)| *refused).count() as u64;
    tenant
        .metrics
        .delivered(peer.as_str(), delivered.len() as u64, refused);
    for (row, refused) in answered {
        if refused && let Some(refusal) = refusal(peer, &row) {
            tenant.outbox.refused(refusal);
        }
        if let Err(e) = tenant.report_to_origin(&row).await {
            tracing::warn!(event = %row.event_id, error = %e, "cannot queue a delivery receipt");
        }
    }
    Ok(retry)
}

/// What a peer's refusal of `row` means for the room's members, if
/// anything: when it refused a hosted room's change that brings its own
/// members in (every one of the peer's members for a refused creation, the
/// ones it was asked to add for a refused invitation), they are to leave.
fn refusal(peer: &TenantId, row: &OutboxRow) -> Option<Refused> {
    let room = row.room_id?;
    if row.host_seq == 0 {
        return None;
    }
    let Ok(Payload::Event(relayed)) = serde_json::from_str::<Payload>(&row.payload) else {
        return None;
    };
    let members = match relayed.body {
        EventBody::Created { .. } => None,
        EventBody::Joined { members } => {
            Some(members.into_iter().filter(|m| m.belongs_to(peer)).collect())
        }
        _ => return None,
    };
    Some(Refused {
        room,
        peer: peer.clone(),
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{EventId, RoomId};

    fn row(payload_bytes: usize) -> OutboxRow {
        OutboxRow {
            id: 1,
            peer: TenantId::parse("globex.example").unwrap(),
            event_id: EventId::generate(),
            room_id: Some(RoomId::generate()),
            host_seq: 1,
            payload: "x".repeat(payload_bytes),
            attempts: 0,
            created_at_ms: 0,
        }
    }

    #[test]
    fn a_batch_stops_at_its_byte_budget_but_never_at_zero() {
        let small: Vec<OutboxRow> = (0..3).map(|_| row(10)).collect();
        assert_eq!(within_batch_bytes(&small), 3);
        let big: Vec<OutboxRow> = (0..300).map(|_| row(100 * 1024)).collect();
        assert_eq!(within_batch_bytes(&big), BATCH_BYTES / (100 * 1024));
        let huge = vec![row(BATCH_BYTES + 1), row(1)];
        assert_eq!(within_batch_bytes(&huge), 1);
        assert_eq!(within_batch_bytes(&[]), 0);
    }
}
