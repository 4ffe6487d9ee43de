//! `Rooms.SendStream`: many sends in flight on one stream, each answered in
//! request order as `SendMessage` answers it, refusals included.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use works_proto::client::v1 as pb;

use crate::support::{Member, TestNode, history_texts, text};

/// An open `SendStream`: requests go in, answers come back in order.
struct Sender {
    requests: mpsc::Sender<pb::SendMessageRequest>,
    answers: tonic::Streaming<pb::SendMessageResponse>,
}

async fn open(member: &Member) -> Result<Sender, tonic::Status> {
    let (requests, queued) = mpsc::channel(1024);
    let answers = member
        .client
        .rooms
        .clone()
        .send_stream(ReceiverStream::new(queued))
        .await?
        .into_inner();
    Ok(Sender { requests, answers })
}

impl Sender {
    async fn send(&self, room: &str, key: &str, text: &str) {
        self.requests
            .send(pb::SendMessageRequest {
                room_id: room.into(),
                idempotency_key: key.into(),
                text: text.into(),
                ..Default::default()
            })
            .await
            .expect("stream open");
    }

    async fn answer(&mut self) -> pb::SendMessageResponse {
        self.answers
            .message()
            .await
            .expect("an answer")
            .expect("the stream still open")
    }
}

/// The refusal of an answer: its code and message.
fn refusal(answer: &pb::SendMessageResponse) -> Option<(Code, &str)> {
    answer
        .refused
        .as_ref()
        .map(|r| (Code::from(r.code), r.message.as_str()))
}

#[tokio::test]
async fn two_hundred_sends_in_flight_are_answered_in_order_and_stored_once_each() {
    let node = TestNode::start("acme.example").await;
    let alice = node.member("alice").await;
    let bob = node.member("bob").await;
    let room = alice.direct_room(&bob.id).await;
    let mut stream = open(&alice).await.unwrap();
    // All 200 are sent before the first answer is read.
    for i in 0..200 {
        stream
            .send(&room.id, &format!("k{i}"), &format!("m{i}"))
            .await;
    }
    let mut last_seq = 0;
    for i in 0..200 {
        let answer = stream.answer().await;
        assert_eq!(refusal(&answer), None, "message {i}");
        let event = answer.event.as_ref().expect("event");
        assert_eq!(text(event), Some(format!("m{i}").as_str()));
        assert!(event.seq > last_seq, "message {i} stored in request order");
        last_seq = event.seq;
        assert!(!answer.duplicate);
        assert_eq!(
            answer.delivery.as_ref().map(|d| d.state),
            Some(pb::DeliveryState::Stored as i32)
        );
    }
    assert_eq!(
        history_texts(&bob, &room.id).await,
        (0..200).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_refused_send_is_answered_with_its_error_and_the_rest_go_on() {
    let node = TestNode::start("acme.example").await;
    let alice = node.member("alice").await;
    let bob = node.member("bob").await;
    let carol = node.member("carol").await;
    let dave = node.member("dave").await;
    let room = alice.direct_room(&bob.id).await;
    let elsewhere = carol.direct_room(&dave.id).await;
    let mut stream = open(&alice).await.unwrap();
    let too_long = "x".repeat(16 * 1024 + 1);
    for i in 0..30 {
        match i {
            10 => stream.send(&elsewhere.id, "k10", "not hers").await,
            20 => stream.send(&room.id, "k20", &too_long).await,
            25 => stream.send(&room.id, "k25", " ").await,
            _ => {
                stream
                    .send(&room.id, &format!("k{i}"), &format!("m{i}"))
                    .await
            }
        }
    }
    for i in 0..30 {
        let answer = stream.answer().await;
        match i {
            10 => assert_eq!(
                refusal(&answer),
                Some((
                    Code::PermissionDenied,
                    format!(
                        "alice@acme.example is not a member of room {}",
                        elsewhere.id
                    )
                    .as_str()
                ))
            ),
            20 => assert_eq!(
                refusal(&answer),
                Some((
                    Code::ResourceExhausted,
                    "message is 16385 bytes; the limit is 16384"
                ))
            ),
            25 => assert_eq!(
                refusal(&answer),
                Some((Code::InvalidArgument, "invalid text: message is empty"))
            ),
            _ => {
                assert_eq!(refusal(&answer), None, "message {i}");
                assert_eq!(
                    answer.event.as_ref().and_then(text),
                    Some(format!("m{i}").as_str())
                );
            }
        }
        if answer.refused.is_some() {
            assert!(answer.event.is_none() && answer.delivery.is_none());
        }
    }
    let expected: Vec<String> = (0..30)
        .filter(|i| ![10, 20, 25].contains(i))
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(history_texts(&bob, &room.id).await, expected);
    assert!(history_texts(&carol, &elsewhere.id).await.is_empty());
}

#[tokio::test]
async fn a_resend_on_a_new_stream_gets_the_stored_messages_back() {
    let node = TestNode::start("acme.example").await;
    let alice = node.member("alice").await;
    let bob = node.member("bob").await;
    let room = alice.direct_room(&bob.id).await;
    let mut first = open(&alice).await.unwrap();
    for i in 0..20 {
        first
            .send(&room.id, &format!("k{i}"), &format!("m{i}"))
            .await;
    }
    let mut answered = Vec::new();
    for _ in 0..10 {
        answered.push(first.answer().await.event.expect("event"));
    }
    // The connection resets with sends still unanswered.
    drop(first);
    let mut second = open(&alice).await.unwrap();
    for i in 0..20 {
        second
            .send(&room.id, &format!("k{i}"), &format!("m{i}"))
            .await;
    }
    for i in 0..20 {
        let answer = second.answer().await;
        assert_eq!(refusal(&answer), None);
        let event = answer.event.expect("event");
        assert_eq!(text(&event), Some(format!("m{i}").as_str()));
        if let Some(earlier) = answered.get(i) {
            assert!(answer.duplicate, "message {i} was stored before");
            assert_eq!(
                (&event.event_id, event.seq),
                (&earlier.event_id, earlier.seq)
            );
        }
    }
    assert_eq!(
        history_texts(&bob, &room.id).await,
        (0..20).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_stream_needs_a_token_and_ends_when_it_is_revoked() {
    let node = TestNode::start("acme.example").await;
    let anonymous = Member {
        id: String::new(),
        client: node.anonymous().await,
    };
    let status = open(&anonymous).await.err().expect("refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    let alice = node.member("alice").await;
    let bob = node.member("bob").await;
    let room = alice.direct_room(&bob.id).await;
    let mut stream = open(&alice).await.unwrap();
    stream.send(&room.id, "k0", "m0").await;
    assert_eq!(refusal(&stream.answer().await), None);
    alice
        .client
        .auth
        .clone()
        .logout(pb::LogoutRequest {})
        .await
        .unwrap();
    stream.send(&room.id, "k1", "m1").await;
    let status = stream.answers.message().await.expect_err("ended");
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "invalid or revoked token")
    );
    assert_eq!(history_texts(&bob, &room.id).await, vec!["m0".to_string()]);
}
