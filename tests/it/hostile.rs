//! A hostile peer: a company whose node holds its own genuine certificate
//! and makes crafted bridge calls. Each test is the attack as that node
//! would run it, and asserts what the attacked company's members and admin
//! see. a.example is attacked; b.example (and c.example) attack or stand by.

use std::time::Duration;

use crate::support::wire::{self, Payload};
use crate::support::{
    self, RELAY_DEADLINE, TestNode, allow, bridge_client, check, envelope, history_texts, pair,
    peer_with, peers, refused, relay_control, relay_once, stored, texts, until, until_texts,
};
use tonic::Code;
use works_certs::{TenantCa, Validity};
use works_proto::client::v1 as pb;
use works_proto::federation::v1 as fed;

fn text_from(sender: &str, text: &str) -> Payload {
    wire::text(sender, text)
}

fn tenant(s: &str) -> works_bridge::TenantId {
    works_bridge::TenantId::parse(s).unwrap()
}

fn member(s: &str) -> works_bridge::ids::MemberId {
    works_bridge::ids::MemberId::parse(s).unwrap()
}

fn new_id() -> String {
    ulid::Ulid::new().to_string()
}

async fn relay_one(client: &mut works_bridge::PeerClient, envelope: fed::Envelope) -> fed::Ack {
    let mut acks = relay_once(client, vec![envelope]).await;
    assert_eq!(acks.len(), 1, "{acks:?}");
    acks.remove(0)
}

/// The room's id once `who` sees it in their list.
async fn until_listed(who: &support::Member, room: &str) {
    until(
        RELAY_DEADLINE,
        &format!("{} sees room {room}", who.id),
        || async { who.rooms().await.iter().any(|r| r.id == room) },
    )
    .await;
}

async fn last_seq(who: &support::Member, room: &str) -> u64 {
    who.history(room).await.unwrap().last().map_or(0, |e| e.seq)
}

/// A file's bytes as bob@b.example asks a.example's node for them.
async fn fetch(client: &mut works_bridge::PeerClient, id: &str) -> Result<Vec<u8>, String> {
    client
        .fetch_attachment(&member("bob@b.example"), id, 1 << 20)
        .await
        .map_err(|e| e.to_string())
}

async fn set_restrict_files(admin: &tenant_node::client::Client, on: bool) {
    admin
        .external
        .clone()
        .set_external_settings(pb::SetExternalSettingsRequest {
            restrict_files: Some(on),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// bob's group "Launch" with alice, hosted at b.example, once alice's node
/// holds it with bob's "hello": the room, its last seq at alice's node, and
/// a bridge client as b.example to a.example.
async fn launch_hosted_by_b(
    a: &TestNode,
    b: &TestNode,
    alice: &support::Member,
    bob: &support::Member,
) -> (String, u64, works_bridge::PeerClient) {
    let room = bob.group_room("Launch", &[&alice.id]).await.id;
    until_listed(alice, &room).await;
    bob.send(&room, "hello").await.unwrap();
    until_texts(alice, &room, 1).await;
    let last = last_seq(alice, &room).await;
    let from_b = bridge_client(a, &b.tls_files().load_node().unwrap()).await;
    (room, last, from_b)
}

// 1. A host posting as the receiver's own members.
#[tokio::test]
async fn a_host_cannot_post_in_the_name_of_our_members() {
    let (a, b, alice, bob) = pair().await;
    let carol = a.member("carol").await;
    let (room, last, mut from_b) = launch_hosted_by_b(&a, &b, &alice, &bob).await;
    let acks = relay_once(
        &mut from_b,
        vec![
            // alice is in the room; carol is not.
            envelope(
                &new_id(),
                "b.example",
                &room,
                last + 1,
                text_from(&alice.id, "forged as alice"),
            ),
            envelope(
                &new_id(),
                "b.example",
                &room,
                last + 2,
                text_from(&carol.id, "forged as carol"),
            ),
        ],
    )
    .await;
    assert_eq!(acks.len(), 2, "{acks:?}");
    refused(&acks[0], "a.example did not propose event");
    refused(&acks[1], "a.example did not propose event");
    assert_eq!(history_texts(&alice, &room).await, vec!["hello"]);
    assert!(
        carol.rooms().await.is_empty(),
        "carol is in no room: {:?}",
        carol.rooms().await
    );

    // What alice really sends still comes back from the host under her name.
    alice.send(&room, "really alice").await.unwrap();
    until(RELAY_DEADLINE, "bob sees alice's message", || async {
        history_texts(&bob, &room)
            .await
            .contains(&"really alice".to_string())
    })
    .await;
}

// 2. Files served after our admin cut access.
#[tokio::test]
async fn our_files_are_not_served_once_our_admin_cuts_access() {
    let (a, b, alice, bob) = pair().await;
    let room = alice.group_room("Files", &[&bob.id]).await.id;
    until_listed(&bob, &room).await;
    let data = b"quarterly figures".repeat(100);
    let sent = alice.send_file(&room, "figures.txt", &data).await.unwrap();
    let id = support::attachment(sent.event.as_ref().unwrap())
        .unwrap()
        .id
        .clone();
    let admin = a.admin().await;
    let mut from_b = bridge_client(&a, &b.tls_files().load_node().unwrap()).await;
    assert_eq!(
        fetch(&mut from_b, &id).await.unwrap(),
        data,
        "served while allowed"
    );

    // A member of b.example not in the room, and a requester of another company.
    assert!(
        from_b
            .fetch_attachment(&member("mallory@b.example"), &id, 1 << 20)
            .await
            .is_err()
    );
    let other = from_b
        .fetch_attachment(&member("zed@c.example"), &id, 1 << 20)
        .await
        .unwrap_err()
        .to_string();
    assert!(other.contains("requester names c.example"), "{other}");

    set_restrict_files(&admin, true).await;
    let e = fetch(&mut from_b, &id).await.unwrap_err().to_string();
    assert!(e.contains("not found"), "restricted: {e}");
    set_restrict_files(&admin, false).await;
    assert_eq!(fetch(&mut from_b, &id).await.unwrap(), data);

    allow(&admin, true, &alice.id, false).await;
    let e = fetch(&mut from_b, &id).await.unwrap_err().to_string();
    assert!(e.contains("not found"), "alice disconnected: {e}");
    allow(&admin, true, &alice.id, true).await;
    assert_eq!(fetch(&mut from_b, &id).await.unwrap(), data);

    allow(&admin, false, &alice.id, true).await;
    let e = fetch(&mut from_b, &id).await.unwrap_err().to_string();
    assert!(e.contains("not found"), "external messaging off: {e}");
}

// 3a. A host's invitation, which may open a room at any seq, at a seq
// beyond any room's order (stored as a signed 64-bit number, it would wrap).
#[tokio::test]
async fn a_seq_beyond_any_rooms_order_is_refused() {
    let (a, b, alice, bob) = pair().await;
    let mut from_b = bridge_client(&a, &b.tls_files().load_node().unwrap()).await;
    let members = [bob.id.as_str(), alice.id.as_str()];
    let room = wire::group("Far", &bob.id, &members);
    let ack = relay_one(
        &mut from_b,
        envelope(
            &new_id(),
            "b.example",
            &new_id(),
            1 << 63,
            wire::joined(&bob.id, &[&alice.id], Some(room)),
        ),
    )
    .await;
    refused(&ack, "beyond any room's order");
    assert!(alice.rooms().await.iter().all(|r| r.name != "Far"));
}

// 3. Rooms opened on our node holding members we never connected.
#[tokio::test]
async fn a_peer_cannot_open_a_room_holding_members_we_never_connected() {
    let (a, b, alice, bob) = pair().await;
    let carol = a.member("carol").await;
    let mut from_b = bridge_client(&a, &b.tls_files().load_node().unwrap()).await;
    let created = |members: &[&str]| {
        let room = wire::group("Trap", &bob.id, members);
        wire::created_group(&bob.id, "Trap", members, Some(room))
    };
    let trap = new_id();
    let acks = relay_once(
        &mut from_b,
        vec![
            envelope(
                &new_id(),
                "b.example",
                &trap,
                1,
                created(&[&bob.id, &carol.id]),
            ),
            envelope(
                &new_id(),
                "b.example",
                &trap,
                2,
                text_from(&carol.id, "forged as carol"),
            ),
            envelope(
                &new_id(),
                "b.example",
                &trap,
                2,
                text_from(&bob.id, "hi carol"),
            ),
        ],
    )
    .await;
    assert_eq!(acks.len(), 3, "{acks:?}");
    refused(&acks[0], "user carol@a.example not found");
    refused(&acks[1], "room");
    refused(&acks[2], "room");
    assert!(carol.rooms().await.is_empty(), "{:?}", carol.rooms().await);

    // A room of bob and a colleague of alice's would stop her deleting bob.
    alice
        .client
        .contacts
        .clone()
        .delete_contact(pb::ContactRef {
            user_id: bob.id.clone(),
        })
        .await
        .expect("alice deletes bob: no room of his holds a colleague of hers");

    // Connected, carol may be brought in; with external messaging off, not.
    let admin = a.admin().await;
    allow(&admin, true, &carol.id, true).await;
    let welcome = new_id();
    let opening = envelope(
        &new_id(),
        "b.example",
        &welcome,
        1,
        created(&[&bob.id, &carol.id]),
    );
    stored(&relay_one(&mut from_b, opening).await);
    until_listed(&carol, &welcome).await;
    allow(&admin, false, &carol.id, true).await;
    let closed = new_id();
    let opening = envelope(
        &new_id(),
        "b.example",
        &closed,
        1,
        created(&[&bob.id, &carol.id]),
    );
    refused(
        &relay_one(&mut from_b, opening).await,
        "user carol@a.example not found",
    );
    assert!(carol.rooms().await.iter().all(|r| r.id != closed));
}

// 3b. A snapshot cannot add anyone: a rename whose snapshot lists carol.
#[tokio::test]
async fn a_hosts_snapshot_adds_nobody_and_its_master_alone_invites() {
    let (a, b, alice, bob) = pair().await;
    let carol = a.member("carol").await;
    allow(&a.admin().await, true, &carol.id, true).await;
    let room = bob.group_room("Plain", &[&alice.id]).await.id;
    until_listed(&alice, &room).await;
    let last = last_seq(&alice, &room).await;
    let mut from_b = bridge_client(&a, &b.tls_files().load_node().unwrap()).await;
    let acks = relay_once(
        &mut from_b,
        vec![
            envelope(
                &new_id(),
                "b.example",
                &room,
                last + 1,
                wire::renamed(
                    &bob.id,
                    "Renamed",
                    Some(wire::group(
                        "Renamed",
                        &bob.id,
                        &[&bob.id, &alice.id, &carol.id],
                    )),
                ),
            ),
            // Only the group master invites; alice is not the master.
            envelope(
                &new_id(),
                "b.example",
                &room,
                last + 2,
                wire::joined(
                    "dave@b.example",
                    &[&carol.id],
                    Some(wire::group(
                        "Renamed",
                        &bob.id,
                        &[&bob.id, &alice.id, &carol.id, "dave@b.example"],
                    )),
                ),
            ),
        ],
    )
    .await;
    stored(&acks[0]);
    refused(&acks[1], "not a member");
    let seen = alice.client.rooms.clone();
    let got = seen
        .clone()
        .get_room(pb::GetRoomRequest {
            room_id: room.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.name, "Renamed");
    let mut members = got.members.clone();
    members.sort();
    assert_eq!(members, vec![alice.id.clone(), bob.id.clone()]);
    assert!(carol.rooms().await.is_empty());
}

// 4. A CA announcement that names another tenant's CA.
#[tokio::test]
async fn ca_announcements_hold_only_the_announcers_own_chain() {
    let a = TestNode::start("a.example").await;
    let b = TestNode::start("b.example").await;
    let c = TestNode::start("c.example").await;
    // b.example, the attacker, and c.example both peer with a.example.
    peer_with(&b, &a).await;
    peer_with(&c, &a).await;
    let a_admin = a.admin().await;
    let b_ca = b.tls_files().load_ca().unwrap();
    let c_ca = c.tls_files().load_ca().unwrap();

    let mut from_b = bridge_client(&a, &b.tls_files().load_node().unwrap()).await;
    let err = relay_control(
        &mut from_b,
        "b.example",
        wire::cas(vec![b_ca.der().to_vec(), c_ca.der().to_vec()]),
    )
    .await
    .refused;
    assert!(
        err.contains("is not b.example's: it neither issues the caller's certificate"),
        "{err}"
    );
    // A CA b.example made in c.example's name, beside its own: refused too.
    let spare = TenantCa::generate(
        &tenant("c.example"),
        Validity::from_now(Duration::from_secs(3600)),
    )
    .unwrap();
    let err = relay_control(
        &mut from_b,
        "b.example",
        wire::cas(vec![b_ca.der().to_vec(), spare.der().to_vec()]),
    )
    .await
    .refused;
    assert!(
        err.contains("is not b.example's: it neither issues the caller's certificate"),
        "{err}"
    );
    let b_row = peers(&a_admin)
        .await
        .into_iter()
        .find(|p| p.tenant == "b.example")
        .unwrap();
    assert_eq!(
        b_row.ca_fingerprints,
        vec![works_certs::fingerprint(b_ca.der())]
    );

    // c.example's genuine certificate is still c.example's ...
    let mut from_c = bridge_client(&a, &c.tls_files().load_node().unwrap()).await;
    from_c.ping(&tenant("c.example")).await.expect("c.example");
    // ... and one from c.example's CA naming b.example is no one's.
    let forged = c_ca
        .issue_node(
            &tenant("b.example"),
            &[],
            Validity::from_now(Duration::from_secs(3600)),
        )
        .unwrap();
    let mut as_b = bridge_client(&a, &forged).await;
    check(
        as_b.raw()
            .ping(fed::PingRequest {
                from_tenant: "b.example".into(),
                sent_at_ms: 0,
            })
            .await,
        Code::PermissionDenied,
        "chains to the CA pinned for c.example but names b.example",
    );
}

// 5. Relayed events held to the limits our own clients are held to.
#[tokio::test]
async fn relayed_events_are_held_to_the_limits_our_members_are() {
    let (a, b, alice, bob) = pair().await;
    let mut from_b = bridge_client(&a, &b.tls_files().load_node().unwrap()).await;

    // As host: what bob's node proposes to a room alice's node hosts.
    let hosted = alice.group_room("Hosted", &[&bob.id]).await.id;
    until_listed(&bob, &hosted).await;
    let propose = |payload: Payload| envelope(&new_id(), "a.example", &hosted, 0, payload);
    let future = fed::Envelope {
        at_ms: 253_402_300_799_000,
        ..propose(wire::text(&bob.id, "from the year 9999"))
    };
    let acks = relay_once(
        &mut from_b,
        vec![
            propose(wire::text(&bob.id, &"x".repeat(100 * 1024))),
            propose(wire::text(&bob.id, "  ")),
            propose(wire::sticker(&bob.id, "../../<script>")),
            propose(wire::renamed(&bob.id, &"n".repeat(10_000), None)),
            future,
            propose(wire::text(&bob.id, "fine")),
        ],
    )
    .await;
    assert_eq!(acks.len(), 6, "{acks:?}");
    refused(&acks[0], "the limit is 16384");
    refused(&acks[1], "message is empty");
    refused(&acks[2], "sticker");
    refused(&acks[3], "at most 100 characters");
    stored(&acks[4]);
    stored(&acks[5]);
    let history = alice.history(&hosted).await.unwrap();
    assert_eq!(texts(&history), vec!["from the year 9999", "fine"]);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let stamped = history
        .iter()
        .find(|e| support::text(e) == Some("from the year 9999"))
        .unwrap()
        .at_ms;
    assert!(
        stamped <= now_ms + 60_000,
        "stamped with the host's clock: {stamped}"
    );

    // As replica: what bob's node sequences in a room it hosts.
    let replica = bob.group_room("Replica", &[&alice.id]).await.id;
    until_listed(&alice, &replica).await;
    let last = last_seq(&alice, &replica).await;
    let at = |seq: u64, payload: Payload| envelope(&new_id(), "b.example", &replica, seq, payload);
    let huge_name = "N".repeat(200_000);
    let acks = relay_once(
        &mut from_b,
        vec![
            // Refused before it is read: larger than any event this node
            // takes. Nothing is stored, so the next seq is still free.
            at(last + 1, text_from(&bob.id, &"y".repeat(6 << 20))),
            // Withheld: stored to keep the room's order, never shown.
            at(
                last + 1,
                wire::renamed(
                    &bob.id,
                    &huge_name,
                    Some(wire::group(&huge_name, &bob.id, &[&bob.id, &alice.id])),
                ),
            ),
            at(last + 2, text_from(&bob.id, &"z".repeat(20 * 1024))),
            at(last + 3, wire::renamed(&bob.id, "bell\u{7}", None)),
            at(last + 4, text_from(&bob.id, "within the limits")),
        ],
    )
    .await;
    assert_eq!(acks.len(), 5, "{acks:?}");
    refused(&acks[0], "this node takes at most");
    refused(&acks[1], "must be at most 100 characters");
    refused(&acks[2], "the limit is 16384");
    refused(&acks[3], "control characters");
    stored(&acks[4]);
    let history = alice.history(&replica).await.expect("history still loads");
    assert_eq!(texts(&history), vec!["within the limits"]);
    let got = alice
        .client
        .rooms
        .clone()
        .get_room(pb::GetRoomRequest {
            room_id: replica.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.name, "Replica");
    a.admin()
        .await
        .audit
        .clone()
        .search_audit(pb::AuditSearchRequest {
            peer_tenant: "b.example".into(),
            ..Default::default()
        })
        .await
        .expect("the admin's audit search still answers");
}

// 6. A batch of another company's messages, with a change of the room
// among them: each envelope is judged on its own, in order, and only what
// passes is shown.
#[tokio::test]
async fn each_message_of_a_relayed_batch_is_judged_on_its_own() {
    let (a, b, alice, bob) = pair().await;
    let dave = b.member("dave").await;
    let (room, last, mut from_b) = launch_hosted_by_b(&a, &b, &alice, &bob).await;
    let at = |id: &str, seq: u64, payload: Payload| {
        envelope(id, "b.example", &room, last + seq, payload)
    };
    let (one, six, seven) = (new_id(), new_id(), new_id());
    let acks = relay_once(
        &mut from_b,
        vec![
            at(&one, 1, text_from(&bob.id, "one")),
            // The same event again, in the same batch.
            at(&one, 1, text_from(&bob.id, "one")),
            // A change of the room between messages.
            at(&new_id(), 2, wire::renamed(&bob.id, "Launch 2", None)),
            at(&new_id(), 3, text_from(&dave.id, "not in the room")),
            at(&new_id(), 4, text_from(&bob.id, &"x".repeat(16 * 1024 + 1))),
            at(&new_id(), 5, text_from(&bob.id, "four")),
            // A seq the batch took already.
            at(&new_id(), 3, text_from(&bob.id, "again at 3")),
            // A gap, and what comes after it.
            at(&seven, 7, text_from(&bob.id, "seven")),
            at(&six, 6, text_from(&bob.id, "six")),
        ],
    )
    .await;
    assert_eq!(acks.len(), 9, "{acks:?}");
    stored(&acks[0]);
    stored(&acks[1]);
    stored(&acks[2]);
    refused(
        &acks[3],
        &format!("{} is not a member of room {room}", dave.id),
    );
    refused(&acks[4], "the limit is 16384");
    stored(&acks[5]);
    refused(&acks[6], "already has seq");
    assert!(
        acks[7].retry && acks[7].refused.contains("waiting for"),
        "{:?}",
        acks[7]
    );
    assert!(acks[8].retry, "waits behind the gap: {:?}", acks[8]);
    assert_eq!(
        history_texts(&alice, &room).await,
        vec!["hello", "one", "four"]
    );
    let listed = alice.rooms().await;
    let listed = listed.iter().find(|r| r.id == room).expect("alice's room");
    assert_eq!(listed.name, "Launch 2");

    // The rest comes in order: nothing was stored of the two that waited.
    let acks = relay_once(
        &mut from_b,
        vec![
            at(&six, 6, text_from(&bob.id, "six")),
            at(&seven, 7, text_from(&bob.id, "seven")),
        ],
    )
    .await;
    stored(&acks[0]);
    stored(&acks[1]);
    assert_eq!(
        history_texts(&alice, &room).await,
        vec!["hello", "one", "four", "six", "seven"]
    );
    let seqs: Vec<u64> = alice
        .history(&room)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs.last(), Some(&(last + 7)));
}
