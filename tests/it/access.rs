//! Who may do what: tokens, roles, suspension, membership and bad input, each
//! with its precise status and no partial write.

use crate::support::{self, TestNode, check};
use tenant_node::client::Client;
use tonic::Code;
use works_proto::client::v1 as pb;

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let node = TestNode::start("acme.example").await;
    let alice = node.member("alice").await;
    let anonymous = node.anonymous().await;
    check(
        anonymous
            .rooms
            .clone()
            .list_rooms(pb::ListRoomsRequest {})
            .await,
        Code::Unauthenticated,
        "missing authorization",
    );
    let forged = anonymous
        .with_token("wt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .unwrap();
    check(
        forged
            .rooms
            .clone()
            .list_rooms(pb::ListRoomsRequest {})
            .await,
        Code::Unauthenticated,
        "invalid or revoked token",
    );
    let garbage = anonymous.with_token("hello").unwrap();
    check(
        garbage
            .rooms
            .clone()
            .list_rooms(pb::ListRoomsRequest {})
            .await,
        Code::Unauthenticated,
        "malformed token",
    );

    check(
        anonymous
            .login(&alice.id, "wrong password")
            .await
            .map(|_| ()),
        Code::Unauthenticated,
        "wrong member id or password",
    );
    check(
        anonymous
            .login("nobody@acme.example", "whatever1")
            .await
            .map(|_| ()),
        Code::Unauthenticated,
        "wrong member id or password",
    );
    check(
        anonymous.login("not an id", "whatever1").await.map(|_| ()),
        Code::InvalidArgument,
        "name@tenant",
    );

    // Logout revokes exactly the token used.
    let second = node.login(&alice.id).await;
    second
        .client
        .auth
        .clone()
        .logout(pb::LogoutRequest {})
        .await
        .unwrap();
    check(
        second
            .client
            .auth
            .clone()
            .who_am_i(pb::WhoAmIRequest {})
            .await,
        Code::Unauthenticated,
        "invalid or revoked",
    );
    assert_eq!(
        alice
            .client
            .auth
            .clone()
            .who_am_i(pb::WhoAmIRequest {})
            .await
            .unwrap()
            .into_inner()
            .id,
        alice.id
    );
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let node = TestNode::start_with("acme.example", |c| c.limits.token_ttl_secs = 0).await;
    let admin = node
        .anonymous()
        .await
        .login(&node.admin_id, "admin password 1")
        .await
        .unwrap();
    check(
        admin.auth.clone().who_am_i(pb::WhoAmIRequest {}).await,
        Code::Unauthenticated,
        "token expired",
    );
}

#[tokio::test]
async fn only_admins_use_the_admin_console() {
    let node = TestNode::start("acme.example").await;
    let alice = node.member("alice").await;
    let mut admin = alice.client.admin.clone();
    check(
        admin.list_members(pb::ListMembersRequest {}).await,
        Code::PermissionDenied,
        "admin role",
    );
    check(
        admin
            .add_member(pb::AddMemberRequest {
                name: "eve".into(),
                display_name: "Eve".into(),
                password: "password1".into(),
                role: 2,
            })
            .await,
        Code::PermissionDenied,
        "admin role",
    );
    check(
        admin
            .suspend_member(pb::SuspendMemberRequest {
                member_id: node.admin_id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "admin role",
    );
    check(
        admin
            .set_company(pb::SetCompanyRequest {
                name: "Evil".into(),
            })
            .await,
        Code::PermissionDenied,
        "admin role",
    );

    let mut real = node.admin().await.admin;
    let add = |name: &str, password: &str| pb::AddMemberRequest {
        name: name.into(),
        display_name: "Someone".into(),
        password: password.into(),
        role: pb::Role::Member as i32,
    };
    check(
        real.add_member(add("alice", "password1")).await,
        Code::AlreadyExists,
        "already exists",
    );
    check(
        real.add_member(add("ALICE", "password1")).await,
        Code::AlreadyExists,
        "already exists",
    );
    check(
        real.add_member(add("bad name", "password1")).await,
        Code::InvalidArgument,
        "may hold only",
    );
    check(
        real.add_member(add("eve@other.example", "password1")).await,
        Code::InvalidArgument,
        "is not a member of acme.example",
    );
    check(
        real.add_member(add("eve", "short")).await,
        Code::InvalidArgument,
        "at least 8",
    );
    check(
        real.suspend_member(pb::SuspendMemberRequest {
            member_id: "ghost@acme.example".into(),
        })
        .await,
        Code::NotFound,
        "ghost",
    );
    check(
        real.suspend_member(pb::SuspendMemberRequest {
            member_id: node.admin_id.clone(),
        })
        .await,
        Code::FailedPrecondition,
        "own account",
    );
    let names: Vec<String> = real
        .list_members(pb::ListMembersRequest {})
        .await
        .unwrap()
        .into_inner()
        .members
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(
        names,
        vec!["admin@acme.example", "alice@acme.example"],
        "no refused add may leave a member behind"
    );
}

#[tokio::test]
async fn a_suspended_member_is_locked_out_at_once() {
    let node = TestNode::start("acme.example").await;
    let alice = node.member("alice").await;
    let bob = node.member("bob").await;
    let room = alice.direct_room(&bob.id).await;
    let mut bob_stream = bob.watch(&[]).await.unwrap();
    bob_stream.next().await;

    let admin = node.admin().await;
    let suspended = admin
        .admin
        .clone()
        .suspend_member(pb::SuspendMemberRequest {
            member_id: "BOB@acme.example".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(suspended.state, pb::MemberState::Suspended as i32);

    check(
        bob_stream.try_next().await,
        Code::PermissionDenied,
        "suspended",
    );
    check(
        bob.send(&room.id, "am I here?").await,
        Code::PermissionDenied,
        "suspended",
    );
    check(
        node.anonymous()
            .await
            .login(&bob.id, support::PASSWORD)
            .await
            .map(|_| ()),
        Code::PermissionDenied,
        "suspended",
    );
    check(
        alice
            .create_room(pb::RoomKind::Group, "x", &[&bob.id])
            .await,
        Code::FailedPrecondition,
        "suspended",
    );

    admin
        .admin
        .clone()
        .unsuspend_member(pb::UnsuspendMemberRequest {
            member_id: bob.id.clone(),
        })
        .await
        .unwrap();
    // Tokens from before the suspension stay dead; a fresh login works.
    check(
        bob.send(&room.id, "old token").await,
        Code::Unauthenticated,
        "invalid or revoked",
    );
    let bob_again = node.login(&bob.id).await;
    bob_again.send(&room.id, "back").await.unwrap();
}

#[tokio::test]
async fn rooms_refuse_outsiders_and_bad_input_without_writing() {
    let node = TestNode::start_with("acme.example", |c| c.limits.max_text_bytes = 64).await;
    let alice = node.member("alice").await;
    let bob = node.member("bob").await;
    let mallory = node.member("mallory").await;
    let room = alice.direct_room(&bob.id).await;
    alice.send(&room.id, "private").await.unwrap();
    let unknown = ulid::Ulid::new().to_string();

    check(
        mallory.send(&room.id, "let me in").await,
        Code::PermissionDenied,
        "not a member",
    );
    check(
        mallory.history(&room.id).await,
        Code::PermissionDenied,
        "not a member",
    );
    check(
        mallory.watch(&[(&room.id, 0)]).await.map(|_| ()),
        Code::PermissionDenied,
        "not a member",
    );
    check(
        mallory
            .client
            .rooms
            .clone()
            .get_room(pb::GetRoomRequest {
                room_id: room.id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "not a member",
    );
    check(
        mallory
            .client
            .rooms
            .clone()
            .mark_read(pb::MarkReadRequest {
                room_id: room.id.clone(),
                seq: 1,
            })
            .await,
        Code::PermissionDenied,
        "not a member",
    );
    check(
        mallory
            .client
            .rooms
            .clone()
            .leave_room(pb::LeaveRoomRequest {
                room_id: room.id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "not a member",
    );
    check(alice.send(&unknown, "hello").await, Code::NotFound, "room");
    check(alice.history(&unknown).await, Code::NotFound, "room");
    check(
        alice.send("not-a-room", "hello").await,
        Code::InvalidArgument,
        "not a valid ULID",
    );
    check(
        alice.send("", "hello").await,
        Code::InvalidArgument,
        "room id is empty",
    );
    check(
        alice.send(&room.id, "   ").await,
        Code::InvalidArgument,
        "message is empty",
    );
    check(
        alice.send(&room.id, &"x".repeat(65)).await,
        Code::ResourceExhausted,
        "the limit is 64",
    );
    check(
        alice.send_keyed(&room.id, "", "hi").await,
        Code::InvalidArgument,
        "idempotency_key",
    );
    check(
        alice.send_keyed(&room.id, &"k".repeat(129), "hi").await,
        Code::InvalidArgument,
        "idempotency_key",
    );
    check(
        alice.create_room(pb::RoomKind::Direct, "", &["bob"]).await,
        Code::InvalidArgument,
        "name@tenant",
    );
    check(
        alice
            .create_room(pb::RoomKind::Direct, "", &["carl@acme.example"])
            .await,
        Code::NotFound,
        "carl@acme.example",
    );
    check(
        alice
            .create_room(pb::RoomKind::Direct, "", &["x@other.example"])
            .await,
        Code::FailedPrecondition,
        "not one of your contacts",
    );
    check(
        alice
            .create_room(pb::RoomKind::Direct, "", &[&bob.id, &mallory.id])
            .await,
        Code::InvalidArgument,
        "exactly one",
    );
    check(
        alice
            .create_room(pb::RoomKind::Unspecified, "", &[&bob.id])
            .await,
        Code::InvalidArgument,
        "direct or group",
    );
    check(
        alice
            .create_room(pb::RoomKind::Group, "bad\u{7}name", &[&bob.id])
            .await,
        Code::InvalidArgument,
        "control",
    );

    // Nothing refused above left a trace.
    let history = bob.history(&room.id).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(alice.rooms().await.len(), 1);
    assert!(mallory.rooms().await.is_empty());
}

/// The client API's services that every listing must hold.
const LISTED_SERVICES: [&str; 9] = [
    "works.client.v1.Auth",
    "works.client.v1.Admin",
    "works.client.v1.Profiles",
    "works.client.v1.Peering",
    "works.client.v1.ExternalPolicy",
    "works.client.v1.Audit",
    "works.client.v1.Contacts",
    "works.client.v1.Rooms",
    "grpc.health.v1.Health",
];

fn assert_lists_the_client_api(names: &[String], how: &str) {
    for service in LISTED_SERVICES {
        assert!(
            names.iter().any(|n| n == service),
            "{how}: {service} missing from {names:?}"
        );
    }
}

#[tokio::test]
async fn health_and_reflection_answer_off_the_shelf_clients() {
    use tokio_stream::StreamExt;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::{v1, v1alpha};

    let node = TestNode::start("acme.example").await;
    let channel = tonic::transport::Endpoint::from_shared(node.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "works.client.v1.Rooms".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // grpc.reflection.v1.
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut responses = v1::server_reflection_client::ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert_lists_the_client_api(&names, "reflection v1");

    // grpc.reflection.v1alpha, which many clients still speak only.
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut responses =
        v1alpha::server_reflection_client::ServerReflectionClient::new(channel.clone())
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .expect("reflection v1alpha is served")
            .into_inner();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert_lists_the_client_api(&names, "reflection v1alpha");
    let _ = Client::connect(&node.url, None).await.unwrap();
}

/// The Python interpreter that has grpcio-reflection: `WORKS_TEST_PYTHON`,
/// else the virtual environment `.ci/run` makes in `target/`, else
/// `python3`.
fn reflection_python() -> std::path::PathBuf {
    if let Some(python) = std::env::var_os("WORKS_TEST_PYTHON") {
        return python.into();
    }
    let venv =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/reflection-py/bin/python");
    if venv.exists() {
        return venv;
    }
    "python3".into()
}

/// Python's grpcio-reflection (what Python tools and many scripts use)
/// speaks only reflection v1alpha: it lists the client API and resolves
/// every service's descriptor from the node.
#[tokio::test]
async fn pythons_grpcio_reflection_lists_and_resolves_the_client_api() {
    let python = reflection_python();
    let install = "install it as .ci/run does: `python3 -m venv target/reflection-py && \
         target/reflection-py/bin/pip install grpcio-reflection` (or name an interpreter \
         that has it in WORKS_TEST_PYTHON)";
    let probe = tokio::process::Command::new(&python)
        .args(["-c", "import grpc_reflection.v1alpha"])
        .output()
        .await;
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "{} has no grpcio-reflection ({}); {install}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("cannot run {}: {e}; {install}", python.display()),
    }

    let node = TestNode::start("acme.example").await;
    let address = node.url.trim_start_matches("http://");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("py/reflection_list.py");
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new(&python)
            .arg(&script)
            .arg(address)
            .output(),
    )
    .await
    .expect("the Python client finished")
    .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the Python client failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let services: Vec<(String, Vec<String>)> = stdout
        .lines()
        .map(|line| {
            let mut words = line.split(' ').map(str::to_string);
            (words.next().unwrap_or_default(), words.collect())
        })
        .collect();
    let names: Vec<String> = services.iter().map(|(n, _)| n.clone()).collect();
    assert_lists_the_client_api(&names, "grpcio-reflection (v1alpha)");
    let rooms = &services
        .iter()
        .find(|(n, _)| n == "works.client.v1.Rooms")
        .unwrap()
        .1;
    for method in ["CreateRoom", "ListRooms", "SendMessage", "Watch"] {
        assert!(rooms.iter().any(|m| m == method), "{method} in {rooms:?}");
    }
}
