//! What a hostile peer (or a careless client) can make a node say back:
//! error messages that quote a huge id, and the texts its members see.
//!
//! The attacker is a peered company's node with its own genuine
//! certificate: it calls the bridge with whatever content it likes.

mod support;

use support::{TestNode, peer_with};
use tonic::Code;
use works_proto::client::v1 as pb;
use works_proto::federation::v1 as fed;

/// Longest status message a node sends (`works_bridge::error`).
const MAX_MESSAGE: usize = 1024;

/// An id no real one is like: longer than gRPC's 16 KiB header list, were
/// it quoted whole in the status message.
fn huge_id() -> String {
    "Z".repeat(20_000)
}

/// A refusal with the code a short bad id gets, a message under the bound
/// that still names the field, and the id clipped with its length.
#[track_caller]
fn check_clipped<T: std::fmt::Debug>(
    rpc: &str,
    result: Result<T, tonic::Status>,
    code: Code,
    names: &str,
) {
    let status = match result {
        Ok(value) => panic!("{rpc}: expected {code:?}, got Ok({value:?})"),
        Err(status) => status,
    };
    let message = status.message();
    assert_eq!(status.code(), code, "{rpc}: {:.200}", message);
    assert!(
        message.len() <= MAX_MESSAGE,
        "{rpc}: a message of {} bytes",
        message.len()
    );
    assert!(
        message.contains(names),
        "{rpc}: {message:?} lacks {names:?}"
    );
    assert!(
        message.contains("… (") && message.contains(" characters)"),
        "{rpc}: {message:?} does not say the id was cut"
    );
}

#[tokio::test]
async fn a_huge_id_gets_its_precise_refusal_on_the_client_api() {
    let a = TestNode::start("a.example").await;
    let alice = a.member("alice").await;
    let admin = a.admin().await;
    let huge = huge_id();

    // The same codes as a short bad id gets.
    support::check(
        alice
            .client
            .rooms
            .clone()
            .get_room(pb::GetRoomRequest {
                room_id: "not-a-room".into(),
            })
            .await,
        Code::InvalidArgument,
        "room id",
    );

    check_clipped(
        "Login",
        a.anonymous()
            .await
            .auth
            .clone()
            .login(pb::LoginRequest {
                member_id: huge.clone(),
                password: "whatever".into(),
            })
            .await,
        Code::InvalidArgument,
        "member_id",
    );
    check_clipped(
        "History",
        alice
            .client
            .rooms
            .clone()
            .history(pb::HistoryRequest {
                room_id: huge.clone(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "room_id",
    );
    check_clipped(
        "GetRoom",
        alice
            .client
            .rooms
            .clone()
            .get_room(pb::GetRoomRequest {
                room_id: huge.clone(),
            })
            .await,
        Code::InvalidArgument,
        "room_id",
    );
    check_clipped(
        "FindUser",
        alice
            .client
            .contacts
            .clone()
            .find_user(pb::FindUserRequest {
                user_id: huge.clone(),
            })
            .await,
        Code::InvalidArgument,
        "user_id",
    );
    check_clipped(
        "DownloadAttachment",
        alice
            .client
            .rooms
            .clone()
            .download_attachment(pb::DownloadAttachmentRequest {
                attachment_id: huge.clone(),
            })
            .await,
        Code::NotFound,
        "attachment",
    );
    check_clipped(
        "SuspendMember",
        admin
            .admin
            .clone()
            .suspend_member(pb::SuspendMemberRequest {
                member_id: huge.clone(),
            })
            .await,
        Code::InvalidArgument,
        "member_id",
    );
}

#[tokio::test]
async fn a_huge_id_from_a_peer_gets_its_precise_refusal_on_the_bridge() {
    let a = TestNode::start("a.example").await;
    let b = TestNode::start("b.example").await;
    peer_with(&a, &b).await;
    // B's node itself, with its genuine certificate, calling A's bridge.
    let mut attacker = support::bridge_client(&a, &b.tls_files().load_node().unwrap()).await;
    let huge = huge_id();

    support::check(
        attacker
            .raw()
            .lookup_user(fed::LookupUserRequest {
                requester: "mallory@b.example".into(),
                user: "nobody".into(),
            })
            .await,
        Code::NotFound,
        "user nobody",
    );
    check_clipped(
        "LookupUser",
        attacker
            .raw()
            .lookup_user(fed::LookupUserRequest {
                requester: "mallory@b.example".into(),
                user: huge.clone(),
            })
            .await,
        Code::NotFound,
        "user",
    );
    check_clipped(
        "LookupUser requester",
        attacker
            .raw()
            .lookup_user(fed::LookupUserRequest {
                requester: huge.clone(),
                user: "alice@a.example".into(),
            })
            .await,
        Code::InvalidArgument,
        "requester",
    );
    check_clipped(
        "FetchAttachment",
        attacker
            .raw()
            .fetch_attachment(fed::FetchAttachmentRequest {
                requester: "mallory@b.example".into(),
                attachment_id: huge.clone(),
            })
            .await,
        Code::NotFound,
        "attachment",
    );
    // A name part of 20,000 characters passes the tenant check and is
    // quoted when the profile is someone else's.
    let long_member = format!("{}@b.example", "m".repeat(20_000));
    check_clipped(
        "SendFriendRequest",
        attacker
            .raw()
            .send_friend_request(fed::FriendRequest {
                request_id: "01ATTACK".into(),
                from: long_member.clone(),
                to: "alice@a.example".into(),
                from_profile: Some(fed::PublicProfile {
                    user: format!("x{long_member}"),
                    display_name: "Mallory".into(),
                    company: "B".into(),
                    ..Default::default()
                }),
                invitation: String::new(),
            })
            .await,
        Code::PermissionDenied,
        "from_profile",
    );
}
