//! `tenant-node bench`: cross-company relay throughput, latency and memory,
//! with the workload of the XMPP server-to-server baseline
//! (`shared/bench/xmpp`), so the two can be compared in one run.
//!
//! The nodes are child processes of this executable (`init`, then `serve`)
//! on loopback ports, each with a fresh data directory and CA, so that each
//! one's CPU time (`/proc/PID/stat`) and peak memory (`VmHWM`) can be read.
//! The benchmark peers them, allows external messaging, makes the members
//! contacts (which opens a direct room hosted by the requester's node) and
//! drives everything through the public client API: a warm-up, messages one
//! at a time (idle latency), then N messages with K in flight (load). K
//! counts messages sent and not yet seen by every recipient, as the XMPP
//! load client does. Latency runs from just before `SendMessage` is called
//! to the event's arrival on the recipient's `Watch` stream, matched by the
//! tag at the start of its text.
//!
//! Variants: `direct` (one pair), `group` (a room of members spread over
//! three companies: fan-out), `peers` (one node talking to ten peers at
//! once), `backlog` (the recipient's node is stopped while messages queue,
//! then started: drain rate and time to empty), `idle-clients` (many idle
//! live streams on the recipient's node: memory per stream, and what they
//! cost the load) and `soak` (a steady rate both ways across the direct room
//! for a set time, judged at the end: see [`soak`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Args, ValueEnum};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use works_proto::client::v1 as pb;

use crate::cli::status_error;
use crate::client::Client;
use crate::config::{CONFIG_FILE, Config};

const ADMIN_PASSWORD: &str = "bench admin password";
const MEMBER_PASSWORD: &str = "bench member password";
const START_DEADLINE: Duration = Duration::from_secs(30);
const SETUP_DEADLINE: Duration = Duration::from_secs(120);
/// Messages in flight during the warm-up, as in the XMPP load client.
const WARMUP_IN_FLIGHT: usize = 10;
/// Default load size of the backlog variant (the 100,000).
const BACKLOG_MESSAGES: usize = 100_000;
/// Connections opened at once by the idle-clients variant.
const CONNECT_CONCURRENCY: usize = 64;
/// Environment variables that would override the nodes' generated config.
const NODE_ENV: [&str; 4] = [
    "WORKS_API_LISTEN",
    "WORKS_BRIDGE_LISTEN",
    "WORKS_DATABASE_URL",
    "WORKS_ADMIN_PASSWORD",
];

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Messages in the load phase [default: 20000; 100000 for backlog].
    #[arg(long)]
    pub messages: Option<usize>,
    /// Messages in flight in the load phase (sent and not yet received).
    #[arg(long, default_value_t = 100)]
    pub in_flight: usize,
    /// Bytes of each message's text.
    #[arg(long, default_value_t = 100)]
    pub body_bytes: usize,
    /// Messages sent one at a time before the load (idle latency).
    #[arg(long, default_value_t = 500)]
    pub idle: usize,
    /// Unmeasured messages first (10 in flight), as the XMPP baseline does.
    #[arg(long, default_value_t = 300)]
    pub warmup: usize,
    #[arg(long, value_enum, default_value_t = Variant::Direct)]
    pub variant: Variant,
    /// Which member sends: one on the node that hosts the room (the
    /// requester's), or one on a node holding a replica, whose messages go
    /// to the host to be ordered first.
    #[arg(long, value_enum, default_value_t = SenderSide::Host)]
    pub sender: SenderSide,
    /// SQLite's synchronous mode on every node.
    #[arg(long, value_enum, default_value_t = Synchronous::Normal)]
    pub synchronous: Synchronous,
    /// Idle live streams for `--variant idle-clients`, one connection each.
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,
    /// Members of the room for `--variant group`, spread over three companies.
    #[arg(long, default_value_t = 50)]
    pub group_members: usize,
    /// Peer nodes for `--variant peers`.
    #[arg(long, default_value_t = 10)]
    pub peers: usize,
    /// Keep the nodes' data directories and logs, and say where they are.
    #[arg(long)]
    pub keep: bool,
    /// Binds each node, all its threads, to a CPU core of its own (in turn,
    /// round the machine's cores), as if each company's node ran on its own
    /// machine; the bench's client is not bound. Uses `taskset`.
    #[arg(long)]
    pub pin_cores: bool,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// How long `--variant soak` keeps the load on, warm-up included
    /// (seconds, or with a unit: 90s, 10m, 1h).
    #[arg(long, value_parser = parse_duration, default_value = "600s")]
    pub duration: Duration,
    /// Soak: the first part of the run, at the same rate; memory after it is
    /// the baseline [default: a tenth of --duration, at least 5 s].
    #[arg(long, value_parser = parse_duration)]
    pub warmup_for: Option<Duration>,
    /// Soak: messages per second, both directions together (half each way).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Soak: time between samples of each node's memory and queue depth.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub sample_every: Duration,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    Direct,
    Group,
    Peers,
    Backlog,
    IdleClients,
    Soak,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SenderSide {
    Host,
    Replica,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Synchronous {
    Normal,
    Full,
}

impl Synchronous {
    /// Sets the mode in a node's config.
    fn apply(self, config: &mut Config) -> anyhow::Result<()> {
        config.storage.synchronous = match self {
            Synchronous::Normal => crate::config::Synchronous::Normal,
            Synchronous::Full => crate::config::Synchronous::Full,
        };
        Ok(())
    }
}

/// What a run measured, printed as text or JSON.
#[derive(Debug, Serialize)]
struct Report {
    variant: Variant,
    sender: SenderSide,
    synchronous: Synchronous,
    /// Each node bound to a core of its own (`--pin-cores`).
    pin_cores: bool,
    /// Who sends to whom, and which node hosts the room.
    direction: String,
    messages: usize,
    in_flight: usize,
    body_bytes: usize,
    receipts_per_message: u32,
    phases: Vec<PhaseReport>,
    nodes: Vec<NodeReport>,
    client_cpu_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    backlog: Option<BacklogReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_clients: Option<IdleClientsReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    soak: Option<SoakReport>,
}

#[derive(Debug, Serialize)]
struct PhaseReport {
    phase: &'static str,
    n: usize,
    received: usize,
    window: usize,
    secs: f64,
    msgs_per_s: f64,
    /// Send to arrival at a recipient's stream, every receipt.
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Send to arrival at the last recipient (the same as above with one).
    complete_p50_ms: f64,
    complete_p99_ms: f64,
    /// Receipts of a message that had already reached every recipient.
    duplicates: usize,
    /// Tagged texts of this phase that it never sent.
    unexpected: usize,
}

#[derive(Debug, Serialize)]
struct NodeReport {
    tenant: String,
    role: String,
    /// Server CPU over warm-up, idle and load, per message (the XMPP
    /// script's measure).
    cpu_us_per_msg: f64,
    /// Server CPU over the load phase alone, per message.
    load_cpu_us_per_msg: f64,
    cpu_s: f64,
    /// Peak memory of the process, set-up included (password hashing
    /// during set-up leaves its mark here).
    peak_rss_kib: u64,
    /// Memory just before the load phase and at the end.
    rss_before_load_kib: u64,
    rss_kib: u64,
}

#[derive(Debug, Serialize)]
struct BacklogReport {
    /// Messages the sender's node accepted per second while the peer was down.
    enqueue_msgs_per_s: f64,
    /// From the restart to the node's `serve` saying it listens.
    restart_to_listening_s: f64,
    /// From the restart to the first queued message on the recipient's stream.
    first_message_s: f64,
    /// From the restart until the sender's node had nothing queued.
    queue_empty_s: f64,
    /// From the restart to the last queued message on the recipient's stream.
    drain_s: f64,
    drain_msgs_per_s: f64,
    /// What the recipient's stream showed after the restart: every queued
    /// message once, in the room's order, or the run fails.
    delivered: usize,
    duplicates: usize,
    order: StreamOrder,
}

#[derive(Debug, Serialize)]
struct IdleClientsReport {
    clients: usize,
    connect_secs: f64,
    rss_before_kib: u64,
    rss_after_kib: u64,
    rss_per_stream_bytes: f64,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.in_flight == 0 {
        bail!("--in-flight must be at least 1");
    }
    if args.variant == Variant::Group && args.group_members < 3 {
        bail!("--group-members must be at least 3 (one on each company)");
    }
    if args.variant == Variant::Peers && args.peers == 0 {
        bail!("--peers must be at least 1");
    }
    if args.variant == Variant::Soak {
        soak_settings(&args)?;
    }
    let messages = args.messages.unwrap_or(match args.variant {
        Variant::Backlog => BACKLOG_MESSAGES,
        _ => 20_000,
    });
    // Rejected before anything starts.
    args.synchronous.apply(&mut Config::new(
        &crate::ids::TenantId::parse("check.example").map_err(|e| anyhow!("{e}"))?,
    ))?;
    let root = tempfile::Builder::new()
        .prefix("tenant-node-bench-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let dir = root.path().to_path_buf();
    progress(format!("data directories and logs under {}", dir.display()));
    let mut scenario = match args.variant {
        Variant::Direct | Variant::Backlog | Variant::IdleClients | Variant::Soak => {
            pair(&dir, &args).await
        }
        Variant::Group => group(&dir, &args).await,
        Variant::Peers => peers(&dir, &args).await,
    };
    let outcome = match &mut scenario {
        Ok(scenario) if args.variant == Variant::Soak => soak(scenario, &args).await,
        Ok(scenario) => measure(scenario, &args, messages).await,
        Err(_) => Err(anyhow!("set-up failed")),
    };
    let soak_failed = outcome
        .as_ref()
        .ok()
        .and_then(|r| r.soak.as_ref())
        .is_some_and(|s| !s.passed);
    let setup_error = scenario.as_ref().err().map(|e| format!("{e:#}"));
    if let Ok(scenario) = scenario {
        for node in scenario.nodes {
            node.stop().await;
        }
    }
    if args.keep || outcome.is_err() || setup_error.is_some() || soak_failed {
        let kept = root.keep();
        progress(format!(
            "kept {} (node.log in each node's directory)",
            kept.display()
        ));
    }
    if let Some(e) = setup_error {
        bail!("{e}");
    }
    let report = outcome?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    if let Some(soak) = report.soak.as_ref().filter(|s| !s.passed) {
        bail!("soak failed: {}", soak.failures.join("; "));
    }
    Ok(())
}

/// Progress on stderr, with the seconds since the benchmark started.
fn progress(line: impl AsRef<str>) {
    static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let since = STARTED.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("bench: [{since:7.2}s] {}", line.as_ref());
}

// ---- nodes as child processes -------------------------------------------

/// A tenant node running as a child process of this executable.
struct BenchNode {
    tenant: String,
    data: PathBuf,
    log: PathBuf,
    url: String,
    admin_id: String,
    /// The CPU core `serve` is bound to (`--pin-cores`).
    core: Option<usize>,
    child: Option<Child>,
    pid: u32,
    /// CPU ticks and peak memory of earlier runs of this node (restarts).
    earlier_ticks: u64,
    earlier_peak_kib: u64,
}

impl BenchNode {
    /// `init` on a fresh directory, then `serve`; the ports it got are
    /// written back to its config so that a restart keeps them. `index`:
    /// the node's place in the scenario, which picks its core.
    async fn start(
        root: &Path,
        tenant: &str,
        args: &BenchArgs,
        index: usize,
    ) -> anyhow::Result<Self> {
        let synchronous = args.synchronous;
        let core = args
            .pin_cores
            .then(|| index % std::thread::available_parallelism().map_or(1, |n| n.get()));
        let exe = std::env::current_exe().context("cannot find this executable")?;
        let node_dir = root.join(tenant);
        let data = node_dir.join("data");
        std::fs::create_dir_all(&node_dir)?;
        let mut init = Command::new(&exe);
        init.arg("init")
            .arg("--data")
            .arg(&data)
            .args(["--tenant", tenant, "--company", &format!("{tenant} Inc.")])
            .args(["--api", "127.0.0.1:0", "--bridge", "127.0.0.1:0"])
            .args(["--admin-password", ADMIN_PASSWORD]);
        for var in NODE_ENV {
            init.env_remove(var);
        }
        let out = init.output().await.context("cannot run init")?;
        if !out.status.success() {
            bail!(
                "init of {tenant} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let mut node = BenchNode {
            tenant: tenant.into(),
            log: node_dir.join("node.log"),
            data,
            url: String::new(),
            admin_id: format!("{}@{tenant}", crate::init::ADMIN_NAME),
            core,
            child: None,
            pid: 0,
            earlier_ticks: 0,
            earlier_peak_kib: 0,
        };
        node.edit_config(|c| {
            // Group set-up sends dozens of friend requests in a second.
            c.limits.requests_per_member_hour = 1_000_000;
            c.limits.requests_per_peer_hour = 1_000_000;
            c.limits.incoming_requests_per_member_hour = 1_000_000;
            c.limits.incoming_requests_per_peer_hour = 1_000_000;
            c.limits.incoming_requests_per_recipient_hour = 1_000_000;
            c.limits.incoming_lookups_per_member_hour = 1_000_000;
            c.limits.incoming_lookups_per_peer_hour = 1_000_000;
            // `--variant idle-clients` holds 10,000 streams, one connection
            // each, beside the bench's own clients.
            c.limits.max_api_connections = 100_000;
            synchronous.apply(c)
        })?;
        let (api, bridge) = node.spawn().await?;
        node.edit_config(|c| {
            c.api.listen = api;
            c.bridge.listen = bridge;
            Ok(())
        })?;
        Ok(node)
    }

    /// Edits node.toml as written (no environment overlay).
    fn edit_config(
        &self,
        edit: impl FnOnce(&mut Config) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let path = self.data.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut config = Config::parse(&text)
            .with_context(|| format!("{} is not a valid config", path.display()))?;
        edit(&mut config)?;
        std::fs::write(&path, config.to_toml())
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Starts `serve` and waits for its listening lines.
    async fn spawn(&mut self) -> anyhow::Result<(std::net::SocketAddr, std::net::SocketAddr)> {
        let exe = std::env::current_exe().context("cannot find this executable")?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        let mut serve = match self.core {
            Some(core) => {
                let mut taskset = Command::new("taskset");
                taskset.arg("--cpu-list").arg(core.to_string()).arg(exe);
                taskset
            }
            None => Command::new(exe),
        };
        serve
            .arg("serve")
            .arg("--data")
            .arg(&self.data)
            .env(
                "RUST_LOG",
                std::env::var("BENCH_NODE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        for var in NODE_ENV {
            serve.env_remove(var);
        }
        let mut child = serve.spawn().context("cannot start serve")?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("{} exited at once", self.tenant))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout from serve"))?;
        let mut lines = BufReader::new(stdout).lines();
        let found = tokio::time::timeout(START_DEADLINE, async {
            let mut api = None;
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.strip_prefix("api listening on ") {
                    api = Some(addr.parse::<std::net::SocketAddr>()?);
                }
                if let Some(addr) = line.strip_prefix("bridge listening on ") {
                    let api = api.ok_or_else(|| anyhow!("bridge line before api line"))?;
                    return Ok((api, addr.parse::<std::net::SocketAddr>()?));
                }
            }
            Err(anyhow!("serve exited before listening"))
        })
        .await;
        let (api, bridge) = match found {
            Ok(Ok(addrs)) => addrs,
            Ok(Err(e)) => bail!(
                "{} did not start: {e}; see {}",
                self.tenant,
                self.log.display()
            ),
            Err(_) => bail!(
                "{} did not start within {START_DEADLINE:?}; see {}",
                self.tenant,
                self.log.display()
            ),
        };
        // Keep reading so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.url = format!("http://{api}");
        self.child = Some(child);
        self.pid = pid;
        Ok((api, bridge))
    }

    /// SIGTERM, then waits for the process to exit.
    async fn terminate(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        self.earlier_ticks = self.cpu_ticks_of_pid();
        self.earlier_peak_kib = self
            .earlier_peak_kib
            .max(proc_status_kib(self.pid, "VmHWM"));
        let sent = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        if !matches!(sent, Ok(s) if s.success()) {
            child.kill().await.context("cannot stop a node")?;
        }
        match tokio::time::timeout(START_DEADLINE, child.wait()).await {
            Ok(status) => {
                status.context("cannot wait for a node")?;
            }
            Err(_) => child.kill().await.context("cannot stop a node")?,
        }
        self.pid = 0;
        Ok(())
    }

    async fn stop(mut self) {
        if let Err(e) = self.terminate().await {
            progress(format!("{}: {e:#}", self.tenant));
        }
    }

    /// CPU ticks (user + system) of every run of this node so far.
    fn cpu_ticks(&self) -> u64 {
        self.earlier_ticks + self.cpu_ticks_of_pid()
    }

    fn cpu_ticks_of_pid(&self) -> u64 {
        if self.pid == 0 {
            return 0;
        }
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|stat| {
                // Fields after the command name, which may hold spaces;
                // utime and stime are fields 14 and 15 of the whole line.
                let rest = stat.rsplit_once(')')?.1;
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let utime: u64 = fields.get(11)?.parse().ok()?;
                let stime: u64 = fields.get(12)?.parse().ok()?;
                Some(utime + stime)
            })
            .unwrap_or(0)
    }

    fn peak_rss_kib(&self) -> u64 {
        self.earlier_peak_kib
            .max(proc_status_kib(self.pid, "VmHWM"))
    }

    fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid, "VmRSS")
    }

    async fn connect(&self) -> anyhow::Result<Client> {
        Ok(Client::connect(&self.url, None).await?)
    }

    async fn admin(&self) -> anyhow::Result<Client> {
        self.connect()
            .await?
            .login(&self.admin_id, ADMIN_PASSWORD)
            .await
            .map_err(status_error)
    }

    /// Adds members (allowed to talk across companies) and logs them in,
    /// all on one connection.
    async fn members(&self, names: &[String]) -> anyhow::Result<Vec<Member>> {
        let admin = self.admin().await?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let added = admin
                .admin
                .clone()
                .add_member(pb::AddMemberRequest {
                    name: name.clone(),
                    display_name: name.clone(),
                    password: MEMBER_PASSWORD.into(),
                    role: pb::Role::Member as i32,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            admin
                .external
                .clone()
                .add_connected(pb::AddConnectedRequest {
                    member_id: added.id.clone(),
                })
                .await
                .map_err(status_error)?;
            let client = admin
                .login(&added.id, MEMBER_PASSWORD)
                .await
                .map_err(status_error)?;
            out.push(Member {
                id: added.id,
                client,
            });
        }
        Ok(out)
    }

    /// Queue depth towards every peer, summed.
    async fn queued(&self, admin: &Client) -> anyhow::Result<u64> {
        let peers = admin
            .peering
            .clone()
            .list_peers(pb::ListPeersRequest {})
            .await
            .map_err(status_error)?
            .into_inner()
            .peers;
        Ok(peers.iter().map(|p| p.queue_depth).sum())
    }

    /// Waits until nothing is queued for any peer.
    async fn settle(&self, admin: &Client, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let queued = self.queued(admin).await?;
            if queued == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} still has {queued} events queued for peers", self.tenant);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn proc_status_kib(pid: u32, key: &str) -> u64 {
    if pid == 0 {
        return 0;
    }
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let value = line.strip_prefix(key)?.strip_prefix(':')?;
                value.split_whitespace().next()?.parse().ok()
            })
        })
        .unwrap_or(0)
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|hz| *hz > 0.0)
        .unwrap_or(100.0)
}

fn own_cpu_seconds(hz: f64) -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let rest = stat.rsplit_once(')')?.1.to_string();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) as f64 / hz)
        })
        .unwrap_or(0.0)
}

struct Member {
    id: String,
    client: Client,
}

/// `b`'s admin invites, `a`'s admin accepts.
async fn peer(a: &BenchNode, b: &BenchNode) -> anyhow::Result<()> {
    let token = b
        .admin()
        .await?
        .peering
        .clone()
        .invite_peer(pb::InvitePeerRequest::default())
        .await
        .map_err(status_error)?
        .into_inner()
        .token;
    a.admin()
        .await?
        .peering
        .clone()
        .accept_peer(pb::AcceptPeerRequest { token })
        .await
        .map_err(status_error)?;
    Ok(())
}

async fn allow_external(node: &BenchNode) -> anyhow::Result<()> {
    node.admin()
        .await?
        .external
        .clone()
        .set_external_settings(pb::SetExternalSettingsRequest {
            enabled: Some(true),
            ..Default::default()
        })
        .await
        .map_err(status_error)?;
    Ok(())
}

/// `from` sends a friend request and `to` accepts: they are contacts, and
/// `from`'s node hosts their direct room.
async fn befriend(from: &Member, to: &Member) -> anyhow::Result<()> {
    let sent = from
        .client
        .contacts
        .clone()
        .send_friend_request(pb::SendFriendRequestRequest {
            user_id: to.id.clone(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    to.client
        .contacts
        .clone()
        .accept_friend_request(pb::AnswerFriendRequestRequest {
            id: sent.id,
            block: false,
        })
        .await
        .map_err(status_error)?;
    Ok(())
}

/// The room `who` is in that satisfies `wanted`, once it shows in their list.
async fn room_where(who: &Member, wanted: impl Fn(&pb::Room) -> bool) -> anyhow::Result<pb::Room> {
    let deadline = Instant::now() + SETUP_DEADLINE;
    loop {
        let rooms = who
            .client
            .rooms
            .clone()
            .list_rooms(pb::ListRoomsRequest {})
            .await
            .map_err(status_error)?
            .into_inner()
            .rooms;
        if let Some(room) = rooms.into_iter().find(&wanted) {
            return Ok(room);
        }
        if Instant::now() > deadline {
            bail!("{} never saw the room", who.id);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn direct_room(who: &Member, other: &str) -> anyhow::Result<pb::Room> {
    room_where(who, |r| {
        r.kind == pb::RoomKind::Direct as i32 && r.members.iter().any(|m| m == other)
    })
    .await
}

async fn open_watch(who: &Member, cursors: &[&pb::Room]) -> anyhow::Result<WatchStream> {
    Ok(who
        .client
        .rooms
        .clone()
        .watch(pb::WatchRequest {
            cursors: cursors
                .iter()
                .map(|r| pb::RoomCursor {
                    room_id: r.id.clone(),
                    seq: r.last_seq,
                })
                .collect(),
            room_id: String::new(),
        })
        .await
        .map_err(status_error)?
        .into_inner())
}

type WatchStream = tonic::Streaming<pb::WatchEvent>;

// ---- scenarios -----------------------------------------------------------

/// Nodes, who sends where, and the recipients' open streams.
struct Scenario {
    nodes: Vec<BenchNode>,
    /// What each node is for, printed with its figures.
    roles: Vec<String>,
    /// (client, room) pairs; message i goes out through pair i % len (in
    /// the soak, each pair sends its own stream of messages).
    senders: Vec<(Client, String)>,
    sender_node: usize,
    recipient_node: usize,
    /// The member receiving in the direct pair (for the backlog restart).
    recipient: Option<Member>,
    watches: Vec<WatchStream>,
    /// Receipts each message needs before it leaves the window.
    expected: u32,
    direction: String,
}

/// Two companies; alice@a.example asked bob@b.example, so a.example hosts.
async fn pair(root: &Path, args: &BenchArgs) -> anyhow::Result<Scenario> {
    progress("starting a.example and b.example");
    let a = BenchNode::start(root, "a.example", args, 0).await?;
    let b = BenchNode::start(root, "b.example", args, 1).await?;
    peer(&a, &b).await?;
    allow_external(&a).await?;
    allow_external(&b).await?;
    let alice = a.members(&["alice".into()]).await?.remove(0);
    let bob = b.members(&["bob".into()]).await?.remove(0);
    befriend(&alice, &bob).await?;
    let at_alice = direct_room(&alice, &bob.id).await?;
    let at_bob = direct_room(&bob, &alice.id).await?;
    if at_alice.id != at_bob.id || at_alice.host != a.tenant {
        bail!(
            "expected one room hosted by {}, got {} (host {}) and {} (host {})",
            a.tenant,
            at_alice.id,
            at_alice.host,
            at_bob.id,
            at_bob.host
        );
    }
    if args.variant == Variant::Soak {
        // Both ways: watches[i] is where senders[i]'s messages arrive.
        let direction = format!(
            "{} ⇄ {} in a direct room hosted by {} (both ways: {} on the hosting node, {} on a replica's)",
            alice.id, bob.id, a.tenant, alice.id, bob.id
        );
        let watches = vec![
            open_watch(&bob, &[&at_bob]).await?,
            open_watch(&alice, &[&at_alice]).await?,
        ];
        return Ok(Scenario {
            roles: vec![
                "host, sends and receives".into(),
                "replica, sends and receives".into(),
            ],
            nodes: vec![a, b],
            senders: vec![(alice.client, at_alice.id), (bob.client, at_bob.id)],
            sender_node: 0,
            recipient_node: 1,
            recipient: None,
            watches,
            expected: 1,
            direction,
        });
    }
    let (sender, recipient, room, sender_node, recipient_node) = match args.sender {
        SenderSide::Host => (alice, bob, at_bob, 0, 1),
        SenderSide::Replica => (bob, alice, at_alice, 1, 0),
    };
    let direction = format!(
        "{} → {} in a direct room hosted by {} (sender on the {})",
        sender.id,
        recipient.id,
        a.tenant,
        match args.sender {
            SenderSide::Host => "hosting node",
            SenderSide::Replica => "replica's node; the host orders it first",
        }
    );
    let watch = open_watch(&recipient, &[&room]).await?;
    Ok(Scenario {
        roles: vec![
            if sender_node == 0 {
                "sender, host"
            } else {
                "recipient, host"
            }
            .into(),
            if sender_node == 1 {
                "sender, replica"
            } else {
                "recipient, replica"
            }
            .into(),
        ],
        nodes: vec![a, b],
        senders: vec![(sender.client, room.id)],
        sender_node,
        recipient_node,
        recipient: Some(recipient),
        watches: vec![watch],
        expected: 1,
        direction,
    })
}

/// Three companies and one group room of `--group-members` members hosted
/// by the master's node; every other member watches.
async fn group(root: &Path, args: &BenchArgs) -> anyhow::Result<Scenario> {
    let tenants = ["a.example", "b.example", "c.example"];
    progress(format!(
        "starting {} with a group of {}",
        tenants.join(", "),
        args.group_members
    ));
    let mut nodes = Vec::new();
    for (i, t) in tenants.iter().enumerate() {
        nodes.push(BenchNode::start(root, t, args, i).await?);
    }
    peer(&nodes[0], &nodes[1]).await?;
    peer(&nodes[0], &nodes[2]).await?;
    peer(&nodes[1], &nodes[2]).await?;
    let mut members: Vec<Vec<Member>> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        allow_external(node).await?;
        let count = args.group_members / 3 + usize::from(i < args.group_members % 3);
        let names: Vec<String> = (0..count).map(|k| format!("m{k:03}")).collect();
        members.push(node.members(&names).await?);
    }
    let master = &members[0][0];
    progress(format!(
        "{} befriends {} members of the other companies",
        master.id,
        members[1].len() + members[2].len()
    ));
    for other in members[1].iter().chain(&members[2]) {
        befriend(master, other).await?;
    }
    let invitees: Vec<String> = members
        .iter()
        .flatten()
        .filter(|m| m.id != master.id)
        .map(|m| m.id.clone())
        .collect();
    let created = master
        .client
        .rooms
        .clone()
        .create_room(pb::CreateRoomRequest {
            kind: pb::RoomKind::Group as i32,
            name: "Bench".into(),
            members: invitees,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let sender_at = match args.sender {
        SenderSide::Host => (0, 0),
        SenderSide::Replica => (1, 0),
    };
    let mut watches = Vec::new();
    let mut sender = None;
    for (n, company) in members.iter().enumerate() {
        for (k, m) in company.iter().enumerate() {
            let room = room_where(m, |r| r.id == created.id).await?;
            if (n, k) == sender_at {
                sender = Some((m.client.clone(), room.id.clone(), m.id.clone()));
            } else {
                watches.push(open_watch(m, &[&room]).await?);
            }
        }
    }
    let (client, room, sender_id) = sender.ok_or_else(|| anyhow!("no sender"))?;
    let expected = u32::try_from(watches.len())?;
    Ok(Scenario {
        roles: vec!["host".into(), "replica".into(), "replica".into()],
        direction: format!(
            "{sender_id} → {expected} members of a group room hosted by {} over 3 companies",
            nodes[0].tenant
        ),
        nodes,
        senders: vec![(client, room)],
        sender_node: sender_at.0,
        recipient_node: 1,
        recipient: None,
        watches,
        expected,
    })
}

/// One node and `--peers` peers, a direct room with one member of each,
/// hosted by the central node; messages go round the rooms.
async fn peers(root: &Path, args: &BenchArgs) -> anyhow::Result<Scenario> {
    progress(format!("starting hub.example and {} peers", args.peers));
    let hub = BenchNode::start(root, "hub.example", args, 0).await?;
    allow_external(&hub).await?;
    let alice = hub.members(&["alice".into()]).await?.remove(0);
    let mut nodes = vec![hub];
    let mut roles = vec!["hub, host of every room".to_string()];
    let mut pairs = Vec::new();
    for i in 1..=args.peers {
        let node = BenchNode::start(root, &format!("peer{i:02}.example"), args, i).await?;
        peer(&nodes[0], &node).await?;
        allow_external(&node).await?;
        let member = node.members(&["bob".into()]).await?.remove(0);
        befriend(&alice, &member).await?;
        let at_alice = direct_room(&alice, &member.id).await?;
        let at_member = direct_room(&member, &alice.id).await?;
        pairs.push((member, at_alice, at_member));
        nodes.push(node);
        roles.push("peer, replica".into());
    }
    let mut senders = Vec::new();
    let mut watches = Vec::new();
    let direction = match args.sender {
        SenderSide::Host => {
            for (member, at_alice, at_member) in &pairs {
                senders.push((alice.client.clone(), at_alice.id.clone()));
                watches.push(open_watch(member, &[at_member]).await?);
            }
            format!(
                "{} → one member on each of {} peers, round robin (rooms hosted by {})",
                alice.id, args.peers, nodes[0].tenant
            )
        }
        SenderSide::Replica => {
            let rooms: Vec<&pb::Room> = pairs.iter().map(|(_, r, _)| r).collect();
            watches.push(open_watch(&alice, &rooms).await?);
            for (member, _, at_member) in &pairs {
                senders.push((member.client.clone(), at_member.id.clone()));
            }
            format!(
                "one member on each of {} peers → {}, round robin (rooms hosted by {})",
                args.peers, alice.id, nodes[0].tenant
            )
        }
    };
    let (sender_node, recipient_node) = match args.sender {
        SenderSide::Host => (0, 1),
        SenderSide::Replica => (1, 0),
    };
    Ok(Scenario {
        nodes,
        roles,
        senders,
        sender_node,
        recipient_node,
        recipient: None,
        watches,
        expected: 1,
        direction,
    })
}

// ---- measuring -----------------------------------------------------------

/// When a message leaves the window.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Release {
    /// Once every recipient has seen it (the XMPP client's window).
    OnReceipt,
    /// Once the sender's node acknowledged it (nobody receives yet).
    OnAck,
}

/// One measured run of messages.
struct Phase {
    name: &'static str,
    tag: char,
    n: usize,
    window_size: usize,
    release: Release,
    window: Semaphore,
    state: Mutex<PhaseState>,
    done: Notify,
}

struct PhaseState {
    sent: Vec<Option<Instant>>,
    remaining: Vec<u32>,
    /// Latencies are measured from the later of the send and this.
    floor: Option<Instant>,
    receipts_ms: Vec<f64>,
    complete_ms: Vec<f64>,
    complete: usize,
    first_at: Option<Instant>,
    last_at: Option<Instant>,
    acked_last_at: Option<Instant>,
    duplicates: usize,
    unexpected: usize,
}

impl Phase {
    fn new(
        name: &'static str,
        tag: char,
        n: usize,
        window: usize,
        expected: u32,
        release: Release,
    ) -> Arc<Phase> {
        Arc::new(Phase {
            name,
            tag,
            n,
            window_size: window,
            release,
            window: Semaphore::new(window),
            state: Mutex::new(PhaseState {
                sent: vec![None; n],
                remaining: vec![expected; n],
                floor: None,
                receipts_ms: Vec::with_capacity(n * expected as usize),
                complete_ms: Vec::with_capacity(n),
                complete: 0,
                first_at: None,
                last_at: None,
                acked_last_at: None,
                duplicates: 0,
                unexpected: 0,
            }),
            done: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PhaseState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A recipient's stream showed message `i` at `at`. A message never
    /// sent, or seen again after every recipient had it, is only counted.
    fn received(&self, i: usize, at: Instant) {
        let mut s = self.lock();
        let Some(sent) = s.sent.get(i).copied().flatten() else {
            s.unexpected += 1;
            return;
        };
        if s.remaining[i] == 0 {
            s.duplicates += 1;
            return;
        }
        let from = s.floor.map_or(sent, |f| f.max(sent));
        let ms = at.saturating_duration_since(from).as_secs_f64() * 1000.0;
        s.receipts_ms.push(ms);
        s.first_at.get_or_insert(at);
        s.remaining[i] -= 1;
        if s.remaining[i] == 0 {
            s.complete_ms.push(ms);
            s.complete += 1;
            s.last_at = Some(at);
            let all = s.complete == self.n;
            drop(s);
            if self.release == Release::OnReceipt {
                self.window.add_permits(1);
            }
            if all {
                self.done.notify_one();
            }
        }
    }

    fn text(&self, i: usize, body_bytes: usize) -> String {
        let mut text = format!("{}{i:08}|", self.tag);
        while text.len() < body_bytes {
            text.push('x');
        }
        text
    }

    fn report(&self, t0: Instant) -> PhaseReport {
        let mut s = self.lock();
        s.receipts_ms.sort_by(f64::total_cmp);
        s.complete_ms.sort_by(f64::total_cmp);
        let secs = s
            .last_at
            .map_or(0.0, |t| t.saturating_duration_since(t0).as_secs_f64());
        PhaseReport {
            phase: self.name,
            n: self.n,
            received: s.complete,
            window: self.window_size,
            secs,
            msgs_per_s: if secs > 0.0 {
                s.complete as f64 / secs
            } else {
                0.0
            },
            p50_ms: percentile(&s.receipts_ms, 50.0),
            p90_ms: percentile(&s.receipts_ms, 90.0),
            p99_ms: percentile(&s.receipts_ms, 99.0),
            max_ms: s.receipts_ms.last().copied().unwrap_or(f64::NAN),
            complete_p50_ms: percentile(&s.complete_ms, 50.0),
            complete_p99_ms: percentile(&s.complete_ms, 99.0),
            duplicates: s.duplicates,
            unexpected: s.unexpected,
        }
    }
}

/// The XMPP load client's percentile: nearest rank on the sorted list.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[k.min(sorted.len() - 1)]
}

/// The phases receivers route events to, by the tag at the start of a text.
#[derive(Clone, Default)]
struct Phases(Arc<Mutex<HashMap<char, Arc<Phase>>>>);

impl Phases {
    fn add(&self, phase: &Arc<Phase>) {
        self.lock().insert(phase.tag, phase.clone());
    }

    fn get(&self, tag: char) -> Option<Arc<Phase>> {
        self.lock().get(&tag).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<char, Arc<Phase>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads a stream until it ends, recording every tagged text.
    fn listen(&self, stream: WatchStream) -> tokio::task::JoinHandle<()> {
        self.listen_in_order(stream).0
    }

    /// As `listen`, and checks the order of every room event the stream
    /// shows: after a room's first, each seq is the next one.
    fn listen_in_order(
        &self,
        mut stream: WatchStream,
    ) -> (tokio::task::JoinHandle<()>, Arc<Mutex<StreamOrder>>) {
        let phases = self.clone();
        let order = Arc::new(Mutex::new(StreamOrder::default()));
        let seen = order.clone();
        let task = tokio::spawn(async move {
            let end = loop {
                let item = match stream.message().await {
                    Ok(Some(item)) => item,
                    Ok(None) => break "the node ended the stream".to_string(),
                    Err(status) => break format!("{:#}", status_error(status)),
                };
                let at = Instant::now();
                let Some(pb::watch_event::Kind::RoomEvent(event)) = item.kind else {
                    continue;
                };
                lock(&seen).saw(&event.room_id, event.seq);
                let Some(pb::room_event::Body::Text(text)) = event.body else {
                    continue;
                };
                if let Some((tag, i)) = parse_tag(&text.text)
                    && let Some(phase) = phases.get(tag)
                {
                    phase.received(i, at);
                }
            };
            lock(&seen).ended = Some(end);
        });
        (task, order)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The order of the room events one live stream showed.
#[derive(Debug, Default, Clone, Serialize)]
struct StreamOrder {
    events: u64,
    /// Events at or below a seq the stream had already shown in that room.
    repeated: u64,
    /// Events further on than the next seq: a hole in the room's order.
    gaps: u64,
    /// Why the stream ended, if it did.
    ended: Option<String>,
    #[serde(skip)]
    last_seq: HashMap<String, u64>,
}

impl StreamOrder {
    fn saw(&mut self, room: &str, seq: u64) {
        self.events += 1;
        match self.last_seq.get(room).copied() {
            Some(last) if seq <= last => {
                self.repeated += 1;
                return;
            }
            Some(last) if seq > last + 1 => self.gaps += 1,
            _ => {}
        }
        self.last_seq.insert(room.to_string(), seq);
    }
}

fn parse_tag(text: &str) -> Option<(char, usize)> {
    let mut chars = text.chars();
    let tag = chars.next()?;
    let rest = chars.as_str();
    let (digits, _) = rest.split_once('|')?;
    Some((tag, digits.parse().ok()?))
}

/// Sends a phase's messages, at most its window in flight, and waits until
/// every recipient has every message (or, for `Release::OnAck`, until the
/// sender's node acknowledged them all). Returns when it started.
async fn drive(
    phase: &Arc<Phase>,
    senders: &[(Client, String)],
    body_bytes: usize,
) -> anyhow::Result<Instant> {
    let t0 = Instant::now();
    let mut calls: JoinSet<anyhow::Result<()>> = JoinSet::new();
    for i in 0..phase.n {
        phase
            .window
            .acquire()
            .await
            .context("window closed")?
            .forget();
        while let Some(done) = calls.try_join_next() {
            done.context("send task")??;
        }
        let (client, room) = &senders[i % senders.len()];
        let mut rooms = client.rooms.clone();
        let request = pb::SendMessageRequest {
            room_id: room.clone(),
            idempotency_key: format!("{}{i}", phase.tag),
            text: phase.text(i, body_bytes),
            ..Default::default()
        };
        let phase = phase.clone();
        calls.spawn(async move {
            phase.lock().sent[i] = Some(Instant::now());
            rooms
                .send_message(request)
                .await
                .map_err(|s| anyhow!("message {i} of {}: {}", phase.name, status_error(s)))?;
            if phase.release == Release::OnAck {
                phase.lock().acked_last_at = Some(Instant::now());
                phase.window.add_permits(1);
            }
            Ok(())
        });
    }
    while let Some(done) = calls.join_next().await {
        done.context("send task")??;
    }
    if phase.release == Release::OnReceipt {
        wait_complete(phase).await?;
    }
    Ok(t0)
}

async fn wait_complete(phase: &Phase) -> anyhow::Result<()> {
    // Generous: slow machines and debug builds must finish, a lost message must not hang.
    let within = Duration::from_secs(120) + Duration::from_millis(20 * phase.n as u64);
    if tokio::time::timeout(within, phase.done.notified())
        .await
        .is_err()
    {
        let s = phase.lock();
        bail!(
            "{}: only {} of {} messages reached every recipient within {within:?}",
            phase.name,
            s.complete,
            phase.n
        );
    }
    Ok(())
}

/// Each node's CPU clock ticks at the start, when the load began and at
/// the end.
struct Ticks<'a> {
    start: &'a [u64],
    load: &'a [u64],
    end: &'a [u64],
}

/// What each node cost: CPU per message over the whole run and over the
/// load (`messages`: all of them, and those of the load), and memory
/// (`load_rss`: each node's RSS when the load began).
fn node_reports(
    scenario: &Scenario,
    hz: f64,
    ticks: Ticks<'_>,
    (all_messages, load_messages): (usize, usize),
    load_rss: &[u64],
) -> Vec<NodeReport> {
    scenario
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let all = ticks.end[i].saturating_sub(ticks.start[i]) as f64 / hz;
            let load = ticks.end[i].saturating_sub(ticks.load[i]) as f64 / hz;
            NodeReport {
                tenant: node.tenant.clone(),
                role: scenario.roles.get(i).cloned().unwrap_or_default(),
                cpu_us_per_msg: all * 1e6 / all_messages.max(1) as f64,
                load_cpu_us_per_msg: load * 1e6 / load_messages.max(1) as f64,
                cpu_s: all,
                peak_rss_kib: node.peak_rss_kib(),
                rss_before_load_kib: load_rss[i],
                rss_kib: node.rss_kib(),
            }
        })
        .collect()
}

async fn measure(
    scenario: &mut Scenario,
    args: &BenchArgs,
    messages: usize,
) -> anyhow::Result<Report> {
    let hz = clock_ticks_per_second();
    let phases = Phases::default();
    let mut listeners = Vec::new();
    for watch in scenario.watches.drain(..) {
        listeners.push(phases.listen(watch));
    }
    let sender_admin = scenario.nodes[scenario.sender_node].admin().await?;
    let mut idle_clients = None;
    let mut _idle_streams = Vec::new();
    if args.variant == Variant::IdleClients {
        let (report, streams) =
            open_idle_clients(&scenario.nodes[scenario.recipient_node], args.clients).await?;
        idle_clients = Some(report);
        _idle_streams = streams;
    }
    let ticks = |s: &Scenario| s.nodes.iter().map(BenchNode::cpu_ticks).collect::<Vec<_>>();
    let rss = |s: &Scenario| s.nodes.iter().map(BenchNode::rss_kib).collect::<Vec<_>>();
    let start_ticks = ticks(scenario);
    let mut reports = Vec::new();
    let expected = scenario.expected;
    let mut measured = 0usize;
    if args.warmup > 0 {
        progress(format!("warm-up: {} messages", args.warmup));
        let warmup = Phase::new(
            "warmup",
            'w',
            args.warmup,
            WARMUP_IN_FLIGHT.min(args.in_flight),
            expected,
            Release::OnReceipt,
        );
        phases.add(&warmup);
        let t0 = drive(&warmup, &scenario.senders, args.body_bytes).await?;
        reports.push(warmup.report(t0));
        measured += args.warmup;
    }
    if args.idle > 0 {
        progress(format!("idle: {} messages one at a time", args.idle));
        let idle = Phase::new("idle", 'i', args.idle, 1, expected, Release::OnReceipt);
        phases.add(&idle);
        let t0 = drive(&idle, &scenario.senders, args.body_bytes).await?;
        reports.push(idle.report(t0));
        measured += args.idle;
    }
    let mut backlog = None;
    let load_ticks;
    let load_rss;
    let end_ticks;
    if args.variant == Variant::Backlog {
        scenario.nodes[scenario.sender_node]
            .settle(&sender_admin, SETUP_DEADLINE)
            .await?;
        load_ticks = ticks(scenario);
        load_rss = rss(scenario);
        // A node does not stop while a live stream is open: close them first.
        for l in listeners.drain(..) {
            l.abort();
        }
        let (phase, t0, figures) =
            run_backlog(scenario, &phases, &sender_admin, args, messages).await?;
        end_ticks = ticks(scenario);
        reports.push(phase.report(t0));
        backlog = Some(figures);
    } else {
        load_ticks = ticks(scenario);
        load_rss = rss(scenario);
        progress(format!(
            "load: {messages} messages, {} in flight",
            args.in_flight
        ));
        let load = Phase::new(
            "load",
            'l',
            messages,
            args.in_flight,
            expected,
            Release::OnReceipt,
        );
        phases.add(&load);
        let t0 = drive(&load, &scenario.senders, args.body_bytes).await?;
        reports.push(load.report(t0));
        // The sender's node finishes its outbox rows after the peers'
        // acknowledgements; count that work too.
        scenario.nodes[scenario.sender_node]
            .settle(&sender_admin, SETUP_DEADLINE)
            .await?;
        end_ticks = ticks(scenario);
    }
    measured += messages;
    for l in listeners {
        l.abort();
    }
    let nodes = node_reports(
        scenario,
        hz,
        Ticks {
            start: &start_ticks,
            load: &load_ticks,
            end: &end_ticks,
        },
        (measured, messages),
        &load_rss,
    );
    Ok(Report {
        variant: args.variant,
        sender: args.sender,
        synchronous: args.synchronous,
        pin_cores: args.pin_cores,
        direction: scenario.direction.clone(),
        messages,
        in_flight: args.in_flight,
        body_bytes: args.body_bytes,
        receipts_per_message: expected,
        phases: reports,
        nodes,
        client_cpu_s: own_cpu_seconds(hz),
        backlog,
        idle_clients,
        soak: None,
    })
}

/// Stops the recipient's node, queues `messages` at the sender's node,
/// starts the recipient's node again on the same ports and measures how
/// fast the queue drains into the recipient's stream.
async fn run_backlog(
    scenario: &mut Scenario,
    phases: &Phases,
    sender_admin: &Client,
    args: &BenchArgs,
    messages: usize,
) -> anyhow::Result<(Arc<Phase>, Instant, BacklogReport)> {
    let recipient = scenario
        .recipient
        .take()
        .ok_or_else(|| anyhow!("the backlog variant needs a direct pair"))?;
    let room_id = scenario.senders[0].1.clone();
    let before = room_where(&recipient, |r| r.id == room_id).await?;
    let r = scenario.recipient_node;
    progress(format!(
        "backlog: stopping {} and queueing {messages} messages",
        scenario.nodes[r].tenant
    ));
    scenario.nodes[r].terminate().await?;
    progress(format!("{} stopped", scenario.nodes[r].tenant));
    let phase = Phase::new("backlog", 'b', messages, args.in_flight, 1, Release::OnAck);
    phases.add(&phase);
    let t0 = drive(&phase, &scenario.senders, args.body_bytes).await?;
    let enqueued = phase
        .lock()
        .acked_last_at
        .map_or(0.0, |t| t.saturating_duration_since(t0).as_secs_f64());
    progress(format!(
        "backlog: {messages} queued in {enqueued:.1} s; starting {} again",
        scenario.nodes[r].tenant
    ));
    let restart = Instant::now();
    phase.lock().floor = Some(restart);
    scenario.nodes[r].spawn().await?;
    let listening = restart.elapsed();
    let again = scenario.nodes[r]
        .connect()
        .await?
        .login(&recipient.id, MEMBER_PASSWORD)
        .await
        .map_err(status_error)?;
    let member = Member {
        id: recipient.id.clone(),
        client: again,
    };
    let (listener, order) = phases.listen_in_order(open_watch(&member, &[&before]).await?);
    let sender_node = &scenario.nodes[scenario.sender_node];
    let deadline = Instant::now() + SETUP_DEADLINE + Duration::from_millis(20 * messages as u64);
    let queue_empty = loop {
        if sender_node.queued(sender_admin).await? == 0 {
            break restart.elapsed();
        }
        if Instant::now() > deadline {
            bail!("{} never emptied its queue", sender_node.tenant);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    wait_complete(&phase).await?;
    // Anything shown twice shows up within a moment of the last message.
    tokio::time::sleep(Duration::from_millis(500)).await;
    listener.abort();
    let (first, last, delivered, duplicates, unexpected) = {
        let s = phase.lock();
        (
            s.first_at,
            s.last_at,
            s.complete,
            s.duplicates,
            s.unexpected,
        )
    };
    let order = lock(&order).clone();
    if duplicates > 0 || unexpected > 0 || order.repeated > 0 || order.gaps > 0 {
        bail!(
            "backlog: {delivered} of {messages} delivered, but {duplicates} duplicates, \
             {unexpected} never sent, {} events repeated and {} gaps in the room's order",
            order.repeated,
            order.gaps
        );
    }
    let since = |t: Option<Instant>| t.map_or(f64::NAN, |t| (t - restart).as_secs_f64());
    let drain = since(last);
    let figures = BacklogReport {
        enqueue_msgs_per_s: messages as f64 / enqueued.max(f64::EPSILON),
        restart_to_listening_s: listening.as_secs_f64(),
        first_message_s: since(first),
        queue_empty_s: queue_empty.as_secs_f64(),
        drain_s: drain,
        drain_msgs_per_s: messages as f64 / drain,
        delivered,
        duplicates,
        order,
    };
    // The phase's throughput and latency count from the restart.
    Ok((phase, restart, figures))
}

/// Opens `count` idle live streams on `node`, one connection each, for a
/// member in no room, and measures the node's memory before and after.
async fn open_idle_clients(
    node: &BenchNode,
    count: usize,
) -> anyhow::Result<(IdleClientsReport, Vec<(Client, WatchStream)>)> {
    let idle = node.members(&["idle".into()]).await?.remove(0);
    let token_holder = idle.client;
    progress(format!(
        "opening {count} idle live streams on {}",
        node.tenant
    ));
    let rss_before = node.rss_kib();
    let t0 = Instant::now();
    let token = token_holder
        .auth
        .clone()
        .login(pb::LoginRequest {
            member_id: idle.id.clone(),
            password: MEMBER_PASSWORD.into(),
        })
        .await
        .map_err(status_error)?
        .into_inner()
        .token;
    let gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let mut opening: JoinSet<anyhow::Result<(Client, WatchStream)>> = JoinSet::new();
    for _ in 0..count {
        let gate = gate.clone();
        let url = node.url.clone();
        let token = token.clone();
        opening.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let client = Client::connect(&url, Some(&token)).await?;
            let stream = client
                .rooms
                .clone()
                .watch(pb::WatchRequest::default())
                .await
                .map_err(status_error)?
                .into_inner();
            Ok((client, stream))
        });
    }
    let mut streams = Vec::with_capacity(count);
    while let Some(opened) = opening.join_next().await {
        streams.push(opened.context("open task")??);
    }
    let connect_secs = t0.elapsed().as_secs_f64();
    let rss_after = node.rss_kib();
    let report = IdleClientsReport {
        clients: count,
        connect_secs,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        rss_per_stream_bytes: rss_after.saturating_sub(rss_before) as f64 * 1024.0
            / count.max(1) as f64,
    };
    progress(format!(
        "{count} streams open in {connect_secs:.1} s; {} RSS {rss_before} → {rss_after} KiB",
        node.tenant
    ));
    Ok((report, streams))
}

// ---- soak ----------------------------------------------------------------

/// Memory at the end of the load may be at most this times the memory
/// after the warm-up.
const SOAK_RSS_GROWTH: f64 = 1.2;
/// The load counts as held if at least this share of the due messages
/// went out (a node that cannot keep up would otherwise hold the queue
/// flat only by slowing the sender down).
const SOAK_RATE_HELD: f64 = 0.9;
/// After the load: time for every message to arrive and every queue to empty.
const SOAK_DRAIN_DEADLINE: Duration = Duration::from_secs(120);
/// The smallest growth of a queue's mean depth that counts as a trend.
const SOAK_QUEUE_ALLOWANCE_MIN: f64 = 10.0;

/// The soak's timing, checked before anything starts.
struct SoakSettings {
    warmup: Duration,
    per_direction: f64,
}

fn soak_settings(args: &BenchArgs) -> anyhow::Result<SoakSettings> {
    if !(args.rate.is_finite() && args.rate > 0.0) {
        bail!("--rate must be above 0");
    }
    if args.sample_every.is_zero() {
        bail!("--sample-every must be above 0");
    }
    let warmup = args
        .warmup_for
        .unwrap_or((args.duration / 10).max(Duration::from_secs(5)));
    if warmup >= args.duration {
        bail!(
            "--warmup-for ({warmup:?}) must be shorter than --duration ({:?})",
            args.duration
        );
    }
    // The queue's trend compares thirds of the samples after the warm-up.
    if args.duration - warmup < 3 * args.sample_every {
        bail!("the load after the warm-up must last at least three times --sample-every");
    }
    Ok(SoakSettings {
        warmup,
        per_direction: args.rate / 2.0,
    })
}

#[derive(Debug, Serialize)]
struct SoakReport {
    duration_s: f64,
    warmup_s: f64,
    /// Messages per second asked for, both ways together.
    rate: f64,
    /// Messages sent per second over the whole run, both ways together.
    achieved_rate: f64,
    sample_every_s: f64,
    directions: Vec<SoakDirection>,
    streams: Vec<SoakStream>,
    memory: Vec<SoakMemory>,
    queues: Vec<SoakQueue>,
    /// From the end of the load until every acknowledged message arrived
    /// and no queue held anything; none if that never happened.
    drain_s: Option<f64>,
    samples: Vec<SoakSample>,
    failures: Vec<String>,
    passed: bool,
}

#[derive(Debug, Serialize)]
struct SoakDirection {
    from: String,
    to: String,
    sent: usize,
    /// `SendMessage` answered OK: stored by the sender's node.
    acked: usize,
    send_errors: usize,
    first_error: Option<String>,
    /// Distinct messages on the recipient's stream.
    received: usize,
    /// Acknowledged and never on the recipient's stream.
    lost: usize,
    duplicates: usize,
    unexpected: usize,
}

#[derive(Debug, Serialize)]
struct SoakStream {
    /// Whose live stream, on which node.
    member: String,
    #[serde(flatten)]
    order: StreamOrder,
}

#[derive(Debug, Serialize)]
struct SoakMemory {
    tenant: String,
    after_warmup_kib: u64,
    /// The lowest sample after the warm-up: the allocator may hand back
    /// memory left over from set-up (password hashing) at any time, which
    /// would hide growth from the baseline.
    min_after_warmup_kib: u64,
    /// At the last sample, as the load stops.
    end_kib: u64,
    limit_kib: u64,
    peak_kib: u64,
}

#[derive(Debug, Serialize)]
struct SoakQueue {
    tenant: String,
    /// Mean depth over the first and the last third of the samples after
    /// the warm-up.
    first_third_mean: f64,
    last_third_mean: f64,
    /// How much the mean may grow: one second of the whole load.
    allowance: f64,
    max: u64,
    /// Left queued when the drain ended.
    end: u64,
}

#[derive(Debug, Clone, Serialize)]
struct SoakSample {
    t_s: f64,
    after_warmup: bool,
    /// Per node, in the order of the report's nodes.
    rss_kib: Vec<u64>,
    queued: Vec<u64>,
    /// Per direction, in the order of the report's directions.
    sent: Vec<usize>,
    acked: Vec<usize>,
    received: Vec<usize>,
}

/// One way across the room: its messages, and what became of their sends.
struct SoakWay {
    phase: Arc<Phase>,
    sent: AtomicUsize,
    acked: AtomicUsize,
    errors: AtomicUsize,
    first_error: Mutex<Option<String>>,
}

/// Sends the way's messages on a fixed schedule (message i at
/// `start + i / per_second`) until `until`. A message that is late (this
/// process was not scheduled in time) goes at once, so the rate holds on
/// average; what can hold messages back is the phase's window, sent and not
/// yet received, full when the nodes do not keep up: the achieved rate then
/// shows the shortfall.
async fn send_steadily(
    way: Arc<SoakWay>,
    client: Client,
    room: String,
    per_second: f64,
    start: Instant,
    until: Instant,
    body_bytes: usize,
) -> anyhow::Result<()> {
    let mut calls: JoinSet<()> = JoinSet::new();
    for i in 0..way.phase.n {
        let due = start + Duration::from_secs_f64(i as f64 / per_second);
        if due >= until {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        way.phase
            .window
            .acquire()
            .await
            .context("window closed")?
            .forget();
        if Instant::now() >= until {
            break;
        }
        while let Some(done) = calls.try_join_next() {
            done.context("send task")?;
        }
        let mut rooms = client.rooms.clone();
        let request = pb::SendMessageRequest {
            room_id: room.clone(),
            idempotency_key: format!("{}{i}", way.phase.tag),
            text: way.phase.text(i, body_bytes),
            ..Default::default()
        };
        way.sent.fetch_add(1, Ordering::Relaxed);
        let way = way.clone();
        calls.spawn(async move {
            way.phase.lock().sent[i] = Some(Instant::now());
            match rooms.send_message(request).await {
                Ok(_) => {
                    way.acked.fetch_add(1, Ordering::Relaxed);
                }
                Err(status) => {
                    way.errors.fetch_add(1, Ordering::Relaxed);
                    lock(&way.first_error)
                        .get_or_insert_with(|| format!("message {i}: {:#}", status_error(status)));
                    way.phase.window.add_permits(1);
                }
            }
        });
    }
    while let Some(done) = calls.join_next().await {
        done.context("send task")?;
    }
    Ok(())
}

async fn soak_sample(
    scenario: &Scenario,
    admins: &[Client],
    ways: &[Arc<SoakWay>],
    start: Instant,
    after_warmup: bool,
) -> anyhow::Result<SoakSample> {
    let t_s = start.elapsed().as_secs_f64();
    let mut queued = Vec::new();
    for (node, admin) in scenario.nodes.iter().zip(admins) {
        queued.push(node.queued(admin).await?);
    }
    Ok(SoakSample {
        t_s,
        after_warmup,
        rss_kib: scenario.nodes.iter().map(BenchNode::rss_kib).collect(),
        queued,
        sent: ways
            .iter()
            .map(|w| w.sent.load(Ordering::Relaxed))
            .collect(),
        acked: ways
            .iter()
            .map(|w| w.acked.load(Ordering::Relaxed))
            .collect(),
        received: ways.iter().map(|w| w.phase.lock().complete).collect(),
    })
}

/// Messages at a steady rate both ways across the direct room for
/// `--duration` (warm-up included), memory and queue depth sampled every
/// `--sample-every`; then waits for the queues to drain and judges the run
/// (`judge_soak`).
async fn soak(scenario: &mut Scenario, args: &BenchArgs) -> anyhow::Result<Report> {
    let settings = soak_settings(args)?;
    let hz = clock_ticks_per_second();
    let mut admins = Vec::new();
    for node in &scenario.nodes {
        admins.push(node.admin().await?);
    }
    let n = (settings.per_direction * args.duration.as_secs_f64()).ceil() as usize + 1;
    let ways_of = [("host-to-replica", 'h'), ("replica-to-host", 'r')];
    let mut ways = Vec::new();
    let mut listeners = Vec::new();
    let mut orders = Vec::new();
    for (k, watch) in scenario.watches.drain(..).enumerate() {
        let (name, tag) = ways_of[k.min(1)];
        let phase = Phase::new(name, tag, n, args.in_flight, 1, Release::OnReceipt);
        // Each stream counts only the other side's messages.
        let phases = Phases::default();
        phases.add(&phase);
        let (task, order) = phases.listen_in_order(watch);
        listeners.push(task);
        orders.push(order);
        ways.push(Arc::new(SoakWay {
            phase,
            sent: AtomicUsize::new(0),
            acked: AtomicUsize::new(0),
            errors: AtomicUsize::new(0),
            first_error: Mutex::new(None),
        }));
    }
    let ticks = |s: &Scenario| s.nodes.iter().map(BenchNode::cpu_ticks).collect::<Vec<_>>();
    progress(format!(
        "soak: {:.0} msgs/s both ways for {:?} (warm-up {:?}), sampling every {:?}",
        args.rate, args.duration, settings.warmup, args.sample_every
    ));
    let start_ticks = ticks(scenario);
    let start = Instant::now();
    let warm_end = start + settings.warmup;
    let load_end = start + args.duration;
    let mut sending = JoinSet::new();
    for (way, (client, room)) in ways.iter().zip(&scenario.senders) {
        sending.spawn(send_steadily(
            way.clone(),
            client.clone(),
            room.clone(),
            settings.per_direction,
            start,
            load_end,
            args.body_bytes,
        ));
    }
    let mut samples: Vec<SoakSample> = Vec::new();
    let mut baseline: Option<(Vec<u64>, Vec<u64>, usize)> = None;
    let mut next = start + args.sample_every;
    loop {
        let wake = if baseline.is_none() {
            next.min(warm_end)
        } else {
            next
        }
        .min(load_end);
        tokio::time::sleep_until(wake.into()).await;
        let warm = wake >= warm_end;
        let sample = soak_sample(scenario, &admins, &ways, start, warm).await?;
        progress(format!(
            "t={:.0}s rss_kib={:?} queued={:?} sent={:?} acked={:?} received={:?}{}",
            sample.t_s,
            sample.rss_kib,
            sample.queued,
            sample.sent,
            sample.acked,
            sample.received,
            if warm && baseline.is_none() {
                " (end of warm-up)"
            } else {
                ""
            }
        ));
        if warm && baseline.is_none() {
            baseline = Some((
                sample.rss_kib.clone(),
                ticks(scenario),
                sample.sent.iter().sum(),
            ));
        }
        samples.push(sample);
        if wake >= load_end {
            break;
        }
        while next <= wake {
            next += args.sample_every;
        }
    }
    while let Some(done) = sending.join_next().await {
        done.context("send task")??;
    }
    let (baseline_rss, warm_ticks, warm_sent) =
        baseline.ok_or_else(|| anyhow!("no sample after the warm-up"))?;
    progress("soak: load stopped; waiting for every message and an empty queue");
    let load_done = Instant::now();
    let mut queued_end;
    let drain_s = loop {
        queued_end = Vec::new();
        for (node, admin) in scenario.nodes.iter().zip(&admins) {
            queued_end.push(node.queued(admin).await?);
        }
        let arrived = ways
            .iter()
            .all(|w| w.phase.lock().complete >= w.acked.load(Ordering::Relaxed));
        if arrived && queued_end.iter().all(|q| *q == 0) {
            break Some(load_done.elapsed().as_secs_f64());
        }
        if load_done.elapsed() > SOAK_DRAIN_DEADLINE {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let end_ticks = ticks(scenario);
    for l in &listeners {
        l.abort();
    }
    let node_count = scenario.nodes.len();
    let directions: Vec<SoakDirection> = ways
        .iter()
        .enumerate()
        .map(|(k, w)| {
            let (received, duplicates, unexpected) = {
                let s = w.phase.lock();
                (s.complete, s.duplicates, s.unexpected)
            };
            let acked = w.acked.load(Ordering::Relaxed);
            SoakDirection {
                from: scenario.nodes[k % node_count].tenant.clone(),
                to: scenario.nodes[(k + 1) % node_count].tenant.clone(),
                sent: w.sent.load(Ordering::Relaxed),
                acked,
                send_errors: w.errors.load(Ordering::Relaxed),
                first_error: lock(&w.first_error).clone(),
                received,
                lost: acked.saturating_sub(received),
                duplicates,
                unexpected,
            }
        })
        .collect();
    let streams = orders
        .iter()
        .zip(&directions)
        .map(|(order, d)| SoakStream {
            member: format!("recipient on {}", d.to),
            order: lock(order).clone(),
        })
        .collect();
    let end_rss = samples
        .last()
        .map(|s| s.rss_kib.clone())
        .unwrap_or_default();
    let memory = scenario
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| SoakMemory {
            tenant: node.tenant.clone(),
            after_warmup_kib: baseline_rss[i],
            min_after_warmup_kib: samples
                .iter()
                .filter(|s| s.after_warmup)
                .map(|s| s.rss_kib[i])
                .min()
                .unwrap_or(0),
            end_kib: end_rss.get(i).copied().unwrap_or(0),
            limit_kib: (baseline_rss[i] as f64 * SOAK_RSS_GROWTH) as u64,
            peak_kib: node.peak_rss_kib(),
        })
        .collect();
    let allowance = args.rate.max(SOAK_QUEUE_ALLOWANCE_MIN);
    let queues = scenario
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let depths: Vec<u64> = samples
                .iter()
                .filter(|s| s.after_warmup)
                .map(|s| s.queued[i])
                .collect();
            let (first, last) = thirds(&depths).unwrap_or((f64::NAN, f64::NAN));
            SoakQueue {
                tenant: node.tenant.clone(),
                first_third_mean: first,
                last_third_mean: last,
                allowance,
                max: depths.iter().copied().max().unwrap_or(0),
                end: queued_end[i],
            }
        })
        .collect();
    let sent_total: usize = directions.iter().map(|d| d.sent).sum();
    let duration_s = args.duration.as_secs_f64();
    let mut report = SoakReport {
        duration_s,
        warmup_s: settings.warmup.as_secs_f64(),
        rate: args.rate,
        achieved_rate: sent_total as f64 / duration_s,
        sample_every_s: args.sample_every.as_secs_f64(),
        directions,
        streams,
        memory,
        queues,
        drain_s,
        samples,
        failures: Vec::new(),
        passed: false,
    };
    report.failures = judge_soak(&report);
    report.passed = report.failures.is_empty();
    let after_warmup = sent_total.saturating_sub(warm_sent);
    let nodes = node_reports(
        scenario,
        hz,
        Ticks {
            start: &start_ticks,
            load: &warm_ticks,
            end: &end_ticks,
        },
        (sent_total, after_warmup),
        &baseline_rss,
    );
    Ok(Report {
        variant: args.variant,
        sender: args.sender,
        synchronous: args.synchronous,
        pin_cores: args.pin_cores,
        direction: scenario.direction.clone(),
        messages: sent_total,
        in_flight: args.in_flight,
        body_bytes: args.body_bytes,
        receipts_per_message: 1,
        phases: ways.iter().map(|w| w.phase.report(start)).collect(),
        nodes,
        client_cpu_s: own_cpu_seconds(hz),
        backlog: None,
        idle_clients: None,
        soak: Some(report),
    })
}

/// Means of the first and the last third of `values` (none if fewer than
/// three).
fn thirds(values: &[u64]) -> Option<(f64, f64)> {
    let k = values.len() / 3;
    if k == 0 {
        return None;
    }
    let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len() as f64;
    Some((mean(&values[..k]), mean(&values[values.len() - k..])))
}

/// The soak's criteria; each failure says which and by how much.
fn judge_soak(r: &SoakReport) -> Vec<String> {
    let mut failures = Vec::new();
    if r.achieved_rate < SOAK_RATE_HELD * r.rate {
        failures.push(format!(
            "rate not held: {:.1} of {:.1} msgs/s",
            r.achieved_rate, r.rate
        ));
    }
    for d in &r.directions {
        let way = format!("{} to {}", d.from, d.to);
        if d.send_errors > 0 {
            failures.push(format!(
                "{way}: {} sends failed, first: {}",
                d.send_errors,
                d.first_error.as_deref().unwrap_or("?")
            ));
        }
        if d.lost > 0 {
            failures.push(format!(
                "{way}: {} of {} acknowledged messages never arrived",
                d.lost, d.acked
            ));
        }
        if d.duplicates > 0 {
            failures.push(format!("{way}: {} duplicates", d.duplicates));
        }
        if d.unexpected > 0 {
            failures.push(format!("{way}: {} messages never sent", d.unexpected));
        }
    }
    for s in &r.streams {
        let o = &s.order;
        if o.repeated > 0 || o.gaps > 0 {
            failures.push(format!(
                "order at the {}: {} repeated or backwards seqs, {} gaps",
                s.member, o.repeated, o.gaps
            ));
        }
        if let Some(end) = &o.ended {
            failures.push(format!("the {}'s stream ended: {end}", s.member));
        }
    }
    for m in &r.memory {
        if m.end_kib > m.limit_kib {
            failures.push(format!(
                "{}: rss grew from {} KiB after the warm-up to {} KiB (limit {})",
                m.tenant, m.after_warmup_kib, m.end_kib, m.limit_kib
            ));
        }
    }
    for q in &r.queues {
        if q.first_third_mean.is_nan() {
            failures.push(format!("{}: too few samples for a queue trend", q.tenant));
        } else if q.last_third_mean > q.first_third_mean + q.allowance {
            failures.push(format!(
                "{}: queue grew, mean {:.1} in the first third, {:.1} in the last",
                q.tenant, q.first_third_mean, q.last_third_mean
            ));
        }
        if q.end > 0 {
            failures.push(format!(
                "{}: {} events still queued {:.0} s after the load",
                q.tenant,
                q.end,
                SOAK_DRAIN_DEADLINE.as_secs_f64()
            ));
        }
    }
    failures
}

/// `600`, `600s`, `10m`, `1.5h` or `500ms`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("{text:?} is not a duration (e.g. 600s, 10m, 1h)");
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

fn print_report(r: &Report) {
    println!(
        "variant={:?} sender={:?} synchronous={:?} pin_cores={} messages={} in_flight={} body_bytes={} receipts_per_message={}",
        r.variant,
        r.sender,
        r.synchronous,
        r.pin_cores,
        r.messages,
        r.in_flight,
        r.body_bytes,
        r.receipts_per_message
    );
    println!("direction: {}", r.direction);
    if let Some(soak) = &r.soak {
        print_soak(r, soak);
        return;
    }
    for p in &r.phases {
        println!(
            "{}: n={} recv={} window={} secs={:.3} msgs_per_s={:.0} p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} max_ms={:.3} complete_p50_ms={:.3} complete_p99_ms={:.3}",
            p.phase,
            p.n,
            p.received,
            p.window,
            p.secs,
            p.msgs_per_s,
            p.p50_ms,
            p.p90_ms,
            p.p99_ms,
            p.max_ms,
            p.complete_p50_ms,
            p.complete_p99_ms
        );
    }
    if let Some(b) = &r.backlog {
        println!(
            "backlog: enqueue_msgs_per_s={:.0} restart_to_listening_s={:.3} first_message_s={:.3} queue_empty_s={:.3} drain_s={:.3} drain_msgs_per_s={:.0}",
            b.enqueue_msgs_per_s,
            b.restart_to_listening_s,
            b.first_message_s,
            b.queue_empty_s,
            b.drain_s,
            b.drain_msgs_per_s
        );
        println!(
            "backlog: delivered={} duplicates={} stream_events={} repeated={} gaps={}",
            b.delivered, b.duplicates, b.order.events, b.order.repeated, b.order.gaps
        );
    }
    if let Some(c) = &r.idle_clients {
        println!(
            "idle_clients: clients={} connect_secs={:.1} rss_before_kib={} rss_after_kib={} rss_per_stream_bytes={:.0}",
            c.clients, c.connect_secs, c.rss_before_kib, c.rss_after_kib, c.rss_per_stream_bytes
        );
    }
    for n in &r.nodes {
        println!(
            "node {} ({}): cpu_us_per_msg={:.0} load_cpu_us_per_msg={:.0} cpu_s={:.2} peak_rss_kib={} rss_before_load_kib={} rss_kib={}",
            n.tenant,
            n.role,
            n.cpu_us_per_msg,
            n.load_cpu_us_per_msg,
            n.cpu_s,
            n.peak_rss_kib,
            n.rss_before_load_kib,
            n.rss_kib
        );
    }
    println!("client: cpu_s={:.2}", r.client_cpu_s);
    let idle = r.phases.iter().find(|p| p.phase == "idle");
    let cpu: Vec<String> = r
        .nodes
        .iter()
        .map(|n| format!("cpu_us_per_msg_{}={:.0}", n.tenant, n.cpu_us_per_msg))
        .collect();
    let rss: Vec<String> = r
        .nodes
        .iter()
        .map(|n| format!("peak_rss_kib_{}={}", n.tenant, n.peak_rss_kib))
        .collect();
    println!(
        "idle_p50_ms={:.3} idle_p99_ms={:.3} {} {}",
        idle.map_or(f64::NAN, |p| p.p50_ms),
        idle.map_or(f64::NAN, |p| p.p99_ms),
        cpu.join(" "),
        rss.join(" ")
    );
    if let Some(last) = r.phases.last() {
        println!(
            "msgs_per_s={:.0} p50_ms={:.3} p99_ms={:.3}",
            last.msgs_per_s, last.p50_ms, last.p99_ms
        );
    }
}

fn print_soak(r: &Report, s: &SoakReport) {
    println!(
        "soak: duration_s={:.0} warmup_s={:.0} rate={:.1} achieved_rate={:.1} sample_every_s={:.1} samples={}",
        s.duration_s,
        s.warmup_s,
        s.rate,
        s.achieved_rate,
        s.sample_every_s,
        s.samples.len()
    );
    for x in &s.samples {
        println!(
            "sample t_s={:.1}{} rss_kib={} queued={} sent={} acked={} received={}",
            x.t_s,
            if x.after_warmup { "" } else { " (warm-up)" },
            join(&x.rss_kib),
            join(&x.queued),
            join(&x.sent),
            join(&x.acked),
            join(&x.received)
        );
    }
    for (d, p) in s.directions.iter().zip(&r.phases) {
        println!(
            "direction {} to {}: sent={} acked={} received={} lost={} duplicates={} unexpected={} send_errors={} p50_ms={:.3} p99_ms={:.3} max_ms={:.3}",
            d.from,
            d.to,
            d.sent,
            d.acked,
            d.received,
            d.lost,
            d.duplicates,
            d.unexpected,
            d.send_errors,
            p.p50_ms,
            p.p99_ms,
            p.max_ms
        );
    }
    for st in &s.streams {
        println!(
            "stream {}: events={} repeated={} gaps={} ended={}",
            st.member,
            st.order.events,
            st.order.repeated,
            st.order.gaps,
            st.order.ended.as_deref().unwrap_or("no")
        );
    }
    for m in &s.memory {
        println!(
            "memory {}: rss_after_warmup_kib={} rss_min_after_warmup_kib={} rss_end_kib={} limit_kib={} ({SOAK_RSS_GROWTH}x) peak_rss_kib={}",
            m.tenant,
            m.after_warmup_kib,
            m.min_after_warmup_kib,
            m.end_kib,
            m.limit_kib,
            m.peak_kib
        );
    }
    for q in &s.queues {
        println!(
            "queue {}: first_third_mean={:.1} last_third_mean={:.1} allowance={:.0} max={} end={}",
            q.tenant, q.first_third_mean, q.last_third_mean, q.allowance, q.max, q.end
        );
    }
    for n in &r.nodes {
        println!(
            "node {} ({}): cpu_us_per_msg={:.0} cpu_s={:.2}",
            n.tenant, n.role, n.cpu_us_per_msg, n.cpu_s
        );
    }
    println!(
        "drain_s={}",
        s.drain_s
            .map_or_else(|| "timeout".to_string(), |d| format!("{d:.2}"))
    );
    println!(
        "criteria: every acknowledged message arrives (lost=0), once (duplicates=0); \
         each stream's seqs one after another; rss at the end <= {SOAK_RSS_GROWTH} x rss after the warm-up; \
         queue: mean of the last third of samples after the warm-up <= mean of the first third + allowance \
         (one second of the load), and empty within {:.0} s of the load's end; \
         at least {:.0}% of the due messages sent",
        SOAK_DRAIN_DEADLINE.as_secs_f64(),
        SOAK_RATE_HELD * 100.0
    );
    if s.passed {
        println!("soak=pass");
    } else {
        println!("soak=fail reason={}", s.failures.join("; "));
    }
}

fn join<T: std::fmt::Display>(values: &[T]) -> String {
    values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_carry_their_tag_and_are_padded_to_the_body_size() {
        let phase = Phase::new("load", 'l', 10, 2, 1, Release::OnReceipt);
        let text = phase.text(7, 100);
        assert_eq!(text.len(), 100);
        assert_eq!(parse_tag(&text), Some(('l', 7)));
        assert_eq!(parse_tag(&phase.text(3, 1)), Some(('l', 3)));
        assert_eq!(parse_tag("hello"), None);
    }

    #[test]
    fn durations_read_with_or_without_a_unit() {
        assert_eq!(parse_duration("600"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "s", "10 parsecs", "-5s", "1e99h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_stream_counts_repeated_seqs_and_gaps() {
        let mut order = StreamOrder::default();
        for seq in [5, 6, 7, 7, 6, 9, 10] {
            order.saw("room", seq);
        }
        order.saw("other", 1);
        assert_eq!(
            (order.events, order.repeated, order.gaps),
            (8, 2, 1),
            "{order:?}"
        );
    }

    #[test]
    fn queue_trend_compares_the_first_and_last_thirds() {
        assert_eq!(thirds(&[1, 2]), None);
        assert_eq!(thirds(&[3, 0, 9]), Some((3.0, 9.0)));
        assert_eq!(thirds(&[2, 4, 0, 0, 0, 10, 20]), Some((3.0, 15.0)));
    }

    fn passing_soak() -> SoakReport {
        SoakReport {
            duration_s: 60.0,
            warmup_s: 10.0,
            rate: 100.0,
            achieved_rate: 99.0,
            sample_every_s: 5.0,
            directions: vec![SoakDirection {
                from: "a.example".into(),
                to: "b.example".into(),
                sent: 3000,
                acked: 3000,
                send_errors: 0,
                first_error: None,
                received: 3000,
                lost: 0,
                duplicates: 0,
                unexpected: 0,
            }],
            streams: vec![SoakStream {
                member: "recipient on b.example".into(),
                order: StreamOrder::default(),
            }],
            memory: vec![SoakMemory {
                tenant: "a.example".into(),
                after_warmup_kib: 100_000,
                min_after_warmup_kib: 90_000,
                end_kib: 120_000,
                limit_kib: 120_000,
                peak_kib: 130_000,
            }],
            queues: vec![SoakQueue {
                tenant: "a.example".into(),
                first_third_mean: 5.0,
                last_third_mean: 105.0,
                allowance: 100.0,
                max: 300,
                end: 0,
            }],
            drain_s: Some(0.5),
            samples: Vec::new(),
            failures: Vec::new(),
            passed: false,
        }
    }

    #[test]
    fn a_soak_at_every_limit_passes() {
        assert_eq!(judge_soak(&passing_soak()), Vec::<String>::new());
    }

    #[test]
    fn each_soak_criterion_fails_on_its_own() {
        let check = |change: fn(&mut SoakReport), expected: &str| {
            let mut r = passing_soak();
            change(&mut r);
            let failures = judge_soak(&r);
            assert_eq!(failures.len(), 1, "{failures:?}");
            assert!(failures[0].contains(expected), "{failures:?}");
        };
        check(|r| r.achieved_rate = 89.0, "rate not held");
        check(|r| r.directions[0].lost = 1, "1 of 3000 acknowledged");
        check(|r| r.directions[0].duplicates = 2, "2 duplicates");
        check(|r| r.directions[0].unexpected = 1, "never sent");
        check(|r| r.directions[0].send_errors = 1, "1 sends failed");
        check(|r| r.streams[0].order.gaps = 1, "1 gaps");
        check(|r| r.streams[0].order.repeated = 1, "1 repeated");
        check(
            |r| r.streams[0].order.ended = Some("reset".into()),
            "ended: reset",
        );
        check(|r| r.memory[0].end_kib = 120_001, "rss grew");
        check(|r| r.queues[0].last_third_mean = 105.5, "queue grew");
        check(
            |r| r.queues[0].first_third_mean = f64::NAN,
            "too few samples",
        );
        check(|r| r.queues[0].end = 4, "4 events still queued");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 51.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn a_message_leaves_the_window_once_every_recipient_saw_it() {
        let phase = Phase::new("load", 'l', 2, 1, 2, Release::OnReceipt);
        let now = Instant::now();
        phase.lock().sent[0] = Some(now);
        phase.received(0, now);
        assert_eq!(phase.window.available_permits(), 1);
        phase.received(0, now);
        assert_eq!(phase.window.available_permits(), 2);
        assert_eq!(phase.lock().complete, 1);
        // Unknown and unsent messages are ignored, and counted.
        phase.received(1, now);
        phase.received(9, now);
        assert_eq!(phase.lock().complete, 1);
        assert_eq!(phase.lock().unexpected, 2);
    }

    #[test]
    fn a_message_seen_again_after_it_arrived_is_a_duplicate() {
        let phase = Phase::new("soak", 'h', 1, 1, 1, Release::OnReceipt);
        let now = Instant::now();
        phase.lock().sent[0] = Some(now);
        phase.received(0, now);
        phase.received(0, now);
        let report = phase.report(now);
        assert_eq!((report.received, report.duplicates), (1, 1));
    }
}
