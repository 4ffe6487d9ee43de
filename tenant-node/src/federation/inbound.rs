//! The receiving gate: what this node does with the envelopes a peer
//! relays, checked as if the peer were hostile. A peer holds a genuine
//! certificate and may send anything; nothing it relays is stored unless
//! this node would have accepted the same change from its own members.
//!
//! - As a room's host, a proposal is accepted only for a room hosted
//!   here, from the sender's own node, and is checked like a local change
//!   (`rooms::host_change`), with the same content limits (`content`).
//! - As a replica, an event is accepted only from the room's host, at the
//!   room's next seq, once. Our own members appear as its sender only in
//!   changes this node proposed (matched by event id and content), except
//!   the host taking one of them out ("unknown"). The sender must be in
//!   the room, the room's rules hold (the group master adds and removes),
//!   the content meets our limits, and the room after the event is what
//!   the event makes of the room before it: a snapshot cannot add anyone.
//!   Nothing makes our member a member of a room unless this node's half
//!   of admission permits it now, for every member of the room.
//! - What fails is withheld (stored as `withheld`, so the room's order
//!   stays whole, never shown) and the host is told why; a room this node
//!   does not know yet is opened only by an event that passes.
//! - An envelope is first bounded in size and read by `wire`; one of a
//!   kind this node does not know (a newer node's) is neither stored nor
//!   refused but answered retry, so that it waits at its sender.

use rustls::pki_types::CertificateDer;
use sqlx::AnyConnection;
use works_bridge::Outcome;
use works_bridge::error::clip;
use works_proto::federation::v1 as pb;

use crate::admission;
use crate::config::Limits;
use crate::error::{Error, Result};
use crate::ids::{EventId, MemberId, RoomId, TenantId};
use crate::model::{EventBody, MemberState, RoomEvent, RoomKind};
use crate::rooms::content;
use crate::rooms::{Applied, Change};
use crate::store::outbox::{self as outbox, OutboxState};
use crate::store::{events, now_ms, rooms, savepoint};
use crate::tenant::Tenant;
use crate::wire::WireError;
use crate::wire::status;
use crate::wire::{Envelope, Message, Payload, ReceiptEntry, Snapshot};

use super::control::Later;
use super::run::{HostEvent, Run, joins_run};

/// What follows the commit of a relayed envelope: a room event to
/// announce, or what a control message changes outside the database.
pub(super) enum After {
    Room(Applied),
    Control(Later),
}

/// The largest envelope this node reads: a text at the limit, or a group
/// room's snapshot, with room to spare for the encoding.
fn max_envelope_bytes(limits: &Limits) -> usize {
    limits.max_text_bytes * 6 + limits.max_room_members * 512 + 64 * 1024
}

/// What the receiving gate makes of an envelope before it judges it. One
/// is held per envelope in hand, so the unknown kind's small size is no
/// saving worth a box.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Read {
    Known(Message),
    /// It carries nothing this node knows (a newer node's kind): not
    /// refused, so that it stays queued at the sender; this says why.
    Unknown(String),
}

/// Reads an envelope as this node does before it judges what it says:
/// bounded in its encoded size, then converted by `wire`. Public for the
/// fuzz targets.
pub fn read_envelope(envelope: pb::Envelope, limits: &Limits) -> Result<Read> {
    let size = prost::Message::encoded_len(&envelope);
    if size > max_envelope_bytes(limits) {
        return Err(Error::ResourceExhausted(format!(
            "the envelope is {size} bytes; this node takes at most {}",
            max_envelope_bytes(limits)
        )));
    }
    match Message::try_from(envelope) {
        Ok(message) => Ok(Read::Known(message)),
        Err(unknown @ WireError::Unknown { .. }) => Ok(Read::Unknown(unknown.to_string())),
        Err(WireError::Invalid { field, reason }) => Err(Error::Invalid { field, reason }),
    }
}

impl Tenant {
    /// Stores what a peer relays, in order. The first envelope that cannot
    /// be stored yet makes every later one wait too.
    pub async fn receive_envelopes(
        &self,
        peer: &TenantId,
        chain: &[CertificateDer<'static>],
        envelopes: Vec<pb::Envelope>,
    ) -> Vec<Outcome> {
        let count = envelopes.len();
        let retry_all = |reason: &str| {
            (0..count)
                .map(|_| Outcome::Retry(reason.to_string()))
                .collect::<Vec<_>>()
        };
        // A stream opened while peered outlives an unpeering: ask each time.
        match self.store.peer(peer).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                let reason = format!("{} is not peered with {peer}", self.id);
                return envelopes
                    .iter()
                    .map(|_| Outcome::Refused(reason.clone()))
                    .collect();
            }
            Err(e) => {
                tracing::warn!(peer = %peer, error = %e, "cannot check a relaying peer");
                return retry_all(&status::not_stored_yet(&e));
            }
        }
        // One transaction for the batch: nothing is acknowledged before it
        // commits. Other companies' messages are judged as a run and
        // written together (`run`); every other envelope in a savepoint of
        // its own, so that a refusal undoes only its own writes.
        let mut w = match self.store.begin_write().await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(peer = %peer, error = %e, "cannot store relayed events");
                return retry_all(&status::not_stored_yet(&e));
            }
        };
        let batch: Vec<(String, Result<Read>)> = envelopes
            .into_iter()
            .map(|envelope| {
                let id = clip(&envelope.event_id).into_owned();
                (id, read_envelope(envelope, &self.limits))
            })
            .collect();
        let mut run = match Run::for_batch(&mut w.tx, &self.id, &batch).await {
            Ok(run) => run,
            Err(e) => {
                tracing::warn!(peer = %peer, error = %e, "cannot store relayed events");
                return retry_all(&status::not_stored_yet(&e));
            }
        };
        let mut outcomes = Vec::with_capacity(count);
        let mut announce = Vec::new();
        let mut waiting: Option<String> = None;
        for (event_id, read) in batch {
            if let Some(reason) = &waiting {
                outcomes.push(Outcome::Retry(reason.clone()));
                continue;
            }
            let received = if joins_run(&self.id, &read) {
                // Writes nothing before the run is written.
                Ok(self
                    .receive_read(&mut w.tx, peer, chain, &event_id, read, Some(&mut run))
                    .await)
            } else {
                let received = match self.write_run(&mut w.tx, &mut run).await {
                    Ok(()) => {
                        self.receive_in_savepoint(&mut w.tx, peer, chain, &event_id, read)
                            .await
                    }
                    Err(e) => Err(e),
                };
                run.forget();
                received
            };
            let received = match received {
                Ok(received) => received,
                Err(e) => {
                    // A write failed, or a savepoint did not end as it
                    // should: what the envelope wrote may still be there, so
                    // nothing of the batch may commit.
                    tracing::warn!(peer = %peer, error = %e, "a batch of relayed events failed");
                    return retry_all(&status::not_stored_yet(&e));
                }
            };
            let outcome = match received {
                Ok((outcome, applied)) => {
                    announce.extend(applied);
                    outcome
                }
                Err(e) => status::outcome(peer, e),
            };
            if let Outcome::Retry(reason) = &outcome {
                waiting = Some(reason.clone());
            }
            outcomes.push(outcome);
        }
        if let Err(e) = self.write_run(&mut w.tx, &mut run).await {
            tracing::warn!(peer = %peer, error = %e, "cannot store relayed events");
            return retry_all(&status::not_stored_yet(&e));
        }
        if let Err(e) = w.commit().await {
            tracing::warn!(peer = %peer, error = %e, "cannot commit relayed events");
            return retry_all(&status::not_stored_yet(&e));
        }
        for after in announce {
            self.after_commit(after).await;
        }
        outcomes
    }

    /// What follows a relayed envelope's commit.
    async fn after_commit(&self, after: After) {
        match after {
            After::Room(applied) => self.announce(applied),
            After::Control(later) => self.after_control(later).await,
        }
    }

    /// `receive_read` in a savepoint of its own. `Ok(Err(_))`: refused (or
    /// not stored) and undone, the batch goes on; `Err(_)`: the savepoint
    /// could not end, the batch cannot.
    async fn receive_in_savepoint(
        &self,
        conn: &mut sqlx::AnyConnection,
        peer: &TenantId,
        chain: &[CertificateDer<'static>],
        event_id: &str,
        read: Result<Read>,
    ) -> Result<Result<(Outcome, Option<After>)>> {
        savepoint::begin(conn).await?;
        match self
            .receive_read(conn, peer, chain, event_id, read, None)
            .await
        {
            Ok(done) => {
                savepoint::release(conn).await?;
                Ok(Ok(done))
            }
            Err(e) => {
                savepoint::rollback(conn).await?;
                Ok(Err(e))
            }
        }
    }

    /// The host of a room reports on one of our members' messages.
    async fn receive_receipt(
        &self,
        conn: &mut sqlx::AnyConnection,
        peer: &TenantId,
        id: &EventId,
        room: &RoomId,
        receipt: Vec<ReceiptEntry>,
    ) -> Result<Outcome> {
        let hosted_by_peer = rooms::room(&mut *conn, room)
            .await?
            .is_some_and(|r| r.host.as_ref() == Some(peer));
        let ours = match outbox::pending_by_id(&mut *conn, id).await? {
            Some(p) => &p.room == room,
            None => events::by_id(&mut *conn, id)
                .await?
                .is_some_and(|e| e.sender.belongs_to(&self.id) && &e.room == room),
        };
        if !hosted_by_peer || !ours {
            return Err(Error::PermissionDenied(format!(
                "{peer} cannot report on event {id}"
            )));
        }
        // One entry per other participating node, each once.
        if receipt.len() > self.limits.max_room_members {
            return Err(Error::invalid(
                "receipt",
                format!(
                    "names {} nodes; a room has at most {} members",
                    receipt.len(),
                    self.limits.max_room_members
                ),
            ));
        }
        let mut entries = Vec::with_capacity(receipt.len());
        for entry in receipt {
            let (tenant, state) = (entry.tenant, entry.state);
            if tenant == self.id || entries.iter().any(|(t, _, _)| t == &tenant) {
                return Err(Error::invalid(
                    "receipt",
                    format!("names {tenant} twice, or this node"),
                ));
            }
            let reason = entry.reason.map(works_bridge::error::bounded_message);
            entries.push((tenant, state, reason));
        }
        for (tenant, state, reason) in entries {
            outbox::put_receipt(
                &mut *conn,
                id,
                &outbox::PeerDelivery {
                    peer: tenant,
                    state,
                    reason,
                    attempts: 0,
                },
            )
            .await?;
        }
        // An empty receipt still says: every node has answered.
        outbox::put_receipt(
            &mut *conn,
            id,
            &outbox::PeerDelivery {
                peer: self.id.clone(),
                state: OutboxState::Delivered,
                reason: None,
                attempts: 0,
            },
        )
        .await?;
        Ok(Outcome::Stored)
    }
    /// Checks and stores one envelope (read by `read_envelope`) in the
    /// batch's transaction; what to announce once that commits. With a
    /// `run`, the envelope joins it (`run::joins_run`) and writes nothing
    /// yet.
    async fn receive_read(
        &self,
        conn: &mut AnyConnection,
        peer: &TenantId,
        chain: &[CertificateDer<'static>],
        event_id: &str,
        read: Result<Read>,
        run: Option<&mut Run>,
    ) -> Result<(Outcome, Option<After>)> {
        let envelope = match read? {
            Read::Known(Message::Room(envelope)) => envelope,
            Read::Known(Message::Control(message)) => {
                let later = self.receive_control(conn, peer, chain, message).await?;
                return Ok((Outcome::Stored, later.map(After::Control)));
            }
            Read::Unknown(reason) => {
                tracing::warn!(peer = %peer, event = %event_id, %reason, "relayed envelope of a kind this node does not know; asked to retry");
                return Ok((Outcome::Retry(reason), None));
            }
        };
        let Envelope {
            event_id: id,
            host,
            room,
            host_seq,
            at_ms,
            payload,
        } = envelope;
        let relayed = match payload {
            Payload::Event(relayed) => relayed,
            Payload::Receipt { receipt } => {
                let outcome = self
                    .receive_receipt(conn, peer, &id, &room, receipt)
                    .await?;
                return Ok((outcome, None));
            }
        };
        let sender = relayed.sender;
        let at_ms = content::timestamp(at_ms, now_ms());
        // Seqs are stored as signed 64-bit numbers.
        if host_seq > i64::MAX as u64 {
            return Err(Error::invalid(
                "host_seq",
                format!("{host_seq} is beyond any room's order"),
            ));
        }
        if host_seq == 0 {
            if host != self.id {
                return Err(Error::PermissionDenied(format!(
                    "room {room} is not hosted by {}",
                    self.id
                )));
            }
            if !sender.belongs_to(peer) {
                return Err(Error::PermissionDenied(format!(
                    "{peer} cannot send on behalf of {sender}"
                )));
            }
            if matches!(
                relayed.body,
                EventBody::Created { .. } | EventBody::Withheld
            ) {
                return Err(Error::invalid(
                    "payload",
                    "this kind of event is not proposed to a host",
                ));
            }
            content::event(&relayed.body, &self.limits)?;
            let change = Change {
                id,
                actor: sender,
                body: relayed.body,
                idempotency_key: None,
                at_ms,
            };
            let applied = self.sequence_from_peer(conn, &room, change).await?;
            return Ok((Outcome::Stored, applied.map(After::Room)));
        }
        if &host != peer {
            return Err(Error::PermissionDenied(format!(
                "{peer} relayed an event of a room it says {host} hosts; only the host sequences"
            )));
        }
        let event = RoomEvent {
            id,
            room,
            seq: host_seq,
            sender,
            at_ms,
            body: relayed.body,
        };
        let (outcome, applied) = self
            .store_from_host(conn, peer, event, relayed.room, run)
            .await?;
        Ok((outcome, applied.map(After::Room)))
    }

    /// A change a peer's member asks of a room hosted here (`None`: stored
    /// before).
    async fn sequence_from_peer(
        &self,
        conn: &mut AnyConnection,
        room: &RoomId,
        change: Change,
    ) -> Result<Option<Applied>> {
        if events::by_id(conn, &change.id).await?.is_some() {
            return Ok(None);
        }
        let (row, members) = rooms::room_with_members(conn, room)
            .await?
            .ok_or_else(|| Error::NotFound(format!("room {room}")))?;
        if let Some(host) = &row.host {
            return Err(Error::PermissionDenied(format!(
                "room {room} is hosted by {host}, not here"
            )));
        }
        Ok(Some(
            self.host_change_among(conn, &row, members, change).await?,
        ))
    }

    /// Stores an event its host sequenced: only the next in the room's
    /// order, once, and only what passes `judge`; the rest is withheld.
    async fn store_from_host(
        &self,
        conn: &mut AnyConnection,
        host: &TenantId,
        event: RoomEvent,
        snapshot: Option<Snapshot>,
        mut run: Option<&mut Run>,
    ) -> Result<(Outcome, Option<Applied>)> {
        let at = now_ms();
        let earlier = match &run {
            Some(run) => run.stored(&event.id).cloned(),
            None => events::by_id(&mut *conn, &event.id).await?,
        };
        if let Some(stored) = earlier {
            return stored_before(&stored, &event).map(|outcome| (outcome, None));
        }
        let room = match run.as_deref_mut() {
            Some(run) => run.room(&mut *conn, &event.room).await?,
            None => rooms::room_with_members(&mut *conn, &event.room).await?,
        };
        let view = match room {
            Some((row, members)) => match in_order(&row, host, &event)? {
                None => RoomView {
                    kind: row.kind,
                    name: row.name.clone(),
                    master: row.master.clone(),
                    members,
                    direct_key: String::new(),
                    opened_with: Vec::new(),
                    row: Some(row),
                    reopened: false,
                },
                Some(wait) => {
                    let at_seq = row.last_seq;
                    match reopened_view(&self.id, &self.limits, row, &members, &event, snapshot) {
                        Some(view) => view?,
                        // The host relays a room to this node only while one of
                        // our members is in it: with none in our copy, what
                        // follows a gap never comes, and waiting for it would
                        // hold up everything queued for us behind it.
                        None if !members.iter().any(|m| m.belongs_to(&self.id)) => {
                            return Err(Error::FailedPrecondition(format!(
                                "no member of {} is in room {} since seq {at_seq}: what came after was not relayed here",
                                self.id, event.room
                            )));
                        }
                        None => return Ok((wait, None)),
                    }
                }
            },
            None => new_room_view(&self.id, &self.limits, &event, snapshot)?,
        };
        let (verdict, key) = self
            .judge(&mut *conn, host, &view, &event, run.as_deref_mut())
            .await?;
        let mut event = event;
        let mut outcome = Outcome::Stored;
        let mut unseen_by = Vec::new();
        let after = match verdict {
            Verdict::Apply { after, unseen } => {
                unseen_by = unseen;
                after
            }
            Verdict::InPart {
                after,
                body,
                reason,
            } => {
                tracing::info!(room = %event.room, sender = %event.sender, reason = %reason, "relayed invitation applied in part");
                event.body = body;
                outcome = Outcome::Refused(reason.to_string());
                after
            }
            // A room is never opened only to hold what it withholds.
            Verdict::Withhold { reason, .. } if view.opens() => return Err(reason),
            Verdict::Withhold { reason, tell_host } => {
                tracing::info!(room = %event.room, sender = %event.sender, kind = event.body.kind(), reason = %reason, "relayed event withheld");
                event.body = EventBody::Withheld;
                if tell_host {
                    outcome = Outcome::Refused(reason.to_string());
                }
                RoomAfter {
                    name: view.name.clone(),
                    master: view.master.clone(),
                    members: view.members.clone(),
                }
            }
        };
        let mut local: Vec<MemberId> = after
            .members
            .iter()
            .chain(view.members.iter().filter(|m| !after.members.contains(m)))
            .filter(|m| m.belongs_to(&self.id) && !unseen_by.contains(m))
            .cloned()
            .collect();
        local.dedup();
        let judged = HostEvent {
            event: event.clone(),
            key,
            unseen_by,
            members: after.members.clone(),
        };
        let applied = Applied {
            event,
            local,
            peers: Vec::new(),
        };
        if let Some(run) = run {
            if view.opens() || applied.event.body.changes_room() {
                return Err(Error::Internal(format!(
                    "a {} event cannot wait in a run",
                    applied.event.body.kind()
                )));
            }
            run.keep(judged);
            return Ok((outcome, Some(applied)));
        }
        if view.is_new() {
            // Two direct rooms for one pair can exist when both sides
            // opened one at once; only the first holds the key.
            let key = match view.kind {
                RoomKind::Direct
                    if rooms::direct_room(&mut *conn, &view.direct_key)
                        .await?
                        .is_none() =>
                {
                    Some(view.direct_key.as_str())
                }
                _ => None,
            };
            rooms::insert_room(
                &mut *conn,
                &applied.event.room,
                view.kind,
                &view.name,
                view.master.as_ref(),
                key,
                Some(host),
                applied.event.seq - 1,
                at,
            )
            .await?;
        }
        self.write_host_events(&mut *conn, std::slice::from_ref(&judged))
            .await?;
        if applied.event.body.changes_room() {
            rooms::apply_snapshot(
                &mut *conn,
                &applied.event.room,
                &after.name,
                after.master.as_ref(),
                &after.members,
                applied.event.seq,
                at,
            )
            .await?;
        }
        Ok((outcome, Some(applied)))
    }

    /// This node's verdict on an event the room's host sequenced, and the
    /// idempotency key of our own member's message it carries back.
    async fn judge(
        &self,
        conn: &mut AnyConnection,
        host: &TenantId,
        view: &RoomView,
        event: &RoomEvent,
        run: Option<&mut Run>,
    ) -> Result<(Verdict, Option<String>)> {
        let sender = &event.sender;
        let ours = sender.belongs_to(&self.id);
        let mut key = None;
        // The host may take our member out of its room (after we refused
        // them, or their company withdrew them); anything else in their
        // name must be a change this node proposed.
        if needs_our_proposal(&self.id, event) {
            match our_proposal(conn, host, event).await? {
                Some(k) => key = k,
                None => {
                    return Ok((
                        withhold(Error::PermissionDenied(format!(
                            "{} did not propose event {} of {sender}",
                            self.id, event.id
                        ))),
                        None,
                    ));
                }
            }
        }
        if let Err(e) = content::event(&event.body, &self.limits) {
            return Ok((withhold(e), key));
        }
        let before = &view.members;
        let in_room = before.contains(sender);
        let mut joining: Vec<MemberId> = Vec::new();
        let mut unseen = Vec::new();
        let refused = |reason: String| Ok((withhold(Error::PermissionDenied(reason)), None));
        match &event.body {
            EventBody::Created {
                room_kind,
                name,
                members,
            } => {
                content::members_within(members, &self.limits)?;
                if !view.is_new() {
                    return Err(Error::AlreadyExists(format!(
                        "room {} exists here",
                        event.room
                    )));
                }
                if !sender.belongs_to(host) || !members.contains(sender) {
                    return refused(format!(
                        "room {} is created by a member of {host} who is in it",
                        event.room
                    ));
                }
                if *room_kind != view.kind
                    || name != &view.name
                    || (view.kind == RoomKind::Group && view.master.as_ref() != Some(sender))
                    || !same_members(members, &view.opened_with)
                {
                    return refused(format!(
                        "the creation of room {} does not match the room it describes",
                        event.room
                    ));
                }
                joining = members.clone();
            }
            EventBody::Joined { members } => {
                if let Err(e) = rules(conn, view, sender, &event.body).await? {
                    return Ok((withhold(e), None));
                }
                content::members_within(members, &self.limits)?;
                let new: Vec<MemberId> = members
                    .iter()
                    .filter(|m| !before.contains(m))
                    .cloned()
                    .collect();
                if new.is_empty() {
                    // The room is as the host says already: keep the order.
                    return Ok((
                        Verdict::Withhold {
                            reason: Error::AlreadyExists(
                                "every member it adds is in the room already".into(),
                            ),
                            tell_host: false,
                        },
                        None,
                    ));
                }
                if before.len() + new.len() > self.limits.max_room_members {
                    return Ok((
                        withhold(Error::ResourceExhausted(format!(
                            "a room holds at most {} members",
                            self.limits.max_room_members
                        ))),
                        None,
                    ));
                }
                joining = new;
            }
            EventBody::Removed { .. } => {
                if let Err(e) = rules(conn, view, sender, &event.body).await? {
                    return Ok((withhold(e), None));
                }
            }
            EventBody::Left { .. } => {
                // Our own member left here before the host heard of it.
                if !in_room && !ours {
                    return refused(format!("{sender} is not a member of room {}", event.room));
                }
            }
            EventBody::Unknown => {
                // Our own member left here before the host heard of it;
                // anyone else not in the room: nothing to take out, keep
                // the order, show nothing.
                if !in_room && !ours {
                    return Ok((
                        Verdict::Withhold {
                            reason: Error::NotFound(format!("member {sender} in the room")),
                            tell_host: false,
                        },
                        None,
                    ));
                }
            }
            EventBody::Renamed { .. } => {
                if let Err(e) = rules(conn, view, sender, &event.body).await? {
                    return Ok((withhold(e), None));
                }
            }
            EventBody::Text { .. } | EventBody::Sticker { .. } | EventBody::Attachment(_) => {
                if !in_room && !ours {
                    return refused(format!("{sender} is not a member of room {}", event.room));
                }
                if !ours {
                    match self.may_receive(conn, host, view, event, run).await {
                        Ok(hidden) => unseen = hidden,
                        Err(refusal) if refusal.is_fault() => return Err(refusal),
                        Err(refusal) => return Ok((withhold(refusal), None)),
                    }
                }
            }
            EventBody::Withheld | EventBody::Unsent { .. } => {
                return Ok((
                    Verdict::Withhold {
                        reason: Error::invalid("body", "a withheld event"),
                        tell_host: false,
                    },
                    None,
                ));
            }
        }
        let mut after = room_after(view, sender, &event.body);
        // Our members come in only as our half admits them now. Of an
        // invitation, what it may do is done (so the room stays as its
        // host has it for everyone else) and the host hears of the rest,
        // which it then takes out again; a creation opens nothing.
        let mut refusal = None;
        let mut turned_away = Vec::new();
        for member in joining.iter().filter(|m| m.belongs_to(&self.id)) {
            if let Err(e) = self
                .may_join(
                    conn,
                    &event.room,
                    view.kind,
                    host,
                    sender,
                    member,
                    &after.members,
                )
                .await
            {
                if e.is_fault() {
                    return Err(e);
                }
                refusal.get_or_insert(e);
                turned_away.push(member.clone());
            }
        }
        let Some(refusal) = refusal else {
            return Ok((Verdict::Apply { after, unseen }, key));
        };
        let admitted: Vec<MemberId> = joining
            .iter()
            .filter(|m| !turned_away.contains(m))
            .cloned()
            .collect();
        if matches!(event.body, EventBody::Created { .. }) || admitted.is_empty() {
            return Ok((withhold(refusal), None));
        }
        after.members.retain(|m| !turned_away.contains(m));
        Ok((
            Verdict::InPart {
                after,
                body: EventBody::Joined { members: admitted },
                reason: refusal,
            },
            None,
        ))
    }

    /// Whether `inviter` may bring our `member` into a room of `kind`
    /// hosted by `host` with `members`: an active member of ours whom this
    /// node's half of admission admits with every member of the room now,
    /// and who did not block or delete the inviter. The host learns only
    /// "not found".
    #[allow(clippy::too_many_arguments)]
    async fn may_join(
        &self,
        conn: &mut AnyConnection,
        room: &RoomId,
        kind: RoomKind,
        host: &TenantId,
        inviter: &MemberId,
        member: &MemberId,
        members: &[MemberId],
    ) -> Result<()> {
        let not_found = || Error::NotFound(format!("user {member}"));
        match crate::store::members::member(&mut *conn, member).await? {
            Some(m) if m.state == MemberState::Active => {}
            _ => return Err(not_found()),
        }
        if admission::bring_in(conn, &self.id, inviter, member)
            .await?
            .is_err()
        {
            return Err(not_found());
        }
        match self
            .may_enter(conn, room, kind, Some(host), member, member, members)
            .await
        {
            Err(e) if e.is_fault() => Err(e),
            Err(_) => Err(not_found()),
            Ok(_) => Ok(()),
        }
    }

    /// This node's say on a message from another company's member that its
    /// host sequenced: admission, judged for each member of ours
    /// (`admission::room_event`); the members of ours who must not see it.
    /// A file is received as any message is: the file-transfer restriction
    /// is on what our members send.
    async fn may_receive(
        &self,
        conn: &mut AnyConnection,
        host: &TenantId,
        view: &RoomView,
        event: &RoomEvent,
        run: Option<&mut Run>,
    ) -> Result<Vec<MemberId>> {
        if let Some(unseen) = run
            .as_ref()
            .and_then(|run| run.admitted(&event.sender, &event.room))
        {
            return Ok(unseen.clone());
        }
        let permit = self
            .may_message(
                conn,
                &event.room,
                view.kind,
                Some(host),
                &event.sender,
                &view.members,
            )
            .await?;
        let unseen = permit.unseen_by().to_vec();
        if let Some(run) = run {
            run.admit(&event.sender, &event.room, unseen.clone());
        }
        Ok(unseen)
    }
}

/// The room an event from its host changes, as this node knows it (or,
/// for a room new here, as the host's snapshot describes it).
pub(crate) struct RoomView {
    pub(crate) kind: RoomKind,
    pub(crate) name: String,
    pub(crate) master: Option<MemberId>,
    /// The members before the event, in the order they joined.
    pub(crate) members: Vec<MemberId>,
    /// A new direct room's key.
    pub(crate) direct_key: String,
    /// A new room's members after its first event, as the host says.
    pub(crate) opened_with: Vec<MemberId>,
    /// This node's row of the room; `None` for a room new here.
    pub(crate) row: Option<rooms::RoomRow>,
    /// A room this node holds with none of its members in it, taken up
    /// again at a later seq (`reopened_view`).
    pub(crate) reopened: bool,
}

impl RoomView {
    pub(crate) fn is_new(&self) -> bool {
        self.row.is_none()
    }

    /// Whether the event opens the room here: new here, or taken up again.
    pub(crate) fn opens(&self) -> bool {
        self.is_new() || self.reopened
    }
}

/// The room after an event this node applies.
pub(crate) struct RoomAfter {
    pub(crate) name: String,
    pub(crate) master: Option<MemberId>,
    pub(crate) members: Vec<MemberId>,
}

enum Verdict {
    /// Stored and applied; a message is kept out of sight of `unseen`.
    Apply {
        after: RoomAfter,
        unseen: Vec<MemberId>,
    },
    /// An invitation, stored and applied for the members it may bring in
    /// (`body` names them); the host hears `reason` for the others.
    InPart {
        after: RoomAfter,
        body: EventBody,
        reason: Error,
    },
    /// Stored as `withheld` to keep the room's order whole, never shown;
    /// the host hears `reason` when `tell_host`.
    Withhold { reason: Error, tell_host: bool },
}

/// The room as an event the host relays for a room this node does not
/// know yet says it is: only an event that brings one of our members
/// in can open one, with the host's snapshot of the room after it.
pub(crate) fn new_room_view(
    us: &TenantId,
    limits: &Limits,
    event: &RoomEvent,
    snapshot: Option<Snapshot>,
) -> Result<RoomView> {
    let Some(snapshot) = snapshot else {
        return Err(Error::NotFound(format!("room {}", event.room)));
    };
    content::members_within(&snapshot.members, limits)?;
    let members = snapshot.members;
    if !members.iter().any(|m| m.belongs_to(us)) {
        return Err(Error::PermissionDenied(format!(
            "room {} has no member of {}",
            event.room, us
        )));
    }
    let master = snapshot.master;
    let (name, master, direct_key) = match (snapshot.kind, members.as_slice()) {
        (RoomKind::Direct, [a, b]) if snapshot.name.is_empty() && master.is_none() => {
            (String::new(), None, rooms::direct_key(a, b))
        }
        (RoomKind::Direct, _) => {
            return Err(Error::invalid(
                "room",
                "a direct room has two members, no name and no master",
            ));
        }
        (RoomKind::Group, _) => {
            let name = content::room_name(&snapshot.name)?;
            if master.as_ref().is_some_and(|m| !members.contains(m)) {
                return Err(Error::invalid("master", "is not a member of the room"));
            }
            (name, master, String::new())
        }
    };
    let before = match &event.body {
        EventBody::Created { .. } if event.seq == 1 => Vec::new(),
        EventBody::Joined { members: joining } if snapshot.kind == RoomKind::Group => members
            .iter()
            .filter(|m| !joining.contains(m))
            .cloned()
            .collect(),
        _ => {
            return Err(Error::FailedPrecondition(format!(
                "room {} is not known here: only its creation, or members of {} joining it, opens it",
                event.room, us
            )));
        }
    };
    Ok(RoomView {
        kind: snapshot.kind,
        name,
        master,
        members: before,
        direct_key,
        opened_with: members,
        row: None,
        reopened: false,
    })
}

/// The room as an event after a gap in this node's copy says it is, when
/// that copy holds none of our members and the event brings one of them
/// back in, with the host's snapshot of the room after it: `None` when
/// not. While none of our members was in the room its host relayed us
/// nothing, so the seqs in between were never ours to hold; the room is
/// taken up again at this event's seq, as a new room is opened (the
/// members before it are the snapshot's but those it brings in, and only
/// what admission lets in comes in).
pub(crate) fn reopened_view(
    us: &TenantId,
    limits: &Limits,
    mut row: rooms::RoomRow,
    members: &[MemberId],
    event: &RoomEvent,
    snapshot: Option<Snapshot>,
) -> Option<Result<RoomView>> {
    let EventBody::Joined { members: joining } = &event.body else {
        return None;
    };
    if members.iter().any(|m| m.belongs_to(us)) || !joining.iter().any(|m| m.belongs_to(us)) {
        return None;
    }
    let snapshot = snapshot?;
    Some((|| {
        content::members_within(&snapshot.members, limits)?;
        if snapshot.kind != row.kind || !joining.iter().all(|m| snapshot.members.contains(m)) {
            return Err(Error::invalid(
                "room",
                "the snapshot does not match the room and the members the event brings in",
            ));
        }
        let name = match row.kind {
            RoomKind::Direct if snapshot.members.len() == 2 && snapshot.master.is_none() => {
                String::new()
            }
            RoomKind::Direct => {
                return Err(Error::invalid(
                    "room",
                    "a direct room has two members and no master",
                ));
            }
            RoomKind::Group => content::room_name(&snapshot.name)?,
        };
        if snapshot
            .master
            .as_ref()
            .is_some_and(|m| !snapshot.members.contains(m))
        {
            return Err(Error::invalid("master", "is not a member of the room"));
        }
        let before: Vec<MemberId> = snapshot
            .members
            .iter()
            .filter(|m| !joining.contains(m))
            .cloned()
            .collect();
        row.name = name.clone();
        row.master = snapshot.master.clone();
        row.last_seq = event.seq - 1;
        Ok(RoomView {
            kind: row.kind,
            name,
            master: snapshot.master,
            members: before,
            direct_key: String::new(),
            opened_with: snapshot.members,
            row: Some(row),
            reopened: true,
        })
    })())
}

/// The answer to an event id stored here before: acknowledged again when
/// it is the same event at the same place, refused otherwise.
pub(crate) fn stored_before(stored: &RoomEvent, event: &RoomEvent) -> Result<Outcome> {
    if stored.seq == event.seq && stored.room == event.room {
        Ok(Outcome::Stored)
    } else {
        Err(Error::AlreadyExists(format!(
            "event {} is stored here at {} seq {}",
            event.id, stored.room, stored.seq
        )))
    }
}

/// Whether an event `host` relays comes next in this node's copy of the
/// room (`row`): `None` when it does, the answer to wait with when there
/// is a gap before it. Only the room's host sequences, and a seq is taken
/// once.
pub(crate) fn in_order(
    row: &rooms::RoomRow,
    host: &TenantId,
    event: &RoomEvent,
) -> Result<Option<Outcome>> {
    if row.host.as_ref() != Some(host) {
        return Err(Error::PermissionDenied(format!(
            "room {} is not hosted by {host}",
            event.room
        )));
    }
    if event.seq <= row.last_seq {
        return Err(Error::AlreadyExists(format!(
            "room {} already has seq {} with another event",
            event.room, event.seq
        )));
    }
    if event.seq > row.last_seq + 1 {
        return Ok(Some(Outcome::Retry(format!(
            "room {} is at seq {}; waiting for {}",
            event.room,
            row.last_seq,
            row.last_seq + 1
        ))));
    }
    Ok(None)
}

/// The room after an event `judge` lets through, from the room before it
/// (`view`): members it brings in join, in order; whoever leaves or is
/// removed goes, and a departing master hands over to the successor the
/// event names, if still in the room, or else to the longest-standing
/// member.
pub(crate) fn room_after(view: &RoomView, sender: &MemberId, body: &EventBody) -> RoomAfter {
    let mut after = RoomAfter {
        name: view.name.clone(),
        master: view.master.clone(),
        members: view.members.clone(),
    };
    match body {
        EventBody::Created { members, .. } => after.members = members.clone(),
        EventBody::Joined { members } => {
            let new: Vec<MemberId> = members
                .iter()
                .filter(|m| !view.members.contains(m))
                .cloned()
                .collect();
            after.members.extend(new);
        }
        EventBody::Removed { member } => after.members.retain(|m| m != member),
        EventBody::Left { new_master } => {
            after.members.retain(|m| m != sender);
            if view.master.as_ref() == Some(sender) {
                let proposed = new_master.clone().filter(|m| after.members.contains(m));
                after.master = proposed.or_else(|| after.members.first().cloned());
            }
        }
        EventBody::Unknown => {
            after.members.retain(|m| m != sender);
            if view.master.as_ref() == Some(sender) {
                after.master = after.members.first().cloned();
            }
        }
        EventBody::Renamed { name } => after.name = name.clone(),
        EventBody::Text { .. }
        | EventBody::Sticker { .. }
        | EventBody::Attachment(_)
        | EventBody::Unsent { .. }
        | EventBody::Withheld => {}
    }
    after
}

/// Whether an event from a room's host names our member as its sender in
/// a change that this node must have proposed: anything but the host
/// taking that member out ("unknown").
pub(crate) fn needs_our_proposal(us: &TenantId, event: &RoomEvent) -> bool {
    event.sender.belongs_to(us) && event.body != EventBody::Unknown
}

/// Whether this node proposed `event` to `host` as it came back: the
/// same change by the same member in the same room. A message's
/// pending copy is taken, and its idempotency key returned when the
/// content matches. The host may narrow an invitation to the members not in
/// the room yet and names a departing master's successor.
pub(crate) async fn our_proposal(
    conn: &mut AnyConnection,
    host: &TenantId,
    event: &RoomEvent,
) -> Result<Option<Option<String>>> {
    if event.body.is_message() {
        // One statement on the path of every message of ours that
        // comes back. Taken even when the host changed its content:
        // then what it sequenced is withheld in its place.
        let Some(pending) =
            outbox::take_pending(&mut *conn, &event.id, &event.room, &event.sender).await?
        else {
            return Ok(None);
        };
        return Ok((pending.body == event.body).then_some(pending.idempotency_key));
    }
    let Some((room, payload)) = outbox::proposal(&mut *conn, &event.id, host).await? else {
        return Ok(None);
    };
    let Ok(Payload::Event(proposed)) = serde_json::from_str::<Payload>(&payload) else {
        return Ok(None);
    };
    if room != event.room.to_string() || proposed.sender != event.sender {
        return Ok(None);
    }
    Ok(same_change(&proposed.body, &event.body).then_some(None))
}

/// Whether the change a host sequenced (`done`) is the one this node
/// proposed (`asked`): the same, except that an invitation may be
/// narrowed to the members not in the room yet and a departure names the
/// master's successor.
pub(crate) fn same_change(asked: &EventBody, done: &EventBody) -> bool {
    match (asked, done) {
        (EventBody::Joined { members: asked }, EventBody::Joined { members: done }) => {
            done.iter().all(|m| asked.contains(m))
        }
        (EventBody::Left { .. }, EventBody::Left { .. }) => true,
        (asked, done) => asked == done,
    }
}

fn withhold(reason: Error) -> Verdict {
    Verdict::Withhold {
        reason,
        tell_host: true,
    }
}

pub(crate) fn same_members(a: &[MemberId], b: &[MemberId]) -> bool {
    a.len() == b.len() && a.iter().all(|m| b.contains(m))
}

/// The room's rules (membership, the group master's rights) for a change
/// its host relays: those of a local change for a room this node knows;
/// for a group new here, only its master brings members in.
pub(crate) async fn rules(
    conn: &mut AnyConnection,
    view: &RoomView,
    actor: &MemberId,
    body: &EventBody,
) -> Result<Result<()>> {
    let refusal = match &view.row {
        Some(row) => match crate::rooms::check_rules(conn, row, &view.members, actor, body).await {
            Err(e) if e.is_fault() => return Err(e),
            other => other,
        },
        None if view.members.contains(actor) && view.master.as_ref() == Some(actor) => Ok(()),
        None => Err(Error::PermissionDenied(format!(
            "only the group master can add members; {actor} is not"
        ))),
    };
    Ok(refusal)
}
