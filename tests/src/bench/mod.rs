//! `works-bench`: cross-company relay throughput, latency and memory,
//! with the workload of the XMPP server-to-server baseline
//! (`shared/bench/xmpp`), so the two can be compared in one run.
//!
//! The nodes are child processes (`init`, then `serve`) of the real
//! `tenant-node` command line (`node-under-test` beside this executable, or
//! `BENCH_NODE_BINARY`) on loopback ports, each with a fresh data directory
//! and CA, so that each one's CPU time (`/proc/PID/stat`) and peak memory
//! (`VmHWM`) can be read. The benchmark peers them, allows external
//! messaging, makes the members contacts (which opens a direct room hosted
//! by the requester's node; the steps of `crate::scenario`) and drives
//! everything through the public client API: a warm-up, messages one at a
//! time (idle latency), then N messages with K in flight (load). K counts
//! messages sent and not yet seen by every recipient, as the XMPP load
//! client does. Latency runs from just before `SendMessage` is called to
//! the event's arrival on the recipient's `Watch` stream, matched by the
//! tag at the start of its text.
//!
//! Variants: `direct` (one pair), `group` (a room of members spread over
//! three companies: fan-out), `peers` (one node talking to ten peers at
//! once), `backlog` (the recipient's node is stopped while messages queue,
//! then started: drain rate and time to empty), `idle-clients` (many idle
//! live streams on the recipient's node: memory per stream, and what they
//! cost the load) and `soak` (a steady rate both ways across the direct room
//! for a set time, judged at the end: see [`soak`]).
//!
//! Every node keeps its data in embedded SQLite, or, with `--storage
//! postgres`, the first company's (the one hosting the rooms) in a fresh
//! database on the local PostgreSQL server; then `--replicas N` runs it on N
//! `serve` processes sharing the database, the sender logged in on each and
//! its messages spread round robin over them, as a TCP load balancer in
//! front of the API would. (These replicas are processes of one company's
//! node; a room's replica is the copy of a room on another company's node.)
//!
//! # Layout
//!
//! - `node`: a node as a child process, its CPU and memory from `/proc`.
//! - `database`: what the PostgreSQL server costs with `--storage postgres`.
//! - `scenarios`: the nodes, members and rooms of each variant.
//! - `measure`: phases of tagged messages, the window, latencies, the
//!   backlog and idle-clients runs.
//! - `soak`: the steady load, its samples and its verdict.
//! - `report`: what a run measured, as text lines or JSON.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Parser, ValueEnum};
use serde::Serialize;
use tenant_node::config::Config;

use crate::postgres::Database;
use measure::measure;
use report::print_report;
use scenarios::{group, pair, peers};
use soak::{soak, soak_settings};

mod database;
mod measure;
mod node;
mod report;
mod scenarios;
mod soak;

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
const NODE_ENV: [&str; 7] = [
    "WORKS_API_LISTEN",
    "WORKS_BRIDGE_LISTEN",
    "WORKS_WEB_LISTEN",
    "WORKS_OPS_LISTEN",
    "WORKS_LOG_FORMAT",
    "WORKS_DATABASE_URL",
    "WORKS_ADMIN_PASSWORD",
];

/// Measure cross-company relay throughput, latency and memory on nodes
/// started here (the workload of the XMPP server-to-server baseline).
#[derive(Parser, Debug, Clone)]
#[command(name = "works-bench")]
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
    /// Where the first company, which hosts the rooms (and sends unless
    /// --sender replica), keeps its data: embedded SQLite, or a fresh
    /// database on the local PostgreSQL (postgres@127.0.0.1:5432), dropped
    /// at the end of the run (even with --keep). The other companies' nodes
    /// stay on SQLite.
    #[arg(long, value_enum, default_value_t = Storage::Sqlite)]
    pub storage: Storage,
    /// Processes serving the first company from its one database (needs
    /// --storage postgres, --variant direct and --sender host): the sender
    /// logs in on each and its messages go to them in turn.
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// SQLite's synchronous mode on every node on SQLite.
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
    /// Sends the load phase on one `Rooms.SendStream` per sender instead of
    /// one unary `SendMessage` call per message (the warm-up and the idle
    /// phase stay unary).
    #[arg(long)]
    pub stream: bool,
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
pub enum Storage {
    Sqlite,
    Postgres,
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
            Synchronous::Normal => tenant_node::config::Synchronous::Normal,
            Synchronous::Full => tenant_node::config::Synchronous::Full,
        };
        Ok(())
    }
}

/// The `works-bench` command: parses the flags, runs, and prints any error
/// as `error: ...` on stderr (`compare.sh` looks for that line).
pub fn main() -> ExitCode {
    let args = BenchArgs::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
    check_replicas(&args)?;
    let messages = args.messages.unwrap_or(match args.variant {
        Variant::Backlog => BACKLOG_MESSAGES,
        _ => 20_000,
    });
    // Rejected before anything starts.
    args.synchronous.apply(&mut Config::new(
        &tenant_node::ids::TenantId::parse("check.example").map_err(|e| anyhow!("{e}"))?,
    ))?;
    let root = tempfile::Builder::new()
        .prefix("works-bench-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let dir = root.path().to_path_buf();
    progress(format!("data directories and logs under {}", dir.display()));
    let database = match args.storage {
        Storage::Sqlite => None,
        Storage::Postgres => Some(Database::create("works_bench").await?),
    };
    if let Some(db) = &database {
        progress(format!("the first company stores in {}", db.name()));
    }
    let storage = database.as_ref().map(Database::url);
    let storage = storage.as_deref();
    let mut scenario = match args.variant {
        Variant::Direct | Variant::Backlog | Variant::IdleClients | Variant::Soak => {
            pair(&dir, &args, storage).await
        }
        Variant::Group => group(&dir, &args, storage).await,
        Variant::Peers => peers(&dir, &args, storage).await,
    };
    let outcome = match &mut scenario {
        Ok(scenario) if args.variant == Variant::Soak => soak(scenario, &args).await,
        Ok(scenario) => measure(scenario, &args, messages, database.as_ref()).await,
        Err(_) => Err(anyhow!("set-up failed")),
    };
    let soak_failed = outcome
        .as_ref()
        .ok()
        .and_then(|r| r.soak.as_ref())
        .is_some_and(|s| !s.passed);
    let setup_error = scenario.as_ref().err().map(|e| format!("{e:#}"));
    if let Ok(scenario) = scenario {
        for node in scenario.replicas.into_iter().chain(scenario.nodes) {
            node.stop().await;
        }
    }
    if let Some(db) = database
        && let Err(e) = db.drop_it().await
    {
        progress(format!("{e:#}"));
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

/// Refuses `--replicas` where the bench cannot run it: more than one needs
/// a database the replicas share, the direct pair, and the sender on the
/// replicated (hosting) node.
fn check_replicas(args: &BenchArgs) -> anyhow::Result<()> {
    if args.replicas == 0 {
        bail!("--replicas must be at least 1");
    }
    if args.replicas == 1 {
        return Ok(());
    }
    if args.storage != Storage::Postgres {
        bail!(
            "--replicas {} needs --storage postgres: replicas share one database, \
             and an SQLite file belongs to one process",
            args.replicas
        );
    }
    if args.variant != Variant::Direct {
        bail!("--replicas above 1 is implemented for --variant direct only");
    }
    if args.sender != SenderSide::Host {
        bail!(
            "--replicas spreads the sender's messages over the host's replicas: \
             use it with --sender host"
        );
    }
    Ok(())
}

/// Progress on stderr, with the seconds since the benchmark started.
fn progress(line: impl AsRef<str>) {
    static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let since = STARTED.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("bench: [{since:7.2}s] {}", line.as_ref());
}

/// A node's refusal as an error: its code's name and message, on one line.
fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow!("{}", crate::scenario::describe(&status))
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

#[cfg(test)]
mod tests {
    use super::*;

    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        BenchArgs::command().debug_assert();
    }

    #[test]
    fn replicas_need_postgres_and_the_direct_pair() {
        let args = |extra: &[&str]| {
            BenchArgs::try_parse_from(["works-bench"].iter().chain(extra)).expect("flags")
        };
        assert!(check_replicas(&args(&[])).is_ok());
        assert!(check_replicas(&args(&["--replicas", "3", "--storage", "postgres"])).is_ok());
        let two_on_postgres = |more: &[&'static str]| {
            [&["--replicas", "2", "--storage", "postgres"][..], more].concat()
        };
        for refused in [
            vec!["--replicas", "0"],
            vec!["--replicas", "2"],
            two_on_postgres(&["--variant", "group"]),
            two_on_postgres(&["--sender", "replica"]),
        ] {
            assert!(check_replicas(&args(&refused)).is_err(), "{refused:?}");
        }
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
}
