//! Phases of tagged messages: the window of messages in flight, the
//! latency of each receipt, the order of each live stream; the load, the
//! backlog and the idle-clients runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde::Serialize;
use tenant_node::client::Client;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use works_proto::client::v1 as pb;

use super::database::backend_ticks;
use super::node::{BenchNode, clock_ticks_per_second, own_cpu_seconds};
use super::report::{
    BacklogReport, DatabaseReport, IdleClientsReport, NodeReport, PhaseReport, Report,
};
use super::scenarios::{Member, Scenario, WatchStream, open_watch, room_where};
use super::{
    BenchArgs, CONNECT_CONCURRENCY, MEMBER_PASSWORD, SETUP_DEADLINE, Variant, WARMUP_IN_FLIGHT,
    progress, status_error,
};
use crate::postgres::Database;

/// When a message leaves the window.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Release {
    /// Once every recipient has seen it (the XMPP client's window).
    OnReceipt,
    /// Once the sender's node acknowledged it (nobody receives yet).
    OnAck,
}

/// One measured run of messages.
pub(super) struct Phase {
    pub(super) name: &'static str,
    pub(super) tag: char,
    pub(super) n: usize,
    pub(super) window_size: usize,
    pub(super) release: Release,
    pub(super) window: Semaphore,
    pub(super) state: Mutex<PhaseState>,
    pub(super) done: Notify,
}

pub(super) struct PhaseState {
    pub(super) sent: Vec<Option<Instant>>,
    pub(super) remaining: Vec<u32>,
    /// Latencies are measured from the later of the send and this.
    pub(super) floor: Option<Instant>,
    pub(super) receipts_ms: Vec<f64>,
    pub(super) complete_ms: Vec<f64>,
    pub(super) complete: usize,
    pub(super) first_at: Option<Instant>,
    pub(super) last_at: Option<Instant>,
    pub(super) acked_last_at: Option<Instant>,
    pub(super) duplicates: usize,
    pub(super) unexpected: usize,
}

impl Phase {
    pub(super) fn new(
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

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, PhaseState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A recipient's stream showed message `i` at `at`. A message never
    /// sent, or seen again after every recipient had it, is only counted.
    pub(super) fn received(&self, i: usize, at: Instant) {
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

    pub(super) fn text(&self, i: usize, body_bytes: usize) -> String {
        let mut text = format!("{}{i:08}|", self.tag);
        while text.len() < body_bytes {
            text.push('x');
        }
        text
    }

    pub(super) fn report(&self, t0: Instant) -> PhaseReport {
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
pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[k.min(sorted.len() - 1)]
}

/// The phases receivers route events to, by the tag at the start of a text.
#[derive(Clone, Default)]
pub(super) struct Phases(Arc<Mutex<HashMap<char, Arc<Phase>>>>);

impl Phases {
    pub(super) fn add(&self, phase: &Arc<Phase>) {
        self.lock().insert(phase.tag, phase.clone());
    }

    pub(super) fn get(&self, tag: char) -> Option<Arc<Phase>> {
        self.lock().get(&tag).cloned()
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<char, Arc<Phase>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads a stream until it ends, recording every tagged text.
    pub(super) fn listen(&self, stream: WatchStream) -> tokio::task::JoinHandle<()> {
        self.listen_in_order(stream).0
    }

    /// As `listen`, and checks the order of every room event the stream
    /// shows: after a room's first, each seq is the next one.
    pub(super) fn listen_in_order(
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

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The order of the room events one live stream showed.
#[derive(Debug, Default, Clone, Serialize)]
pub(super) struct StreamOrder {
    pub(super) events: u64,
    /// Events at or below a seq the stream had already shown in that room.
    pub(super) repeated: u64,
    /// Events further on than the next seq: a hole in the room's order.
    pub(super) gaps: u64,
    /// Why the stream ended, if it did.
    pub(super) ended: Option<String>,
    #[serde(skip)]
    pub(super) last_seq: HashMap<String, u64>,
}

impl StreamOrder {
    pub(super) fn saw(&mut self, room: &str, seq: u64) {
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

pub(super) fn parse_tag(text: &str) -> Option<(char, usize)> {
    let mut chars = text.chars();
    let tag = chars.next()?;
    let rest = chars.as_str();
    let (digits, _) = rest.split_once('|')?;
    Some((tag, digits.parse().ok()?))
}

/// Sends a phase's messages, at most its window in flight, and waits until
/// every recipient has every message (or, for `Release::OnAck`, until the
/// sender's node acknowledged them all). Returns when it started.
pub(super) async fn drive(
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

/// `drive` over one `SendStream` per sender: the same window, the same
/// messages; each answer is checked in order.
pub(super) async fn drive_stream(
    phase: &Arc<Phase>,
    senders: &[(Client, String)],
    body_bytes: usize,
) -> anyhow::Result<Instant> {
    let t0 = Instant::now();
    let mut streams = Vec::new();
    let mut readers: JoinSet<anyhow::Result<()>> = JoinSet::new();
    for (s, (client, _)) in senders.iter().enumerate() {
        let (requests, queued) = tokio::sync::mpsc::channel(phase.window_size.max(1));
        let mut answers = client
            .rooms
            .clone()
            .send_stream(tokio_stream::wrappers::ReceiverStream::new(queued))
            .await
            .map_err(|s| anyhow!("opening a send stream: {}", status_error(s)))?
            .into_inner();
        streams.push(requests);
        let expected = (s..phase.n).step_by(senders.len()).count();
        let phase = phase.clone();
        readers.spawn(async move {
            for _ in 0..expected {
                let answer = answers
                    .message()
                    .await
                    .map_err(|s| anyhow!("send stream of {}: {}", phase.name, status_error(s)))?
                    .ok_or_else(|| anyhow!("send stream of {} ended early", phase.name))?;
                if let Some(refused) = answer.refused {
                    bail!("a message of {} refused: {}", phase.name, refused.message);
                }
                if phase.release == Release::OnAck {
                    phase.lock().acked_last_at = Some(Instant::now());
                    phase.window.add_permits(1);
                }
            }
            Ok(())
        });
    }
    for i in 0..phase.n {
        phase
            .window
            .acquire()
            .await
            .context("window closed")?
            .forget();
        if let Some(done) = readers.try_join_next() {
            done.context("send stream reader")??;
        }
        let (_, room) = &senders[i % senders.len()];
        let request = pb::SendMessageRequest {
            room_id: room.clone(),
            idempotency_key: format!("{}{i}", phase.tag),
            text: phase.text(i, body_bytes),
            ..Default::default()
        };
        phase.lock().sent[i] = Some(Instant::now());
        streams[i % senders.len()]
            .send(request)
            .await
            .map_err(|_| anyhow!("send stream of {} closed", phase.name))?;
    }
    drop(streams);
    while let Some(done) = readers.join_next().await {
        done.context("send stream reader")??;
    }
    if phase.release == Release::OnReceipt {
        wait_complete(phase).await?;
    }
    Ok(t0)
}

pub(super) async fn wait_complete(phase: &Phase) -> anyhow::Result<()> {
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

/// Each node process's CPU clock ticks at the start, when the load began
/// and at the end, in the order of [`Scenario::processes`].
pub(super) struct Ticks<'a> {
    pub(super) start: &'a [u64],
    pub(super) load: &'a [u64],
    pub(super) end: &'a [u64],
}

/// What each node cost: CPU per message over the whole run and over the
/// load (`messages`: all of them, and those of the load), and memory
/// (`load_rss`: each process's RSS when the load began, in the order of
/// [`Scenario::processes`]). The first node on several replicas costs what
/// they cost together, and each one's figures are listed with it.
pub(super) fn node_reports(
    scenario: &Scenario,
    hz: f64,
    ticks: Ticks<'_>,
    (all_messages, load_messages): (usize, usize),
    load_rss: &[u64],
) -> Vec<NodeReport> {
    let processes: Vec<&BenchNode> = scenario.processes().collect();
    let cost = |p: usize, role: String| {
        let all = ticks.end[p].saturating_sub(ticks.start[p]) as f64 / hz;
        let load = ticks.end[p].saturating_sub(ticks.load[p]) as f64 / hz;
        NodeReport {
            tenant: processes[p].tenant.clone(),
            role,
            cpu_us_per_msg: all * 1e6 / all_messages.max(1) as f64,
            load_cpu_us_per_msg: load * 1e6 / load_messages.max(1) as f64,
            cpu_s: all,
            peak_rss_kib: processes[p].peak_rss_kib(),
            rss_before_load_kib: load_rss[p],
            rss_kib: processes[p].rss_kib(),
            replicas: Vec::new(),
        }
    };
    (0..scenario.nodes.len())
        .map(|i| {
            let role = scenario.roles.get(i).cloned().unwrap_or_default();
            if i != 0 || scenario.replicas.is_empty() {
                return cost(i, role);
            }
            let replicas = std::iter::once(i)
                .chain(scenario.nodes.len()..processes.len())
                .enumerate()
                .map(|(k, p)| cost(p, format!("replica {}", k + 1)))
                .collect();
            NodeReport::of_replicas(role, replicas)
        })
        .collect()
}

/// The server processes' CPU ticks now (see
/// [`backend_ticks`]); none without a database.
async fn database_ticks(database: Option<&Database>) -> anyhow::Result<HashMap<u32, u64>> {
    match database {
        Some(db) => backend_ticks(db).await,
        None => Ok(HashMap::new()),
    }
}

/// What the database server's processes cost, as [`node_reports`] counts
/// a node's: those gone by `ticks.end` are not counted.
fn database_report(
    database: Option<&Database>,
    hz: f64,
    ticks: [&HashMap<u32, u64>; 3],
    (all_messages, load_messages): (usize, usize),
) -> Option<DatabaseReport> {
    let [start, load, end] = ticks;
    let since = |from: &HashMap<u32, u64>| {
        let ticks: u64 = end
            .iter()
            .map(|(pid, now)| now.saturating_sub(from.get(pid).copied().unwrap_or(0)))
            .sum();
        ticks as f64 / hz
    };
    let (all, load) = (since(start), since(load));
    database.map(|db| DatabaseReport {
        name: db.name().to_string(),
        backends: end.len(),
        cpu_us_per_msg: all * 1e6 / all_messages.max(1) as f64,
        load_cpu_us_per_msg: load * 1e6 / load_messages.max(1) as f64,
        cpu_s: all,
    })
}

/// The run of every variant but the soak. `database`: the first node's,
/// whose server processes' CPU is reported beside the nodes'.
pub(super) async fn measure(
    scenario: &mut Scenario,
    args: &BenchArgs,
    messages: usize,
    database: Option<&Database>,
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
    let start_ticks = scenario.cpu_ticks();
    let start_db = database_ticks(database).await?;
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
    let (load_ticks, load_db, load_rss, end_ticks, end_db);
    if args.variant == Variant::Backlog {
        scenario.nodes[scenario.sender_node]
            .settle(&sender_admin, SETUP_DEADLINE)
            .await?;
        load_ticks = scenario.cpu_ticks();
        load_db = database_ticks(database).await?;
        load_rss = scenario.rss_kib();
        // A node does not stop while a live stream is open: close them first.
        for l in listeners.drain(..) {
            l.abort();
        }
        let (phase, t0, figures) =
            run_backlog(scenario, &phases, &sender_admin, args, messages).await?;
        end_ticks = scenario.cpu_ticks();
        end_db = database_ticks(database).await?;
        reports.push(phase.report(t0));
        backlog = Some(figures);
    } else {
        load_ticks = scenario.cpu_ticks();
        load_db = database_ticks(database).await?;
        load_rss = scenario.rss_kib();
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
        let t0 = if args.stream {
            drive_stream(&load, &scenario.senders, args.body_bytes).await?
        } else {
            drive(&load, &scenario.senders, args.body_bytes).await?
        };
        reports.push(load.report(t0));
        // The sender's node finishes its outbox rows after the peers'
        // acknowledgements; count that work too.
        scenario.nodes[scenario.sender_node]
            .settle(&sender_admin, SETUP_DEADLINE)
            .await?;
        end_ticks = scenario.cpu_ticks();
        end_db = database_ticks(database).await?;
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
    let database = database_report(
        database,
        hz,
        [&start_db, &load_db, &end_db],
        (measured, messages),
    );
    Ok(Report {
        variant: args.variant,
        sender: args.sender,
        storage: args.storage,
        replicas: args.replicas,
        synchronous: args.synchronous,
        pin_cores: args.pin_cores,
        direction: scenario.direction.clone(),
        messages,
        in_flight: args.in_flight,
        body_bytes: args.body_bytes,
        receipts_per_message: expected,
        phases: reports,
        nodes,
        database,
        client_cpu_s: own_cpu_seconds(hz),
        backlog,
        idle_clients,
        soak: None,
    })
}

/// Stops the recipient's node, queues `messages` at the sender's node,
/// starts the recipient's node again on the same ports and measures how
/// fast the queue drains into the recipient's stream.
pub(super) async fn run_backlog(
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
pub(super) async fn open_idle_clients(
    node: &BenchNode,
    count: usize,
) -> anyhow::Result<(IdleClientsReport, Vec<(Client, WatchStream)>)> {
    let idle = node.members(&["idle".into()], true).await?.remove(0);
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
