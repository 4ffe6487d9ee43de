//! The platform over HTTP: checks, retry keys, reply tokens, the fault queue
//! and webhooks, against a real loopback server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};

use crate::{Config, Endpoint, Fault, LinePlatform, Mode, sign};

type Received = Arc<Mutex<Vec<(Vec<u8>, String)>>>;

/// A webhook receiver that records what it gets and answers 200.
async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let sink = got.clone();
    let app = Router::new().route(
        "/webhook",
        post(move |headers: HeaderMap, body: Bytes| {
            let sink = sink.clone();
            async move {
                let sig = headers
                    .get("x-line-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                sink.lock().unwrap().push((body.to_vec(), sig));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}/webhook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

struct Bot {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Bot {
    fn new(line: &LinePlatform) -> Bot {
        Bot {
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            base: line.url(),
            token: line.config().access_token.clone(),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        retry: Option<&str>,
    ) -> (u16, HeaderMap, Value) {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            "POST" => self.http.post(url),
            _ => self.http.get(url),
        }
        .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(key) = retry {
            request = request.header("x-line-retry-key", key);
        }
        let response = request.send().await.expect("the platform answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        (
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn push(
        &self,
        to: &str,
        messages: Value,
        retry: Option<&str>,
    ) -> (u16, HeaderMap, Value) {
        self.send(
            "POST",
            "/v2/bot/message/push",
            Some(json!({"to": to, "messages": messages})),
            retry,
        )
        .await
    }
}

fn hello() -> Value {
    json!([{"type": "text", "text": "hello"}])
}

#[tokio::test]
async fn requests_are_checked_like_line_checks_them() {
    let line = LinePlatform::start(Config::generate()).await.unwrap();
    let (hook, _) = receiver().await;
    line.set_webhook(&hook);
    let alice = line.add_user("Alice");
    let bot = Bot::new(&line);

    // Not a follower yet.
    let (status, _, body) = bot.push(&alice.id, hello(), None).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        format!(
            "The property, 'to', in the request body is invalid (line-user-id: {})",
            alice.id
        )
    );
    assert_eq!(line.follow(&alice).await.unwrap(), 200);

    // Wrong token.
    let wrong = Bot {
        token: "nope".into(),
        ..Bot::new(&line)
    };
    let (status, _, body) = wrong.push(&alice.id, hello(), None).await;
    assert_eq!(status, 401);
    assert_eq!(body["message"], crate::server::AUTH_FAILED);

    // Broken JSON.
    let response = bot
        .http
        .post(format!("{}/v2/bot/message/push", line.url()))
        .bearer_auth(&bot.token)
        .header("content-type", "application/json")
        .body("{\"to\":")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);

    // Six messages, a file, an unsendable sticker.
    let six = Value::Array(vec![json!({"type": "text", "text": "x"}); 6]);
    let (status, _, body) = bot.push(&alice.id, six, None).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["details"][0]["message"],
        "Size must be between 1 and 5"
    );
    assert_eq!(body["details"][0]["property"], "messages");
    let (status, _, body) = bot
        .push(&alice.id, json!([{"type": "file", "fileName": "a"}]), None)
        .await;
    assert_eq!(
        (status, body["details"][0]["property"].clone()),
        (400, json!("messages[0].type"))
    );
    let (status, _, body) = bot
        .push(
            &alice.id,
            json!([{"type": "sticker", "packageId": "1", "stickerId": "2"}]),
            None,
        )
        .await;
    assert_eq!(
        (status, body["details"][0]["property"].clone()),
        (400, json!("messages[0].stickerId"))
    );

    // The retry key: a UUID, once.
    let (status, _, _) = bot.push(&alice.id, hello(), Some("not-a-uuid")).await;
    assert_eq!(status, 400);
    let key = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let (status, headers, body) = bot.push(&alice.id, hello(), Some(key)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sentMessages"].as_array().unwrap().len(), 1);
    let first_id = headers["x-line-request-id"].to_str().unwrap().to_string();
    let (status, headers, body) = bot.push(&alice.id, hello(), Some(key)).await;
    assert_eq!(status, 409);
    assert_eq!(body["message"], "The retry key is already accepted");
    assert_eq!(
        headers["x-line-accepted-request-id"].to_str().unwrap(),
        first_id
    );

    let pushes = line.pushes();
    assert_eq!(pushes.len(), 1, "only the accepted push is recorded");
    assert_eq!(pushes[0].retry_key.as_deref(), Some(key));
    assert_eq!(pushes[0].request_id, first_id);
    assert_eq!(
        line.conversation(&alice.id),
        vec![json!({"type": "text", "text": "hello"})]
    );
    let statuses: Vec<u16> = line.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [400, 401, 400, 400, 400, 400, 400, 200, 409]);

    // Profiles, bot info, unknown paths.
    let (status, _, body) = bot
        .send("GET", &format!("/v2/bot/profile/{}", alice.id), None, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["displayName"], "Alice");
    line.rename_user(&alice, "Alice B.");
    let (_, _, body) = bot
        .send("GET", &format!("/v2/bot/profile/{}", alice.id), None, None)
        .await;
    assert_eq!(body["displayName"], "Alice B.");
    let picture = reqwest::get(body["pictureUrl"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(picture.headers()["content-type"], "image/png");
    let (status, _, _) = bot
        .send("GET", "/v2/bot/profile/Udeadbeef", None, None)
        .await;
    assert_eq!(status, 404);
    let (status, _, body) = bot.send("GET", "/v2/bot/info", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["basicId"], line.config().basic_id);
    assert_eq!(body["userId"], line.config().bot_user_id);
}

#[tokio::test]
async fn reply_tokens_are_usable_once_and_expire() {
    let line = LinePlatform::start(Config::generate()).await.unwrap();
    let (hook, got) = receiver().await;
    line.set_webhook(&hook);
    let bob = line.add_user("Bob");
    line.follow(&bob).await.unwrap();
    let (status, id) = line.text(&bob, "hi").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(id.len(), 18);
    let event: Value = serde_json::from_slice(&got.lock().unwrap()[1].0).unwrap();
    let token = event["events"][0]["replyToken"]
        .as_str()
        .unwrap()
        .to_string();
    let bot = Bot::new(&line);
    let reply = json!({"replyToken": token, "messages": [{"type": "text", "text": "hello back"}]});
    let (status, _, body) = bot
        .send("POST", "/v2/bot/message/reply", Some(reply.clone()), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = bot
        .send("POST", "/v2/bot/message/reply", Some(reply), None)
        .await;
    assert_eq!(
        (status, body["message"].clone()),
        (400, json!("Invalid reply token"))
    );
    let replies = line.replies();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].to, bob.id);
    assert_eq!(line.conversation(&bob.id).len(), 1);

    line.set_reply_token_lifetime(Duration::from_millis(50));
    line.text(&bob, "again").await.unwrap();
    let event: Value = serde_json::from_slice(&got.lock().unwrap()[2].0).unwrap();
    let token = event["events"][0]["replyToken"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reply = json!({"replyToken": token, "messages": [{"type": "text", "text": "late"}]});
    let (status, _, _) = bot
        .send("POST", "/v2/bot/message/reply", Some(reply), None)
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn the_fault_queue_applies_in_order_before_any_check() {
    let line = LinePlatform::start(Config::generate()).await.unwrap();
    let (hook, _) = receiver().await;
    line.set_webhook(&hook);
    let carol = line.add_user("Carol");
    line.follow(&carol).await.unwrap();
    let bot = Bot::new(&line);

    line.fail_next(
        Endpoint::Push,
        Fault::TooManyRequests {
            retry_after_secs: Some(7),
        },
        2,
    );
    line.fail_next(Endpoint::Any, Fault::ServerError, 1);
    // A profile request skips the push faults and takes the `Any` one.
    let (status, _, body) = bot
        .send("GET", &format!("/v2/bot/profile/{}", carol.id), None, None)
        .await;
    assert_eq!(status, 500);
    assert!(body["message"].is_string());
    for _ in 0..2 {
        // Even an invalid push gets the fault first.
        let (status, headers, body) = bot.push(&carol.id, json!([]), None).await;
        assert_eq!(status, 429);
        assert_eq!(headers["retry-after"], "7");
        assert!(body["message"].is_string());
    }
    let (status, _, _) = bot.push(&carol.id, hello(), None).await;
    assert_eq!(status, 200);

    line.set_outage(Some(Fault::ServerError));
    let (status, _, _) = bot.send("GET", "/v2/bot/info", None, None).await;
    assert_eq!(status, 500);
    let (status, _, _) = bot.push(&carol.id, hello(), None).await;
    assert_eq!(status, 500);
    line.set_outage(None);

    line.fail_next(Endpoint::Push, Fault::Hang, 1);
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let hung = impatient
        .post(format!("{}/v2/bot/message/push", line.url()))
        .bearer_auth(&line.config().access_token)
        .json(&json!({"to": carol.id, "messages": hello()}))
        .send()
        .await;
    assert!(hung.unwrap_err().is_timeout());
    let (status, _, _) = bot.push(&carol.id, hello(), None).await;
    assert_eq!(status, 200);

    assert_eq!(line.pushes().len(), 2);
    let statuses: Vec<u16> = line.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 429, 429, 200, 500, 500, 0, 200]);
}

#[tokio::test]
async fn webhooks_are_signed_and_redelivered_with_the_same_event_ids() {
    let config = Config::generate();
    let secret = config.channel_secret.clone();
    let line = LinePlatform::start(config).await.unwrap();
    assert!(line.verify().await.is_err(), "no webhook URL yet");
    let (hook, got) = receiver().await;
    line.set_webhook(&hook);
    assert_eq!(line.verify().await.unwrap(), 200);
    let dave = line.add_user("Dave");
    line.follow(&dave).await.unwrap();
    line.set_mode(Mode::Standby);
    let group = line.create_group("Team", &[&dave]);
    line.add_bot_to_group(&group).await.unwrap();
    let (_, id) = line.group_text(&group, &dave, "hi all").await.unwrap();
    line.redeliver_last().await.unwrap();
    line.group_unsend(&group, &dave, &id).await.unwrap();
    assert_eq!(line.post_raw(b"{}", Some("bad")).await.unwrap(), 200);

    let got = got.lock().unwrap().clone();
    let sent = line.sent_webhooks();
    assert_eq!(got.len(), 7);
    assert_eq!(sent.len(), 7);
    for (i, (body, signature)) in got.iter().enumerate().take(6) {
        assert_eq!(signature, &sign(&secret, body), "webhook {i}");
        assert_eq!(&sent[i].body, body);
        assert_eq!(sent[i].status, Some(200));
    }
    let verify = sent[0].json();
    assert_eq!(
        verify,
        json!({"destination": line.config().bot_user_id, "events": []})
    );
    let follow = &sent[1].json()["events"][0];
    assert_eq!(follow["type"], "follow");
    assert_eq!(follow["mode"], "active");
    assert_eq!(follow["follow"], json!({"isUnblocked": false}));
    assert!(follow["replyToken"].is_string());
    let join = &sent[2].json()["events"][0];
    assert_eq!(join["mode"], "standby");
    assert_eq!(join["source"], json!({"type": "group", "groupId": group}));
    let message = &sent[3].json()["events"][0];
    let again = &sent[4].json()["events"][0];
    assert_eq!(message["source"]["userId"], dave.id);
    assert!(
        message.get("replyToken").is_none(),
        "no reply token in standby"
    );
    assert_eq!(message["message"]["id"], id);
    assert_eq!(message["deliveryContext"]["isRedelivery"], false);
    assert_eq!(again["deliveryContext"]["isRedelivery"], true);
    assert_eq!(again["webhookEventId"], message["webhookEventId"]);
    assert_eq!(again["webhookEventId"].as_str().unwrap().len(), 26);
    let unsend = &sent[5].json()["events"][0];
    assert_eq!(unsend["unsend"], json!({"messageId": id}));
    assert!(unsend.get("replyToken").is_none());
    assert_eq!(sent[6].signature, "bad");
}

#[tokio::test]
async fn a_webhook_answered_after_two_seconds_counts_as_a_timeout() {
    let app = Router::new().route(
        "/slow",
        post(|| async {
            tokio::time::sleep(Duration::from_millis(2300)).await;
            "late"
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}/slow", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let line = LinePlatform::start(Config::generate()).await.unwrap();
    line.set_webhook(&url);
    // The caller still gets the late answer; the record says LINE gave up.
    assert_eq!(line.verify().await.unwrap(), 200);
    let sent = line.sent_webhooks();
    assert_eq!(sent[0].status, None);
    assert_eq!(sent[0].late_status, Some(200));
    assert!(sent[0].elapsed >= Duration::from_secs(2));

    // Nothing listening: an error, recorded without a status.
    line.set_webhook("http://127.0.0.1:9/none");
    assert!(line.verify().await.is_err());
    assert_eq!(line.sent_webhooks()[1].status, None);
    assert_eq!(line.sent_webhooks()[1].late_status, None);
}

#[tokio::test]
async fn stopping_or_dropping_the_platform_ends_serving_and_hung_requests() {
    let line = LinePlatform::start(Config::generate()).await.unwrap();
    let url = line.url();
    line.fail_next(Endpoint::Info, Fault::Hang, 1);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let hung = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move { client.get(format!("{url}/v2/bot/info")).send().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(line.requests()[0].status, 0);
    line.stop();
    let ended = tokio::time::timeout(Duration::from_secs(5), hung).await;
    assert!(
        ended.is_ok(),
        "the hung request ends when the platform stops"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(
        fresh
            .get(format!("{url}/v2/bot/info"))
            .send()
            .await
            .is_err()
    );

    let other = LinePlatform::start(Config::generate()).await.unwrap();
    let url = other.url();
    let clone = other.clone();
    drop(other);
    let fresh = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(
        fresh.get(format!("{url}/v2/bot/info")).send().await.is_ok(),
        "a clone keeps it serving"
    );
    drop(clone);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        fresh
            .get(format!("{url}/v2/bot/info"))
            .send()
            .await
            .is_err()
    );
}
