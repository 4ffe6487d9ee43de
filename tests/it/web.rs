//! The web port: the embedded browser app with its security headers, the
//! client API through grpc-web over HTTP/1.1 (unary and server streaming),
//! the upload in unary parts, and the port turned off.

use tonic::Code;
use works_proto::client::v1 as pb;

use crate::support::web::{bearer, http1};
use crate::support::{self, TestNode, check, text};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; manifest-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The headers every static answer carries.
#[track_caller]
fn assert_secure(answer: &support::web::Answer) {
    assert_eq!(answer.header("content-security-policy"), Some(CSP));
    assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(answer.header("referrer-policy"), Some("no-referrer"));
}

#[tokio::test]
async fn the_app_is_served_with_a_strict_policy_and_the_app_routes_get_index_html() {
    let node = TestNode::start("acme.example").await;
    let web = node.web_url();
    let index = http1(web, "GET", "/", &[]).await;
    assert_eq!(index.status, 200, "{index:?}");
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(index.header("cache-control"), Some("no-cache"));
    assert_secure(&index);
    assert!(index.text().contains("<title>"), "{}", index.text());
    // Nothing the page loads may come from outside the node.
    for outside in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(!index.text().contains(outside), "{}", index.text());
    }

    // A route of the app (the browser reloads on it) is the same page.
    let route = http1(web, "GET", "/rooms/01JZ0000000000000000000001?x=1", &[]).await;
    assert_eq!(route.status, 200);
    assert_eq!(route.body, index.body);
    assert_eq!(route.header("cache-control"), Some("no-cache"));
    assert_secure(&route);
    let named = http1(web, "GET", "/index.html", &[]).await;
    assert_eq!(named.body, index.body);

    // A missing file is not HTML served as a script.
    let missing = http1(web, "GET", "/assets/missing-0000.js", &[]).await;
    assert_eq!(missing.status, 404);
    assert_secure(&missing);

    let head = http1(web, "HEAD", "/", &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_secure(&head);

    let post = http1(web, "POST", "/", &[("content-length", "0")]).await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    assert_secure(&post);

    // A gRPC request to a method no service has is UNIMPLEMENTED, not the
    // page: over grpc-web (HTTP/1.1) and native gRPC (HTTP/2) alike.
    for content_type in ["application/grpc-web+proto", "application/grpc"] {
        let unknown = http1(
            web,
            "POST",
            "/works.client.v1.Nowhere/Nothing",
            &[("content-type", content_type), ("content-length", "0")],
        )
        .await;
        assert_eq!(unknown.status, 200, "{unknown:?}");
        assert_eq!(unknown.header("grpc-status"), Some("12"), "{unknown:?}");
        assert!(unknown.body.is_empty(), "{}", unknown.text());
    }
    let mut grpc = tonic::client::Grpc::new(
        tonic::transport::Channel::from_shared(web.to_string())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    grpc.ready().await.unwrap();
    let unknown = grpc
        .unary(
            tonic::Request::new(Vec::new()),
            "/works.client.v1.Rooms/Nothing".parse().unwrap(),
            support::Raw,
        )
        .await;
    check(unknown, Code::Unimplemented, "");
    assert!(node.log().contains("grpc request for an unknown method"));
}

#[tokio::test]
async fn grpc_web_carries_unary_calls_and_live_streams_beside_the_native_api() {
    let node = TestNode::start("acme.example").await;
    let alice = node.member("alice").await;
    let bob = node.member("bob").await;
    let room = alice.direct_room(&bob.id).await;

    // Bob uses the browser: login and WhoAmI over grpc-web.
    let token = node.web_login(&bob.id, support::PASSWORD).await;
    let me = node
        .web_auth()
        .who_am_i(bearer(pb::WhoAmIRequest {}, &token))
        .await
        .expect("whoami over grpc-web")
        .into_inner();
    assert_eq!(me.id, bob.id);
    check(
        node.web_auth().who_am_i(pb::WhoAmIRequest {}).await,
        Code::Unauthenticated,
        "missing authorization",
    );

    // Bob's live stream over grpc-web sees what Alice sends over the
    // native API port.
    let mut watch = node
        .web_rooms()
        .watch(bearer(
            pb::WatchRequest {
                cursors: vec![pb::RoomCursor {
                    room_id: room.id.clone(),
                    seq: room.last_seq,
                }],
                room_id: String::new(),
            },
            &token,
        ))
        .await
        .expect("watch over grpc-web");
    let sent = alice.send(&room.id, "hello browser").await.expect("send");
    let event = loop {
        let item = tokio::time::timeout(support::EVENT_DEADLINE, watch.get_mut().message())
            .await
            .expect("an event in time")
            .expect("stream ok")
            .expect("stream open");
        if let Some(pb::watch_event::Kind::RoomEvent(e)) = item.kind
            && e.event_id == sent.event_id
        {
            break e;
        }
    };
    assert_eq!(text(&event), Some("hello browser"));

    // And the other way: a send over grpc-web, seen on the native port.
    let reply = node
        .web_rooms()
        .send_message(bearer(
            pb::SendMessageRequest {
                room_id: room.id.clone(),
                idempotency_key: "web-1".into(),
                text: "hello native".into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("send over grpc-web")
        .into_inner();
    let history = alice.history(&room.id).await.expect("history");
    assert_eq!(
        history.last().map(|e| e.event_id.clone()),
        reply.event.map(|e| e.event_id)
    );
}

fn part(upload_id: &str, offset: u64, data: &[u8], last: bool) -> pb::UploadPartRequest {
    pb::UploadPartRequest {
        upload_id: upload_id.into(),
        offset,
        data: data.to_vec(),
        last,
        ..Default::default()
    }
}

fn first(room: &str, size: u64) -> pb::UploadPartRequest {
    pb::UploadPartRequest {
        room_id: room.into(),
        name: "plan.bin".into(),
        content_type: "application/octet-stream".into(),
        size,
        ..Default::default()
    }
}

#[tokio::test]
async fn an_upload_in_parts_downloads_byte_identical_and_bad_parts_are_refused() {
    let node = TestNode::start_with("acme.example", |c| {
        c.limits.max_attachment_bytes = 1024 * 1024;
    })
    .await;
    let alice = node.member("alice").await;
    let bob = node.member("bob").await;
    let carol = node.member("carol").await;
    let room = alice.direct_room(&bob.id).await;
    let token = node.web_login(&alice.id, support::PASSWORD).await;
    let mut rooms = node.web_rooms();
    let file: Vec<u8> = (0..600_000u32).map(|i| (i * 7 % 251) as u8).collect();
    const PART: usize = 256 * 1024;

    let started = rooms
        .upload_part(bearer(first(&room.id, file.len() as u64), &token))
        .await
        .expect("first part")
        .into_inner();
    let id = started.upload_id.clone();
    assert_eq!(started.received, 0);
    assert!(started.attachment.is_none());
    let mut offset = 0;
    for chunk in file.chunks(PART) {
        let last = offset + chunk.len() == file.len();
        let answer = rooms
            .upload_part(bearer(part(&id, offset as u64, chunk, last), &token))
            .await
            .expect("part")
            .into_inner();
        offset += chunk.len();
        assert_eq!(answer.received, offset as u64);
        if last {
            let attachment = answer.attachment.expect("the stored file");
            assert_eq!(attachment.size, file.len() as u64);
            assert_eq!(attachment.name, "plan.bin");
            // Posted and downloaded by Bob over the native API: the same bytes.
            let posted = alice
                .client
                .rooms
                .clone()
                .send_message(pb::SendMessageRequest {
                    room_id: room.id.clone(),
                    idempotency_key: "file-1".into(),
                    attachment_id: attachment.id.clone(),
                    ..Default::default()
                })
                .await
                .expect("post the file");
            assert!(posted.into_inner().event.is_some());
            let mut download = bob
                .client
                .rooms
                .clone()
                .download_attachment(pb::DownloadAttachmentRequest {
                    attachment_id: attachment.id.clone(),
                })
                .await
                .expect("download")
                .into_inner();
            let mut got = Vec::new();
            let mut meta = None;
            while let Some(chunk) = download.message().await.expect("chunk") {
                if chunk.attachment.is_some() {
                    meta = chunk.attachment;
                }
                got.extend_from_slice(&chunk.data);
            }
            assert!(got == file, "the download differs from the upload");
            assert_eq!(meta.expect("metadata").sha256, attachment.sha256);
        } else {
            assert!(answer.attachment.is_none());
        }
    }
    // A finished upload is gone.
    check(
        rooms
            .upload_part(bearer(part(&id, offset as u64, b"", true), &token))
            .await,
        Code::NotFound,
        "in progress not found",
    );

    // A file in one call: the first part is also the last.
    let whole = rooms
        .upload_part(bearer(
            pb::UploadPartRequest {
                data: b"hello".to_vec(),
                last: true,
                ..first(&room.id, 5)
            },
            &token,
        ))
        .await
        .expect("a one-part upload")
        .into_inner();
    assert_eq!(whole.attachment.expect("stored").size, 5);

    // The bad cases, each with its own status.
    let id = rooms
        .upload_part(bearer(first(&room.id, 1000), &token))
        .await
        .expect("start")
        .into_inner()
        .upload_id;
    rooms
        .upload_part(bearer(part(&id, 0, &[1; 100], false), &token))
        .await
        .expect("a part");
    check(
        rooms
            .upload_part(bearer(part(&id, 0, &[1; 100], false), &token))
            .await,
        Code::FailedPrecondition,
        "the next part starts at offset 100, not 0",
    );
    check(
        rooms
            .upload_part(bearer(part(&id, 100, &vec![1; PART + 1], false), &token))
            .await,
        Code::InvalidArgument,
        "a part carries at most 262144 bytes",
    );
    check(
        rooms
            .upload_part(bearer(part(&id, 100, &[1; 901], false), &token))
            .await,
        Code::InvalidArgument,
        "past the declared size of 1000 bytes",
    );
    check(
        rooms
            .upload_part(bearer(
                pb::UploadPartRequest {
                    room_id: room.id.clone(),
                    ..part(&id, 100, &[1; 10], false)
                },
                &token,
            ))
            .await,
        Code::InvalidArgument,
        "room_id: set on the first part only",
    );
    // Another member cannot continue Alice's upload; nor can anyone name
    // one that does not exist.
    let bob_token = node.web_login(&bob.id, support::PASSWORD).await;
    check(
        rooms
            .upload_part(bearer(part(&id, 100, &[1; 10], false), &bob_token))
            .await,
        Code::NotFound,
        "in progress not found",
    );
    check(
        rooms
            .upload_part(bearer(
                part("01JZ0000000000000000000009", 0, b"", false),
                &token,
            ))
            .await,
        Code::NotFound,
        "in progress not found",
    );
    // The refused parts left the upload as it was; a short last part ends it.
    check(
        rooms
            .upload_part(bearer(part(&id, 100, &[1; 10], true), &token))
            .await,
        Code::InvalidArgument,
        "ended with 110 of its 1000 bytes",
    );
    check(
        rooms
            .upload_part(bearer(part(&id, 110, &[1; 10], false), &token))
            .await,
        Code::NotFound,
        "in progress not found",
    );
    // Refused at the first part: too large, not a member, no room, no name.
    check(
        rooms
            .upload_part(bearer(first(&room.id, 1024 * 1024 + 1), &token))
            .await,
        Code::ResourceExhausted,
        "larger than the 1048576 byte limit",
    );
    let carols_room = carol.direct_room(&bob.id).await;
    check(
        rooms
            .upload_part(bearer(first(&carols_room.id, 10), &token))
            .await,
        Code::PermissionDenied,
        "is not a member of room",
    );
    check(
        rooms.upload_part(bearer(first("", 10), &token)).await,
        Code::InvalidArgument,
        "room_id",
    );
    check(
        rooms
            .upload_part(bearer(
                pb::UploadPartRequest {
                    name: String::new(),
                    ..first(&room.id, 10)
                },
                &token,
            ))
            .await,
        Code::InvalidArgument,
        "name",
    );
    check(
        rooms
            .upload_part(bearer(
                pb::UploadPartRequest {
                    offset: 5,
                    ..first(&room.id, 10)
                },
                &token,
            ))
            .await,
        Code::FailedPrecondition,
        "starts at offset 0, not 5",
    );
    // At most four uploads in progress per member.
    for _ in 0..4 {
        rooms
            .upload_part(bearer(first(&room.id, 10), &token))
            .await
            .expect("start");
    }
    check(
        rooms.upload_part(bearer(first(&room.id, 10), &token)).await,
        Code::ResourceExhausted,
        "4 uploads in progress already",
    );
    // Bob's own are his own.
    rooms
        .upload_part(bearer(first(&room.id, 10), &bob_token))
        .await
        .expect("bob starts one");
    // Every refusal was logged; the node is still up.
    assert!(node.log().contains("request refused"));
    node.web_auth()
        .who_am_i(bearer(pb::WhoAmIRequest {}, &token))
        .await
        .expect("still serving");
}

#[tokio::test]
async fn an_empty_web_listen_serves_no_web_port() {
    let node = TestNode::start_with("acme.example", |c| {
        c.web.listen = tenant_node::config::WebListen(None);
    })
    .await;
    assert!(node.web.is_none(), "serve printed no web address");
    assert!(node.log().contains("no web port"), "{}", node.log());
    // The API port still serves, plain HTTP/2 gRPC: no page over HTTP/1.1.
    let alice = node.member("alice").await;
    assert!(alice.rooms().await.is_empty());
    let addr = node.url.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut tcp, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(
        support::EVENT_DEADLINE,
        tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut raw),
    )
    .await
    .expect("the API port closes the connection");
    assert!(
        !String::from_utf8_lossy(&raw).contains("<title>"),
        "the API port served the page"
    );
}

#[tokio::test]
async fn the_web_demo_stays_up_with_sign_in_details_until_ctrl_c() {
    use tokio::io::AsyncBufReadExt;
    let mut demo = tokio::process::Command::new(support::binary())
        .args(["demo", "--web"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the demo");
    let mut lines = tokio::io::BufReader::new(demo.stdout.take().expect("stdout")).lines();
    let (mut webs, mut members) = (Vec::new(), Vec::new());
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("read") {
            if let Some((tenant, rest)) = line.split_once(": open ")
                && let Some(url) = rest.strip_suffix(" in a browser")
            {
                let tenant = tenant.trim_start_matches("== ").to_string();
                webs.push((tenant, url.trim_end_matches('/').to_string()));
            }
            if let Some(rest) = line.trim_start().strip_prefix("member  ")
                && let Some((id, password)) = rest.split_once("  password ")
            {
                members.push((id.to_string(), password.to_string()));
            }
            if line.contains("press Ctrl-C") {
                return;
            }
        }
        panic!("the demo ended without waiting for Ctrl-C");
    })
    .await
    .expect("the story played within a minute");
    assert_eq!(webs.len(), 2, "a web address per company: {webs:?}");
    for (_, web) in &webs {
        let index = http1(web, "GET", "/", &[]).await;
        assert_eq!(index.status, 200);
        assert_secure(&index);
    }
    // Alice signs in at her company's web port with what the demo printed.
    let (alice, password) = members
        .iter()
        .find(|(id, _)| id == "alice@acme.example")
        .expect("alice's sign-in details");
    let (_, acme) = webs
        .iter()
        .find(|(tenant, _)| tenant == "acme.example")
        .expect("acme's web address");
    let token = pb::auth_client::AuthClient::with_origin(
        support::web::web_service(),
        acme.parse().expect("url"),
    )
    .login(pb::LoginRequest {
        member_id: alice.clone(),
        password: password.clone(),
    })
    .await
    .expect("alice signs in over grpc-web")
    .into_inner()
    .token;
    assert!(!token.is_empty());
    // Ctrl-C stops both nodes and the demo ends cleanly.
    let pid = demo.id().expect("pid");
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill -INT");
    assert!(sent.success());
    let mut rest = String::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(support::EVENT_DEADLINE, lines.next_line()).await
    {
        rest.push_str(&line);
        rest.push('\n');
    }
    let status = tokio::time::timeout(support::EVENT_DEADLINE, demo.wait())
        .await
        .expect("the demo stopped after Ctrl-C")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    assert!(rest.contains("== done"), "{rest}");
}

#[tokio::test]
async fn an_upload_in_parts_meets_the_admins_file_restriction_at_both_ends() {
    let (a, _b, alice, bob) = support::pair().await;
    let room = alice.group_room("Files", &[&bob.id]).await;
    let token = a.web_login(&alice.id, support::PASSWORD).await;
    let mut rooms = a.web_rooms();
    let admin = a.admin().await;
    let restrict = |on: bool| {
        let mut external = admin.external.clone();
        async move {
            external
                .set_external_settings(pb::SetExternalSettingsRequest {
                    restrict_files: Some(on),
                    ..Default::default()
                })
                .await
                .expect("set the restriction");
        }
    };
    // Started while allowed, finished after the admin restricted files:
    // the last part is checked again and nothing is stored.
    let id = rooms
        .upload_part(bearer(first(&room.id, 4), &token))
        .await
        .expect("start while allowed")
        .into_inner()
        .upload_id;
    restrict(true).await;
    check(
        rooms
            .upload_part(bearer(part(&id, 0, b"data", true), &token))
            .await,
        Code::FailedPrecondition,
        "your company restricts file transfer with other companies",
    );
    // And a new upload is refused at its first part.
    check(
        rooms.upload_part(bearer(first(&room.id, 4), &token)).await,
        Code::FailedPrecondition,
        "your company restricts file transfer with other companies",
    );
    restrict(false).await;
    let stored = rooms
        .upload_part(bearer(
            pb::UploadPartRequest {
                data: b"data".to_vec(),
                last: true,
                ..first(&room.id, 4)
            },
            &token,
        ))
        .await
        .expect("allowed again")
        .into_inner();
    assert!(stored.attachment.is_some());
}
