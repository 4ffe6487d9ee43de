//! A peered company's node turned hostile: it holds its own genuine
//! certificate and sends crafted bridge calls. Each test asserts what a
//! member or admin of the attacked node sees through the client API.

use crate::support::wire;
use crate::support::{
    self, Member, TestNode, allow, bridge_client, check, peer_with, refused, relay_control, stored,
};
use tenant_node::config::Config;
use tonic::Code;
use works_proto::client::v1 as pb;
use works_proto::federation::v1 as fed;

/// The attacked node (a.example, with `limits`), the attacker's node
/// (b.example) peered with it, and a bridge client holding b.example's
/// real certificate.
async fn attacked(limits: impl Fn(&mut Config)) -> (TestNode, TestNode, works_bridge::PeerClient) {
    let a = TestNode::start_with("a.example", limits).await;
    let b = TestNode::start("b.example").await;
    peer_with(&a, &b).await;
    let attacker = bridge_client(&a, &b.tls_files().load_node().unwrap()).await;
    (a, b, attacker)
}

/// A member of the attacked node who may talk to other companies.
async fn reachable_member(node: &TestNode, name: &str) -> Member {
    let member = node.member(name).await;
    allow(&node.admin().await, true, &member.id, true).await;
    member
}

fn profile(user: &str, company: &str, photo: Vec<u8>) -> fed::PublicProfile {
    fed::PublicProfile {
        user: user.into(),
        display_name: "Mallory".into(),
        photo,
        photo_content_type: "image/png".into(),
        company: company.into(),
    }
}

async fn request(
    attacker: &mut works_bridge::PeerClient,
    id: &str,
    from: &str,
    to: &str,
) -> Result<fed::FriendRequestAck, tonic::Status> {
    request_with(attacker, id, profile(from, "B", vec![]), to).await
}

async fn request_with(
    attacker: &mut works_bridge::PeerClient,
    id: &str,
    from: fed::PublicProfile,
    to: &str,
) -> Result<fed::FriendRequestAck, tonic::Status> {
    attacker
        .raw()
        .send_friend_request(fed::FriendRequest {
            request_id: id.into(),
            from: from.user.clone(),
            to: to.into(),
            from_profile: Some(from),
            invitation: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

/// Who sent `who` the friend requests still pending.
async fn pending_from(who: &Member) -> Vec<String> {
    let mut from: Vec<String> = who
        .client
        .contacts
        .clone()
        .list_friend_requests(pb::ListFriendRequestsRequest {})
        .await
        .unwrap()
        .into_inner()
        .requests
        .into_iter()
        .filter(|r| !r.outgoing && r.state == "pending")
        .map(|r| r.user_id)
        .collect();
    from.sort();
    from
}

/// How many of b.example's entries in a.example's audit log are of `kind`.
async fn audited(a: &TestNode, kind: &str) -> usize {
    a.admin()
        .await
        .audit
        .clone()
        .search_audit(pb::AuditSearchRequest {
            peer_tenant: "b.example".into(),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .filter(|e| e.kind == kind)
        .count()
}

async fn request_notices(who: &Member) -> usize {
    who.client
        .profiles
        .clone()
        .list_notices(pb::ListNoticesRequest {})
        .await
        .unwrap()
        .into_inner()
        .notices
        .iter()
        .filter(|n| n.kind == "friend_request")
        .count()
}

#[tokio::test]
async fn friend_requests_from_a_peer_are_limited_at_the_receiver() {
    let (a, _b, mut attacker) = attacked(|c| {
        c.limits.incoming_requests_per_member_hour = 3;
        c.limits.incoming_requests_per_recipient_hour = 4;
        c.limits.incoming_requests_per_peer_hour = 8;
    })
    .await;
    let alice = reachable_member(&a, "alice").await;
    let carol = reachable_member(&a, "carol").await;
    let dave = reachable_member(&a, "dave").await;
    let erin = reachable_member(&a, "erin").await;
    let mallory = "mallory@b.example";

    // The same member asking again and again, each time as a new request:
    // one pending request, one notice.
    for i in 0..25 {
        request(&mut attacker, &format!("again{i}"), mallory, &alice.id)
            .await
            .expect("a repeat is answered as delivered");
    }
    assert_eq!(pending_from(&alice).await, [mallory]);
    assert_eq!(request_notices(&alice).await, 1);

    // One peer member: three new requests an hour.
    request(&mut attacker, "m2", mallory, &carol.id)
        .await
        .unwrap();
    request(&mut attacker, "m3", mallory, &dave.id)
        .await
        .unwrap();
    check(
        request(&mut attacker, "m4", mallory, &erin.id).await,
        Code::ResourceExhausted,
        "mallory@b.example already sent 3 friend requests this hour, the most a.example accepts from one member; try again in ",
    );

    // Made-up members escape the member limit, not the recipient's: alice
    // gets at most four requests (and notices) from b.example an hour.
    for i in 1..=3 {
        request(
            &mut attacker,
            &format!("fake{i}"),
            &format!("fake{i}@b.example"),
            &alice.id,
        )
        .await
        .unwrap();
    }
    check(
        request(&mut attacker, "fake4", "fake4@b.example", &alice.id).await,
        Code::ResourceExhausted,
        "alice@a.example already got 4 friend requests from b.example this hour",
    );

    // Nor the company's: eight new requests from b.example in all.
    request(&mut attacker, "fake5", "fake5@b.example", &erin.id)
        .await
        .unwrap();
    request(&mut attacker, "fake6", "fake6@b.example", &erin.id)
        .await
        .unwrap();
    let refused = request(&mut attacker, "fake7", "fake7@b.example", &erin.id).await;
    check(
        refused,
        Code::ResourceExhausted,
        "members of b.example already sent 8 friend requests this hour, the most a.example accepts from one company; try again in ",
    );
    let message = request(&mut attacker, "fake8", "fake8@b.example", &erin.id)
        .await
        .unwrap_err()
        .message()
        .to_string();
    assert!(
        message.ends_with(" minutes"),
        "a retry hint in minutes: {message}"
    );

    // Nothing refused was stored, and each of ours saw what was accepted.
    assert_eq!(
        pending_from(&alice).await,
        [
            "fake1@b.example",
            "fake2@b.example",
            "fake3@b.example",
            mallory
        ]
    );
    assert_eq!(request_notices(&alice).await, 4);
    assert_eq!(pending_from(&carol).await, [mallory]);
    assert_eq!(pending_from(&dave).await, [mallory]);
    assert_eq!(
        pending_from(&erin).await,
        ["fake5@b.example", "fake6@b.example"]
    );
    assert_eq!(request_notices(&erin).await, 2);
    let logged = a
        .log()
        .lines()
        .filter(|l| l.contains("members of b.example already sent 8 friend requests"))
        .count();
    assert_eq!(logged, 2, "one log line per refusal");
}

#[tokio::test]
async fn reachability_notices_from_a_peer_are_limited() {
    let (_a, _b, mut attacker) = attacked(|c| {
        c.limits.reachability_notices_per_peer_hour = 2;
    })
    .await;
    let made_up: Vec<String> = (0..1001).map(|i| format!("ghost{i}@b.example")).collect();
    let made_up: Vec<&str> = made_up.iter().map(String::as_str).collect();
    refused(
        &relay_control(
            &mut attacker,
            "b.example",
            wire::reachability(&made_up, false),
        )
        .await,
        "at most 1000 members per notice",
    );
    for i in 0..2 {
        let ghost = format!("ghost{i}@b.example");
        stored(
            &relay_control(
                &mut attacker,
                "b.example",
                wire::reachability(&[&ghost], false),
            )
            .await,
        );
    }
    refused(
        &relay_control(
            &mut attacker,
            "b.example",
            wire::reachability(&["ghost9@b.example"], false),
        )
        .await,
        "b.example already sent 2 reachability notices this hour, the most a.example accepts; try again in ",
    );
    // Another tenant's members, or another tenant's name: refused.
    refused(
        &relay_control(
            &mut attacker,
            "b.example",
            wire::reachability(&["carol@c.example"], false),
        )
        .await,
        "b.example cannot speak for carol@c.example",
    );
    refused(
        &relay_control(&mut attacker, "c.example", wire::reachability(&[], false)).await,
        "b.example cannot send a control message as c.example",
    );
}

#[tokio::test]
async fn failed_logins_are_limited_per_member_and_per_address() {
    let a = TestNode::start_with("a.example", |c| {
        c.limits.login_failures_per_member = 3;
        c.limits.login_failures_per_address = 6;
        c.limits.login_window_secs = 5;
    })
    .await;
    let alice = a.member("alice").await;
    let anonymous = a.anonymous().await;
    let login = |member: &str, password: &str| {
        let mut auth = anonymous.auth.clone();
        let request = pb::LoginRequest {
            member_id: member.into(),
            password: password.into(),
        };
        async move { auth.login(request).await.map(|r| r.into_inner()) }
    };

    for _ in 0..3 {
        check(
            login(&alice.id, "a wrong guess").await,
            Code::Unauthenticated,
            "wrong member id or password",
        );
    }
    // Refused before the password is looked at, even the right one.
    let refused = login(&alice.id, support::PASSWORD).await;
    check(
        refused.clone(),
        Code::ResourceExhausted,
        "too many failed logins for alice@a.example; try again in ",
    );
    let message = refused.unwrap_err().message().to_string();
    assert!(message.ends_with(" seconds"), "{message}");

    // Guessing across made-up member ids runs into the address's limit.
    for i in 0..3 {
        check(
            login(&format!("ghost{i}@a.example"), "a wrong guess").await,
            Code::Unauthenticated,
            "wrong member id or password",
        );
    }
    check(
        login("ghost9@a.example", "a wrong guess").await,
        Code::ResourceExhausted,
        "too many failed logins from 127.0.0.1; try again in ",
    );
    assert!(
        a.log()
            .contains("too many failed logins for alice@a.example"),
        "the refusal is logged"
    );

    // Once the window has passed, the right password works again.
    support::until(
        std::time::Duration::from_secs(30),
        "alice can log in again",
        || async { login(&alice.id, support::PASSWORD).await.is_ok() },
    )
    .await;
}

/// A JPEG as a phone writes it: an EXIF block (APP1) with a GPS position
/// right after the start-of-image marker.
fn jpeg_with_location() -> Vec<u8> {
    let mut plain = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
        32,
        24,
        image::Rgb([200, 40, 40]),
    ))
    .write_to(
        &mut std::io::Cursor::new(&mut plain),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    // TIFF header, one IFD entry: the GPS IFD pointer (tag 0x8825).
    let mut exif = b"Exif\0\0MM\0*\0\0\0\x08\0\x01\x88\x25\0\x04\0\0\0\x01\0\0\0\x1a\0\0".to_vec();
    exif.extend_from_slice(b"GPSLatitude 35.6586N GPSLongitude 139.7454E");
    let len = u16::try_from(exif.len() + 2).unwrap().to_be_bytes();
    [&plain[..2], &[0xFF, 0xE1], &len[..], &exif, &plain[2..]].concat()
}

const FAKE_PNG: &[u8] = b"\x89PNG\r\n\x1a\n<html><script>alert(document.cookie)</script></html>";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn photos_from_a_peer_are_decoded_and_encoded_again() {
    let (a, b, alice, bob) = support::pair().await;
    let mut attacker = bridge_client(&a, &b.tls_files().load_node().unwrap()).await;

    // Bytes that only start like a PNG: refused, nothing stored.
    refused(
        &relay_control(
            &mut attacker,
            "b.example",
            wire::profile(profile(&bob.id, "B", FAKE_PNG.to_vec()), &[&alice.id]),
        )
        .await,
        "invalid photo: is not a valid PNG image",
    );
    let seen = alice.contact(&bob.id).await;
    assert!(seen.photo.is_empty(), "no photo from the fake PNG");
    assert_eq!(seen.display_name, "Bob", "nothing of the refused sync");

    // A real JPEG: stored encoded again, without its EXIF block.
    let sent = jpeg_with_location();
    stored(
        &relay_control(
            &mut attacker,
            "b.example",
            wire::profile(profile(&bob.id, "B", sent.clone()), &[&alice.id]),
        )
        .await,
    );
    let seen = alice.contact(&bob.id).await;
    assert_eq!(seen.photo_content_type, "image/jpeg");
    assert_ne!(seen.photo, sent);
    assert!(!contains(&seen.photo, b"Exif"), "the EXIF block is gone");
    assert!(!contains(&seen.photo, b"GPSLatitude"), "so is the location");
    let decoded = image::load_from_memory(&seen.photo).expect("a photo that decodes");
    assert_eq!((decoded.width(), decoded.height()), (32, 24));

    // Accepting one of our requests with a fake photo: refused, and the
    // request stays pending.
    let carol = b.member("carol").await;
    allow(&b.admin().await, true, &carol.id, true).await;
    let asked = alice
        .client
        .contacts
        .clone()
        .send_friend_request(pb::SendFriendRequestRequest {
            user_id: carol.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    check(
        attacker
            .raw()
            .answer_friend_request(fed::FriendAnswer {
                request_id: asked.id.clone(),
                from: carol.id.clone(),
                to: alice.id.clone(),
                accepted: true,
                from_profile: Some(profile(&carol.id, "B", FAKE_PNG.to_vec())),
            })
            .await,
        Code::InvalidArgument,
        "invalid photo: is not a valid PNG image",
    );
    let requests = alice
        .client
        .contacts
        .clone()
        .list_friend_requests(pb::ListFriendRequestsRequest {})
        .await
        .unwrap()
        .into_inner()
        .requests;
    let request = requests.iter().find(|r| r.id == asked.id).unwrap();
    assert_eq!(request.state, "pending");

    // Our own member's upload of the fake PNG.
    check(
        alice
            .client
            .profiles
            .clone()
            .set_profile(pb::SetProfileRequest {
                photo: Some(FAKE_PNG.to_vec()),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "invalid photo: is not a valid PNG image",
    );
}

async fn cli(node: &TestNode, token: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new(support::binary())
        .args(args)
        .env("WORKS_NODE", &node.url)
        .env("WORKS_TOKEN", token)
        .output()
        .await
        .expect("run the cli");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn another_company_has_one_name_shown_with_its_tenant() {
    let (a, b, alice, bob) = support::pair().await;
    a.admin()
        .await
        .admin
        .clone()
        .set_company(pb::SetCompanyRequest {
            name: "Acme Corp".into(),
        })
        .await
        .unwrap();
    let mut attacker = bridge_client(&a, &b.tls_files().load_node().unwrap()).await;

    // One of the peer's members claims our own company's name.
    request_with(
        &mut attacker,
        "spoof1",
        profile("mallory@b.example", "Acme Corp", vec![]),
        &alice.id,
    )
    .await
    .unwrap();
    let request_of = |from: &'static str| {
        let mut contacts = alice.client.contacts.clone();
        async move {
            contacts
                .list_friend_requests(pb::ListFriendRequestsRequest {})
                .await
                .unwrap()
                .into_inner()
                .requests
                .into_iter()
                .find(|r| r.user_id == from)
                .unwrap()
        }
    };
    let mallory = request_of("mallory@b.example").await;
    let bob_seen = alice.contact(&bob.id).await;
    assert_eq!(mallory.tenant, "b.example");
    assert_eq!(bob_seen.tenant, "b.example");
    assert_eq!(
        mallory.company, bob_seen.status,
        "one company name per tenant, not one per member"
    );

    // The peer's company renames itself: every one of its members shows
    // the new name at once.
    b.admin()
        .await
        .admin
        .clone()
        .set_company(pb::SetCompanyRequest {
            name: "Globex Corp".into(),
        })
        .await
        .unwrap();
    support::until(
        support::EVENT_DEADLINE,
        "bob's contact shows the new name",
        || async { alice.contact(&bob.id).await.status == "Globex Corp" },
    )
    .await;
    assert_eq!(request_of("mallory@b.example").await.company, "Globex Corp");

    // The command line always shows the verified tenant beside the name.
    let token = a
        .anonymous()
        .await
        .auth
        .clone()
        .login(pb::LoginRequest {
            member_id: alice.id.clone(),
            password: support::PASSWORD.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let requests = cli(&a, &token, &["request", "list"]).await;
    assert!(
        requests.contains("Mallory (Globex Corp (b.example))"),
        "{requests}"
    );
    let shown = cli(&a, &token, &["contact", "show", &bob.id]).await;
    assert!(
        shown.contains("status:   Globex Corp (b.example)"),
        "{shown}"
    );
    let listed = cli(&a, &token, &["contact", "list"]).await;
    assert!(listed.contains("Globex Corp (b.example)"), "{listed}");
    let json: serde_json::Value =
        serde_json::from_str(&cli(&a, &token, &["contact", "show", &bob.id, "--json"]).await)
            .unwrap();
    assert_eq!(json["tenant"], "b.example");
    assert_eq!(json["status"], "Globex Corp");
}

#[tokio::test]
async fn lookups_and_profile_syncs_from_a_peer_are_limited() {
    let a = TestNode::start_with("a.example", |c| {
        c.limits.incoming_lookups_per_member_hour = 2;
        c.limits.incoming_lookups_per_peer_hour = 3;
        c.limits.profile_syncs_per_member_hour = 2;
    })
    .await;
    let (a, b, alice, bob) = support::pair_of(a, TestNode::start("b.example").await).await;
    let mut attacker = bridge_client(&a, &b.tls_files().load_node().unwrap()).await;
    let lookup = |requester: &str| fed::LookupUserRequest {
        requester: requester.into(),
        user: alice.id.clone(),
    };

    // Each lookup is audited at the attacked node: one member may make two
    // an hour, the company three, made-up members included.
    for _ in 0..2 {
        attacker
            .raw()
            .lookup_user(lookup("mallory@b.example"))
            .await
            .expect("within the limit");
    }
    check(
        attacker
            .raw()
            .lookup_user(lookup("mallory@b.example"))
            .await,
        Code::ResourceExhausted,
        "mallory@b.example already looked up 2 users this hour, the most a.example answers for one member; try again in ",
    );
    attacker
        .raw()
        .lookup_user(lookup("fake1@b.example"))
        .await
        .expect("a member of its own");
    check(
        attacker.raw().lookup_user(lookup("fake2@b.example")).await,
        Code::ResourceExhausted,
        "members of b.example already looked up 3 users this hour, the most a.example answers for one company",
    );
    let audited = audited(&a, "lookup.incoming").await;
    assert_eq!(audited, 3, "refused lookups leave no audit rows");

    // Profile syncs for one member: two an hour.
    for name in ["Bob 1", "Bob 2"] {
        let mut p = profile(&bob.id, "B", vec![]);
        p.display_name = name.into();
        stored(&relay_control(&mut attacker, "b.example", wire::profile(p, &[&alice.id])).await);
    }
    let mut p = profile(&bob.id, "B", vec![]);
    p.display_name = "Bob 3".into();
    refused(
        &relay_control(&mut attacker, "b.example", wire::profile(p, &[&alice.id])).await,
        "bob@b.example's profile was already synced 2 times this hour, the most a.example accepts",
    );
    let seen = alice.contact(&bob.id).await;
    assert_eq!(
        seen.display_name, "Bob 2",
        "the refused sync changed nothing"
    );
}

#[tokio::test]
async fn guessed_invitation_links_count_against_the_request_limits() {
    let (a, _b, mut attacker) = attacked(|c| {
        c.limits.incoming_requests_per_member_hour = 2;
    })
    .await;
    let alice = reachable_member(&a, "alice").await;
    let guess = |id: &str| fed::FriendRequest {
        request_id: id.into(),
        from: "mallory@b.example".into(),
        to: alice.id.clone(),
        from_profile: Some(profile("mallory@b.example", "B", vec![])),
        invitation: "works://invite/guessed.link".into(),
    };
    for id in ["guess1", "guess2"] {
        let refused = attacker.raw().send_friend_request(guess(id)).await;
        assert!(refused.is_err(), "a guessed link is refused");
        assert_ne!(refused.unwrap_err().code(), Code::ResourceExhausted);
    }
    check(
        attacker.raw().send_friend_request(guess("guess3")).await,
        Code::ResourceExhausted,
        "mallory@b.example already sent 2 friend requests this hour",
    );
    let refusals = audited(&a, "request.refused").await;
    assert_eq!(refusals, 2, "no audit row beyond the limit");
}
