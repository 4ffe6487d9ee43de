//! The nodes, members and rooms of each variant, brought together by the
//! steps of `crate::scenario`.

use std::path::Path;

use anyhow::{anyhow, bail};
use tenant_node::client::Client;
use works_proto::client::v1 as pb;

use super::node::BenchNode;
use super::{
    BenchArgs, MEMBER_PASSWORD, SETUP_DEADLINE, SenderSide, Variant, progress, status_error,
};
use crate::scenario::{self, Side};

pub(super) struct Member {
    pub(super) id: String,
    pub(super) client: Client,
}

impl Member {
    fn side<'a>(&'a self, admin: &'a Client) -> Side<'a> {
        Side {
            admin,
            member: &self.client,
            member_id: &self.id,
        }
    }
}

/// The room `who` is in that satisfies `wanted`, once it shows in their list.
pub(super) async fn room_where(
    who: &Member,
    wanted: impl Fn(&pb::Room) -> bool,
) -> anyhow::Result<pb::Room> {
    scenario::room_where(&who.client, SETUP_DEADLINE, wanted)
        .await?
        .ok_or_else(|| anyhow!("{} never saw the room", who.id))
}

pub(super) async fn direct_room(who: &Member, other: &str) -> anyhow::Result<pb::Room> {
    room_where(who, |r| {
        r.kind == pb::RoomKind::Direct as i32 && r.members.iter().any(|m| m == other)
    })
    .await
}

pub(super) async fn open_watch(who: &Member, cursors: &[&pb::Room]) -> anyhow::Result<WatchStream> {
    Ok(who
        .client
        .rooms
        .clone()
        .watch(pb::WatchRequest {
            cursors: cursors
                .iter()
                .map(|r| pb::RoomCursor {
                    room_id: r.id.clone(),
                    seq: r.last_seq,
                })
                .collect(),
            room_id: String::new(),
        })
        .await
        .map_err(status_error)?
        .into_inner())
}

pub(super) type WatchStream = tonic::Streaming<pb::WatchEvent>;

// ---- scenarios -----------------------------------------------------------

/// Nodes, who sends where, and the recipients' open streams.
pub(super) struct Scenario {
    /// One node per company (with `--replicas`, the first is its first
    /// replica).
    pub(super) nodes: Vec<BenchNode>,
    /// The first node's further replicas (`--replicas`), serving from its
    /// database; their costs count into its figures.
    pub(super) replicas: Vec<BenchNode>,
    /// What each node is for, printed with its figures.
    pub(super) roles: Vec<String>,
    /// (client, room) pairs; message i goes out through pair i % len (in
    /// the soak, each pair sends its own stream of messages).
    pub(super) senders: Vec<(Client, String)>,
    pub(super) sender_node: usize,
    pub(super) recipient_node: usize,
    /// The member receiving in the direct pair (for the backlog restart).
    pub(super) recipient: Option<Member>,
    pub(super) watches: Vec<WatchStream>,
    /// Receipts each message needs before it leaves the window.
    pub(super) expected: u32,
    pub(super) direction: String,
}

impl Scenario {
    /// Every node process: the companies' nodes in order, then the first
    /// node's further replicas.
    pub(super) fn processes(&self) -> impl Iterator<Item = &BenchNode> {
        self.nodes.iter().chain(&self.replicas)
    }

    /// Each process's CPU ticks so far, in the order of [`Scenario::processes`].
    pub(super) fn cpu_ticks(&self) -> Vec<u64> {
        self.processes().map(BenchNode::cpu_ticks).collect()
    }

    /// Each process's memory now, in the order of [`Scenario::processes`].
    pub(super) fn rss_kib(&self) -> Vec<u64> {
        self.processes().map(BenchNode::rss_kib).collect()
    }
}

/// Two companies; alice@a.example asked bob@b.example, so a.example hosts.
/// `storage`: where a.example keeps its data instead of SQLite; with
/// `--replicas`, a.example runs that many processes on it and alice sends
/// through each in turn.
pub(super) async fn pair(
    root: &Path,
    args: &BenchArgs,
    storage: Option<&str>,
) -> anyhow::Result<Scenario> {
    progress("starting a.example and b.example");
    let a = BenchNode::start(root, "a.example", args, 0, storage).await?;
    let b = BenchNode::start(root, "b.example", args, 1, None).await?;
    let alice = a.members(&["alice".into()], false).await?.remove(0);
    let bob = b.members(&["bob".into()], false).await?.remove(0);
    let (a_admin, b_admin) = (a.admin().await?, b.admin().await?);
    scenario::introduce(&alice.side(&a_admin), &bob.side(&b_admin)).await?;
    let at_alice = direct_room(&alice, &bob.id).await?;
    let at_bob = direct_room(&bob, &alice.id).await?;
    if at_alice.id != at_bob.id || at_alice.host != a.tenant {
        bail!(
            "expected one room hosted by {}, got {} (host {}) and {} (host {})",
            a.tenant,
            at_alice.id,
            at_alice.host,
            at_bob.id,
            at_bob.host
        );
    }
    if args.variant == Variant::Soak {
        // Both ways: watches[i] is where senders[i]'s messages arrive.
        let direction = format!(
            "{} ⇄ {} in a direct room hosted by {} (both ways: {} on the hosting node, {} on a replica's)",
            alice.id, bob.id, a.tenant, alice.id, bob.id
        );
        let watches = vec![
            open_watch(&bob, &[&at_bob]).await?,
            open_watch(&alice, &[&at_alice]).await?,
        ];
        return Ok(Scenario {
            roles: vec![
                "host, sends and receives".into(),
                "replica, sends and receives".into(),
            ],
            nodes: vec![a, b],
            replicas: Vec::new(),
            senders: vec![(alice.client, at_alice.id), (bob.client, at_bob.id)],
            sender_node: 0,
            recipient_node: 1,
            recipient: None,
            watches,
            expected: 1,
            direction,
        });
    }
    let (sender, recipient, room, sender_node, recipient_node) = match args.sender {
        SenderSide::Host => (alice, bob, at_bob, 0, 1),
        SenderSide::Replica => (bob, alice, at_alice, 1, 0),
    };
    let mut direction = format!(
        "{} → {} in a direct room hosted by {} (sender on the {})",
        sender.id,
        recipient.id,
        a.tenant,
        match args.sender {
            SenderSide::Host => "hosting node",
            SenderSide::Replica => "replica's node; the host orders it first",
        }
    );
    let replicas = start_replicas(root, &a, args).await?;
    let mut senders = vec![(sender.client, room.id.clone())];
    for replica in &replicas {
        let client = replica
            .connect()
            .await?
            .login(&sender.id, MEMBER_PASSWORD)
            .await
            .map_err(status_error)?;
        senders.push((client, room.id.clone()));
    }
    if !replicas.is_empty() {
        direction.push_str(&format!(
            ", sent through {} replicas of {} in turn",
            senders.len(),
            a.tenant
        ));
    }
    let watch = open_watch(&recipient, &[&room]).await?;
    Ok(Scenario {
        roles: vec![
            if sender_node == 0 {
                "sender, host"
            } else {
                "recipient, host"
            }
            .into(),
            if sender_node == 1 {
                "sender, replica"
            } else {
                "recipient, replica"
            }
            .into(),
        ],
        nodes: vec![a, b],
        replicas,
        senders,
        sender_node,
        recipient_node,
        recipient: Some(recipient),
        watches: vec![watch],
        expected: 1,
        direction,
    })
}

/// Replicas 2 to `--replicas` of `node`, on its database.
async fn start_replicas(
    root: &Path,
    node: &BenchNode,
    args: &BenchArgs,
) -> anyhow::Result<Vec<BenchNode>> {
    let mut replicas = Vec::new();
    for number in 2..=args.replicas {
        progress(format!("starting replica {number} of {}", node.tenant));
        // After the pair's two nodes, for the choice of core.
        replicas.push(node.replica(root, number, args, number).await?);
    }
    Ok(replicas)
}

/// Three companies and one group room of `--group-members` members hosted
/// by the master's node; every other member watches. `storage`: where the
/// master's company keeps its data instead of SQLite.
pub(super) async fn group(
    root: &Path,
    args: &BenchArgs,
    storage: Option<&str>,
) -> anyhow::Result<Scenario> {
    let tenants = ["a.example", "b.example", "c.example"];
    progress(format!(
        "starting {} with a group of {}",
        tenants.join(", "),
        args.group_members
    ));
    let mut nodes = Vec::new();
    for (i, t) in tenants.iter().enumerate() {
        let storage = storage.filter(|_| i == 0);
        nodes.push(BenchNode::start(root, t, args, i, storage).await?);
    }
    let admins = [
        nodes[0].admin().await?,
        nodes[1].admin().await?,
        nodes[2].admin().await?,
    ];
    scenario::peer(&admins[0], &admins[1]).await?;
    scenario::peer(&admins[0], &admins[2]).await?;
    scenario::peer(&admins[1], &admins[2]).await?;
    let mut members: Vec<Vec<Member>> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        scenario::set_external(&admins[i], true).await?;
        let count = args.group_members / 3 + usize::from(i < args.group_members % 3);
        let names: Vec<String> = (0..count).map(|k| format!("m{k:03}")).collect();
        members.push(node.members(&names, true).await?);
    }
    let master = &members[0][0];
    progress(format!(
        "{} befriends {} members of the other companies",
        master.id,
        members[1].len() + members[2].len()
    ));
    for other in members[1].iter().chain(&members[2]) {
        scenario::befriend(&master.client, &other.client, &other.id).await?;
    }
    let invitees: Vec<String> = members
        .iter()
        .flatten()
        .filter(|m| m.id != master.id)
        .map(|m| m.id.clone())
        .collect();
    let created = master
        .client
        .rooms
        .clone()
        .create_room(pb::CreateRoomRequest {
            kind: pb::RoomKind::Group as i32,
            name: "Bench".into(),
            members: invitees,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let sender_at = match args.sender {
        SenderSide::Host => (0, 0),
        SenderSide::Replica => (1, 0),
    };
    let mut watches = Vec::new();
    let mut sender = None;
    for (n, company) in members.iter().enumerate() {
        for (k, m) in company.iter().enumerate() {
            let room = room_where(m, |r| r.id == created.id).await?;
            if (n, k) == sender_at {
                sender = Some((m.client.clone(), room.id.clone(), m.id.clone()));
            } else {
                watches.push(open_watch(m, &[&room]).await?);
            }
        }
    }
    let (client, room, sender_id) = sender.ok_or_else(|| anyhow!("no sender"))?;
    let expected = u32::try_from(watches.len())?;
    Ok(Scenario {
        roles: vec!["host".into(), "replica".into(), "replica".into()],
        direction: format!(
            "{sender_id} → {expected} members of a group room hosted by {} over 3 companies",
            nodes[0].tenant
        ),
        nodes,
        replicas: Vec::new(),
        senders: vec![(client, room)],
        sender_node: sender_at.0,
        recipient_node: 1,
        recipient: None,
        watches,
        expected,
    })
}

/// One node and `--peers` peers, a direct room with one member of each,
/// hosted by the central node; messages go round the rooms. `storage`:
/// where the central node keeps its data instead of SQLite.
pub(super) async fn peers(
    root: &Path,
    args: &BenchArgs,
    storage: Option<&str>,
) -> anyhow::Result<Scenario> {
    progress(format!("starting hub.example and {} peers", args.peers));
    let hub = BenchNode::start(root, "hub.example", args, 0, storage).await?;
    let hub_admin = hub.admin().await?;
    scenario::set_external(&hub_admin, true).await?;
    let alice = hub.members(&["alice".into()], true).await?.remove(0);
    let mut nodes = vec![hub];
    let mut roles = vec!["hub, host of every room".to_string()];
    let mut pairs = Vec::new();
    for i in 1..=args.peers {
        let node = BenchNode::start(root, &format!("peer{i:02}.example"), args, i, None).await?;
        let member = node.members(&["bob".into()], false).await?.remove(0);
        let admin = node.admin().await?;
        scenario::introduce(&alice.side(&hub_admin), &member.side(&admin)).await?;
        let at_alice = direct_room(&alice, &member.id).await?;
        let at_member = direct_room(&member, &alice.id).await?;
        pairs.push((member, at_alice, at_member));
        nodes.push(node);
        roles.push("peer, replica".into());
    }
    let mut senders = Vec::new();
    let mut watches = Vec::new();
    let direction = match args.sender {
        SenderSide::Host => {
            for (member, at_alice, at_member) in &pairs {
                senders.push((alice.client.clone(), at_alice.id.clone()));
                watches.push(open_watch(member, &[at_member]).await?);
            }
            format!(
                "{} → one member on each of {} peers, round robin (rooms hosted by {})",
                alice.id, args.peers, nodes[0].tenant
            )
        }
        SenderSide::Replica => {
            let rooms: Vec<&pb::Room> = pairs.iter().map(|(_, r, _)| r).collect();
            watches.push(open_watch(&alice, &rooms).await?);
            for (member, _, at_member) in &pairs {
                senders.push((member.client.clone(), at_member.id.clone()));
            }
            format!(
                "one member on each of {} peers → {}, round robin (rooms hosted by {})",
                args.peers, alice.id, nodes[0].tenant
            )
        }
    };
    let (sender_node, recipient_node) = match args.sender {
        SenderSide::Host => (0, 1),
        SenderSide::Replica => (1, 0),
    };
    Ok(Scenario {
        nodes,
        replicas: Vec::new(),
        roles,
        senders,
        sender_node,
        recipient_node,
        recipient: None,
        watches,
        expected: 1,
        direction,
    })
}
