//! Node configuration: a TOML file in the data directory, with defaults and an
//! environment overlay. Parsing does no I/O beyond reading the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::TenantId;

pub const CONFIG_FILE: &str = "node.toml";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The company's tenant id, e.g. `acme.example`.
    pub tenant: String,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub bridge: BridgeConfig,
    #[serde(default)]
    pub web: WebConfig,
    #[serde(default)]
    pub ops: OpsConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub limits: Limits,
    /// Where invitation emails go out; `--email` is refused without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpConfig>,
    /// Peers declared here rather than by invitation (deployments as code).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<DeclaredPeer>,
    /// The company's LINE Official Account (a Messaging API channel): where
    /// and how to reach LINE. The admin's LINE use status switches it on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<LineConfig>,
}

/// How the node reaches LINE's Messaging API for the company's account.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    #[serde(default = "default_line_api")]
    pub api_base_url: String,
    /// Where message content (images, files) is fetched.
    #[serde(default = "default_line_data_api")]
    pub data_api_base_url: String,
    pub channel_id: String,
    /// Files holding the channel secret and the channel access token
    /// (absolute or relative to the data directory; mode 0600; surrounding
    /// whitespace is trimmed). Never logged.
    pub channel_secret_file: PathBuf,
    pub access_token_file: PathBuf,
    /// The account's basic id, e.g. `@123abcde`: the "add me" links.
    pub basic_id: String,
    /// Where LINE posts webhooks when there is no web port (`POST
    /// /line/webhook`); with a web port it is served there too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_listen: Option<SocketAddr>,
}

impl LineConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, url) in [
            ("line.api_base_url", &self.api_base_url),
            ("line.data_api_base_url", &self.data_api_base_url),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::Invalid {
                    key,
                    reason: format!("{url:?} must start with https:// (or http://)"),
                });
            }
        }
        if self.channel_id.trim().is_empty() {
            return Err(ConfigError::Invalid {
                key: "line.channel_id",
                reason: "is empty: copy the channel id from the LINE Developers console".into(),
            });
        }
        let basic = self.basic_id.trim();
        if !basic.starts_with('@') || basic.len() < 2 || basic.contains(char::is_whitespace) {
            return Err(ConfigError::Invalid {
                key: "line.basic_id",
                reason: format!("{basic:?} must be the account's basic id, like @123abcde"),
            });
        }
        Ok(())
    }

    /// A file the config names: absolute, or under the data directory.
    pub fn path(data_dir: &Path, file: &Path) -> PathBuf {
        if file.is_absolute() {
            file.to_path_buf()
        } else {
            data_dir.join(file)
        }
    }
}

fn default_line_api() -> String {
    "https://api.line.me".into()
}
fn default_line_data_api() -> String {
    "https://api-data.line.me".into()
}

/// An SMTP relay (plain SMTP, as to a local MTA that relays onwards).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// The sender address of invitation emails.
    pub from: String,
}

impl DeclaredPeer {
    /// Every endpoint given, in order, as the dialer takes them.
    pub fn endpoint_list(&self) -> String {
        let mut all: Vec<&str> = works_bridge::client::endpoint_list(&self.endpoint).collect();
        all.extend(
            self.endpoints
                .iter()
                .map(|e| e.trim())
                .filter(|e| !e.is_empty()),
        );
        all.join(",")
    }
}

fn default_smtp_port() -> u16 {
    25
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredPeer {
    pub tenant: String,
    /// host:port of the peer's bridge (or several, separated by commas).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    /// The peer's bridge endpoints, tried in order, for a company on several
    /// replicas (instead of `endpoint`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// The peer's CA certificate files (PEM; relative paths are under the
    /// data directory). Two during a CA change-over.
    pub ca_files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Where the client gRPC API listens.
    #[serde(default = "default_api_listen")]
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Where the node-to-node bridge listens (mutual TLS).
    #[serde(default = "default_bridge_listen")]
    pub listen: SocketAddr,
    /// host:port that peers dial, put in peering invitations; the listening
    /// address when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    /// The node's CA and certificate (relative to the data directory).
    #[serde(default = "default_tls_dir")]
    pub tls_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Where the browser app and the client API over grpc-web are served
    /// (plain HTTP/1.1 and HTTP/2); an empty string serves no web port.
    #[serde(default = "default_web_listen")]
    pub listen: WebListen,
    /// The address the outside world reaches the web port at (e.g.
    /// `https://chat.acme.example`): where LINE fetches members' icons and
    /// the files members share with LINE users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

/// The web port's address, or none: written as `host:port` or `""`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WebListen(pub Option<SocketAddr>);

impl std::str::FromStr for WebListen {
    type Err = std::net::AddrParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(WebListen(None));
        }
        text.parse().map(|addr| WebListen(Some(addr)))
    }
}

impl TryFrom<String> for WebListen {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
            .map_err(|e| format!("{text:?} is neither host:port nor empty: {e}"))
    }
}

impl From<WebListen> for String {
    fn from(listen: WebListen) -> String {
        listen.to_string()
    }
}

impl std::fmt::Display for WebListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => Ok(()),
        }
    }
}

/// The operations port: health, readiness and metrics for the platform team.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsConfig {
    /// Where `/healthz`, `/readyz` and `/metrics` are served (plain
    /// HTTP/1.1, no authentication: keep it on a private interface); an
    /// empty string serves no ops port.
    #[serde(default = "default_ops_listen")]
    pub listen: WebListen,
    /// How this replica names itself in `works_outbox_deliverer`; the
    /// host name and process id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_id: Option<String>,
}

/// How the node writes its log (to stderr).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (the default, for people) or `json` (one object a line, for
    /// log collectors).
    #[serde(default)]
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?} is neither text nor json")),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `sqlite://PATH` (relative paths are under the data directory) or
    /// `postgres://...` for several replicas sharing one database.
    #[serde(default = "default_database_url")]
    pub url: String,
    /// Pooled database connections. Unset: for SQLite one per CPU core (at
    /// least 2), because each connection has a thread and a page cache of
    /// its own and the pool hands them out in turn; for PostgreSQL 8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// SQLite only: `normal` (the default; a killed process loses nothing
    /// committed) or `full` (a power cut loses nothing committed, at the
    /// cost of an fsync per commit).
    #[serde(default)]
    pub synchronous: Synchronous,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    #[default]
    Normal,
    Full,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest text message, in bytes of UTF-8.
    #[serde(default = "default_max_text_bytes")]
    pub max_text_bytes: usize,
    /// Largest profile photo, in bytes.
    #[serde(default = "default_max_photo_bytes")]
    pub max_photo_bytes: usize,
    /// Largest file a member may post to a room, in bytes.
    #[serde(default = "default_max_attachment_bytes")]
    pub max_attachment_bytes: usize,
    /// Largest number of members in a group room.
    #[serde(default = "default_max_room_members")]
    pub max_room_members: usize,
    /// How long a login token stays valid, in seconds.
    #[serde(default = "default_token_ttl_secs")]
    pub token_ttl_secs: u64,
    /// Friend requests one member may send per hour.
    #[serde(default = "default_requests_per_member_hour")]
    pub requests_per_member_hour: u32,
    /// Friend requests this node's members may send to one peer per hour.
    #[serde(default = "default_requests_per_peer_hour")]
    pub requests_per_peer_hour: u32,
    /// New friend requests one peer's member may send our members per hour
    /// (the receiver's half; a repeat of a pending request is not new).
    #[serde(default = "default_incoming_requests_per_member_hour")]
    pub incoming_requests_per_member_hour: u32,
    /// New friend requests one peer company may send our members per hour,
    /// all its members together (made-up ones too).
    #[serde(default = "default_incoming_requests_per_peer_hour")]
    pub incoming_requests_per_peer_hour: u32,
    /// New friend requests, and so notices, one of our members may get from
    /// one peer company per hour.
    #[serde(default = "default_incoming_requests_per_recipient_hour")]
    pub incoming_requests_per_recipient_hour: u32,
    /// Lookups of our members one peer's member, and one peer company in
    /// all, may make per hour (each is audited).
    #[serde(default = "default_incoming_lookups_per_member_hour")]
    pub incoming_lookups_per_member_hour: u32,
    #[serde(default = "default_incoming_lookups_per_peer_hour")]
    pub incoming_lookups_per_peer_hour: u32,
    /// Profile syncs a peer may send for one of its members per hour.
    #[serde(default = "default_profile_syncs_per_member_hour")]
    pub profile_syncs_per_member_hour: u32,
    /// Reachability notices one peer may send per hour.
    #[serde(default = "default_reachability_notices_per_peer_hour")]
    pub reachability_notices_per_peer_hour: u32,
    /// Failed logins allowed per member id, and per source address, within
    /// `login_window_secs`; more attempts are refused before any password
    /// is checked.
    #[serde(default = "default_login_failures_per_member")]
    pub login_failures_per_member: u32,
    #[serde(default = "default_login_failures_per_address")]
    pub login_failures_per_address: u32,
    #[serde(default = "default_login_window_secs")]
    pub login_window_secs: u64,
    /// Client API connections open at once; one more is closed as soon as
    /// it is accepted. Each live stream (`room watch`) holds one.
    #[serde(default = "default_max_api_connections")]
    pub max_api_connections: usize,
    /// Bridge connections open at once, TLS handshakes included.
    #[serde(default = "default_max_bridge_connections")]
    pub max_bridge_connections: usize,
    /// How long a new connection may take to send the HTTP/2 client preface
    /// (on the bridge, counted from the end of the TLS handshake), in
    /// milliseconds; a connection that is slower is closed.
    #[serde(default = "default_preface_timeout_ms")]
    pub preface_timeout_ms: u64,
    /// Idle time after which either server pings a connection, and how long
    /// the ping may stay unanswered before the connection is closed, in
    /// milliseconds.
    #[serde(default = "default_keepalive_interval_ms")]
    pub keepalive_interval_ms: u64,
    #[serde(default = "default_keepalive_timeout_ms")]
    pub keepalive_timeout_ms: u64,
    /// How long a peer may take to acknowledge each relayed envelope, in
    /// milliseconds; then the relay stream is given up and the batch
    /// retried on a new one.
    #[serde(default = "default_relay_ack_timeout_ms")]
    pub relay_ack_timeout_ms: u64,
}

fn default_api_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4780))
}
fn default_bridge_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4781))
}
fn default_web_listen() -> WebListen {
    WebListen(Some(SocketAddr::from(([127, 0, 0, 1], 4782))))
}
fn default_ops_listen() -> WebListen {
    WebListen(Some(SocketAddr::from(([127, 0, 0, 1], 4783))))
}
fn default_tls_dir() -> PathBuf {
    PathBuf::from("tls")
}
fn default_database_url() -> String {
    "sqlite://node.db".into()
}
fn default_max_text_bytes() -> usize {
    16 * 1024
}
fn default_max_photo_bytes() -> usize {
    1024 * 1024
}
fn default_max_attachment_bytes() -> usize {
    25 * 1024 * 1024
}
fn default_max_room_members() -> usize {
    500
}
fn default_requests_per_member_hour() -> u32 {
    20
}
fn default_requests_per_peer_hour() -> u32 {
    200
}
fn default_incoming_requests_per_member_hour() -> u32 {
    20
}
fn default_incoming_requests_per_peer_hour() -> u32 {
    200
}
fn default_incoming_requests_per_recipient_hour() -> u32 {
    20
}
fn default_incoming_lookups_per_member_hour() -> u32 {
    60
}
fn default_incoming_lookups_per_peer_hour() -> u32 {
    2000
}
fn default_profile_syncs_per_member_hour() -> u32 {
    60
}
fn default_reachability_notices_per_peer_hour() -> u32 {
    600
}
fn default_login_failures_per_member() -> u32 {
    10
}
fn default_login_failures_per_address() -> u32 {
    50
}
fn default_login_window_secs() -> u64 {
    900
}
fn default_token_ttl_secs() -> u64 {
    30 * 24 * 3600
}
fn default_max_api_connections() -> usize {
    10_000
}
fn default_max_bridge_connections() -> usize {
    1024
}
fn default_preface_timeout_ms() -> u64 {
    10_000
}
fn default_keepalive_interval_ms() -> u64 {
    30_000
}
fn default_keepalive_timeout_ms() -> u64 {
    10_000
}
fn default_relay_ack_timeout_ms() -> u64 {
    10_000
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: default_api_listen(),
        }
    }
}
impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            public_url: None,
            listen: default_web_listen(),
        }
    }
}
impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            listen: default_ops_listen(),
            replica_id: None,
        }
    }
}
impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            listen: default_bridge_listen(),
            advertise: None,
            tls_dir: default_tls_dir(),
        }
    }
}
impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            url: default_database_url(),
            max_connections: None,
            synchronous: Synchronous::default(),
        }
    }
}
impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_text_bytes: default_max_text_bytes(),
            max_photo_bytes: default_max_photo_bytes(),
            max_attachment_bytes: default_max_attachment_bytes(),
            max_room_members: default_max_room_members(),
            token_ttl_secs: default_token_ttl_secs(),
            requests_per_member_hour: default_requests_per_member_hour(),
            requests_per_peer_hour: default_requests_per_peer_hour(),
            incoming_requests_per_member_hour: default_incoming_requests_per_member_hour(),
            incoming_requests_per_peer_hour: default_incoming_requests_per_peer_hour(),
            incoming_requests_per_recipient_hour: default_incoming_requests_per_recipient_hour(),
            incoming_lookups_per_member_hour: default_incoming_lookups_per_member_hour(),
            incoming_lookups_per_peer_hour: default_incoming_lookups_per_peer_hour(),
            profile_syncs_per_member_hour: default_profile_syncs_per_member_hour(),
            reachability_notices_per_peer_hour: default_reachability_notices_per_peer_hour(),
            login_failures_per_member: default_login_failures_per_member(),
            login_failures_per_address: default_login_failures_per_address(),
            login_window_secs: default_login_window_secs(),
            max_api_connections: default_max_api_connections(),
            max_bridge_connections: default_max_bridge_connections(),
            preface_timeout_ms: default_preface_timeout_ms(),
            keepalive_interval_ms: default_keepalive_interval_ms(),
            keepalive_timeout_ms: default_keepalive_timeout_ms(),
            relay_ack_timeout_ms: default_relay_ack_timeout_ms(),
        }
    }
}

impl Limits {
    pub fn preface_timeout(&self) -> Duration {
        Duration::from_millis(self.preface_timeout_ms)
    }
    pub fn keepalive_interval(&self) -> Duration {
        Duration::from_millis(self.keepalive_interval_ms)
    }
    pub fn keepalive_timeout(&self) -> Duration {
        Duration::from_millis(self.keepalive_timeout_ms)
    }
    pub fn relay_ack_timeout(&self) -> Duration {
        Duration::from_millis(self.relay_ack_timeout_ms)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid node configuration: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl Config {
    /// A configuration with every default, for `init` and for tests.
    pub fn new(tenant: &TenantId) -> Self {
        Config {
            tenant: tenant.to_string(),
            api: ApiConfig::default(),
            bridge: BridgeConfig::default(),
            web: WebConfig::default(),
            ops: OpsConfig::default(),
            log: LogConfig::default(),
            storage: StorageConfig::default(),
            limits: Limits::default(),
            smtp: None,
            peers: Vec::new(),
            line: None,
        }
    }

    /// Reads `node.toml` from the data directory, then applies the environment
    /// overlay (`WORKS_API_LISTEN`, `WORKS_BRIDGE_LISTEN`, `WORKS_WEB_LISTEN`,
    /// `WORKS_OPS_LISTEN`, `WORKS_LOG_FORMAT`, `WORKS_DATABASE_URL`).
    pub fn load(data_dir: &Path) -> Result<Self, ConfigError> {
        let path = data_dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|source| ConfigError::Parse {
            path,
            source: Box::new(source),
        })?;
        config.apply_env(|key| std::env::var(key).ok())?;
        config.validate()?;
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Overrides settings from variables; the lookup is a parameter so tests
    /// never touch the process environment.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let addr = |key: &'static str, value: String| {
            value
                .parse::<std::net::SocketAddr>()
                .map_err(|e| ConfigError::Invalid {
                    key,
                    reason: format!("{value:?}: {e}"),
                })
        };
        if let Some(v) = var("WORKS_API_LISTEN") {
            self.api.listen = addr("WORKS_API_LISTEN", v)?;
        }
        if let Some(v) = var("WORKS_BRIDGE_LISTEN") {
            self.bridge.listen = addr("WORKS_BRIDGE_LISTEN", v)?;
        }
        if let Some(v) = var("WORKS_WEB_LISTEN") {
            self.web.listen = v.parse().map_err(|e| ConfigError::Invalid {
                key: "WORKS_WEB_LISTEN",
                reason: format!("{v:?} is neither host:port nor empty: {e}"),
            })?;
        }
        if let Some(v) = var("WORKS_OPS_LISTEN") {
            self.ops.listen = v.parse().map_err(|e| ConfigError::Invalid {
                key: "WORKS_OPS_LISTEN",
                reason: format!("{v:?} is neither host:port nor empty: {e}"),
            })?;
        }
        if let Some(v) = var("WORKS_LOG_FORMAT") {
            self.log.format = v.parse().map_err(|reason| ConfigError::Invalid {
                key: "WORKS_LOG_FORMAT",
                reason,
            })?;
        }
        if let Some(v) = var("WORKS_DATABASE_URL") {
            self.storage.url = v;
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.tenant_id()?;
        if self.limits.max_text_bytes == 0 {
            return Err(ConfigError::Invalid {
                key: "limits.max_text_bytes",
                reason: "must be at least 1".into(),
            });
        }
        if let Some(line) = &self.line {
            line.validate()?;
        }
        if let Some(url) = &self.web.public_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(ConfigError::Invalid {
                key: "web.public_url",
                reason: format!("{url:?} must start with https:// (or http://)"),
            });
        }
        for peer in &self.peers {
            let tenant = TenantId::parse(&peer.tenant).map_err(|e| ConfigError::Invalid {
                key: "peers.tenant",
                reason: e.to_string(),
            })?;
            if tenant.as_str() == crate::ids::LINE_TENANT {
                return Err(ConfigError::Invalid {
                    key: "peers.tenant",
                    reason: "line.invalid is reserved for LINE users".into(),
                });
            }
            if peer.endpoint_list().is_empty() {
                return Err(ConfigError::Invalid {
                    key: "peers.endpoint",
                    reason: format!("{} needs an endpoint (host:port)", peer.tenant),
                });
            }
            if peer.ca_files.is_empty() || peer.ca_files.len() > 2 {
                return Err(ConfigError::Invalid {
                    key: "peers.ca_files",
                    reason: format!(
                        "{} needs one CA file, or two during a change-over",
                        peer.tenant
                    ),
                });
            }
        }
        let at_least_one = [
            (
                "limits.max_api_connections",
                self.limits.max_api_connections as u64,
            ),
            (
                "limits.max_bridge_connections",
                self.limits.max_bridge_connections as u64,
            ),
            ("limits.preface_timeout_ms", self.limits.preface_timeout_ms),
            (
                "limits.incoming_requests_per_member_hour",
                u64::from(self.limits.incoming_requests_per_member_hour),
            ),
            (
                "limits.incoming_requests_per_peer_hour",
                u64::from(self.limits.incoming_requests_per_peer_hour),
            ),
            (
                "limits.incoming_requests_per_recipient_hour",
                u64::from(self.limits.incoming_requests_per_recipient_hour),
            ),
            (
                "limits.incoming_lookups_per_member_hour",
                u64::from(self.limits.incoming_lookups_per_member_hour),
            ),
            (
                "limits.incoming_lookups_per_peer_hour",
                u64::from(self.limits.incoming_lookups_per_peer_hour),
            ),
            (
                "limits.profile_syncs_per_member_hour",
                u64::from(self.limits.profile_syncs_per_member_hour),
            ),
            (
                "limits.reachability_notices_per_peer_hour",
                u64::from(self.limits.reachability_notices_per_peer_hour),
            ),
            (
                "limits.login_failures_per_member",
                u64::from(self.limits.login_failures_per_member),
            ),
            (
                "limits.login_failures_per_address",
                u64::from(self.limits.login_failures_per_address),
            ),
            ("limits.login_window_secs", self.limits.login_window_secs),
            (
                "limits.keepalive_interval_ms",
                self.limits.keepalive_interval_ms,
            ),
            (
                "limits.keepalive_timeout_ms",
                self.limits.keepalive_timeout_ms,
            ),
            (
                "limits.relay_ack_timeout_ms",
                self.limits.relay_ack_timeout_ms,
            ),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    reason: "must be at least 1".into(),
                });
            }
        }
        if let Some(web) = self.web.listen.0 {
            for (other, addr) in [
                ("api.listen", self.api.listen),
                ("bridge.listen", self.bridge.listen),
            ] {
                if web.port() != 0 && web == addr {
                    return Err(ConfigError::Invalid {
                        key: "web.listen",
                        reason: format!("{web} is {other} already"),
                    });
                }
            }
        }
        if let Some(ops) = self.ops.listen.0 {
            let web = self.web.listen.0.map(|w| ("web.listen", w));
            for (other, addr) in [
                Some(("api.listen", self.api.listen)),
                Some(("bridge.listen", self.bridge.listen)),
                web,
            ]
            .into_iter()
            .flatten()
            {
                if ops.port() != 0 && ops == addr {
                    return Err(ConfigError::Invalid {
                        key: "ops.listen",
                        reason: format!("{ops} is {other} already"),
                    });
                }
            }
        }
        if self
            .ops
            .replica_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty())
        {
            return Err(ConfigError::Invalid {
                key: "ops.replica_id",
                reason: "is empty: leave it out for host name and process id".into(),
            });
        }
        if self.limits.max_room_members < 2 {
            return Err(ConfigError::Invalid {
                key: "limits.max_room_members",
                reason: "must be at least 2".into(),
            });
        }
        Ok(())
    }

    /// A path from the config, resolved under the data directory when relative.
    pub fn resolve(data_dir: &Path, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            data_dir.join(path)
        }
    }

    pub fn tenant_id(&self) -> Result<TenantId, ConfigError> {
        let id = TenantId::parse(&self.tenant).map_err(|e| ConfigError::Invalid {
            key: "tenant",
            reason: e.to_string(),
        })?;
        if id.as_str() == crate::ids::LINE_TENANT {
            return Err(ConfigError::Invalid {
                key: "tenant",
                reason: "line.invalid is reserved for LINE users".into(),
            });
        }
        Ok(id)
    }

    /// The database URL with a relative SQLite path resolved under `data_dir`.
    pub fn database_url(&self, data_dir: &Path) -> String {
        match self.storage.url.strip_prefix("sqlite://") {
            Some(path) if !Path::new(path).is_absolute() && !path.starts_with(':') => {
                format!("sqlite://{}", data_dir.join(path).display())
            }
            _ => self.storage.url.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_file_gets_defaults() {
        let config = Config::parse("tenant = \"acme.example\"\n").unwrap();
        assert_eq!(config.limits.max_text_bytes, 16 * 1024);
        assert_eq!(config.api.listen.port(), 4780);
        config.validate().unwrap();
    }

    #[test]
    fn round_trips_through_toml() {
        let config = Config::new(&TenantId::parse("acme.example").unwrap());
        let again = Config::parse(&config.to_toml()).unwrap();
        assert_eq!(again.tenant, "acme.example");
        assert_eq!(again.storage.url, "sqlite://node.db");
    }

    #[test]
    fn the_committed_example_is_valid_and_matches_the_defaults() {
        let example = Config::parse(include_str!("../node.example.toml")).unwrap();
        let defaults = Config::new(&TenantId::parse("acme.example").unwrap());
        assert_eq!(example.to_toml(), defaults.to_toml());
    }

    #[test]
    fn connection_limits_must_be_positive() {
        let mut config = Config::new(&TenantId::parse("acme.example").unwrap());
        config.limits.preface_timeout_ms = 0;
        let err = config.validate().unwrap_err();
        assert!(
            err.to_string().contains("limits.preface_timeout_ms"),
            "{err}"
        );
        config.limits.preface_timeout_ms = 1;
        config.limits.max_api_connections = 0;
        let err = config.validate().unwrap_err();
        assert!(
            err.to_string().contains("limits.max_api_connections"),
            "{err}"
        );
        config.limits.max_api_connections = 1;
        config.limits.relay_ack_timeout_ms = 0;
        let err = config.validate().unwrap_err();
        assert!(
            err.to_string().contains("limits.relay_ack_timeout_ms"),
            "{err}"
        );
    }

    #[test]
    fn a_line_section_is_refused_with_the_key_and_how_to_mend_it() {
        let line = |extra: &str| {
            format!(
                "tenant = \"acme.example\"\n[line]\n\
                 channel_secret_file = \"line/secret\"\n\
                 access_token_file = \"line/token\"\n{extra}"
            )
        };
        let good = "channel_id = \"1656\"\nbasic_id = \"@123abcde\"\n";
        Config::parse(&line(good)).unwrap().validate().unwrap();
        for (extra, key, fragment) in [
            (
                "channel_id = \" \"\nbasic_id = \"@123abcde\"\n",
                "line.channel_id",
                "LINE Developers console",
            ),
            (
                "channel_id = \"1656\"\nbasic_id = \"123abcde\"\n",
                "line.basic_id",
                "like @123abcde",
            ),
            (
                "channel_id = \"1656\"\nbasic_id = \"@ 12\"\n",
                "line.basic_id",
                "like @123abcde",
            ),
            (
                "channel_id = \"1656\"\nbasic_id = \"@1\"\napi_base_url = \"api.line.me\"\n",
                "line.api_base_url",
                "must start with https://",
            ),
            (
                "channel_id = \"1656\"\nbasic_id = \"@1\"\ndata_api_base_url = \"ftp://x\"\n",
                "line.data_api_base_url",
                "must start with https://",
            ),
        ] {
            let err = Config::parse(&line(extra))
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(key) && err.contains(fragment),
                "{extra}: {err}"
            );
        }
        let err = Config::parse(&line(&format!("{good}channel_secret = \"x\"\n"))).unwrap_err();
        assert!(err.to_string().contains("channel_secret"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::parse("tenant = \"a.b\"\nlistne = 1\n").unwrap_err();
        assert!(err.to_string().contains("listne"), "{err}");
    }

    #[test]
    fn environment_overlay() {
        let mut config = Config::new(&TenantId::parse("acme.example").unwrap());
        config
            .apply_env(|k| (k == "WORKS_API_LISTEN").then(|| "127.0.0.1:9999".to_string()))
            .unwrap();
        assert_eq!(config.api.listen.port(), 9999);
        let err = config
            .apply_env(|k| (k == "WORKS_BRIDGE_LISTEN").then(|| "nowhere".to_string()))
            .unwrap_err();
        assert!(err.to_string().contains("WORKS_BRIDGE_LISTEN"), "{err}");
    }

    #[test]
    fn the_web_port_defaults_on_and_an_empty_listen_turns_it_off() {
        let config = Config::parse("tenant = \"acme.example\"\n").unwrap();
        assert_eq!(config.web.listen.0.map(|a| a.port()), Some(4782));
        let off = Config::parse("tenant = \"acme.example\"\n[web]\nlisten = \"\"\n").unwrap();
        assert_eq!(off.web.listen, WebListen(None));
        // Written back as it was read.
        assert!(off.to_toml().contains("listen = \"\""), "{}", off.to_toml());
        assert_eq!(
            Config::parse(&off.to_toml()).unwrap().web.listen,
            WebListen(None)
        );
        let err = Config::parse("tenant = \"a.b\"\n[web]\nlisten = \"nowhere\"\n").unwrap_err();
        assert!(err.to_string().contains("nowhere"), "{err}");
        let mut config = config;
        config
            .apply_env(|k| (k == "WORKS_WEB_LISTEN").then(String::new))
            .unwrap();
        assert_eq!(config.web.listen, WebListen(None));
        let err = config
            .apply_env(|k| (k == "WORKS_WEB_LISTEN").then(|| "nowhere".to_string()))
            .unwrap_err();
        assert!(err.to_string().contains("WORKS_WEB_LISTEN"), "{err}");
        config.web.listen = WebListen(Some(config.api.listen));
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("web.listen"), "{err}");
    }

    #[test]
    fn the_ops_port_and_the_log_format() {
        let config = Config::parse("tenant = \"acme.example\"\n").unwrap();
        assert_eq!(config.ops.listen.0.map(|a| a.port()), Some(4783));
        assert_eq!(config.log.format, LogFormat::Text);
        let off = Config::parse(
            "tenant = \"acme.example\"\n[ops]\nlisten = \"\"\n[log]\nformat = \"json\"\n",
        )
        .unwrap();
        assert_eq!(off.ops.listen, WebListen(None));
        assert_eq!(off.log.format, LogFormat::Json);
        let mut config = config;
        config
            .apply_env(|k| match k {
                "WORKS_OPS_LISTEN" => Some("127.0.0.1:9100".into()),
                "WORKS_LOG_FORMAT" => Some("json".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.ops.listen.0.map(|a| a.port()), Some(9100));
        assert_eq!(config.log.format, LogFormat::Json);
        let err = config
            .apply_env(|k| (k == "WORKS_LOG_FORMAT").then(|| "xml".to_string()))
            .unwrap_err();
        assert!(err.to_string().contains("WORKS_LOG_FORMAT"), "{err}");
        config.ops.listen = WebListen(Some(config.api.listen));
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("ops.listen"), "{err}");
    }

    #[test]
    fn relative_sqlite_path_is_under_data_dir() {
        let config = Config::new(&TenantId::parse("acme.example").unwrap());
        assert_eq!(
            config.database_url(Path::new("/srv/acme")),
            "sqlite:///srv/acme/node.db"
        );
    }
}
