//! A stand-in for LINE's Messaging API platform, for tests and the demo.
//!
//! [`LinePlatform::start`] serves, on one loopback port, what LINE serves a
//! bot on its API host and its data (content) host, checking every request
//! as LINE does (bearer token, JSON body, retry key, message objects,
//! recipients). Simulated LINE users ([`LinePlatform::add_user`]) follow the
//! Official Account, write to it, join groups and so on; each of their
//! actions is POSTed as a signed webhook, shaped as LINE's webhook spec, to
//! the URL given with [`LinePlatform::set_webhook`]. What the bot did, as
//! LINE accepted it, is read back with [`LinePlatform::pushes`],
//! [`LinePlatform::replies`], [`LinePlatform::conversation`] and
//! [`LinePlatform::requests`]; faults are injected with
//! [`LinePlatform::fail_next`] and [`LinePlatform::set_outage`].

pub mod checks;
mod server;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::watch;

/// How long LINE waits for a webhook's answer before it counts a timeout.
pub const WEBHOOK_TIMEOUT_COUNTED: Duration = Duration::from_secs(2);
/// How long the stand-in keeps waiting for a webhook's answer at all.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a reply token stays usable after its event was sent, unless
/// changed with [`LinePlatform::set_reply_token_lifetime`].
pub const REPLY_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// The bot's display name in `GET /v2/bot/info`.
pub const BOT_DISPLAY_NAME: &str = "Works Official Account";

/// The channel: its secrets and the Official Account's ids.
#[derive(Clone, Debug)]
pub struct Config {
    /// The channel secret; signs webhooks.
    pub channel_secret: String,
    /// The channel access token the bot must present as `Bearer`.
    pub access_token: String,
    /// The Official Account's basic id, e.g. `@123abcde`.
    pub basic_id: String,
    /// The bot's user id (`U` + 32 lowercase hex), the webhooks' `destination`.
    pub bot_user_id: String,
}

impl Config {
    /// A channel with a random secret (32 hex), access token, basic id and
    /// bot user id.
    pub fn generate() -> Config {
        let mut rng = rand::rng();
        let digits: String = (0..3)
            .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
            .collect();
        let letters: String = (0..5)
            .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
            .collect();
        let token: [u8; 96] = std::array::from_fn(|_| rng.random());
        Config {
            channel_secret: random_hex(16),
            access_token: base64::engine::general_purpose::STANDARD.encode(token),
            basic_id: format!("@{digits}{letters}"),
            bot_user_id: format!("U{}", random_hex(16)),
        }
    }
}

/// A simulated LINE user.
#[derive(Clone, Debug)]
pub struct LineUser {
    /// The user's id for this provider: `U` + 32 lowercase hex.
    pub id: String,
    /// The display name when the user was added (see
    /// [`LinePlatform::rename_user`] for later changes).
    pub display_name: String,
}

/// The channel's mode, carried by every event as `mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `"active"`: the bot is expected to answer.
    Active,
    /// `"standby"`: another module channel is active; the bot must not answer.
    Standby,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Active => "active",
            Mode::Standby => "standby",
        }
    }
}

/// What a faulty platform does to a bot request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 429 with LINE's rate-limit body, and `Retry-After` when given.
    TooManyRequests {
        /// The `Retry-After` header's seconds, if any.
        retry_after_secs: Option<u64>,
    },
    /// 500 with a LINE-shaped body.
    ServerError,
    /// Never answers (until the client gives up or the platform stops).
    Hang,
}

/// Which bot API requests a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v2/bot/message/push`.
    Push,
    /// `POST /v2/bot/message/reply`.
    Reply,
    /// `GET /v2/bot/profile/{userId}`.
    Profile,
    /// Everything under `/v2/bot/group/`.
    Group,
    /// `GET /v2/bot/message/{messageId}/content`.
    Content,
    /// `GET /v2/bot/info`.
    Info,
    /// Every bot API request.
    Any,
}

/// One webhook the platform POSTed (or tried to).
#[derive(Clone, Debug)]
pub struct SentWebhook {
    /// The raw body, exactly as signed and sent.
    pub body: Vec<u8>,
    /// The `x-line-signature` header sent (empty when none was).
    pub signature: String,
    /// The status the webhook URL answered within LINE's 2 s, or `None`
    /// when it did not answer (in time).
    pub status: Option<u16>,
    /// The status however late it came (within 10 s), `None` if none came.
    pub late_status: Option<u16>,
    /// How long the answer took (or until the request failed).
    pub elapsed: Duration,
}

impl SentWebhook {
    /// The body parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A push LINE accepted (200).
#[derive(Clone, Debug)]
pub struct Push {
    /// The recipient: a user id or a group id.
    pub to: String,
    /// The `X-Line-Retry-Key` header, if sent.
    pub retry_key: Option<String>,
    /// The raw request body.
    pub body: Value,
    /// The message objects.
    pub messages: Vec<Value>,
    /// The `x-line-request-id` the platform answered with.
    pub request_id: String,
}

/// A reply LINE accepted (200).
#[derive(Clone, Debug)]
pub struct Reply {
    /// The reply token used.
    pub reply_token: String,
    /// The chat the token was issued for: a user id or a group id.
    pub to: String,
    /// The message objects.
    pub messages: Vec<Value>,
    /// The raw request body.
    pub body: Value,
}

/// One bot API request, as the platform answered it.
#[derive(Clone, Debug)]
pub struct RequestLog {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The status answered; 0 for a request hung by [`Fault::Hang`].
    pub status: u16,
    /// The error body's `message` for a refused request.
    pub error: Option<String>,
    /// The `X-Line-Retry-Key` header, if sent.
    pub retry_key: Option<String>,
}

struct UserRecord {
    display_name: String,
    following: bool,
    picture: Vec<u8>,
}

struct GroupRecord {
    name: String,
    members: Vec<String>,
    bot_in: bool,
}

struct ReplyToken {
    chat: String,
    issued: Instant,
    used: bool,
}

#[derive(Default)]
struct Inner {
    webhook: Option<String>,
    mode: Option<Mode>,
    users: HashMap<String, UserRecord>,
    groups: HashMap<String, GroupRecord>,
    contents: HashMap<String, (Vec<u8>, String)>,
    reply_tokens: HashMap<String, ReplyToken>,
    reply_token_lifetime: Option<Duration>,
    last_events: Vec<Value>,
    sent: Vec<SentWebhook>,
    pushes: Vec<Push>,
    replies: Vec<Reply>,
    conversation: Vec<(String, Value)>,
    requests: Vec<RequestLog>,
    retry_keys: HashMap<String, String>,
    faults: VecDeque<(Endpoint, Fault)>,
    outage: Option<Fault>,
    next_message: u64,
}

/// What the serving task shares with the handle.
pub(crate) struct State {
    config: Config,
    url: String,
    inner: Mutex<Inner>,
    shutdown: watch::Receiver<bool>,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Owner {
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
    http: reqwest::Client,
}

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// The stand-in LINE platform; clones share it. It serves until
/// [`LinePlatform::stop`] or until the last clone is dropped.
#[derive(Clone)]
pub struct LinePlatform {
    owner: Arc<Owner>,
}

/// `base64(HMAC-SHA256(channel_secret, body))`: the `x-line-signature` of a
/// webhook body.
pub fn sign(channel_secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(channel_secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    let raw: Vec<u8> = (0..bytes).map(|_| rng.random()).collect();
    hex::encode(raw)
}

fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A 16×16 PNG of one colour taken from the user id.
fn picture_for(id: &str) -> Vec<u8> {
    let seed = sign("picture", id.as_bytes());
    let rgb = &seed.as_bytes()[..3];
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, 16, 16);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().expect("PNG header to memory");
        let pixels: Vec<u8> = rgb.iter().copied().cycle().take(16 * 16 * 3).collect();
        writer
            .write_image_data(&pixels)
            .expect("PNG data to memory");
    }
    out
}

impl LinePlatform {
    /// Binds 127.0.0.1 on an ephemeral port and serves the bot API and the
    /// content host there, in a tokio task.
    pub async fn start(config: Config) -> std::io::Result<LinePlatform> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = watch::channel(false);
        let state = Arc::new(State {
            config,
            url,
            inner: Mutex::new(Inner {
                next_message: 500_000_000_000_000_000 + rand::rng().random_range(0..1_000_000_000),
                ..Inner::default()
            }),
            shutdown: rx.clone(),
        });
        server::spawn(listener, state.clone(), rx);
        let http = reqwest::Client::builder()
            .timeout(WEBHOOK_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(std::io::Error::other)?;
        Ok(LinePlatform {
            owner: Arc::new(Owner {
                state,
                shutdown: tx,
                http,
            }),
        })
    }

    fn state(&self) -> &State {
        &self.owner.state
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state().lock()
    }

    /// The channel this platform serves.
    pub fn config(&self) -> &Config {
        &self.state().config
    }

    /// `http://127.0.0.1:PORT`: the base of both the API host and the data
    /// (content) host.
    pub fn url(&self) -> String {
        self.state().url.clone()
    }

    /// Where webhooks are POSTed from now on.
    pub fn set_webhook(&self, url: &str) {
        self.lock().webhook = Some(url.to_string());
    }

    /// Stops serving: no new connections; hung requests end.
    pub fn stop(&self) {
        let _ = self.owner.shutdown.send(true);
    }

    /// The `mode` of events sent from now on.
    pub fn set_mode(&self, mode: Mode) {
        self.lock().mode = Some(mode);
    }

    /// How long reply tokens issued from now on stay usable (60 s unless
    /// changed).
    pub fn set_reply_token_lifetime(&self, lifetime: Duration) {
        self.lock().reply_token_lifetime = Some(lifetime);
    }

    // ---- simulated users -------------------------------------------------

    /// A new LINE user (not yet a follower), with a generated picture served
    /// at `{url}/_standin/picture/{userId}.png`.
    pub fn add_user(&self, display_name: &str) -> LineUser {
        let id = format!("U{}", random_hex(16));
        self.lock().users.insert(
            id.clone(),
            UserRecord {
                display_name: display_name.to_string(),
                following: false,
                picture: picture_for(&id),
            },
        );
        LineUser {
            id,
            display_name: display_name.to_string(),
        }
    }

    /// Changes a user's display name (what profiles show from now on).
    pub fn rename_user(&self, user: &LineUser, display_name: &str) {
        if let Some(u) = self.lock().users.get_mut(&user.id) {
            u.display_name = display_name.to_string();
        }
    }

    /// The user adds the account as a friend (or unblocks it): `follow`.
    pub async fn follow(&self, user: &LineUser) -> anyhow::Result<u16> {
        let event = {
            let mut inner = self.lock();
            let record = inner.users.get_mut(&user.id).context("unknown user")?;
            record.following = true;
            let mut event = self.event(&mut inner, "follow", user_source(&user.id), true);
            event["follow"] = json!({"isUnblocked": false});
            event
        };
        self.deliver(vec![event]).await
    }

    /// The user blocks the account: `unfollow`.
    pub async fn unfollow(&self, user: &LineUser) -> anyhow::Result<u16> {
        let event = {
            let mut inner = self.lock();
            let record = inner.users.get_mut(&user.id).context("unknown user")?;
            record.following = false;
            self.event(&mut inner, "unfollow", user_source(&user.id), false)
        };
        self.deliver(vec![event]).await
    }

    /// A text message from the user in the 1:1 chat with the account.
    pub async fn text(&self, from: &LineUser, text: &str) -> anyhow::Result<(u16, String)> {
        self.message(
            user_source(&from.id),
            json!({"type": "text", "text": text}),
            None,
        )
        .await
    }

    /// A sticker from the user in the 1:1 chat.
    pub async fn sticker(
        &self,
        from: &LineUser,
        package_id: &str,
        sticker_id: &str,
    ) -> anyhow::Result<(u16, String)> {
        self.message(
            user_source(&from.id),
            sticker_content(package_id, sticker_id),
            None,
        )
        .await
    }

    /// An image from the user in the 1:1 chat; its bytes are then served at
    /// `GET /v2/bot/message/{id}/content`.
    pub async fn image(
        &self,
        from: &LineUser,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> anyhow::Result<(u16, String)> {
        self.message(
            user_source(&from.id),
            json!({"type": "image", "contentProvider": {"type": "line"}}),
            Some((bytes, content_type.to_string())),
        )
        .await
    }

    /// A video from the user in the 1:1 chat (content served like an image's).
    pub async fn video(
        &self,
        from: &LineUser,
        bytes: Vec<u8>,
        content_type: &str,
        duration_ms: u64,
    ) -> anyhow::Result<(u16, String)> {
        self.message(
            user_source(&from.id),
            json!({"type": "video", "duration": duration_ms, "contentProvider": {"type": "line"}}),
            Some((bytes, content_type.to_string())),
        )
        .await
    }

    /// An audio message from the user in the 1:1 chat.
    pub async fn audio(
        &self,
        from: &LineUser,
        bytes: Vec<u8>,
        content_type: &str,
        duration_ms: u64,
    ) -> anyhow::Result<(u16, String)> {
        self.message(
            user_source(&from.id),
            json!({"type": "audio", "duration": duration_ms, "contentProvider": {"type": "line"}}),
            Some((bytes, content_type.to_string())),
        )
        .await
    }

    /// A file from the user in the 1:1 chat; its bytes are served as
    /// `application/octet-stream`.
    pub async fn file(
        &self,
        from: &LineUser,
        file_name: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<(u16, String)> {
        let size = bytes.len();
        self.message(
            user_source(&from.id),
            json!({"type": "file", "fileName": file_name, "fileSize": size}),
            Some((bytes, "application/octet-stream".to_string())),
        )
        .await
    }

    /// The user unsends one of their messages in the 1:1 chat.
    pub async fn unsend(&self, from: &LineUser, message_id: &str) -> anyhow::Result<u16> {
        self.unsend_in(user_source(&from.id), message_id).await
    }

    /// A group chat with these members (the bot is not in it until
    /// [`LinePlatform::add_bot_to_group`]); its id, `C` + 32 hex.
    pub fn create_group(&self, name: &str, members: &[&LineUser]) -> String {
        let id = format!("C{}", random_hex(16));
        self.lock().groups.insert(
            id.clone(),
            GroupRecord {
                name: name.to_string(),
                members: members.iter().map(|u| u.id.clone()).collect(),
                bot_in: false,
            },
        );
        id
    }

    /// Someone invites the bot into the group: `join`.
    pub async fn add_bot_to_group(&self, group_id: &str) -> anyhow::Result<u16> {
        let event = {
            let mut inner = self.lock();
            inner
                .groups
                .get_mut(group_id)
                .context("unknown group")?
                .bot_in = true;
            self.event(&mut inner, "join", group_source(group_id, None), true)
        };
        self.deliver(vec![event]).await
    }

    /// Someone removes the bot from the group: `leave`.
    pub async fn remove_bot_from_group(&self, group_id: &str) -> anyhow::Result<u16> {
        let event = {
            let mut inner = self.lock();
            inner
                .groups
                .get_mut(group_id)
                .context("unknown group")?
                .bot_in = false;
            self.event(&mut inner, "leave", group_source(group_id, None), false)
        };
        self.deliver(vec![event]).await
    }

    /// A user joins the group: `memberJoined`.
    pub async fn group_member_joined(
        &self,
        group_id: &str,
        user: &LineUser,
    ) -> anyhow::Result<u16> {
        let event = {
            let mut inner = self.lock();
            let group = inner.groups.get_mut(group_id).context("unknown group")?;
            if !group.members.contains(&user.id) {
                group.members.push(user.id.clone());
            }
            let mut event = self.event(
                &mut inner,
                "memberJoined",
                group_source(group_id, None),
                true,
            );
            event["joined"] = json!({"members": [user_source(&user.id)]});
            event
        };
        self.deliver(vec![event]).await
    }

    /// A user leaves the group: `memberLeft`.
    pub async fn group_member_left(&self, group_id: &str, user: &LineUser) -> anyhow::Result<u16> {
        let event = {
            let mut inner = self.lock();
            let group = inner.groups.get_mut(group_id).context("unknown group")?;
            group.members.retain(|m| m != &user.id);
            let mut event = self.event(
                &mut inner,
                "memberLeft",
                group_source(group_id, None),
                false,
            );
            event["left"] = json!({"members": [user_source(&user.id)]});
            event
        };
        self.deliver(vec![event]).await
    }

    /// A text message from a member in the group.
    pub async fn group_text(
        &self,
        group_id: &str,
        from: &LineUser,
        text: &str,
    ) -> anyhow::Result<(u16, String)> {
        self.message(
            group_source(group_id, Some(&from.id)),
            json!({"type": "text", "text": text}),
            None,
        )
        .await
    }

    /// A sticker from a member in the group.
    pub async fn group_sticker(
        &self,
        group_id: &str,
        from: &LineUser,
        package_id: &str,
        sticker_id: &str,
    ) -> anyhow::Result<(u16, String)> {
        self.message(
            group_source(group_id, Some(&from.id)),
            sticker_content(package_id, sticker_id),
            None,
        )
        .await
    }

    /// An image from a member in the group.
    pub async fn group_image(
        &self,
        group_id: &str,
        from: &LineUser,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> anyhow::Result<(u16, String)> {
        self.message(
            group_source(group_id, Some(&from.id)),
            json!({"type": "image", "contentProvider": {"type": "line"}}),
            Some((bytes, content_type.to_string())),
        )
        .await
    }

    /// A member unsends one of their messages in the group.
    pub async fn group_unsend(
        &self,
        group_id: &str,
        from: &LineUser,
        message_id: &str,
    ) -> anyhow::Result<u16> {
        self.unsend_in(group_source(group_id, Some(&from.id)), message_id)
            .await
    }

    /// The console's "Verify" button: `{"destination":…,"events":[]}`.
    pub async fn verify(&self) -> anyhow::Result<u16> {
        let body = serde_json::to_vec(&json!({
            "destination": self.config().bot_user_id,
            "events": [],
        }))?;
        let signature = sign(&self.config().channel_secret, &body);
        self.post(body, Some(signature)).await
    }

    /// The last webhook's events again: the same `webhookEventId`s, with
    /// `deliveryContext.isRedelivery` true, signed anew.
    pub async fn redeliver_last(&self) -> anyhow::Result<u16> {
        let mut events = self.lock().last_events.clone();
        if events.is_empty() {
            bail!("no webhook with events was sent yet");
        }
        for event in &mut events {
            event["deliveryContext"] = json!({"isRedelivery": true});
        }
        self.deliver(events).await
    }

    /// POSTs these exact bytes with this signature header (none for `None`).
    pub async fn post_raw(&self, body: &[u8], signature: Option<&str>) -> anyhow::Result<u16> {
        self.post(body.to_vec(), signature.map(str::to_string))
            .await
    }

    /// Every webhook POSTed so far, in order.
    pub fn sent_webhooks(&self) -> Vec<SentWebhook> {
        self.lock().sent.clone()
    }

    // ---- what the bot did ------------------------------------------------

    /// Accepted (200) pushes, in acceptance order.
    pub fn pushes(&self) -> Vec<Push> {
        self.lock().pushes.clone()
    }

    /// Accepted (200) replies, in acceptance order.
    pub fn replies(&self) -> Vec<Reply> {
        self.lock().replies.clone()
    }

    /// Every message object the bot sent to this chat (a user id or a group
    /// id), by push or reply, in acceptance order.
    pub fn conversation(&self, chat_id: &str) -> Vec<Value> {
        self.lock()
            .conversation
            .iter()
            .filter(|(chat, _)| chat == chat_id)
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// Every bot API request, refused ones included, in arrival order.
    pub fn requests(&self) -> Vec<RequestLog> {
        self.lock().requests.clone()
    }

    // ---- faults ----------------------------------------------------------

    /// The next `times` requests to `endpoint` get `fault` (before any check).
    /// Queued faults are used in order, before an outage's.
    pub fn fail_next(&self, endpoint: Endpoint, fault: Fault, times: usize) {
        let mut inner = self.lock();
        for _ in 0..times {
            inner.faults.push_back((endpoint, fault.clone()));
        }
    }

    /// Every bot API request gets `fault` until `set_outage(None)`.
    pub fn set_outage(&self, fault: Option<Fault>) {
        self.lock().outage = fault;
    }

    // ---- internals -------------------------------------------------------

    /// A new event's common fields; issues a reply token when `replyable`.
    fn event(&self, inner: &mut Inner, kind: &str, source: Value, replyable: bool) -> Value {
        let mut event = json!({
            "type": kind,
            "mode": inner.mode.unwrap_or(Mode::Active).as_str(),
            "timestamp": now_ms(),
            "source": source,
            "webhookEventId": ulid::Ulid::new().to_string(),
            "deliveryContext": {"isRedelivery": false},
        });
        if replyable {
            let chat = chat_of(&event["source"]);
            let token = random_hex(16);
            inner.reply_tokens.insert(
                token.clone(),
                ReplyToken {
                    chat,
                    issued: Instant::now(),
                    used: false,
                },
            );
            event["replyToken"] = Value::String(token);
        }
        event
    }

    fn next_message_id(inner: &mut Inner) -> String {
        inner.next_message += 1 + rand::rng().random_range(0..1000);
        inner.next_message.to_string()
    }

    async fn message(
        &self,
        source: Value,
        mut content: Value,
        bytes: Option<(Vec<u8>, String)>,
    ) -> anyhow::Result<(u16, String)> {
        let (event, id) = {
            let mut inner = self.lock();
            check_source(&inner, &source)?;
            let id = Self::next_message_id(&mut inner);
            content["id"] = Value::String(id.clone());
            if content["type"] != "file" {
                content["quoteToken"] = Value::String(random_token(88));
            }
            if let Some(bytes) = bytes {
                inner.contents.insert(id.clone(), bytes);
            }
            // A standby channel may not answer: message events (whose
            // replyToken is optional in LINE's spec) carry none then.
            let replyable = inner.mode != Some(Mode::Standby);
            let mut event = self.event(&mut inner, "message", source, replyable);
            event["message"] = content;
            (event, id)
        };
        Ok((self.deliver(vec![event]).await?, id))
    }

    async fn unsend_in(&self, source: Value, message_id: &str) -> anyhow::Result<u16> {
        let event = {
            let mut inner = self.lock();
            check_source(&inner, &source)?;
            inner.contents.remove(message_id);
            let mut event = self.event(&mut inner, "unsend", source, false);
            event["unsend"] = json!({"messageId": message_id});
            event
        };
        self.deliver(vec![event]).await
    }

    async fn deliver(&self, events: Vec<Value>) -> anyhow::Result<u16> {
        let body = serde_json::to_vec(&json!({
            "destination": self.config().bot_user_id,
            "events": events,
        }))?;
        self.lock().last_events = events;
        let signature = sign(&self.config().channel_secret, &body);
        self.post(body, Some(signature)).await
    }

    async fn post(&self, body: Vec<u8>, signature: Option<String>) -> anyhow::Result<u16> {
        let url = self
            .lock()
            .webhook
            .clone()
            .context("no webhook URL set (set_webhook)")?;
        let mut request = self
            .owner
            .http
            .post(&url)
            .header("content-type", "application/json; charset=utf-8")
            .header("user-agent", "LineBotWebhook/2.0")
            .body(body.clone());
        if let Some(signature) = &signature {
            request = request.header("x-line-signature", signature);
        }
        let started = Instant::now();
        let answer = request.send().await;
        let elapsed = started.elapsed();
        let late_status = answer.as_ref().ok().map(|r| r.status().as_u16());
        self.lock().sent.push(SentWebhook {
            body,
            signature: signature.unwrap_or_default(),
            status: late_status.filter(|_| elapsed <= WEBHOOK_TIMEOUT_COUNTED),
            late_status,
            elapsed,
        });
        let answer = answer.with_context(|| format!("POST webhook to {url}"))?;
        Ok(answer.status().as_u16())
    }
}

fn user_source(user_id: &str) -> Value {
    json!({"type": "user", "userId": user_id})
}

fn group_source(group_id: &str, user_id: Option<&str>) -> Value {
    match user_id {
        Some(user) => json!({"type": "group", "groupId": group_id, "userId": user}),
        None => json!({"type": "group", "groupId": group_id}),
    }
}

fn sticker_content(package_id: &str, sticker_id: &str) -> Value {
    json!({
        "type": "sticker",
        "packageId": package_id,
        "stickerId": sticker_id,
        "stickerResourceType": "STATIC",
        "keywords": [],
    })
}

/// The chat an event came from: the group id, or the user id in a 1:1 chat.
fn chat_of(source: &Value) -> String {
    source
        .get("groupId")
        .or_else(|| source.get("userId"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A message or unsend from a user the platform knows, in a group the bot is
/// in (LINE sends no group events otherwise).
fn check_source(inner: &Inner, source: &Value) -> anyhow::Result<()> {
    let user = source["userId"].as_str().unwrap_or_default();
    if !inner.users.contains_key(user) {
        bail!("unknown user {user}");
    }
    if let Some(group) = source.get("groupId").and_then(Value::as_str) {
        let record = inner.groups.get(group).context("unknown group")?;
        if !record.bot_in {
            bail!("the bot is not in group {group}: LINE sends no events from it");
        }
        if !record.members.iter().any(|m| m == user) {
            bail!("{user} is not a member of group {group}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_base64_hmac_sha256_of_the_raw_body() {
        // HMAC-SHA256 with key "key" over the classic sentence (RFC 4231 style
        // published vector).
        let sig = sign("key", b"The quick brown fox jumps over the lazy dog");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&sig)
            .unwrap();
        assert_eq!(
            hex::encode(raw),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        assert_ne!(sign("key", b"{\"a\":1}"), sign("key", b"{\"a\": 1}"));
        assert_ne!(sign("key", b"x"), sign("other", b"x"));
    }

    #[test]
    fn generated_configs_look_like_lines() {
        let c = Config::generate();
        assert_eq!(c.channel_secret.len(), 32);
        assert!(c.bot_user_id.starts_with('U') && c.bot_user_id.len() == 33);
        assert!(
            c.bot_user_id[1..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert!(c.basic_id.starts_with('@') && c.basic_id.len() == 9);
        assert_ne!(c.access_token, Config::generate().access_token);
    }

    #[test]
    fn pictures_are_pngs() {
        let png = picture_for("U0123");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
}

#[cfg(test)]
mod http_tests;
