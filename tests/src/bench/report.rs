//! What a run measured, and its text lines: `compare.sh` and `scaling.sh`
//! read them, so each keeps its words and its order.

use serde::Serialize;

use super::measure::StreamOrder;
use super::soak::{SOAK_DRAIN_DEADLINE, SOAK_RATE_HELD, SOAK_RSS_GROWTH, SoakReport};
use super::{SenderSide, Storage, Synchronous, Variant};

/// What a run measured, printed as text or JSON.
#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub(super) variant: Variant,
    pub(super) sender: SenderSide,
    /// Where the first company (hosting the rooms) keeps its data (the
    /// others: SQLite).
    pub(super) storage: Storage,
    /// Processes serving the first company from its database.
    pub(super) replicas: usize,
    pub(super) synchronous: Synchronous,
    /// Each node bound to a core of its own (`--pin-cores`).
    pub(super) pin_cores: bool,
    /// Who sends to whom, and which node hosts the room.
    pub(super) direction: String,
    pub(super) messages: usize,
    pub(super) in_flight: usize,
    pub(super) body_bytes: usize,
    pub(super) receipts_per_message: u32,
    pub(super) phases: Vec<PhaseReport>,
    pub(super) nodes: Vec<NodeReport>,
    /// The PostgreSQL server's work for the first node (not in the soak).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) database: Option<DatabaseReport>,
    pub(super) client_cpu_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) backlog: Option<BacklogReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) idle_clients: Option<IdleClientsReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) soak: Option<SoakReport>,
}

#[derive(Debug, Serialize)]
pub(super) struct PhaseReport {
    pub(super) phase: &'static str,
    pub(super) n: usize,
    pub(super) received: usize,
    pub(super) window: usize,
    pub(super) secs: f64,
    pub(super) msgs_per_s: f64,
    /// Send to arrival at a recipient's stream, every receipt.
    pub(super) p50_ms: f64,
    pub(super) p90_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) max_ms: f64,
    /// Send to arrival at the last recipient (the same as above with one).
    pub(super) complete_p50_ms: f64,
    pub(super) complete_p99_ms: f64,
    /// Receipts of a message that had already reached every recipient.
    pub(super) duplicates: usize,
    /// Tagged texts of this phase that it never sent.
    pub(super) unexpected: usize,
}

#[derive(Debug, Serialize)]
pub(super) struct NodeReport {
    pub(super) tenant: String,
    pub(super) role: String,
    /// Server CPU over warm-up, idle and load, per message (the XMPP
    /// script's measure).
    pub(super) cpu_us_per_msg: f64,
    /// Server CPU over the load phase alone, per message.
    pub(super) load_cpu_us_per_msg: f64,
    pub(super) cpu_s: f64,
    /// Peak memory of the process, set-up included (password hashing
    /// during set-up leaves its mark here).
    pub(super) peak_rss_kib: u64,
    /// Memory just before the load phase and at the end.
    pub(super) rss_before_load_kib: u64,
    pub(super) rss_kib: u64,
    /// A node on several replicas: each one's figures; the node's are their
    /// sums (its peak memory the sum of their peaks).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) replicas: Vec<NodeReport>,
}

impl NodeReport {
    /// One company's node on `replicas`: what they cost together.
    pub(super) fn of_replicas(role: String, replicas: Vec<NodeReport>) -> NodeReport {
        let sum = |figure: fn(&NodeReport) -> f64| replicas.iter().map(figure).sum::<f64>();
        let sum_kib = |figure: fn(&NodeReport) -> u64| replicas.iter().map(figure).sum::<u64>();
        NodeReport {
            tenant: replicas
                .first()
                .map(|r| r.tenant.clone())
                .unwrap_or_default(),
            role,
            cpu_us_per_msg: sum(|r| r.cpu_us_per_msg),
            load_cpu_us_per_msg: sum(|r| r.load_cpu_us_per_msg),
            cpu_s: sum(|r| r.cpu_s),
            peak_rss_kib: sum_kib(|r| r.peak_rss_kib),
            rss_before_load_kib: sum_kib(|r| r.rss_before_load_kib),
            rss_kib: sum_kib(|r| r.rss_kib),
            replicas,
        }
    }
}

/// The CPU time of the PostgreSQL server processes connected to the first
/// node's database at the end of the run (those that ended sooner
/// are not counted), per message as for a node.
#[derive(Debug, Serialize)]
pub(super) struct DatabaseReport {
    pub(super) name: String,
    pub(super) backends: usize,
    pub(super) cpu_us_per_msg: f64,
    pub(super) load_cpu_us_per_msg: f64,
    pub(super) cpu_s: f64,
}

#[derive(Debug, Serialize)]
pub(super) struct BacklogReport {
    /// Messages the sender's node accepted per second while the peer was down.
    pub(super) enqueue_msgs_per_s: f64,
    /// From the restart to the node's `serve` saying it listens.
    pub(super) restart_to_listening_s: f64,
    /// From the restart to the first queued message on the recipient's stream.
    pub(super) first_message_s: f64,
    /// From the restart until the sender's node had nothing queued.
    pub(super) queue_empty_s: f64,
    /// From the restart to the last queued message on the recipient's stream.
    pub(super) drain_s: f64,
    pub(super) drain_msgs_per_s: f64,
    /// What the recipient's stream showed after the restart: every queued
    /// message once, in the room's order, or the run fails.
    pub(super) delivered: usize,
    pub(super) duplicates: usize,
    pub(super) order: StreamOrder,
}

#[derive(Debug, Serialize)]
pub(super) struct IdleClientsReport {
    pub(super) clients: usize,
    pub(super) connect_secs: f64,
    pub(super) rss_before_kib: u64,
    pub(super) rss_after_kib: u64,
    pub(super) rss_per_stream_bytes: f64,
}

pub(super) fn print_report(r: &Report) {
    println!(
        "variant={:?} sender={:?} storage={:?} replicas={} synchronous={:?} pin_cores={} messages={} in_flight={} body_bytes={} receipts_per_message={}",
        r.variant,
        r.sender,
        r.storage,
        r.replicas,
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
        for replica in &n.replicas {
            println!(
                "  {} of {}: cpu_us_per_msg={:.0} load_cpu_us_per_msg={:.0} cpu_s={:.2} peak_rss_kib={} rss_before_load_kib={} rss_kib={}",
                replica.role,
                replica.tenant,
                replica.cpu_us_per_msg,
                replica.load_cpu_us_per_msg,
                replica.cpu_s,
                replica.peak_rss_kib,
                replica.rss_before_load_kib,
                replica.rss_kib
            );
        }
    }
    if let Some(d) = &r.database {
        println!(
            "database {}: backends={} cpu_us_per_msg={:.0} load_cpu_us_per_msg={:.0} cpu_s={:.2}",
            d.name, d.backends, d.cpu_us_per_msg, d.load_cpu_us_per_msg, d.cpu_s
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

pub(super) fn print_soak(r: &Report, s: &SoakReport) {
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

pub(super) fn join<T: std::fmt::Display>(values: &[T]) -> String {
    values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
