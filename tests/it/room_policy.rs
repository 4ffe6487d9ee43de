//! What a member's standing and choices do in rooms shared with other
//! companies: the file-transfer restriction stops what our members send,
//! not what they receive.

use crate::support::{Member, RELAY_DEADLINE, attachment, check, pair, until};
use tonic::Code;
use works_proto::client::v1 as pb;

/// The members of `room` in `who`'s list, sorted; `None` when it is not
/// there.
async fn members_of(who: &Member, room: &str) -> Option<Vec<String>> {
    who.rooms()
        .await
        .into_iter()
        .find(|r| r.id == room)
        .map(|r| {
            let mut members = r.members;
            members.sort();
            members
        })
}

async fn until_members(who: &Member, room: &str, expected: &[&str]) {
    let mut expected: Vec<String> = expected.iter().map(|m| m.to_string()).collect();
    expected.sort();
    until(
        RELAY_DEADLINE,
        &format!("{} sees {expected:?} in the room", who.id),
        || async { members_of(who, room).await.as_ref() == Some(&expected) },
    )
    .await;
}

async fn until_text(who: &Member, room: &str, text: &str) {
    until(
        RELAY_DEADLINE,
        &format!("{} sees {text:?}", who.id),
        || async {
            who.history(room)
                .await
                .is_ok_and(|h| crate::support::texts(&h).iter().any(|t| t == text))
        },
    )
    .await;
}

#[tokio::test]
async fn restricting_file_transfer_stops_what_our_members_send_not_what_they_receive() {
    let (a, _b, alice, bob) = pair().await;
    let direct = crate::support::room_with(&alice, &bob.id).await.id;
    let group = bob.group_room("Files", &[alice.id.as_str()]).await.id;
    until_members(&alice, &group, &[bob.id.as_str(), alice.id.as_str()]).await;
    // Sent before the restriction, and not downloaded by bob yet.
    let early = alice
        .send_file(&direct, "early.bin", b"early")
        .await
        .unwrap();
    let early = attachment(early.event.as_ref().unwrap())
        .unwrap()
        .id
        .clone();
    let kept = alice.upload(&group, "kept.bin", b"kept").await.unwrap();

    a.admin()
        .await
        .external
        .clone()
        .set_external_settings(pb::SetExternalSettingsRequest {
            restrict_files: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    let restricted = "your company restricts file transfer with other companies";
    check(
        alice.upload(&direct, "x.bin", b"x").await,
        Code::FailedPrecondition,
        restricted,
    );
    check(
        alice
            .client
            .rooms
            .clone()
            .send_message(pb::SendMessageRequest {
                room_id: group.clone(),
                idempotency_key: "kept".into(),
                attachment_id: kept.id.clone(),
                ..Default::default()
            })
            .await,
        Code::FailedPrecondition,
        restricted,
    );
    // a.example no longer serves alice's file to bob's node.
    assert!(bob.download(&early).await.is_err());

    // bob's files come in, in the room a.example hosts and in bob's.
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    for room in [&direct, &group] {
        let sent = bob.send_file(room, "from-bob.bin", &data).await.unwrap();
        let id = attachment(sent.event.as_ref().unwrap()).unwrap().id.clone();
        until(RELAY_DEADLINE, "alice sees bob's file", || async {
            alice
                .history(room)
                .await
                .unwrap()
                .iter()
                .any(|e| attachment(e).is_some_and(|f| f.id == id))
        })
        .await;
        let (meta, bytes) = alice.download(&id).await.unwrap();
        assert_eq!(
            (meta.name.as_str(), bytes.len()),
            ("from-bob.bin", data.len())
        );
        assert_eq!(bytes, data);
    }
    // Text still flows both ways.
    alice.send(&direct, "got it").await.unwrap();
    until_text(&bob, &direct, "got it").await;
}
