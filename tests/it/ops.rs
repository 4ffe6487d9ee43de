//! The operations port: health and readiness probes, Prometheus metrics
//! (read with the Prometheus client library's own parser), JSON logs, and
//! draining on SIGTERM.

use std::time::{Duration, Instant};

use crate::postgres::Database;
use crate::support::prometheus::{self, Sample, find, value};
use crate::support::web::{Answer, http1};
use crate::support::{PASSWORD, RELAY_DEADLINE, TestNode, pair, room_with, until};
use tenant_node::config::LogFormat;
use tonic::Code;
use works_proto::client::v1 as pb;

async fn get(node: &TestNode, path: &str) -> Answer {
    let ops = node.ops.as_deref().expect("the node serves an ops port");
    http1(ops, "GET", path, &[]).await
}

/// `/metrics`, parsed by `prometheus_client.parser`.
async fn scrape(node: &TestNode) -> Vec<Sample> {
    let answer = get(node, "/metrics").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(
        answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        answer.headers
    );
    prometheus::parse(&answer.text())
}

async fn queued_for(node: &TestNode, peer: &str) -> Option<f64> {
    value(
        &scrape(node).await,
        "works_outbox_queued",
        &[("peer", peer)],
    )
}

#[tokio::test]
async fn a_running_node_is_healthy_and_ready() {
    let node = TestNode::start("acme.example").await;
    let health = get(&node, "/healthz").await;
    assert_eq!((health.status, health.text().trim()), (200, "ok"));
    let ready = get(&node, "/readyz").await;
    assert_eq!(
        (ready.status, ready.text().trim()),
        (200, "ok"),
        "{}",
        ready.text()
    );
    assert_eq!(get(&node, "/nothing").await.status, 404);
    // The ops port reads only.
    let posted = http1(node.ops.as_deref().unwrap(), "POST", "/readyz", &[]).await;
    assert_eq!(posted.status, 405);
}

#[tokio::test]
async fn a_node_whose_postgresql_database_is_gone_is_not_ready() {
    let db = Database::create().await;
    let url = db.url();
    let node = TestNode::start_with("acme.example", |c| c.storage.url = url.clone()).await;
    let ready = get(&node, "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    let samples = scrape(&node).await;
    assert_eq!(
        find(&samples, "works_build_info", &[("backend", "postgres")]).len(),
        1,
        "{samples:#?}"
    );
    // The database disappears under the running node (its connections are
    // closed, and new ones find no database).
    db.drop_it().await;
    until(Duration::from_secs(20), "readyz answers 503", || async {
        get(&node, "/readyz").await.status == 503
    })
    .await;
    let ready = get(&node, "/readyz").await;
    assert!(
        ready.text().starts_with("database: "),
        "one line per failing check: {}",
        ready.text()
    );
    assert!(ready.text().contains("migrations: "), "{}", ready.text());
    // Alive all the same: the process still serves.
    assert_eq!(get(&node, "/healthz").await.status, 200);
}

#[tokio::test]
async fn metrics_show_calls_streams_storage_and_the_build() {
    let node = TestNode::start("acme.example").await;
    let alice = node.member("alice").await;
    let bob = node.member("bob").await;
    let room = alice.direct_room(&bob.id).await;
    alice.send(&room.id, "hello").await.unwrap();
    let missing = alice.send("01J00000000000000000000000", "nowhere").await;
    assert!(missing.is_err());
    let missing_code = missing.unwrap_err().code();
    let _watching = bob.watch(&[]).await.unwrap();
    let samples = scrape(&node).await;
    let ok = value(
        &samples,
        "works_api_requests_total",
        &[("method", "SendMessage"), ("code", "OK")],
    );
    assert_eq!(ok, Some(1.0), "{samples:#?}");
    let refused_code = match missing_code {
        Code::NotFound => "NOT_FOUND",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::PermissionDenied => "PERMISSION_DENIED",
        other => panic!("unexpected code {other:?}"),
    };
    assert_eq!(
        value(
            &samples,
            "works_api_requests_total",
            &[("method", "SendMessage"), ("code", refused_code)],
        ),
        Some(1.0),
        "{samples:#?}"
    );
    assert_eq!(
        value(
            &samples,
            "works_api_request_seconds_count",
            &[("method", "SendMessage")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &samples,
            "works_api_request_seconds_bucket",
            &[("method", "SendMessage"), ("le", "+Inf")]
        ),
        Some(2.0)
    );
    assert_eq!(
        value(&samples, "works_live_streams", &[]),
        Some(1.0),
        "{samples:#?}"
    );
    assert!(value(&samples, "works_storage_connections", &[("state", "open")]).unwrap() >= 1.0);
    assert!(value(&samples, "works_storage_connections", &[("state", "idle")]).is_some());
    let build = find(&samples, "works_build_info", &[("tenant", "acme.example")]);
    assert_eq!(build.len(), 1, "{samples:#?}");
    assert_eq!(build[0].value, 1.0);
    assert!(build[0].label("version").is_some_and(|v| !v.is_empty()));

    // The web port's grpc-web calls count too: the status of a success is
    // in the body's trailer frame, that of a refusal in the headers.
    let logins = |samples: &[Sample], code: &str| {
        value(
            samples,
            "works_api_requests_total",
            &[("method", "Login"), ("code", code)],
        )
        .unwrap_or(0.0)
    };
    let before = scrape(&node).await;
    node.web_login(&alice.id, PASSWORD).await;
    let refused = node
        .web_auth()
        .login(pb::LoginRequest {
            member_id: alice.id.clone(),
            password: "not the password".into(),
        })
        .await;
    assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);
    let after = scrape(&node).await;
    assert_eq!(logins(&after, "OK"), logins(&before, "OK") + 1.0);
    assert_eq!(
        logins(&after, "UNAUTHENTICATED"),
        logins(&before, "UNAUTHENTICATED") + 1.0
    );

    drop(_watching);
    until(
        Duration::from_secs(10),
        "the stream is counted closed",
        || async { value(&scrape(&node).await, "works_live_streams", &[]) == Some(0.0) },
    )
    .await;
}

#[tokio::test]
async fn the_queue_for_a_peer_that_is_down_grows_and_drains_when_it_is_back() {
    let (a, mut b, alice, bob) = pair().await;
    let room = room_with(&alice, &bob.id).await;
    alice.send(&room.id, "while both are up").await.unwrap();
    until(RELAY_DEADLINE, "nothing is queued for b", || async {
        queued_for(&a, "b.example").await == Some(0.0)
    })
    .await;
    b.kill().await;
    for i in 0..5 {
        alice
            .send(&room.id, &format!("while b is down {i}"))
            .await
            .unwrap();
    }
    until(
        RELAY_DEADLINE,
        "five envelopes are queued for b",
        || async { queued_for(&a, "b.example").await == Some(5.0) },
    )
    .await;
    let samples = scrape(&a).await;
    assert!(
        value(
            &samples,
            "works_outbox_oldest_queued_seconds",
            &[("peer", "b.example")]
        )
        .is_some_and(|age| age >= 0.0),
        "{samples:#?}"
    );
    let deliverer = find(&samples, "works_outbox_deliverer", &[("peer", "b.example")]);
    assert_eq!(deliverer.len(), 1, "{samples:#?}");
    assert!(deliverer[0].label("replica").is_some_and(|r| !r.is_empty()));
    assert!(
        value(
            &samples,
            "works_api_requests_total",
            &[("method", "SendMessage"), ("code", "OK")]
        )
        .is_some_and(|n| n >= 6.0),
        "{samples:#?}"
    );
    until(RELAY_DEADLINE, "a failed delivery is counted", || async {
        value(
            &scrape(&a).await,
            "works_outbox_failures_total",
            &[("peer", "b.example")],
        )
        .is_some_and(|n| n >= 1.0)
    })
    .await;

    b.restart().await;
    until(RELAY_DEADLINE, "the queue for b drains", || async {
        queued_for(&a, "b.example").await == Some(0.0)
    })
    .await;
    let stored = value(
        &scrape(&a).await,
        "works_outbox_delivered_total",
        &[("peer", "b.example"), ("outcome", "stored")],
    );
    assert!(stored.is_some_and(|n| n >= 6.0), "{stored:?}");
}

#[tokio::test]
async fn a_node_configured_for_json_logs_writes_json_lines() {
    let mut node = TestNode::start_with("acme.example", |c| c.log.format = LogFormat::Json).await;
    node.member("alice").await;
    let status = node.terminate().await;
    assert!(status.success(), "node exited with {status}");
    let log = node.log();
    let mut messages = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let entry: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\nlog:\n{log}"));
        assert!(entry["level"].is_string(), "no level: {line}");
        let message = entry["fields"]["message"]
            .as_str()
            .or_else(|| entry["message"].as_str())
            .unwrap_or_else(|| panic!("no message: {line}"));
        messages.push(message.to_string());
    }
    for expected in ["node started", "node stopped"] {
        assert!(
            messages.iter().any(|m| m == expected),
            "{expected:?} not logged:\n{log}"
        );
    }
}

#[tokio::test]
async fn sigterm_drains_in_stages_while_a_member_watches() {
    let mut node = TestNode::start("acme.example").await;
    let alice = node.member("alice").await;
    let bob = node.member("bob").await;
    let room = alice.direct_room(&bob.id).await;
    let mut watching = bob.watch(&[(&room.id, 0)]).await.unwrap();
    alice.send(&room.id, "before the stop").await.unwrap();
    watching.next().await;
    let asked = Instant::now();
    let status = node.terminate().await;
    let took = asked.elapsed();
    assert!(status.success(), "node exited with {status}");
    assert!(took < Duration::from_secs(8), "draining took {took:?}");
    let log = node.log();
    let mut at = 0;
    for stage in [
        "draining: shutdown signal received",
        "draining: no new connections accepted",
        "draining: calls in flight finished",
        "draining: outbox deliverers stopped",
        "draining: storage closed",
        "node stopped",
    ] {
        let found = log[at..]
            .find(stage)
            .unwrap_or_else(|| panic!("{stage:?} not logged in order:\n{log}"));
        at += found + stage.len();
    }
}
