//! One company on several replicas sharing the local PostgreSQL, peered
//! with a company on SQLite: live events reach a member's stream on every
//! replica, and each peer's queue is delivered by the one replica holding
//! its lease, taken over when that replica dies or stalls.

use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::postgres::{Database, OwnServer};
use tenant_node::config::Config;
use tonic::Code;
use works_proto::client::v1 as pb;
use works_proto::federation::v1 as fed;

use crate::support::bridge_client;
use crate::support::web::http1;
use crate::support::{
    Member, RELAY_DEADLINE, TestNode, pair_of, prometheus, room_with, text, until, until_texts,
};

/// a.example on three replicas of one PostgreSQL database, b.example on
/// SQLite, alice (on the first replica) and carol introduced.
async fn three_replicas() -> (Database, [TestNode; 3], TestNode, Member, Member) {
    let db = Database::create().await;
    let (replicas, b, alice, carol) = three_replicas_on(db.url(), |_| {}).await;
    (db, replicas, b, alice, carol)
}

/// The same on the database at `url`, a.example's config adjusted.
async fn three_replicas_on(
    url: String,
    adjust: impl Fn(&mut Config),
) -> ([TestNode; 3], TestNode, Member, Member) {
    let a1 = TestNode::start_with("a.example", |c| {
        c.storage.url = url.clone();
        adjust(c);
    })
    .await;
    let b = TestNode::start("b.example").await;
    let (a1, b, alice, carol) = pair_of(a1, b).await;
    let a2 = a1.replica().await;
    let a3 = a1.replica().await;
    ([a1, a2, a3], b, alice, carol)
}

/// The replica (by index) holding `queue`'s lease now.
async fn holder(db: &Database, replicas: &[TestNode], queue: &str) -> Option<usize> {
    let mut conn = PgConnection::connect(&db.url()).await.expect("connect");
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT holder, expires_at FROM deliverer_leases WHERE queue = $1")
            .bind(queue)
            .fetch_optional(&mut conn)
            .await
            .expect("read the lease");
    let (holder, expires_at) = row?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    if expires_at <= now {
        return None;
    }
    // The holder is "<host>-<pid>/<start>".
    let pid: u32 = holder.split('/').next()?.rsplit('-').next()?.parse().ok()?;
    replicas.iter().position(|r| r.pid() == Some(pid))
}

async fn until_held(
    db: &Database,
    replicas: &[TestNode],
    queue: &str,
    not: Option<usize>,
) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(i) = holder(db, replicas, queue).await
            && Some(i) != not
        {
            return i;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no replica took {queue}'s lease"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What `replica` delivered to `peer`, as its `/metrics` says (read with
/// the Prometheus client library's parser).
async fn delivered_to(replica: &TestNode, peer: &str) -> f64 {
    let text = http1(
        replica.ops.as_deref().expect("an ops port"),
        "GET",
        "/metrics",
        &[],
    )
    .await
    .text();
    let samples = prometheus::parse(&text);
    prometheus::value(
        &samples,
        "works_outbox_delivered_total",
        &[("peer", peer), ("outcome", "stored")],
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn a_member_watching_on_one_replica_sees_what_the_others_commit() {
    let (db, replicas, _b, alice, carol) = three_replicas().await;
    let room = room_with(&alice, &carol.id).await;
    let on2 = replicas[1].login(&alice.id).await;
    let on3 = replicas[2].login(&alice.id).await;
    let mut watch = on3
        .watch(&[(&room.id, room.last_seq)])
        .await
        .expect("watch");
    for i in 0..10 {
        on2.send(&room.id, &format!("from replica 2: {i}"))
            .await
            .expect("send");
        carol
            .send(&room.id, &format!("from carol: {i}"))
            .await
            .expect("send");
    }
    let events = watch.take(20).await;
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, no gap, once: {seqs:?}"
    );
    let texts: Vec<&str> = events.iter().filter_map(text).collect();
    for i in 0..10 {
        assert!(
            texts.contains(&format!("from replica 2: {i}").as_str()),
            "{texts:?}"
        );
        assert!(
            texts.contains(&format!("from carol: {i}").as_str()),
            "{texts:?}"
        );
    }
    watch.assert_quiet(Duration::from_millis(500)).await;
    // Carol got everything sent through replica 2, once, and one replica
    // alone delivered to her company: the one holding its lease.
    let got = until_texts(&carol, &room.id, 20).await;
    assert_eq!(got.len(), 20, "{got:?}");
    let holder = until_held(&db, &replicas, "b.example", None).await;
    for (i, replica) in replicas.iter().enumerate() {
        let delivered = delivered_to(replica, "b.example").await;
        if i == holder {
            assert!(
                delivered >= 10.0,
                "replica {i} holds the lease: {delivered}"
            );
        } else {
            assert_eq!(delivered, 0.0, "replica {i} does not hold the lease");
        }
    }
    drop(replicas);
    db.drop_it().await;
}

/// How many of `queues` each replica holds, once every queue is held and
/// the counts are `want` (in any order of replicas).
async fn until_spread(db: &Database, replicas: &[TestNode], queues: &[&str], want: &[usize]) {
    let mut want = want.to_vec();
    want.sort_unstable();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut counts = vec![0; replicas.len()];
        let mut all_held = true;
        for queue in queues {
            match holder(db, replicas, queue).await {
                Some(i) => counts[i] += 1,
                None => all_held = false,
            }
        }
        let mut sorted = counts.clone();
        sorted.sort_unstable();
        if all_held && sorted == want {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            let mut conn = PgConnection::connect(&db.url()).await.expect("connect");
            let leases: Vec<(String, String, i64, i64)> =
                sqlx::query_as("SELECT queue, holder, epoch, expires_at FROM deliverer_leases")
                    .fetch_all(&mut conn)
                    .await
                    .expect("read the leases");
            let pids: Vec<_> = replicas.iter().map(|r| r.pid()).collect();
            panic!(
                "the queues' leases never spread as {want:?}: {counts:?} (all held: \
                 {all_held}); replicas {pids:?}, leases {leases:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Three peers' queues over three replicas: one each. When one replica
/// dies, the two left share its queue; when it comes back, one of them
/// gives a queue up to it.
#[tokio::test]
async fn the_peers_queues_spread_over_the_replicas() {
    let (db, mut replicas, _b, alice, carol) = three_replicas().await;
    let room = room_with(&alice, &carol.id).await;
    alice.send(&room.id, "to b").await.expect("send");
    let mut others = Vec::new();
    for (tenant, name) in [("c.example", "dan"), ("d.example", "erin")] {
        let node = TestNode::start(tenant).await;
        let member = node.member(name).await;
        works_tests::scenario::introduce(
            &alice.side(&replicas[0].admin().await),
            &member.side(&node.admin().await),
        )
        .await
        .expect("introduce");
        let room = room_with(&alice, &member.id).await;
        alice
            .send(&room.id, &format!("to {tenant}"))
            .await
            .expect("send");
        others.push((node, member));
    }
    let queues = ["b.example", "c.example", "d.example"];
    until_spread(&db, &replicas, &queues, &[1, 1, 1]).await;
    replicas[0].kill().await;
    until_spread(&db, &replicas, &queues, &[0, 1, 2]).await;
    replicas[0].restart().await;
    until_spread(&db, &replicas, &queues, &[1, 1, 1]).await;
    // Delivery goes on wherever each queue went.
    for (node, member) in &others {
        let room = room_with(&alice, &member.id).await;
        alice.send(&room.id, "after").await.expect("send");
        let got = until_texts(member, &room.id, 2).await;
        assert_eq!(got[1], "after", "{} got it", node.tenant);
    }
    drop(replicas);
    db.drop_it().await;
}

#[tokio::test]
async fn a_peers_queue_moves_to_another_replica_when_its_holder_dies() {
    let (db, mut replicas, _b, alice, carol) = three_replicas().await;
    let room = room_with(&alice, &carol.id).await;
    alice.send(&room.id, "warm-up").await.expect("send");
    let first = until_held(&db, &replicas, "b.example", None).await;
    // Send from a replica that does not deliver, and kill the one that does
    // mid-burst.
    let sender_at = (first + 1) % 3;
    let sender = replicas[sender_at].login(&alice.id).await;
    let mut sent = Vec::new();
    for i in 0..150 {
        if i == 50 {
            replicas[first].kill().await;
        }
        sender
            .send(&room.id, &format!("burst {i}"))
            .await
            .expect("send");
        sent.push(format!("burst {i}"));
    }
    let next = until_held(&db, &replicas, "b.example", Some(first)).await;
    assert_ne!(next, first);
    let got = until_texts(&carol, &room.id, 151).await;
    let want: Vec<String> = std::iter::once("warm-up".to_string()).chain(sent).collect();
    assert_eq!(got, want, "every acknowledged message once, in room order");
    drop(replicas);
    db.drop_it().await;
}

#[tokio::test]
async fn a_stalled_holder_loses_its_lease_and_cannot_acknowledge() {
    let (db, replicas, _b, alice, carol) = three_replicas().await;
    let room = room_with(&alice, &carol.id).await;
    alice.send(&room.id, "before").await.expect("send");
    let first = until_held(&db, &replicas, "b.example", None).await;
    replicas[first].set_running(false);
    let sender = replicas[(first + 1) % 3].login(&alice.id).await;
    for i in 0..20 {
        sender
            .send(&room.id, &format!("while stalled {i}"))
            .await
            .expect("send");
    }
    let next = until_held(&db, &replicas, "b.example", Some(first)).await;
    until_texts(&carol, &room.id, 21).await;
    // Woken, the old holder finds its lease gone and delivers nothing twice.
    replicas[first].set_running(true);
    for i in 0..5 {
        sender
            .send(&room.id, &format!("after {i}"))
            .await
            .expect("send");
    }
    let got = until_texts(&carol, &room.id, 26).await;
    assert_eq!(got.len(), 26, "{got:?}");
    let mut unique = got.clone();
    unique.dedup();
    assert_eq!(unique.len(), 26, "nothing doubled: {got:?}");
    assert_eq!(holder(&db, &replicas, "b.example").await, Some(next));
    until(RELAY_DEADLINE, "the old holder stands by", || async {
        replicas[first]
            .log()
            .contains("another replica holds the queue now")
            || replicas[first].log().contains("the lease was lost")
    })
    .await;
    drop(replicas);
    db.drop_it().await;
}

/// Every replica restarted in turn (SIGTERM, then started again) while a
/// member sends through whichever replicas are up, sending again by the
/// same idempotency key when a call fails: nothing lost, nothing doubled.
#[tokio::test]
async fn a_rolling_restart_under_load_loses_and_doubles_nothing() {
    let (db, replicas, _b, alice, carol) = three_replicas().await;
    let room = room_with(&alice, &carol.id).await;
    let mut clients = Vec::new();
    for r in &replicas {
        clients.push(r.login(&alice.id).await);
    }
    let replicas = std::sync::Arc::new(tokio::sync::Mutex::new(replicas));
    let total = 120;
    let sending = {
        let room = room.id.clone();
        tokio::spawn(async move {
            for i in 0..total {
                let key = format!("rolling-{i}");
                let text = format!("rolling {i}");
                let mut attempt = 0;
                loop {
                    let client = &clients[(i + attempt) % clients.len()];
                    match client.send_keyed(&room, &key, &text).await {
                        Ok(_) => break,
                        Err(_) if attempt < 60 => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(status) => panic!("message {i} never went through: {status:?}"),
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        replicas.lock().await[i].restart_gracefully().await;
    }
    sending.await.expect("the sender");
    let got = until_texts(&carol, &room.id, total).await;
    let want: Vec<String> = (0..total).map(|i| format!("rolling {i}")).collect();
    assert_eq!(got, want, "every message once, in order");
    drop(replicas);
    db.drop_it().await;
}

/// A notice stored through one replica reaches the member's stream on
/// another, and a suspension made through one ends their streams on all.
#[tokio::test]
async fn notices_and_suspensions_reach_streams_on_every_replica() {
    let (db, replicas, _b, _alice, _carol) = three_replicas().await;
    let bob = replicas[0].member("bob").await;
    let bob_on3 = replicas[2].login(&bob.id).await;
    let mut watch = bob_on3.watch(&[]).await.expect("watch");
    let admin_on2 = replicas[1].admin().await;
    admin_on2
        .external
        .clone()
        .add_connected(works_proto::client::v1::AddConnectedRequest {
            member_id: bob.id.clone(),
        })
        .await
        .expect("connect bob");
    let notice = watch.next_notice().await;
    assert_eq!(notice.kind, "external_granted");
    admin_on2
        .admin
        .clone()
        .suspend_member(works_proto::client::v1::SuspendMemberRequest {
            member_id: bob.id.clone(),
        })
        .await
        .expect("suspend bob");
    let ended = tokio::time::timeout(crate::support::EVENT_DEADLINE, async {
        loop {
            match watch.0.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the stream ends");
    let status = ended.expect_err("ended with a status");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    drop(replicas);
    db.drop_it().await;
}

/// A peer knows the company at several bridge endpoints (its invitation
/// carries the list): with the first replica gone, it relays in through
/// the third, and a member watching on the second sees it live.
#[tokio::test]
async fn a_peer_fails_over_to_another_replicas_bridge() {
    let db = Database::create().await;
    let url = db.url();
    let mut a1 = TestNode::start_with("a.example", |c| c.storage.url = url.clone()).await;
    let a2 = a1.replica().await;
    let a3 = a1.replica().await;
    let endpoints = format!("{}, {}", a1.bridge, a3.bridge);
    a1.edit_config(|c| c.bridge.advertise = Some(endpoints.clone()));
    a1.restart().await;
    let b = TestNode::start("b.example").await;
    let (mut a1, _b, alice, carol) = pair_of(a1, b).await;
    let room = room_with(&alice, &carol.id).await;
    room_with(&carol, &alice.id).await;
    carol
        .send(&room.id, "through the first")
        .await
        .expect("send");
    let seen = until_texts(&alice, &room.id, 1).await;
    assert_eq!(seen, ["through the first"]);
    let on2 = a2.login(&alice.id).await;
    let last = on2
        .history(&room.id)
        .await
        .expect("history")
        .last()
        .map_or(0, |e| e.seq);
    let mut watch = on2.watch(&[(&room.id, last)]).await.expect("watch");
    a1.kill().await;
    for i in 0..5 {
        carol
            .send(&room.id, &format!("through the third {i}"))
            .await
            .expect("send");
    }
    let events = watch.take(5).await;
    let texts: Vec<&str> = events.iter().filter_map(text).collect();
    let want: Vec<String> = (0..5).map(|i| format!("through the third {i}")).collect();
    assert_eq!(texts, want);
    drop((a2, a3));
    db.drop_it().await;
}

/// PostgreSQL restarted twice while a member sends (a server of the
/// test's own): the replicas reconnect by themselves, report ready again,
/// and every message arrives once, in order, at the peer and on a stream
/// on another replica, which waits the restarts out rather than ending.
#[tokio::test]
async fn the_replicas_recover_when_postgresql_restarts() {
    let mut server = OwnServer::start().await;
    let (replicas, _b, alice, carol) = three_replicas_on(server.url(), |_| {}).await;
    let room = room_with(&alice, &carol.id).await;
    let on2 = replicas[1].login(&alice.id).await;
    let on3 = replicas[2].login(&alice.id).await;
    let mut watch = on3
        .watch(&[(&room.id, room.last_seq)])
        .await
        .expect("watch");
    let total = 60;
    for i in 0..total {
        if i == 20 || i == 40 {
            server.restart().await;
        }
        let key = format!("restart-{i}");
        let text = format!("restart {i}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        // A call that met the restart is sent again by its key.
        while on2.send_keyed(&room.id, &key, &text).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "message {i} never went through"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let want: Vec<String> = (0..total).map(|i| format!("restart {i}")).collect();
    let got = until_texts(&carol, &room.id, total).await;
    assert_eq!(got, want);
    let mut seen = Vec::new();
    while seen.len() < total {
        let event = watch.next().await;
        if let Some(t) = text(&event) {
            seen.push(t.to_string());
        }
    }
    assert_eq!(seen, want, "live on another replica, once each, in order");
    for replica in &replicas {
        let ops = replica.ops.as_deref().expect("an ops port");
        until(RELAY_DEADLINE, "every replica ready again", || async {
            http1(ops, "GET", "/readyz", &[]).await.status == 200
        })
        .await;
    }
    drop(replicas);
}

/// A peer's lookups sent at once to all three replicas' bridges: the
/// company's limit holds exactly (the count and the record go one at a
/// time across replicas), and every refusal says why.
#[tokio::test]
async fn a_peers_arrivals_are_limited_exactly_across_replicas() {
    let db = Database::create().await;
    let (replicas, b, alice, _carol) = three_replicas_on(db.url(), |c| {
        c.limits.incoming_lookups_per_peer_hour = 10;
        c.limits.incoming_lookups_per_member_hour = 100;
    })
    .await;
    let cert = b.tls_files().load_node().unwrap();
    let mut calls = Vec::new();
    for (r, replica) in replicas.iter().enumerate() {
        let mut client = bridge_client(replica, &cert).await;
        for i in 0..10 {
            let mut raw = client.raw().clone();
            let request = fed::LookupUserRequest {
                requester: format!("fake{r}-{i}@b.example"),
                user: alice.id.clone(),
            };
            calls.push(tokio::spawn(async move { raw.lookup_user(request).await }));
        }
    }
    let (mut answered, mut refused) = (0, 0);
    for call in calls {
        match call.await.expect("a call") {
            Ok(_) => answered += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(
                    status
                        .message()
                        .contains("members of b.example already looked up 10 users this hour"),
                    "{status:?}"
                );
                refused += 1;
            }
        }
    }
    assert_eq!((answered, refused), (10, 20));
    drop(replicas);
    db.drop_it().await;
}

/// What must hold whichever replica a call reaches, at once: sends through
/// all three replicas to one room get one dense sequence; retries of one
/// send by its key, spread over the replicas, store it once; and a peering
/// invitation accepted by two companies at the same moment peers one.
#[tokio::test]
async fn order_keys_and_one_time_invitations_hold_across_replicas() {
    let (db, replicas, _b, alice, carol) = three_replicas().await;
    let room = room_with(&alice, &carol.id).await;
    let mut senders = Vec::new();
    for replica in &replicas {
        senders.push(replica.login(&alice.id).await);
    }
    let mut sends = tokio::task::JoinSet::new();
    for (r, sender) in senders.iter().enumerate() {
        for i in 0..10 {
            let mut rooms = sender.client.rooms.clone();
            let request = pb::SendMessageRequest {
                room_id: room.id.clone(),
                idempotency_key: format!("r{r}-{i}"),
                text: format!("r{r}-{i}"),
                ..Default::default()
            };
            sends.spawn(async move { rooms.send_message(request).await });
        }
        for _ in 0..4 {
            let mut rooms = sender.client.rooms.clone();
            let request = pb::SendMessageRequest {
                room_id: room.id.clone(),
                idempotency_key: "the same send".into(),
                text: "retried".into(),
                ..Default::default()
            };
            sends.spawn(async move { rooms.send_message(request).await });
        }
    }
    let mut retried = std::collections::BTreeSet::new();
    while let Some(done) = sends.join_next().await {
        let sent = done.expect("a call").expect("stored").into_inner();
        let event = sent.event.expect("the event");
        if text(&event) == Some("retried") {
            retried.insert(event.event_id);
        }
    }
    assert_eq!(retried.len(), 1, "one event for one key: {retried:?}");
    let history = alice.history(&room.id).await.expect("history");
    let seqs: Vec<u64> = history.iter().map(|e| e.seq).collect();
    let first = seqs[0];
    assert_eq!(
        seqs,
        (first..first + seqs.len() as u64).collect::<Vec<_>>(),
        "one dense sequence"
    );
    let texts: Vec<&str> = history.iter().filter_map(text).collect();
    assert_eq!(texts.len(), 31, "{texts:?}");
    assert_eq!(texts.iter().filter(|t| **t == "retried").count(), 1);

    // One invitation, made through replica 1, accepted by two companies at once.
    let token = replicas[0]
        .admin()
        .await
        .peering
        .clone()
        .invite_peer(pb::InvitePeerRequest::default())
        .await
        .expect("invite")
        .into_inner()
        .token;
    let c = TestNode::start("c.example").await;
    let d = TestNode::start("d.example").await;
    let mut accepts = Vec::new();
    for node in [&c, &d] {
        let mut peering = node.admin().await.peering.clone();
        let token = token.clone();
        accepts.push(tokio::spawn(async move {
            peering.accept_peer(pb::AcceptPeerRequest { token }).await
        }));
    }
    let mut outcomes = Vec::new();
    for accept in accepts {
        outcomes.push(accept.await.expect("a call"));
    }
    let accepted = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(accepted, 1, "{outcomes:?}");
    let refused = outcomes
        .iter()
        .find_map(|o| o.as_ref().err())
        .expect("one refused");
    assert!(
        refused
            .message()
            .contains("this invitation was already used"),
        "{refused:?}"
    );
    drop(replicas);
    db.drop_it().await;
}
