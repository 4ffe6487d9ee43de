//! Durability: what the node acknowledged survives kill -9 and a restart.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::{EVENT_DEADLINE, TestNode, text, until};

/// Acknowledged sends after which the node is killed, still under load.
const SENDS_BEFORE_THE_KILL: usize = 40;

#[tokio::test]
async fn every_acknowledged_message_survives_kill_9() {
    let mut node = TestNode::start("acme.example").await;
    let alice = node.member("alice").await;
    let bob = node.member("bob").await;
    let room = alice.direct_room(&bob.id).await;

    // Four writers send until the node dies under them; only what was
    // acknowledged counts.
    let sent = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..4 {
        let alice = node.login(&alice.id).await;
        let room = room.id.clone();
        let sent = sent.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0.. {
                match alice.send(&room, &format!("w{w}-{i}")).await {
                    Ok(event) => {
                        acked.push((event.event_id, event.seq));
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => break,
                }
            }
            acked
        }));
    }
    until(EVENT_DEADLINE, "the writers are under way", || async {
        sent.load(Ordering::Relaxed) >= SENDS_BEFORE_THE_KILL
    })
    .await;
    node.kill().await;
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.unwrap());
    }
    assert!(
        acknowledged.len() > 20,
        "too few sends before the kill: {}",
        acknowledged.len()
    );

    node.restart().await;
    let bob = node.login(&bob.id).await;
    let history = bob.history(&room.id).await.unwrap();
    let stored: BTreeSet<&str> = history.iter().map(|e| e.event_id.as_str()).collect();
    for (id, seq) in &acknowledged {
        assert!(
            stored.contains(id.as_str()),
            "acknowledged event {id} (#{seq}) lost"
        );
    }
    assert_eq!(stored.len(), history.len(), "an event is stored twice");
    let seqs: Vec<u64> = history.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=history.len() as u64).collect::<Vec<_>>(),
        "room sequence has a gap"
    );

    // The node carries on where it stopped.
    let alice = node.login(&alice.id).await;
    let next = alice.send(&room.id, "after restart").await.unwrap();
    assert_eq!(next.seq, history.len() as u64 + 1);
    assert_eq!(text(&next), Some("after restart"));
}

#[tokio::test]
async fn sigterm_stops_the_node_cleanly_and_data_stays() {
    let mut node = TestNode::start("acme.example").await;
    let alice = node.member("alice").await;
    let bob = node.member("bob").await;
    let room = alice.direct_room(&bob.id).await;
    alice.send(&room.id, "before shutdown").await.unwrap();
    // A member's live stream stays open: it must not hold the node up.
    let _watching = bob.watch(&[]).await.unwrap();
    let status = node.terminate().await;
    assert!(status.success(), "node exited with {status}");
    assert!(node.log().contains("node stopped"), "log:\n{}", node.log());
    node.restart().await;
    let bob = node.login(&bob.id).await;
    let texts: Vec<String> = bob
        .history(&room.id)
        .await
        .unwrap()
        .iter()
        .filter_map(text)
        .map(String::from)
        .collect();
    assert_eq!(texts, vec!["before shutdown"]);
}
