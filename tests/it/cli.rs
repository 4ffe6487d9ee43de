//! The command line as admins and members script it: `--json` on stdout,
//! errors on stderr with a non-zero exit.

use crate::support;

use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

pub(crate) struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

pub(crate) async fn run(args: &[&str], node: Option<&str>, token: Option<&str>) -> Run {
    let mut cmd = Command::new(support::binary());
    cmd.args(args)
        .env_remove("WORKS_TOKEN")
        .env_remove("WORKS_NODE");
    if let Some(node) = node {
        cmd.env("WORKS_NODE", node);
    }
    if let Some(token) = token {
        cmd.env("WORKS_TOKEN", token);
    }
    let out = cmd.output().await.expect("run cli");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub(crate) async fn json(args: &[&str], node: &str, token: &str) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = run(&all, Some(node), Some(token)).await;
    assert!(out.ok, "{args:?} failed: {}", out.stderr);
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {}", out.stdout))
}

#[tokio::test]
async fn init_serve_and_chat_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("acme");
    let data_arg = data.to_str().unwrap();
    let init_args = [
        "init",
        "--data",
        data_arg,
        "--tenant",
        "Acme.Example",
        "--company",
        "Acme Corp",
        "--web",
        "127.0.0.1:0",
        "--ops",
        "127.0.0.1:0",
        "--api",
        "127.0.0.1:0",
    ];
    let init = run(&init_args, None, None).await;
    assert!(init.ok, "{}", init.stderr);
    assert!(
        init.stdout.contains("admin:    admin@acme.example"),
        "{}",
        init.stdout
    );
    let password = init
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("a generated password is shown once")
        .to_string();
    let again = run(&init_args, None, None).await;
    assert!(!again.ok);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);

    let mut server = Command::new(support::binary())
        .args(["serve", "--data", data_arg])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("serve printed its address");
        if let Some(addr) = line.strip_prefix("api listening on ") {
            break addr.to_string();
        }
    };
    let node = format!("http://{addr}");

    let login = run(
        &[
            "login",
            "--user",
            "admin@acme.example",
            "--password",
            &password,
        ],
        Some(&node),
        None,
    )
    .await;
    assert!(login.ok, "{}", login.stderr);
    let admin = login.stdout.trim().to_string();
    for name in ["alice", "bob"] {
        let member = json(
            &[
                "admin",
                "member",
                "add",
                name,
                "--display-name",
                name,
                "--password",
                support::PASSWORD,
            ],
            &node,
            &admin,
        )
        .await;
        assert_eq!(member["id"], format!("{name}@acme.example"));
    }
    let members = json(&["admin", "member", "list"], &node, &admin).await;
    assert_eq!(members["members"].as_array().unwrap().len(), 3);

    let token = |user: &str| {
        let node = node.clone();
        let user = user.to_string();
        async move {
            let out = run(
                &[
                    "login",
                    "--user",
                    &user,
                    "--password",
                    support::PASSWORD,
                    "--json",
                ],
                Some(&node),
                None,
            )
            .await;
            assert!(out.ok, "{}", out.stderr);
            serde_json::from_str::<Value>(&out.stdout).unwrap()["token"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let alice = token("alice@acme.example").await;
    let bob = token("bob@acme.example").await;

    let room = json(&["room", "create", "bob@acme.example"], &node, &alice).await;
    assert_eq!(room["kind"], "direct");
    let room_id = room["id"].as_str().unwrap().to_string();
    let sent = json(
        &[
            "room",
            "send",
            &room_id,
            "hello from the shell",
            "--key",
            "k1",
        ],
        &node,
        &alice,
    )
    .await;
    assert_eq!(
        (sent["seq"].as_u64(), sent["duplicate"].as_bool()),
        (Some(2), Some(false))
    );
    let resent = json(
        &[
            "room",
            "send",
            &room_id,
            "hello from the shell",
            "--key",
            "k1",
        ],
        &node,
        &alice,
    )
    .await;
    assert_eq!(resent["duplicate"], true);

    let listed = json(&["room", "list"], &node, &bob).await;
    assert_eq!(listed["rooms"][0]["unread"], 1);
    let history = json(&["room", "history", &room_id], &node, &bob).await;
    let events = history["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["body"]["text"], "hello from the shell");

    let watched = run(
        &[
            "room", "watch", &room_id, "--since", "0", "--count", "2", "--json",
        ],
        Some(&node),
        Some(&bob),
    )
    .await;
    assert!(watched.ok, "{}", watched.stderr);
    let seqs: Vec<u64> = watched
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, vec![1, 2]);

    let read = json(&["room", "read", &room_id], &node, &bob).await;
    assert_eq!(read["unread"], 0);

    // Errors: stderr names the status and the reason; stdout stays empty.
    let bad = run(
        &["room", "send", "not-a-room", "hi"],
        Some(&node),
        Some(&alice),
    )
    .await;
    assert!(!bad.ok);
    assert!(bad.stdout.is_empty());
    assert!(
        bad.stderr.contains("invalid argument: invalid room_id"),
        "{}",
        bad.stderr
    );
    let denied = run(&["admin", "member", "list"], Some(&node), Some(&alice)).await;
    assert!(!denied.ok);
    assert!(
        denied.stderr.contains("permission denied"),
        "{}",
        denied.stderr
    );
    let unreachable = run(&["room", "list"], Some("http://127.0.0.1:1"), Some(&alice)).await;
    assert!(!unreachable.ok);
    assert!(
        unreachable.stderr.contains("cannot reach the node"),
        "{}",
        unreachable.stderr
    );
}

#[tokio::test]
async fn the_demo_runs_to_the_end_by_itself() {
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        run(&["demo"], None, None),
    )
    .await
    .expect("demo finished on its own");
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("[bob  ] sees #2 alice@acme.example: Hi Bob! Is the Q3 report ready?"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("duplicate=true"), "{}", out.stdout);
    assert!(
        out.stdout.contains("peer test acme.example: ok"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("[alice] find carol@globex.example → Carol Chen (Globex Inc.)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("find dave@globex.example → user dave@globex.example not found"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("[alice] contact show → Carol C. Chen (Globex Inc.)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("editing her synced display name is refused"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn admins_peer_two_nodes_from_the_command_line() {
    let a = support::TestNode::start("a.example").await;
    let b = support::TestNode::start("b.example").await;
    let token = |node: &support::TestNode| {
        let url = node.url.clone();
        let admin = node.admin_id.clone();
        async move {
            let out = run(
                &["login", "--user", &admin, "--password", "admin password 1"],
                Some(&url),
                None,
            )
            .await;
            assert!(out.ok, "{}", out.stderr);
            out.stdout.trim().to_string()
        }
    };
    let (a_token, b_token) = (token(&a).await, token(&b).await);

    let invite = run(
        &[
            "admin",
            "peer",
            "invite",
            "--for",
            "a.example",
            "--ttl",
            "600",
        ],
        Some(&b.url),
        Some(&b_token),
    )
    .await;
    assert!(invite.ok, "{}", invite.stderr);
    let invitation = invite.stdout.trim().to_string();
    assert!(invitation.starts_with("wpi1."), "{invitation}");

    let accepted = json(&["admin", "peer", "accept", &invitation], &a.url, &a_token).await;
    assert_eq!(accepted["tenant"], "b.example");
    let listed = json(&["admin", "peer", "list"], &b.url, &b_token).await;
    assert_eq!(listed["peers"][0]["tenant"], "a.example");
    assert_eq!(listed["peers"][0]["state"], "active");
    let tested = json(&["admin", "peer", "test", "b.example"], &a.url, &a_token).await;
    assert_eq!(tested["ok"], true);
    let text = run(
        &["admin", "peer", "test", "b.example"],
        Some(&a.url),
        Some(&a_token),
    )
    .await;
    assert!(
        text.ok && text.stdout.contains("clock skew"),
        "{}",
        text.stdout
    );
    let ca = json(&["admin", "ca", "show"], &a.url, &a_token).await;
    assert_eq!(ca["fingerprint"].as_str().unwrap().len(), 64);

    let replay = run(
        &["admin", "peer", "accept", &invitation],
        Some(&a.url),
        Some(&a_token),
    )
    .await;
    assert!(!replay.ok);
    assert!(
        replay
            .stderr
            .contains("already exists: already peered with b.example"),
        "{}",
        replay.stderr
    );
    let unknown = run(
        &["admin", "peer", "test", "z.example"],
        Some(&a.url),
        Some(&a_token),
    )
    .await;
    assert!(
        !unknown.ok && unknown.stderr.contains("not found: peer z.example"),
        "{}",
        unknown.stderr
    );

    let removed = json(&["admin", "peer", "remove", "b.example"], &a.url, &a_token).await;
    assert_eq!(removed["peer_told"], true);
    let listed = json(&["admin", "peer", "list"], &b.url, &b_token).await;
    assert!(listed["peers"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn members_befriend_across_companies_from_the_command_line() {
    use works_proto::client::v1 as pb;
    let a = support::TestNode::start("a.example").await;
    let b = support::TestNode::start("b.example").await;
    support::peer_with(&a, &b).await;
    let alice = a.member("alice").await;
    let bob = b.member("bob").await;
    for (node, member) in [(&a, &alice.id), (&b, &bob.id)] {
        let admin = node.admin().await;
        admin
            .external
            .clone()
            .set_external_settings(pb::SetExternalSettingsRequest {
                enabled: Some(true),
                ..Default::default()
            })
            .await
            .unwrap();
        admin
            .external
            .clone()
            .add_connected(pb::AddConnectedRequest {
                member_id: member.clone(),
            })
            .await
            .unwrap();
    }
    let login = |node: &support::TestNode, id: &str| {
        let (url, id) = (node.url.clone(), id.to_string());
        async move {
            let out = run(
                &["login", "--user", &id, "--password", support::PASSWORD],
                Some(&url),
                None,
            )
            .await;
            assert!(out.ok, "{}", out.stderr);
            out.stdout.trim().to_string()
        }
    };
    let (alice_token, bob_token) = (login(&a, &alice.id).await, login(&b, &bob.id).await);

    let found = json(&["contact", "find", "bob@b.example"], &a.url, &alice_token).await;
    assert_eq!(found["display_name"], "Bob");
    let sent = json(&["contact", "add", "bob@b.example"], &a.url, &alice_token).await;
    assert_eq!(sent["state"], "pending");
    let incoming = json(&["request", "list"], &b.url, &bob_token).await;
    assert_eq!(incoming["requests"][0]["direction"], "incoming");
    assert_eq!(incoming["requests"][0]["display_name"], "Alice");
    let id = incoming["requests"][0]["id"].as_str().unwrap().to_string();
    let accepted = json(&["request", "accept", &id], &b.url, &bob_token).await;
    assert_eq!(accepted["user_id"], "alice@a.example");
    let listed = json(&["contact", "list"], &a.url, &alice_token).await;
    assert_eq!(listed["contacts"][0]["user_id"], "bob@b.example");
    assert_eq!(listed["contacts"][0]["status"], "b.example Inc.");
    let deleted = json(
        &["contact", "delete", "bob@b.example"],
        &a.url,
        &alice_token,
    )
    .await;
    assert_eq!(deleted["trashed"], true);
    let trash = json(&["contact", "list", "--trash"], &a.url, &alice_token).await;
    assert_eq!(trash["contacts"].as_array().unwrap().len(), 1);
    let again = run(&["request", "accept", &id], Some(&b.url), Some(&bob_token)).await;
    assert!(
        !again.ok && again.stderr.contains("failed precondition: friend request"),
        "{}",
        again.stderr
    );
}

/// A member's token from `tenant-node login`.
async fn login(node: &str, id: &str) -> String {
    let out = run(
        &["login", "--user", id, "--password", support::PASSWORD],
        Some(node),
        None,
    )
    .await;
    assert!(out.ok, "{}", out.stderr);
    out.stdout.trim().to_string()
}

/// The lines a running CLI command prints, as it prints them.
struct Streaming {
    _child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Streaming {
    async fn start(args: &[&str], node: &str, token: &str) -> Streaming {
        let mut child = Command::new(support::binary())
            .args(args)
            .env("WORKS_NODE", node)
            .env("WORKS_TOKEN", token)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("run cli");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Streaming {
            _child: child,
            lines,
        }
    }

    /// The first line that `wanted` accepts; earlier ones are skipped.
    async fn line_where(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            let line = self.next_line().await;
            if wanted(&line) {
                return line;
            }
        }
    }

    async fn next_line(&mut self) -> String {
        tokio::time::timeout(support::EVENT_DEADLINE, self.lines.next_line())
            .await
            .expect("a line within the deadline")
            .expect("read stdout")
            .expect("the command is still printing")
    }
}

#[tokio::test]
async fn room_list_marks_external_rooms_with_their_host() {
    let (a, _b, alice, bob) = support::pair().await;
    let carol = a.member("carol").await;
    let direct = support::room_with(&alice, &bob.id).await;
    let group = bob.group_room("Launch", &[&alice.id]).await;
    let team = alice.group_room("Team", &[&carol.id]).await;
    support::until(
        support::RELAY_DEADLINE,
        "alice sees bob's group",
        || async { alice.rooms().await.iter().any(|r| r.id == group.id) },
    )
    .await;
    let token = login(&a.url, &alice.id).await;

    let listed = json(&["room", "list"], &a.url, &token).await;
    let rooms = listed["rooms"].as_array().unwrap();
    let by_id = |id: &str| {
        rooms
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("room {id} not listed: {listed}"))
    };
    assert_eq!(
        (&by_id(&direct.id)["external"], &by_id(&direct.id)["host"]),
        (&Value::Bool(true), &Value::from("a.example"))
    );
    assert_eq!(
        (&by_id(&group.id)["external"], &by_id(&group.id)["host"]),
        (&Value::Bool(true), &Value::from("b.example"))
    );
    assert_eq!(
        (&by_id(&team.id)["external"], &by_id(&team.id)["host"]),
        (&Value::Bool(false), &Value::from("a.example"))
    );

    let text = run(&["room", "list"], Some(&a.url), Some(&token)).await;
    assert!(text.ok, "{}", text.stderr);
    let line = |id: &str| {
        text.stdout
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("room {id} not listed: {}", text.stdout))
            .to_string()
    };
    let shown = line(&group.id);
    assert!(
        shown.starts_with(&format!("{}  [external] Launch ", group.id))
            && shown.contains("2 members  host b.example"),
        "{shown}"
    );
    let shown = line(&direct.id);
    assert!(
        shown.starts_with(&format!(
            "{}  [external] 1:1 with bob@b.example ",
            direct.id
        )) && shown.contains("2 members  host a.example"),
        "{shown}"
    );
    let shown = line(&team.id);
    assert!(
        shown.starts_with(&format!("{}  Team ", team.id))
            && !shown.contains("[external]")
            && !shown.contains("host"),
        "{shown}"
    );
    let shown = run(&["room", "show", &group.id], Some(&a.url), Some(&token)).await;
    assert!(
        shown
            .stdout
            .contains("kind:     group (with members of other companies)")
            && shown.stdout.contains("host:     b.example"),
        "{}",
        shown.stdout
    );
}

#[tokio::test]
async fn room_watch_prints_notices_and_notice_list_lists_them() {
    let a = support::TestNode::start("a.example").await;
    let admin = a.admin().await;
    let alice = a.member("alice").await;
    let carol = a.member("carol").await;
    let token = login(&a.url, &carol.id).await;
    let room = alice.group_room("Team", &[&carol.id]).await.id;
    alice.send(&room, "before the grant").await.unwrap();

    // Each stream is live once it printed the unread message.
    let mut text = Streaming::start(&["room", "watch"], &a.url, &token).await;
    let mut json_watch = Streaming::start(&["room", "watch", "--json"], &a.url, &token).await;
    text.line_where(|l| l.ends_with("alice@a.example: before the grant"))
        .await;
    json_watch
        .line_where(|l| l.contains("\"text\":\"before the grant\""))
        .await;

    support::allow(&admin, true, &carol.id, true).await;
    assert_eq!(
        text.next_line().await,
        "notice external_granted: your admin allowed you to talk with members of other companies"
    );
    let notice: Value = serde_json::from_str(&json_watch.next_line().await).unwrap();
    assert_eq!(notice["notice"]["kind"], "external_granted");
    assert_eq!(
        notice["notice"]["text"],
        "your admin allowed you to talk with members of other companies"
    );
    let id = notice["notice"]["id"].as_str().unwrap().to_string();
    // The stream goes on with events after a notice.
    alice.send(&room, "after the grant").await.unwrap();
    assert!(
        text.next_line()
            .await
            .ends_with("alice@a.example: after the grant"),
        "events after the notice"
    );

    let listed = json(&["notice", "list"], &a.url, &token).await;
    let notices = listed["notices"].as_array().unwrap();
    assert_eq!(notices.len(), 1, "{listed}");
    assert_eq!(
        (&notices[0]["id"], &notices[0]["kind"]),
        (&Value::from(id), &Value::from("external_granted"))
    );
    let shown = run(&["notice", "list"], Some(&a.url), Some(&token)).await;
    assert!(shown.ok, "{}", shown.stderr);
    assert_eq!(
        shown.stdout,
        "notice external_granted: your admin allowed you to talk with members of other companies\n"
    );
    // alice has none.
    let alice_token = login(&a.url, &alice.id).await;
    let none = json(&["notice", "list"], &a.url, &alice_token).await;
    assert_eq!(none["notices"], serde_json::json!([]));
}
