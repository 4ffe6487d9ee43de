//! The receiving gate's replica rules, without a running node: how a
//! room new here is opened from its host's snapshot, where an event from
//! the host goes in the room's order, what the room is after it, and which
//! events may name our own members as their sender.

use works_bridge::Outcome;

use crate::config::Limits;
use crate::error::Error;
use crate::federation::inbound::{
    RoomAfter, RoomView, in_order, needs_our_proposal, new_room_view, our_proposal, reopened_view,
    room_after, rules, same_change, stored_before,
};
use crate::ids::{EventId, MemberId, RoomId, TenantId};
use crate::model::{EventBody, RoomEvent, RoomKind};
use crate::store::outbox::{self as outbox, Pending};
use crate::store::rooms;
use crate::store::testing::{TempStore, temp_store};
use crate::wire::{Payload, Relayed, Snapshot};

fn us() -> TenantId {
    TenantId::parse("a.example").expect("tenant id")
}

fn host() -> TenantId {
    TenantId::parse("b.example").expect("tenant id")
}

fn id(input: &str) -> MemberId {
    MemberId::parse(input).expect("member id")
}

fn ids(members: &[&MemberId]) -> Vec<MemberId> {
    members.iter().map(|m| (*m).clone()).collect()
}

fn event(room: RoomId, seq: u64, sender: &MemberId, body: EventBody) -> RoomEvent {
    RoomEvent {
        id: EventId::generate(),
        room,
        seq,
        sender: sender.clone(),
        at_ms: 1,
        body,
    }
}

fn snapshot(
    kind: RoomKind,
    name: &str,
    master: Option<&MemberId>,
    members: &[&MemberId],
) -> Option<Snapshot> {
    Some(Snapshot {
        kind,
        name: name.into(),
        master: master.cloned(),
        members: ids(members),
    })
}

fn created(kind: RoomKind, name: &str, members: &[&MemberId]) -> EventBody {
    EventBody::Created {
        room_kind: kind,
        name: name.into(),
        members: ids(members),
    }
}

fn joined(members: &[&MemberId]) -> EventBody {
    EventBody::Joined {
        members: ids(members),
    }
}

/// `new_room_view` as this node (a.example) calls it.
fn open(event: &RoomEvent, snapshot: Option<Snapshot>) -> Result<RoomView, Error> {
    new_room_view(&us(), &Limits::default(), event, snapshot)
}

/// A room this node knows: the view `store_from_host` builds from its row.
fn known(name: &str, master: Option<&MemberId>, members: &[&MemberId]) -> RoomView {
    RoomView {
        kind: RoomKind::Group,
        name: name.into(),
        master: master.cloned(),
        members: ids(members),
        direct_key: String::new(),
        opened_with: Vec::new(),
        row: Some(replica_row(4)),
        reopened: false,
    }
}

/// A replica's row of a group room hosted by b.example, at `last_seq`.
fn replica_row(last_seq: u64) -> rooms::RoomRow {
    rooms::RoomRow {
        id: RoomId::parse("01J0000000000000000000000A").expect("room id"),
        kind: RoomKind::Group,
        name: "planning".into(),
        master: None,
        last_seq,
        created_at_ms: 1,
        last_event_at_ms: 1,
        host: Some(host()),
        line_chat: None,
    }
}

/// The error's variant must match, and the text is what the host hears.
fn refused(result: Result<RoomView, Error>) -> Error {
    match result {
        Ok(view) => panic!("opened a room with {:?} before the event", view.members),
        Err(e) => e,
    }
}

// ---- A room held with none of our members: taken up again after a gap ----

/// `reopened_view` for our copy of a group at seq 4 with `members`, and an
/// event at seq 9 (after a gap).
fn reopen(
    members: &[&MemberId],
    body: EventBody,
    snapshot: Option<Snapshot>,
) -> Option<Result<RoomView, Error>> {
    let event = event(replica_row(4).id, 9, &id("bob@b.example"), body);
    reopened_view(
        &us(),
        &Limits::default(),
        replica_row(4),
        &ids(members),
        &event,
        snapshot,
    )
}

#[test]
fn a_room_none_of_ours_is_in_is_taken_up_again_by_our_member_joining() {
    let (alice, bob, carol) = (
        id("alice@a.example"),
        id("bob@b.example"),
        id("carol@b.example"),
    );
    let view = reopen(
        &[&carol],
        joined(&[&alice]),
        snapshot(
            RoomKind::Group,
            "planning 2",
            Some(&bob),
            &[&bob, &carol, &alice],
        ),
    )
    .expect("taken up again")
    .expect("a valid snapshot");
    assert!(view.opens() && !view.is_new());
    // The members before the event are the host's, not our stale copy's.
    assert_eq!(view.members, ids(&[&bob, &carol]));
    assert_eq!(view.name, "planning 2");
    assert_eq!(view.master, Some(bob));
    assert_eq!(view.row.expect("our row").last_seq, 8);
}

#[test]
fn a_gap_waits_while_one_of_ours_is_in_the_room_or_none_comes_back() {
    let (alice, bob) = (id("alice@a.example"), id("bob@b.example"));
    let group = |members: &[&MemberId]| snapshot(RoomKind::Group, "planning", None, members);
    // Our member is in our copy: the events in between are ours to wait for.
    assert!(reopen(&[&alice, &bob], joined(&[&alice]), group(&[&alice, &bob])).is_none());
    // The event brings none of ours in, or is no invitation.
    let dave = id("dave@b.example");
    assert!(reopen(&[&bob], joined(&[&dave]), group(&[&bob, &dave])).is_none());
    let text = EventBody::Text { text: "hi".into() };
    assert!(reopen(&[&bob], text, group(&[&alice, &bob])).is_none());
    // No snapshot: nothing to take the room up from.
    assert!(reopen(&[&bob], joined(&[&alice]), None).is_none());
}

#[test]
fn a_snapshot_that_does_not_match_takes_nothing_up() {
    let (alice, bob) = (id("alice@a.example"), id("bob@b.example"));
    let wrong = [
        // Another kind of room than ours.
        snapshot(RoomKind::Direct, "", None, &[&alice, &bob]),
        // Without the member the event brings in.
        snapshot(RoomKind::Group, "planning", None, &[&bob]),
        // A master who is not in the room.
        snapshot(
            RoomKind::Group,
            "planning",
            Some(&id("eve@b.example")),
            &[&alice, &bob],
        ),
    ];
    for snapshot in wrong {
        let refused = reopen(&[&bob], joined(&[&alice]), snapshot.clone())
            .expect("applies")
            .err();
        assert!(
            matches!(refused, Some(Error::Invalid { .. })),
            "{snapshot:?}: {refused:?}"
        );
    }
}

// ---- A room new here: opened only from the host's snapshot ----

#[test]
fn a_room_new_here_is_not_opened_without_its_hosts_snapshot() {
    let b = id("b@b.example");
    let e = event(
        RoomId::generate(),
        1,
        &b,
        created(RoomKind::Group, "x", &[&b]),
    );
    let err = refused(open(&e, None));
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    assert_eq!(err.to_string(), format!("room {} not found", e.room));
}

#[test]
fn a_room_with_no_member_of_ours_is_not_opened_here() {
    let (b, c) = (id("b@b.example"), id("c@c.example"));
    let e = event(
        RoomId::generate(),
        1,
        &b,
        created(RoomKind::Group, "x", &[&b, &c]),
    );
    let err = refused(open(
        &e,
        snapshot(RoomKind::Group, "x", Some(&b), &[&b, &c]),
    ));
    assert!(matches!(err, Error::PermissionDenied(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("room {} has no member of a.example", e.room)
    );
}

#[test]
fn a_new_direct_room_has_two_members_no_name_and_no_master() {
    let (a, b, c) = (id("a@a.example"), id("b@b.example"), id("c@b.example"));
    let e = event(
        RoomId::generate(),
        1,
        &b,
        created(RoomKind::Direct, "", &[&a, &b]),
    );
    let refusal = "invalid room: a direct room has two members, no name and no master";
    for wrong in [
        snapshot(RoomKind::Direct, "", None, &[&a, &b, &c]),
        snapshot(RoomKind::Direct, "", None, &[&a]),
        snapshot(RoomKind::Direct, "us", None, &[&a, &b]),
        snapshot(RoomKind::Direct, "", Some(&b), &[&a, &b]),
    ] {
        let err = refused(open(&e, wrong));
        assert!(
            matches!(err, Error::Invalid { field: "room", .. }),
            "{err:?}"
        );
        assert_eq!(err.to_string(), refusal);
    }
    let view = open(&e, snapshot(RoomKind::Direct, "", None, &[&a, &b])).expect("opens");
    assert_eq!(view.direct_key, rooms::direct_key(&a, &b));
    assert!(view.members.is_empty());
    assert!(view.is_new());
}

#[test]
fn a_new_groups_master_is_one_of_its_members_and_its_name_is_checked() {
    let (a, b, c) = (id("a@a.example"), id("b@b.example"), id("c@b.example"));
    let e = event(
        RoomId::generate(),
        1,
        &b,
        created(RoomKind::Group, "x", &[&a, &b]),
    );
    let err = refused(open(
        &e,
        snapshot(RoomKind::Group, "x", Some(&c), &[&a, &b]),
    ));
    assert!(
        matches!(
            err,
            Error::Invalid {
                field: "master",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "invalid master: is not a member of the room"
    );
    let err = refused(open(
        &e,
        snapshot(RoomKind::Group, " \u{7} ", Some(&b), &[&a, &b]),
    ));
    assert_eq!(
        err.to_string(),
        "invalid name: must not contain control characters"
    );
}

#[test]
fn a_snapshot_over_the_room_size_limit_opens_nothing() {
    let a = id("a@a.example");
    let others: Vec<MemberId> = (0..=Limits::default().max_room_members)
        .map(|n| id(&format!("m{n}@b.example")))
        .collect();
    let mut members = vec![&a];
    members.extend(others.iter());
    let e = event(RoomId::generate(), 5, &others[0], joined(&[&a]));
    let err = refused(open(
        &e,
        snapshot(RoomKind::Group, "x", Some(&others[0]), &members),
    ));
    assert!(matches!(err, Error::ResourceExhausted(_)), "{err:?}");
}

#[test]
fn only_a_creation_at_seq_one_or_our_member_joining_a_group_opens_a_room() {
    let (a, b) = (id("a@a.example"), id("b@b.example"));
    let room = RoomId::generate();
    let group = || snapshot(RoomKind::Group, "x", Some(&b), &[&a, &b]);
    let refusal = format!(
        "room {room} is not known here: only its creation, or members of a.example joining it, opens it"
    );
    for (seq, body, snap) in [
        (5, EventBody::Text { text: "hi".into() }, group()),
        (2, created(RoomKind::Group, "x", &[&a, &b]), group()),
        (5, EventBody::Renamed { name: "x".into() }, group()),
        (5, EventBody::Left { new_master: None }, group()),
        // A direct room is opened only by its creation.
        (
            5,
            joined(&[&a]),
            snapshot(RoomKind::Direct, "", None, &[&a, &b]),
        ),
    ] {
        let kind = body.kind();
        let err = refused(open(&event(room, seq, &b, body), snap));
        assert!(
            matches!(err, Error::FailedPrecondition(_)),
            "{kind}: {err:?}"
        );
        assert_eq!(err.to_string(), refusal, "{kind}");
    }
}

#[test]
fn a_hosts_snapshot_never_adds_anyone_the_event_does_not() {
    let (a, a2, b, c) = (
        id("a@a.example"),
        id("a2@a.example"),
        id("b@b.example"),
        id("c@c.example"),
    );
    // The room before an invitation of a2 is the snapshot without a2;
    // nobody else comes in because the host says so.
    let e = event(RoomId::generate(), 7, &b, joined(&[&a2]));
    let view = open(
        &e,
        snapshot(RoomKind::Group, "x", Some(&b), &[&b, &a, &c, &a2]),
    )
    .expect("opens");
    assert_eq!(view.members, ids(&[&b, &a, &c]));
    assert_eq!(view.opened_with, ids(&[&b, &a, &c, &a2]));
    assert_eq!(view.master, Some(b.clone()));
    // A creation opens with nobody in the room before it.
    let e = event(
        RoomId::generate(),
        1,
        &b,
        created(RoomKind::Group, "x", &[&b, &a]),
    );
    let view = open(&e, snapshot(RoomKind::Group, "x", Some(&b), &[&b, &a])).expect("opens");
    assert!(view.members.is_empty());
    assert_eq!(view.opened_with, ids(&[&b, &a]));
}

// ---- The room's order: the next seq, once ----

#[test]
fn an_event_is_stored_only_at_the_rooms_next_seq() {
    let b = id("b@b.example");
    let row = replica_row(4);
    let next = event(row.id, 5, &b, EventBody::Text { text: "hi".into() });
    assert_eq!(in_order(&row, &host(), &next).expect("in order"), None);
}

#[test]
fn an_event_after_a_gap_waits_for_the_one_before() {
    let b = id("b@b.example");
    let row = replica_row(4);
    for seq in [6, 7, 1000] {
        let early = event(row.id, seq, &b, EventBody::Text { text: "hi".into() });
        assert_eq!(
            in_order(&row, &host(), &early).expect("waits"),
            Some(Outcome::Retry(format!(
                "room {} is at seq 4; waiting for 5",
                row.id
            ))),
            "seq {seq}"
        );
    }
}

#[test]
fn a_seq_taken_already_is_refused() {
    let b = id("b@b.example");
    let row = replica_row(4);
    for seq in [4, 1] {
        let again = event(row.id, seq, &b, EventBody::Text { text: "hi".into() });
        match in_order(&row, &host(), &again) {
            Err(e @ Error::AlreadyExists(_)) => assert_eq!(
                e.to_string(),
                format!("room {} already has seq {seq} with another event", row.id)
            ),
            other => panic!("seq {seq}: {other:?}"),
        }
    }
}

#[test]
fn only_the_rooms_host_sequences_its_events() {
    let c = id("c@c.example");
    let other = TenantId::parse("c.example").expect("tenant id");
    let row = replica_row(4);
    let e = event(row.id, 5, &c, EventBody::Text { text: "hi".into() });
    match in_order(&row, &other, &e) {
        Err(err @ Error::PermissionDenied(_)) => assert_eq!(
            err.to_string(),
            format!("room {} is not hosted by c.example", row.id)
        ),
        other => panic!("{other:?}"),
    }
    // A room this node hosts takes no sequenced event from anyone.
    let hosted_here = rooms::RoomRow { host: None, ..row };
    assert!(matches!(
        in_order(&hosted_here, &host(), &e),
        Err(Error::PermissionDenied(_))
    ));
}

#[test]
fn a_known_event_is_acknowledged_again_and_not_stored_twice() {
    let b = id("b@b.example");
    let row = replica_row(4);
    let stored = event(row.id, 3, &b, EventBody::Text { text: "hi".into() });
    assert_eq!(
        stored_before(&stored, &stored.clone()).expect("again"),
        Outcome::Stored
    );
}

#[test]
fn a_known_event_id_at_another_place_is_refused() {
    let b = id("b@b.example");
    let row = replica_row(4);
    let stored = event(row.id, 3, &b, EventBody::Text { text: "hi".into() });
    let elsewhere = [
        RoomEvent {
            seq: 5,
            ..stored.clone()
        },
        RoomEvent {
            room: RoomId::generate(),
            ..stored.clone()
        },
    ];
    for moved in elsewhere {
        match stored_before(&stored, &moved) {
            Err(e @ Error::AlreadyExists(_)) => assert_eq!(
                e.to_string(),
                format!("event {} is stored here at {} seq 3", stored.id, row.id)
            ),
            other => panic!("{other:?}"),
        }
    }
}

// ---- The room after an event, from the room before it ----

fn after(view: &RoomView, sender: &MemberId, body: EventBody) -> RoomAfter {
    room_after(view, sender, &body)
}

#[test]
fn an_invitation_adds_only_members_not_in_the_room_in_order() {
    let (a, b, c, d) = (
        id("a@a.example"),
        id("b@b.example"),
        id("c@c.example"),
        id("d@b.example"),
    );
    let view = known("planning", Some(&b), &[&b, &a]);
    let next = after(&view, &b, joined(&[&a, &d, &c]));
    assert_eq!(next.members, ids(&[&b, &a, &d, &c]));
    assert_eq!(next.master, Some(b.clone()));
    assert_eq!(next.name, "planning");
}

#[test]
fn a_removal_takes_out_only_its_member() {
    let (a, b, c) = (id("a@a.example"), id("b@b.example"), id("c@c.example"));
    let view = known("planning", Some(&b), &[&b, &a, &c]);
    let next = after(&view, &b, EventBody::Removed { member: a.clone() });
    assert_eq!(next.members, ids(&[&b, &c]));
    assert_eq!(next.master, Some(b.clone()));
}

#[test]
fn a_departing_master_hands_over_to_the_successor_named_if_still_in_the_room() {
    let (a, b, c) = (id("a@a.example"), id("b@b.example"), id("c@c.example"));
    let view = known("planning", Some(&b), &[&b, &a, &c]);
    let next = after(
        &view,
        &b,
        EventBody::Left {
            new_master: Some(c.clone()),
        },
    );
    assert_eq!(next.members, ids(&[&a, &c]));
    assert_eq!(next.master, Some(c.clone()));
    // A successor who is not in the room: the longest-standing member.
    let outsider = id("x@b.example");
    let next = after(
        &view,
        &b,
        EventBody::Left {
            new_master: Some(outsider),
        },
    );
    assert_eq!(next.master, Some(a.clone()));
    // None named: the same.
    let next = after(&view, &b, EventBody::Left { new_master: None });
    assert_eq!(next.master, Some(a.clone()));
}

#[test]
fn a_member_who_is_not_the_master_leaves_the_master_in_place() {
    let (a, b, c) = (id("a@a.example"), id("b@b.example"), id("c@c.example"));
    let view = known("planning", Some(&b), &[&b, &a, &c]);
    let next = after(
        &view,
        &c,
        EventBody::Left {
            new_master: Some(a.clone()),
        },
    );
    assert_eq!(next.members, ids(&[&b, &a]));
    assert_eq!(next.master, Some(b.clone()));
}

#[test]
fn a_master_who_became_unknown_hands_over_to_the_longest_standing_member() {
    let (a, b, c) = (id("a@a.example"), id("b@b.example"), id("c@c.example"));
    let view = known("planning", Some(&b), &[&b, &c, &a]);
    let next = after(&view, &b, EventBody::Unknown);
    assert_eq!(next.members, ids(&[&c, &a]));
    assert_eq!(next.master, Some(c.clone()));
    // The last one out leaves no master.
    let alone = known("planning", Some(&b), &[&b]);
    let next = after(&alone, &b, EventBody::Unknown);
    assert!(next.members.is_empty());
    assert_eq!(next.master, None);
}

#[test]
fn a_rename_changes_the_name_and_messages_change_nothing() {
    let (a, b) = (id("a@a.example"), id("b@b.example"));
    let view = known("planning", Some(&b), &[&b, &a]);
    let next = after(
        &view,
        &b,
        EventBody::Renamed {
            name: "launch".into(),
        },
    );
    assert_eq!(next.name, "launch");
    assert_eq!(next.members, ids(&[&b, &a]));
    for body in [
        EventBody::Text { text: "hi".into() },
        EventBody::Sticker {
            name: "wave".into(),
        },
        EventBody::Withheld,
    ] {
        let next = after(&view, &b, body);
        assert_eq!(next.name, "planning");
        assert_eq!(next.master, Some(b.clone()));
        assert_eq!(next.members, ids(&[&b, &a]));
    }
}

#[test]
fn a_creation_makes_the_room_its_members() {
    let (a, b) = (id("a@a.example"), id("b@b.example"));
    let e = event(
        RoomId::generate(),
        1,
        &b,
        created(RoomKind::Group, "x", &[&b, &a]),
    );
    let view = open(&e, snapshot(RoomKind::Group, "x", Some(&b), &[&b, &a])).expect("opens");
    let next = room_after(&view, &b, &e.body);
    assert_eq!(next.members, ids(&[&b, &a]));
    assert_eq!(next.master, Some(b.clone()));
    assert_eq!(next.name, "x");
}

// ---- Our own members as senders ----

#[test]
fn our_member_is_a_sender_only_in_what_we_proposed_but_the_host_may_take_them_out() {
    let (a, b) = (id("a@a.example"), id("b@b.example"));
    let room = RoomId::generate();
    for body in [
        EventBody::Text { text: "hi".into() },
        EventBody::Left { new_master: None },
        joined(&[&b]),
        EventBody::Renamed { name: "x".into() },
        created(RoomKind::Group, "x", &[&a]),
    ] {
        let kind = body.kind();
        assert!(
            needs_our_proposal(&us(), &event(room, 2, &a, body.clone())),
            "{kind}"
        );
        assert!(
            !needs_our_proposal(&us(), &event(room, 2, &b, body)),
            "{kind}"
        );
    }
    assert!(!needs_our_proposal(
        &us(),
        &event(room, 2, &a, EventBody::Unknown)
    ));
}

#[test]
fn a_host_may_narrow_our_invitation_and_name_a_successor_but_change_nothing_else() {
    let (a, c, d) = (id("a@a.example"), id("c@c.example"), id("d@c.example"));
    assert!(same_change(&joined(&[&c, &d]), &joined(&[&d])));
    assert!(!same_change(&joined(&[&c]), &joined(&[&c, &d])));
    assert!(same_change(
        &EventBody::Left { new_master: None },
        &EventBody::Left {
            new_master: Some(c.clone())
        }
    ));
    assert!(!same_change(
        &EventBody::Renamed { name: "x".into() },
        &EventBody::Renamed { name: "y".into() }
    ));
    assert!(!same_change(
        &EventBody::Removed { member: c.clone() },
        &EventBody::Removed { member: d.clone() }
    ));
    assert!(!same_change(
        &EventBody::Left { new_master: None },
        &EventBody::Removed { member: a.clone() }
    ));
}

/// A change our member proposed to b.example, as the outbox keeps it.
async fn proposed(t: &TempStore, event: &RoomEvent) {
    let payload = serde_json::to_string(&Payload::Event(Relayed {
        sender: event.sender.clone(),
        body: event.body.clone(),
        room: None,
    }))
    .expect("payload");
    let mut conn = t.conn().await;
    outbox::enqueue(&mut conn, &host(), &event.id, &event.room, 0, &payload, 1)
        .await
        .expect("enqueue");
}

async fn pending(t: &TempStore, event: &RoomEvent, key: &str) {
    let mut conn = t.conn().await;
    outbox::insert_pending(
        &mut conn,
        &Pending {
            event_id: event.id,
            room: event.room,
            sender: event.sender.clone(),
            idempotency_key: Some(key.into()),
            body: event.body.clone(),
            at_ms: 1,
        },
    )
    .await
    .expect("insert pending");
}

async fn ours(t: &TempStore, host: &TenantId, event: &RoomEvent) -> Option<Option<String>> {
    let mut conn = t.conn().await;
    our_proposal(&mut conn, host, event)
        .await
        .expect("read proposal")
}

#[tokio::test]
async fn our_message_comes_back_once_with_its_idempotency_key() {
    let t = temp_store().await;
    let a = t.member("a@a.example").await;
    let sent = event(
        RoomId::generate(),
        0,
        &a,
        EventBody::Text { text: "hi".into() },
    );
    pending(&t, &sent, "k1").await;
    let back = RoomEvent { seq: 9, ..sent };
    assert_eq!(ours(&t, &host(), &back).await, Some(Some("k1".into())));
    // Its pending copy is taken: the same event again is no proposal.
    assert_eq!(ours(&t, &host(), &back).await, None);
}

#[tokio::test]
async fn our_message_with_content_the_host_changed_is_not_ours() {
    let t = temp_store().await;
    let a = t.member("a@a.example").await;
    let sent = event(
        RoomId::generate(),
        0,
        &a,
        EventBody::Text { text: "hi".into() },
    );
    pending(&t, &sent, "k1").await;
    let changed = RoomEvent {
        seq: 9,
        body: EventBody::Text {
            text: "pay this invoice".into(),
        },
        ..sent.clone()
    };
    assert_eq!(ours(&t, &host(), &changed).await, None);
    // Another room, or another of our members, under the same event id.
    let t = temp_store().await;
    pending(&t, &sent, "k1").await;
    let moved = RoomEvent {
        room: RoomId::generate(),
        ..sent.clone()
    };
    assert_eq!(ours(&t, &host(), &moved).await, None);
    let other = RoomEvent {
        sender: id("a2@a.example"),
        ..sent
    };
    assert_eq!(ours(&t, &host(), &other).await, None);
}

#[tokio::test]
async fn our_change_is_ours_only_as_proposed_to_that_host_in_that_room() {
    let t = temp_store().await;
    let a = t.member("a@a.example").await;
    let c = id("c@c.example");
    let asked = event(RoomId::generate(), 0, &a, joined(&[&c]));
    proposed(&t, &asked).await;
    let back = RoomEvent {
        seq: 9,
        ..asked.clone()
    };
    assert_eq!(ours(&t, &host(), &back).await, Some(None));
    // Still there: a change's proposal stays in the outbox.
    assert_eq!(ours(&t, &host(), &back).await, Some(None));
    let other_host = TenantId::parse("c.example").expect("tenant id");
    assert_eq!(ours(&t, &other_host, &back).await, None);
    let moved = RoomEvent {
        room: RoomId::generate(),
        ..back.clone()
    };
    assert_eq!(ours(&t, &host(), &moved).await, None);
    let other_sender = RoomEvent {
        sender: id("a2@a.example"),
        ..back.clone()
    };
    assert_eq!(ours(&t, &host(), &other_sender).await, None);
    let more = RoomEvent {
        body: joined(&[&c, &id("d@c.example")]),
        ..back
    };
    assert_eq!(ours(&t, &host(), &more).await, None);
}

#[tokio::test]
async fn a_change_never_proposed_is_not_ours() {
    let t = temp_store().await;
    let a = t.member("a@a.example").await;
    let e = event(
        RoomId::generate(),
        3,
        &a,
        EventBody::Renamed { name: "x".into() },
    );
    assert_eq!(ours(&t, &host(), &e).await, None);
    let m = event(
        RoomId::generate(),
        3,
        &a,
        EventBody::Text { text: "hi".into() },
    );
    assert_eq!(ours(&t, &host(), &m).await, None);
}

// ---- The room's rules for a host's change ----

#[tokio::test]
async fn in_a_group_new_here_only_its_master_brings_members_in() {
    let t = temp_store().await;
    let (a, b, c) = (id("a@a.example"), id("b@b.example"), id("c@b.example"));
    let e = event(RoomId::generate(), 7, &c, joined(&[&a]));
    let view = open(&e, snapshot(RoomKind::Group, "x", Some(&b), &[&b, &c, &a])).expect("opens");
    let mut conn = t.conn().await;
    let refusal = rules(&mut conn, &view, &c, &e.body)
        .await
        .expect("no fault");
    match refusal {
        Err(err @ Error::PermissionDenied(_)) => assert_eq!(
            err.to_string(),
            "only the group master can add members; c@b.example is not"
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        rules(&mut conn, &view, &b, &e.body)
            .await
            .expect("no fault")
            .is_ok()
    );
    // A master the snapshot names but who is not in the room before it.
    let view = open(&e, snapshot(RoomKind::Group, "x", Some(&a), &[&b, &c, &a])).expect("opens");
    assert!(matches!(
        rules(&mut conn, &view, &a, &e.body)
            .await
            .expect("no fault"),
        Err(Error::PermissionDenied(_))
    ));
}

#[tokio::test]
async fn in_a_room_known_here_a_hosts_change_meets_the_local_rules() {
    let t = temp_store().await;
    let (a, b, c) = (id("a@a.example"), id("b@b.example"), id("c@b.example"));
    let row = rooms::RoomRow {
        master: Some(b.clone()),
        ..replica_row(4)
    };
    let mut conn = t.conn().await;
    rooms::insert_room(
        &mut conn,
        &row.id,
        RoomKind::Group,
        &row.name,
        row.master.as_ref(),
        None,
        row.host.as_ref(),
        row.last_seq,
        1,
    )
    .await
    .expect("insert room");
    let view = RoomView {
        master: row.master.clone(),
        row: Some(row.clone()),
        ..known("planning", Some(&b), &[&b, &c, &a])
    };
    let removal = EventBody::Removed { member: a.clone() };
    match rules(&mut conn, &view, &c, &removal)
        .await
        .expect("no fault")
    {
        Err(err @ Error::PermissionDenied(_)) => assert_eq!(
            err.to_string(),
            format!(
                "only the group master can remove members in room {}",
                row.id
            )
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        rules(&mut conn, &view, &b, &removal)
            .await
            .expect("no fault")
            .is_ok()
    );
}
