//! A tenant node as a child process of the bench, and what `/proc` says
//! it costs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use tenant_node::client::Client;
use tenant_node::config::{CONFIG_FILE, Config};
use tokio::process::{Child, Command};
use works_proto::client::v1 as pb;

use super::scenarios::Member;
use super::{
    ADMIN_PASSWORD, BenchArgs, MEMBER_PASSWORD, NODE_ENV, START_DEADLINE, progress, status_error,
};
use crate::scenario;

/// The environment variable naming the node binary to run instead of the
/// `node-under-test` beside this executable.
const NODE_BINARY_ENV: &str = "BENCH_NODE_BINARY";

/// The `tenant-node` command line the nodes run: `BENCH_NODE_BINARY`, or
/// `node-under-test` beside this executable, the real CLI that
/// `cargo build -p works-tests --bins` builds with it.
fn node_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(NODE_BINARY_ENV) {
        return Ok(path.into());
    }
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let path = exe.with_file_name(format!("node-under-test{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        bail!(
            "no node binary at {}: build it with `cargo build -p works-tests --bins` \
             (with --release for a release bench), or name one in {NODE_BINARY_ENV}",
            path.display()
        );
    }
    Ok(path)
}

/// A tenant node running as a child process of the bench.
pub(super) struct BenchNode {
    pub(super) tenant: String,
    pub(super) data: PathBuf,
    pub(super) log: PathBuf,
    pub(super) url: String,
    pub(super) admin_id: String,
    /// The CPU core `serve` is bound to (`--pin-cores`).
    pub(super) core: Option<usize>,
    pub(super) child: Option<Child>,
    pub(super) pid: u32,
    /// CPU ticks and peak memory of earlier runs of this node (restarts).
    pub(super) earlier_ticks: u64,
    pub(super) earlier_peak_kib: u64,
}

impl BenchNode {
    /// `init` on a fresh directory, then `serve`; the ports it got are
    /// written back to its config so that a restart keeps them. `index`:
    /// the node's place in the scenario, which picks its core; `storage`:
    /// the database URL to keep its data at instead of SQLite.
    pub(super) async fn start(
        root: &Path,
        tenant: &str,
        args: &BenchArgs,
        index: usize,
        storage: Option<&str>,
    ) -> anyhow::Result<Self> {
        let synchronous = args.synchronous;
        let core = core_for(args, index);
        let exe = node_binary()?;
        let node_dir = root.join(tenant);
        let data = node_dir.join("data");
        std::fs::create_dir_all(&node_dir)?;
        let mut init = Command::new(&exe);
        init.arg("init")
            .arg("--data")
            .arg(&data)
            .args(["--tenant", tenant, "--company", &format!("{tenant} Inc.")])
            .args([
                "--api",
                "127.0.0.1:0",
                "--bridge",
                "127.0.0.1:0",
                "--web",
                "",
                "--ops",
                "",
            ])
            .args(["--admin-password", ADMIN_PASSWORD]);
        // `init` stores the company and its first admin there already.
        if let Some(url) = storage {
            init.args(["--database-url", url]);
        }
        for var in NODE_ENV {
            init.env_remove(var);
        }
        let out = init
            .output()
            .await
            .with_context(|| format!("cannot run the node binary {} (init)", exe.display()))?;
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
            admin_id: format!("{}@{tenant}", tenant_node::init::ADMIN_NAME),
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

    /// Another replica of this node, as a second machine would run it:
    /// `serve` on a directory of its own holding this node's TLS files and
    /// config (so its database) with ports of its own, `number` in its
    /// name. Only for a database replicas share (PostgreSQL). `index`
    /// picks its core, as for [`BenchNode::start`].
    pub(super) async fn replica(
        &self,
        root: &Path,
        number: usize,
        args: &BenchArgs,
        index: usize,
    ) -> anyhow::Result<Self> {
        let node_dir = root.join(format!("{}-replica{number}", self.tenant));
        let data = node_dir.join("data");
        crate::scenario::replica_data_dir(&self.data, &data, false)?;
        let mut replica = BenchNode {
            tenant: self.tenant.clone(),
            log: node_dir.join("node.log"),
            data,
            url: String::new(),
            admin_id: self.admin_id.clone(),
            core: core_for(args, index),
            child: None,
            pid: 0,
            earlier_ticks: 0,
            earlier_peak_kib: 0,
        };
        replica.spawn().await?;
        Ok(replica)
    }

    /// Edits node.toml as written (no environment overlay).
    pub(super) fn edit_config(
        &self,
        edit: impl FnOnce(&mut Config) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut config = read_config(&self.data)?;
        edit(&mut config)?;
        let path = self.data.join(CONFIG_FILE);
        std::fs::write(&path, config.to_toml())
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Starts `serve` and waits for its listening lines.
    pub(super) async fn spawn(
        &mut self,
    ) -> anyhow::Result<(std::net::SocketAddr, std::net::SocketAddr)> {
        let exe = node_binary()?;
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
            .stderr(log);
        for var in NODE_ENV {
            serve.env_remove(var);
        }
        let serving = scenario::serve(serve, START_DEADLINE)
            .await
            .map_err(|e| anyhow!("{} {e:#}; see {}", self.tenant, self.log.display()))?;
        let (api, bridge) = (serving.api, serving.bridge);
        let (child, pid) = (serving.child, serving.pid);
        self.url = format!("http://{api}");
        self.child = Some(child);
        self.pid = pid;
        Ok((api, bridge))
    }

    /// SIGTERM, then waits for the process to exit.
    pub(super) async fn terminate(&mut self) -> anyhow::Result<()> {
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

    pub(super) async fn stop(mut self) {
        if let Err(e) = self.terminate().await {
            progress(format!("{}: {e:#}", self.tenant));
        }
    }

    /// CPU ticks (user + system) of every run of this node so far.
    pub(super) fn cpu_ticks(&self) -> u64 {
        self.earlier_ticks + self.cpu_ticks_of_pid()
    }

    pub(super) fn cpu_ticks_of_pid(&self) -> u64 {
        proc_cpu_ticks(self.pid)
    }

    pub(super) fn peak_rss_kib(&self) -> u64 {
        self.earlier_peak_kib
            .max(proc_status_kib(self.pid, "VmHWM"))
    }

    pub(super) fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid, "VmRSS")
    }

    pub(super) async fn connect(&self) -> anyhow::Result<Client> {
        Ok(Client::connect(&self.url, None).await?)
    }

    pub(super) async fn admin(&self) -> anyhow::Result<Client> {
        self.connect()
            .await?
            .login(&self.admin_id, ADMIN_PASSWORD)
            .await
            .map_err(status_error)
    }

    /// Adds members, `connected` ones allowed to talk across companies, and
    /// logs them in, all on one connection.
    pub(super) async fn members(
        &self,
        names: &[String],
        connected: bool,
    ) -> anyhow::Result<Vec<Member>> {
        let admin = self.admin().await?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let id = scenario::add_member(&admin, name, name, MEMBER_PASSWORD).await?;
            if connected {
                scenario::set_connected(&admin, &id, true).await?;
            }
            let client = admin
                .login(&id, MEMBER_PASSWORD)
                .await
                .map_err(status_error)?;
            out.push(Member { id, client });
        }
        Ok(out)
    }

    /// Queue depth towards every peer, summed.
    pub(super) async fn queued(&self, admin: &Client) -> anyhow::Result<u64> {
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
    pub(super) async fn settle(&self, admin: &Client, within: Duration) -> anyhow::Result<()> {
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

/// node.toml in the data directory `data`, as written (no environment
/// overlay).
fn read_config(data: &Path) -> anyhow::Result<Config> {
    let path = data.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Config::parse(&text).with_context(|| format!("{} is not a valid config", path.display()))
}

/// The CPU core the node at `index` is bound to with `--pin-cores`: the
/// machine's cores in turn.
fn core_for(args: &BenchArgs, index: usize) -> Option<usize> {
    args.pin_cores
        .then(|| index % std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// CPU ticks (user + system) of process `pid` so far; 0 if it is gone.
pub(super) fn proc_cpu_ticks(pid: u32) -> u64 {
    if pid == 0 {
        return 0;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
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

pub(super) fn proc_status_kib(pid: u32, key: &str) -> u64 {
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

pub(super) fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|hz| *hz > 0.0)
        .unwrap_or(100.0)
}

pub(super) fn own_cpu_seconds(hz: f64) -> f64 {
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
