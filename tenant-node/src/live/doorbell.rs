//! The replicas' doorbell: several replicas of one node share a PostgreSQL
//! database, and each has its own hub and deliverers. After each commit a
//! replica rings the others with `pg_notify`, outside the data transaction:
//! on `works_events` the rooms and seqs it committed (and members' notices
//! and suspensions), on `works_outbox` the peers it queued for. A replica that hears a ring reads the events from
//! the database and shows them on its own streams (the watchers' cursors
//! drop what they saw and fill any gap), and wakes its deliverer of each
//! peer (whichever replica holds a peer's lease delivers). When the
//! listening connection drops, rings may have been missed: every stream
//! reads back from its cursors once the connection is up again, and every
//! deliverer looks at its queue.
//!
//! **Invariant:** a ring only says where to look; what is shown is read from
//! the database, so a lost, doubled or forged ring loses or doubles
//! nothing.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use crate::error::Result;
use crate::ids::{MemberId, RoomId, TenantId};
use crate::live::hub::Ring;
use crate::model::EventBody;
use crate::store::{Backend, events, outbox, rooms};
use crate::tenant::Tenant;

const EVENTS: &str = "works_events";
const OUTBOX: &str = "works_outbox";
/// PostgreSQL takes payloads under 8,000 bytes.
const MAX_PAYLOAD: usize = 7000;
/// Rings sent in one go, at most.
const BATCH: usize = 512;

/// What this replica rang, waiting to go out.
pub struct Bells {
    events: mpsc::UnboundedReceiver<Ring>,
    outbox: mpsc::UnboundedReceiver<TenantId>,
}

/// Connects the hub and the deliverers' wake-ups to the doorbell
/// (PostgreSQL only), before the node serves anything: every commit from
/// then on rings.
pub fn install(tenant: &Tenant) -> Option<Bells> {
    if tenant.store.backend() != Backend::Postgres {
        return None;
    }
    let (events_bell, events) = mpsc::unbounded_channel();
    let (outbox_bell, outbox) = mpsc::unbounded_channel();
    tenant.hub.ring_others(events_bell);
    tenant.outbox.ring_others(outbox_bell);
    Some(Bells { events, outbox })
}

/// Rings and listens for as long as the node runs.
pub async fn run(tenant: Arc<Tenant>, bells: Bells) {
    let ringing = tokio::spawn(ring(tenant.clone(), bells.events, bells.outbox));
    listen(tenant).await;
    ringing.abort();
}

/// Sends what this replica committed to the others, a batch at a time.
async fn ring(
    tenant: Arc<Tenant>,
    mut events_rung: mpsc::UnboundedReceiver<Ring>,
    mut outbox_rung: mpsc::UnboundedReceiver<TenantId>,
) {
    let origin = tenant.replica.clone();
    let mut rooms_seqs = Vec::with_capacity(BATCH);
    let mut peers = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            n = events_rung.recv_many(&mut rooms_seqs, BATCH) => {
                if n == 0 { return; }
                let items: Vec<String> = rooms_seqs.drain(..).map(|ring| match ring {
                    Ring::Event(room, seq) => format!("e:{room}:{seq}"),
                    Ring::Notice(id) => format!("n:{id}"),
                    Ring::Suspended(member) => format!("s:{member}"),
                    Ring::Peers => "p".to_string(),
                }).collect();
                send(&tenant, EVENTS, &origin, items).await;
            }
            n = outbox_rung.recv_many(&mut peers, BATCH) => {
                if n == 0 { return; }
                let mut items: Vec<String> = peers.drain(..).map(|p| p.to_string()).collect();
                items.sort();
                items.dedup();
                send(&tenant, OUTBOX, &origin, items).await;
            }
        }
    }
}

/// `origin item item …`, in payloads PostgreSQL takes.
async fn send(tenant: &Tenant, channel: &str, origin: &str, items: Vec<String>) {
    let mut payload = origin.to_string();
    for item in items {
        if payload.len() + item.len() + 1 > MAX_PAYLOAD {
            notify(tenant, channel, &payload).await;
            payload = origin.to_string();
        }
        payload.push(' ');
        payload.push_str(&item);
    }
    notify(tenant, channel, &payload).await;
}

async fn notify(tenant: &Tenant, channel: &str, payload: &str) {
    let sent = sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(tenant.store.pool())
        .await;
    if let Err(e) = sent {
        // The others catch up when their listening connection comes back,
        // or at their deliverers' next look at the queue.
        tracing::warn!(error = %e, "cannot ring the other replicas");
    }
}

/// Listens for the other replicas' rings, reconnecting after a drop.
async fn listen(tenant: Arc<Tenant>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut listener = match PgListener::connect(&tenant.database_url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for the other replicas; will retry");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if let Err(e) = listener.listen_all([EVENTS, OUTBOX]).await {
            tracing::warn!(error = %e, "cannot listen for the other replicas; will retry");
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(200);
        // Whatever was rung while no one listened: read it back.
        catch_up(&tenant).await;
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    if let Err(e) = heard(&tenant, n.channel(), n.payload()).await {
                        tracing::warn!(error = %e, "cannot read what another replica rang; streams read back");
                        tenant.hub.resync_all();
                    }
                }
                Ok(None) => {
                    tracing::info!("the replicas' doorbell connection dropped; reconnecting");
                    catch_up(&tenant).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the replicas' doorbell failed; reconnecting");
                    break;
                }
            }
        }
    }
}

/// After rings may have been missed: every stream reads back from its
/// cursors, every deliverer with a queue looks at it, and the trust store
/// follows the peers table.
async fn catch_up(tenant: &Tenant) {
    tenant.hub.resync_all();
    if let Err(e) = tenant.reload_trust().await {
        tracing::warn!(error = %e, "cannot reload the peers' CAs");
    }
    if let Ok(mut conn) = tenant.store.pool().acquire().await
        && let Ok(peers) = outbox::queues_to_deliver(&mut conn).await
    {
        for peer in peers {
            tenant.outbox.wake_here(&peer);
        }
    }
}

async fn heard(tenant: &Tenant, channel: &str, payload: &str) -> Result<()> {
    let mut items = payload.split(' ');
    if items.next() == Some(tenant.replica.as_str()) {
        return Ok(());
    }
    match channel {
        OUTBOX => {
            for peer in items.filter_map(|p| TenantId::parse(p).ok()) {
                tenant.outbox.wake_here(&peer);
            }
        }
        EVENTS => {
            let mut conn = tenant.store.pool().acquire().await?;
            // Nobody watching here: no event to read for this replica (a
            // stream opened later reads from its cursors).
            let watched = tenant.hub.any_watching();
            for item in items {
                if let Some(id) = item.strip_prefix("n:") {
                    if let Some(notice) = crate::store::policy::notice(&mut conn, id).await? {
                        tenant.hub.notice_here(notice);
                    }
                    continue;
                }
                if item == "p" {
                    tenant.reload_trust().await?;
                    continue;
                }
                if let Some(member) = item.strip_prefix("s:") {
                    if let Ok(member) = MemberId::parse(member) {
                        tenant.hub.suspended_here(member);
                    }
                    continue;
                }
                let Some(item) = item.strip_prefix("e:") else {
                    continue;
                };
                if !watched {
                    continue;
                }
                let Some((room, seq)) = item.split_once(':') else {
                    continue;
                };
                let (Ok(room), Ok(seq)) = (RoomId::parse(room), seq.parse::<u64>()) else {
                    continue;
                };
                let Some(event) = events::range(&mut conn, &room, seq.saturating_sub(1), seq, 1)
                    .await?
                    .into_iter()
                    .next()
                else {
                    continue;
                };
                let mut recipients: Vec<MemberId> = rooms::member_ids(&mut conn, &room)
                    .await?
                    .into_iter()
                    .filter(|m| m.belongs_to(&tenant.id))
                    .collect();
                // Who left with this event still sees it.
                let departed = match &event.body {
                    EventBody::Left { .. } | EventBody::Unknown => Some(event.sender.clone()),
                    EventBody::Removed { member } => Some(member.clone()),
                    _ => None,
                };
                if let Some(gone) = departed.filter(|m| m.belongs_to(&tenant.id)) {
                    recipients.push(gone);
                }
                recipients.retain(|m| tenant.hub.watching(m));
                if recipients.is_empty() {
                    continue;
                }
                let unseen = events::unseen_at(&mut conn, &room, seq).await?;
                recipients.retain(|m| !unseen.contains(m));
                tenant.hub.publish_here(event, recipients);
            }
        }
        _ => {}
    }
    Ok(())
}
