//! Friend requests between companies, external contacts, trash and blocks.

use crate::support::{self, Member, TestNode, allow, check, peer_with as peer};
use tonic::Code;
use works_proto::client::v1 as pb;

/// Two peered companies where alice@a and bob@b may talk.
async fn admitted(
    limits: impl Fn(&mut tenant_node::config::Config),
) -> (TestNode, TestNode, Member, Member) {
    let a = TestNode::start_with("a.example", limits).await;
    let b = TestNode::start("b.example").await;
    peer(&a, &b).await;
    let alice = a.member("alice").await;
    let bob = b.member("bob").await;
    allow(&a.admin().await, true, &alice.id, true).await;
    allow(&b.admin().await, true, &bob.id, true).await;
    (a, b, alice, bob)
}

async fn request(who: &Member, user: &str) -> Result<pb::FriendRequest, tonic::Status> {
    who.client
        .contacts
        .clone()
        .send_friend_request(pb::SendFriendRequestRequest {
            user_id: user.into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn requests(who: &Member) -> Vec<pb::FriendRequest> {
    who.client
        .contacts
        .clone()
        .list_friend_requests(pb::ListFriendRequestsRequest {})
        .await
        .unwrap()
        .into_inner()
        .requests
}

async fn answer(who: &Member, id: &str, accept: bool, block: bool) -> Result<(), tonic::Status> {
    let mut contacts = who.client.contacts.clone();
    let r = pb::AnswerFriendRequestRequest {
        id: id.into(),
        block,
    };
    if accept {
        contacts.accept_friend_request(r).await.map(|_| ())
    } else {
        contacts.decline_friend_request(r).await.map(|_| ())
    }
}

async fn contacts(who: &Member, trash: bool) -> Vec<pb::ExternalContact> {
    who.client
        .contacts
        .clone()
        .list_contacts(pb::ListContactsRequest { trash })
        .await
        .unwrap()
        .into_inner()
        .contacts
}

#[tokio::test]
async fn an_accepted_request_makes_each_the_others_contact() {
    let (_a, _b, alice, bob) = admitted(|_| {}).await;
    let mut bob_stream = bob.watch(&[]).await.unwrap();
    let mut alice_stream = alice.watch(&[]).await.unwrap();
    let sent = request(&alice, &bob.id).await.unwrap();
    assert_eq!(
        (sent.user_id.as_str(), sent.outgoing, sent.state.as_str()),
        (bob.id.as_str(), true, "pending")
    );

    let notice = bob_stream.next_notice().await;
    assert_eq!(notice.kind, "friend_request");
    assert!(
        notice
            .text
            .contains("Alice (a.example Inc., alice@a.example)"),
        "{}",
        notice.text
    );
    let incoming = requests(&bob).await;
    assert_eq!(incoming.len(), 1);
    assert_eq!(
        (
            incoming[0].id.as_str(),
            incoming[0].outgoing,
            incoming[0].display_name.as_str(),
            incoming[0].company.as_str()
        ),
        (sent.id.as_str(), false, "Alice", "a.example Inc.")
    );

    answer(&bob, &sent.id, true, false).await.unwrap();
    assert_eq!(alice_stream.next_notice().await.kind, "request_accepted");
    let bobs = contacts_of(&bob).await;
    assert_eq!(bobs.len(), 1);
    assert_eq!(
        (
            bobs[0].user_id.as_str(),
            bobs[0].display_name.as_str(),
            bobs[0].status.as_str()
        ),
        (alice.id.as_str(), "Alice", "a.example Inc.")
    );
    let alices = contacts(&alice, false).await;
    assert_eq!(
        (
            alices[0].user_id.as_str(),
            alices[0].display_name.as_str(),
            alices[0].status.as_str()
        ),
        (bob.id.as_str(), "Bob", "b.example Inc.")
    );
    let fields: serde_json::Value = serde_json::from_str(&alices[0].fields_json).unwrap();
    assert_eq!(
        fields["name"], "Bob",
        "the owner's name starts as the display name"
    );
    assert_eq!(requests(&alice).await[0].state, "accepted");
    assert_eq!(requests(&bob).await[0].state, "accepted");
    check(
        request(&alice, &bob.id).await,
        Code::AlreadyExists,
        "already your contact",
    );
}

async fn contacts_of(who: &Member) -> Vec<pb::ExternalContact> {
    contacts(who, false).await
}

#[tokio::test]
async fn a_request_is_admitted_in_exactly_one_of_sixteen_combinations() {
    let a = TestNode::start("a.example").await;
    let b = TestNode::start("b.example").await;
    peer(&a, &b).await;
    let alice = a.member("alice").await;
    let bob = b.member("bob").await;
    let (a_admin, b_admin) = (a.admin().await, b.admin().await);
    let mut admitted = 0;
    for bits in 0..16u8 {
        let (a_on, a_conn, b_on, b_conn) =
            (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0, bits & 8 != 0);
        allow(&a_admin, a_on, &alice.id, a_conn).await;
        allow(&b_admin, b_on, &bob.id, b_conn).await;
        let result = request(&alice, &bob.id).await;
        match (a_on, a_conn, b_on && b_conn) {
            (false, _, _) => check(result, Code::FailedPrecondition, "not enabled"),
            (true, false, _) => check(result, Code::PermissionDenied, "connected-members"),
            (true, true, false) => check(result, Code::NotFound, "bob@b.example"),
            (true, true, true) => {
                result.unwrap();
                admitted += 1;
            }
        }
    }
    assert_eq!(admitted, 1);
    // Only the admitted request reached bob.
    assert_eq!(requests(&bob).await.len(), 1);
}

#[tokio::test]
async fn declining_and_blocking() {
    let (_a, _b, alice, bob) = admitted(|_| {}).await;
    let first = request(&alice, &bob.id).await.unwrap();
    answer(&bob, &first.id, false, false).await.unwrap();
    assert_eq!(requests(&alice).await[0].state, "declined");
    check(
        answer(&bob, &first.id, true, false).await,
        Code::FailedPrecondition,
        "already declined",
    );

    // Declined is not blocked: alice may ask again; this time bob blocks her.
    let second = request(&alice, &bob.id).await.unwrap();
    answer(&bob, &second.id, false, true).await.unwrap();
    assert_eq!(
        requests(&alice).await[0].state,
        "declined",
        "alice is not told she was blocked"
    );
    check(
        request(&alice, &bob.id).await,
        Code::NotFound,
        "bob@b.example",
    );
    assert_eq!(
        requests(&bob).await.len(),
        2,
        "a blocked user's requests are not delivered"
    );

    bob.client
        .contacts
        .clone()
        .unblock_user(pb::ContactRef {
            user_id: alice.id.clone(),
        })
        .await
        .unwrap();
    let third = request(&alice, &bob.id).await.unwrap();
    answer(&bob, &third.id, true, false).await.unwrap();
    assert_eq!(contacts_of(&bob).await.len(), 1);
    check(
        bob.client
            .contacts
            .clone()
            .unblock_user(pb::ContactRef {
                user_id: alice.id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "not blocked",
    );
    bob.client
        .contacts
        .clone()
        .block_user(pb::ContactRef {
            user_id: alice.id.clone(),
        })
        .await
        .unwrap();
    check(
        bob.client
            .contacts
            .clone()
            .block_user(pb::ContactRef {
                user_id: alice.id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "already blocked",
    );
}

#[tokio::test]
async fn bad_requests_are_refused_precisely() {
    let (a, b, alice, bob) = admitted(|c| c.limits.requests_per_member_hour = 2).await;
    check(
        request(&alice, "carl@a.example").await,
        Code::InvalidArgument,
        "in your own company",
    );
    check(
        request(&alice, "not an id").await,
        Code::InvalidArgument,
        "name@tenant",
    );
    check(
        request(&alice, "zed@z.example").await,
        Code::FailedPrecondition,
        "not peered with z.example",
    );
    check(
        request(&alice, "nobody@b.example").await,
        Code::NotFound,
        "nobody@b.example",
    );
    let sent = request(&alice, &bob.id).await.unwrap();
    check(
        request(&alice, &bob.id).await,
        Code::AlreadyExists,
        "still pending",
    );
    allow(&a.admin().await, true, &alice.id, true).await;
    let carol = a.member("carol").await;
    allow(&a.admin().await, true, &carol.id, true).await;
    check(
        request(&bob, &alice.id).await,
        Code::FailedPrecondition,
        "already asked you",
    );
    check(
        answer(&alice, &sent.id, true, false).await,
        Code::NotFound,
        "friend request",
    );
    check(
        answer(&carol, &sent.id, true, false).await,
        Code::NotFound,
        "friend request",
    );
    check(
        answer(&bob, "01JUNKJUNKJUNKJUNKJUNKJUNK", true, false).await,
        Code::NotFound,
        "friend request",
    );
    check(
        answer(&bob, &sent.id, true, true).await,
        Code::InvalidArgument,
        "only a decline can block",
    );
    // The rate limit: alice sent 1 of 2 this hour ("nobody" and "zed" never left).
    let dave = b.member("dave").await;
    let erin = b.member("erin").await;
    allow(&b.admin().await, true, &dave.id, true).await;
    allow(&b.admin().await, true, &erin.id, true).await;
    request(&alice, &dave.id).await.unwrap();
    check(
        request(&alice, &erin.id).await,
        Code::ResourceExhausted,
        "at most 2 friend requests an hour",
    );
}

#[tokio::test]
async fn trash_restore_and_unknown_status() {
    let (_a, b, alice, bob) = admitted(|_| {}).await;
    let sent = request(&alice, &bob.id).await.unwrap();
    answer(&bob, &sent.id, true, false).await.unwrap();
    let mut c = alice.client.contacts.clone();
    let deleted = c
        .delete_contact(pb::ContactRef {
            user_id: bob.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.trashed);
    assert!(contacts_of(&alice).await.is_empty());
    assert_eq!(contacts(&alice, true).await.len(), 1);
    check(
        c.delete_contact(pb::ContactRef {
            user_id: bob.id.clone(),
        })
        .await,
        Code::FailedPrecondition,
        "in the trash already",
    );
    c.restore_contact(pb::ContactRef {
        user_id: bob.id.clone(),
    })
    .await
    .unwrap();
    assert_eq!(contacts_of(&alice).await.len(), 1);
    check(
        c.restore_contact(pb::ContactRef {
            user_id: bob.id.clone(),
        })
        .await,
        Code::FailedPrecondition,
        "not in the trash",
    );
    check(
        c.get_contact(pb::ContactRef {
            user_id: "zed@b.example".into(),
        })
        .await,
        Code::NotFound,
        "contact zed@b.example",
    );

    // B withdraws bob: alice sees him as unknown.
    allow(&b.admin().await, true, &bob.id, false).await;
    support::until(
        support::RELAY_DEADLINE,
        "alice sees bob unknown",
        || async { alice.contact(&bob.id).await.status == "unknown" },
    )
    .await;
}

async fn befriended() -> (TestNode, TestNode, Member, Member) {
    let (a, b, alice, bob) = admitted(|_| {}).await;
    let sent = request(&alice, &bob.id).await.unwrap();
    answer(&bob, &sent.id, true, false).await.unwrap();
    (a, b, alice, bob)
}

#[tokio::test]
async fn owners_edit_their_own_fields_but_never_the_synced_ones() {
    let (a, _b, alice, bob) = befriended().await;
    let mut c = alice.client.contacts.clone();
    let edit = |f: fn(&mut pb::EditContactRequest)| {
        let mut r = pb::EditContactRequest {
            user_id: bob.id.clone(),
            ..Default::default()
        };
        f(&mut r);
        r
    };
    let edited = c
        .edit_contact(edit(|r| {
            r.name = Some("Bob from B".into());
            r.phones = vec!["+81 3-1234-5678".into()];
            r.replace_phones = true;
            r.emails = vec!["bob@b.example.com".into()];
            r.replace_emails = true;
            r.team = Some("Sales".into());
            r.birth_date = Some("1990-04-01".into());
            r.messengers.insert("LINE".into(), "bob_line".into());
            r.memo = Some("met at the fair".into());
        }))
        .await
        .unwrap()
        .into_inner();
    let fields: serde_json::Value = serde_json::from_str(&edited.fields_json).unwrap();
    assert_eq!(fields["name"], "Bob from B");
    assert_eq!(fields["phones"][0], "+81 3-1234-5678");
    assert_eq!(fields["emails"][0], "bob@b.example.com");
    assert_eq!(fields["team"], "Sales");
    assert_eq!(fields["birth_date"], "1990-04-01");
    assert_eq!(fields["messengers"]["line"], "bob_line");
    assert_eq!(fields["memo"], "met at the fair");
    assert_eq!(edited.display_name, "Bob", "the synced name is untouched");

    let cleared = c
        .edit_contact(edit(|r| r.team = Some(String::new())))
        .await
        .unwrap()
        .into_inner();
    let fields: serde_json::Value = serde_json::from_str(&cleared.fields_json).unwrap();
    assert!(fields.get("team").is_none());
    assert_eq!(fields["memo"], "met at the fair");

    check(
        c.edit_contact(edit(|r| r.display_name = Some("Bobby".into())))
            .await,
        Code::FailedPrecondition,
        "synced from bob@b.example's company",
    );
    check(
        c.edit_contact(edit(|r| r.status = Some("on leave".into())))
            .await,
        Code::FailedPrecondition,
        "read-only",
    );
    check(
        c.edit_contact(edit(|r| {
            r.emails = vec!["nope".into()];
            r.replace_emails = true;
        }))
        .await,
        Code::InvalidArgument,
        "not an email",
    );
    check(
        c.edit_contact(edit(|r| {
            r.phones = vec!["call me".into()];
            r.replace_phones = true;
        }))
        .await,
        Code::InvalidArgument,
        "not a phone",
    );
    check(
        c.edit_contact(edit(|r| r.birth_date = Some("1990-13-40".into())))
            .await,
        Code::InvalidArgument,
        "not a date",
    );
    check(
        c.edit_contact(edit(|r| r.name = Some(" ".into()))).await,
        Code::InvalidArgument,
        "needs a name",
    );
    check(
        c.edit_contact(edit(|r| r.memo = Some("x".repeat(2001))))
            .await,
        Code::InvalidArgument,
        "at most 2000",
    );
    // Another member of A cannot reach alice's contact.
    let carol = a.member("carol").await;
    check(
        carol
            .client
            .contacts
            .clone()
            .edit_contact(edit(|r| r.memo = Some("mine".into())))
            .await,
        Code::NotFound,
        "contact bob@b.example",
    );
}

#[tokio::test]
async fn profile_changes_at_home_reach_the_contacts_at_the_peer() {
    let (a, b, alice, bob) = befriended().await;
    let png = bob
        .client
        .profiles
        .clone()
        .set_profile(pb::SetProfileRequest {
            display_name: Some("Robert".into()),
            photo: Some(support::png(8, 8)),
            clear_photo: false,
        })
        .await
        .unwrap()
        .into_inner()
        .photo;
    // The profile travels in B's queue for A.
    support::until(
        support::RELAY_DEADLINE,
        "alice sees bob's profile",
        || async { alice.contact(&bob.id).await.display_name == "Robert" },
    )
    .await;
    let seen = alice.contact(&bob.id).await;
    assert_eq!(
        (
            seen.display_name.as_str(),
            seen.photo_content_type.as_str(),
            seen.photo
        ),
        ("Robert", "image/png", png)
    );

    b.admin()
        .await
        .admin
        .clone()
        .set_company(pb::SetCompanyRequest {
            name: "B Holdings".into(),
        })
        .await
        .unwrap();
    support::until(
        support::RELAY_DEADLINE,
        "alice sees B's new name",
        || async { alice.contact(&bob.id).await.status == "B Holdings" },
    )
    .await;
    let seen = alice.contact(&bob.id).await;
    assert_eq!(
        seen.status, "B Holdings",
        "the status is the company name, set by B's admin"
    );
    let fields: serde_json::Value = serde_json::from_str(&seen.fields_json).unwrap();
    assert_eq!(
        fields["name"], "Bob",
        "the owner's own name stays as it was"
    );

    // A peer may sync only its own members, and only real images.
    // B's node itself, with its real certificate, calling A's bridge.
    let mut from_b = support::bridge_client(&a, &b.tls_files().load_node().unwrap()).await;
    let profile = |user: &str, photo: Vec<u8>| works_proto::federation::v1::PublicProfile {
        user: user.into(),
        display_name: "Mallory".into(),
        photo,
        photo_content_type: String::new(),
        company: "B".into(),
    };
    support::refused(
        &support::relay_control(
            &mut from_b,
            "b.example",
            support::wire::profile(profile(&alice.id, vec![]), &[&alice.id]),
        )
        .await,
        "b.example cannot speak for alice@a.example",
    );
    support::refused(
        &support::relay_control(
            &mut from_b,
            "b.example",
            support::wire::profile(profile(&bob.id, b"MZ not an image".to_vec()), &[&alice.id]),
        )
        .await,
        "must be a PNG or JPEG image",
    );
    let seen = alice.contact(&bob.id).await;
    assert_eq!(
        seen.display_name, "Robert",
        "a refused sync changes nothing"
    );
}

async fn invite(who: &Member, ttl_secs: u64) -> Result<pb::InvitationLink, tonic::Status> {
    who.client
        .contacts
        .clone()
        .create_invitation(pb::CreateInvitationRequest {
            ttl_secs,
            email: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn redeem(who: &Member, link: &str) -> Result<pb::ExternalContact, tonic::Status> {
    who.client
        .contacts
        .clone()
        .redeem_invitation(pb::RedeemInvitationRequest { link: link.into() })
        .await
        .map(|r| r.into_inner())
}

/// Rewrites the link's claims without re-signing, as an attacker could.
fn tamper(link: &str, field: &str, value: serde_json::Value) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let body = link.strip_prefix("works://invite/").unwrap();
    let (payload, signature) = body.split_once('.').unwrap();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims[field] = value;
    format!(
        "works://invite/{}.{signature}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
    )
}

#[tokio::test]
async fn an_invitation_link_makes_contacts_at_once_and_only_once() {
    let (a, _b, alice, bob) = admitted(|_| {}).await;
    let mut bob_stream = bob.watch(&[]).await.unwrap();
    let invitation = invite(&bob, 0).await.unwrap();
    assert!(
        invitation.link.starts_with("works://invite/"),
        "{}",
        invitation.link
    );
    assert!(invitation.qr_png.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(invitation.qr_svg.contains("<svg"));
    assert!(invitation.qr_text.lines().count() > 10);

    let contact = redeem(&alice, &invitation.link).await.unwrap();
    assert_eq!(
        (
            contact.user_id.as_str(),
            contact.display_name.as_str(),
            contact.status.as_str()
        ),
        (bob.id.as_str(), "Bob", "b.example Inc.")
    );
    let notice = bob_stream.next_notice().await;
    assert_eq!(notice.kind, "contact_added");
    assert_eq!(contacts_of(&bob).await[0].user_id, alice.id);
    assert_eq!(requests(&alice).await[0].state, "accepted");

    // Used once: another member cannot reuse it.
    let carol = a.member("carol").await;
    allow(&a.admin().await, true, &carol.id, true).await;
    check(
        redeem(&carol, &invitation.link).await,
        Code::PermissionDenied,
        "already used",
    );
    assert!(contacts_of(&carol).await.is_empty());
}

#[tokio::test]
async fn tampered_expired_and_malformed_links_are_refused() {
    let (_a, b, alice, bob) = admitted(|_| {}).await;
    let link = invite(&bob, 0).await.unwrap().link;
    check(
        redeem(
            &alice,
            &tamper(&link, "expires_at_ms", serde_json::json!(i64::MAX)),
        )
        .await,
        Code::PermissionDenied,
        "signature does not match",
    );
    let dave = b.member("dave").await;
    allow(&b.admin().await, true, &dave.id, true).await;
    check(
        redeem(&alice, &tamper(&link, "issuer", serde_json::json!(dave.id))).await,
        Code::PermissionDenied,
        "signature does not match",
    );
    check(
        redeem(&alice, "works://invite/garbage").await,
        Code::InvalidArgument,
        "not an invitation link",
    );
    check(
        redeem(&alice, "https://example.com/x").await,
        Code::InvalidArgument,
        "not an invitation link",
    );
    let own = invite(&alice, 0).await.unwrap().link;
    check(
        redeem(&alice, &own).await,
        Code::InvalidArgument,
        "your own company",
    );

    let short = invite(&bob, 1).await.unwrap().link;
    // A fixed wait: the link expires after one second, and there is nothing
    // to poll meanwhile (redeeming it early would use it up).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    check(
        redeem(&alice, &short).await,
        Code::FailedPrecondition,
        "has expired",
    );
    // The genuine link still works after all that.
    redeem(&alice, &link).await.unwrap();

    // Only connected members of companies that enabled it may invite.
    allow(&b.admin().await, true, &dave.id, false).await;
    check(
        invite(&dave, 0).await,
        Code::PermissionDenied,
        "connected-members",
    );
    check(
        invite(&bob, 99_999_999).await,
        Code::InvalidArgument,
        "30 days",
    );
}

#[tokio::test]
async fn an_invitation_can_be_emailed_through_the_configured_relay() {
    let sink = support::SmtpSink::start().await;
    let port = sink.port;
    let b = TestNode::start_with("b.example", move |c| {
        c.smtp = Some(tenant_node::config::SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            from: "works@b.example".into(),
        });
    })
    .await;
    let a = TestNode::start("a.example").await;
    peer(&a, &b).await;
    let bob = b.member("bob").await;
    allow(&b.admin().await, true, &bob.id, true).await;
    let mut contacts = bob.client.contacts.clone();
    let sent = contacts
        .create_invitation(pb::CreateInvitationRequest {
            ttl_secs: 0,
            email: "carol@partner.example".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(sent.emailed);
    let messages = sink.messages.lock().unwrap().clone();
    assert_eq!(messages.len(), 1);
    let mail = &messages[0];
    assert!(mail.contains("To: carol@partner.example"), "{mail}");
    assert!(mail.contains("Bob (b.example Inc.) invites you"), "{mail}");
    assert!(mail.contains("invitation.png"), "{mail}");
    // The link in the mail (soft-wrapped by quoted-printable) is the one returned.
    let unfolded = mail.replace("=\n", "").replace("=3D", "=");
    assert!(unfolded.contains(&sent.link), "{unfolded}");
    check(
        contacts
            .create_invitation(pb::CreateInvitationRequest {
                ttl_secs: 0,
                email: "not an address".into(),
            })
            .await,
        Code::InvalidArgument,
        "not an email address",
    );
    // A node without a relay says so.
    let alice = a.member("alice").await;
    allow(&a.admin().await, true, &alice.id, true).await;
    check(
        alice
            .client
            .contacts
            .clone()
            .create_invitation(pb::CreateInvitationRequest {
                ttl_secs: 0,
                email: "x@y.example".into(),
            })
            .await,
        Code::FailedPrecondition,
        "no mail server configured",
    );
    assert_eq!(sink.messages.lock().unwrap().len(), 1);
}
