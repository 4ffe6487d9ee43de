//! What the node counts while it runs (API calls, deliveries, live
//! streams), and the Prometheus text format (0.0.4) the ops port writes.
//! Gauges read from storage (queue depths, pool) are taken at scrape time
//! by the caller and handed to `render` as a `Snapshot`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

/// Upper bounds of the API latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Counters and gauges kept in memory; one per node, shared by the API
/// layer, the deliverers and the ops port.
#[derive(Default)]
pub struct Metrics {
    calls: Mutex<BTreeMap<(String, String), Calls>>,
    live_streams: AtomicI64,
    peers: Mutex<BTreeMap<String, PeerCounts>>,
}

/// One method's calls: by gRPC code, and the latency histogram.
#[derive(Default, Clone)]
struct Calls {
    by_code: BTreeMap<&'static str, u64>,
    /// Not cumulative: a call is counted in the first bucket it fits.
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

/// What the deliverer of one peer did since the node started.
#[derive(Default, Clone)]
struct PeerCounts {
    stored: u64,
    refused: u64,
    failed: u64,
    /// This replica runs the peer's deliverer now.
    delivering: bool,
}

/// Storage gauges and facts taken when `/metrics` is read.
pub struct Snapshot {
    pub version: &'static str,
    pub tenant: String,
    pub backend: &'static str,
    pub replica: String,
    /// Per peer: envelopes queued and the age of the oldest, in seconds.
    pub queues: Vec<(String, u64, f64)>,
    pub connections_open: u32,
    pub connections_idle: usize,
}

impl Metrics {
    /// One API call answered with `code` (a gRPC code name) after `seconds`.
    pub fn observe_call(&self, service: &str, method: &str, code: &'static str, seconds: f64) {
        let mut calls = lock(&self.calls);
        let calls = calls
            .entry((service.to_string(), method.to_string()))
            .or_default();
        *calls.by_code.entry(code).or_default() += 1;
        if let Some(bucket) = LATENCY_BUCKETS.iter().position(|le| seconds <= *le) {
            calls.buckets[bucket] += 1;
        }
        calls.count += 1;
        calls.sum_seconds += seconds;
    }

    /// A live stream's response started; `live_stream_closed` when it ends.
    pub fn live_stream_opened(&self) {
        self.live_streams.fetch_add(1, Ordering::Relaxed);
    }

    pub fn live_stream_closed(&self) {
        self.live_streams.fetch_sub(1, Ordering::Relaxed);
    }

    /// A batch's answers from the peer: envelopes it stored and refused.
    pub fn delivered(&self, peer: &str, stored: u64, refused: u64) {
        let mut peers = lock(&self.peers);
        let counts = peers.entry(peer.to_string()).or_default();
        counts.stored += stored;
        counts.refused += refused;
    }

    /// A delivery attempt that failed (no stream, no answer, or the peer
    /// asked to retry later).
    pub fn delivery_failed(&self, peer: &str) {
        lock(&self.peers)
            .entry(peer.to_string())
            .or_default()
            .failed += 1;
    }

    pub fn set_delivering(&self, peer: &str, delivering: bool) {
        lock(&self.peers)
            .entry(peer.to_string())
            .or_default()
            .delivering = delivering;
    }

    /// Peers the deliverers have counted anything for.
    pub fn known_peers(&self) -> Vec<String> {
        lock(&self.peers).keys().cloned().collect()
    }

    /// Everything in the Prometheus text format, version 0.0.4.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut out = String::new();
        family(
            &mut out,
            "works_build_info",
            "gauge",
            "The running build; always 1",
        );
        sample(
            &mut out,
            "works_build_info",
            &[
                ("version", snapshot.version),
                ("tenant", &snapshot.tenant),
                ("backend", snapshot.backend),
                ("replica", &snapshot.replica),
            ],
            1.0,
        );

        family(
            &mut out,
            "works_outbox_queued",
            "gauge",
            "Envelopes queued for a peer, not yet acknowledged",
        );
        for (peer, queued, _) in &snapshot.queues {
            sample(
                &mut out,
                "works_outbox_queued",
                &[("peer", peer)],
                *queued as f64,
            );
        }
        family(
            &mut out,
            "works_outbox_oldest_queued_seconds",
            "gauge",
            "Age of the oldest envelope queued for a peer (0 when none)",
        );
        for (peer, _, age) in &snapshot.queues {
            sample(
                &mut out,
                "works_outbox_oldest_queued_seconds",
                &[("peer", peer)],
                *age,
            );
        }

        let peers = lock(&self.peers).clone();
        family(
            &mut out,
            "works_outbox_delivered_total",
            "counter",
            "Envelopes a peer acknowledged, by its answer",
        );
        for (peer, counts) in &peers {
            for (outcome, n) in [("stored", counts.stored), ("refused", counts.refused)] {
                sample(
                    &mut out,
                    "works_outbox_delivered_total",
                    &[("peer", peer), ("outcome", outcome)],
                    n as f64,
                );
            }
        }
        family(
            &mut out,
            "works_outbox_failures_total",
            "counter",
            "Delivery attempts to a peer that failed and will be retried",
        );
        for (peer, counts) in &peers {
            sample(
                &mut out,
                "works_outbox_failures_total",
                &[("peer", peer)],
                counts.failed as f64,
            );
        }
        family(
            &mut out,
            "works_outbox_deliverer",
            "gauge",
            "1 for each peer whose deliverer runs on this replica",
        );
        for (peer, _) in peers.iter().filter(|(_, c)| c.delivering) {
            sample(
                &mut out,
                "works_outbox_deliverer",
                &[("peer", peer), ("replica", &snapshot.replica)],
                1.0,
            );
        }

        let calls = lock(&self.calls).clone();
        family(
            &mut out,
            "works_api_requests_total",
            "counter",
            "Client API calls, by method and gRPC status code",
        );
        for ((service, method), calls) in &calls {
            for (code, n) in &calls.by_code {
                sample(
                    &mut out,
                    "works_api_requests_total",
                    &[("service", service), ("method", method), ("code", code)],
                    *n as f64,
                );
            }
        }
        family(
            &mut out,
            "works_api_request_seconds",
            "histogram",
            "Client API call latency until the status, in seconds",
        );
        for ((service, method), calls) in &calls {
            let mut cumulative = 0;
            for (le, n) in LATENCY_BUCKETS.iter().zip(calls.buckets) {
                cumulative += n;
                sample(
                    &mut out,
                    "works_api_request_seconds_bucket",
                    &[
                        ("service", service),
                        ("method", method),
                        ("le", &le.to_string()),
                    ],
                    cumulative as f64,
                );
            }
            let labels = [("service", service.as_str()), ("method", method.as_str())];
            sample(
                &mut out,
                "works_api_request_seconds_bucket",
                &[labels[0], labels[1], ("le", "+Inf")],
                calls.count as f64,
            );
            sample(
                &mut out,
                "works_api_request_seconds_sum",
                &labels,
                calls.sum_seconds,
            );
            sample(
                &mut out,
                "works_api_request_seconds_count",
                &labels,
                calls.count as f64,
            );
        }

        family(
            &mut out,
            "works_live_streams",
            "gauge",
            "Members' live event streams (Watch) open now",
        );
        sample(
            &mut out,
            "works_live_streams",
            &[],
            self.live_streams.load(Ordering::Relaxed).max(0) as f64,
        );
        family(
            &mut out,
            "works_storage_connections",
            "gauge",
            "Database connections of the pool: open, and idle among them",
        );
        sample(
            &mut out,
            "works_storage_connections",
            &[("state", "open")],
            f64::from(snapshot.connections_open),
        );
        sample(
            &mut out,
            "works_storage_connections",
            &[("state", "idle")],
            snapshot.connections_idle as f64,
        );
        out
    }
}

/// A poisoned lock still holds valid counts: a panic elsewhere stops no
/// metric.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{label}=\"{}\"", escape(value));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", number(value));
}

/// A label value as the text format quotes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            version: "1.0.0",
            tenant: "acme.example".into(),
            backend: "sqlite",
            replica: "host-1".into(),
            queues: vec![("globex.example".into(), 5, 1.5)],
            connections_open: 2,
            connections_idle: 1,
        }
    }

    #[test]
    fn counts_render_in_the_text_format() {
        let metrics = Metrics::default();
        metrics.observe_call("works.client.v1.Rooms", "SendMessage", "OK", 0.003);
        metrics.observe_call("works.client.v1.Rooms", "SendMessage", "NOT_FOUND", 20.0);
        metrics.delivered("globex.example", 3, 1);
        metrics.delivery_failed("globex.example");
        metrics.set_delivering("globex.example", true);
        metrics.live_stream_opened();
        let text = metrics.render(&snapshot());
        for line in [
            "works_outbox_queued{peer=\"globex.example\"} 5",
            "works_outbox_oldest_queued_seconds{peer=\"globex.example\"} 1.5",
            "works_outbox_delivered_total{peer=\"globex.example\",outcome=\"stored\"} 3",
            "works_outbox_failures_total{peer=\"globex.example\"} 1",
            "works_outbox_deliverer{peer=\"globex.example\",replica=\"host-1\"} 1",
            "works_api_requests_total{service=\"works.client.v1.Rooms\",method=\"SendMessage\",code=\"OK\"} 1",
            "works_api_request_seconds_bucket{service=\"works.client.v1.Rooms\",method=\"SendMessage\",le=\"0.005\"} 1",
            "works_api_request_seconds_bucket{service=\"works.client.v1.Rooms\",method=\"SendMessage\",le=\"10\"} 1",
            "works_api_request_seconds_bucket{service=\"works.client.v1.Rooms\",method=\"SendMessage\",le=\"+Inf\"} 2",
            "works_api_request_seconds_count{service=\"works.client.v1.Rooms\",method=\"SendMessage\"} 2",
            "works_live_streams 1",
            "works_storage_connections{state=\"idle\"} 1",
            "works_build_info{version=\"1.0.0\",tenant=\"acme.example\",backend=\"sqlite\",replica=\"host-1\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        metrics.live_stream_closed();
        assert!(
            metrics
                .render(&snapshot())
                .contains("works_live_streams 0\n")
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
