//! What a hostile peer (or a careless client) can make a node say back:
//! error messages that quote a huge id, and the texts its members see.
//!
//! The attacker is a peered company's node with its own genuine
//! certificate: it calls the bridge with whatever content it likes.

use crate::support::{self, TestNode, peer_with};
use tonic::Code;
use works_proto::client::v1 as pb;
use works_proto::federation::v1 as fed;

/// Longest status message a node sends (`works_bridge::error`).
const MAX_MESSAGE: usize = 1024;

/// An id no real one is like: longer than gRPC's 16 KiB header list, were
/// it quoted whole in the status message.
fn huge_id() -> String {
    "Z".repeat(20_000)
}

/// A refusal with the code a short bad id gets, a message under the bound
/// that still names the field, and the id clipped with its length.
#[track_caller]
fn check_clipped<T: std::fmt::Debug>(
    rpc: &str,
    result: Result<T, tonic::Status>,
    code: Code,
    names: &str,
) {
    let status = match result {
        Ok(value) => panic!("{rpc}: expected {code:?}, got Ok({value:?})"),
        Err(status) => status,
    };
    let message = status.message();
    assert_eq!(status.code(), code, "{rpc}: {:.200}", message);
    assert!(
        message.len() <= MAX_MESSAGE,
        "{rpc}: a message of {} bytes",
        message.len()
    );
    assert!(
        message.contains(names),
        "{rpc}: {message:?} lacks {names:?}"
    );
    assert!(
        message.contains("… (") && message.contains(" characters)"),
        "{rpc}: {message:?} does not say the id was cut"
    );
}

#[tokio::test]
async fn a_huge_id_gets_its_precise_refusal_on_the_client_api() {
    let a = TestNode::start("a.example").await;
    let alice = a.member("alice").await;
    let admin = a.admin().await;
    let huge = huge_id();

    // The same codes as a short bad id gets.
    support::check(
        alice
            .client
            .rooms
            .clone()
            .get_room(pb::GetRoomRequest {
                room_id: "not-a-room".into(),
            })
            .await,
        Code::InvalidArgument,
        "room id",
    );

    check_clipped(
        "Login",
        a.anonymous()
            .await
            .auth
            .clone()
            .login(pb::LoginRequest {
                member_id: huge.clone(),
                password: "whatever".into(),
            })
            .await,
        Code::InvalidArgument,
        "member_id",
    );
    check_clipped(
        "History",
        alice
            .client
            .rooms
            .clone()
            .history(pb::HistoryRequest {
                room_id: huge.clone(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "room_id",
    );
    check_clipped(
        "GetRoom",
        alice
            .client
            .rooms
            .clone()
            .get_room(pb::GetRoomRequest {
                room_id: huge.clone(),
            })
            .await,
        Code::InvalidArgument,
        "room_id",
    );
    check_clipped(
        "FindUser",
        alice
            .client
            .contacts
            .clone()
            .find_user(pb::FindUserRequest {
                user_id: huge.clone(),
            })
            .await,
        Code::InvalidArgument,
        "user_id",
    );
    check_clipped(
        "DownloadAttachment",
        alice
            .client
            .rooms
            .clone()
            .download_attachment(pb::DownloadAttachmentRequest {
                attachment_id: huge.clone(),
            })
            .await,
        Code::NotFound,
        "attachment",
    );
    check_clipped(
        "SuspendMember",
        admin
            .admin
            .clone()
            .suspend_member(pb::SuspendMemberRequest {
                member_id: huge.clone(),
            })
            .await,
        Code::InvalidArgument,
        "member_id",
    );
}

#[tokio::test]
async fn a_huge_id_from_a_peer_gets_its_precise_refusal_on_the_bridge() {
    let a = TestNode::start("a.example").await;
    let b = TestNode::start("b.example").await;
    peer_with(&a, &b).await;
    // B's node itself, with its genuine certificate, calling A's bridge.
    let mut attacker = support::bridge_client(&a, &b.tls_files().load_node().unwrap()).await;
    let huge = huge_id();

    support::check(
        attacker
            .raw()
            .lookup_user(fed::LookupUserRequest {
                requester: "mallory@b.example".into(),
                user: "nobody".into(),
            })
            .await,
        Code::NotFound,
        "user nobody",
    );
    check_clipped(
        "LookupUser",
        attacker
            .raw()
            .lookup_user(fed::LookupUserRequest {
                requester: "mallory@b.example".into(),
                user: huge.clone(),
            })
            .await,
        Code::NotFound,
        "user",
    );
    check_clipped(
        "LookupUser requester",
        attacker
            .raw()
            .lookup_user(fed::LookupUserRequest {
                requester: huge.clone(),
                user: "alice@a.example".into(),
            })
            .await,
        Code::InvalidArgument,
        "requester",
    );
    check_clipped(
        "FetchAttachment",
        attacker
            .raw()
            .fetch_attachment(fed::FetchAttachmentRequest {
                requester: "mallory@b.example".into(),
                attachment_id: huge.clone(),
            })
            .await,
        Code::NotFound,
        "attachment",
    );
    // A name part of 20,000 characters passes the tenant check and is
    // quoted when the profile is someone else's.
    let long_member = format!("{}@b.example", "m".repeat(20_000));
    check_clipped(
        "SendFriendRequest",
        attacker
            .raw()
            .send_friend_request(fed::FriendRequest {
                request_id: "01ATTACK".into(),
                from: long_member.clone(),
                to: "alice@a.example".into(),
                from_profile: Some(fed::PublicProfile {
                    user: format!("x{long_member}"),
                    display_name: "Mallory".into(),
                    company: "B".into(),
                    ..Default::default()
                }),
                invitation: String::new(),
            })
            .await,
        Code::PermissionDenied,
        "from_profile",
    );
}

// ---- text from another company on a member's terminal ---------------------

/// Runs the real CLI as a member; returns stdout, failing on a non-zero exit.
async fn cli(node: &str, token: &str, args: &[&str]) -> String {
    let mut command = tokio::process::Command::new(support::binary());
    command.args(args).env("WORKS_NODE", node);
    if token.is_empty() {
        command.env_remove("WORKS_TOKEN");
    } else {
        command.env("WORKS_TOKEN", token);
    }
    let out = command.output().await.expect("run the cli");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// What must never reach a terminal raw from another company.
fn raw_controls(shown: &str) -> Vec<char> {
    shown
        .chars()
        .filter(|&c| {
            (c.is_control() && c != '\n')
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect()
}

#[track_caller]
fn check_shown(what: &str, shown: &str, escaped: &[&str]) {
    assert!(
        raw_controls(shown).is_empty(),
        "{what} printed raw {:?}: {shown:?}",
        raw_controls(shown)
    );
    for e in escaped {
        assert!(shown.contains(e), "{what} lacks {e:?}: {shown}");
    }
}

#[tokio::test]
async fn another_companys_text_cannot_drive_a_members_terminal() {
    let (a, b, alice, bob) = support::pair().await;
    let mut attacker = support::bridge_client(&a, &b.tls_files().load_node().unwrap()).await;
    let friend_request = |id: &str, name: &str, company: &str| fed::FriendRequest {
        request_id: id.into(),
        from: "mallory@b.example".into(),
        to: alice.id.clone(),
        from_profile: Some(fed::PublicProfile {
            user: "mallory@b.example".into(),
            display_name: name.into(),
            company: company.into(),
            ..Default::default()
        }),
        invitation: String::new(),
    };

    // Names with terminal controls are refused by the node itself...
    support::check(
        attacker
            .raw()
            .send_friend_request(friend_request(
                "01TITLE",
                "\x1b]0;pwned\x07Mallory",
                "\x1b[2JEvil Corp",
            ))
            .await,
        Code::InvalidArgument,
        "control characters",
    );
    // ...but bidi overrides and isolates are not controls: they pass and
    // reach the terminal, where they reorder what follows them.
    attacker
        .raw()
        .send_friend_request(friend_request(
            "01BIDI",
            "Mallory \u{202e}fdp.exe",
            "Evil \u{2066}Corp\u{2069}",
        ))
        .await
        .expect("a pending request");
    support::stored(
        &support::relay_control(
            &mut attacker,
            "b.example",
            support::wire::profile(
                fed::PublicProfile {
                    user: bob.id.clone(),
                    display_name: "Bob \u{202e}nimda".into(),
                    company: "B \u{202d}Holdings \u{2066}Group\u{2069}".into(),
                    ..Default::default()
                },
                &[&alice.id],
            ),
        )
        .await,
    );

    // B's member, through B's real client API: a message whose text sets
    // the terminal's title, clears the screen and fakes a line of output,
    // and a group room whose name turns text around.
    let direct = support::room_with(&bob, &alice.id).await;
    let message = "\x1b]0;pwned\x07\x1b[2Jhi\n#99 admin@a.example: send me your password\u{9b}2J";
    bob.send(&direct.id, message).await.expect("send");
    let group = bob.group_room("Team \u{202e}terces", &[&alice.id]).await;
    support::until_texts(&alice, &direct.id, 1).await;
    support::until(support::RELAY_DEADLINE, "alice sees the group", || async {
        alice.rooms().await.iter().any(|r| r.id == group.id)
    })
    .await;

    let token = cli(
        &a.url,
        "",
        &[
            "login",
            "--user",
            &alice.id,
            "--password",
            support::PASSWORD,
        ],
    )
    .await;
    let token = token.trim();

    let requests = cli(&a.url, token, &["request", "list"]).await;
    check_shown(
        "request list",
        &requests,
        // The company is b.example's one name, the latest it sent.
        &[
            "Mallory \\u{202e}fdp.exe",
            "B \\u{202d}Holdings \\u{2066}Group\\u{2069} (b.example)",
        ],
    );
    let contacts = cli(&a.url, token, &["contact", "list"]).await;
    check_shown(
        "contact list",
        &contacts,
        &[
            "Bob \\u{202e}nimda",
            "B \\u{202d}Holdings \\u{2066}Group\\u{2069} (b.example)",
        ],
    );
    let history = cli(&a.url, token, &["room", "history", &direct.id]).await;
    check_shown(
        "room history",
        &history,
        &["\\x1b]0;pwned\\x07\\x1b[2Jhi\\n#99 admin@a.example: send me your password\\u{9b}2J"],
    );
    assert!(
        history.lines().all(|l| !l.starts_with("#99")),
        "a message posed as a line of its own: {history}"
    );
    let rooms = cli(&a.url, token, &["room", "list"]).await;
    check_shown("room list", &rooms, &["Team \\u{202e}terces"]);
    let group_history = cli(&a.url, token, &["room", "history", &group.id]).await;
    check_shown(
        "group history",
        &group_history,
        &["created \"Team \\u{202e}terces\""],
    );
    let events = alice.history(&direct.id).await.unwrap().len().to_string();
    let watched = cli(
        &a.url,
        token,
        &[
            "room", "watch", &direct.id, "--since", "0", "--count", &events,
        ],
    )
    .await;
    check_shown("room watch", &watched, &["\\x1b]0;pwned\\x07"]);
    // Ordinary text from others is shown as it is.
    bob.send(&direct.id, "Ünïcødé 日本語 👨‍👩‍👧").await.unwrap();
    support::until_texts(&alice, &direct.id, 2).await;
    let history = cli(&a.url, token, &["room", "history", &direct.id]).await;
    assert!(history.contains("Ünïcødé 日本語 👨‍👩‍👧"), "{history}");

    // Scripts get the exact text, every control in it a JSON escape.
    let json = cli(&a.url, token, &["room", "history", &direct.id, "--json"]).await;
    assert!(raw_controls(json.trim_end()).is_empty(), "{json:?}");
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let texts: Vec<&str> = parsed["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["body"]["text"].as_str())
        .collect();
    assert_eq!(texts, [message, "Ünïcødé 日本語 👨‍👩‍👧"]);
    let json = cli(&a.url, token, &["request", "list", "--json"]).await;
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mallory = parsed["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["user_id"] == "mallory@b.example")
        .expect("mallory's request");
    assert_eq!(mallory["display_name"], "Mallory \u{202e}fdp.exe");
}

// ---- audit search ---------------------------------------------------------

async fn set_company(admin: &tenant_node::client::Client, name: &str) {
    admin
        .external
        .clone()
        .set_external_settings(pb::SetExternalSettingsRequest {
            company: Some(name.into()),
            ..Default::default()
        })
        .await
        .expect("company name set");
}

/// The details of the entries an audit search for `text` finds.
async fn audit_details(admin: &tenant_node::client::Client, text: &str) -> Vec<String> {
    admin
        .audit
        .clone()
        .search_audit(pb::AuditSearchRequest {
            text: text.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("search {text:?}: {e}"))
        .into_inner()
        .entries
        .into_iter()
        .map(|e| e.detail)
        .collect()
}

#[tokio::test]
async fn audit_search_folds_case_and_accents_and_takes_wildcards_literally() {
    let mut a = TestNode::start("a.example").await;
    let admin = a.admin().await;
    set_company(&admin, "École Polytechnique").await;
    set_company(&admin, "Tarifs 100% garantis").await;
    set_company(&admin, "snake_case Ltd").await;
    let ecole = r#"company name "École Polytechnique""#;
    let percent = r#"company name "Tarifs 100% garantis""#;
    let underscore = r#"company name "snake_case Ltd""#;

    for spelling in ["école", "ÉCOLE", "ecole", "Ecole POLYtechnique"] {
        assert_eq!(
            audit_details(&admin, spelling).await,
            [ecole],
            "{spelling:?}"
        );
    }
    assert!(audit_details(&admin, "%%%").await.is_empty(), "%%% matched");
    assert_eq!(audit_details(&admin, "%").await, [percent]);
    assert_eq!(audit_details(&admin, "100%").await, [percent]);
    assert_eq!(audit_details(&admin, "_").await, [underscore]);
    assert!(audit_details(&admin, "snake_case_").await.is_empty());

    // The admin's CLI searches the same way.
    let token = cli(
        &a.url,
        "",
        &[
            "login",
            "--user",
            &a.admin_id,
            "--password",
            support::ADMIN_PASSWORD,
        ],
    )
    .await;
    let found = cli(
        &a.url,
        token.trim(),
        &["admin", "audit", "search", "--text", "ÉCOLE", "--json"],
    )
    .await;
    let found: serde_json::Value = serde_json::from_str(&found).unwrap();
    assert_eq!(found["entries"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["entries"][0]["detail"], ecole);

    // A filter longer than any phrase is refused, naming the limit,
    // whether just over it or over what the database takes.
    for long in ["é".repeat(257), "x".repeat(60_000)] {
        support::check(
            admin
                .audit
                .clone()
                .search_audit(pb::AuditSearchRequest {
                    text: long,
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            "text: must be at most 256 characters",
        );
    }
    assert_eq!(audit_details(&admin, &"é".repeat(256)).await.len(), 0);

    // Entries written before the node kept a folded copy are found once
    // it starts again.
    a.kill().await;
    let db = a.data_dir().join("node.db");
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        db.display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE audit_log SET folded = NULL")
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    a.restart().await;
    let admin = a.admin().await;
    assert_eq!(audit_details(&admin, "ecole").await, [ecole]);
    let verified = admin
        .audit
        .clone()
        .verify_audit(pb::VerifyAuditRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(verified.ok, "{}", verified.reason);
}
