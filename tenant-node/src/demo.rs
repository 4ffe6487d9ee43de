//! `tenant-node demo`: a node on a temporary data directory and two members
//! talking through the client API, printing what each of them sees. It exits
//! by itself; nothing is left behind.

use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio_stream::StreamExt;
use works_proto::client::v1 as pb;

use crate::cli::status_error;
use crate::client::Client;
use crate::config::Config;
use crate::ids::TenantId;
use crate::init::{InitOptions, init};
use crate::node::Node;

const TENANT: &str = "acme.example";
const PASSWORD: &str = "correct horse battery";

fn say(who: &str, line: impl AsRef<str>) {
    println!("[{who:<5}] {}", line.as_ref());
}

pub async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let data = dir.path().join("acme");
    println!("== one company, one node: {TENANT} on a temporary data directory");
    let done = init(InitOptions {
        data_dir: data.clone(),
        tenant: TENANT.into(),
        company: "Acme Corp".into(),
        api: None,
        bridge: None,
        admin_password: None,
        database_url: None,
    })
    .await?;
    let mut config = Config::new(&TenantId::parse(TENANT)?);
    config.api.listen = ([127, 0, 0, 1], 0).into();
    let node = Node::open(config, &data).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(node.serve(listener, async {
        let _ = stopped.await;
    }));
    println!("   client API on {addr}\n");

    let story = play(
        &format!("http://{addr}"),
        &done.admin.to_string(),
        &done.admin_password,
    )
    .await;
    let _ = stop.send(());
    server.await.context("node task")??;
    story?;
    println!("\n== done: the node stopped and its temporary directory is removed");
    Ok(())
}

async fn play(url: &str, admin_id: &str, admin_password: &str) -> anyhow::Result<()> {
    let anonymous = Client::connect(url, None).await?;
    let admin = anonymous
        .login(admin_id, admin_password)
        .await
        .map_err(status_error)?;
    for (name, display) in [("alice", "Alice Adams"), ("bob", "Bob Brown")] {
        let member = admin
            .admin
            .clone()
            .add_member(pb::AddMemberRequest {
                name: name.into(),
                display_name: display.into(),
                password: PASSWORD.into(),
                role: pb::Role::Member as i32,
            })
            .await
            .map_err(status_error)?
            .into_inner();
        say(
            "admin",
            format!("added {} ({})", member.id, member.display_name),
        );
    }
    let alice = anonymous
        .login("alice@acme.example", PASSWORD)
        .await
        .map_err(status_error)?;
    let bob = anonymous
        .login("bob@acme.example", PASSWORD)
        .await
        .map_err(status_error)?;
    say("alice", "logged in");
    say("bob", "logged in");

    // Bob keeps a live stream open while Alice writes.
    let mut bob_stream = bob
        .rooms
        .clone()
        .watch(pb::WatchRequest::default())
        .await
        .map_err(status_error)?
        .into_inner();

    let room = alice
        .rooms
        .clone()
        .create_room(pb::CreateRoomRequest {
            kind: pb::RoomKind::Direct as i32,
            name: String::new(),
            members: vec!["bob@acme.example".into()],
        })
        .await
        .map_err(status_error)?
        .into_inner();
    say("alice", format!("opened a 1:1 room with bob: {}", room.id));

    let send = |client: &Client, key: &str, text: &str| {
        let mut rooms = client.rooms.clone();
        let request = pb::SendMessageRequest {
            room_id: room.id.clone(),
            idempotency_key: key.into(),
            text: text.into(),
        };
        async move { rooms.send_message(request).await.map_err(status_error) }
    };
    send(&alice, "a-1", "Hi Bob! Is the Q3 report ready?").await?;
    say("alice", "sent: Hi Bob! Is the Q3 report ready?");
    // A retry with the same key (say, after a dropped connection) stores nothing new.
    let retry = send(&alice, "a-1", "Hi Bob! Is the Q3 report ready?")
        .await?
        .into_inner();
    say(
        "alice",
        format!("retried the same send: duplicate={}", retry.duplicate),
    );

    for _ in 0..2 {
        let event = next_event(&mut bob_stream).await?;
        say("bob", format!("sees {}", crate::cli::event_line(&event)));
    }
    let rooms = bob
        .rooms
        .clone()
        .list_rooms(pb::ListRoomsRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    for r in &rooms.rooms {
        say(
            "bob",
            format!("room list: 1:1 with alice, {} unread", r.unread),
        );
    }
    send(
        &bob,
        "b-1",
        "Yes, it's in the shared folder. Numbers look good.",
    )
    .await?;
    say("bob", "replied");
    bob.rooms
        .clone()
        .mark_read(pb::MarkReadRequest {
            room_id: room.id.clone(),
            seq: u64::MAX,
        })
        .await
        .map_err(status_error)?;
    send(&alice, "a-2", "Great, thanks!").await?;

    let history = alice
        .rooms
        .clone()
        .history(pb::HistoryRequest {
            room_id: room.id.clone(),
            ..Default::default()
        })
        .await
        .map_err(status_error)?
        .into_inner();
    say("alice", "history of the room:");
    for event in &history.events {
        say("alice", format!("  {}", crate::cli::event_line(event)));
    }
    for _ in 0..2 {
        let event = next_event(&mut bob_stream).await?;
        say("bob", format!("sees {}", crate::cli::event_line(&event)));
    }
    let rooms = bob
        .rooms
        .clone()
        .list_rooms(pb::ListRoomsRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    for r in &rooms.rooms {
        say(
            "bob",
            format!("room list: 1:1 with alice, {} unread", r.unread),
        );
    }
    Ok(())
}

async fn next_event(
    stream: &mut tonic::Streaming<pb::WatchEvent>,
) -> anyhow::Result<pb::RoomEvent> {
    let item = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .context("no event within 10 s")?
        .ok_or_else(|| anyhow!("the stream ended"))?
        .map_err(status_error)?;
    match item.kind {
        Some(pb::watch_event::Kind::RoomEvent(event)) => Ok(event),
        None => Err(anyhow!("an empty stream item")),
    }
}
