//! "Chat with LINE users" as the admin sets it up and a member starts it:
//! the settings, the LINE connected-members list and a member's LINE
//! invitation, through the gRPC API and the command line, on a node with a
//! `[line]` section (its Messaging API a closed port: nothing here reaches
//! LINE) and on one without.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;
use tenant_node::config::LineConfig;
use tenant_node::policy::line::DEFAULT_GREETING;
use tonic::Code;
use works_proto::client::v1 as pb;

use crate::cli::{json, run};
use crate::support::{self, TestNode, check};

const BASIC_ID: &str = "@123abcde";
const CHANNEL_ID: &str = "1234567890";

/// The channel's secret and access token, as files with mode 0600.
fn credentials() -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in [
        ("line-secret", "0123456789abcdef0123456789abcdef\n"),
        ("line-token", "an access token\n"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write credential");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod 0600");
    }
    dir
}

fn line_config(credentials: &Path) -> LineConfig {
    LineConfig {
        // A closed port: whatever the node would send to LINE fails fast.
        api_base_url: "http://127.0.0.1:9".into(),
        data_api_base_url: "http://127.0.0.1:9".into(),
        channel_id: CHANNEL_ID.into(),
        channel_secret_file: credentials.join("line-secret"),
        access_token_file: credentials.join("line-token"),
        basic_id: BASIC_ID.into(),
        webhook_listen: None,
    }
}

/// A node of a.example with a LINE channel; keep the credentials alive
/// with it.
async fn line_node() -> (TestNode, TempDir) {
    let files = credentials();
    let config = line_config(files.path());
    let node = TestNode::start_with("a.example", |c| c.line = Some(config.clone())).await;
    (node, files)
}

async fn token(node: &TestNode, id: &str, password: &str) -> String {
    node.anonymous()
        .await
        .auth
        .clone()
        .login(pb::LoginRequest {
            member_id: id.into(),
            password: password.into(),
        })
        .await
        .expect("login")
        .into_inner()
        .token
}

async fn audit(admin: &tenant_node::client::Client, text: &str) -> Vec<pb::AuditEntry> {
    admin
        .audit
        .clone()
        .search_audit(pb::AuditSearchRequest {
            text: text.into(),
            ..Default::default()
        })
        .await
        .expect("audit search")
        .into_inner()
        .entries
}

#[tokio::test]
async fn the_admin_sets_line_up_through_the_cli_and_the_api() {
    let (node, _files) = line_node().await;
    let admin_token = token(&node, &node.admin_id, support::ADMIN_PASSWORD).await;
    let url = node.url.as_str();

    let shown = json(&["admin", "line", "show"], url, &admin_token).await;
    assert_eq!(
        shown,
        json!({"enabled": false, "auto_grant": false, "restrict_files": false,
               "greeting": DEFAULT_GREETING, "channel_id": CHANNEL_ID, "basic_id": BASIC_ID})
    );
    let text = run(&["admin", "line", "show"], Some(url), Some(&admin_token)).await;
    assert!(text.ok, "{}", text.stderr);
    assert!(
        text.stdout.contains("chat with LINE users:    off")
            && text.stdout.contains(&format!("{CHANNEL_ID} ({BASIC_ID})")),
        "{}",
        text.stdout
    );

    // Each setting from the command line; the others stay as they were.
    let set = |args: &'static [&'static str]| {
        let mut all = vec!["admin", "line", "set"];
        all.extend_from_slice(args);
        all
    };
    let after = json(&set(&["--enabled", "on"]), url, &admin_token).await;
    assert_eq!(
        (&after["enabled"], &after["auto_grant"]),
        (&json!(true), &json!(false))
    );
    let after = json(&set(&["--auto-grant", "on"]), url, &admin_token).await;
    assert_eq!(
        (&after["enabled"], &after["auto_grant"]),
        (&json!(true), &json!(true))
    );
    let after = json(&set(&["--restrict-files", "on"]), url, &admin_token).await;
    assert_eq!(after["restrict_files"], json!(true));
    let after = json(
        &set(&["--greeting", "Welcome to Acme on LINE"]),
        url,
        &admin_token,
    )
    .await;
    assert_eq!(
        after,
        json!({"enabled": true, "auto_grant": true, "restrict_files": true,
               "greeting": "Welcome to Acme on LINE", "channel_id": CHANNEL_ID, "basic_id": BASIC_ID})
    );

    // And through the API.
    let admin = node.admin().await;
    let mut line = admin.line.clone();
    let settings = line
        .set_line_settings(pb::SetLineSettingsRequest {
            enabled: Some(false),
            auto_grant: Some(false),
            restrict_files: Some(false),
            greeting: Some("Hello from the API".into()),
        })
        .await
        .expect("set through the API")
        .into_inner();
    assert_eq!(
        settings,
        pb::LineSettings {
            enabled: false,
            auto_grant: false,
            restrict_files: false,
            greeting: "Hello from the API".into(),
            channel_id: CHANNEL_ID.into(),
            basic_id: BASIC_ID.into(),
        }
    );
    let read = line
        .get_line_settings(pb::GetLineSettingsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read, settings);

    check(
        line.set_line_settings(pb::SetLineSettingsRequest {
            greeting: Some("x".repeat(1001)),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "greeting",
    );
    let long = "x".repeat(1001);
    let refused = run(
        &["admin", "line", "set", "--greeting", &long],
        Some(url),
        Some(&admin_token),
    )
    .await;
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("invalid argument") && refused.stderr.contains("greeting"),
        "{}",
        refused.stderr
    );

    // A member is no admin.
    let bob = node.member("bob").await;
    let mut bobs_line = bob.client.line.clone();
    check(
        bobs_line
            .get_line_settings(pb::GetLineSettingsRequest {})
            .await,
        Code::PermissionDenied,
        "admin",
    );
    check(
        bobs_line
            .set_line_settings(pb::SetLineSettingsRequest {
                enabled: Some(true),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "admin",
    );
    let bob_token = token(&node, &bob.id, support::PASSWORD).await;
    let refused = run(
        &["admin", "line", "set", "--enabled", "on"],
        Some(url),
        Some(&bob_token),
    )
    .await;
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("permission denied"),
        "{}",
        refused.stderr
    );

    let changes = audit(&admin, "line.policy.changed").await;
    let details: Vec<&str> = changes.iter().map(|e| e.detail.as_str()).collect();
    assert!(
        details.contains(&"LINE use status on")
            && details.contains(&"LINE greeting changed")
            && changes
                .iter()
                .all(|e| e.kind == "line.policy.changed" && e.actor == node.admin_id),
        "{details:?}"
    );
    assert!(
        !details.iter().any(|d| d.contains("Hello from the API")),
        "{details:?}"
    );
}

#[tokio::test]
async fn the_admin_keeps_the_line_connected_members_list() {
    let (node, _files) = line_node().await;
    let admin = node.admin().await;
    let admin_token = token(&node, &node.admin_id, support::ADMIN_PASSWORD).await;
    let url = node.url.as_str();
    let alice = node.member("alice").await;
    let sam = node.member("sam").await;
    admin
        .admin
        .clone()
        .suspend_member(pb::SuspendMemberRequest {
            member_id: sam.id.clone(),
        })
        .await
        .unwrap();
    let mut line = admin.line.clone();
    let add = |id: &str| pb::AddConnectedRequest {
        member_id: id.into(),
    };

    line.add_line_connected(add(&alice.id)).await.expect("add");
    check(
        line.add_line_connected(add(&alice.id)).await,
        Code::AlreadyExists,
        "already on the LINE connected-members list",
    );
    check(
        line.add_line_connected(add("nobody@a.example")).await,
        Code::NotFound,
        "nobody@a.example",
    );
    check(
        line.add_line_connected(add(&sam.id)).await,
        Code::FailedPrecondition,
        "suspended",
    );
    check(
        line.add_line_connected(add("bob@b.example")).await,
        Code::InvalidArgument,
        "member_id",
    );
    let listed = line
        .list_line_connected(pb::ListConnectedRequest {})
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(
        listed
            .iter()
            .map(|m| (
                m.member_id.as_str(),
                m.display_name.as_str(),
                m.granted_by.as_str()
            ))
            .collect::<Vec<_>>(),
        [(alice.id.as_str(), "Alice", node.admin_id.as_str())]
    );
    // The list for other companies is another list.
    let external = admin
        .external
        .clone()
        .list_connected(pb::ListConnectedRequest {})
        .await
        .unwrap()
        .into_inner()
        .members;
    assert!(external.is_empty(), "{external:?}");

    // The command line: remove, list, add again.
    let removed = json(
        &["admin", "line", "connected", "remove", &alice.id],
        url,
        &admin_token,
    )
    .await;
    assert_eq!(removed, json!({"disconnected": alice.id}));
    let empty = json(&["admin", "line", "connected", "list"], url, &admin_token).await;
    assert_eq!(empty, json!({"members": []}));
    let again = run(
        &["admin", "line", "connected", "remove", &alice.id],
        Some(url),
        Some(&admin_token),
    )
    .await;
    assert!(
        !again.ok && again.stderr.contains("not found"),
        "{}",
        again.stderr
    );
    let added = run(
        &["admin", "line", "connected", "add", &alice.id],
        Some(url),
        Some(&admin_token),
    )
    .await;
    assert!(added.ok, "{}", added.stderr);
    assert_eq!(
        added.stdout.trim(),
        format!("{} may now chat with LINE users", alice.id)
    );
    let listed = json(&["admin", "line", "connected", "list"], url, &admin_token).await;
    let members: Vec<&Value> = listed["members"].as_array().unwrap().iter().collect();
    assert_eq!(members.len(), 1, "{listed}");
    assert_eq!(
        (&members[0]["member_id"], &members[0]["granted_by"]),
        (&json!(alice.id), &json!(node.admin_id))
    );
    let text = run(
        &["admin", "line", "connected", "list"],
        Some(url),
        Some(&admin_token),
    )
    .await;
    assert!(
        text.stdout.starts_with(&alice.id) && text.stdout.contains("granted by admin@a.example"),
        "{}",
        text.stdout
    );

    // Admins only.
    let mut alices_line = alice.client.line.clone();
    check(
        alices_line
            .list_line_connected(pb::ListConnectedRequest {})
            .await,
        Code::PermissionDenied,
        "admin",
    );
    check(
        alices_line.add_line_connected(add(&alice.id)).await,
        Code::PermissionDenied,
        "admin",
    );

    let added = audit(&admin, "line.connected.added").await;
    assert_eq!(
        added
            .iter()
            .map(|e| (e.kind.as_str(), e.member.as_str(), e.actor.as_str()))
            .collect::<Vec<_>>(),
        [
            (
                "line.connected.added",
                alice.id.as_str(),
                node.admin_id.as_str()
            ),
            (
                "line.connected.added",
                alice.id.as_str(),
                node.admin_id.as_str()
            ),
        ]
    );
    let removed = audit(&admin, "line.connected.removed").await;
    assert_eq!(removed.len(), 1, "{removed:?}");
}

#[tokio::test]
async fn a_member_gets_their_line_invitation_once_permitted() {
    let (node, _files) = line_node().await;
    let admin = node.admin().await;
    let alice = node.member("alice").await;
    let alice_token = token(&node, &alice.id, support::PASSWORD).await;
    let url = node.url.as_str();
    let mut alices_line = alice.client.line.clone();
    let mut line = admin.line.clone();

    let refusal = "your admin has not allowed you to chat with LINE users";
    check(
        alices_line
            .get_line_invite(pb::GetLineInviteRequest {})
            .await,
        Code::PermissionDenied,
        refusal,
    );
    // On the list while LINE is off: still refused.
    line.add_line_connected(pb::AddConnectedRequest {
        member_id: alice.id.clone(),
    })
    .await
    .unwrap();
    let refused = run(&["line", "invite"], Some(url), Some(&alice_token)).await;
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("permission denied") && refused.stderr.contains(refusal),
        "{}",
        refused.stderr
    );
    // LINE on, and off the list: refused.
    line.set_line_settings(pb::SetLineSettingsRequest {
        enabled: Some(true),
        ..Default::default()
    })
    .await
    .unwrap();
    line.remove_line_connected(pb::RemoveConnectedRequest {
        member_id: alice.id.clone(),
    })
    .await
    .unwrap();
    check(
        alices_line
            .get_line_invite(pb::GetLineInviteRequest {})
            .await,
        Code::PermissionDenied,
        refusal,
    );
    line.add_line_connected(pb::AddConnectedRequest {
        member_id: alice.id.clone(),
    })
    .await
    .unwrap();

    let link = "https://line.me/R/oaMessage/%40123abcde/?Hello%20alice%40a.example";
    let invite = alices_line
        .get_line_invite(pb::GetLineInviteRequest {})
        .await
        .expect("invite")
        .into_inner();
    assert_eq!(
        (
            invite.message_id.as_str(),
            invite.basic_id.as_str(),
            invite.link.as_str()
        ),
        ("alice@a.example", BASIC_ID, link)
    );
    assert!(invite.qr_svg.starts_with("<svg") || invite.qr_svg.contains("<svg"));

    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("line-qr.png");
    let shown = run(
        &["line", "invite", "--qr-png", png.to_str().unwrap()],
        Some(url),
        Some(&alice_token),
    )
    .await;
    assert!(shown.ok, "{}", shown.stderr);
    assert!(
        shown.stdout.contains("message ID: alice@a.example")
            && shown.stdout.contains(&format!("link: {link}")),
        "{}",
        shown.stdout
    );
    // The code drawn in the terminal: many lines of block characters.
    let drawn = shown
        .stdout
        .lines()
        .filter(|l| l.chars().any(|c| matches!(c, '█' | '▀' | '▄')))
        .count();
    assert!(drawn > 10, "{}", shown.stdout);
    let decoded = image::load_from_memory(&std::fs::read(&png).expect("the PNG is written"))
        .expect("the PNG decodes");
    assert!(decoded.width() >= 21 && decoded.width() == decoded.height());

    let as_json = json(&["line", "invite"], url, &alice_token).await;
    assert_eq!(
        (&as_json["message_id"], &as_json["link"]),
        (&json!("alice@a.example"), &json!(link))
    );
}

#[tokio::test]
async fn without_a_line_section_line_cannot_be_switched_on() {
    let node = TestNode::start("a.example").await;
    let admin = node.admin().await;
    let mut line = admin.line.clone();
    let settings = line
        .get_line_settings(pb::GetLineSettingsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            settings.enabled,
            settings.channel_id.as_str(),
            settings.basic_id.as_str()
        ),
        (false, "", "")
    );
    check(
        line.set_line_settings(pb::SetLineSettingsRequest {
            enabled: Some(true),
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
        "add a [line] section",
    );
    // The other settings can be prepared before the channel exists.
    let after = line
        .set_line_settings(pb::SetLineSettingsRequest {
            auto_grant: Some(true),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(after.auto_grant && !after.enabled);

    let admin_token = token(&node, &node.admin_id, support::ADMIN_PASSWORD).await;
    let shown = run(
        &["admin", "line", "show"],
        Some(&node.url),
        Some(&admin_token),
    )
    .await;
    assert!(
        shown
            .stdout
            .contains("none (add a [line] section to node.toml)"),
        "{}",
        shown.stdout
    );
    let refused = run(
        &["admin", "line", "set", "--enabled", "on"],
        Some(&node.url),
        Some(&admin_token),
    )
    .await;
    assert!(
        !refused.ok
            && refused.stderr.contains("failed precondition")
            && refused.stderr.contains("add a [line] section"),
        "{}",
        refused.stderr
    );

    let alice = node.member("alice").await;
    check(
        alice
            .client
            .line
            .clone()
            .get_line_invite(pb::GetLineInviteRequest {})
            .await,
        Code::FailedPrecondition,
        "no LINE account",
    );
}

#[tokio::test]
async fn a_node_whose_line_secret_file_is_missing_does_not_start() {
    let files = credentials();
    let mut node = TestNode::start("a.example").await;
    node.terminate().await;
    let missing = files.path().join("line-secret");
    std::fs::remove_file(&missing).unwrap();
    node.edit_config(|c| c.line = Some(line_config(files.path())));
    let serve = tokio::process::Command::new(support::binary())
        .arg("serve")
        .arg("--data")
        .arg(node.data_dir())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), serve)
        .await
        .expect("serve exits rather than starting")
        .expect("run serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot read the LINE channel secret file {}",
            missing.display()
        )),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("api listening on"),
        "it must not listen"
    );
}

/// A channel secret others on the machine could read is refused at start,
/// naming the file and the fix.
#[tokio::test]
async fn a_line_secret_readable_by_others_stops_the_node() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = tenant_node::config::LineConfig {
        api_base_url: "http://127.0.0.1:9".into(),
        data_api_base_url: "http://127.0.0.1:9".into(),
        channel_id: "1".into(),
        channel_secret_file: secret.clone(),
        access_token_file: token,
        basic_id: "@123abcde".into(),
        webhook_listen: None,
    };
    let err = tenant_node::messaging_api::Channel::open(&config, dir.path()).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains(&secret.display().to_string()) && text.contains("chmod 600"),
        "{text}"
    );
}
