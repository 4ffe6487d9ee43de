//! Chat with consumer LINE users: a real node whose LINE Official Account
//! lives on the stand-in LINE platform (`works-line-standin`), driven
//! through the client API as members and admins use it and through the
//! stand-in as LINE users do.

use std::time::Duration;

use tonic::Code;
use works_line_standin::{Endpoint, Fault, Mode};
use works_proto::client::v1 as pb;

use crate::support::line::{
    line_company, line_company_without_web, line_member_id, line_room_with, line_text, set_line,
};
use crate::support::web::http1;
use crate::support::{EVENT_DEADLINE, Member, attachment, check, png, until};

fn sticker_name(event: &pb::RoomEvent) -> Option<&str> {
    match &event.body {
        Some(pb::room_event::Body::Sticker(s)) => Some(&s.name),
        _ => None,
    }
}

async fn until_history(
    member: &Member,
    room: &str,
    what: &str,
    check: impl Fn(&[pb::RoomEvent]) -> bool,
) -> Vec<pb::RoomEvent> {
    let deadline = tokio::time::Instant::now() + EVENT_DEADLINE;
    loop {
        let events = member.history(room).await.expect("history");
        if check(&events) {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn texts(events: &[pb::RoomEvent]) -> Vec<&str> {
    events.iter().filter_map(crate::support::text).collect()
}

async fn audit_has(admin: &tenant_node::client::Client, text: &str) -> bool {
    let found = admin
        .audit
        .clone()
        .search_audit(pb::AuditSearchRequest {
            text: text.into(),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("search the audit")
        .into_inner()
        .entries;
    !found.is_empty()
}

async fn until_delivered(member: &Member, room: &str, event: &str) -> pb::Delivery {
    let deadline = tokio::time::Instant::now() + EVENT_DEADLINE;
    loop {
        let d = member.delivery(room, event).await.expect("delivery");
        if d.state != pb::DeliveryState::Queued as i32 {
            return d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still queued: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The guides' story end to end: invite by link, follow and greeting, the
/// first message binds, the room and the contact, chat both ways with
/// stickers, an image and a file, a LINE group with two members and two
/// LINE users, a rename on our side only, an unsend, and LINE switched off.
#[tokio::test]
async fn the_whole_story_of_the_guides() {
    let a = line_company("a.example", "Welcome to A Inc. on LINE!").await;
    let alice = a.line_member("alice").await;
    let bob = a.line_member("bob").await;
    let carol = a.node.member("carol").await;

    // alice's entry points: her message ID, the link and its QR code.
    let invite = alice
        .client
        .line
        .clone()
        .get_line_invite(pb::GetLineInviteRequest {})
        .await
        .expect("invite")
        .into_inner();
    assert_eq!(invite.message_id, alice.id);
    let basic = a.line.config().basic_id.trim_start_matches('@').to_string();
    assert_eq!(
        invite.link,
        format!("https://line.me/R/oaMessage/%40{basic}/?Hello%20alice%40a.example")
    );
    assert!(invite.qr_png.starts_with(b"\x89PNG"));
    // carol is not permitted for LINE.
    check(
        carol
            .client
            .line
            .clone()
            .get_line_invite(pb::GetLineInviteRequest {})
            .await,
        Code::PermissionDenied,
        "not allowed you to chat with LINE users",
    );

    // Taro follows the account: the admin's greeting.
    let taro = a.line.add_user("Taro Yamada");
    assert_eq!(a.line.follow(&taro).await.unwrap(), 200);
    let sent = a.until_sent(&taro.id, 1).await;
    assert_eq!(line_text(&sent[0]), Some("Welcome to A Inc. on LINE!"));

    // The link's text binds Taro to alice: her LINE room and contact.
    let (status, _) = a.line.text(&taro, "Hello alice@a.example").await.unwrap();
    assert_eq!(status, 200);
    let taro_id = line_member_id(&taro.id);
    let room = line_room_with(&alice, &taro_id).await;
    assert!(room.line && !room.external, "{room:?}");
    assert_eq!(room.kind, pb::RoomKind::Direct as i32);
    let events = until_history(&alice, &room.id, "Taro's first message", |e| {
        texts(e).contains(&"Hello alice@a.example")
    })
    .await;
    assert_eq!(
        events.last().map(|e| e.sender.as_str()),
        Some(taro_id.as_str())
    );
    let contact = alice.contact(&taro_id).await;
    assert_eq!(contact.display_name, "Taro Yamada");
    assert_eq!(contact.status, "LINE");
    assert!(!contact.photo.is_empty(), "LINE's picture is synced");

    // alice answers: text and a LINE sticker, each showing her as sender.
    let hi = alice
        .send(&room.id, "Hi Taro, how can I help?")
        .await
        .unwrap();
    let sticker = alice.send_sticker(&room.id, "line:446:1988").await.unwrap();
    let sent = a.until_sent(&taro.id, 3).await;
    assert_eq!(line_text(&sent[1]), Some("Hi Taro, how can I help?"));
    assert_eq!(sent[1]["sender"]["name"], "Alice");
    assert_eq!(sent[2]["type"], "sticker");
    assert_eq!(
        (sent[2]["packageId"].as_str(), sent[2]["stickerId"].as_str()),
        (Some("446"), Some("1988"))
    );
    let d = until_delivered(&alice, &room.id, &hi.event_id).await;
    assert_eq!(d.state, pb::DeliveryState::Delivered as i32, "{d:?}");
    let d = until_delivered(&alice, &room.id, &sticker.event.unwrap().event_id).await;
    assert_eq!(d.state, pb::DeliveryState::Delivered as i32, "{d:?}");
    // Only LINE's stickers reach LINE users.
    check(
        alice.send_sticker(&room.id, "thumbs-up").await,
        Code::InvalidArgument,
        "line:PACKAGE_ID:STICKER_ID",
    );
    // A sticker LINE does not let accounts send: LINE refuses, and says why.
    let bought = alice.send_sticker(&room.id, "line:99999:1").await.unwrap();
    let d = until_delivered(&alice, &room.id, &bought.event.unwrap().event_id).await;
    assert_eq!(d.state, pb::DeliveryState::Refused as i32, "{d:?}");
    assert!(d.reason.contains("LINE refused it (400)"), "{d:?}");

    // Taro sends a sticker he bought and a photo: both shown, the photo
    // stored here.
    a.line.sticker(&taro, "11537", "52002734").await.unwrap();
    let photo = png(40, 30);
    a.line
        .image(&taro, photo.clone(), "image/png")
        .await
        .unwrap();
    let events = until_history(&alice, &room.id, "Taro's sticker and photo", |e| {
        e.iter().any(|e| attachment(e).is_some())
    })
    .await;
    assert!(
        events
            .iter()
            .any(|e| sticker_name(e) == Some("line:11537:52002734"))
    );
    let image = events.iter().find_map(attachment).unwrap().clone();
    assert_eq!(image.content_type, "image/png");
    let (_, bytes) = alice.download(&image.id).await.expect("download");
    assert_eq!(bytes, photo);

    // A file from alice reaches Taro as a link to this node.
    let report = b"quarterly figures".to_vec();
    alice
        .send_file(&room.id, "report.txt", &report)
        .await
        .unwrap();
    let sent = a.until_sent(&taro.id, 4).await;
    let link = line_text(sent.last().unwrap()).unwrap().to_string();
    assert!(link.starts_with("report.txt ("), "{link}");
    let url = link.rsplit(' ').next().unwrap();
    let web = a.node.web.clone().unwrap();
    let path = url
        .strip_prefix(&web)
        .expect("a link to the node's web port");
    let answer = http1(&web, "GET", path, &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, report);
    // A link with a forged tag is not served.
    let last = if path.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &path[..path.len() - 1]);
    assert_eq!(http1(&web, "GET", &forged, &[]).await.status, 404);

    // A LINE group: Taro and Hanako add the account; Taro's message with
    // alice's code links the group to a room; Hanako joins as she speaks.
    let hanako = a.line.add_user("Hanako");
    let group = a.line.create_group("Project Sakura", &[&taro, &hanako]);
    assert_eq!(a.line.add_bot_to_group(&group).await.unwrap(), 200);
    a.line
        .group_text(&group, &taro, "Let's ask alice@a.example")
        .await
        .unwrap();
    let hanako_id = line_member_id(&hanako.id);
    let group_room = loop {
        let rooms = alice.rooms().await;
        if let Some(r) = rooms
            .into_iter()
            .find(|r| r.line && r.kind == pb::RoomKind::Group as i32)
        {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(group_room.name, "Project Sakura");
    assert_eq!(group_room.master, alice.id);
    a.line
        .group_text(&group, &hanako, "Hello everyone")
        .await
        .unwrap();
    until_history(&alice, &group_room.id, "Hanako in the room", |e| {
        texts(e).contains(&"Hello everyone")
    })
    .await;
    // alice brings bob in; carol is not permitted for LINE.
    let invite_bob = alice
        .client
        .rooms
        .clone()
        .invite_members(pb::InviteMembersRequest {
            room_id: group_room.id.clone(),
            members: vec![bob.id.clone()],
        })
        .await
        .expect("invite bob")
        .into_inner();
    for m in [&alice.id, &bob.id, &taro_id, &hanako_id] {
        assert!(
            invite_bob.members.contains(m),
            "{m} in {:?}",
            invite_bob.members
        );
    }
    check(
        alice
            .client
            .rooms
            .clone()
            .invite_members(pb::InviteMembersRequest {
                room_id: group_room.id.clone(),
                members: vec![carol.id.clone()],
            })
            .await,
        Code::PermissionDenied,
        "carol@a.example is not on a.example's connected-members list for LINE users",
    );
    bob.send(&group_room.id, "Bob here, from sales")
        .await
        .unwrap();
    let group_sent = a.until_sent(&group, 1).await;
    assert_eq!(line_text(&group_sent[0]), Some("Bob here, from sales"));
    assert_eq!(group_sent[0]["sender"]["name"], "Bob");

    // A rename changes the name on our side only: nothing goes to LINE.
    let renamed = alice
        .client
        .rooms
        .clone()
        .rename_room(pb::RenameRoomRequest {
            room_id: group_room.id.clone(),
            name: "Sakura (Taro, Hanako)".into(),
        })
        .await
        .expect("rename")
        .into_inner();
    assert_eq!(renamed.name, "Sakura (Taro, Hanako)");
    bob.send(&group_room.id, "after the rename").await.unwrap();
    let group_sent = a.until_sent(&group, 2).await;
    assert_eq!(group_sent.len(), 2, "{group_sent:?}");

    // Taro takes a message back: gone here, kept in the audit.
    let (_, oops) = a
        .line
        .group_text(&group, &taro, "oops, wrong group")
        .await
        .unwrap();
    until_history(&alice, &group_room.id, "the message", |e| {
        texts(e).contains(&"oops, wrong group")
    })
    .await;
    assert_eq!(
        a.line.group_unsend(&group, &taro, &oops).await.unwrap(),
        200
    );
    until_history(&alice, &group_room.id, "the unsend", |e| {
        !texts(e).contains(&"oops, wrong group")
    })
    .await;
    assert!(!texts(&bob.history(&group_room.id).await.unwrap()).contains(&"oops, wrong group"));
    assert!(audit_has(&a.admin, "oops, wrong group").await);

    // LINE switched off: LINE rooms leave the lists, nothing more goes to
    // LINE or comes in, and the audit keeps everything.
    set_line(&a.admin, Some(false), None).await;
    assert!(alice.rooms().await.iter().all(|r| !r.line));
    check(
        alice.send(&room.id, "still there?").await,
        Code::FailedPrecondition,
        "your company has not enabled chat with LINE users",
    );
    a.line.text(&taro, "hello? anyone?").await.unwrap();
    let admin = a.admin.clone();
    until(
        EVENT_DEADLINE,
        "the audit records the refused message",
        || {
            let admin = admin.clone();
            async move { audit_has(&admin, "hello? anyone?").await }
        },
    )
    .await;
    assert!(!texts(&alice.history(&room.id).await.unwrap()).contains(&"hello? anyone?"));
    assert!(audit_has(&a.admin, "Hello alice@a.example").await);
    // Every push the node made is a valid request by the SDK's own models.
    crate::support::line_sdk::check_pushes_with_sdk(&a.line.pushes());
}

/// A LINE user bound to two members chooses whom they write to, with quick
/// replies carrying the members' codes.
#[tokio::test]
async fn a_line_user_bound_to_two_members_chooses_whom_to_write_to() {
    let a = line_company("a.example", "Welcome!").await;
    let alice = a.line_member("alice").await;
    let bob = a.line_member("bob").await;
    let taro = a.line.add_user("Taro");
    let alice_room = a.bound(&taro, &alice).await;
    a.line
        .text(&taro, "bob@a.example, a question for you")
        .await
        .unwrap();
    let bob_room = line_room_with(&bob, &line_member_id(&taro.id)).await;
    until_history(&bob, &bob_room.id, "the question", |e| {
        texts(e).contains(&"bob@a.example, a question for you")
    })
    .await;
    let sent = a.until_sent(&taro.id, 2).await;
    let choice = sent.last().unwrap();
    let items = choice["quickReply"]["items"]
        .as_array()
        .expect("quick replies");
    let labels: Vec<&str> = items
        .iter()
        .filter_map(|i| i["action"]["label"].as_str())
        .collect();
    assert_eq!(labels, ["Alice", "Bob"]);
    // Later messages go to bob until Taro picks alice.
    a.line.text(&taro, "for bob again").await.unwrap();
    until_history(&bob, &bob_room.id, "for bob", |e| {
        texts(e).contains(&"for bob again")
    })
    .await;
    let pick = items[0]["action"]["text"].as_str().unwrap();
    a.line.text(&taro, pick).await.unwrap();
    let sent = a.until_sent(&taro.id, 3).await;
    assert_eq!(
        line_text(sent.last().unwrap()),
        Some("You are now writing to Alice.")
    );
    a.line.text(&taro, "for alice").await.unwrap();
    let events = until_history(&alice, &alice_room.id, "for alice", |e| {
        texts(e).contains(&"for alice")
    })
    .await;
    assert!(
        texts(&events).contains(&pick),
        "the choice shows in the room"
    );
    assert!(!texts(&bob.history(&bob_room.id).await.unwrap()).contains(&"for alice"));
}

/// A push LINE never answers is given up after the request timeout and
/// sent again by the same retry key: the LINE user gets it once.
#[tokio::test]
async fn a_push_line_never_answers_is_sent_again_by_its_retry_key() {
    let a = line_company("a.example", "").await;
    let alice = a.line_member("alice").await;
    let taro = a.line.add_user("Taro");
    let room = a.bound(&taro, &alice).await;
    a.line.fail_next(Endpoint::Push, Fault::Hang, 1);
    let sent = alice.send(&room.id, "after the hang").await.unwrap();
    let id = sent.event_id;
    // The node gives a request up after 10 s.
    until(Duration::from_secs(30), "the push sent again", || async {
        !a.line.conversation(&taro.id).is_empty()
    })
    .await;
    let got = a.line.conversation(&taro.id);
    assert_eq!(line_text(&got[0]), Some("after the hang"));
    let d = until_delivered(&alice, &room.id, &id).await;
    assert_eq!(d.state, pb::DeliveryState::Delivered as i32, "{d:?}");
    let pushes: Vec<_> = a
        .line
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v2/bot/message/push")
        .collect();
    assert_eq!(
        pushes.iter().map(|r| r.status).collect::<Vec<_>>(),
        [0, 200],
        "the hung push, then the one answered"
    );
    assert_eq!(pushes[0].retry_key, pushes[1].retry_key);
    assert_eq!(a.line.conversation(&taro.id).len(), 1);
}

/// Through LINE answering 429 (with Retry-After) and 500, then recovering,
/// every message reaches the LINE user once, in order.
#[tokio::test]
async fn delivery_goes_through_a_line_outage_once_and_in_order() {
    let a = line_company("a.example", "").await;
    let alice = a.line_member("alice").await;
    let taro = a.line.add_user("Taro");
    let room = a.bound(&taro, &alice).await;
    a.line.fail_next(
        Endpoint::Push,
        Fault::TooManyRequests {
            retry_after_secs: Some(1),
        },
        2,
    );
    a.line.fail_next(Endpoint::Push, Fault::ServerError, 3);
    let mut ids = Vec::new();
    for i in 0..20 {
        let sent = alice
            .send_keyed(&room.id, &format!("key-{i}"), &format!("message {i}"))
            .await
            .unwrap();
        assert_eq!(
            sent.delivery.unwrap().state,
            pb::DeliveryState::Queued as i32
        );
        ids.push(sent.event.unwrap().event_id);
    }
    let sent = a.until_sent(&taro.id, 20).await;
    let got: Vec<&str> = sent.iter().filter_map(line_text).collect();
    let want: Vec<String> = (0..20).map(|i| format!("message {i}")).collect();
    assert_eq!(got, want);
    for id in &ids {
        let d = until_delivered(&alice, &room.id, id).await;
        assert_eq!(d.state, pb::DeliveryState::Delivered as i32, "{d:?}");
    }
    // A resend with the same key stores nothing and reports where the
    // message stands now.
    let again = alice
        .send_keyed(&room.id, "key-0", "message 0")
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(
        again.delivery.unwrap().state,
        pb::DeliveryState::Delivered as i32
    );
    assert_eq!(a.line.conversation(&taro.id).len(), 20);
    let refused: Vec<_> = a
        .line
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v2/bot/message/push" && r.status != 200)
        .map(|r| r.status)
        .collect();
    assert_eq!(refused, [429, 429, 500, 500, 500]);
}

/// The node killed while LINE is down with messages queued: after the
/// restart, each goes once, in order.
#[tokio::test]
async fn a_restart_mid_queue_loses_and_doubles_nothing() {
    let mut a = line_company("a.example", "").await;
    let alice = a.line_member("alice").await;
    let taro = a.line.add_user("Taro");
    let room = a.bound(&taro, &alice).await;
    a.line.set_outage(Some(Fault::ServerError));
    for i in 0..10 {
        alice.send(&room.id, &format!("queued {i}")).await.unwrap();
    }
    a.node.kill().await;
    a.line.set_outage(None);
    a.node.restart().await;
    let sent = a.until_sent(&taro.id, 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent_after = a.line.conversation(&taro.id);
    assert_eq!(
        sent.len(),
        sent_after.len(),
        "nothing more after all arrived"
    );
    let got: Vec<&str> = sent_after.iter().filter_map(line_text).collect();
    let want: Vec<String> = (0..10).map(|i| format!("queued {i}")).collect();
    assert_eq!(got, want);
}

/// Webhooks that do not carry the channel's signature are refused and
/// change nothing; LINE's redelivery and standby events are recorded once
/// and never answered twice; the console's URL check gets its 200.
/// A node with no web port serves LINE's webhook on `[line]
/// webhook_listen`: signed webhooks are applied, unsigned ones refused.
#[tokio::test]
async fn the_webhook_is_served_on_a_port_of_its_own_without_a_web_port() {
    let a = line_company_without_web("a.example", "Welcome from the webhook port!").await;
    assert!(a.node.web.is_none());
    let alice = a.line_member("alice").await;
    let taro = a.line.add_user("Taro");
    assert_eq!(a.line.follow(&taro).await.unwrap(), 200);
    let sent = a.until_sent(&taro.id, 1).await;
    assert_eq!(line_text(&sent[0]), Some("Welcome from the webhook port!"));
    let room = a.bound(&taro, &alice).await;
    a.line
        .text(&taro, "through the webhook port")
        .await
        .unwrap();
    until_history(&alice, &room.id, "Taro's message", |e| {
        texts(e).contains(&"through the webhook port")
    })
    .await;
    let body = br#"{"destination":"Uxxx","events":[]}"#;
    assert_eq!(a.line.post_raw(body, None).await.unwrap(), 401);
    let log = a.node.log();
    assert!(
        log.contains("LINE's webhook served on a port of its own"),
        "{log}"
    );
}

#[tokio::test]
async fn bad_and_replayed_webhooks() {
    let a = line_company("a.example", "Welcome!").await;
    let alice = a.line_member("alice").await;
    let taro = a.line.add_user("Taro");
    let room = a.bound(&taro, &alice).await;
    assert_eq!(a.line.verify().await.unwrap(), 200);
    let body = br#"{"destination":"Uxxx","events":[{"type":"message","mode":"active","timestamp":1,"webhookEventId":"01FORGED","deliveryContext":{"isRedelivery":false},"source":{"type":"user","userId":"U00000000000000000000000000000000"},"message":{"type":"text","id":"1","text":"forged"}}]}"#;
    assert_eq!(a.line.post_raw(body, None).await.unwrap(), 401);
    assert_eq!(
        a.line
            .post_raw(body, Some("bm90IGEgc2lnbmF0dXJl"))
            .await
            .unwrap(),
        401
    );
    // Our member's message, replayed: stored once.
    a.line.text(&taro, "just once").await.unwrap();
    assert_eq!(a.line.redeliver_last().await.unwrap(), 200);
    a.line.text(&taro, "after the replay").await.unwrap();
    let events = until_history(&alice, &room.id, "after the replay", |e| {
        texts(e).contains(&"after the replay")
    })
    .await;
    assert_eq!(
        texts(&events).iter().filter(|t| **t == "just once").count(),
        1
    );
    assert!(!texts(&events).contains(&"forged"));
    assert!(!audit_has(&a.admin, "forged").await);
    let log = a.node.log();
    assert!(log.contains("LINE webhook refused: bad signature"), "{log}");
    assert!(
        log.contains("LINE webhook refused: no x-line-signature"),
        "{log}"
    );
    // Standby: recorded, not answered (no greeting).
    a.line.set_mode(Mode::Standby);
    let jiro = a.line.add_user("Jiro");
    a.line.follow(&jiro).await.unwrap();
    let admin = a.admin.clone();
    until(EVENT_DEADLINE, "the standby follow is audited", || {
        let admin = admin.clone();
        async move { audit_has(&admin, "standby").await }
    })
    .await;
    assert!(a.line.conversation(&jiro.id).is_empty());
}

/// With file transfer restricted in rooms with LINE users, our members
/// cannot send files there; what LINE users send still arrives.
#[tokio::test]
async fn restricted_files_in_rooms_with_line_users() {
    let a = line_company("a.example", "").await;
    let alice = a.line_member("alice").await;
    let taro = a.line.add_user("Taro");
    let room = a.bound(&taro, &alice).await;
    a.admin
        .line
        .clone()
        .set_line_settings(pb::SetLineSettingsRequest {
            restrict_files: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    check(
        alice.send_file(&room.id, "secret.txt", b"no").await,
        Code::FailedPrecondition,
        "restricts file transfer in rooms with LINE users",
    );
    let photo = png(8, 8);
    a.line
        .image(&taro, photo.clone(), "image/png")
        .await
        .unwrap();
    let events = until_history(&alice, &room.id, "Taro's photo", |e| {
        e.iter().any(|e| attachment(e).is_some())
    })
    .await;
    let image = events.iter().find_map(attachment).unwrap();
    assert_eq!(alice.download(&image.id).await.unwrap().1, photo);
}

/// LINE contacts: own fields editable, deleting keeps the conversation and
/// goes to the trash, refused while a colleague chats with the LINE user;
/// restore; block and unblock.
#[tokio::test]
async fn line_contacts_follow_the_contacts_guide() {
    let a = line_company("a.example", "").await;
    let alice = a.line_member("alice").await;
    let bob = a.line_member("bob").await;
    let taro = a.line.add_user("Taro");
    let taro_id = line_member_id(&taro.id);
    let room = a.bound(&taro, &alice).await;
    let edited = alice
        .client
        .contacts
        .clone()
        .edit_contact(pb::EditContactRequest {
            user_id: taro_id.clone(),
            name: Some("Taro (Sakura Ltd.)".into()),
            phones: vec!["+81 3 1234 5678".into()],
            replace_phones: true,
            ..Default::default()
        })
        .await
        .expect("edit")
        .into_inner();
    assert_eq!(edited.display_name, "Taro", "LINE's name stays read-only");
    assert!(
        edited.fields_json.contains("Taro (Sakura Ltd.)"),
        "{}",
        edited.fields_json
    );
    // LINE's new name syncs; the member's own fields stay.
    a.line.rename_user(&taro, "Taro Y.");
    a.line.follow(&taro).await.unwrap();
    until(EVENT_DEADLINE, "the new LINE name", || {
        let c = alice.client.contacts.clone();
        let id = taro_id.clone();
        async move {
            c.clone()
                .get_contact(pb::ContactRef { user_id: id })
                .await
                .map(|r| r.into_inner().display_name == "Taro Y.")
                .unwrap_or(false)
        }
    })
    .await;
    // Deleted: in the trash, the conversation goes on.
    let trashed = alice
        .client
        .contacts
        .clone()
        .delete_contact(pb::ContactRef {
            user_id: taro_id.clone(),
        })
        .await
        .expect("delete")
        .into_inner();
    assert!(trashed.trashed);
    alice
        .send(&room.id, "still talking")
        .await
        .expect("a deleted LINE contact keeps the conversation");
    a.line.text(&taro, "me too").await.unwrap();
    until_history(&alice, &room.id, "Taro's answer", |e| {
        texts(e).contains(&"me too")
    })
    .await;
    alice
        .client
        .contacts
        .clone()
        .restore_contact(pb::ContactRef {
            user_id: taro_id.clone(),
        })
        .await
        .expect("restore");
    // bob chats with Taro too: alice cannot delete him now.
    a.line
        .text(&taro, &format!("Hello {}", bob.id))
        .await
        .unwrap();
    line_room_with(&bob, &taro_id).await;
    check(
        alice
            .client
            .contacts
            .clone()
            .delete_contact(pb::ContactRef {
                user_id: taro_id.clone(),
            })
            .await,
        Code::FailedPrecondition,
        "bob@a.example",
    );
    // Blocked: nothing more from or to Taro in alice's room.
    alice
        .client
        .contacts
        .clone()
        .block_user(pb::ContactRef {
            user_id: taro_id.clone(),
        })
        .await
        .expect("block");
    check(
        alice.send(&room.id, "blocked?").await,
        Code::FailedPrecondition,
        "you blocked this LINE user",
    );
    alice
        .client
        .contacts
        .clone()
        .unblock_user(pb::ContactRef {
            user_id: taro_id.clone(),
        })
        .await
        .expect("unblock");
    alice
        .send(&room.id, "unblocked")
        .await
        .expect("send after unblock");
}

/// A LINE group's members come and go with the group; files and videos
/// from LINE users are kept here under their names; our member's photo is
/// the icon LINE shows beside their messages.
#[tokio::test]
async fn line_groups_follow_their_members_and_files_arrive_whole() {
    let a = line_company("a.example", "").await;
    let alice = a.line_member("alice").await;
    alice
        .client
        .profiles
        .clone()
        .set_profile(pb::SetProfileRequest {
            photo: Some(png(64, 64)),
            ..Default::default()
        })
        .await
        .expect("set a photo");
    let taro = a.line.add_user("Taro");
    let hanako = a.line.add_user("Hanako");
    let jiro = a.line.add_user("Jiro");
    let group = a.line.create_group("Sakura", &[&taro, &hanako]);
    a.line.add_bot_to_group(&group).await.unwrap();
    a.line
        .group_text(&group, &taro, "alice@a.example, welcome")
        .await
        .unwrap();
    let room = loop {
        if let Some(r) = alice.rooms().await.into_iter().find(|r| r.line) {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (taro_id, hanako_id, jiro_id) = (
        line_member_id(&taro.id),
        line_member_id(&hanako.id),
        line_member_id(&jiro.id),
    );
    // Jiro is added to the group: he is in the room before he speaks.
    a.line.group_member_joined(&group, &jiro).await.unwrap();
    // Hanako was never in the room (she has not spoken): her leaving
    // changes nothing; Taro leaves and is out.
    a.line.group_member_left(&group, &taro).await.unwrap();
    let mut members = Vec::new();
    let deadline = tokio::time::Instant::now() + EVENT_DEADLINE;
    while tokio::time::Instant::now() < deadline {
        members = alice
            .rooms()
            .await
            .into_iter()
            .find(|r| r.id == room.id)
            .unwrap()
            .members;
        if members.contains(&jiro_id) && !members.contains(&taro_id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        members.contains(&jiro_id) && !members.contains(&taro_id),
        "{members:?}"
    );
    assert!(!members.contains(&hanako_id), "{members:?}");
    // alice answers in the group: her photo is the icon LINE shows.
    alice.send(&room.id, "Hello Jiro").await.unwrap();
    let sent = a.until_sent(&group, 1).await;
    let icon = sent[0]["sender"]["iconUrl"]
        .as_str()
        .expect("an icon")
        .to_string();
    let web = a.node.web.clone().unwrap();
    let answer = http1(&web, "GET", icon.strip_prefix(&web).unwrap(), &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("image/png"));
    // Jiro writes to alice directly and sends a video and a file.
    a.line.follow(&jiro).await.unwrap();
    a.line.group_text(&group, &jiro, "a clip").await.unwrap();
    a.line
        .text(&jiro, "alice@a.example, the invoice")
        .await
        .unwrap();
    let direct = line_room_with(&alice, &jiro_id).await;
    let clip = vec![7u8; 5000];
    a.line
        .video(&jiro, clip.clone(), "video/mp4", 1500)
        .await
        .unwrap();
    let invoice = b"%PDF-1.4 invoice".to_vec();
    a.line
        .file(&jiro, "invoice 2026-11.pdf", invoice.clone())
        .await
        .unwrap();
    let events = until_history(&alice, &direct.id, "Jiro's files", |e| {
        e.iter().filter(|e| attachment(e).is_some()).count() == 2
    })
    .await;
    let files: Vec<_> = events.iter().filter_map(attachment).collect();
    assert_eq!(files[0].content_type, "video/mp4");
    assert_eq!(alice.download(&files[0].id).await.unwrap().1, clip);
    assert_eq!(files[1].name, "invoice 2026-11.pdf");
    assert_eq!(alice.download(&files[1].id).await.unwrap().1, invoice);
}

/// What LINE was answered 200 for is in the inbox: a node killed while
/// LINE's profile endpoint fails processes it after its restart, once.
#[tokio::test]
async fn a_webhook_answered_is_processed_after_a_restart() {
    let mut a = line_company("a.example", "Welcome back!").await;
    a.line.set_outage(Some(Fault::ServerError));
    let taro = a.line.add_user("Taro");
    assert_eq!(a.line.follow(&taro).await.unwrap(), 200);
    let line = a.line.clone();
    until(
        EVENT_DEADLINE,
        "the node asked LINE for Taro's profile",
        || {
            let line = line.clone();
            async move {
                line.requests()
                    .iter()
                    .any(|r| r.path.starts_with("/v2/bot/profile/") && r.status == 500)
            }
        },
    )
    .await;
    a.node.kill().await;
    a.line.set_outage(None);
    a.node.restart().await;
    let sent = a.until_sent(&taro.id, 1).await;
    assert_eq!(line_text(&sent[0]), Some("Welcome back!"));
    // Another start processes it no more: Taro's next follow is greeted
    // once, and the queue to LINE is in order, so a greeting sent again
    // would have come before it.
    a.node.restart().await;
    assert_eq!(a.line.follow(&taro).await.unwrap(), 200);
    let sent = a.until_sent(&taro.id, 2).await;
    assert_eq!(
        sent.iter().filter_map(line_text).collect::<Vec<_>>(),
        ["Welcome back!", "Welcome back!"]
    );
}
