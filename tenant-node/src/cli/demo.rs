//! `tenant-node demo`: two nodes on a temporary data directory and their
//! members talking through the client API, printing what each of them sees.
//! It exits by itself; nothing is left behind. With `--web` both nodes stay
//! up afterwards, with their web ports, until Ctrl-C, and the sign-in
//! details of every member the story made are printed.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio_stream::StreamExt;
use works_proto::client::v1 as pb;

use crate::cli::status_error;
use crate::client::Client;
use crate::config::{Config, LineConfig, WebListen};
use crate::init::{InitOptions, init};
use crate::node::{Listeners, Node};
use works_line_standin::{Config as LineStandinConfig, LinePlatform};

const TENANT: &str = "acme.example";
const PASSWORD: &str = "correct horse battery";

fn say(who: &str, line: impl AsRef<str>) {
    println!("[{who:<5}] {}", line.as_ref());
}

/// A node of the demo, running in this process on loopback ports.
struct DemoNode {
    tenant: &'static str,
    url: String,
    /// The browser app's address, when the demo serves it.
    web: Option<String>,
    admin_id: String,
    admin_password: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start_node(
    root: &Path,
    tenant: &'static str,
    company: &str,
    web: bool,
    line: Option<&LinePlatform>,
) -> anyhow::Result<DemoNode> {
    let data = root.join(tenant);
    let done = init(InitOptions {
        data_dir: data.clone(),
        tenant: tenant.into(),
        company: company.into(),
        api: Some(([127, 0, 0, 1], 0).into()),
        bridge: Some(([127, 0, 0, 1], 0).into()),
        web: Some(WebListen(web.then(|| ([127, 0, 0, 1], 0).into()))),
        // Two nodes on one machine: no ops port for either.
        ops: Some(WebListen(None)),
        admin_password: None,
        database_url: None,
    })
    .await?;
    let mut config = Config::load(&data)?;
    if let Some(line) = line {
        config.line = Some(demo_line_channel(&data, line)?);
        if !web {
            // No web port: LINE's webhook gets a port of its own.
            if let Some(l) = config.line.as_mut() {
                l.webhook_listen = Some(([127, 0, 0, 1], 0).into());
            }
        }
    }
    let listeners = Listeners::bind(&config).await?;
    if let (Some(line), Some(listener)) = (line, listeners.web.as_ref().or(listeners.line.as_ref()))
    {
        let addr = listener.local_addr()?;
        line.set_webhook(&format!("http://{addr}/line/webhook"));
        config.web.public_url = listeners.web.as_ref().map(|_| format!("http://{addr}"));
    }

    let api = listeners.api.local_addr()?;
    let bridge = listeners.bridge.local_addr()?;
    let web = listeners
        .web
        .as_ref()
        .map(|w| w.local_addr())
        .transpose()?
        .map(|addr| format!("http://{addr}/"));
    let node = Node::open(config, &data).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(node.serve(listeners, async {
        let _ = stopped.await;
    }));
    println!(
        "   {tenant} ({company}): client API {api}, bridge {bridge}{}, CA sha256 {}…",
        web.as_deref()
            .map(|w| format!(", web {w}"))
            .unwrap_or_default(),
        &done.ca_fingerprint[..16]
    );
    Ok(DemoNode {
        tenant,
        url: format!("http://{api}"),
        web,
        admin_id: done.admin.to_string(),
        admin_password: done.admin_password,
        stop,
        task,
    })
}

impl DemoNode {
    async fn admin(&self) -> anyhow::Result<Client> {
        Client::connect(&self.url, None)
            .await?
            .login(&self.admin_id, &self.admin_password)
            .await
            .map_err(status_error)
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await.context("node task")?
    }
}

/// The acme node's LINE channel on the stand-in platform: its secret and
/// token written as files, as an admin would from LINE's console.
fn demo_line_channel(data: &Path, line: &LinePlatform) -> anyhow::Result<LineConfig> {
    let write = |name: &str, text: &str| -> anyhow::Result<std::path::PathBuf> {
        let path = data.join(name);
        std::fs::write(&path, text)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(std::path::PathBuf::from(name))
    };
    Ok(LineConfig {
        api_base_url: line.url(),
        data_api_base_url: line.url(),
        channel_id: "2000000001".into(),
        channel_secret_file: write("line-channel-secret", &line.config().channel_secret)?,
        access_token_file: write("line-access-token", &line.config().access_token)?,
        basic_id: line.config().basic_id.clone(),
        webhook_listen: None,
    })
}

/// Plays the story; with `web`, then keeps both nodes up until Ctrl-C.
pub async fn run(web: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    println!("== two companies, each with its own node and CA, on this machine");
    // A stand-in for LINE's platform, where acme's LINE Official Account
    // lives and a customer uses the LINE app.
    let line = LinePlatform::start(LineStandinConfig::generate())
        .await
        .context("cannot start the stand-in LINE platform")?;
    let acme = start_node(dir.path(), TENANT, "Acme Corp", web, Some(&line)).await?;
    let globex = start_node(dir.path(), "globex.example", "Globex Inc.", web, None).await?;

    println!("\n== inside {}: two members chat", acme.tenant);
    let story = async {
        play(&acme.url, &acme.admin_id, &acme.admin_password).await?;
        println!(
            "\n== {} and {} peer their nodes",
            acme.tenant, globex.tenant
        );
        peer(&acme, &globex).await?;
        println!("\n== both admins allow one member each to talk with the other company");
        allow_external(&acme, &globex).await?;
        println!("\n== a customer on LINE adds alice and they exchange a message");
        line_scene(&acme, &line).await
    }
    .await;
    if web && story.is_ok() {
        sign_in_details(&acme, &["alice@acme.example", "bob@acme.example"]);
        sign_in_details(&globex, &["carol@globex.example"]);
        println!("\n== both nodes stay up: press Ctrl-C to stop them");
        if let Err(e) = tokio::signal::ctrl_c().await {
            eprintln!("cannot wait for Ctrl-C ({e}); stopping now");
        }
    }
    acme.stop().await?;
    globex.stop().await?;
    story?;
    println!("\n== done: both nodes stopped and their temporary directories are removed");
    Ok(())
}

/// Where a company's browser app is and who can sign in to it.
fn sign_in_details(node: &DemoNode, members: &[&str]) {
    println!(
        "\n== {}: open {} in a browser",
        node.tenant,
        node.web.as_deref().unwrap_or("(no web port)")
    );
    println!("   client API (gRPC) {}", node.url);
    println!(
        "   admin   {}  password {}",
        node.admin_id, node.admin_password
    );
    for member in members {
        println!("   member  {member}  password {PASSWORD}");
    }
}

async fn allow_external(acme: &DemoNode, globex: &DemoNode) -> anyhow::Result<()> {
    let anonymous = Client::connect(&globex.url, None).await?;
    let globex_admin = globex.admin().await?;
    globex_admin
        .admin
        .clone()
        .add_member(pb::AddMemberRequest {
            name: "carol".into(),
            display_name: "Carol Chen".into(),
            password: PASSWORD.into(),
            role: pb::Role::Member as i32,
        })
        .await
        .map_err(status_error)?;
    let carol = anonymous
        .login("carol@globex.example", PASSWORD)
        .await
        .map_err(status_error)?;
    let alice = Client::connect(&acme.url, None)
        .await?
        .login("alice@acme.example", PASSWORD)
        .await
        .map_err(status_error)?;
    let find = |client: &Client, user: &str| {
        let mut contacts = client.contacts.clone();
        let user_id = user.to_string();
        async move { contacts.find_user(pb::FindUserRequest { user_id }).await }
    };
    match find(&alice, "carol@globex.example").await {
        Ok(_) => say("alice", "found carol before anyone allowed it (a bug)"),
        Err(status) => say(
            "alice",
            format!(
                "find carol@globex.example before the admins agree: {}",
                status.message()
            ),
        ),
    }
    for (node, member) in [
        (acme, "alice@acme.example"),
        (globex, "carol@globex.example"),
    ] {
        let admin = node.admin().await?;
        let who = format!("{} admin", node.tenant);
        admin
            .external
            .clone()
            .set_external_settings(pb::SetExternalSettingsRequest {
                enabled: Some(true),
                ..Default::default()
            })
            .await
            .map_err(status_error)?;
        say(&who, "admin external set --enabled on");
        admin
            .external
            .clone()
            .add_connected(pb::AddConnectedRequest {
                member_id: member.into(),
            })
            .await
            .map_err(status_error)?;
        say(&who, format!("admin connected add {member}"));
    }
    let notices = carol
        .profiles
        .clone()
        .list_notices(pb::ListNoticesRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    for n in notices.notices {
        say("carol", format!("notice: {}", n.text));
    }
    let found = find(&alice, "carol@globex.example")
        .await
        .map_err(status_error)?
        .into_inner();
    say(
        "alice",
        format!(
            "find carol@globex.example → {} ({}), as her company publishes it",
            found.display_name, found.company
        ),
    );
    match find(&alice, "dave@globex.example").await {
        Ok(_) => say("alice", "found a member who is not connected (a bug)"),
        Err(status) => say(
            "alice",
            format!("find dave@globex.example → {}", status.message()),
        ),
    }
    befriend(&alice, &carol).await?;
    chat_across(acme, globex, &alice, &carol).await?;
    let audit = globex_admin
        .audit
        .clone()
        .search_audit(pb::AuditSearchRequest {
            peer_tenant: acme.tenant.into(),
            ..Default::default()
        })
        .await
        .map_err(status_error)?
        .into_inner();
    say(
        &format!("{} admin", globex.tenant),
        "admin audit search --peer acme.example:",
    );
    for e in audit.entries {
        say(
            &format!("{} admin", globex.tenant),
            format!(
                "  #{} {} by {} {} {}",
                e.seq, e.kind, e.actor, e.member, e.detail
            ),
        );
    }
    Ok(())
}

/// Carol invites Alice by link; both see each other as contacts; Alice
/// edits her own fields; Carol renames herself and Alice sees it.
async fn befriend(alice: &Client, carol: &Client) -> anyhow::Result<()> {
    println!("\n== carol invites alice by link; profile changes follow");
    let invitation = carol
        .contacts
        .clone()
        .create_invitation(pb::CreateInvitationRequest {
            ttl_secs: 3600,
            email: String::new(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    say(
        "carol",
        format!(
            "contact invite → {}… (QR code {} bytes PNG)",
            &invitation.link[..40],
            invitation.qr_png.len()
        ),
    );
    let contact = alice
        .contacts
        .clone()
        .redeem_invitation(pb::RedeemInvitationRequest {
            link: invitation.link,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    say(
        "alice",
        format!(
            "contact redeem → {} is my contact: {} ({})",
            contact.user_id, contact.display_name, contact.status
        ),
    );
    let carols = carol
        .contacts
        .clone()
        .list_contacts(pb::ListContactsRequest { trash: false })
        .await
        .map_err(status_error)?
        .into_inner();
    for c in carols.contacts {
        say(
            "carol",
            format!(
                "contact list: {} {} ({})",
                c.user_id, c.display_name, c.status
            ),
        );
    }
    let mut edit = pb::EditContactRequest {
        user_id: contact.user_id.clone(),
        ..Default::default()
    };
    edit.memo = Some("met at the trade fair".into());
    edit.phones = vec!["+81 3-5555-0100".into()];
    edit.replace_phones = true;
    let edited = alice
        .contacts
        .clone()
        .edit_contact(edit)
        .await
        .map_err(status_error)?
        .into_inner();
    say(
        "alice",
        format!("contact edit → my own fields: {}", edited.fields_json),
    );
    let mut rename = pb::EditContactRequest {
        user_id: contact.user_id.clone(),
        ..Default::default()
    };
    rename.display_name = Some("Caz".into());
    if let Err(status) = alice.contacts.clone().edit_contact(rename).await {
        say(
            "alice",
            format!(
                "editing her synced display name is refused: {}",
                status.message()
            ),
        );
    }
    carol
        .profiles
        .clone()
        .set_profile(pb::SetProfileRequest {
            display_name: Some("Carol C. Chen".into()),
            ..Default::default()
        })
        .await
        .map_err(status_error)?;
    say("carol", "profile set --display-name \"Carol C. Chen\"");
    // The profile travels in acme.example's queue for globex.example.
    let seen = wait_for_contact(alice, &contact.user_id, |c| {
        c.display_name == "Carol C. Chen"
    })
    .await?;
    say(
        "alice",
        format!(
            "contact show → {} ({}), synced from her company",
            seen.display_name, seen.status
        ),
    );
    Ok(())
}

/// The rest of the story: a 1:1 chat across the companies, a group room
/// with members of both, a sticker and a file, and globex switching
/// external messaging off.
async fn chat_across(
    acme: &DemoNode,
    globex: &DemoNode,
    alice: &Client,
    carol: &Client,
) -> anyhow::Result<()> {
    println!("\n== alice and carol chat in their 1:1 room, hosted by acme.example's node");
    let room = wait_for_room(carol, "alice@acme.example").await?;
    say(
        "carol",
        format!(
            "room list: 1:1 with alice, hosted by {}, external: {}",
            room.host, room.external
        ),
    );
    let mut carol_stream = watch(carol, &room.id, room.last_seq).await?;
    let mut alice_stream = watch(alice, &room.id, room.last_seq).await?;
    let sent = send(
        alice,
        &room.id,
        "Hello Carol, shall we plan the launch?",
        "",
        "",
    )
    .await?;
    say("alice", sent_line(&sent));
    say(
        "carol",
        format!(
            "sees {}",
            crate::cli::event_line(&next_event(&mut carol_stream).await?)
        ),
    );
    next_event(&mut alice_stream).await?;
    let sticker = send(carol, &room.id, "", "thumbs-up", "").await?;
    say("carol", sent_line(&sticker));
    say(
        "alice",
        format!(
            "sees {}",
            crate::cli::event_line(&next_event(&mut alice_stream).await?)
        ),
    );
    let sticker_id = sticker.event.unwrap_or_default().event_id;
    let delivery = wait_delivered(carol, &room.id, &sticker_id).await?;
    say(
        "carol",
        format!("her sticker is {}", crate::cli::delivery_line(&delivery)),
    );

    println!("\n== a group room with members of both companies; alice posts a file");
    let acme_admin = acme.admin().await?;
    acme_admin
        .external
        .clone()
        .add_connected(pb::AddConnectedRequest {
            member_id: "bob@acme.example".into(),
        })
        .await
        .map_err(status_error)?;
    say("acme.example admin", "admin connected add bob@acme.example");
    let group = alice
        .rooms
        .clone()
        .create_room(pb::CreateRoomRequest {
            kind: pb::RoomKind::Group as i32,
            name: "Launch".into(),
            members: vec!["bob@acme.example".into(), "carol@globex.example".into()],
        })
        .await
        .map_err(status_error)?
        .into_inner();
    say(
        "alice",
        format!(
            "room create --name Launch bob carol → {} members, external: {}",
            group.members.len(),
            group.external
        ),
    );
    let plan = b"Launch plan: 1. announce 2. ship 3. celebrate\n".repeat(2000);
    let mut chunks: Vec<pb::UploadChunk> = plan
        .chunks(64 * 1024)
        .map(|c| pb::UploadChunk {
            data: c.to_vec(),
            ..Default::default()
        })
        .collect();
    chunks[0].room_id = group.id.clone();
    chunks[0].name = "plan.txt".into();
    chunks[0].content_type = "text/plain".into();
    let uploaded = alice
        .rooms
        .clone()
        .upload_attachment(tokio_stream::iter(chunks))
        .await
        .map_err(status_error)?
        .into_inner();
    let posted = send(alice, &group.id, "", "", &uploaded.id).await?;
    say("alice", sent_line(&posted));
    wait_for_room(carol, "bob@acme.example").await?;
    wait_for_event(
        carol,
        &group.id,
        &posted.event.clone().unwrap_or_default().event_id,
    )
    .await?;
    let mut download = carol
        .rooms
        .clone()
        .download_attachment(pb::DownloadAttachmentRequest {
            attachment_id: uploaded.id.clone(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let mut bytes = 0;
    while let Some(chunk) = download.message().await.map_err(status_error)? {
        bytes += chunk.data.len();
    }
    say(
        "carol",
        format!(
            "room download {} → {bytes} bytes, fetched over the bridge and checked (sha256 {}…)",
            uploaded.name,
            &uploaded.sha256[..12]
        ),
    );

    println!("\n== globex.example switches external messaging off");
    globex
        .admin()
        .await?
        .external
        .clone()
        .set_external_settings(pb::SetExternalSettingsRequest {
            enabled: Some(false),
            ..Default::default()
        })
        .await
        .map_err(status_error)?;
    say("globex.example admin", "admin external set --enabled off");
    let carols = carol
        .rooms
        .clone()
        .list_rooms(pb::ListRoomsRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    say(
        "carol",
        format!(
            "room list: {} rooms with other companies",
            carols.rooms.iter().filter(|r| r.external).count()
        ),
    );
    let gone = next_event(&mut alice_stream).await?;
    say("alice", format!("sees {}", crate::cli::event_line(&gone)));
    let shown = wait_for_contact(alice, "carol@globex.example", |c| c.status == "unknown").await?;
    say(
        "alice",
        format!(
            "contact show carol@globex.example → status {:?}",
            shown.status
        ),
    );
    Ok(())
}

async fn watch(
    who: &Client,
    room: &str,
    after: u64,
) -> anyhow::Result<tonic::Streaming<pb::WatchEvent>> {
    Ok(who
        .rooms
        .clone()
        .watch(pb::WatchRequest {
            cursors: vec![pb::RoomCursor {
                room_id: room.into(),
                seq: after,
            }],
            room_id: room.into(),
        })
        .await
        .map_err(status_error)?
        .into_inner())
}

async fn send(
    who: &Client,
    room: &str,
    text: &str,
    sticker: &str,
    attachment_id: &str,
) -> anyhow::Result<pb::SendMessageResponse> {
    Ok(who
        .rooms
        .clone()
        .send_message(pb::SendMessageRequest {
            room_id: room.into(),
            idempotency_key: ulid::Ulid::new().to_string(),
            text: text.into(),
            sticker: sticker.into(),
            attachment_id: attachment_id.into(),
        })
        .await
        .map_err(status_error)?
        .into_inner())
}

fn sent_line(sent: &pb::SendMessageResponse) -> String {
    let event = sent.event.clone().unwrap_or_default();
    let what = crate::cli::event_line(&event);
    let what = if event.seq == 0 {
        format!(
            "{} (sent to the room's host)",
            what.trim_start_matches("#0 ")
        )
    } else {
        what
    };
    format!(
        "room send → {what} [{}]",
        crate::cli::delivery_line(&sent.delivery.clone().unwrap_or_default())
    )
}

/// The admin switches LINE on for alice; a customer follows the account,
/// is greeted, sends alice's code with a question, and alice answers.
async fn line_scene(acme: &DemoNode, line: &LinePlatform) -> anyhow::Result<()> {
    let admin = acme.admin().await?;
    let who = format!("{} admin", acme.tenant);
    admin
        .line
        .clone()
        .set_line_settings(pb::SetLineSettingsRequest {
            enabled: Some(true),
            greeting: Some("Thank you for adding Acme Corp! Send us your question.".into()),
            ..Default::default()
        })
        .await
        .map_err(status_error)?;
    say(
        &who,
        "admin line set --enabled on --greeting \"Thank you for adding Acme Corp! …\"",
    );
    admin
        .line
        .clone()
        .add_line_connected(pb::AddConnectedRequest {
            member_id: "alice@acme.example".into(),
        })
        .await
        .map_err(status_error)?;
    say(&who, "admin line connected add alice@acme.example");
    let alice = Client::connect(&acme.url, None)
        .await?
        .login("alice@acme.example", PASSWORD)
        .await
        .map_err(status_error)?;
    let invite = alice
        .line
        .clone()
        .get_line_invite(pb::GetLineInviteRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    say(
        "alice",
        format!(
            "line invite → message ID {}, link {}",
            invite.message_id, invite.link
        ),
    );
    let yuki = line.add_user("Yuki Tanaka");
    line.follow(&yuki).await?;
    let greeting = wait_line(line, &yuki.id, 1).await?;
    say(
        "Yuki",
        format!(
            "(on LINE) adds Acme Corp as a friend; the account says: {}",
            greeting[0]["text"].as_str().unwrap_or_default()
        ),
    );
    let question = format!(
        "Hello {} — is my order #1042 on its way?",
        invite.message_id
    );
    line.text(&yuki, &question).await?;
    say("Yuki", format!("(on LINE) {question}"));
    let customer = crate::ids::line_member(&yuki.id)
        .ok_or_else(|| anyhow!("the stand-in made an id LINE would not: {}", yuki.id))?;
    let room = wait_for_room(&alice, customer.as_str()).await?;
    say(
        "alice",
        format!("a LINE room appears: {} (line: {})", room.id, room.line),
    );
    let answer = send(
        &alice,
        &room.id,
        "Yes, Yuki: it ships today and arrives tomorrow.",
        "",
        "",
    )
    .await?;
    say("alice", sent_line(&answer));
    let sent = wait_line(line, &yuki.id, 2).await?;
    let last = &sent[sent.len() - 1];
    say(
        "Yuki",
        format!(
            "(on LINE) {}: {}",
            last["sender"]["name"].as_str().unwrap_or_default(),
            last["text"].as_str().unwrap_or_default()
        ),
    );
    let d = wait_delivered(
        &alice,
        &room.id,
        &answer
            .event
            .as_ref()
            .map(|e| e.event_id.clone())
            .unwrap_or_default(),
    )
    .await?;
    say(
        "alice",
        format!(
            "delivery: {:?}",
            pb::DeliveryState::try_from(d.state).unwrap_or_default()
        ),
    );
    Ok(())
}

/// What the account sent to a LINE chat, once there are `count` messages.
async fn wait_line(
    line: &LinePlatform,
    chat: &str,
    count: usize,
) -> anyhow::Result<Vec<serde_json::Value>> {
    for _ in 0..200 {
        let sent = line.conversation(chat);
        if sent.len() >= count {
            return Ok(sent);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(anyhow!(
        "LINE chat {chat} did not get {count} messages within 10 s"
    ))
}

/// A room of `who`'s with `member` in it, once the relay brought it.
async fn wait_for_room(who: &Client, member: &str) -> anyhow::Result<pb::Room> {
    for _ in 0..200 {
        let rooms = who
            .rooms
            .clone()
            .list_rooms(pb::ListRoomsRequest {})
            .await
            .map_err(status_error)?
            .into_inner();
        if let Some(room) = rooms
            .rooms
            .into_iter()
            .find(|r| r.members.iter().any(|m| m == member))
        {
            return Ok(room);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(anyhow!("no room with {member} arrived within 10 s"))
}

/// `who`'s contact `user` once it is as `wanted`.
async fn wait_for_contact(
    who: &Client,
    user: &str,
    wanted: impl Fn(&pb::ExternalContact) -> bool,
) -> anyhow::Result<pb::ExternalContact> {
    for _ in 0..200 {
        let contact = who
            .contacts
            .clone()
            .get_contact(pb::ContactRef {
                user_id: user.into(),
            })
            .await
            .map_err(status_error)?
            .into_inner();
        if wanted(&contact) {
            return Ok(contact);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(anyhow!("contact {user} did not change within 10 s"))
}

/// Waits until `event` is in `who`'s copy of `room`.
async fn wait_for_event(who: &Client, room: &str, event: &str) -> anyhow::Result<()> {
    for _ in 0..200 {
        let page = who
            .rooms
            .clone()
            .history(pb::HistoryRequest {
                room_id: room.into(),
                ..Default::default()
            })
            .await
            .map_err(status_error)?
            .into_inner();
        if page.events.iter().any(|e| e.event_id == event) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(anyhow!("event {event} did not reach {room} within 10 s"))
}

async fn wait_delivered(who: &Client, room: &str, event: &str) -> anyhow::Result<pb::Delivery> {
    for _ in 0..200 {
        let d = who
            .rooms
            .clone()
            .get_delivery(pb::GetDeliveryRequest {
                room_id: room.into(),
                event_id: event.into(),
            })
            .await
            .map_err(status_error)?
            .into_inner();
        if d.state != pb::DeliveryState::Queued as i32 {
            return Ok(d);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(anyhow!("message {event} was still queued after 10 s"))
}

async fn peer(inviter: &DemoNode, acceptor: &DemoNode) -> anyhow::Result<()> {
    let inviter_admin = inviter.admin().await?;
    let acceptor_admin = acceptor.admin().await?;
    let who_invites = format!("{} admin", inviter.tenant);
    let who_accepts = format!("{} admin", acceptor.tenant);
    let invitation = inviter_admin
        .peering
        .clone()
        .invite_peer(pb::InvitePeerRequest {
            for_tenant: String::new(),
            ttl_secs: 600,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    say(
        &who_invites,
        format!(
            "peer invite → {}… (one-time, expires in 10 minutes)",
            &invitation.token[..40]
        ),
    );
    let peer = acceptor_admin
        .peering
        .clone()
        .accept_peer(pb::AcceptPeerRequest {
            token: invitation.token.clone(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    say(
        &who_accepts,
        format!(
            "peer accept → peered with {} at {}, its CA pinned (sha256 {}…)",
            peer.tenant,
            peer.endpoint,
            &peer.ca_fingerprints[0][..16]
        ),
    );
    for (who, admin) in [
        (&who_invites, &inviter_admin),
        (&who_accepts, &acceptor_admin),
    ] {
        let peers = admin
            .peering
            .clone()
            .list_peers(pb::ListPeersRequest {})
            .await
            .map_err(status_error)?
            .into_inner();
        for p in peers.peers {
            say(
                who,
                format!(
                    "peer list: {} {} via {} (queue {})",
                    p.tenant, p.state, p.source, p.queue_depth
                ),
            );
        }
    }
    let report = acceptor_admin
        .peering
        .clone()
        .test_peer(pb::TestPeerRequest {
            tenant: inviter.tenant.into(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    say(
        &who_accepts,
        format!(
            "peer test {}: {}",
            report.tenant,
            if report.ok { "ok" } else { "PROBLEMS" }
        ),
    );
    for check in report.checks {
        say(
            &who_accepts,
            format!(
                "  {} {:<16} {}",
                if check.ok { "✓" } else { "✗" },
                check.name,
                check.detail
            ),
        );
    }
    let replay = acceptor_admin
        .peering
        .clone()
        .accept_peer(pb::AcceptPeerRequest {
            token: invitation.token,
        })
        .await;
    if let Err(status) = replay {
        say(
            &who_accepts,
            format!(
                "accepting the same token again is refused: {}",
                status.message()
            ),
        );
    }
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
            sticker: String::new(),
            attachment_id: String::new(),
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

    bob_sees(&mut bob_stream, 2).await?;
    bob_lists_rooms(&bob).await?;
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
    bob_sees(&mut bob_stream, 2).await?;
    bob_lists_rooms(&bob).await?;
    Ok(())
}

async fn bob_sees(stream: &mut tonic::Streaming<pb::WatchEvent>, n: usize) -> anyhow::Result<()> {
    for _ in 0..n {
        let event = next_event(stream).await?;
        say("bob", format!("sees {}", crate::cli::event_line(&event)));
    }
    Ok(())
}

async fn bob_lists_rooms(bob: &Client) -> anyhow::Result<()> {
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
        Some(pb::watch_event::Kind::Notice(notice)) => {
            Err(anyhow!("unexpected notice: {}", notice.text))
        }
        None => Err(anyhow!("an empty stream item")),
    }
}
