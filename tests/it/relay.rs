//! Rooms shared across companies: hosted rooms, replicas on every
//! participating node, the durable relay between them, delivery states, and
//! what the bridge does with forged or out-of-order envelopes.

use std::time::Duration;

use crate::support::{
    self, Member, RELAY_DEADLINE, TestNode, allow, attachment, befriend, burst, check, envelope,
    eventually, history_texts, pair, pair_of, peer_with, peers, relay_once, room_with, state, text,
    texts, until, until_texts,
};
use tonic::Code;
use works_proto::client::v1 as pb;
use works_proto::federation::v1 as fed;

#[tokio::test]
async fn an_accepted_request_opens_a_direct_room_where_both_chat_in_one_order() {
    let (_a, _b, alice, bob) = pair().await;
    let at_alice = room_with(&alice, &bob.id).await;
    assert_eq!(at_alice.host, "a.example", "the requester's node hosts");
    assert!(at_alice.external);
    assert_eq!(at_alice.kind, pb::RoomKind::Direct as i32);
    let at_bob = room_with(&bob, &alice.id).await;
    assert_eq!(at_bob.id, at_alice.id, "one room, replicated");
    assert_eq!(at_bob.host, "a.example");
    assert!(at_bob.external);
    let room = at_alice.id.clone();

    let mut bob_watch = bob.watch(&[(&room, at_bob.last_seq)]).await.unwrap();
    let sent = alice.send_keyed(&room, "k1", "hello bob").await.unwrap();
    let from_alice = sent.event.clone().unwrap();
    assert!(from_alice.seq > 0, "the host sequences at once");
    let seen = bob_watch.next().await;
    assert_eq!(seen.event_id, from_alice.event_id);
    assert_eq!(seen.seq, from_alice.seq);
    assert_eq!(text(&seen), Some("hello bob"));
    until(RELAY_DEADLINE, "alice's message is delivered", || async {
        let d = alice.delivery(&room, &from_alice.event_id).await.unwrap();
        state(&d) == pb::DeliveryState::Delivered
    })
    .await;

    // Bob's node does not host: it stores his message in its outbox for
    // a.example and answers at once; the host's order comes back.
    let reply = bob.send_keyed(&room, "k2", "hi alice").await.unwrap();
    let queued = reply.event.clone().unwrap();
    assert_eq!(queued.seq, 0, "not sequenced yet");
    let delivery = reply.delivery.clone().unwrap();
    assert_eq!(delivery.peers.len(), 1);
    assert_eq!(delivery.peers[0].tenant, "a.example");
    assert!(matches!(
        state(&delivery),
        pb::DeliveryState::Queued | pb::DeliveryState::Delivered
    ));
    let back = bob_watch.next().await;
    assert_eq!(back.event_id, queued.event_id);
    assert_eq!(back.seq, from_alice.seq + 1);
    // The host reports back once every node has it.
    until(RELAY_DEADLINE, "bob's message is delivered", || async {
        let d = bob.delivery(&room, &queued.event_id).await.unwrap();
        state(&d) == pb::DeliveryState::Delivered
    })
    .await;
    // A retry with the same key is the same message, now with its seq.
    let again = bob.send_keyed(&room, "k2", "hi alice").await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.event.unwrap().event_id, queued.event_id);

    bob.send_sticker(&room, "thumbs-up").await.unwrap();
    alice.send(&room, "see you").await.unwrap();
    let at_a = until_texts(&alice, &room, 3).await;
    let at_b = until_texts(&bob, &room, 3).await;
    assert_eq!(at_a, vec!["hello bob", "hi alice", "see you"]);
    assert_eq!(at_a, at_b);
    let ids = |events: Vec<pb::RoomEvent>| -> Vec<(u64, String)> {
        events.into_iter().map(|e| (e.seq, e.event_id)).collect()
    };
    until(
        RELAY_DEADLINE,
        "both nodes hold the same events",
        || async {
            ids(alice.history(&room).await.unwrap()) == ids(bob.history(&room).await.unwrap())
        },
    )
    .await;
    let events = alice.history(&room).await.unwrap();
    assert!(events.iter().any(
        |e| matches!(&e.body, Some(pb::room_event::Body::Sticker(s)) if s.name == "thumbs-up")
    ));
    for pair in events.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1, "dense order");
    }
}

#[tokio::test]
async fn three_companies_share_one_group_room() {
    let a = TestNode::start("a.example").await;
    let b = TestNode::start("b.example").await;
    let c = TestNode::start("c.example").await;
    peer_with(&a, &b).await;
    peer_with(&a, &c).await;
    peer_with(&b, &c).await;
    let alice = a.member("alice").await;
    let bob = b.member("bob").await;
    let carol = c.member("carol").await;
    allow(&a.admin().await, true, &alice.id, true).await;
    allow(&b.admin().await, true, &bob.id, true).await;
    allow(&c.admin().await, true, &carol.id, true).await;
    befriend(&alice, &bob).await;
    befriend(&alice, &carol).await;

    let group = alice
        .group_room("Launch", &[bob.id.as_str(), carol.id.as_str()])
        .await;
    assert!(group.external);
    let room = group.id.clone();
    for who in [&bob, &carol] {
        until(
            RELAY_DEADLINE,
            "the group reaches every company",
            || async { who.rooms().await.iter().any(|r| r.id == room) },
        )
        .await;
    }
    let at_carol = carol
        .rooms()
        .await
        .into_iter()
        .find(|r| r.id == room)
        .unwrap();
    assert_eq!(at_carol.name, "Launch");
    assert_eq!(at_carol.master, alice.id);
    assert_eq!(at_carol.members.len(), 3);

    // Everyone talks at once; every node ends with one and the same order.
    let mut senders = Vec::new();
    for (who, tag) in [(&alice, "a"), (&bob, "b"), (&carol, "c")] {
        let who = Member {
            id: who.id.clone(),
            client: who.client.clone(),
        };
        let room = room.clone();
        senders.push(tokio::spawn(async move {
            for i in 0..10 {
                who.send(&room, &format!("{tag}{i}")).await.unwrap();
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    let order = until_texts(&alice, &room, 30).await;
    assert_eq!(until_texts(&bob, &room, 30).await, order);
    assert_eq!(until_texts(&carol, &room, 30).await, order);
    for tag in ["a", "b", "c"] {
        let mine: Vec<&String> = order.iter().filter(|t| t.starts_with(tag)).collect();
        let expected: Vec<String> = (0..10).map(|i| format!("{tag}{i}")).collect();
        assert_eq!(
            mine,
            expected.iter().collect::<Vec<_>>(),
            "each sender's order kept"
        );
    }

    // Only the group master adds and removes, on whichever node they ask.
    let mut rooms = bob.client.rooms.clone();
    check(
        rooms
            .remove_member(pb::RemoveMemberRequest {
                room_id: room.clone(),
                member_id: carol.id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "only the group master",
    );
    alice
        .client
        .rooms
        .clone()
        .remove_member(pb::RemoveMemberRequest {
            room_id: room.clone(),
            member_id: carol.id.clone(),
        })
        .await
        .unwrap();
    until(RELAY_DEADLINE, "the room leaves carol's list", || async {
        !carol.rooms().await.iter().any(|r| r.id == room)
    })
    .await;
    until(RELAY_DEADLINE, "bob sees carol removed", || async {
        bob.rooms()
            .await
            .iter()
            .any(|r| r.id == room && r.members.len() == 2)
    })
    .await;
    check(
        carol.send(&room, "still here?").await,
        Code::PermissionDenied,
        "not a member",
    );
    bob.send(&room, "after carol").await.unwrap();
    until_texts(&alice, &room, 31).await;
}

/// The attachments posted to a room, as `who` sees them.
async fn files(who: &Member, room: &str) -> Vec<pb::Attachment> {
    who.history(room)
        .await
        .unwrap()
        .iter()
        .filter_map(|e| attachment(e).cloned())
        .collect()
}

#[tokio::test]
async fn files_travel_in_chunks_within_the_limit_and_a_restriction_stops_only_what_leaves() {
    let (_a, _b, c, alice, bob, carol, room) =
        three_company_group_with("Files", |c| c.limits.max_attachment_bytes = 300_000).await;

    // 200 kB from bob (b.example): carol (c.example, not peered with b)
    // gets it through the host, in chunks, checked against its SHA-256.
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    bob.send_file(&room, "plan.bin", &data).await.unwrap();
    until(RELAY_DEADLINE, "carol sees the file", || async {
        !files(&carol, &room).await.is_empty()
    })
    .await;
    let posted = files(&carol, &room).await.remove(0);
    assert_eq!((posted.name.as_str(), posted.size), ("plan.bin", 200_000));
    let (meta, bytes) = carol.download(&posted.id).await.unwrap();
    assert_eq!(meta.sha256, posted.sha256);
    assert_eq!(bytes, data);
    let (_, at_alice) = alice.download(&posted.id).await.unwrap();
    assert_eq!(at_alice, data);

    // Over the uploader's limit: refused while streaming, nothing stored.
    check(
        bob.upload(&room, "big.bin", &vec![0u8; 300_001]).await,
        Code::ResourceExhausted,
        "300000 byte limit",
    );
    // A file id posts once, and only by its uploader in its room.
    let again = bob.upload(&room, "twice.bin", b"x").await.unwrap();
    let post = |who: &Member, id: &str| {
        let mut rooms = who.client.rooms.clone();
        let (room, id) = (room.clone(), id.to_string());
        async move {
            rooms
                .send_message(pb::SendMessageRequest {
                    room_id: room,
                    idempotency_key: ulid::Ulid::new().to_string(),
                    attachment_id: id,
                    ..Default::default()
                })
                .await
        }
    };
    check(
        post(&alice, &again.id).await,
        Code::NotFound,
        "uploaded by you",
    );
    post(&bob, &again.id).await.unwrap();
    check(
        post(&bob, &again.id).await,
        Code::AlreadyExists,
        "posted already",
    );

    // c.example restricts file transfer: carol cannot send a file into the
    // room, and still receives the others' files (the restriction is on
    // what leaves her company).
    c.admin()
        .await
        .external
        .clone()
        .set_external_settings(pb::SetExternalSettingsRequest {
            restrict_files: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    check(
        carol.upload(&room, "x.bin", b"x").await,
        Code::FailedPrecondition,
        "restricts file transfer",
    );
    let before = files(&carol, &room).await.len();
    let sent = alice.send_file(&room, "late.bin", b"late").await.unwrap();
    let id = sent.event.unwrap().event_id;
    until(RELAY_DEADLINE, "c.example stores alice's file", || async {
        let d = alice.delivery(&room, &id).await.unwrap();
        d.peers
            .iter()
            .any(|p| p.tenant == "c.example" && state_of(p.state) == pb::DeliveryState::Delivered)
    })
    .await;
    let from_bob = bob.send_file(&room, "b.bin", b"from bob").await.unwrap();
    let id = from_bob.event.unwrap().event_id;
    until(
        RELAY_DEADLINE,
        "bob's file is delivered everywhere",
        || async {
            state(&bob.delivery(&room, &id).await.unwrap()) == pb::DeliveryState::Delivered
        },
    )
    .await;
    let got = files(&carol, &room).await;
    assert_eq!(got.len(), before + 2);
    for file in &got[before..] {
        let (_, bytes) = carol.download(&file.id).await.unwrap();
        assert_eq!(bytes.len() as u64, file.size);
    }
    alice.send(&room, "text still flows").await.unwrap();
    until(RELAY_DEADLINE, "carol gets the text", || async {
        history_texts(&carol, &room)
            .await
            .contains(&"text still flows".to_string())
    })
    .await;
}

fn state_of(s: i32) -> pb::DeliveryState {
    pb::DeliveryState::try_from(s).unwrap_or_default()
}

#[tokio::test]
async fn a_peer_that_was_down_receives_all_1000_messages_once_and_in_order() {
    let (a, mut b, alice, bob) = pair().await;
    let room = room_with(&alice, &bob.id).await.id;
    room_with(&bob, &alice.id).await;
    b.terminate().await;

    let mut last = None;
    for i in 0..1000 {
        last = Some(alice.send(&room, &format!("m{i:04}")).await.unwrap());
    }
    let last = last.unwrap();
    let d = alice.delivery(&room, &last.event_id).await.unwrap();
    assert_eq!(state(&d), pb::DeliveryState::Queued);
    assert_eq!(d.peers[0].tenant, "b.example");
    let peers = peers(&a.admin().await).await;
    assert!(
        peers[0].queue_depth >= 1000,
        "queue depth {}",
        peers[0].queue_depth
    );

    b.restart().await;
    let bob = b.login(&bob.id).await;
    let got = until_texts(&bob, &room, 1000).await;
    let expected: Vec<String> = (0..1000).map(|i| format!("m{i:04}")).collect();
    assert_eq!(got, expected, "all of them, once, in order");
    until(RELAY_DEADLINE, "the last message is delivered", || async {
        let d = alice.delivery(&room, &last.event_id).await.unwrap();
        state(&d) == pb::DeliveryState::Delivered
    })
    .await;
}

#[tokio::test]
async fn killing_the_host_mid_stream_loses_no_acknowledged_message() {
    let (mut a, _b, alice, bob) = pair().await;
    let room = room_with(&bob, &alice.id).await.id;
    // Bob's node queues his messages for the host; alice's node stores hers.
    let sender = {
        let bob_client = bob.client.clone();
        let room = room.clone();
        tokio::spawn(async move {
            let bob = Member {
                id: "bob@b.example".into(),
                client: bob_client,
            };
            let mut acknowledged = Vec::new();
            for i in 0..300 {
                if let Ok(e) = bob.send(&room, &format!("b{i:03}")).await {
                    acknowledged.push(text(&e).unwrap().to_string());
                }
            }
            acknowledged
        })
    };
    let mut from_alice = Vec::new();
    for i in 0..50 {
        alice.send(&room, &format!("a{i:03}")).await.unwrap();
        from_alice.push(format!("a{i:03}"));
    }
    a.kill().await;
    let acknowledged = sender.await.unwrap();
    assert_eq!(
        acknowledged.len(),
        300,
        "bob's own node acknowledges while the host is down"
    );
    a.restart().await;
    let alice = a.login(&alice.id).await;
    let total = from_alice.len() + acknowledged.len();
    for who in [&alice, &bob] {
        let got = until_texts(who, &room, total).await;
        assert_eq!(got.len(), total, "nothing doubled at {}", who.id);
        let bobs: Vec<&String> = got.iter().filter(|t| t.starts_with('b')).collect();
        assert_eq!(bobs, acknowledged.iter().collect::<Vec<_>>());
        let alices: Vec<&String> = got.iter().filter(|t| t.starts_with('a')).collect();
        assert_eq!(alices, from_alice.iter().collect::<Vec<_>>());
    }
    assert_eq!(
        history_texts(&alice, &room).await,
        history_texts(&bob, &room).await
    );
}

#[tokio::test]
async fn the_bridge_refuses_forged_duplicated_and_out_of_order_envelopes() {
    let (a, b, alice, bob) = pair().await;
    let room = room_with(&alice, &bob.id).await.id;
    room_with(&bob, &alice.id).await;
    let mut from_b = support::bridge_client(&a, &b.tls_files().load_node().unwrap()).await;
    let text_from = support::wire::text;

    let id1 = ulid::Ulid::new().to_string();
    let forged_host = ulid::Ulid::new().to_string();
    let forged_sender = ulid::Ulid::new().to_string();
    let receiver_hosts = ulid::Ulid::new().to_string();
    let acks = relay_once(
        &mut from_b,
        vec![
            // b.example claims to host alice's room and sequence in it.
            envelope(
                &forged_host,
                "b.example",
                &room,
                7,
                text_from("bob@b.example", "forged"),
            ),
            // b.example speaks for a member of another company.
            envelope(
                &forged_sender,
                "a.example",
                &room,
                0,
                text_from("carol@c.example", "spoof"),
            ),
            // A sequenced event "from the host" sent to the host.
            envelope(
                &receiver_hosts,
                "a.example",
                &room,
                3,
                text_from("bob@b.example", "loop"),
            ),
            // A real proposal, and the same envelope again.
            envelope(
                &id1,
                "a.example",
                &room,
                0,
                text_from("bob@b.example", "once"),
            ),
            envelope(
                &id1,
                "a.example",
                &room,
                0,
                text_from("bob@b.example", "once"),
            ),
            envelope(
                "not-an-id",
                "a.example",
                &room,
                0,
                text_from("bob@b.example", "x"),
            ),
            fed::Envelope {
                payload: None,
                ..envelope(
                    &ulid::Ulid::new().to_string(),
                    "a.example",
                    &room,
                    0,
                    text_from("bob@b.example", "x"),
                )
            },
        ],
    )
    .await;
    assert_eq!(acks.len(), 7, "one acknowledgement per envelope: {acks:?}");
    assert!(
        acks[0].refused.contains("is not hosted by b.example"),
        "{:?}",
        acks[0]
    );
    assert!(
        acks[1].refused.contains("cannot send on behalf"),
        "{:?}",
        acks[1]
    );
    assert!(
        acks[2].refused.contains("only the host sequences"),
        "{:?}",
        acks[2]
    );
    assert!(
        acks[3].refused.is_empty() && !acks[3].retry,
        "{:?}",
        acks[3]
    );
    assert!(
        acks[4].refused.is_empty() && !acks[4].retry,
        "a duplicate is acknowledged: {:?}",
        acks[4]
    );
    assert!(acks[5].refused.contains("event_id"), "{:?}", acks[5]);
    assert!(acks[6].refused.contains("payload"), "{:?}", acks[6]);
    let at_a = history_texts(&alice, &room).await;
    assert_eq!(at_a, vec!["once"], "stored once, nothing forged");

    // At a replica: only the next seq is stored; a gap waits, a taken seq is refused.
    // b.example's node never proposed "once" (the test did, with its
    // certificate): sequenced back to it in bob's name, it is withheld.
    let mut from_a = support::bridge_client(&b, &a.tls_files().load_node().unwrap()).await;
    alice.send(&room, "from alice").await.unwrap();
    until_texts(&bob, &room, 1).await;
    assert_eq!(history_texts(&bob, &room).await, vec!["from alice"]);
    let last = bob.history(&room).await.unwrap().last().unwrap().seq;
    let gap = ulid::Ulid::new().to_string();
    let taken = ulid::Ulid::new().to_string();
    let next = ulid::Ulid::new().to_string();
    let acks = relay_once(
        &mut from_a,
        vec![
            envelope(
                &taken,
                "a.example",
                &room,
                last,
                text_from("alice@a.example", "rewrite"),
            ),
            envelope(
                &gap,
                "a.example",
                &room,
                last + 2,
                text_from("alice@a.example", "too early"),
            ),
            envelope(
                &next,
                "a.example",
                &room,
                last + 1,
                text_from("alice@a.example", "next"),
            ),
        ],
    )
    .await;
    assert!(acks[0].refused.contains("already has seq"), "{:?}", acks[0]);
    assert!(acks[1].retry, "a gap waits: {:?}", acks[1]);
    assert!(
        acks[2].retry,
        "everything after a wait waits too: {:?}",
        acks[2]
    );
    let acks = relay_once(
        &mut from_a,
        vec![
            envelope(
                &next,
                "a.example",
                &room,
                last + 1,
                text_from("alice@a.example", "next"),
            ),
            envelope(
                &gap,
                "a.example",
                &room,
                last + 2,
                text_from("alice@a.example", "too early"),
            ),
        ],
    )
    .await;
    assert!(
        acks.iter().all(|a| a.refused.is_empty() && !a.retry),
        "{acks:?}"
    );
    assert_eq!(
        history_texts(&bob, &room).await,
        vec!["from alice", "next", "too early"]
    );
}

async fn external(admin: &tenant_node::client::Client, enabled: bool) {
    admin
        .external
        .clone()
        .set_external_settings(pb::SetExternalSettingsRequest {
            enabled: Some(enabled),
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn contact_status(who: &Member, user: &str) -> String {
    who.contact(user).await.status
}

#[tokio::test]
async fn turning_external_messaging_off_mid_conversation_takes_members_out() {
    let (a, b, alice, bob) = pair().await;
    let room = room_with(&alice, &bob.id).await.id;
    until(RELAY_DEADLINE, "bob's node holds the group", || async {
        members_of(&bob, &room).await.is_some()
    })
    .await;
    alice.send(&room, "before").await.unwrap();
    until_texts(&bob, &room, 1).await;

    // B's admin switches external messaging off: bob's room is gone from
    // his list at once, alice sees him become unknown and leave.
    external(&b.admin().await, false).await;
    assert!(!bob.rooms().await.iter().any(|r| r.id == room));
    check(
        bob.history(&room).await,
        Code::PermissionDenied,
        "not a member",
    );
    until(RELAY_DEADLINE, "alice sees bob leave", || async {
        alice
            .history(&room)
            .await
            .unwrap()
            .iter()
            .any(|e| matches!(e.body, Some(pb::room_event::Body::Unknown(_))) && e.sender == bob.id)
    })
    .await;
    assert_eq!(contact_status(&alice, &bob.id).await, "unknown");
    let after = alice.send_keyed(&room, "after", "anyone?").await.unwrap();
    assert_eq!(
        state(&after.delivery.unwrap()),
        pb::DeliveryState::Stored,
        "nothing goes to b.example any more"
    );

    // Switching it back on brings no room back by itself: not at once, nor
    // once a.example has delivered whatever it queued for b.example on
    // hearing that b.example's members are reachable again.
    external(&b.admin().await, true).await;
    let a_admin = a.admin().await;
    until(
        RELAY_DEADLINE,
        "a.example has nothing queued for b.example",
        || async { peers(&a_admin).await.iter().all(|p| p.queue_depth == 0) },
    )
    .await;
    assert!(!bob.rooms().await.iter().any(|r| r.id == room));
    let audit = b
        .admin()
        .await
        .audit
        .clone()
        .search_audit(pb::AuditSearchRequest {
            text: "anyone?".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(
        audit.is_empty(),
        "b.example never received the later message"
    );
    let _ = a;
}

#[tokio::test]
async fn a_disconnected_member_leaves_and_the_host_removes_the_unknown() {
    let (a, _b, alice, bob) = pair().await;
    let room = room_with(&bob, &alice.id).await.id;
    // alice's admin takes her off the connected list; a.example hosts.
    a.admin()
        .await
        .external
        .clone()
        .remove_connected(pb::RemoveConnectedRequest {
            member_id: alice.id.clone(),
        })
        .await
        .unwrap();
    assert!(!alice.rooms().await.iter().any(|r| r.id == room));
    until(RELAY_DEADLINE, "bob's room shows alice gone", || async {
        bob.rooms()
            .await
            .iter()
            .any(|r| r.id == room && r.members == vec![bob.id.clone()])
    })
    .await;
    until(
        RELAY_DEADLINE,
        "alice shows as unknown at bob's",
        || async { contact_status(&bob, &alice.id).await == "unknown" },
    )
    .await;
}

#[tokio::test]
async fn a_blocked_users_messages_are_not_delivered() {
    let (_a, _b, alice, bob) = pair().await;
    let room = room_with(&alice, &bob.id).await.id;
    room_with(&bob, &alice.id).await;
    alice.send(&room, "one").await.unwrap();
    until_texts(&bob, &room, 1).await;
    bob.client
        .contacts
        .clone()
        .block_user(pb::ContactRef {
            user_id: alice.id.clone(),
        })
        .await
        .unwrap();
    let sent = alice.send(&room, "two").await.unwrap();
    until(RELAY_DEADLINE, "alice sees her message refused", || async {
        let d = alice.delivery(&room, &sent.event_id).await.unwrap();
        state(&d) == pb::DeliveryState::Refused
    })
    .await;
    let d = alice.delivery(&room, &sent.event_id).await.unwrap();
    assert!(
        !d.reason.contains("block"),
        "no private reason leaks: {}",
        d.reason
    );
    check(
        bob.send(&room, "hi").await,
        Code::FailedPrecondition,
        "you blocked",
    );
    let three = alice.send(&room, "three").await.unwrap();
    until(
        RELAY_DEADLINE,
        "b.example has answered the third",
        || async {
            let d = alice.delivery(&room, &three.event_id).await.unwrap();
            state(&d) == pb::DeliveryState::Refused
        },
    )
    .await;
    assert_eq!(history_texts(&bob, &room).await, vec!["one"]);
}

#[tokio::test]
async fn a_contact_shared_with_a_colleague_cannot_be_deleted_and_deleting_stops_messaging() {
    let (a, _b, alice, bob) = pair().await;
    let amy = a.member("amy").await;
    allow(&a.admin().await, true, &amy.id, true).await;
    let direct = room_with(&alice, &bob.id).await.id;
    let group = alice
        .group_room("Deal", &[bob.id.as_str(), amy.id.as_str()])
        .await;
    let delete = |who: &Member, user: &str| {
        let mut contacts = who.client.contacts.clone();
        let user = user.to_string();
        async move {
            contacts
                .delete_contact(pb::ContactRef { user_id: user })
                .await
                .map(tonic::Response::into_inner)
        }
    };
    check(
        delete(&alice, &bob.id).await,
        Code::FailedPrecondition,
        "shares room",
    );
    amy.client
        .rooms
        .clone()
        .leave_room(pb::LeaveRoomRequest {
            room_id: group.id.clone(),
        })
        .await
        .unwrap();
    delete(&alice, &bob.id).await.unwrap();
    check(
        alice.send(&direct, "still there?").await,
        Code::FailedPrecondition,
        "in your trash",
    );
    room_with(&bob, &alice.id).await;
    let reply = bob.send_keyed(&direct, "k", "hello?").await.unwrap();
    let id = reply.event.unwrap().event_id;
    until(RELAY_DEADLINE, "bob's message is refused", || async {
        state(&bob.delivery(&direct, &id).await.unwrap()) == pb::DeliveryState::Refused
    })
    .await;
    assert!(
        !history_texts(&alice, &direct)
            .await
            .contains(&"hello?".to_string())
    );
}

#[tokio::test]
async fn a_link_cut_again_and_again_during_a_burst_loses_and_doubles_nothing() {
    let mut a = TestNode::start("a.example").await;
    let mut b = TestNode::start("b.example").await;
    let to_a = a.behind_cutter().await;
    let to_b = b.behind_cutter().await;
    let (_a, _b, alice, bob) = pair_of(a, b).await;
    let room = room_with(&alice, &bob.id).await.id;
    room_with(&bob, &alice.id).await;

    let flapping = [
        to_a.flap(Duration::from_millis(150)),
        to_b.flap(Duration::from_millis(200)),
    ];
    let burst = |who: &Member, tag: &'static str| {
        let who = Member {
            id: who.id.clone(),
            client: who.client.clone(),
        };
        let room = room.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                who.send(&room, &format!("{tag}{i:03}")).await.unwrap();
            }
        })
    };
    let (from_a, from_b) = (burst(&alice, "a"), burst(&bob, "b"));
    from_a.await.unwrap();
    from_b.await.unwrap();
    for f in flapping {
        f.abort();
    }
    let cuts = to_a.cuts.load(std::sync::atomic::Ordering::Relaxed)
        + to_b.cuts.load(std::sync::atomic::Ordering::Relaxed);
    assert!(cuts >= 4, "the link was cut {cuts} times");
    let reconnects = to_a.connections.load(std::sync::atomic::Ordering::Relaxed)
        + to_b.connections.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        reconnects >= 4,
        "the nodes dialled through the proxies {reconnects} times"
    );
    for who in [&alice, &bob] {
        let got = until_texts(who, &room, 600).await;
        assert_eq!(got.len(), 600, "nothing doubled at {}", who.id);
        for tag in ["a", "b"] {
            let mine: Vec<&String> = got.iter().filter(|t| t.starts_with(tag)).collect();
            let expected: Vec<String> = (0..300).map(|i| format!("{tag}{i:03}")).collect();
            assert_eq!(
                mine,
                expected.iter().collect::<Vec<_>>(),
                "{tag} in order at {}",
                who.id
            );
        }
    }
    assert_eq!(
        history_texts(&alice, &room).await,
        history_texts(&bob, &room).await
    );
}

#[tokio::test]
async fn a_message_is_delivered_in_exactly_one_of_sixteen_policy_combinations() {
    let (a, b, alice, bob) = pair().await;
    room_with(&bob, &alice.id).await;
    let (admin_a, admin_b) = (a.admin().await, b.admin().await);
    let mut delivered = Vec::new();
    for bits in 0..16u8 {
        let on = |bit: u8| bits & (1 << bit) != 0;
        allow(&admin_a, on(0), &alice.id, on(1)).await;
        allow(&admin_b, on(2), &bob.id, on(3)).await;
        let text = format!("combination {bits}");
        // Alice (re)opens the direct room and writes; refusals at her end
        // are answers too. B's notice that bob is reachable again comes
        // through B's outbox: with everything on, alice tries until A has
        // heard it.
        let open_and_send = || async {
            match alice
                .create_room(pb::RoomKind::Direct, "", &[&bob.id])
                .await
            {
                Ok(room) => alice.send(&room.id, &text).await.map(|_| room.id),
                Err(e) => Err(e),
            }
        };
        let mut sent = open_and_send().await;
        let retry_until = tokio::time::Instant::now() + Duration::from_secs(20);
        while bits == 15 && sent.is_err() && tokio::time::Instant::now() < retry_until {
            tokio::time::sleep(Duration::from_millis(50)).await;
            sent = open_and_send().await;
        }
        let arrived = match &sent {
            Ok(room) => {
                let deadline = tokio::time::Instant::now()
                    + Duration::from_secs(if bits == 15 { 20 } else { 1 });
                loop {
                    if let Ok(history) = bob.history(room).await
                        && texts(&history).contains(&text)
                    {
                        break true;
                    }
                    if tokio::time::Instant::now() > deadline {
                        break false;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Err(_) => false,
        };
        if arrived {
            delivered.push(bits);
        }
    }
    assert_eq!(
        delivered,
        vec![15],
        "only with both companies and both members on"
    );
}

/// bob is taken out of a group hosted at alice's node (his admin took him
/// off the connected list), so bob's node holds the room with none of its
/// members in it and is relayed nothing while alice writes on. When alice
/// brings him back in, his node takes the room up again at that seq, and
/// everything from then on reaches him, none of what was written
/// without him.
#[tokio::test]
async fn a_member_brought_back_after_messages_without_them_receives_what_follows() {
    let (_a, b, alice, bob) = pair().await;
    let room = alice.group_room("Deal", &[bob.id.as_str()]).await.id;
    until(RELAY_DEADLINE, "bob's node holds the group", || async {
        members_of(&bob, &room).await.is_some()
    })
    .await;
    alice.send(&room, "before").await.unwrap();
    assert_eq!(until_texts(&bob, &room, 1).await, vec!["before"]);
    let admin_b = b.admin().await;
    allow(&admin_b, true, &bob.id, false).await;
    until(RELAY_DEADLINE, "alice's node takes bob out", || async {
        members_of(&alice, &room).await == Some(vec![alice.id.clone()])
    })
    .await;
    alice.send(&room, "while bob was away").await.unwrap();

    allow(&admin_b, true, &bob.id, true).await;
    let invite = || {
        let mut rooms = alice.client.rooms.clone();
        let (room, bob) = (room.clone(), bob.id.clone());
        async move {
            rooms
                .invite_members(pb::InviteMembersRequest {
                    room_id: room,
                    members: vec![bob],
                })
                .await
                .is_ok()
        }
    };
    // Until alice's node hears that bob may be reached again.
    until(RELAY_DEADLINE, "alice brings bob back", invite).await;
    alice.send(&room, "welcome back").await.unwrap();
    // bob's history is refused until his node hears he is back.
    until(
        RELAY_DEADLINE,
        "bob sees what follows his return",
        || async {
            bob.history(&room)
                .await
                .is_ok_and(|h| texts(&h).iter().any(|t| t == "welcome back"))
        },
    )
    .await;
    // What bob saw before he left stays his; what was written without him
    // never reached his node.
    assert_eq!(
        history_texts(&bob, &room).await,
        vec!["before", "welcome back"]
    );
    bob.send(&room, "thanks").await.unwrap();
    until(RELAY_DEADLINE, "alice sees bob's answer", || async {
        history_texts(&alice, &room)
            .await
            .contains(&"thanks".to_string())
    })
    .await;
}

/// Three companies, each with one member, in a group hosted at a.example.
async fn three_company_group() -> (TestNode, TestNode, TestNode, Member, Member, Member, String) {
    three_company_group_with("Trio", |_| {}).await
}

/// The same, with a room name and b.example's config adjusted.
async fn three_company_group_with(
    name: &str,
    adjust_b: impl Fn(&mut tenant_node::config::Config),
) -> (TestNode, TestNode, TestNode, Member, Member, Member, String) {
    let a = TestNode::start("a.example").await;
    let b = TestNode::start_with("b.example", adjust_b).await;
    let c = TestNode::start("c.example").await;
    peer_with(&a, &b).await;
    peer_with(&a, &c).await;
    let alice = a.member("alice").await;
    let bob = b.member("bob").await;
    let carol = c.member("carol").await;
    allow(&a.admin().await, true, &alice.id, true).await;
    allow(&b.admin().await, true, &bob.id, true).await;
    allow(&c.admin().await, true, &carol.id, true).await;
    befriend(&alice, &bob).await;
    befriend(&alice, &carol).await;
    let room = alice
        .group_room(name, &[bob.id.as_str(), carol.id.as_str()])
        .await
        .id;
    room_with(&bob, &carol.id).await;
    room_with(&carol, &bob.id).await;
    (a, b, c, alice, bob, carol, room)
}

async fn members_of(who: &Member, room: &str) -> Option<Vec<String>> {
    who.rooms()
        .await
        .into_iter()
        .find(|r| r.id == room)
        .map(|r| r.members)
}

#[tokio::test]
async fn group_members_who_stop_being_permitted_are_removed_for_everyone() {
    let (_a, b, c, alice, bob, carol, room) = three_company_group().await;
    external(&c.admin().await, false).await;
    assert_eq!(
        members_of(&carol, &room).await,
        None,
        "gone from carol's list at once"
    );
    for who in [&alice, &bob] {
        until(
            RELAY_DEADLINE,
            "carol leaves the room everywhere",
            || async {
                members_of(who, &room).await == Some(vec![alice.id.clone(), bob.id.clone()])
            },
        )
        .await;
    }
    let shown = alice.history(&room).await.unwrap();
    assert!(shown.iter().any(|e| {
        matches!(e.body, Some(pb::room_event::Body::Unknown(_))) && e.sender == carol.id
    }));
    b.admin()
        .await
        .external
        .clone()
        .remove_connected(pb::RemoveConnectedRequest {
            member_id: bob.id.clone(),
        })
        .await
        .unwrap();
    until(RELAY_DEADLINE, "bob leaves too", || async {
        members_of(&alice, &room).await == Some(vec![alice.id.clone()])
    })
    .await;
    alice.send(&room, "alone now").await.unwrap();
    assert_eq!(history_texts(&alice, &room).await, vec!["alone now"]);
}

#[tokio::test]
async fn a_group_master_on_another_node_runs_the_room_through_its_host() {
    let (_a, _b, _c, alice, bob, carol, room) = three_company_group().await;
    // The master leaves: the longest-standing member, bob of b.example,
    // takes over, and every node agrees.
    alice
        .client
        .rooms
        .clone()
        .leave_room(pb::LeaveRoomRequest {
            room_id: room.clone(),
        })
        .await
        .unwrap();
    for who in [&bob, &carol] {
        until(RELAY_DEADLINE, "bob is the master everywhere", || async {
            who.rooms()
                .await
                .iter()
                .any(|r| r.id == room && r.master == bob.id && r.members.len() == 2)
        })
        .await;
    }
    // carol is not the master: her own node refuses at once.
    check(
        carol
            .client
            .rooms
            .clone()
            .remove_member(pb::RemoveMemberRequest {
                room_id: room.clone(),
                member_id: bob.id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "only the group master",
    );
    // bob's node proposes the removal to the host, which applies it.
    let mut rooms = bob.client.rooms.clone();
    let renamed = rooms
        .rename_room(pb::RenameRoomRequest {
            room_id: room.clone(),
            name: "Duo".into(),
        })
        .await;
    renamed.unwrap();
    rooms
        .remove_member(pb::RemoveMemberRequest {
            room_id: room.clone(),
            member_id: carol.id.clone(),
        })
        .await
        .unwrap();
    until(RELAY_DEADLINE, "carol is removed everywhere", || async {
        members_of(&carol, &room).await.is_none()
            && members_of(&bob, &room).await == Some(vec![bob.id.clone()])
    })
    .await;
    let at_bob = bob
        .rooms()
        .await
        .into_iter()
        .find(|r| r.id == room)
        .unwrap();
    assert_eq!(at_bob.name, "Duo");
    assert_eq!(
        at_bob.host, "a.example",
        "the room stays hosted where it was made"
    );
}

#[tokio::test]
async fn a_peer_that_never_acknowledges_keeps_messages_queued_until_it_does() {
    // a.example gives up on an unanswered batch after 1 s instead of 10 s.
    let a = TestNode::start_with("a.example", |c| c.limits.relay_ack_timeout_ms = 1000).await;
    let (_a, b, alice, bob) = pair_of(a, TestNode::start("b.example").await).await;
    let room = room_with(&alice, &bob.id).await.id;
    room_with(&bob, &alice.id).await;
    alice.send(&room, "warm").await.unwrap();
    until_texts(&bob, &room, 1).await;
    // b.example hangs: its kernel still accepts, the node answers nothing,
    // so the open relay stream gets no acknowledgement.
    b.set_running(false);
    let mut sent = Vec::new();
    for i in 0..100 {
        sent.push(alice.send(&room, &format!("h{i:03}")).await.unwrap());
    }
    let (first, last) = (sent[0].clone(), sent[99].clone());
    // The relay gives up on an unanswered batch after its timeout and
    // tries again; nothing is marked delivered meanwhile.
    until(
        RELAY_DEADLINE,
        "the unanswered batch counts as an attempt",
        || async {
            let d = alice.delivery(&room, &first.event_id).await.unwrap();
            d.peers[0].attempts >= 1 && d.peers[0].reason.contains("acknowledgement")
        },
    )
    .await;
    let d = alice.delivery(&room, &first.event_id).await.unwrap();
    assert_eq!(state(&d), pb::DeliveryState::Queued);
    assert!(
        d.peers[0].attempts >= 1,
        "the unanswered batch counts as an attempt: {d:?}"
    );
    assert!(d.peers[0].reason.contains("acknowledgement"), "{d:?}");
    b.set_running(true);
    let got = until_texts(&bob, &room, 101).await;
    let expected: Vec<String> = std::iter::once("warm".to_string())
        .chain((0..100).map(|i| format!("h{i:03}")))
        .collect();
    assert_eq!(got, expected);
    until(RELAY_DEADLINE, "the last one is delivered", || async {
        state(&alice.delivery(&room, &last.event_id).await.unwrap()) == pb::DeliveryState::Delivered
    })
    .await;
}

#[tokio::test]
async fn unpeering_closes_the_queue_with_a_reason_and_stops_open_streams() {
    let (a, mut b, alice, bob) = pair().await;
    let room = room_with(&alice, &bob.id).await.id;
    room_with(&bob, &alice.id).await;
    b.terminate().await;
    let stuck = alice.send(&room, "never to arrive").await.unwrap();
    a.admin()
        .await
        .peering
        .clone()
        .remove_peer(pb::RemovePeerRequest {
            tenant: "b.example".into(),
        })
        .await
        .unwrap();
    until(RELAY_DEADLINE, "the queued message is refused", || async {
        state(&alice.delivery(&room, &stuck.event_id).await.unwrap()) == pb::DeliveryState::Refused
    })
    .await;
    let d = alice.delivery(&room, &stuck.event_id).await.unwrap();
    assert!(d.reason.contains("no longer a peer"), "{d:?}");
    // b.example still lists a.example and greets it as it starts; by the
    // time that greeting has failed, a.example has had its chance to send.
    let greetings_failed =
        |node: &TestNode| node.log().matches("peer not reachable at start-up").count();
    let failed_before = greetings_failed(&b);
    b.restart().await;
    let bob = b.login(&bob.id).await;
    eventually(
        || greetings_failed(&b) > failed_before,
        "b.example's greeting to a.example fails",
    )
    .await;
    assert!(
        !history_texts(&bob, &room)
            .await
            .contains(&"never to arrive".to_string())
    );
}

/// Sends `count` messages tagged `tag` from `who` in the background; the
/// texts its node acknowledged, in order.
#[tokio::test]
async fn killing_a_receivers_node_mid_burst_loses_nothing() {
    let (_a, mut b, alice, bob) = pair().await;
    let room = room_with(&alice, &bob.id).await.id;
    room_with(&bob, &alice.id).await;
    let sending = burst(&alice, &room, "r", 300);
    until(RELAY_DEADLINE, "bob has started receiving", || async {
        history_texts(&bob, &room).await.len() >= 20
    })
    .await;
    b.kill().await;
    let acknowledged = sending.await.unwrap();
    assert_eq!(
        acknowledged.len(),
        300,
        "the host acknowledges while b.example is down"
    );
    b.restart().await;
    let bob = b.login(&bob.id).await;
    assert_eq!(until_texts(&bob, &room, 300).await, acknowledged);
}

#[tokio::test]
async fn killing_the_senders_node_mid_burst_loses_nothing_it_acknowledged() {
    let (_a, mut b, alice, bob) = pair().await;
    let room = room_with(&bob, &alice.id).await.id;
    // bob's node is not the host: his messages wait in its outbox.
    let sending = burst(&bob, &room, "s", 300);
    until(RELAY_DEADLINE, "alice has started receiving", || async {
        history_texts(&alice, &room).await.len() >= 20
    })
    .await;
    b.kill().await;
    let acknowledged = sending.await.unwrap();
    assert!(
        acknowledged.len() >= 20 && acknowledged.len() < 300,
        "{} acknowledged",
        acknowledged.len()
    );
    b.restart().await;
    let bob = b.login(&bob.id).await;
    for who in [&alice, &bob] {
        let got = until_texts(who, &room, acknowledged.len()).await;
        // A message stored just before the kill, whose answer the kill cut
        // off, may follow: never acknowledged, but not lost either.
        assert_eq!(
            got[..acknowledged.len()],
            acknowledged[..],
            "every acknowledged message once, in order, at {}",
            who.id
        );
        assert!(
            got.len() <= acknowledged.len() + 1,
            "{} unacknowledged messages at {}",
            got.len() - acknowledged.len(),
            who.id
        );
    }
}

/// Sends that meet in one group commit are each judged on their own: a
/// member who blocked the other side is refused every time, while a
/// colleague's messages to the same peer, in the same transactions, all go
/// through, each once.
#[tokio::test]
async fn sends_committed_together_are_each_admitted_on_their_own() {
    let (a, _b, alice, bob) = pair().await;
    committed_together(&a, &alice, &bob).await;
}

/// The same with the sender's company on PostgreSQL, which commits sends in
/// groups too.
#[tokio::test]
async fn sends_committed_together_on_postgresql_are_each_admitted_on_their_own() {
    let db = crate::postgres::Database::create().await;
    let url = db.url();
    let a = TestNode::start_with("a.example", |c| c.storage.url = url.clone()).await;
    let (a, _b, alice, bob) = pair_of(a, TestNode::start("b.example").await).await;
    committed_together(&a, &alice, &bob).await;
    drop(a);
    db.drop_it().await;
}

async fn committed_together(a: &TestNode, alice: &Member, bob: &Member) {
    let carol = a.member("carol").await;
    allow(&a.admin().await, true, &carol.id, true).await;
    befriend(&carol, bob).await;
    let alice_room = room_with(alice, &bob.id).await;
    let carol_room = room_with(&carol, &bob.id).await;
    carol
        .client
        .contacts
        .clone()
        .block_user(pb::ContactRef {
            user_id: bob.id.clone(),
        })
        .await
        .unwrap();
    const EACH: usize = 40;
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..EACH {
        for (who, room) in [(alice, &alice_room.id), (&carol, &carol_room.id)] {
            let mut rooms = who.client.rooms.clone();
            let request = pb::SendMessageRequest {
                room_id: room.clone(),
                idempotency_key: format!("{}-{i}", who.id),
                text: format!("{} {i}", who.id),
                ..Default::default()
            };
            let sender = who.id.clone();
            sends.spawn(async move { (sender, rooms.send_message(request).await) });
        }
    }
    let (mut stored, mut refused) = (0, 0);
    while let Some(done) = sends.join_next().await {
        let (sender, result) = done.unwrap();
        if sender == alice.id {
            result.unwrap();
            stored += 1;
        } else {
            check(result, Code::FailedPrecondition, "you blocked");
            refused += 1;
        }
    }
    assert_eq!((stored, refused), (EACH, EACH));
    let seen = until_texts(bob, &alice_room.id, EACH).await;
    let distinct: std::collections::BTreeSet<&String> = seen.iter().collect();
    assert_eq!((seen.len(), distinct.len()), (EACH, EACH), "{seen:?}");
    assert!(history_texts(&carol, &carol_room.id).await.is_empty());
}

/// A newer node may send a kind of envelope this one does not know (a
/// payload field it was not built with): answered retry, so that it stays
/// queued at its sender, with everything after it; nothing is shown.
#[tokio::test]
async fn an_envelope_of_a_kind_this_node_does_not_know_waits_at_its_sender() {
    use prost::Message;
    let (a, b, alice, bob) = pair().await;
    let room = room_with(&alice, &bob.id).await.id;
    let from_b = support::bridge_client(&a, &b.tls_files().load_node().unwrap()).await;
    let proposal = |id: &str, text: &str| {
        envelope(
            id,
            "a.example",
            &room,
            0,
            support::wire::text(&bob.id, text),
        )
    };
    // The envelope of a newer kind: payload field 99, a message {1: 1}.
    let newer = ulid::Ulid::new().to_string();
    let mut unknown = fed::Envelope {
        payload: None,
        ..proposal(&newer, "")
    }
    .encode_to_vec();
    unknown.extend([0x9a, 0x06, 0x02, 0x08, 0x01]);
    let after = ulid::Ulid::new().to_string();
    let mut batch = Vec::new();
    for envelope in [unknown, proposal(&after, "after it").encode_to_vec()] {
        // EnvelopeBatch field 1, length-delimited.
        batch.push(0x0a);
        prost::encoding::encode_varint(envelope.len() as u64, &mut batch);
        batch.extend(envelope);
    }
    let acks = support::relay_raw(&from_b, batch).await;
    assert_eq!(acks.len(), 2, "{acks:?}");
    assert_eq!(acks[0].event_id, newer);
    assert!(acks[0].retry, "{:?}", acks[0]);
    assert!(
        acks[0]
            .refused
            .contains("unknown kind of payload (none set, or one this node does not know)"),
        "{:?}",
        acks[0]
    );
    assert!(acks[1].retry, "what follows waits too: {:?}", acks[1]);
    assert!(history_texts(&alice, &room).await.is_empty());
    until(RELAY_DEADLINE, "the node logs it", || async {
        a.log()
            .contains("relayed envelope of a kind this node does not know")
    })
    .await;

    // Once the sender moves on (here: the same envelope as this node
    // knows it), nothing was lost.
    let acks = relay_once(
        &mut support::bridge_client(&a, &b.tls_files().load_node().unwrap()).await,
        vec![proposal(&newer, "now known"), proposal(&after, "after it")],
    )
    .await;
    assert!(
        acks.iter().all(|a| a.refused.is_empty() && !a.retry),
        "{acks:?}"
    );
    assert_eq!(
        history_texts(&alice, &room).await,
        vec!["now known", "after it"]
    );
}

/// The room's name as `who` lists it.
async fn name_of(who: &Member, room: &str) -> Option<String> {
    who.rooms()
        .await
        .into_iter()
        .find(|r| r.id == room)
        .map(|r| r.name)
}

#[tokio::test]
async fn only_the_group_master_renames_a_room_with_another_company() {
    let (a, b, alice, bob) = pair().await;
    let room = alice.group_room("Launch", &[&bob.id]).await.id;
    room_with(&bob, &alice.id).await;
    until(RELAY_DEADLINE, "bob sees the room", || async {
        name_of(&bob, &room).await.as_deref() == Some("Launch")
    })
    .await;
    let refusal = format!(
        "only the group master, alice@a.example, can rename room {room}, which has members of other companies"
    );
    let rename = |who: &Member, name: &str| {
        let mut rooms = who.client.rooms.clone();
        let request = pb::RenameRoomRequest {
            room_id: room.clone(),
            name: name.into(),
        };
        async move { rooms.rename_room(request).await }
    };

    // bob's own node refuses at once, and queues nothing for the host.
    let refused = rename(&bob, "Mine").await.unwrap_err();
    assert_eq!(
        (refused.code(), refused.message()),
        (Code::PermissionDenied, refusal.as_str())
    );
    // Even to the name it has.
    let refused = rename(&bob, "Launch").await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // The host refuses the same rename when b.example's node proposes it.
    let mut from_b = support::bridge_client(&a, &b.tls_files().load_node().unwrap()).await;
    let acks = relay_once(
        &mut from_b,
        vec![envelope(
            &ulid::Ulid::new().to_string(),
            "a.example",
            &room,
            0,
            support::wire::renamed(&bob.id, "Mine", None),
        )],
    )
    .await;
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert!(
        acks[0].refused.contains(&refusal) && !acks[0].retry,
        "{acks:?}"
    );

    // Nothing was written anywhere: no event, the name as it was.
    let renamed = |events: &[pb::RoomEvent]| {
        events
            .iter()
            .filter(|e| matches!(e.body, Some(pb::room_event::Body::Renamed(_))))
            .count()
    };
    assert_eq!(renamed(&alice.history(&room).await.unwrap()), 0);
    assert_eq!(renamed(&bob.history(&room).await.unwrap()), 0);
    assert_eq!(name_of(&alice, &room).await.as_deref(), Some("Launch"));

    // The group master renames; both sides see it.
    let room_now = rename(&alice, "Launch 2").await.unwrap().into_inner();
    assert_eq!(room_now.name, "Launch 2");
    until(RELAY_DEADLINE, "bob sees the new name", || async {
        name_of(&bob, &room).await.as_deref() == Some("Launch 2")
    })
    .await;
    assert_eq!(renamed(&bob.history(&room).await.unwrap()), 1);
    assert_eq!(name_of(&alice, &room).await.as_deref(), Some("Launch 2"));
}

#[tokio::test]
async fn inviting_a_colleague_not_permitted_across_names_the_colleague() {
    let (a, _b, alice, bob) = pair().await;
    // carol is a member of a.example, not on its connected-members list.
    let carol = a.member("carol").await;
    let room = alice.group_room("Launch", &[&bob.id]).await.id;
    room_with(&bob, &alice.id).await;
    let expected =
        "carol@a.example is not on a.example's connected-members list for other companies";

    let invited = alice
        .client
        .rooms
        .clone()
        .invite_members(pb::InviteMembersRequest {
            room_id: room.clone(),
            members: vec![carol.id.clone()],
        })
        .await
        .unwrap_err();
    assert_eq!(
        (invited.code(), invited.message()),
        (Code::PermissionDenied, expected)
    );
    // Nor can she be put in a new room with bob.
    let created = alice
        .create_room(pb::RoomKind::Group, "Trio", &[&bob.id, &carol.id])
        .await
        .unwrap_err();
    assert_eq!(
        (created.code(), created.message()),
        (Code::PermissionDenied, expected)
    );
    // Nothing changed: carol is in no room, the room has its two.
    assert!(carol.rooms().await.is_empty());
    let mut members = members_of(&alice, &room).await.unwrap();
    members.sort();
    assert_eq!(members, vec![alice.id.clone(), bob.id.clone()]);
    // bob's node is told nothing either.
    assert_eq!(
        bob.rooms().await.len(),
        2,
        "the direct room and Launch only"
    );
}
