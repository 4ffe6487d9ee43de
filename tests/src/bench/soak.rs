//! `--variant soak`: a steady rate both ways across the direct room for a
//! set time, each node's memory and queue depth sampled, and the verdict.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde::Serialize;
use tenant_node::client::Client;
use tokio::task::JoinSet;
use works_proto::client::v1 as pb;

use super::measure::{Phase, Phases, Release, StreamOrder, Ticks, lock, node_reports};
use super::node::{BenchNode, clock_ticks_per_second, own_cpu_seconds};
use super::report::Report;
use super::scenarios::Scenario;
use super::{BenchArgs, progress, status_error};

/// Memory at the end of the load may be at most this times the memory
/// after the warm-up.
pub(super) const SOAK_RSS_GROWTH: f64 = 1.2;
/// The load counts as held if at least this share of the due messages
/// went out (a node that cannot keep up would otherwise hold the queue
/// flat only by slowing the sender down).
pub(super) const SOAK_RATE_HELD: f64 = 0.9;
/// After the load: time for every message to arrive and every queue to empty.
pub(super) const SOAK_DRAIN_DEADLINE: Duration = Duration::from_secs(120);
/// The smallest growth of a queue's mean depth that counts as a trend.
pub(super) const SOAK_QUEUE_ALLOWANCE_MIN: f64 = 10.0;

/// The soak's timing, checked before anything starts.
pub(super) struct SoakSettings {
    pub(super) warmup: Duration,
    pub(super) per_direction: f64,
}

pub(super) fn soak_settings(args: &BenchArgs) -> anyhow::Result<SoakSettings> {
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
pub(super) struct SoakReport {
    pub(super) duration_s: f64,
    pub(super) warmup_s: f64,
    /// Messages per second asked for, both ways together.
    pub(super) rate: f64,
    /// Messages sent per second over the whole run, both ways together.
    pub(super) achieved_rate: f64,
    pub(super) sample_every_s: f64,
    pub(super) directions: Vec<SoakDirection>,
    pub(super) streams: Vec<SoakStream>,
    pub(super) memory: Vec<SoakMemory>,
    pub(super) queues: Vec<SoakQueue>,
    /// From the end of the load until every acknowledged message arrived
    /// and no queue held anything; none if that never happened.
    pub(super) drain_s: Option<f64>,
    pub(super) samples: Vec<SoakSample>,
    pub(super) failures: Vec<String>,
    pub(super) passed: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct SoakDirection {
    pub(super) from: String,
    pub(super) to: String,
    pub(super) sent: usize,
    /// `SendMessage` answered OK: stored by the sender's node.
    pub(super) acked: usize,
    pub(super) send_errors: usize,
    pub(super) first_error: Option<String>,
    /// Distinct messages on the recipient's stream.
    pub(super) received: usize,
    /// Acknowledged and never on the recipient's stream.
    pub(super) lost: usize,
    pub(super) duplicates: usize,
    pub(super) unexpected: usize,
}

#[derive(Debug, Serialize)]
pub(super) struct SoakStream {
    /// Whose live stream, on which node.
    pub(super) member: String,
    #[serde(flatten)]
    pub(super) order: StreamOrder,
}

#[derive(Debug, Serialize)]
pub(super) struct SoakMemory {
    pub(super) tenant: String,
    pub(super) after_warmup_kib: u64,
    /// The lowest sample after the warm-up: the allocator may hand back
    /// memory left over from set-up (password hashing) at any time, which
    /// would hide growth from the baseline.
    pub(super) min_after_warmup_kib: u64,
    /// At the last sample, as the load stops.
    pub(super) end_kib: u64,
    pub(super) limit_kib: u64,
    pub(super) peak_kib: u64,
}

#[derive(Debug, Serialize)]
pub(super) struct SoakQueue {
    pub(super) tenant: String,
    /// Mean depth over the first and the last third of the samples after
    /// the warm-up.
    pub(super) first_third_mean: f64,
    pub(super) last_third_mean: f64,
    /// How much the mean may grow: one second of the whole load.
    pub(super) allowance: f64,
    pub(super) max: u64,
    /// Left queued when the drain ended.
    pub(super) end: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct SoakSample {
    pub(super) t_s: f64,
    pub(super) after_warmup: bool,
    /// Per node, in the order of the report's nodes.
    pub(super) rss_kib: Vec<u64>,
    pub(super) queued: Vec<u64>,
    /// Per direction, in the order of the report's directions.
    pub(super) sent: Vec<usize>,
    pub(super) acked: Vec<usize>,
    pub(super) received: Vec<usize>,
}

/// One way across the room: its messages, and what became of their sends.
pub(super) struct SoakWay {
    pub(super) phase: Arc<Phase>,
    pub(super) sent: AtomicUsize,
    pub(super) acked: AtomicUsize,
    pub(super) errors: AtomicUsize,
    pub(super) first_error: Mutex<Option<String>>,
}

/// Sends the way's messages on a fixed schedule (message i at
/// `start + i / per_second`) until `until`. A message that is late (this
/// process was not scheduled in time) goes at once, so the rate holds on
/// average; what can hold messages back is the phase's window, sent and not
/// yet received, full when the nodes do not keep up: the achieved rate then
/// shows the shortfall.
pub(super) async fn send_steadily(
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

pub(super) async fn soak_sample(
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
pub(super) async fn soak(scenario: &mut Scenario, args: &BenchArgs) -> anyhow::Result<Report> {
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
    progress(format!(
        "soak: {:.0} msgs/s both ways for {:?} (warm-up {:?}), sampling every {:?}",
        args.rate, args.duration, settings.warmup, args.sample_every
    ));
    let start_ticks = scenario.cpu_ticks();
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
                scenario.cpu_ticks(),
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
    let end_ticks = scenario.cpu_ticks();
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
        storage: args.storage,
        replicas: args.replicas,
        synchronous: args.synchronous,
        pin_cores: args.pin_cores,
        direction: scenario.direction.clone(),
        messages: sent_total,
        in_flight: args.in_flight,
        body_bytes: args.body_bytes,
        receipts_per_message: 1,
        phases: ways.iter().map(|w| w.phase.report(start)).collect(),
        nodes,
        database: None,
        client_cpu_s: own_cpu_seconds(hz),
        backlog: None,
        idle_clients: None,
        soak: Some(report),
    })
}

/// Means of the first and the last third of `values` (none if fewer than
/// three).
pub(super) fn thirds(values: &[u64]) -> Option<(f64, f64)> {
    let k = values.len() / 3;
    if k == 0 {
        return None;
    }
    let mean = |v: &[u64]| v.iter().sum::<u64>() as f64 / v.len() as f64;
    Some((mean(&values[..k]), mean(&values[values.len() - k..])))
}

/// The soak's criteria; each failure says which and by how much.
pub(super) fn judge_soak(r: &SoakReport) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
