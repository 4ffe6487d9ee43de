//! Members of one company chatting through a real node's gRPC API.

use std::time::Duration;

use crate::support::{self, TestNode, check, text};
use tonic::Code;
use works_proto::client::v1 as pb;

#[tokio::test]
async fn two_members_chat_and_see_each_other_live() {
    let node = TestNode::start("acme.example").await;
    let alice = node.member("alice").await;
    let bob = node.member("bob").await;
    let mut bob_stream = bob.watch(&[]).await.unwrap();

    let room = alice.direct_room(&bob.id).await;
    assert_eq!(room.kind, pb::RoomKind::Direct as i32);
    assert_eq!(room.members, vec![alice.id.clone(), bob.id.clone()]);
    alice.send(&room.id, "Hi Bob").await.unwrap();

    let seen = bob_stream.take(2).await;
    assert!(matches!(
        seen[0].body,
        Some(pb::room_event::Body::Created(_))
    ));
    assert_eq!(
        (seen[1].seq, seen[1].sender.as_str(), text(&seen[1])),
        (2, alice.id.as_str(), Some("Hi Bob"))
    );

    let listed = bob.rooms().await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id.as_str(), listed[0].unread),
        (room.id.as_str(), 1)
    );

    bob.send(&room.id, "Hi Alice").await.unwrap();
    let history = alice.history(&room.id).await.unwrap();
    let lines: Vec<(u64, &str, Option<&str>)> = history
        .iter()
        .map(|e| (e.seq, e.sender.as_str(), text(e)))
        .collect();
    assert_eq!(
        lines,
        vec![
            (1, alice.id.as_str(), None),
            (2, alice.id.as_str(), Some("Hi Bob")),
            (3, bob.id.as_str(), Some("Hi Alice"))
        ]
    );
    // Bob's own reply marks the room read for him; Alice has one unread.
    assert_eq!(bob.rooms().await[0].unread, 0);
    assert_eq!(alice.rooms().await[0].unread, 1);
    let read = alice
        .client
        .rooms
        .clone()
        .mark_read(pb::MarkReadRequest {
            room_id: room.id.clone(),
            seq: 3,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((read.last_read_seq, read.unread), (3, 0));

    // Creating the same 1:1 room again gives the same room.
    assert_eq!(bob.direct_room(&alice.id).await.id, room.id);
}

#[tokio::test]
async fn stream_resumes_after_reconnect_with_no_gap_and_no_duplicate() {
    let node = TestNode::start("acme.example").await;
    let alice = node.member("alice").await;
    let bob = node.member("bob").await;
    let room = alice.direct_room(&bob.id).await;
    let mut stream = bob.watch(&[(&room.id, 0)]).await.unwrap();
    for i in 0..5 {
        alice.send(&room.id, &format!("m{i}")).await.unwrap();
    }
    let first = stream.take(6).await;
    let last_seen = first.last().unwrap().seq;
    assert_eq!(last_seen, 6);
    drop(stream);

    // Messages keep coming while Bob is away, and while he reconnects.
    for i in 5..10 {
        alice.send(&room.id, &format!("m{i}")).await.unwrap();
    }
    let writer = {
        let alice = node.login(&alice.id).await;
        let room = room.id.clone();
        tokio::spawn(async move {
            for i in 10..30 {
                alice.send(&room, &format!("m{i}")).await.unwrap();
            }
        })
    };
    let mut resumed = bob.watch(&[(&room.id, last_seen)]).await.unwrap();
    let rest = resumed.take(25).await;
    writer.await.unwrap();
    let seqs: Vec<u64> = rest.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (7..=31).collect::<Vec<_>>(),
        "resumed stream must continue at 7 with no gap"
    );
    let texts: Vec<&str> = rest.iter().filter_map(text).collect();
    assert_eq!(texts, (5..30).map(|i| format!("m{i}")).collect::<Vec<_>>());
    resumed.assert_quiet(Duration::from_millis(300)).await;

    // Without a cursor, the stream starts with what Bob has not read.
    bob.client
        .rooms
        .clone()
        .mark_read(pb::MarkReadRequest {
            room_id: room.id.clone(),
            seq: 29,
        })
        .await
        .unwrap();
    let mut unread_first = bob.watch(&[]).await.unwrap();
    let replay: Vec<u64> = unread_first.take(2).await.iter().map(|e| e.seq).collect();
    assert_eq!(replay, vec![30, 31]);
}

#[tokio::test]
async fn a_retried_send_is_stored_once() {
    let node = TestNode::start("acme.example").await;
    let alice = node.member("alice").await;
    let bob = node.member("bob").await;
    let room = alice.direct_room(&bob.id).await;

    let first = alice.send_keyed(&room.id, "key-1", "hello").await.unwrap();
    let again = alice.send_keyed(&room.id, "key-1", "hello").await.unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(
        first.event.as_ref().unwrap().event_id,
        again.event.as_ref().unwrap().event_id
    );

    // Many concurrent retries of one send still store it once.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let client = alice.client.clone();
        let room = room.id.clone();
        tasks.push(tokio::spawn(async move {
            client
                .rooms
                .clone()
                .send_message(pb::SendMessageRequest {
                    room_id: room,
                    idempotency_key: "key-2".into(),
                    text: "concurrent".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut fresh = 0;
    for task in tasks {
        let sent = task.await.unwrap();
        ids.insert(sent.event.unwrap().event_id);
        fresh += usize::from(!sent.duplicate);
    }
    assert_eq!((ids.len(), fresh), (1, 1));

    // The same key for different content is refused, and stores nothing.
    check(
        alice.send_keyed(&room.id, "key-1", "other").await,
        Code::AlreadyExists,
        "different message",
    );
    let texts: Vec<String> = alice
        .history(&room.id)
        .await
        .unwrap()
        .iter()
        .filter_map(text)
        .map(String::from)
        .collect();
    assert_eq!(texts, vec!["hello", "concurrent"]);
    // The key is per sender: Bob may use the same key.
    assert!(
        !bob.send_keyed(&room.id, "key-1", "bob's")
            .await
            .unwrap()
            .duplicate
    );
}

#[tokio::test]
async fn group_rooms_follow_the_group_master() {
    let node = TestNode::start("acme.example").await;
    let alice = node.member("alice").await;
    let bob = node.member("bob").await;
    let carol = node.member("carol").await;
    let dave = node.member("dave").await;
    let room = alice.group_room("Launch", &[&bob.id, &carol.id]).await;
    assert_eq!(
        (room.master.as_str(), room.members.len()),
        (alice.id.as_str(), 3)
    );
    let mut carol_stream = carol.watch(&[(&room.id, 1)]).await.unwrap();
    let mut dave_stream = dave.watch(&[]).await.unwrap();
    let rooms = |client: &tenant_node::client::Client| client.rooms.clone();

    check(
        rooms(&bob.client)
            .invite_members(pb::InviteMembersRequest {
                room_id: room.id.clone(),
                members: vec![dave.id.clone()],
            })
            .await,
        Code::PermissionDenied,
        "only the group master can add members",
    );
    let grown = rooms(&alice.client)
        .invite_members(pb::InviteMembersRequest {
            room_id: room.id.clone(),
            members: vec![dave.id.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grown.members.len(), 4);
    // Dave's stream, open before he joined, picks the room up at his joining.
    let joined = dave_stream.next().await;
    assert_eq!((joined.seq, joined.room_id.as_str()), (2, room.id.as_str()));

    check(
        rooms(&bob.client)
            .remove_member(pb::RemoveMemberRequest {
                room_id: room.id.clone(),
                member_id: carol.id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "only the group master can remove members",
    );
    rooms(&alice.client)
        .remove_member(pb::RemoveMemberRequest {
            room_id: room.id.clone(),
            member_id: carol.id.clone(),
        })
        .await
        .unwrap();
    let seen = carol_stream.take(2).await;
    assert!(
        matches!(&seen[1].body, Some(pb::room_event::Body::Removed(r)) if r.member == carol.id)
    );
    alice.send(&room.id, "after carol left").await.unwrap();
    carol_stream.assert_quiet(Duration::from_millis(300)).await;
    check(
        carol.history(&room.id).await,
        Code::PermissionDenied,
        "not a member",
    );
    check(
        carol.send(&room.id, "still here?").await,
        Code::PermissionDenied,
        "not a member",
    );
    assert!(carol.rooms().await.is_empty());

    let renamed = rooms(&bob.client)
        .rename_room(pb::RenameRoomRequest {
            room_id: room.id.clone(),
            name: "Launch v2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.name, "Launch v2");

    // The master leaves: the longest-standing member takes over.
    rooms(&alice.client)
        .leave_room(pb::LeaveRoomRequest {
            room_id: room.id.clone(),
        })
        .await
        .unwrap();
    let after = rooms(&bob.client)
        .get_room(pb::GetRoomRequest {
            room_id: room.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.master, bob.id);
    assert_eq!(after.members, vec![bob.id.clone(), dave.id.clone()]);
    let kinds: Vec<&str> = bob
        .history(&room.id)
        .await
        .unwrap()
        .iter()
        .map(|e| match &e.body {
            Some(pb::room_event::Body::Created(_)) => "created",
            Some(pb::room_event::Body::Joined(_)) => "joined",
            Some(pb::room_event::Body::Removed(_)) => "removed",
            Some(pb::room_event::Body::Text(_)) => "text",
            Some(pb::room_event::Body::Renamed(_)) => "renamed",
            Some(pb::room_event::Body::Left(_)) => "left",
            Some(_) | None => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        vec!["created", "joined", "removed", "text", "renamed", "left"]
    );

    // A direct room never changes members.
    let direct = bob.direct_room(&dave.id).await;
    check(
        rooms(&bob.client)
            .invite_members(pb::InviteMembersRequest {
                room_id: direct.id.clone(),
                members: vec![alice.id.clone()],
            })
            .await,
        Code::FailedPrecondition,
        "direct room",
    );
}

#[tokio::test]
async fn history_pages_backwards_and_forwards() {
    let node = TestNode::start("acme.example").await;
    let alice = node.member("alice").await;
    let bob = node.member("bob").await;
    let room = alice.direct_room(&bob.id).await;
    for i in 0..25 {
        alice.send(&room.id, &format!("m{i}")).await.unwrap();
    }
    let history = |after: Option<u64>, before: Option<u64>, limit: u32| {
        let mut rooms = bob.client.rooms.clone();
        let room_id = room.id.clone();
        async move {
            rooms
                .history(pb::HistoryRequest {
                    room_id,
                    after_seq: after,
                    before_seq: before,
                    limit,
                })
                .await
                .map(|r| r.into_inner())
        }
    };
    let latest = history(None, None, 10).await.unwrap();
    assert_eq!(
        latest.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (17..=26).collect::<Vec<_>>()
    );
    assert!(latest.has_more);
    let older = history(None, Some(17), 10).await.unwrap();
    assert_eq!(older.events.first().unwrap().seq, 7);
    let oldest = history(None, Some(7), 10).await.unwrap();
    assert_eq!(
        oldest.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    assert!(!oldest.has_more);
    let forward = history(Some(20), None, 100).await.unwrap();
    assert_eq!(forward.events.len(), 6);
    assert!(!forward.has_more);
    check(
        history(Some(1), Some(5), 10).await,
        Code::InvalidArgument,
        "not both",
    );
    check(
        history(None, None, 5000).await,
        Code::InvalidArgument,
        "at most 1000",
    );
}

#[tokio::test]
async fn profiles_and_company_name() {
    let node = TestNode::start("acme.example").await;
    let alice = node.member("alice").await;
    let bob = node.member("bob").await;
    let admin = node.admin().await;
    admin
        .admin
        .clone()
        .set_company(pb::SetCompanyRequest {
            name: "Acme Corp".into(),
        })
        .await
        .unwrap();

    let png = support::png(8, 8);
    let mine = alice
        .client
        .profiles
        .clone()
        .set_profile(pb::SetProfileRequest {
            display_name: Some("Alice A.".into()),
            photo: Some(png.clone()),
            clear_photo: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (mine.display_name.as_str(), mine.photo_content_type.as_str()),
        ("Alice A.", "image/png")
    );
    let seen_by_bob = bob
        .client
        .profiles
        .clone()
        .get_profile(pb::GetProfileRequest {
            member_id: alice.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            seen_by_bob.display_name.as_str(),
            seen_by_bob.company.as_str(),
            seen_by_bob.photo
        ),
        ("Alice A.", "Acme Corp", mine.photo.clone())
    );
    let set = |req: pb::SetProfileRequest| {
        let mut profiles = alice.client.profiles.clone();
        async move { profiles.set_profile(req).await }
    };
    check(
        set(pb::SetProfileRequest {
            photo: Some(b"not an image".to_vec()),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "must be a PNG or JPEG image",
    );
    check(
        set(pb::SetProfileRequest {
            photo: Some([b"\x89PNG\r\n\x1a\n".as_slice(), &vec![0; 2 << 20]].concat()),
            ..Default::default()
        })
        .await,
        Code::ResourceExhausted,
        "the limit is",
    );
    check(
        set(pb::SetProfileRequest {
            display_name: Some("  ".into()),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "display_name",
    );
    let cleared = set(pb::SetProfileRequest {
        clear_photo: true,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner();
    assert!(cleared.photo.is_empty());
}

/// Many sends into one room at once, so the node commits them in groups,
/// some of them refused: inside a group (a sender not in the room, a key
/// sent twice) and before one (a text too long). History holds exactly the
/// admitted ones, each once, and each refused one got its own error.
#[tokio::test]
async fn sends_committed_together_keep_exactly_the_admitted_ones() {
    let node = TestNode::start("acme.example").await;
    let alice = node.member("alice").await;
    let bob = node.member("bob").await;
    let carol = node.member("carol").await;
    let room = alice.direct_room(&bob.id).await;
    let too_long = "x".repeat(16 * 1024 + 1);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..120 {
        // 0..60 admitted, 60..80 from carol (not in the room), 80..90 too
        // long, 90..120 alice's 15 keys each sent twice.
        let (who, key, body) = match i {
            0..60 => (&alice, format!("k{i}"), format!("m{i}")),
            60..80 => (&carol, format!("k{i}"), format!("m{i}")),
            80..90 => (&alice, format!("k{i}"), too_long.clone()),
            _ => (&alice, format!("twice{}", i / 2), format!("t{}", i / 2)),
        };
        let mut rooms = who.client.rooms.clone();
        let room_id = room.id.clone();
        calls.spawn(async move {
            let answer = rooms
                .send_message(pb::SendMessageRequest {
                    room_id,
                    idempotency_key: key,
                    text: body,
                    ..Default::default()
                })
                .await
                .map(tonic::Response::into_inner);
            (i, answer)
        });
    }
    let mut twice: std::collections::BTreeMap<usize, Vec<(String, bool)>> = Default::default();
    for (i, answer) in calls.join_all().await {
        match i {
            0..60 => {
                let answer = answer.unwrap();
                assert!(!answer.duplicate);
                assert_eq!(
                    answer.event.as_ref().and_then(text),
                    Some(format!("m{i}").as_str())
                );
            }
            60..80 => check(
                answer,
                Code::PermissionDenied,
                &format!("carol@acme.example is not a member of room {}", room.id),
            ),
            80..90 => check(
                answer,
                Code::ResourceExhausted,
                "message is 16385 bytes; the limit is 16384",
            ),
            _ => {
                let answer = answer.unwrap();
                let event = answer.event.expect("event");
                twice
                    .entry(i / 2)
                    .or_default()
                    .push((event.event_id, answer.duplicate));
            }
        }
    }
    // Each key sent twice: one stored, the other answered with it.
    for (n, answers) in &twice {
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0].0, answers[1].0, "key twice{n}: one event");
        let duplicates = answers.iter().filter(|(_, d)| *d).count();
        assert_eq!(duplicates, 1, "key twice{n}: one answer is the duplicate");
    }
    let mut stored = support::history_texts(&bob, &room.id).await;
    stored.sort();
    let mut expected: Vec<String> = (0..60)
        .map(|i| format!("m{i}"))
        .chain((45..60).map(|n| format!("t{n}")))
        .collect();
    expected.sort();
    assert_eq!(stored, expected);
}
