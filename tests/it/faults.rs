//! Faults of the machine under a conversation across companies: a disk that
//! fills up (at the sender's node and at the recipient's), and a peer whose
//! certificate expires while both sides are talking. In each, every
//! acknowledged message arrives exactly once, in order, once the fault is
//! repaired; the counts are asserted.
//!
//! The disk tests mount a small tmpfs over a node's data directory, so they
//! need root (as CI and the development machines run them).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::support::{
    Member, RELAY_DEADLINE, TestNode, history_texts, pair, peers, room_with, state, text, until,
    until_texts,
};
use tonic::Code;
use works_proto::client::v1 as pb;

// ---- a disk that fills up ------------------------------------------------

/// A size-limited tmpfs mounted over a node's data directory (with the
/// directory's files copied in), unmounted when dropped.
struct SmallDisk {
    at: PathBuf,
}

impl SmallDisk {
    /// Stops `node`, moves its data directory onto a fresh `megabytes` MiB
    /// tmpfs and starts it again.
    async fn under(node: &mut TestNode, megabytes: u32) -> SmallDisk {
        node.terminate().await;
        let data = node.data_dir();
        let aside = data.with_extension("before-mount");
        std::fs::rename(&data, &aside).expect("move data aside");
        std::fs::create_dir(&data).expect("mount point");
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={megabytes}m"),
                "tmpfs",
                data.to_str().unwrap(),
            ],
        );
        let disk = SmallDisk { at: data.clone() };
        run(
            "cp",
            &[
                "-a",
                &format!("{}/.", aside.display()),
                data.to_str().unwrap(),
            ],
        );
        node.restart().await;
        disk
    }

    fn filler(&self) -> PathBuf {
        self.at.join("filler")
    }

    /// Writes zeros until the disk refuses more; returns the bytes written.
    fn fill(&self) -> u64 {
        let mut file = std::fs::File::create(self.filler()).expect("filler");
        let mut written = 0u64;
        for chunk in [1 << 20, 4096, 512] {
            let zeros = vec![0u8; chunk];
            loop {
                match file.write(&zeros) {
                    Ok(0) => break,
                    Ok(n) => written += n as u64,
                    Err(e) => {
                        assert_eq!(e.raw_os_error(), Some(28), "ENOSPC expected, got {e}");
                        break;
                    }
                }
            }
        }
        written
    }

    /// Space returns.
    fn free(&self) {
        std::fs::remove_file(self.filler()).expect("remove filler");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: the node may still hold files open while the test unwinds.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.at)
            .status();
    }
}

fn run(program: &str, args: &[&str]) {
    let status = std::process::Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        status.success(),
        "{program} {args:?} failed ({status}); the disk tests need root to mount a tmpfs"
    );
}

/// Runs SQLite's own consistency check on a stopped node's database.
async fn integrity(data: &Path) -> String {
    use sqlx::Connection;
    let url = format!("sqlite://{}", data.join("node.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("open database");
    let (result,): (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .expect("integrity_check");
    result
}

/// Sends on a full disk until the node has refused `refusals` messages in
/// a row (at most `limit` tries); returns the acknowledged texts and the
/// refusals (text, status).
async fn send_on_full_disk(
    node: &TestNode,
    who: &Member,
    room: &str,
    refusals: usize,
    limit: usize,
) -> (Vec<String>, Vec<(String, tonic::Status)>) {
    let mut acknowledged = Vec::new();
    let mut refused = Vec::new();
    let mut in_a_row = 0;
    for i in 0..limit {
        let body = format!("d{i:04}");
        match who.send(room, &body).await {
            Ok(e) => {
                acknowledged.push(text(&e).unwrap().to_string());
                in_a_row = 0;
            }
            Err(status) => {
                refused.push((body, status));
                in_a_row += 1;
                if in_a_row == refusals {
                    return (acknowledged, refused);
                }
            }
        }
    }
    panic!(
        "{} of {limit} messages stored on a full disk, never {refusals} refusals in a row; \
         refused: {refused:?}\n--- node log\n{}",
        acknowledged.len(),
        node.log()
    );
}

/// The refusal a member sees when the node's disk is full; `node`'s log
/// is shown when it is another.
fn assert_storage_full(status: &tonic::Status, node: &TestNode) {
    assert!(
        status.code() == Code::ResourceExhausted
            && status.message().contains("storage is full")
            && status.message().contains("nothing was stored"),
        "{status:?}\n--- node log\n{}",
        node.log()
    );
}

#[tokio::test]
async fn a_full_disk_at_the_senders_node_refuses_clearly_and_recovers_with_nothing_lost() {
    let (mut a, b, alice, bob) = pair().await;
    let room = room_with(&alice, &bob.id).await.id;
    room_with(&bob, &alice.id).await;
    let before = vec!["before".to_string()];
    alice.send(&room, "before").await.unwrap();

    let disk = SmallDisk::under(&mut a, 32).await;
    let alice = a.login(&alice.id).await;
    assert!(disk.fill() > 0);
    // What SQLite can still place in pages it already owns is stored and
    // acknowledged; then writes are refused with the reason, and nothing of
    // a refused message is kept.
    let (during, refused) = send_on_full_disk(&a, &alice, &room, 20, 3000).await;
    println!(
        "full disk at the sender: {} more stored, then {} refused in a row",
        during.len(),
        refused.len()
    );
    for (_, status) in &refused {
        assert_storage_full(status, &a);
    }
    assert!(
        a.log().contains("storage full"),
        "the admin finds it in the log"
    );
    // Reading needs no space: the member still sees the conversation.
    let shown = history_texts(&alice, &room).await;
    assert_eq!(shown, [before.clone(), during.clone()].concat());

    disk.free();
    let mut after = Vec::new();
    for i in 0..20 {
        let e = alice.send(&room, &format!("after{i:02}")).await.unwrap();
        after.push(text(&e).unwrap().to_string());
    }
    let expected = [before, during, after].concat();
    assert_eq!(
        until_texts(&bob, &room, expected.len()).await,
        expected,
        "every acknowledged message once, in order, and nothing refused"
    );
    assert_eq!(history_texts(&alice, &room).await, expected);

    a.terminate().await;
    assert_eq!(integrity(&a.data_dir()).await, "ok");
    drop(b);
}

#[tokio::test]
async fn a_full_disk_at_the_recipients_node_holds_messages_in_the_queue_until_space_returns() {
    let (a, mut b, alice, bob) = pair().await;
    let room = room_with(&alice, &bob.id).await.id;
    room_with(&bob, &alice.id).await;

    let disk = SmallDisk::under(&mut b, 32).await;
    let bob = b.login(&bob.id).await;
    disk.fill();
    // alice's node hosts the room: it acknowledges every message, and the
    // ones b.example cannot store wait in its outbox, the reason shown to
    // a.example's admin.
    let admin = a.admin().await;
    let peer_error = || async { peers(&admin).await[0].last_error.clone() };
    let mut sent = Vec::new();
    let mut last = String::new();
    let mut after_full = 0;
    while after_full < 50 {
        assert!(
            sent.len() < 3000,
            "b.example stored 3000 messages on a full disk"
        );
        let e = alice
            .send(&room, &format!("q{:04}", sent.len()))
            .await
            .unwrap();
        sent.push(text(&e).unwrap().to_string());
        last = e.event_id;
        if after_full > 0 || peer_error().await.contains("storage is full") {
            after_full += 1;
        }
    }
    let d = alice.delivery(&room, &last).await.unwrap();
    assert_eq!(state(&d), pb::DeliveryState::Queued);
    let held = history_texts(&bob, &room).await;
    assert!(
        held.len() < sent.len(),
        "b.example stored all on a full disk"
    );
    assert_eq!(held[..], sent[..held.len()], "what got in came in order");

    disk.free();
    assert_eq!(
        until_texts(&bob, &room, sent.len()).await,
        sent,
        "every message once, in order, once space returned"
    );
    until(RELAY_DEADLINE, "the last message is delivered", || async {
        state(&alice.delivery(&room, &last).await.unwrap()) == pb::DeliveryState::Delivered
    })
    .await;
    b.terminate().await;
    assert_eq!(integrity(&b.data_dir()).await, "ok");
}

// ---- a certificate that expires mid-conversation --------------------------

/// Replaces `node`'s certificate by one from its own CA that expires in
/// `lifetime`, and restarts it; returns the expiry.
async fn short_lived_certificate(node: &mut TestNode, lifetime: Duration) -> SystemTime {
    let files = node.tls_files();
    let ca = files.load_ca().expect("ca");
    let tenant = works_certs::TenantId::parse(&node.tenant).unwrap();
    let validity = works_certs::Validity::from_now(lifetime);
    let cert = ca.issue_node(&tenant, &[], validity).expect("issue");
    files.write(&ca, &cert).expect("write");
    node.terminate().await;
    node.restart().await;
    validity.not_after
}

/// Sends `count` messages, one every `every`; returns the acknowledged texts.
fn paced(
    who: &Member,
    room: &str,
    tag: &'static str,
    count: usize,
    every: Duration,
) -> tokio::task::JoinHandle<Vec<String>> {
    let who = Member {
        id: who.id.clone(),
        client: who.client.clone(),
    };
    let room = room.to_string();
    tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        for i in 0..count {
            let e = who
                .send(&room, &format!("{tag}{i:03}"))
                .await
                .expect("send");
            acknowledged.push(text(&e).unwrap().to_string());
            // The pace is the load under the fault, not a wait for anything.
            tokio::time::sleep(every).await;
        }
        acknowledged
    })
}

async fn peer_row(node: &TestNode) -> pb::Peer {
    peers(&node.admin().await).await.remove(0)
}

#[tokio::test]
async fn a_peer_whose_certificate_expires_mid_conversation_is_cut_off_until_renewed_and_nothing_is_lost()
 {
    let (a, mut b, alice, bob) = pair().await;
    let room = room_with(&alice, &bob.id).await.id;
    room_with(&bob, &alice.id).await;
    let expires = short_lived_certificate(&mut b, Duration::from_secs(8)).await;
    let bob = b.login(&bob.id).await;

    // Both talk across the expiry: alice's node hosts the room, bob's
    // messages go to it as proposals through b.example's outbox.
    let from_alice = paced(&alice, &room, "a", 100, Duration::from_millis(100));
    let from_bob = paced(&bob, &room, "b", 100, Duration::from_millis(100));
    let from_alice = from_alice.await.unwrap();
    let from_bob = from_bob.await.unwrap();
    assert!(SystemTime::now() > expires + Duration::from_secs(1));

    // Neither side accepts the expired certificate any more: a.example
    // cannot reach b.example's bridge, and b.example's calls are refused.
    until(
        RELAY_DEADLINE,
        "both nodes report the expired certificate",
        || async {
            let at_a = peer_row(&a).await;
            let at_b = peer_row(&b).await;
            at_a.queue_depth > 0
                && at_a.last_error.to_lowercase().contains("expired")
                && at_b.queue_depth > 0
                && at_b.last_error.to_lowercase().contains("expired")
        },
    )
    .await;
    let shown_to_bob = history_texts(&bob, &room).await;
    assert!(
        !shown_to_bob.contains(from_alice.last().unwrap()),
        "a message sent after the expiry reached b.example"
    );

    // b.example's admin renews its certificate: delivery resumes both ways.
    b.admin()
        .await
        .peering
        .clone()
        .renew_node_certificate(pb::RenewNodeCertificateRequest {})
        .await
        .unwrap();
    let total = from_alice.len() + from_bob.len();
    let at_alice = until_texts(&alice, &room, total).await;
    let at_bob = until_texts(&bob, &room, total).await;
    assert_eq!(at_alice, at_bob, "one order on both sides");
    for (tag, sent) in [("a", &from_alice), ("b", &from_bob)] {
        let got: Vec<&String> = at_alice.iter().filter(|t| t.starts_with(tag)).collect();
        assert_eq!(
            got,
            sent.iter().collect::<Vec<_>>(),
            "every message from {tag} once, in the order sent"
        );
    }
    assert_eq!(at_alice.len(), total, "nothing else");
    until(RELAY_DEADLINE, "both queues empty", || async {
        peer_row(&a).await.queue_depth == 0 && peer_row(&b).await.queue_depth == 0
    })
    .await;
}
