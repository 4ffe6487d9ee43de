//! What goes to LINE users: a room's messages as LINE push requests,
//! queued in the outbox under the LINE tenant in the transaction that
//! stores them, and the one deliverer that pushes them in order.
//!
//! A push carries `X-Line-Retry-Key`, the event id as a UUID, so a push
//! sent again after a lost answer is shown once: LINE's 409 for a key it
//! accepted before counts as delivered. 429 and 5xx wait (LINE's
//! `Retry-After` when it gives one) and try again, in order; any other
//! refusal is for good, and LINE's message becomes the delivery state.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::lease::{self, Lease};
use super::signal::Signals;
use crate::admission::RoomPermit;
use crate::error::{Error, Result};
use crate::ids::{self, MemberId};
use crate::messaging_api::{self, CallError};
use crate::model::{EventBody, RoomEvent};
use crate::store::outbox::{self as outbox, OutboxState};
use crate::store::{members, now_ms, rooms};
use crate::tenant::Tenant;

/// Rows the deliverer reads at a time.
const BATCH: u32 = 32;
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// LINE shows at most 20 characters of a sender's name.
const SENDER_NAME_CHARS: usize = 20;

/// A LINE sticker as the product addresses it: `line:PACKAGE_ID:STICKER_ID`.
pub fn line_sticker(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("line:")?;
    let (package, sticker) = rest.split_once(':')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    (digits(package) && digits(sticker)).then_some((package, sticker))
}

impl Tenant {
    /// Queues a message of a room with LINE users for its LINE chat, in the
    /// caller's transaction. Only messages go to LINE: joins, renames and
    /// departures are this side's own business.
    pub(crate) async fn queue_for_line(
        &self,
        conn: &mut sqlx::AnyConnection,
        permit: &RoomPermit,
        event: &RoomEvent,
    ) -> Result<bool> {
        if !event.body.is_message() || ids::is_line(&event.sender) {
            return Ok(false);
        }
        if !permit.covers(&event.room, &event.sender) {
            return Err(Error::Internal(format!(
                "a LINE message of {} came with a permit that does not cover it",
                event.sender
            )));
        }
        let row = rooms::room(conn, &event.room)
            .await?
            .ok_or_else(|| Error::NotFound(format!("room {}", event.room)))?;
        let Some(chat) = row.line_chat else {
            return Ok(false);
        };
        let sender = self.line_sender(conn, &event.sender).await?;
        let mut message = self.line_message(&event.body)?;
        message["sender"] = sender;
        let payload = json!({ "to": chat, "messages": [message] });
        outbox::enqueue(
            conn,
            &ids::line_tenant(),
            &event.id,
            &event.room,
            event.seq,
            &payload.to_string(),
            event.at_ms,
        )
        .await?;
        Ok(true)
    }

    /// Queues a message of the account's own (a greeting, a choice of whom
    /// to write to) for a LINE chat, in the caller's transaction; wake the
    /// LINE deliverer after the commit.
    pub(crate) async fn queue_line_notice(
        &self,
        conn: &mut sqlx::AnyConnection,
        to: &str,
        text: &str,
        quick_reply: Option<Value>,
    ) -> Result<()> {
        let mut message = json!({ "type": "text", "text": text });
        if let Some(quick_reply) = quick_reply {
            message["quickReply"] = quick_reply;
        }
        let payload = json!({ "to": to, "messages": [message] });
        outbox::enqueue_control(
            conn,
            &ids::line_tenant(),
            &crate::ids::EventId::generate(),
            None,
            &payload.to_string(),
            now_ms(),
        )
        .await?;
        Ok(())
    }

    /// LINE's `sender` for our member: their name, so the LINE user sees
    /// who speaks, and their photo when this node is reachable from LINE.
    async fn line_sender(
        &self,
        conn: &mut sqlx::AnyConnection,
        member: &MemberId,
    ) -> Result<Value> {
        let m = members::member(conn, member)
            .await?
            .ok_or_else(|| Error::NotFound(format!("member {member}")))?;
        let mut sender = json!({ "name": sender_name(&m.display_name, member) });
        if let (Some(base), true) = (&self.public_url, m.has_photo) {
            sender["iconUrl"] = Value::String(format!("{base}/line/icons/{member}"));
        }
        Ok(sender)
    }

    /// A message body as LINE's message object.
    fn line_message(&self, body: &EventBody) -> Result<Value> {
        Ok(match body {
            EventBody::Text { text } => json!({ "type": "text", "text": text }),
            EventBody::Sticker { name } => match line_sticker(name) {
                Some((package, sticker)) => {
                    json!({ "type": "sticker", "packageId": package, "stickerId": sticker })
                }
                None => {
                    return Err(Error::invalid(
                        "sticker",
                        "LINE users receive LINE stickers only: line:PACKAGE_ID:STICKER_ID",
                    ));
                }
            },
            EventBody::Attachment(meta) => {
                let (Some(base), Some(channel)) = (&self.public_url, &self.line) else {
                    return Err(Error::FailedPrecondition(
                        "files cannot reach LINE users: this node has no [web] public_url".into(),
                    ));
                };
                let tag = channel.link_tag(&meta.id);
                json!({
                    "type": "text",
                    "text": format!(
                        "{} ({}): {base}/line/files/{}/{tag}",
                        meta.name,
                        human_size(meta.size),
                        meta.id
                    ),
                })
            }
            other => {
                return Err(Error::Internal(format!(
                    "a {} event is not a message for LINE",
                    other.kind()
                )));
            }
        })
    }
}

/// The name LINE shows for our member: at most 20 characters, and without
/// the word LINE (any case, as a word), which LINE does not let accounts
/// use in a sender's name.
fn sender_name(display_name: &str, member: &MemberId) -> String {
    let kept: Vec<&str> = display_name
        .split(' ')
        .filter(|word| {
            !word
                .split(|c: char| !c.is_alphanumeric())
                .any(|w| w.eq_ignore_ascii_case("line"))
        })
        .collect();
    let cleaned = kept.join(" ").replace("ライン", "");
    let cleaned = cleaned.trim();
    let name = if cleaned.is_empty() {
        member.name()
    } else {
        cleaned
    };
    name.chars().take(SENDER_NAME_CHARS).collect()
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1024 * 1024 => format!("{:.1} MB", b as f64 / (1024.0 * 1024.0)),
        b if b >= 1024 => format!("{} kB", b.div_ceil(1024)),
        b => format!("{b} bytes"),
    }
}

/// Pushes what is queued for LINE, in order, for as long as the node runs.
pub(super) async fn deliver(tenant: Arc<Tenant>, signals: Arc<Signals>) {
    let line = ids::line_tenant();
    let Some(channel) = tenant.line.clone() else {
        tracing::warn!("messages for LINE users are queued, but this node has no [line] channel");
        return;
    };
    let mut backoff = MIN_BACKOFF;
    // Among replicas, the lease's holder alone pushes to LINE.
    let mut lease = Lease::new(line.as_str());
    loop {
        match lease.hold(&tenant).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                tokio::time::sleep(lease::RENEWAL).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot take the LINE queue's lease");
                tokio::time::sleep(backoff).await;
                continue;
            }
        }
        let rows = match tenant.store.pool().acquire().await {
            Ok(mut conn) => outbox::queued(&mut conn, &line, BATCH).await,
            Err(e) => Err(e.into()),
        };
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the LINE outbox");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        if rows.is_empty() {
            let _ = tokio::time::timeout(lease::RENEWAL, signals.queued.notified()).await;
            continue;
        }
        for row in rows {
            let body: Value = match serde_json::from_str(&row.payload) {
                Ok(body) => body,
                Err(e) => {
                    let reason = format!("unreadable: {e}");
                    if !finish(
                        &tenant,
                        &mut lease,
                        row.id,
                        OutboxState::Refused,
                        Some(&reason),
                    )
                    .await
                    {
                        break;
                    }
                    continue;
                }
            };
            let key = messaging_api::retry_key(&row.event_id);
            match channel.push(&body, &key).await {
                Ok(()) | Err(CallError::AlreadyAccepted) => {
                    backoff = MIN_BACKOFF;
                    tenant.metrics.delivered(line.as_str(), 1, 0);
                    tracing::debug!(event = %row.event_id, "pushed to LINE");
                    if !finish(&tenant, &mut lease, row.id, OutboxState::Delivered, None).await {
                        break;
                    }
                }
                Err(CallError::Refused { status, message }) => {
                    let reason = format!("LINE refused it ({status}): {message}");
                    tracing::warn!(event = %row.event_id, %reason, "a push to LINE was refused");
                    tenant.metrics.delivered(line.as_str(), 0, 1);
                    if !finish(
                        &tenant,
                        &mut lease,
                        row.id,
                        OutboxState::Refused,
                        Some(&reason),
                    )
                    .await
                    {
                        break;
                    }
                }
                Err(CallError::Later {
                    reason,
                    retry_after,
                }) => {
                    tracing::info!(event = %row.event_id, %reason, "LINE is unavailable; will retry");
                    tenant.metrics.delivery_failed(line.as_str());
                    if let Ok(mut w) = tenant.store.begin_write().await {
                        let _ = outbox::attempted(&mut w.tx, &[row.id], &reason).await;
                        let _ = w.commit().await;
                    }
                    let wait = retry_after
                        .map(|d| d.min(MAX_RETRY_AFTER))
                        .unwrap_or(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    tokio::time::sleep(wait).await;
                    // Later rows never overtake this one: read the queue again.
                    break;
                }
            }
        }
    }
}

/// Records LINE's answer for a row while this replica holds the queue;
/// false when it does not (the row stays queued for the holder, whose push
/// LINE answers 409 by the retry key) or the record failed.
async fn finish(
    tenant: &Tenant,
    lease: &mut Lease,
    id: i64,
    state: OutboxState,
    reason: Option<&str>,
) -> bool {
    let recorded = async {
        let mut w = tenant.store.begin_write().await?;
        if !lease.fence(tenant, &mut w.tx).await? {
            return Ok(false);
        }
        outbox::finish(&mut w.tx, id, state, reason, now_ms()).await?;
        w.commit().await?;
        Ok::<bool, Error>(true)
    };
    match recorded.await {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(error = %e, "cannot record a push to LINE");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stickers_for_line_are_named_by_their_ids() {
        assert_eq!(line_sticker("line:446:1988"), Some(("446", "1988")));
        for bad in ["thumbs-up", "line:446", "line::1", "line:a:1", "line:1:2:3"] {
            assert_eq!(line_sticker(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_sender_name_fits_line() {
        let m = MemberId::parse("alice@a.example").unwrap();
        assert_eq!(sender_name("Alice Example", &m), "Alice Example");
        assert_eq!(sender_name("LINE", &m), "alice");
        assert_eq!(sender_name("Alice (LINE desk)", &m), "Alice desk)");
        assert_eq!(sender_name("Caroline", &m), "Caroline");
        assert_eq!(sender_name(&"x".repeat(30), &m).chars().count(), 20);
    }
}
