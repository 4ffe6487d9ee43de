//! Control messages between nodes (reachability, profiles, CAs) travel in
//! the durable per-peer outbox: a peer that is down hears them once it is
//! back, in order, and nothing is told where admission refuses it.

use crate::support::{
    self, Member, RELAY_DEADLINE, TestNode, allow, befriend, check, pair, peers, until,
};
use tenant_node::client::Client;
use tonic::Code;
use works_proto::client::v1 as pb;

async fn set_profile(who: &Member, name: &str, photo: Option<Vec<u8>>) -> pb::Profile {
    who.client
        .profiles
        .clone()
        .set_profile(pb::SetProfileRequest {
            display_name: Some(name.into()),
            photo,
            clear_photo: false,
        })
        .await
        .expect("set profile")
        .into_inner()
}

async fn external(admin: &Client, enabled: bool) {
    works_tests::scenario::set_external(admin, enabled)
        .await
        .expect("external settings");
}

/// The audit entries of `kind` that `filter` finds.
async fn audited(
    admin: &Client,
    kind: &str,
    filter: pb::AuditSearchRequest,
) -> Vec<pb::AuditEntry> {
    admin
        .audit
        .clone()
        .search_audit(filter)
        .await
        .expect("audit")
        .into_inner()
        .entries
        .into_iter()
        .filter(|e| e.kind == kind)
        .collect()
}

async fn connect(admin: &Client, member: &str, on: bool) {
    works_tests::scenario::set_connected(admin, member, on)
        .await
        .expect("connected members");
}

async fn block(who: &Member, user: &str) {
    who.client
        .contacts
        .clone()
        .block_user(pb::ContactRef {
            user_id: user.into(),
        })
        .await
        .expect("block");
}

#[tokio::test]
async fn a_peer_that_was_down_hears_that_members_became_unknown_once_it_is_back() {
    let (a, mut b, alice, bob) = pair().await;
    let direct = support::room_with(&bob, &alice.id).await;
    bob.send(&direct.id, "before").await.expect("send");
    support::until_texts(&alice, &direct.id, 1).await;
    b.kill().await;

    external(&a.admin().await, false).await;
    b.restart().await;
    let bob = b.login(&bob.id).await;
    until(RELAY_DEADLINE, "bob sees alice as unknown", || async {
        bob.contact(&alice.id).await.status == "unknown"
    })
    .await;
    check(
        bob.client
            .contacts
            .clone()
            .find_user(pb::FindUserRequest {
                user_id: alice.id.clone(),
            })
            .await,
        Code::NotFound,
        "alice@a.example (unknown)",
    );
    // Alice is out of the room: nothing of bob's reaches her any more.
    let _ = bob.send(&direct.id, "after").await;
    assert!(
        alice.rooms().await.iter().all(|r| r.id != direct.id),
        "the room left alice's list"
    );
    check(
        alice.history(&direct.id).await,
        Code::PermissionDenied,
        "alice@a.example is not a member of room",
    );
}

#[tokio::test]
async fn a_profile_change_made_while_the_peer_is_down_arrives_once_it_is_back() {
    let (_a, mut b, alice, bob) = pair().await;
    b.kill().await;
    let photo = set_profile(&alice, "Alicia", Some(support::png(16, 16)))
        .await
        .photo;
    // A second change while it is down replaces the first in the queue.
    set_profile(&alice, "Alicia Liddell", None).await;
    b.restart().await;
    let bob = b.login(&bob.id).await;
    until(RELAY_DEADLINE, "bob sees alice's new profile", || async {
        bob.contact(&alice.id).await.display_name == "Alicia Liddell"
    })
    .await;
    let seen = bob.contact(&alice.id).await;
    assert_eq!(
        (seen.photo_content_type.as_str(), seen.photo),
        ("image/png", photo)
    );
    let synced = audited(
        &b.admin().await,
        "profile.synced",
        pb::AuditSearchRequest {
            external_user: alice.id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(synced.len(), 1, "one sync, the latest: {synced:?}");
}

/// Alice's profile reaches bob only while both halves admit them; dave, a
/// colleague of alice's whom bob also holds, is the marker: the outbox
/// keeps order, so once bob sees dave's change, any earlier change of
/// alice's would have arrived.
#[tokio::test]
async fn no_profile_is_pushed_where_admission_refuses_it() {
    let (a, b, alice, bob) = pair().await;
    let a_admin = a.admin().await;
    let dave = a.member("dave").await;
    allow(&a_admin, true, &dave.id, true).await;
    befriend(&dave, &bob).await;
    let marker = |n: u32| {
        let (dave, bob) = (&dave, &bob);
        async move {
            let name = format!("Dave {n}");
            set_profile(dave, &name, None).await;
            until(RELAY_DEADLINE, "bob sees dave's change", || async {
                bob.contact(&dave.id).await.display_name == name
            })
            .await;
        }
    };
    let pushed = || async {
        audited(
            &a_admin,
            "profile.pushed",
            pb::AuditSearchRequest {
                member: alice.id.clone(),
                ..Default::default()
            },
        )
        .await
        .len()
    };

    // Bob blocked alice: A still sends (it cannot know), B applies nothing.
    block(&bob, &alice.id).await;
    set_profile(&alice, "Alice 1", None).await;
    marker(1).await;
    assert_eq!(bob.contact(&alice.id).await.display_name, "Alice");
    // Alice blocked bob: A sends nothing.
    let before = pushed().await;
    block(&alice, &bob.id).await;
    set_profile(&alice, "Alice 2", None).await;
    assert_eq!(
        pushed().await,
        before,
        "nothing queued for a blocked contact"
    );

    // Alice no longer connected: nothing queued.
    let b2 = b.member("bob2").await;
    allow(&b.admin().await, true, &b2.id, true).await;
    befriend(&alice, &b2).await;
    connect(&a_admin, &alice.id, false).await;
    let before = pushed().await;
    set_profile(&alice, "Alice 3", None).await;
    assert_eq!(
        pushed().await,
        before,
        "nothing queued for a disconnected member"
    );
    marker(2).await;
    assert_eq!(
        b2.contact(&alice.id).await.display_name,
        "Alice 2",
        "bob2 keeps the name alice had when they became contacts"
    );

    // External messaging off: nothing queued for anyone.
    connect(&a_admin, &alice.id, true).await;
    until(RELAY_DEADLINE, "bob2 sees alice again", || async {
        b2.contact(&alice.id).await.display_name == "Alice 3"
    })
    .await;
    external(&a_admin, false).await;
    let before = pushed().await;
    set_profile(&alice, "Alice 4", None).await;
    assert_eq!(pushed().await, before, "nothing queued while off");
}

#[tokio::test]
async fn the_member_who_accepts_a_request_has_the_requesters_photo() {
    let a = TestNode::start("a.example").await;
    let b = TestNode::start("b.example").await;
    support::peer_with(&a, &b).await;
    let alice = a.member("alice").await;
    let bob = b.member("bob").await;
    allow(&a.admin().await, true, &alice.id, true).await;
    allow(&b.admin().await, true, &bob.id, true).await;
    let photo = set_profile(&alice, "Alice", Some(support::png(12, 12)))
        .await
        .photo;
    befriend(&alice, &bob).await;
    let seen = bob.contact(&alice.id).await;
    assert_eq!(
        (seen.photo_content_type.as_str(), seen.photo),
        ("image/png", photo),
        "bob has alice's photo as soon as he accepted"
    );
}

#[tokio::test]
async fn a_ca_change_over_reaches_a_peer_that_was_down() {
    let a = TestNode::start("a.example").await;
    let mut b = TestNode::start("b.example").await;
    support::peer_with(&a, &b).await;
    let a_admin = a.admin().await;
    b.kill().await;

    let change = a_admin
        .peering
        .clone()
        .rotate_ca(pb::RotateCaRequest {})
        .await
        .expect("rotate")
        .into_inner();
    let new_fp = change.ca.unwrap().fingerprint;
    assert!(!change.peers[0].told, "{:?}", change.peers);
    assert!(
        change.peers[0].detail.contains("queued for b.example"),
        "{:?}",
        change.peers
    );
    check(
        a_admin
            .peering
            .clone()
            .retire_ca(pb::RetireCaRequest {})
            .await,
        Code::FailedPrecondition,
        "b.example has not yet acknowledged the new CA",
    );

    b.restart().await;
    let b_admin = b.admin().await;
    until(RELAY_DEADLINE, "b trusts both of a's CAs", || async {
        peers(&b_admin).await[0].ca_fingerprints.len() == 2
    })
    .await;
    let test = |admin: Client, other: &'static str| async move {
        admin
            .peering
            .clone()
            .test_peer(pb::TestPeerRequest {
                tenant: other.into(),
            })
            .await
            .expect("test peer")
            .into_inner()
            .ok
    };
    assert!(test(b_admin.clone(), "a.example").await);
    assert!(test(a_admin.clone(), "b.example").await);

    let retired = a_admin
        .peering
        .clone()
        .retire_ca(pb::RetireCaRequest {})
        .await
        .expect("retire")
        .into_inner();
    assert!(retired.peers[0].told, "{:?}", retired.peers);
    assert_eq!(peers(&b_admin).await[0].ca_fingerprints, vec![new_fp]);
    assert!(test(b_admin.clone(), "a.example").await);
}
