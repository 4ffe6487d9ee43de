//! Test harness: real tenant nodes as child processes on ephemeral loopback
//! ports, each with its own temporary data directory, driven only through
//! the public gRPC API (and the CLI in `cli.rs`).
#![allow(dead_code)]

pub mod line;
pub mod line_sdk;
pub mod prometheus;
pub mod python;
pub mod web;

use std::path::PathBuf;
use std::time::Duration;

use tempfile::TempDir;
use tenant_node::client::Client;
use tenant_node::config::{CONFIG_FILE, Config, WebListen};
use tenant_node::ids::TenantId;
use tenant_node::init::{InitOptions, init};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_stream::StreamExt;
use tonic::Code;
use works_proto::client::v1 as pb;
use works_tests::scenario::{self, Side};

pub const PASSWORD: &str = "correct horse battery";
pub const ADMIN_PASSWORD: &str = "admin password 1";
const START_DEADLINE: Duration = Duration::from_secs(20);
pub const EVENT_DEADLINE: Duration = Duration::from_secs(10);

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_node-under-test")
}

pub struct TestNode {
    pub tenant: String,
    pub url: String,
    /// host:port of the bridge (mutual TLS).
    pub bridge: String,
    /// `http://host:port` of the web port (the browser app and grpc-web),
    /// or `None` when the node serves none.
    pub web: Option<String>,
    /// `http://host:port` of the ops port (health, readiness, metrics), or
    /// `None` when the node serves none.
    pub ops: Option<String>,
    /// `http://host:port` of LINE's webhook port (`[line] webhook_listen`),
    /// or `None` when it is served on the web port or not at all.
    pub line_webhook: Option<String>,
    pub admin_id: String,
    dir: TempDir,
    child: Option<Child>,
}

impl TestNode {
    pub async fn start(tenant: &str) -> TestNode {
        Self::start_with(tenant, |_| {}).await
    }

    /// Initialises a data directory, lets the test adjust the config, and
    /// starts `serve` on it.
    pub async fn start_with(tenant: &str, adjust: impl Fn(&mut Config)) -> TestNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let mut wanted = Config::new(&TenantId::parse(tenant).expect("tenant id"));
        adjust(&mut wanted);
        let done = init(InitOptions {
            data_dir: data.clone(),
            tenant: tenant.into(),
            company: format!("{tenant} Inc."),
            api: Some(([127, 0, 0, 1], 0).into()),
            bridge: Some(([127, 0, 0, 1], 0).into()),
            web: Some(WebListen(Some(([127, 0, 0, 1], 0).into()))),
            ops: Some(WebListen(Some(([127, 0, 0, 1], 0).into()))),
            admin_password: Some(ADMIN_PASSWORD.into()),
            database_url: Some(wanted.storage.url.clone()),
        })
        .await
        .expect("init");
        let mut config = Config::load(&data).expect("config");
        adjust(&mut config);
        std::fs::write(data.join(CONFIG_FILE), config.to_toml()).expect("write config");
        let mut node = TestNode {
            tenant: tenant.into(),
            url: String::new(),
            bridge: String::new(),
            web: None,
            ops: None,
            line_webhook: None,
            admin_id: done.admin.to_string(),
            dir,
            child: None,
        };
        node.spawn().await;
        node.pin_ports();
        node
    }

    /// Another replica of this node, as a second machine would run it: the
    /// same configuration (its database, its TLS files), ports of its own.
    /// Only for a database replicas share (PostgreSQL).
    pub async fn replica(&self) -> TestNode {
        let dir = tempfile::tempdir().expect("temp dir");
        scenario::replica_data_dir(&self.data_dir(), &dir.path().join("data"), true)
            .expect("the replica's data directory");
        let mut node = TestNode {
            tenant: self.tenant.clone(),
            url: String::new(),
            bridge: String::new(),
            web: None,
            ops: None,
            line_webhook: None,
            admin_id: self.admin_id.clone(),
            dir,
            child: None,
        };
        node.spawn().await;
        node.pin_ports();
        node
    }

    /// Restarts come back on the same ports, as a real node would.
    fn pin_ports(&self) {
        let node = self;
        let (api, bridge) = (
            node.url.trim_start_matches("http://").parse().unwrap(),
            node.bridge.parse().unwrap(),
        );
        let web = node
            .web
            .as_ref()
            .map(|w| w.trim_start_matches("http://").parse().unwrap());
        let ops = node
            .ops
            .as_ref()
            .map(|o| o.trim_start_matches("http://").parse().unwrap());
        node.edit_config(|c| {
            c.api.listen = api;
            c.bridge.listen = bridge;
            c.web.listen = WebListen(web);
            c.ops.listen = WebListen(ops);
        });
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("node.log"))
            .expect("log file");
        let mut serve = Command::new(binary());
        serve
            .arg("serve")
            .arg("--data")
            .arg(self.data_dir())
            .env("RUST_LOG", "info")
            .stderr(log);
        let serving = scenario::serve(serve, START_DEADLINE)
            .await
            .unwrap_or_else(|e| panic!("node {e:#}; log:\n{}", self.log()));
        self.bridge = serving.bridge.to_string();
        self.web = serving.web.map(|w| format!("http://{w}"));
        self.ops = serving.ops.map(|o| format!("http://{o}"));
        self.line_webhook = serving.line.map(|l| format!("http://{l}"));
        self.url = format!("http://{}", serving.api);
        self.child = Some(serving.child);
    }

    pub fn tls_files(&self) -> works_certs::NodeTlsFiles {
        works_certs::NodeTlsFiles::in_dir(self.data_dir().join("tls"))
    }

    /// Rewrites node.toml; takes effect at the next (re)start.
    pub fn edit_config(&self, edit: impl FnOnce(&mut Config)) {
        let mut config = Config::load(&self.data_dir()).expect("config");
        edit(&mut config);
        std::fs::write(self.data_dir().join(CONFIG_FILE), config.to_toml()).expect("write config");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
    }

    /// The node's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// SIGKILL: no shutdown code runs, as in a crash or a power cut of the process.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill");
        }
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().expect("pid");
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        tokio::time::timeout(START_DEADLINE, child.wait())
            .await
            .expect("node did not stop after SIGTERM")
            .expect("wait")
    }

    /// SIGSTOP (`false`) or SIGCONT (`true`): a node that hangs, accepting
    /// connections in the kernel but answering nothing.
    pub fn set_running(&self, running: bool) {
        let pid = self.child.as_ref().and_then(|c| c.id()).expect("running");
        let status = std::process::Command::new("kill")
            .arg(if running { "-CONT" } else { "-STOP" })
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    /// SIGTERM, a clean exit, and a start again on the same ports: one step
    /// of a rolling restart.
    pub async fn restart_gracefully(&mut self) {
        let status = self.terminate().await;
        assert!(status.success(), "the node exited with {status}");
        self.spawn().await;
    }

    pub async fn anonymous(&self) -> Client {
        Client::connect(&self.url, None).await.expect("connect")
    }

    pub async fn admin(&self) -> Client {
        self.anonymous()
            .await
            .login(&self.admin_id, ADMIN_PASSWORD)
            .await
            .expect("admin login")
    }

    /// Adds a member through the admin API and logs them in.
    pub async fn member(&self, name: &str) -> Member {
        let admin = self.admin().await;
        let id = scenario::add_member(&admin, name, &capitalise(name), PASSWORD)
            .await
            .expect("add member");
        let client = self
            .anonymous()
            .await
            .login(&id, PASSWORD)
            .await
            .expect("login");
        Member { id, client }
    }

    /// Logs in an existing member again (after a restart, say).
    pub async fn login(&self, id: &str) -> Member {
        let client = self
            .anonymous()
            .await
            .login(id, PASSWORD)
            .await
            .expect("login");
        Member {
            id: id.into(),
            client,
        }
    }
}

fn capitalise(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

pub struct Member {
    pub id: String,
    pub client: Client,
}

impl Member {
    /// This member's side of an introduction to another company.
    pub fn side<'a>(&'a self, admin: &'a Client) -> Side<'a> {
        Side {
            admin,
            member: &self.client,
            member_id: &self.id,
        }
    }

    pub async fn direct_room(&self, other: &str) -> pb::Room {
        self.create_room(pb::RoomKind::Direct, "", &[other])
            .await
            .expect("create direct room")
    }

    pub async fn group_room(&self, name: &str, others: &[&str]) -> pb::Room {
        self.create_room(pb::RoomKind::Group, name, others)
            .await
            .expect("create group room")
    }

    pub async fn create_room(
        &self,
        kind: pb::RoomKind,
        name: &str,
        others: &[&str],
    ) -> Result<pb::Room, tonic::Status> {
        self.client
            .rooms
            .clone()
            .create_room(pb::CreateRoomRequest {
                kind: kind as i32,
                name: name.into(),
                members: others.iter().map(|s| s.to_string()).collect(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn send(&self, room: &str, text: &str) -> Result<pb::RoomEvent, tonic::Status> {
        self.send_keyed(room, &ulid::Ulid::new().to_string(), text)
            .await
            .map(|r| r.event.expect("event"))
    }

    pub async fn send_keyed(
        &self,
        room: &str,
        key: &str,
        text: &str,
    ) -> Result<pb::SendMessageResponse, tonic::Status> {
        self.client
            .rooms
            .clone()
            .send_message(pb::SendMessageRequest {
                room_id: room.into(),
                idempotency_key: key.into(),
                text: text.into(),
                ..Default::default()
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Every event of a room, paging forward from the start.
    pub async fn history(&self, room: &str) -> Result<Vec<pb::RoomEvent>, tonic::Status> {
        let mut all = Vec::new();
        loop {
            let page = self
                .client
                .rooms
                .clone()
                .history(pb::HistoryRequest {
                    room_id: room.into(),
                    after_seq: Some(all.last().map_or(0, |e: &pb::RoomEvent| e.seq)),
                    before_seq: None,
                    limit: 1000,
                })
                .await?
                .into_inner();
            all.extend(page.events);
            if !page.has_more {
                return Ok(all);
            }
        }
    }

    /// The caller's external contact `user`, as `GetContact` shows it.
    pub async fn contact(&self, user: &str) -> pb::ExternalContact {
        self.client
            .contacts
            .clone()
            .get_contact(pb::ContactRef {
                user_id: user.into(),
            })
            .await
            .expect("get contact")
            .into_inner()
    }

    pub async fn rooms(&self) -> Vec<pb::Room> {
        self.client
            .rooms
            .clone()
            .list_rooms(pb::ListRoomsRequest {})
            .await
            .expect("list rooms")
            .into_inner()
            .rooms
    }

    pub async fn watch(&self, cursors: &[(&str, u64)]) -> Result<Watch, tonic::Status> {
        let stream = self
            .client
            .rooms
            .clone()
            .watch(pb::WatchRequest {
                cursors: cursors
                    .iter()
                    .map(|(room, seq)| pb::RoomCursor {
                        room_id: room.to_string(),
                        seq: *seq,
                    })
                    .collect(),
                room_id: String::new(),
            })
            .await?
            .into_inner();
        Ok(Watch(stream))
    }
}

pub struct Watch(pub tonic::Streaming<pb::WatchEvent>);

impl Watch {
    /// The next event, failing the test when none arrives in time.
    pub async fn next(&mut self) -> pb::RoomEvent {
        match self.try_next().await {
            Ok(event) => event,
            Err(status) => panic!("stream failed: {status:?}"),
        }
    }

    pub async fn try_next(&mut self) -> Result<pb::RoomEvent, tonic::Status> {
        let item = tokio::time::timeout(EVENT_DEADLINE, self.0.next())
            .await
            .expect("no event within the deadline")
            .expect("stream ended")?;
        match item.kind {
            Some(pb::watch_event::Kind::RoomEvent(e)) => Ok(e),
            Some(pb::watch_event::Kind::Notice(n)) => {
                panic!("expected a room event, got notice {n:?}")
            }
            None => panic!("empty watch item"),
        }
    }

    pub async fn next_notice(&mut self) -> pb::Notice {
        let item = tokio::time::timeout(EVENT_DEADLINE, self.0.next())
            .await
            .expect("no notice within the deadline")
            .expect("stream ended")
            .expect("stream failed");
        match item.kind {
            Some(pb::watch_event::Kind::Notice(n)) => n,
            other => panic!("expected a notice, got {other:?}"),
        }
    }

    pub async fn take(&mut self, n: usize) -> Vec<pb::RoomEvent> {
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            events.push(self.next().await);
        }
        events
    }

    /// Asserts nothing more arrives within a short quiet period.
    pub async fn assert_quiet(&mut self, quiet: Duration) {
        if let Ok(item) = tokio::time::timeout(quiet, self.0.next()).await {
            panic!("expected no more events, got {item:?}");
        }
    }
}

pub fn text(event: &pb::RoomEvent) -> Option<&str> {
    match &event.body {
        Some(pb::room_event::Body::Text(t)) => Some(&t.text),
        _ => None,
    }
}

/// A real PNG photo of `width` by `height` pixels.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 16) as u8, (y * 16) as u8, 128])
    }))
    .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
    .expect("encode a PNG");
    out
}

/// Asserts a call failed with `code` and a message containing `fragment`.
#[track_caller]
pub fn check<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, fragment: &str) {
    match result {
        Ok(value) => panic!("expected {code:?} ({fragment}), got Ok({value:?})"),
        Err(status) => {
            assert_eq!(status.code(), code, "status: {status:?}");
            assert!(
                status.message().contains(fragment),
                "message {:?} lacks {fragment:?}",
                status.message()
            );
        }
    }
}

/// Polls `condition` until it holds, failing the test at the deadline.
pub async fn eventually(condition: impl Fn() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + EVENT_DEADLINE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A local SMTP sink: accepts every message and keeps it, for tests of
/// outgoing mail. Speaks just enough SMTP for a real client.
pub struct SmtpSink {
    pub port: u16,
    pub messages: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind smtp sink");
        let port = listener.local_addr().unwrap().port();
        let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let store = messages.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                    while let Ok(Some(line)) = lines.next_line().await {
                        let verb = line
                            .split_whitespace()
                            .next()
                            .unwrap_or("")
                            .to_ascii_uppercase();
                        let reply: &[u8] = match verb.as_str() {
                            "EHLO" | "HELO" => b"250 sink\r\n",
                            "DATA" => {
                                let _ = write.write_all(b"354 end with a dot\r\n").await;
                                let mut body = String::new();
                                while let Ok(Some(data)) = lines.next_line().await {
                                    if data == "." {
                                        break;
                                    }
                                    body.push_str(&data);
                                    body.push('\n');
                                }
                                store.lock().unwrap().push(body);
                                b"250 queued\r\n"
                            }
                            "QUIT" => {
                                let _ = write.write_all(b"221 bye\r\n").await;
                                return;
                            }
                            _ => b"250 ok\r\n",
                        };
                        let _ = write.write_all(reply).await;
                    }
                });
            }
        });
        SmtpSink { port, messages }
    }
}

/// Peers `a` with `b` by an invitation from `b`'s admin.
pub async fn peer_with(a: &TestNode, b: &TestNode) {
    scenario::peer(&a.admin().await, &b.admin().await)
        .await
        .expect("peer");
}

/// A bridge client presenting `cert` to `target`'s bridge, which must present
/// a certificate from its own CA naming its tenant.
pub async fn bridge_client(
    target: &TestNode,
    cert: &works_certs::NodeCert,
) -> works_bridge::PeerClient {
    let identity = works_bridge::NodeIdentity::from_node_cert(cert).expect("identity");
    let target_ca = target.tls_files().load_ca().expect("target CA");
    let config = works_bridge::tls::client_config_pinned(&identity, &[target_ca.der().clone()])
        .expect("tls config");
    let tenant = works_bridge::TenantId::parse(&target.tenant).expect("tenant");
    works_bridge::PeerClient::connect(&target.bridge, &tenant, config)
        .await
        .expect("connect to the bridge")
}

/// Sets external messaging at `admin`'s company and whether `member` is on
/// its connected-members list.
pub async fn allow(admin: &Client, enabled: bool, member: &str, connected: bool) {
    scenario::set_external(admin, enabled)
        .await
        .expect("external settings");
    scenario::set_connected(admin, member, connected)
        .await
        .expect("connected members");
}

/// `from` asks `to` to be a contact and `to` accepts.
pub async fn befriend(from: &Member, to: &Member) {
    scenario::befriend(&from.client, &to.client, &to.id)
        .await
        .expect("befriend");
}

/// Polls an async `condition` until it holds, failing the test after `within`.
pub async fn until<F, Fut>(within: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Member {
    /// A sticker, with its delivery.
    pub async fn send_sticker(
        &self,
        room: &str,
        name: &str,
    ) -> Result<pb::SendMessageResponse, tonic::Status> {
        self.client
            .rooms
            .clone()
            .send_message(pb::SendMessageRequest {
                room_id: room.into(),
                idempotency_key: ulid::Ulid::new().to_string(),
                sticker: name.into(),
                ..Default::default()
            })
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn delivery(
        &self,
        room: &str,
        event_id: &str,
    ) -> Result<pb::Delivery, tonic::Status> {
        self.client
            .rooms
            .clone()
            .get_delivery(pb::GetDeliveryRequest {
                room_id: room.into(),
                event_id: event_id.into(),
            })
            .await
            .map(tonic::Response::into_inner)
    }
}

impl Member {
    /// Uploads `data` for `room` in 64 KiB chunks and posts it.
    pub async fn send_file(
        &self,
        room: &str,
        name: &str,
        data: &[u8],
    ) -> Result<pb::SendMessageResponse, tonic::Status> {
        let attachment = self.upload(room, name, data).await?;
        self.client
            .rooms
            .clone()
            .send_message(pb::SendMessageRequest {
                room_id: room.into(),
                idempotency_key: ulid::Ulid::new().to_string(),
                attachment_id: attachment.id,
                ..Default::default()
            })
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn upload(
        &self,
        room: &str,
        name: &str,
        data: &[u8],
    ) -> Result<pb::Attachment, tonic::Status> {
        let mut chunks: Vec<pb::UploadChunk> = data
            .chunks(64 * 1024)
            .map(|c| pb::UploadChunk {
                data: c.to_vec(),
                ..Default::default()
            })
            .collect();
        if chunks.is_empty() {
            chunks.push(pb::UploadChunk::default());
        }
        chunks[0].room_id = room.into();
        chunks[0].name = name.into();
        chunks[0].content_type = "application/octet-stream".into();
        self.client
            .rooms
            .clone()
            .upload_attachment(tokio_stream::iter(chunks))
            .await
            .map(tonic::Response::into_inner)
    }

    /// A posted file's description and bytes.
    pub async fn download(&self, id: &str) -> Result<(pb::Attachment, Vec<u8>), tonic::Status> {
        let mut chunks = self
            .client
            .rooms
            .clone()
            .download_attachment(pb::DownloadAttachmentRequest {
                attachment_id: id.into(),
            })
            .await?
            .into_inner();
        let mut meta = None;
        let mut data = Vec::new();
        while let Some(chunk) = chunks.message().await? {
            if chunk.attachment.is_some() {
                meta = chunk.attachment;
            }
            data.extend_from_slice(&chunk.data);
        }
        Ok((meta.expect("attachment description"), data))
    }
}

pub fn attachment(event: &pb::RoomEvent) -> Option<&pb::Attachment> {
    match &event.body {
        Some(pb::room_event::Body::Attachment(a)) => Some(a),
        _ => None,
    }
}

/// A TCP proxy of our own in front of a node's bridge, which can drop every
/// connection through it at once: a link that flaps.
pub struct LinkCutter {
    pub addr: String,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
    pub cuts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Connections made through the proxy.
    pub connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl LinkCutter {
    pub async fn start(target: &str) -> LinkCutter {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().unwrap().to_string();
        let conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> =
            Default::default();
        let target = target.to_string();
        let connections: std::sync::Arc<std::sync::atomic::AtomicUsize> = Default::default();
        let accept = {
            let conns = conns.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let target = target.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    conns.lock().unwrap().push(task);
                }
            })
        };
        LinkCutter {
            addr,
            conns,
            accept,
            cuts: Default::default(),
            connections,
        }
    }

    /// Drops every connection through the proxy.
    pub fn cut(&self) {
        for task in self.conns.lock().unwrap().drain(..) {
            task.abort();
        }
        self.cuts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Cuts the link every `every` until the returned handle is aborted.
    pub fn flap(self: &std::sync::Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                // The period of the flapping link, the fault under test.
                tokio::time::sleep(every).await;
                me.cut();
            }
        })
    }
}

impl Drop for LinkCutter {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

impl TestNode {
    /// Puts a `LinkCutter` in front of this node's bridge: peers that peer
    /// with it from now on reach it only through the proxy.
    pub async fn behind_cutter(&mut self) -> std::sync::Arc<LinkCutter> {
        let cutter = std::sync::Arc::new(LinkCutter::start(&self.bridge).await);
        let addr = cutter.addr.clone();
        self.edit_config(|c| c.bridge.advertise = Some(addr));
        self.terminate().await;
        self.restart().await;
        cutter
    }
}

// ---- two companies in one room ------------------------------------------

pub const RELAY_DEADLINE: Duration = Duration::from_secs(60);

/// Two peered companies whose members alice@a and bob@b are contacts.
pub async fn pair() -> (TestNode, TestNode, Member, Member) {
    let a = TestNode::start("a.example").await;
    let b = TestNode::start("b.example").await;
    pair_of(a, b).await
}

/// `pair` on nodes already started (a.example and b.example).
pub async fn pair_of(a: TestNode, b: TestNode) -> (TestNode, TestNode, Member, Member) {
    let alice = a.member("alice").await;
    let bob = b.member("bob").await;
    scenario::introduce(&alice.side(&a.admin().await), &bob.side(&b.admin().await))
        .await
        .expect("introduce alice and bob");
    (a, b, alice, bob)
}

/// The room `who` is in with `other`, once it shows in their list.
pub async fn room_with(who: &Member, other: &str) -> pb::Room {
    scenario::room_where(&who.client, RELAY_DEADLINE, |r| {
        r.members.iter().any(|m| m == other)
    })
    .await
    .expect("list rooms")
    .unwrap_or_else(|| panic!("{} never saw a room with {other}", who.id))
}

pub fn texts(events: &[pb::RoomEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| text(e).map(str::to_string))
        .collect()
}

pub async fn history_texts(who: &Member, room: &str) -> Vec<String> {
    texts(&who.history(room).await.expect("history"))
}

/// Waits until `who`'s history of `room` holds `count` text messages.
pub async fn until_texts(who: &Member, room: &str, count: usize) -> Vec<String> {
    until(
        RELAY_DEADLINE,
        &format!("{} has {count} messages", who.id),
        || async { history_texts(who, room).await.len() >= count },
    )
    .await;
    history_texts(who, room).await
}

/// The peers an admin's node lists, with their state and queue depth.
pub async fn peers(admin: &Client) -> Vec<pb::Peer> {
    admin
        .peering
        .clone()
        .list_peers(pb::ListPeersRequest {})
        .await
        .unwrap()
        .into_inner()
        .peers
}

pub fn state(d: &pb::Delivery) -> pb::DeliveryState {
    pb::DeliveryState::try_from(d.state).unwrap_or_default()
}

pub fn burst(
    who: &Member,
    room: &str,
    tag: &'static str,
    count: usize,
) -> tokio::task::JoinHandle<Vec<String>> {
    let who = Member {
        id: who.id.clone(),
        client: who.client.clone(),
    };
    let room = room.to_string();
    tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        for i in 0..count {
            if let Ok(e) = who.send(&room, &format!("{tag}{i:03}")).await {
                acknowledged.push(text(&e).unwrap().to_string());
            }
        }
        acknowledged
    })
}

// ---- raw protobuf --------------------------------------------------------

/// A codec that passes message bytes through untouched: any RPC, any
/// request, hand-made protobuf included.
#[derive(Clone, Copy, Default)]
pub struct Raw;

impl tonic::codec::Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

// ---- a peer's node, as an attacker drives it ------------------------------

/// An envelope as a peer's node would put it on the relay stream.
pub fn envelope(
    id: &str,
    host: &str,
    room: &str,
    host_seq: u64,
    payload: works_proto::federation::v1::envelope::Payload,
) -> works_proto::federation::v1::Envelope {
    works_proto::federation::v1::Envelope {
        event_id: id.into(),
        host: host.into(),
        room_id: room.into(),
        host_seq,
        at_ms: 1,
        payload: Some(payload),
    }
}

/// What envelopes carry, as a peer's node would build it.
pub mod wire {
    use works_proto::federation::v1 as fed;
    pub use works_proto::federation::v1::envelope::Payload;

    fn strings(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|m| m.to_string()).collect()
    }

    pub fn text(sender: &str, text: &str) -> Payload {
        Payload::Text(fed::TextEvent {
            sender: sender.into(),
            text: text.into(),
        })
    }

    pub fn sticker(sender: &str, name: &str) -> Payload {
        Payload::Sticker(fed::StickerEvent {
            sender: sender.into(),
            name: name.into(),
        })
    }

    pub fn renamed(sender: &str, name: &str, room: Option<fed::RoomSnapshot>) -> Payload {
        Payload::Renamed(fed::RenamedEvent {
            sender: sender.into(),
            name: name.into(),
            room,
        })
    }

    /// A group room's creation by `sender`, its master.
    pub fn created_group(
        sender: &str,
        name: &str,
        members: &[&str],
        room: Option<fed::RoomSnapshot>,
    ) -> Payload {
        Payload::Created(fed::CreatedEvent {
            sender: sender.into(),
            room_kind: fed::RoomKind::Group.into(),
            name: name.into(),
            members: strings(members),
            room,
        })
    }

    pub fn joined(sender: &str, members: &[&str], room: Option<fed::RoomSnapshot>) -> Payload {
        Payload::Joined(fed::JoinedEvent {
            sender: sender.into(),
            members: strings(members),
            room,
        })
    }

    /// A control message from `from`'s node: no room, no seq, its own id.
    pub fn control(from: &str, payload: Payload) -> fed::Envelope {
        fed::Envelope {
            event_id: ulid::Ulid::new().to_string(),
            host: from.into(),
            room_id: String::new(),
            host_seq: 0,
            at_ms: 1,
            payload: Some(payload),
        }
    }

    /// Members (all, when `members` is empty) became unknown or reachable.
    pub fn reachability(members: &[&str], reachable: bool) -> Payload {
        Payload::Reachability(fed::ReachabilityChange {
            all_members: members.is_empty(),
            members: strings(members),
            reachable,
        })
    }

    /// `profile` of the sender's member, for the receiver's `holders`.
    pub fn profile(profile: fed::PublicProfile, holders: &[&str]) -> Payload {
        Payload::Profile(fed::ProfileSync {
            profile: Some(profile),
            holders: strings(holders),
        })
    }

    /// The sender's CAs (DER).
    pub fn cas(cas: Vec<Vec<u8>>) -> Payload {
        Payload::Cas(fed::CaAnnouncement {
            ca_certificates: cas,
        })
    }

    /// A group room as its host describes it after a change.
    pub fn group(name: &str, master: &str, members: &[&str]) -> fed::RoomSnapshot {
        fed::RoomSnapshot {
            kind: fed::RoomKind::Group.into(),
            name: name.into(),
            master: Some(master.into()),
            members: strings(members),
        }
    }
}

/// One batch whose encoded bytes are `batch` (crafted, for what a typed
/// message cannot carry, such as a field this build does not know), and
/// the acknowledgements that come back.
pub async fn relay_raw(
    client: &works_bridge::PeerClient,
    batch: Vec<u8>,
) -> Vec<works_proto::federation::v1::Ack> {
    use prost::Message;
    let mut grpc = tonic::client::Grpc::new(client.channel());
    grpc.ready().await.expect("channel ready");
    let path = "/works.federation.v1.Bridge/Relay".parse().expect("path");
    let request = tonic::Request::new(tokio_stream::iter(vec![batch]));
    let mut acks = grpc
        .streaming(request, path, Raw)
        .await
        .expect("relay stream")
        .into_inner();
    let mut out = Vec::new();
    while let Ok(Some(ack)) = acks.message().await {
        out.push(works_proto::federation::v1::Ack::decode(ack.as_slice()).expect("an ack"));
    }
    out
}

/// Asserts that an envelope was refused for good, with `fragment` in the
/// reason.
pub fn refused(ack: &works_proto::federation::v1::Ack, fragment: &str) {
    assert!(
        !ack.retry && ack.refused.contains(fragment),
        "expected a refusal with {fragment:?}, got {ack:?}"
    );
}

/// Asserts that an envelope was stored.
pub fn stored(ack: &works_proto::federation::v1::Ack) {
    assert!(
        !ack.retry && ack.refused.is_empty(),
        "expected it stored, got {ack:?}"
    );
}

/// Relays one control message and returns its acknowledgement.
pub async fn relay_control(
    client: &mut works_bridge::PeerClient,
    from: &str,
    payload: wire::Payload,
) -> works_proto::federation::v1::Ack {
    let acks = relay_once(client, vec![wire::control(from, payload)]).await;
    assert_eq!(acks.len(), 1, "one acknowledgement: {acks:?}");
    acks.into_iter().next().expect("an ack")
}

pub async fn relay_once(
    client: &mut works_bridge::PeerClient,
    envelopes: Vec<works_proto::federation::v1::Envelope>,
) -> Vec<works_proto::federation::v1::Ack> {
    let batch = works_proto::federation::v1::EnvelopeBatch { envelopes };
    let mut acks = client
        .raw()
        .relay(tokio_stream::iter(vec![batch]))
        .await
        .expect("relay stream")
        .into_inner();
    let mut out = Vec::new();
    while let Ok(Some(ack)) = acks.message().await {
        out.push(ack);
    }
    out
}
