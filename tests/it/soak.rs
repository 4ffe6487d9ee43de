//! The soak as an operator runs it (`works-bench --variant soak`),
//! shortened: two nodes, a steady load both ways across a direct room, and
//! the verdict it prints: nothing lost, nothing twice, seqs in order,
//! memory bounded and queues flat. The ten-minute run is
//! `tests/bench/soak.sh` (RELIABILITY.md).

use std::process::Command;
use std::time::Instant;

/// A field of a `key=value` summary line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn a_short_soak_loses_nothing_duplicates_nothing_and_holds_memory_and_queues() {
    let started = Instant::now();
    // A modest rate and a warm-up long enough for memory to settle, so that
    // a loaded two-core machine running a debug build still holds the load.
    // The bench starts the `node-under-test` built beside it.
    let out = Command::new(env!("CARGO_BIN_EXE_works-bench"))
        .args(["--variant", "soak"])
        .args(["--duration", "25s", "--warmup-for", "8s"])
        .args(["--rate", "50", "--sample-every", "1s"])
        .env("BENCH_NODE_LOG", "warn")
        .output()
        .expect("run the soak");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = format!(
        "after {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        started.elapsed()
    );
    assert!(out.status.success(), "the soak failed {context}");
    assert_eq!(stdout.lines().last(), Some("soak=pass"), "{context}");

    let directions: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("direction ") && l.contains(" to "))
        .collect();
    assert_eq!(directions.len(), 2, "both ways reported {context}");
    for line in directions {
        let sent: usize = field(line, "sent")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        // 25 s at 25 msgs/s each way; at least 90% went out.
        assert!(sent >= 560, "too few sent: {line} {context}");
        assert_eq!(field(line, "received"), field(line, "sent"), "{line}");
        assert_eq!(field(line, "lost"), Some("0"), "{line}");
        assert_eq!(field(line, "duplicates"), Some("0"), "{line}");
        assert_eq!(field(line, "send_errors"), Some("0"), "{line}");
    }
    let streams: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("stream "))
        .collect();
    assert_eq!(streams.len(), 2, "{context}");
    for line in streams {
        assert_eq!(field(line, "repeated"), Some("0"), "{line}");
        assert_eq!(field(line, "gaps"), Some("0"), "{line}");
    }
    let memory = stdout.lines().filter(|l| l.starts_with("memory ")).count();
    let queues = stdout.lines().filter(|l| l.starts_with("queue ")).count();
    assert_eq!((memory, queues), (2, 2), "{context}");
}
