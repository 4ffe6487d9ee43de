//! The authorization matrix: every client RPC × every kind of caller, and
//! every bridge RPC × every kind of calling node, each cell asserting the
//! exact status an empty request gets. The RPCs come from the services'
//! descriptors, so an RPC added without its row fails this test. The
//! client API port also serves health and both versions of reflection,
//! open to every caller: their RPCs are rows of the same matrix. The same
//! client matrix runs again over the web port, through grpc-web on
//! HTTP/1.1 as a browser calls it; reflection is not served there.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::web::web_service;
use crate::support::{self, Raw, TestNode, peer_with};
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;
use works_certs::{TenantCa, TenantId, Validity};
use works_proto::client::v1 as pb;
use works_proto::federation::v1 as fed;

/// Calls `path` with one empty request message; the status it ends with
/// (a stream still open after a moment counts as OK).
async fn call<T>(grpc: tonic::client::Grpc<T>, token: Option<&str>, path: &str) -> Code
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    call_with(grpc, token, path, Vec::new()).await
}

async fn call_with<T>(
    mut grpc: tonic::client::Grpc<T>,
    token: Option<&str>,
    path: &str,
    body: Vec<u8>,
) -> Code
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    if grpc.ready().await.is_err() {
        panic!("channel not ready");
    }
    let mut request = tonic::Request::new(tokio_stream::iter(vec![body]));
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let path: tonic::codegen::http::uri::PathAndQuery = path.parse().expect("path");
    match grpc.streaming(request, path, Raw).await {
        Err(status) => status.code(),
        Ok(response) => {
            let mut stream = response.into_inner();
            match tokio::time::timeout(Duration::from_millis(500), stream.message()).await {
                Err(_) | Ok(Ok(_)) => Code::Ok,
                Ok(Err(status)) => status.code(),
            }
        }
    }
}

/// Every `/package.Service/Method` in a descriptor set.
fn methods(descriptor_set: &[u8]) -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(descriptor_set).expect("descriptor set");
    let mut out = Vec::new();
    for file in set.file {
        let package = file.package.unwrap_or_default();
        for service in file.service {
            for method in service.method {
                out.push(format!(
                    "/{package}.{}/{}",
                    service.name.as_deref().unwrap_or_default(),
                    method.name.as_deref().unwrap_or_default()
                ));
            }
        }
    }
    out
}

const OK: Code = Code::Ok;
const UNAUTH: Code = Code::Unauthenticated;
const DENIED: Code = Code::PermissionDenied;
const INVALID: Code = Code::InvalidArgument;
const NOT_FOUND: Code = Code::NotFound;
const PRECOND: Code = Code::FailedPrecondition;

/// Callers, in the order of each row: anonymous, member, suspended member,
/// admin, and a token that another company's node issued.
const CALLERS: [&str; 5] = ["anonymous", "member", "suspended", "admin", "other tenant"];

/// What an empty request to each client RPC gets from each caller.
const CLIENT_MATRIX: &[(&str, [Code; 5])] = &[
    (
        "/works.client.v1.Admin/AddMember",
        [UNAUTH, DENIED, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Admin/GetCompany",
        [UNAUTH, DENIED, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Admin/ListMembers",
        [UNAUTH, DENIED, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Admin/SetCompany",
        [UNAUTH, DENIED, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Admin/SuspendMember",
        [UNAUTH, DENIED, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Admin/UnsuspendMember",
        [UNAUTH, DENIED, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Audit/ExportAudit",
        [UNAUTH, DENIED, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Audit/SearchAudit",
        [UNAUTH, DENIED, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Audit/VerifyAudit",
        [UNAUTH, DENIED, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Auth/Login",
        [INVALID, INVALID, INVALID, INVALID, INVALID],
    ),
    (
        "/works.client.v1.Auth/Logout",
        [UNAUTH, OK, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Auth/WhoAmI",
        [UNAUTH, OK, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Contacts/AcceptFriendRequest",
        [UNAUTH, NOT_FOUND, DENIED, NOT_FOUND, UNAUTH],
    ),
    (
        "/works.client.v1.Contacts/BlockUser",
        [UNAUTH, INVALID, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Contacts/CreateInvitation",
        [UNAUTH, PRECOND, DENIED, PRECOND, UNAUTH],
    ),
    (
        "/works.client.v1.Contacts/DeclineFriendRequest",
        [UNAUTH, NOT_FOUND, DENIED, NOT_FOUND, UNAUTH],
    ),
    (
        "/works.client.v1.Contacts/DeleteContact",
        [UNAUTH, INVALID, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Contacts/EditContact",
        [UNAUTH, INVALID, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Contacts/FindUser",
        [UNAUTH, INVALID, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Contacts/GetContact",
        [UNAUTH, INVALID, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Contacts/ListContacts",
        [UNAUTH, OK, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Contacts/ListFriendRequests",
        [UNAUTH, OK, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Contacts/RedeemInvitation",
        [UNAUTH, INVALID, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Contacts/RestoreContact",
        [UNAUTH, INVALID, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Contacts/SendFriendRequest",
        [UNAUTH, INVALID, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Contacts/UnblockUser",
        [UNAUTH, INVALID, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.ExternalPolicy/AddConnected",
        [UNAUTH, DENIED, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.ExternalPolicy/GetExternalSettings",
        [UNAUTH, DENIED, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.ExternalPolicy/ListConnected",
        [UNAUTH, DENIED, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.ExternalPolicy/RemoveConnected",
        [UNAUTH, DENIED, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.ExternalPolicy/SetExternalSettings",
        [UNAUTH, DENIED, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Line/AddLineConnected",
        [UNAUTH, DENIED, DENIED, INVALID, UNAUTH],
    ),
    // A signed-in member's own; this node has no `[line]` section, so
    // there is no LINE account to reach them at (`line_admin` has the
    // refusal of a member not permitted on a node with one).
    (
        "/works.client.v1.Line/GetLineInvite",
        [UNAUTH, PRECOND, DENIED, PRECOND, UNAUTH],
    ),
    (
        "/works.client.v1.Line/GetLineSettings",
        [UNAUTH, DENIED, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Line/ListLineConnected",
        [UNAUTH, DENIED, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Line/RemoveLineConnected",
        [UNAUTH, DENIED, DENIED, INVALID, UNAUTH],
    ),
    // An empty change changes nothing; switching LINE on without `[line]`
    // is FAILED_PRECONDITION (`line_admin`).
    (
        "/works.client.v1.Line/SetLineSettings",
        [UNAUTH, DENIED, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Peering/AcceptPeer",
        [UNAUTH, DENIED, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Peering/GetCa",
        [UNAUTH, DENIED, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Peering/InvitePeer",
        [UNAUTH, DENIED, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Peering/ListPeers",
        [UNAUTH, DENIED, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Peering/RemovePeer",
        [UNAUTH, DENIED, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Peering/RenewNodeCertificate",
        [UNAUTH, DENIED, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Peering/RetireCa",
        [UNAUTH, DENIED, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Peering/RotateCa",
        [UNAUTH, DENIED, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Peering/TestPeer",
        [UNAUTH, DENIED, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Profiles/GetProfile",
        [UNAUTH, OK, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Profiles/ListNotices",
        [UNAUTH, OK, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Profiles/SetProfile",
        [UNAUTH, OK, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Rooms/CreateRoom",
        [UNAUTH, INVALID, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Rooms/DownloadAttachment",
        [UNAUTH, NOT_FOUND, DENIED, NOT_FOUND, UNAUTH],
    ),
    (
        "/works.client.v1.Rooms/GetDelivery",
        [UNAUTH, INVALID, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Rooms/GetRoom",
        [UNAUTH, INVALID, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Rooms/History",
        [UNAUTH, INVALID, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Rooms/InviteMembers",
        [UNAUTH, INVALID, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Rooms/LeaveRoom",
        [UNAUTH, INVALID, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Rooms/ListRooms",
        [UNAUTH, OK, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Rooms/MarkRead",
        [UNAUTH, INVALID, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Rooms/RemoveMember",
        [UNAUTH, INVALID, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Rooms/RenameRoom",
        [UNAUTH, INVALID, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Rooms/SendMessage",
        [UNAUTH, INVALID, DENIED, INVALID, UNAUTH],
    ),
    // An empty request is answered with its refusal; the stream goes on.
    (
        "/works.client.v1.Rooms/SendStream",
        [UNAUTH, OK, DENIED, OK, UNAUTH],
    ),
    (
        "/works.client.v1.Rooms/UploadAttachment",
        [UNAUTH, INVALID, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Rooms/UploadPart",
        [UNAUTH, INVALID, DENIED, INVALID, UNAUTH],
    ),
    (
        "/works.client.v1.Rooms/Watch",
        [UNAUTH, OK, DENIED, OK, UNAUTH],
    ),
    // Open to everyone; an empty reflection request names no question.
    ("/grpc.health.v1.Health/Check", [OK, OK, OK, OK, OK]),
    ("/grpc.health.v1.Health/Watch", [OK, OK, OK, OK, OK]),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        [INVALID, INVALID, INVALID, INVALID, INVALID],
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        [INVALID, INVALID, INVALID, INVALID, INVALID],
    ),
];

async fn token(node: &TestNode, id: &str, password: &str) -> String {
    node.anonymous()
        .await
        .auth
        .clone()
        .login(pb::LoginRequest {
            member_id: id.into(),
            password: password.into(),
        })
        .await
        .expect("login")
        .into_inner()
        .token
}

/// Which port the client matrix runs on.
#[derive(Clone, Copy, PartialEq)]
enum Port {
    /// The client API port: native gRPC over HTTP/2.
    Api,
    /// The web port: grpc-web over HTTP/1.1.
    Web,
}

/// The row `path` has on `port`: the web port serves no reflection, so
/// there every caller gets UNIMPLEMENTED.
fn row_on(port: Port, path: &str, row: [Code; 5]) -> [Code; 5] {
    if port == Port::Web && path.starts_with("/grpc.reflection.") {
        [Code::Unimplemented; 5]
    } else {
        row
    }
}

#[tokio::test]
async fn every_client_rpc_answers_every_kind_of_caller_exactly() {
    client_matrix(Port::Api).await;
}

#[tokio::test]
async fn every_client_rpc_answers_every_kind_of_caller_exactly_over_grpc_web() {
    client_matrix(Port::Web).await;
}

async fn client_matrix(port: Port) {
    let a = TestNode::start("a.example").await;
    let b = TestNode::start("b.example").await;
    peer_with(&a, &b).await;
    let member = a.member("alice").await;
    let sam = a.member("sam").await;
    let admin = a.admin().await;
    let tokens: Vec<(&str, Option<String>)> = vec![
        ("anonymous", None),
        (
            "member",
            Some(token(&a, &member.id, support::PASSWORD).await),
        ),
        (
            "suspended",
            Some(token(&a, &sam.id, support::PASSWORD).await),
        ),
        (
            "admin",
            Some(token(&a, &a.admin_id, support::ADMIN_PASSWORD).await),
        ),
        (
            "other tenant",
            Some(token(&b, &b.admin_id, support::ADMIN_PASSWORD).await),
        ),
    ];
    admin
        .admin
        .clone()
        .suspend_member(pb::SuspendMemberRequest {
            member_id: sam.id.clone(),
        })
        .await
        .unwrap();
    let channel = Channel::from_shared(a.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut paths = methods(works_proto::CLIENT_DESCRIPTOR_SET);
    for open in [
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ] {
        paths.extend(methods(open));
    }
    // Logging out ends the caller's token: last.
    paths.sort_by_key(|p| p.ends_with("/Logout"));
    let expected: BTreeMap<&str, [Code; 5]> = CLIENT_MATRIX.iter().copied().collect();
    let mut wrong = Vec::new();
    for path in &paths {
        let Some(row) = expected.get(path.as_str()) else {
            wrong.push(format!("{path}: no row in CLIENT_MATRIX"));
            continue;
        };
        let row = row_on(port, path, *row);
        for (i, (caller, t)) in tokens.iter().enumerate() {
            let got = match port {
                Port::Api => {
                    call(
                        tonic::client::Grpc::new(channel.clone()),
                        t.as_deref(),
                        path,
                    )
                    .await
                }
                Port::Web => {
                    call(
                        tonic::client::Grpc::with_origin(web_service(), a.web_origin()),
                        t.as_deref(),
                        path,
                    )
                    .await
                }
            };
            if got != row[i] {
                wrong.push(format!(
                    "{path} as {caller}: {got:?}, expected {:?}",
                    row[i]
                ));
            }
        }
    }
    for path in expected.keys() {
        if !paths.iter().any(|p| p == path) {
            wrong.push(format!("{path}: a row for an RPC that does not exist"));
        }
    }
    assert_eq!(CALLERS.len(), tokens.len());
    assert!(
        wrong.is_empty(),
        "{} cells differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Calling nodes, in the order of each row: a node whose CA was never
/// pinned, the peer itself, the peer's CA naming a third tenant, and the
/// peer naming a member of another tenant in its request.
const NODES: [&str; 4] = ["unpeered", "peer", "spoofing", "foreign user"];

/// `NA`: the RPC names no member, so there is nothing to misname.
const NA: Option<Code> = None;
const fn is(code: Code) -> Option<Code> {
    Some(code)
}

/// What each bridge RPC answers each kind of calling node.
const BRIDGE_MATRIX: &[(&str, [Option<Code>; 4])] = &[
    (
        "/works.federation.v1.Bridge/Redeem",
        [is(INVALID), is(INVALID), is(INVALID), NA],
    ),
    (
        "/works.federation.v1.Bridge/Ping",
        [is(UNAUTH), is(INVALID), is(DENIED), NA],
    ),
    (
        "/works.federation.v1.Bridge/LookupUser",
        [is(UNAUTH), is(INVALID), is(DENIED), is(DENIED)],
    ),
    (
        "/works.federation.v1.Bridge/SendFriendRequest",
        [is(UNAUTH), is(INVALID), is(DENIED), is(DENIED)],
    ),
    (
        "/works.federation.v1.Bridge/AnswerFriendRequest",
        [is(UNAUTH), is(INVALID), is(DENIED), is(DENIED)],
    ),
    (
        "/works.federation.v1.Bridge/Relay",
        [is(UNAUTH), is(OK), is(DENIED), is(OK)],
    ),
    (
        "/works.federation.v1.Bridge/FetchAttachment",
        [is(UNAUTH), is(INVALID), is(DENIED), is(DENIED)],
    ),
    (
        "/works.federation.v1.Bridge/Unpeer",
        [is(UNAUTH), is(INVALID), is(DENIED), NA],
    ),
];

/// A request to `path` from a b.example node that names a member of
/// c.example where its own member belongs; `None` when it names no member.
fn naming_a_foreign_user(path: &str) -> Option<Vec<u8>> {
    let foreign = "mallory@c.example".to_string();
    let profile = fed::PublicProfile {
        user: foreign.clone(),
        display_name: "Mallory".into(),
        company: "C".into(),
        ..Default::default()
    };
    let method = path.rsplit('/').next().unwrap_or_default();
    Some(match method {
        "LookupUser" => fed::LookupUserRequest {
            requester: foreign,
            user: "alice@a.example".into(),
        }
        .encode_to_vec(),
        "SendFriendRequest" => fed::FriendRequest {
            request_id: "01ABC".into(),
            from: foreign,
            to: "alice@a.example".into(),
            from_profile: Some(profile),
            ..Default::default()
        }
        .encode_to_vec(),
        "AnswerFriendRequest" => fed::FriendAnswer {
            request_id: "01ABC".into(),
            from: foreign,
            to: "alice@a.example".into(),
            accepted: true,
            from_profile: Some(profile),
        }
        .encode_to_vec(),
        // Accepted as a stream; the envelope itself is refused in its ack
        // (see relay.rs).
        "Relay" => fed::EnvelopeBatch {
            envelopes: vec![fed::Envelope {
                event_id: "01JZ0000000000000000000000".into(),
                host: "a.example".into(),
                room_id: "01JZ0000000000000000000001".into(),
                payload: Some(fed::envelope::Payload::Text(fed::TextEvent {
                    sender: "mallory@c.example".into(),
                    text: "x".into(),
                })),
                ..Default::default()
            }],
        }
        .encode_to_vec(),
        "FetchAttachment" => fed::FetchAttachmentRequest {
            requester: foreign,
            attachment_id: "01JZ0000000000000000000002".into(),
        }
        .encode_to_vec(),
        _ => return None,
    })
}

#[tokio::test]
async fn every_bridge_rpc_answers_every_kind_of_node_exactly() {
    let a = TestNode::start("a.example").await;
    let b = TestNode::start("b.example").await;
    peer_with(&a, &b).await;
    let validity = Validity::from_now(Duration::from_secs(3600));
    let b_tenant = TenantId::parse("b.example").unwrap();
    let stranger = TenantCa::generate(&b_tenant, validity)
        .unwrap()
        .issue_node(&b_tenant, &[], validity)
        .unwrap();
    let real = b.tls_files().load_node().unwrap();
    let spoof = b
        .tls_files()
        .load_ca()
        .unwrap()
        .issue_node(&TenantId::parse("c.example").unwrap(), &[], validity)
        .unwrap();
    let channels = [
        support::bridge_client(&a, &stranger).await.channel(),
        support::bridge_client(&a, &real).await.channel(),
        support::bridge_client(&a, &spoof).await.channel(),
        support::bridge_client(&a, &real).await.channel(),
    ];
    let mut paths = methods(works_proto::FEDERATION_DESCRIPTOR_SET);
    // Unpeering ends the peering the later cells rely on: last.
    paths.sort_by_key(|p| p.ends_with("/Unpeer"));
    let expected: BTreeMap<&str, [Option<Code>; 4]> = BRIDGE_MATRIX.iter().copied().collect();
    let mut wrong = Vec::new();
    for path in &paths {
        let Some(row) = expected.get(path.as_str()) else {
            wrong.push(format!("{path}: no row in BRIDGE_MATRIX"));
            continue;
        };
        for (i, node) in NODES.iter().enumerate() {
            let body = if i == 3 {
                naming_a_foreign_user(path)
            } else {
                Some(Vec::new())
            };
            let got = match body {
                Some(body) => Some(
                    call_with(
                        tonic::client::Grpc::new(channels[i].clone()),
                        None,
                        path,
                        body,
                    )
                    .await,
                ),
                None => None,
            };
            if got != row[i] {
                wrong.push(format!(
                    "{path} from {node}: {got:?}, expected {:?}",
                    row[i]
                ));
            }
        }
    }
    for path in expected.keys() {
        if !paths.iter().any(|p| p == path) {
            wrong.push(format!("{path}: a row for an RPC that does not exist"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cells differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
