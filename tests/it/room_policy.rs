//! What a member's standing and choices do in rooms shared with other
//! companies: a suspended member leaves them, a block or a deleted contact
//! hides that person's messages in groups from the one who chose it (and
//! from no one else), and the file-transfer restriction stops what our
//! members send, not what they receive.

use crate::support::{
    Member, RELAY_DEADLINE, TestNode, allow, attachment, befriend, check, history_texts, pair,
    state, until,
};
use tonic::Code;
use works_proto::client::v1 as pb;

/// The members of `room` in `who`'s list, sorted; `None` when it is not
/// there.
async fn members_of(who: &Member, room: &str) -> Option<Vec<String>> {
    who.rooms()
        .await
        .into_iter()
        .find(|r| r.id == room)
        .map(|r| {
            let mut members = r.members;
            members.sort();
            members
        })
}

async fn until_members(who: &Member, room: &str, expected: &[&str]) {
    let mut expected: Vec<String> = expected.iter().map(|m| m.to_string()).collect();
    expected.sort();
    until(
        RELAY_DEADLINE,
        &format!("{} sees {expected:?} in the room", who.id),
        || async { members_of(who, room).await.as_ref() == Some(&expected) },
    )
    .await;
}

async fn until_text(who: &Member, room: &str, text: &str) {
    until(
        RELAY_DEADLINE,
        &format!("{} sees {text:?}", who.id),
        || async {
            who.history(room)
                .await
                .is_ok_and(|h| crate::support::texts(&h).iter().any(|t| t == text))
        },
    )
    .await;
}

/// Waits until the host has reported `event` delivered to every node.
async fn until_delivered(who: &Member, room: &str, event: &str) {
    until(
        RELAY_DEADLINE,
        &format!("{}'s message is delivered", who.id),
        || async {
            who.delivery(room, event)
                .await
                .is_ok_and(|d| state(&d) == pb::DeliveryState::Delivered)
        },
    )
    .await;
}

async fn contact_status(who: &Member, user: &str) -> String {
    who.contact(user).await.status
}

async fn contact_call(who: &Member, user: &str, what: &str) -> Result<(), tonic::Status> {
    let mut contacts = who.client.contacts.clone();
    let user = pb::ContactRef {
        user_id: user.into(),
    };
    match what {
        "block" => contacts.block_user(user).await.map(|_| ()),
        "delete" => contacts.delete_contact(user).await.map(|_| ()),
        "restore" => contacts.restore_contact(user).await.map(|_| ()),
        other => panic!("no contact call {other}"),
    }
}

async fn unread(who: &Member, room: &str) -> u64 {
    who.rooms()
        .await
        .into_iter()
        .find(|r| r.id == room)
        .map_or(0, |r| r.unread)
}

/// alice and amy of a.example, bob of b.example, contacts of each other
/// across the companies.
async fn two_colleagues_and_bob() -> (TestNode, TestNode, Member, Member, Member) {
    let (a, b, alice, bob) = pair().await;
    let amy = a.member("amy").await;
    allow(&a.admin().await, true, &amy.id, true).await;
    befriend(&amy, &bob).await;
    (a, b, alice, amy, bob)
}

#[tokio::test]
async fn a_suspended_colleague_leaves_external_rooms_and_silences_no_one() {
    let (a, _b, alice, amy, bob) = two_colleagues_and_bob().await;
    // bob's node hosts the group; a.example keeps a replica. amy's direct
    // room with bob is hosted at a.example (she asked to be his contact).
    let group = bob
        .group_room("Deal", &[alice.id.as_str(), amy.id.as_str()])
        .await
        .id;
    let direct = crate::support::room_with(&amy, &bob.id).await.id;
    let all = [bob.id.as_str(), alice.id.as_str(), amy.id.as_str()];
    until_members(&alice, &group, &all).await;
    until_members(&amy, &group, &all).await;

    let admin = a.admin().await;
    admin
        .admin
        .clone()
        .suspend_member(pb::SuspendMemberRequest {
            member_id: amy.id.clone(),
        })
        .await
        .unwrap();

    // alice still gets bob's messages: amy does not hold them back.
    bob.send(&group, "after amy's suspension").await.unwrap();
    until_text(&alice, &group, "after amy's suspension").await;
    // amy left the group on both nodes as a disconnected member does,
    // and her direct room with bob too.
    let left = [bob.id.as_str(), alice.id.as_str()];
    until_members(&alice, &group, &left).await;
    until_members(&bob, &group, &left).await;
    until_members(&bob, &direct, &[bob.id.as_str()]).await;
    let shown = bob.history(&group).await.unwrap();
    assert!(
        shown.iter().any(|e| {
            matches!(e.body, Some(pb::room_event::Body::Unknown(_))) && e.sender == amy.id
        }),
        "bob sees amy become unknown"
    );
    until(RELAY_DEADLINE, "amy shows as unknown to bob", || async {
        contact_status(&bob, &amy.id).await == "unknown"
    })
    .await;

    // Reinstated, amy is reachable again, as a member connected again is;
    // no room comes back by itself.
    admin
        .admin
        .clone()
        .unsuspend_member(pb::UnsuspendMemberRequest {
            member_id: amy.id.clone(),
        })
        .await
        .unwrap();
    until(RELAY_DEADLINE, "amy is known to bob again", || async {
        contact_status(&bob, &amy.id).await != "unknown"
    })
    .await;
    let amy = a.login(&amy.id).await;
    assert!(
        !amy.rooms()
            .await
            .iter()
            .any(|r| r.id == group || r.id == direct),
        "no room came back"
    );
}

#[tokio::test]
async fn a_block_hides_the_blocked_members_messages_in_groups_from_the_blocker_only() {
    let (_a, _b, alice, amy, bob) = two_colleagues_and_bob().await;
    // One group hosted at bob's node, made before the block.
    let at_b = bob
        .group_room("At B", &[alice.id.as_str(), amy.id.as_str()])
        .await
        .id;
    let all = [bob.id.as_str(), alice.id.as_str(), amy.id.as_str()];
    until_members(&alice, &at_b, &all).await;
    until_members(&amy, &at_b, &all).await;

    contact_call(&alice, &bob.id, "block").await.unwrap();
    // A colleague may still put the two in one room (hosted at a.example).
    let at_a = amy
        .group_room("At A", &[alice.id.as_str(), bob.id.as_str()])
        .await
        .id;
    until_members(
        &bob,
        &at_a,
        &[amy.id.as_str(), alice.id.as_str(), bob.id.as_str()],
    )
    .await;

    for room in [&at_b, &at_a] {
        let last = alice
            .rooms()
            .await
            .into_iter()
            .find(|r| &r.id == room)
            .map_or(0, |r| r.last_seq);
        let mut alice_live = alice.watch(&[(room.as_str(), last)]).await.unwrap();
        let from_bob = bob.send(room, "from bob").await.unwrap();
        alice.send(room, "from alice").await.unwrap();
        bob.send(room, "bob again").await.unwrap();
        amy.send(room, "from amy").await.unwrap();
        // amy sees everyone; bob sees alice; nothing tells bob of the block.
        for text in ["from bob", "from alice", "bob again", "from amy"] {
            until_text(&amy, room, text).await;
        }
        until_text(&bob, room, "from alice").await;
        until_text(&bob, room, "from amy").await;
        until_delivered(&bob, room, &from_bob.event_id).await;
        // alice sees neither of bob's messages, in history, live or unread.
        assert_eq!(
            history_texts(&alice, room).await,
            vec!["from alice", "from amy"],
            "alice's view of {room}"
        );
        let mut live = Vec::new();
        while live.len() < 2 {
            let event = alice_live.next().await;
            if &event.room_id == room
                && let Some(text) = crate::support::text(&event)
            {
                live.push(text.to_string());
            }
        }
        assert_eq!(live, vec!["from alice", "from amy"]);
        assert_eq!(
            unread(&alice, room).await,
            1,
            "only amy's message is unread"
        );
    }

    // bob's file is amy's to download, not alice's.
    let sent = bob
        .send_file(&at_b, "bob.bin", b"bob's file")
        .await
        .unwrap();
    let file = attachment(sent.event.as_ref().unwrap()).unwrap().id.clone();
    until(RELAY_DEADLINE, "amy downloads bob's file", || async {
        amy.download(&file).await.is_ok()
    })
    .await;
    check(alice.download(&file).await, Code::NotFound, "attachment");

    // alice cannot invite bob; bob cannot bring alice in.
    check(
        alice
            .create_room(pb::RoomKind::Group, "Again", &[&bob.id])
            .await,
        Code::FailedPrecondition,
        "you blocked bob@b.example",
    );
    let by_bob = bob
        .create_room(pb::RoomKind::Group, "Hi", &[&alice.id])
        .await
        .unwrap()
        .id;
    until_members(&bob, &by_bob, &[bob.id.as_str()]).await;
    assert!(members_of(&alice, &by_bob).await.is_none());
}

#[tokio::test]
async fn a_deleted_contacts_messages_in_a_group_stop_for_the_one_who_deleted_them() {
    let (_a, _b, alice, bob) = pair().await;
    // A group hosted at bob's node where alice is a.example's only member,
    // so she may delete bob.
    let group = bob.group_room("Deal", &[alice.id.as_str()]).await.id;
    until_members(&alice, &group, &[bob.id.as_str(), alice.id.as_str()]).await;
    bob.send(&group, "before").await.unwrap();
    until_text(&alice, &group, "before").await;

    contact_call(&alice, &bob.id, "delete").await.unwrap();
    let after = bob.send(&group, "after the delete").await.unwrap();
    until_delivered(&bob, &group, &after.event_id).await;
    // alice still talks to the room; bob's later messages are not hers.
    alice.send(&group, "alice still here").await.unwrap();
    until_text(&bob, &group, "alice still here").await;
    // Her own message comes back to her node once the host sequenced it.
    until_text(&alice, &group, "alice still here").await;
    assert_eq!(
        history_texts(&alice, &group).await,
        vec!["before", "alice still here"]
    );
    check(
        alice
            .create_room(pb::RoomKind::Group, "Again", &[&bob.id])
            .await,
        Code::FailedPrecondition,
        "in your trash",
    );
    let by_bob = bob
        .create_room(pb::RoomKind::Group, "Hi", &[&alice.id])
        .await
        .unwrap()
        .id;
    until_members(&bob, &by_bob, &[bob.id.as_str()]).await;
    assert!(members_of(&alice, &by_bob).await.is_none());

    // Restored, bob's new messages reach her again.
    contact_call(&alice, &bob.id, "restore").await.unwrap();
    bob.send(&group, "after the restore").await.unwrap();
    until_text(&alice, &group, "after the restore").await;
    assert_eq!(
        history_texts(&alice, &group).await,
        vec!["before", "alice still here", "after the restore"]
    );
}

#[tokio::test]
async fn restricting_file_transfer_stops_what_our_members_send_not_what_they_receive() {
    let (a, _b, alice, bob) = pair().await;
    let direct = crate::support::room_with(&alice, &bob.id).await.id;
    let group = bob.group_room("Files", &[alice.id.as_str()]).await.id;
    until_members(&alice, &group, &[bob.id.as_str(), alice.id.as_str()]).await;
    // Sent before the restriction, and not downloaded by bob yet.
    let early = alice
        .send_file(&direct, "early.bin", b"early")
        .await
        .unwrap();
    let early = attachment(early.event.as_ref().unwrap())
        .unwrap()
        .id
        .clone();
    let kept = alice.upload(&group, "kept.bin", b"kept").await.unwrap();

    a.admin()
        .await
        .external
        .clone()
        .set_external_settings(pb::SetExternalSettingsRequest {
            restrict_files: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    let restricted = "your company restricts file transfer with other companies";
    check(
        alice.upload(&direct, "x.bin", b"x").await,
        Code::FailedPrecondition,
        restricted,
    );
    check(
        alice
            .client
            .rooms
            .clone()
            .send_message(pb::SendMessageRequest {
                room_id: group.clone(),
                idempotency_key: "kept".into(),
                attachment_id: kept.id.clone(),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        restricted,
    );
    // a.example no longer serves alice's file to bob's node.
    assert!(bob.download(&early).await.is_err());

    // bob's files come in, in the room a.example hosts and in bob's.
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    for room in [&direct, &group] {
        let sent = bob.send_file(room, "from-bob.bin", &data).await.unwrap();
        let id = attachment(sent.event.as_ref().unwrap()).unwrap().id.clone();
        until(RELAY_DEADLINE, "alice sees bob's file", || async {
            alice
                .history(room)
                .await
                .unwrap()
                .iter()
                .any(|e| attachment(e).is_some_and(|f| f.id == id))
        })
        .await;
        let (meta, bytes) = alice.download(&id).await.unwrap();
        assert_eq!(
            (meta.name.as_str(), bytes.len()),
            ("from-bob.bin", data.len())
        );
        assert_eq!(bytes, data);
    }
    // Text still flows both ways.
    alice.send(&direct, "got it").await.unwrap();
    until_text(&bob, &direct, "got it").await;
}
