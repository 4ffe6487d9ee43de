//! The stand-in LINE platform speaks LINE's real contract, as LINE's official
//! Python SDK (line-bot-sdk) reads it: the SDK as a bot against the
//! stand-in's API, the SDK's webhook parser on the stand-in's webhooks, and
//! the SDK's request model as the checker of recorded pushes.

use std::ffi::OsStr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use works_line_standin::{Config, LinePlatform, Mode};

use crate::support::line_sdk::{
    check_push_bodies_with_sdk, check_pushes_with_sdk, run_contract, sdk_python,
};

/// A webhook receiver on 127.0.0.1:0 that answers 200 and counts.
async fn webhook_receiver() -> (String, Arc<Mutex<usize>>) {
    let count = Arc::new(Mutex::new(0usize));
    let seen = count.clone();
    let app = Router::new().route(
        "/line/webhook",
        post(move |_body: Bytes| {
            let seen = seen.clone();
            async move {
                *seen.lock().unwrap() += 1;
                "OK"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind the webhook receiver");
    let url = format!("http://{}/line/webhook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, count)
}

/// The SDK's run, off the runtime's thread so the stand-in keeps serving.
async fn contract(mode: &'static str, args: Vec<std::ffi::OsString>) -> Value {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        run_contract(mode, &args)
    })
    .await
    .expect("the contract script's thread")
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn ensure_sdk() {
    tokio::task::spawn_blocking(sdk_python)
        .await
        .expect("make the SDK's virtual environment");
}

fn last_event(line: &LinePlatform) -> Value {
    let sent = line.sent_webhooks();
    sent.last().expect("a webhook was sent").json()["events"][0].clone()
}

#[tokio::test]
async fn the_sdk_as_a_bot_gets_lines_answers_from_the_stand_in() {
    ensure_sdk().await;
    let line = LinePlatform::start(Config::generate()).await.unwrap();
    let (hook, _) = webhook_receiver().await;
    line.set_webhook(&hook);
    let alice = line.add_user("Alice Sato");
    let bob = line.add_user("Bob");
    assert_eq!(line.follow(&alice).await.unwrap(), 200);
    let reply_token = last_event(&line)["replyToken"]
        .as_str()
        .unwrap()
        .to_string();
    let group = line.create_group("Project Kiwi", &[&alice, &bob]);
    assert_eq!(line.add_bot_to_group(&group).await.unwrap(), 200);
    let image: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let (status, image_id) = line
        .image(&alice, image.clone(), "image/jpeg")
        .await
        .unwrap();
    assert_eq!(status, 200);

    let arg = json!({
        "url": line.url(),
        "access_token": line.config().access_token,
        "user_id": alice.id,
        "group_id": group,
        "image_message_id": image_id,
        "reply_token": reply_token,
    });
    let got = contract("client", vec![arg.to_string().into()]).await;

    // What the SDK parsed.
    assert_eq!(got["push"]["class"], "PushMessageResponse");
    assert_eq!(got["push"]["sent_messages"].as_array().unwrap().len(), 2);
    assert_eq!(got["push_again"]["status"], 409);
    assert_eq!(got["push_six"]["status"], 400);
    assert_eq!(got["profile_unknown"]["status"], 404);
    assert_eq!(got["profile"]["class"], "UserProfileResponse");
    assert_eq!(got["profile"]["display_name"], "Alice Sato");
    assert_eq!(got["profile"]["user_id"], alice.id);
    assert_eq!(
        got["profile"]["picture_url"],
        format!("{}/_standin/picture/{}.png", line.url(), alice.id)
    );
    assert_eq!(got["group_summary"]["class"], "GroupSummaryResponse");
    assert_eq!(got["group_summary"]["group_id"], group);
    assert_eq!(got["group_summary"]["group_name"], "Project Kiwi");
    assert_eq!(got["group_member_ids"]["class"], "MembersIdsResponse");
    assert_eq!(
        got["group_member_ids"]["member_ids"],
        json!([alice.id, bob.id])
    );
    assert_eq!(
        got["group_member_profile"]["class"],
        "GroupUserProfileResponse"
    );
    assert_eq!(got["group_member_profile"]["display_name"], "Alice Sato");
    assert_eq!(got["bot_info"]["class"], "BotInfoResponse");
    assert_eq!(got["bot_info"]["user_id"], line.config().bot_user_id);
    assert_eq!(got["bot_info"]["basic_id"], line.config().basic_id);
    assert_eq!(got["bot_info"]["chat_mode"], "bot");
    assert_eq!(got["bot_info"]["mark_as_read_mode"], "manual");
    assert_eq!(got["content"]["len"], image.len());
    assert_eq!(got["content"]["sha256"], hex_sha256(&image));
    assert_eq!(got["content_unknown"]["status"], 404);
    assert_eq!(got["reply"]["class"], "ReplyMessageResponse");
    assert_eq!(got["reply"]["sent_messages"], 1);
    assert_eq!(got["reply_again"]["status"], 400);
    assert_eq!(got["bad_token"]["status"], 401);

    // What the stand-in recorded: exactly the accepted push and reply.
    let pushes = line.pushes();
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert_eq!(pushes[0].to, alice.id);
    assert_eq!(
        pushes[0].retry_key.as_ref(),
        got["retry_key"].as_str().map(str::to_string).as_ref()
    );
    assert_eq!(
        pushes[0].messages,
        vec![
            json!({
                "type": "text",
                "text": "Hello from the SDK 👋",
                "sender": {"name": "Support", "iconUrl": "https://example.com/icon.png"},
                "quickReply": {"items": [
                    {"type": "action", "action": {"type": "message", "label": "Yes", "text": "yes"}},
                    {"type": "action", "action": {"type": "postback", "label": "Later", "data": "later"}},
                ]},
            }),
            json!({"type": "sticker", "packageId": "446", "stickerId": "1988"}),
        ]
    );
    let replies = line.replies();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].reply_token, reply_token);
    assert_eq!(replies[0].to, alice.id);
    assert_eq!(line.conversation(&alice.id).len(), 3);
    let log: Vec<(String, u16)> = line
        .requests()
        .iter()
        .map(|r| (format!("{} {}", r.method, r.path), r.status))
        .collect();
    let expected: Vec<(String, u16)> = [
        ("POST /v2/bot/message/push".to_string(), 200),
        ("POST /v2/bot/message/push".to_string(), 409),
        ("POST /v2/bot/message/push".to_string(), 400),
        (format!("GET /v2/bot/profile/U{}", "0".repeat(32)), 404),
        (format!("GET /v2/bot/profile/{}", alice.id), 200),
        (format!("GET /v2/bot/group/{group}/summary"), 200),
        (format!("GET /v2/bot/group/{group}/members/ids"), 200),
        (
            format!("GET /v2/bot/group/{group}/member/{}", alice.id),
            200,
        ),
        ("GET /v2/bot/info".to_string(), 200),
        (format!("GET /v2/bot/message/{image_id}/content"), 200),
        ("GET /v2/bot/message/1/content".to_string(), 404),
        ("POST /v2/bot/message/reply".to_string(), 200),
        ("POST /v2/bot/message/reply".to_string(), 400),
        ("GET /v2/bot/info".to_string(), 401),
    ]
    .into_iter()
    .collect();
    assert_eq!(log, expected);

    // The SDK's own model accepts the pushes it made.
    tokio::task::spawn_blocking(move || check_pushes_with_sdk(&pushes))
        .await
        .unwrap();
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn the_sdks_webhook_parser_reads_every_event_the_stand_in_sends() {
    ensure_sdk().await;
    let config = Config::generate();
    let secret = config.channel_secret.clone();
    let line = LinePlatform::start(config).await.unwrap();
    let (hook, received) = webhook_receiver().await;
    line.set_webhook(&hook);
    let alice = line.add_user("Alice");
    let bob = line.add_user("Bob");
    let carol = line.add_user("Carol");

    // A 1:1 chat.
    assert_eq!(line.verify().await.unwrap(), 200);
    line.follow(&alice).await.unwrap();
    let (_, text_id) = line.text(&alice, "Hello, is this Acme?").await.unwrap();
    line.sticker(&alice, "11537", "52002734").await.unwrap();
    line.image(&alice, vec![1, 2, 3], "image/png")
        .await
        .unwrap();
    line.file(&alice, "invoice.pdf", vec![0; 1234])
        .await
        .unwrap();
    line.unsend(&alice, &text_id).await.unwrap();
    line.redeliver_last().await.unwrap();
    // A group.
    let group = line.create_group("Team", &[&alice, &bob]);
    line.add_bot_to_group(&group).await.unwrap();
    line.group_member_joined(&group, &carol).await.unwrap();
    let (_, group_text_id) = line.group_text(&group, &bob, "hi all").await.unwrap();
    line.group_sticker(&group, &carol, "446", "1990")
        .await
        .unwrap();
    line.group_image(&group, &bob, vec![9; 10], "image/jpeg")
        .await
        .unwrap();
    line.group_unsend(&group, &bob, &group_text_id)
        .await
        .unwrap();
    line.group_member_left(&group, &carol).await.unwrap();
    line.remove_bot_from_group(&group).await.unwrap();
    // Standby, then the user blocks the account.
    line.set_mode(Mode::Standby);
    line.text(&alice, "are you there?").await.unwrap();
    line.unfollow(&alice).await.unwrap();

    let sent = line.sent_webhooks();
    assert_eq!(sent.len(), 18);
    assert_eq!(*received.lock().unwrap(), 18);
    assert!(
        sent.iter().all(|w| w.status == Some(200)),
        "every webhook answered 200 in time"
    );
    let file: Vec<Value> = sent
        .iter()
        .map(|w| {
            json!({
                "body": String::from_utf8(w.body.clone()).unwrap(),
                "signature": w.signature,
            })
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webhooks.json");
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    let got = contract("webhooks", vec![secret.into(), path.into()]).await;
    assert_eq!(got["tampered_rejected"], true);

    let hooks = got["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 18);
    for h in hooks {
        assert_eq!(h["destination"], line.config().bot_user_id);
    }
    assert_eq!(hooks[0]["events"], json!([]), "the URL check");
    let events: Vec<&Value> = hooks[1..]
        .iter()
        .map(|h| {
            let list = h["events"].as_array().unwrap();
            assert_eq!(list.len(), 1);
            &list[0]
        })
        .collect();
    let kinds: Vec<String> = events
        .iter()
        .map(|e| {
            let mut kind = format!(
                "{} {}",
                e["class"].as_str().unwrap(),
                e["source"]["class"].as_str().unwrap()
            );
            if let Some(m) = e["message"]["class"].as_str() {
                kind = format!("{kind} {m}");
            }
            kind
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "FollowEvent UserSource",
            "MessageEvent UserSource TextMessageContent",
            "MessageEvent UserSource StickerMessageContent",
            "MessageEvent UserSource ImageMessageContent",
            "MessageEvent UserSource FileMessageContent",
            "UnsendEvent UserSource",
            "UnsendEvent UserSource",
            "JoinEvent GroupSource",
            "MemberJoinedEvent GroupSource",
            "MessageEvent GroupSource TextMessageContent",
            "MessageEvent GroupSource StickerMessageContent",
            "MessageEvent GroupSource ImageMessageContent",
            "UnsendEvent GroupSource",
            "MemberLeftEvent GroupSource",
            "LeaveEvent GroupSource",
            "MessageEvent UserSource TextMessageContent",
            "UnfollowEvent UserSource",
        ]
    );

    // Key fields as the SDK typed them.
    let follow = events[0];
    assert_eq!(follow["is_unblocked"], false);
    assert!(follow["reply_token"].is_string());
    assert_eq!(follow["source"]["user_id"], alice.id);
    let text = events[1];
    assert_eq!(text["message"]["text"], "Hello, is this Acme?");
    assert_eq!(text["message"]["id"], text_id);
    assert!(text["message"]["quote_token"].is_string());
    assert_eq!(events[2]["message"]["package_id"], "11537");
    assert_eq!(events[2]["message"]["sticker_id"], "52002734");
    assert_eq!(events[2]["message"]["sticker_resource_type"], "STATIC");
    assert_eq!(events[3]["message"]["content_provider"], "line");
    assert_eq!(events[4]["message"]["file_name"], "invoice.pdf");
    assert_eq!(events[4]["message"]["file_size"], 1234);
    assert_eq!(events[5]["unsend_message_id"], text_id);
    assert!(events[5]["reply_token"].is_null());
    // The redelivery: the same event id, flagged.
    assert_eq!(events[5]["is_redelivery"], false);
    assert_eq!(events[6]["is_redelivery"], true);
    assert_eq!(events[6]["webhook_event_id"], events[5]["webhook_event_id"]);
    assert_eq!(events[6]["webhook_event_id"].as_str().unwrap().len(), 26);
    let join = events[7];
    assert_eq!(join["source"]["group_id"], group);
    assert!(
        join["source"]["user_id"].is_null(),
        "no userId outside message events"
    );
    assert!(join["reply_token"].is_string());
    assert_eq!(
        events[8]["joined"],
        json!([{"class": "UserSource", "user_id": carol.id}])
    );
    assert!(events[8]["reply_token"].is_string());
    assert_eq!(events[9]["source"]["user_id"], bob.id);
    assert_eq!(events[9]["source"]["group_id"], group);
    assert_eq!(events[12]["unsend_message_id"], group_text_id);
    assert_eq!(events[12]["source"]["user_id"], bob.id);
    assert_eq!(
        events[13]["left"],
        json!([{"class": "UserSource", "user_id": carol.id}])
    );
    assert!(events[13]["reply_token"].is_null());
    assert!(events[14]["reply_token"].is_null());
    // Modes.
    for e in &events[..14] {
        assert_eq!(e["mode"], "active", "{e}");
    }
    assert_eq!(events[15]["mode"], "standby");
    assert!(
        events[15]["reply_token"].is_null(),
        "no reply token in standby"
    );
    assert_eq!(events[16]["mode"], "standby");
    assert!(events[16]["reply_token"].is_null());
    let ids: std::collections::HashSet<&str> = events
        .iter()
        .map(|e| e["webhook_event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 16, "one id per event, the redelivery's repeated");
}

#[tokio::test]
async fn the_push_checker_accepts_lines_shapes_and_rejects_mistyped_fields() {
    ensure_sdk().await;
    let to = format!("U{}", "a".repeat(32));
    let good = vec![
        json!({"to": to, "messages": [{"type": "text", "text": "hi"}]}),
        json!({
            "to": to,
            "notificationDisabled": true,
            "messages": [
                {"type": "text", "text": "Menu", "sender": {"name": "Ken", "iconUrl": "https://example.com/k.png"},
                 "quickReply": {"items": [{"type": "action", "action": {"type": "uri", "label": "Site", "uri": "https://example.com"}}]}},
                {"type": "sticker", "packageId": "446", "stickerId": "1988"},
                {"type": "image", "originalContentUrl": "https://example.com/a.jpg", "previewImageUrl": "https://example.com/p.jpg"},
            ],
        }),
    ];
    let ok = tokio::task::spawn_blocking(move || check_push_bodies_with_sdk(&good))
        .await
        .unwrap()
        .expect("good bodies pass");
    assert_eq!(ok["checked"], 2);

    let mistyped = vec![json!({"to": to, "messages": [{"type": "text", "text": 42}]})];
    let unknown =
        vec![json!({"to": to, "messages": [{"type": "text", "text": "hi", "senderName": "Ken"}]})];
    let wrong_flag = vec![
        json!({"to": to, "notificationDisabled": "yes", "messages": [{"type": "text", "text": "hi"}]}),
    ];
    for (name, bodies) in [
        ("mistyped text", mistyped),
        ("unknown field", unknown),
        ("string flag", wrong_flag),
    ] {
        let err = tokio::task::spawn_blocking(move || check_push_bodies_with_sdk(&bodies))
            .await
            .unwrap()
            .expect_err(name);
        assert!(err.contains("push 0"), "{name}: {err}");
    }
    let unknown_again =
        vec![json!({"to": to, "messages": [{"type": "text", "text": "hi", "senderName": "Ken"}]})];
    let err = tokio::task::spawn_blocking(move || check_push_bodies_with_sdk(&unknown_again))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.contains("senderName"), "{err}");
}
