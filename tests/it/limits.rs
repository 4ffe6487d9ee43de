//! Attacks on both ports, against real nodes: slow clients (silent, a byte
//! at a time, silent after the preface), more connections than the cap,
//! oversized and deeply nested protobuf messages, and a huge header. Each
//! test asserts what the attacker sees, then that the node still serves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{self, Raw, TestNode, bridge_client, check, peer_with, text, until};
use tenant_node::client::Client;
use tenant_node::config::Config;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;
use tonic::transport::Channel;
use works_certs::{TenantCa, TenantId, Validity};
use works_proto::client::v1 as pb;

/// The deadline the tests configure for the HTTP/2 preface.
const PREFACE_MS: u64 = 500;
/// How long a test waits for the server to close a connection: the
/// configured deadline plus a generous margin for a loaded machine.
const CLOSE_WITHIN: Duration = Duration::from_secs(10);
/// How long a connection beyond the cap may stay open before we call it
/// refused "at once": far below the preface deadline those tests set.
const REFUSED_WITHIN: Duration = Duration::from_secs(5);
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: what a client sends right after the preface.
const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

/// One unary call with a hand-made request body.
async fn unary_raw(
    channel: Channel,
    path: &'static str,
    body: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("channel ready");
    grpc.unary(tonic::Request::new(body), path.parse().expect("path"), Raw)
        .await
        .map(tonic::Response::into_inner)
}

/// `depth` start-group tags of unknown field 15, then their end-group tags:
/// well-formed protobuf that is nested `depth` deep.
fn nested_groups(depth: usize) -> Vec<u8> {
    const START_GROUP_15: u8 = (15 << 3) | 3;
    const END_GROUP_15: u8 = (15 << 3) | 4;
    let mut body = vec![START_GROUP_15; depth];
    body.extend(std::iter::repeat_n(END_GROUP_15, depth));
    body
}

/// `depth` length-delimited unknown fields (number 15), each holding the
/// next: nested `depth` deep, but a decoder skips the outermost whole.
fn nested_length_delimited(depth: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for _ in 0..depth {
        let mut outer = vec![(15 << 3) | 2];
        prost::encoding::encode_varint(body.len() as u64, &mut outer);
        outer.extend_from_slice(&body);
        body = outer;
    }
    body
}

fn short_deadlines(config: &mut Config) {
    config.limits.preface_timeout_ms = PREFACE_MS;
}

fn api_addr(node: &TestNode) -> String {
    node.url.trim_start_matches("http://").to_string()
}

/// Reads (and discards whatever the server writes, e.g. its SETTINGS)
/// until the server closes the connection: end of file or a reset. Fails
/// the test if it is still open after `within`; returns how long it took.
async fn closed_within(stream: &mut (impl AsyncRead + Unpin), within: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server kept the connection open for {within:?}"
    );
    started.elapsed()
}

/// `closed_within`, and not before the preface deadline.
async fn closed_at_the_preface_deadline(stream: &mut (impl AsyncRead + Unpin)) {
    let took = closed_within(stream, CLOSE_WITHIN).await;
    assert!(
        took >= Duration::from_millis(PREFACE_MS - 100),
        "closed after {took:?}, before the deadline"
    );
}

/// A normal call still succeeds: log in as the admin and ask who that is.
async fn api_still_serves(node: &TestNode) {
    let admin = node.admin().await;
    let me = admin
        .auth
        .clone()
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("who am i")
        .into_inner();
    assert_eq!(me.id, node.admin_id);
}

fn log_has(node: &TestNode, fragments: &[&str]) -> bool {
    node.log()
        .lines()
        .map(without_colours)
        .any(|line| fragments.iter().all(|f| line.contains(f)))
}

/// A log line without its ANSI colour sequences (`ESC [ … m`).
fn without_colours(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Waits until one line of `node`'s log holds every fragment.
async fn logged(node: &TestNode, fragments: &[&str]) {
    let deadline = Instant::now() + CLOSE_WITHIN;
    while !log_has(node, fragments) {
        assert!(
            Instant::now() < deadline,
            "no log line with {fragments:?}; log:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn api_silent_connection_is_closed_at_the_preface_deadline() {
    let node = TestNode::start_with("acme.example", short_deadlines).await;
    let mut silent = TcpStream::connect(api_addr(&node)).await.unwrap();
    let peer = silent.local_addr().unwrap().to_string();
    closed_at_the_preface_deadline(&mut silent).await;
    logged(
        &node,
        &["no http/2 client preface", &peer, "server=\"api\""],
    )
    .await;
    api_still_serves(&node).await;
}

#[tokio::test]
async fn api_preface_one_byte_at_a_time_is_closed_at_the_deadline() {
    let node = TestNode::start_with("acme.example", short_deadlines).await;
    let stream = TcpStream::connect(api_addr(&node)).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let dripping = {
        let sent = sent.clone();
        tokio::spawn(async move {
            for byte in PREFACE {
                if write.write_all(&[*byte]).await.is_err() {
                    return;
                }
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // The slowness is the attack: one byte every 200 ms.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    closed_within(&mut read, CLOSE_WITHIN).await;
    let when_closed = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        when_closed < PREFACE.len(),
        "closed only after the whole preface ({when_closed} bytes)"
    );
    dripping.abort();
    logged(&node, &["no http/2 client preface", "received="]).await;
    api_still_serves(&node).await;
}

#[tokio::test]
async fn api_connection_silent_after_the_preface_is_closed_by_keepalive() {
    let node = TestNode::start_with("acme.example", |c| {
        c.limits.keepalive_interval_ms = 500;
        c.limits.keepalive_timeout_ms = 500;
    })
    .await;
    let mut stream = TcpStream::connect(api_addr(&node)).await.unwrap();
    stream.write_all(PREFACE).await.unwrap();
    stream.write_all(&EMPTY_SETTINGS).await.unwrap();
    // The server's pings go unanswered: it must give up on the connection.
    let took = closed_within(&mut stream, CLOSE_WITHIN).await;
    assert!(
        took >= Duration::from_millis(900),
        "closed after {took:?}, before a ping could time out"
    );
    api_still_serves(&node).await;
}

#[tokio::test]
async fn api_connections_beyond_the_cap_are_closed_at_once() {
    let node = TestNode::start_with("acme.example", |c| {
        c.limits.max_api_connections = 5;
        // Far longer than the test: a close can only come from the cap.
        c.limits.preface_timeout_ms = 60_000;
    })
    .await;
    // Five clients, one connection each, all served.
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(node.admin().await);
    }
    // A sixth connection is closed at once, before it sends anything.
    let mut sixth = TcpStream::connect(api_addr(&node)).await.unwrap();
    let sixth_addr = sixth.local_addr().unwrap().to_string();
    closed_within(&mut sixth, REFUSED_WITHIN).await;
    logged(
        &node,
        &["connection limit is reached", &sixth_addr, "limit=5"],
    )
    .await;
    // A real client over the cap sees its connection closed under its first
    // call: CANCELLED ("connection closed"), UNAVAILABLE when the close
    // arrives before the call is sent, or UNKNOWN "transport error" when
    // the close resets the connection under the call.
    if let Ok(client) = Client::connect(&node.url, None).await {
        let refused = client
            .auth
            .clone()
            .who_am_i(pb::WhoAmIRequest {})
            .await
            .unwrap_err();
        assert!(
            matches!(refused.code(), Code::Cancelled | Code::Unavailable)
                || (refused.code() == Code::Unknown
                    && refused.message().contains("transport error")),
            "{refused:?}"
        );
    }
    // The five are still served.
    for client in &clients {
        client
            .auth
            .clone()
            .who_am_i(pb::WhoAmIRequest {})
            .await
            .expect("a client within the cap is served");
    }
    // Closing one frees its slot for a newcomer.
    clients.pop();
    until(CLOSE_WITHIN, "a newcomer gets the freed slot", || async {
        match Client::connect(&node.url, None).await {
            Ok(client) => client
                .login(&node.admin_id, support::ADMIN_PASSWORD)
                .await
                .is_ok(),
            Err(_) => false,
        }
    })
    .await;
}

#[tokio::test]
async fn api_oversized_request_is_refused_and_nothing_is_stored() {
    let node = TestNode::start("acme.example").await;
    let alice = node.member("alice").await;
    let bob = node.member("bob").await;
    let room = alice.direct_room(&bob.id).await;
    let huge = "x".repeat(5 * 1024 * 1024);
    check(
        alice.send(&room.id, &huge).await,
        Code::OutOfRange,
        "decoded message length too large",
    );
    // A message stream (an upload) with one oversized chunk is refused too.
    let chunks = vec![
        pb::UploadChunk {
            room_id: room.id.clone(),
            name: "big.bin".into(),
            content_type: "application/octet-stream".into(),
            data: vec![7u8; 1024],
        },
        pb::UploadChunk {
            data: vec![7u8; 5 * 1024 * 1024],
            ..Default::default()
        },
    ];
    check(
        alice
            .client
            .rooms
            .clone()
            .upload_attachment(tokio_stream::iter(chunks))
            .await,
        Code::OutOfRange,
        "decoded message length too large",
    );
    let event = alice.send(&room.id, "still here").await.expect("send");
    let history = alice.history(&room.id).await.expect("history");
    assert!(
        history
            .iter()
            .all(|e| text(e).is_none_or(|t| t.len() < 1024)),
        "an oversized message was stored"
    );
    assert_eq!(
        history.last().map(|e| e.event_id.as_str()),
        Some(event.event_id.as_str())
    );
    api_still_serves(&node).await;
}

#[tokio::test]
async fn api_deeply_nested_request_is_refused_without_a_crash() {
    let node = TestNode::start("acme.example").await;
    let channel = Channel::from_shared(node.url.clone())
        .unwrap()
        .connect()
        .await
        .expect("connect");
    check(
        unary_raw(
            channel.clone(),
            "/works.client.v1.Auth/Login",
            nested_groups(10_000),
        )
        .await,
        Code::Internal,
        "recursion limit reached",
    );
    // Nested length-delimited fields are skipped whole, without recursion:
    // the request decodes as an empty login, which is refused as such.
    let empty_login = unary_raw(channel.clone(), "/works.client.v1.Auth/Login", Vec::new())
        .await
        .unwrap_err();
    let nested = unary_raw(
        channel,
        "/works.client.v1.Auth/Login",
        nested_length_delimited(10_000),
    )
    .await
    .unwrap_err();
    assert_eq!(nested.code(), empty_login.code(), "{nested:?}");
    assert_eq!(nested.message(), empty_login.message());
    api_still_serves(&node).await;
}

/// `who_am_i` with an `authorization` header of `size` bytes.
async fn who_am_i_with_header(node: &TestNode, size: usize) -> tonic::Status {
    let token = "a".repeat(size);
    let client = Client::connect(&node.url, Some(&token))
        .await
        .expect("connect");
    client
        .auth
        .clone()
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect_err("a header over the limit was accepted")
}

#[tokio::test]
async fn api_huge_header_is_refused() {
    let node = TestNode::start("acme.example").await;
    // Just over the 16 KiB limit: HTTP 431 on that stream, which gRPC
    // clients read as UNKNOWN.
    let over = who_am_i_with_header(&node, 20 * 1024).await;
    assert_eq!(over.code(), Code::Unknown, "{over:?}");
    assert!(over.message().contains("HTTP status code 431"), "{over:?}");
    // Far over it: the connection is closed with GOAWAY ENHANCE_YOUR_CALM,
    // which clients read as RESOURCE_EXHAUSTED.
    let far_over = who_am_i_with_header(&node, 64 * 1024).await;
    assert_eq!(far_over.code(), Code::ResourceExhausted, "{far_over:?}");
    assert!(
        far_over.message().contains("h2 protocol error"),
        "{far_over:?}"
    );
    // 1 MiB: the same GOAWAY, unless the client is still writing the
    // header when the connection closes (a broken pipe, UNKNOWN).
    let huge = who_am_i_with_header(&node, 1024 * 1024).await;
    assert!(
        matches!(huge.code(), Code::ResourceExhausted | Code::Unknown),
        "{huge:?}"
    );
    api_still_serves(&node).await;
}

/// A TLS connection to `node`'s bridge with a certificate of a CA of our
/// own: the handshake succeeds (trust is decided per call).
async fn bridge_tls(
    node: &TestNode,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tenant = TenantId::parse("stranger.example").unwrap();
    let validity = Validity::from_now(Duration::from_secs(3600));
    let cert = TenantCa::generate(&tenant, validity)
        .unwrap()
        .issue_node(&tenant, &[], validity)
        .unwrap();
    let identity = works_bridge::NodeIdentity::from_node_cert(&cert).unwrap();
    let target_ca = node.tls_files().load_ca().unwrap();
    let config =
        works_bridge::tls::client_config_pinned(&identity, &[target_ca.der().clone()]).unwrap();
    let name = rustls::pki_types::ServerName::try_from(node.tenant.clone()).unwrap();
    let tcp = TcpStream::connect(&node.bridge).await?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// `a` (peered with `b`) pings `b` over the bridge with its real certificate.
async fn bridge_still_serves(a: &TestNode, b: &TestNode) {
    let mut client = bridge_client(b, &a.tls_files().load_node().unwrap()).await;
    let report = client
        .ping(&TenantId::parse(&a.tenant).unwrap())
        .await
        .expect("ping");
    assert_eq!(report.tenant, b.tenant);
}

#[tokio::test]
async fn bridge_silent_connection_after_the_handshake_is_closed_at_the_preface_deadline() {
    let a = TestNode::start("a.example").await;
    let b = TestNode::start_with("b.example", short_deadlines).await;
    peer_with(&a, &b).await;
    let mut silent = bridge_tls(&b).await.expect("handshake");
    let peer = silent.get_ref().0.local_addr().unwrap().to_string();
    closed_at_the_preface_deadline(&mut silent).await;
    logged(
        &b,
        &["no http/2 client preface", &peer, "server=\"bridge\""],
    )
    .await;
    bridge_still_serves(&a, &b).await;
}

#[tokio::test]
async fn bridge_connections_beyond_the_cap_are_closed_at_once() {
    let a = TestNode::start("a.example").await;
    let b = TestNode::start_with("b.example", |c| {
        c.limits.max_bridge_connections = 3;
        c.limits.preface_timeout_ms = 60_000;
    })
    .await;
    // Three established TLS connections, holding every slot (b has no
    // peer yet, so nothing else connects to it).
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(bridge_tls(&b).await.expect("handshake within the cap"));
    }
    // A fourth is closed before its handshake can complete.
    let mut fourth = TcpStream::connect(&b.bridge).await.unwrap();
    let fourth_addr = fourth.local_addr().unwrap().to_string();
    closed_within(&mut fourth, REFUSED_WITHIN).await;
    assert!(
        bridge_tls(&b).await.is_err(),
        "a handshake beyond the cap succeeded"
    );
    logged(
        &b,
        &[
            "connection limit is reached",
            &fourth_addr,
            "server=\"bridge\"",
        ],
    )
    .await;
    // Closing them frees the slots: peering and a ping work.
    held.clear();
    until(CLOSE_WITHIN, "a slot is free again", || async {
        bridge_tls(&b).await.is_ok()
    })
    .await;
    peer_with(&a, &b).await;
    bridge_still_serves(&a, &b).await;
}

#[tokio::test]
async fn bridge_oversized_messages_are_refused() {
    let a = TestNode::start("a.example").await;
    let b = TestNode::start("b.example").await;
    peer_with(&a, &b).await;
    let mut client = bridge_client(&b, &a.tls_files().load_node().unwrap()).await;
    // A unary call.
    let mut ping = works_proto::federation::v1::PingRequest {
        from_tenant: a.tenant.clone(),
        sent_at_ms: 0,
    };
    ping.from_tenant.push_str(&" ".repeat(17 * 1024 * 1024));
    check(
        client.raw().ping(ping).await,
        Code::OutOfRange,
        "decoded message length too large",
    );
    // A relay batch: the stream ends with the precise status.
    let mut relay = client
        .open_relay(Duration::from_secs(10))
        .await
        .expect("relay");
    let envelope = works_proto::federation::v1::Envelope {
        event_id: ulid::Ulid::new().to_string(),
        host: b.tenant.clone(),
        room_id: ulid::Ulid::new().to_string(),
        host_seq: 1,
        at_ms: 0,
        payload: Some(support::wire::text(
            "bob@b.example",
            &"x".repeat(17 * 1024 * 1024),
        )),
    };
    match relay.send(vec![envelope]).await {
        Err(works_bridge::BridgeError::Refused(status)) => {
            assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
            assert!(
                status
                    .message()
                    .contains("decoded message length too large"),
                "{status:?}"
            );
        }
        other => panic!("expected OUT_OF_RANGE, got {other:?}"),
    }
    logged(&b, &["relay batch refused", "a.example"]).await;
    bridge_still_serves(&a, &b).await;
}

#[tokio::test]
async fn bridge_deeply_nested_ping_is_refused_without_a_crash() {
    let a = TestNode::start("a.example").await;
    let b = TestNode::start("b.example").await;
    peer_with(&a, &b).await;
    let client = bridge_client(&b, &a.tls_files().load_node().unwrap()).await;
    check(
        unary_raw(
            client.channel(),
            "/works.federation.v1.Bridge/Ping",
            nested_groups(10_000),
        )
        .await,
        Code::Internal,
        "recursion limit reached",
    );
    bridge_still_serves(&a, &b).await;
}

fn web_addr(node: &TestNode) -> String {
    node.web_url().trim_start_matches("http://").to_string()
}

#[tokio::test]
async fn web_silent_connection_is_closed_at_the_deadline() {
    let node = TestNode::start_with("acme.example", short_deadlines).await;
    let mut silent = TcpStream::connect(web_addr(&node)).await.unwrap();
    let peer = silent.local_addr().unwrap().to_string();
    closed_at_the_preface_deadline(&mut silent).await;
    logged(&node, &[&peer, "server=\"web\""]).await;
    api_still_serves(&node).await;
}

#[tokio::test]
async fn web_connections_beyond_the_cap_are_closed_at_once() {
    let node = TestNode::start_with("acme.example", |c| {
        c.limits.max_api_connections = 2;
        c.limits.preface_timeout_ms = 60_000;
    })
    .await;
    // Two browsers' connections, each with a request under way.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(web_addr(&node)).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(tcp);
    }
    let mut third = TcpStream::connect(web_addr(&node)).await.unwrap();
    let third_addr = third.local_addr().unwrap().to_string();
    closed_within(&mut third, REFUSED_WITHIN).await;
    logged(
        &node,
        &["connection limit is reached", &third_addr, "server=\"web\""],
    )
    .await;
    // The web port's cap is its own: the API port still serves.
    api_still_serves(&node).await;
    drop(held);
    // The held connections' permits come back once the node sees them
    // closed; until then a new one is still refused.
    until(CLOSE_WITHIN, "the web port serves again", || async {
        crate::support::web::try_http1(node.web_url(), "GET", "/", &[])
            .await
            .is_ok_and(|answer| answer.status == 200)
    })
    .await;
}

#[tokio::test]
async fn web_oversized_request_is_refused() {
    let node = TestNode::start("acme.example").await;
    let alice = node.member("alice").await;
    let bob = node.member("bob").await;
    let room = alice.direct_room(&bob.id).await;
    let token = node.web_login(&alice.id, support::PASSWORD).await;
    let refused = node
        .web_rooms()
        .send_message(crate::support::web::bearer(
            pb::SendMessageRequest {
                room_id: room.id.clone(),
                idempotency_key: "huge".into(),
                text: "x".repeat(5 * 1024 * 1024),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    // Over HTTP/1.1 the server answers before it has read the whole body
    // and closes the connection: the client sees OUT_OF_RANGE, or, when
    // it is still writing, the connection closed under it.
    assert!(
        (refused.code() == Code::OutOfRange
            && refused
                .message()
                .contains("decoded message length too large"))
            || (refused.code() == Code::Unknown && refused.message().contains("SendRequest")),
        "{refused:?}"
    );
    assert!(
        alice
            .history(&room.id)
            .await
            .unwrap()
            .iter()
            .all(|e| text(e).is_none()),
        "the oversized message was stored"
    );
    api_still_serves(&node).await;
}
