//! External messaging policy, admission on both ends, and the audit log.

use std::time::Duration;

use crate::support::{self, Member, TestNode, check, peer_with as peer};
use tenant_node::client::Client;
use tonic::Code;
use works_proto::client::v1 as pb;

async fn set(admin: &Client, change: pb::SetExternalSettingsRequest) -> pb::ExternalSettings {
    admin
        .external
        .clone()
        .set_external_settings(change)
        .await
        .unwrap()
        .into_inner()
}

async fn enable(admin: &Client, on: bool) {
    set(
        admin,
        pb::SetExternalSettingsRequest {
            enabled: Some(on),
            ..Default::default()
        },
    )
    .await;
}

async fn connect(admin: &Client, member: &str, on: bool) {
    let mut external = admin.external.clone();
    if on {
        external
            .add_connected(pb::AddConnectedRequest {
                member_id: member.into(),
            })
            .await
            .unwrap();
    } else {
        external
            .remove_connected(pb::RemoveConnectedRequest {
                member_id: member.into(),
            })
            .await
            .unwrap();
    }
}

async fn find(who: &Member, user: &str) -> Result<pb::ExternalProfile, tonic::Status> {
    who.client
        .contacts
        .clone()
        .find_user(pb::FindUserRequest {
            user_id: user.into(),
        })
        .await
        .map(|r| r.into_inner())
}

/// Waits until `admin`'s node has recorded `n` reachability notices from
/// its peers (they come through the peers' outboxes).
async fn until_reachability(admin: &Client, n: usize) {
    support::until(support::RELAY_DEADLINE, "the peer's notice", || async {
        audit(
            admin,
            pb::AuditSearchRequest {
                text: "peer.reachability".into(),
                ..Default::default()
            },
        )
        .await
        .iter()
        .filter(|e| e.kind == "peer.reachability")
        .count()
            >= n
    })
    .await;
}

async fn audit(admin: &Client, filter: pb::AuditSearchRequest) -> Vec<pb::AuditEntry> {
    admin
        .audit
        .clone()
        .search_audit(filter)
        .await
        .unwrap()
        .into_inner()
        .entries
}

/// Two peered companies with one member each; a's and b's company names set.
async fn two_companies() -> (TestNode, TestNode, Member, Member) {
    let a = TestNode::start("a.example").await;
    let b = TestNode::start("b.example").await;
    peer(&a, &b).await;
    let alice = a.member("alice").await;
    let bob = b.member("bob").await;
    set(
        &b.admin().await,
        pb::SetExternalSettingsRequest {
            company: Some("B Corp".into()),
            ..Default::default()
        },
    )
    .await;
    (a, b, alice, bob)
}

#[tokio::test]
async fn a_lookup_is_admitted_in_exactly_one_of_sixteen_combinations() {
    let (a, b, alice, bob) = two_companies().await;
    let (a_admin, b_admin) = (a.admin().await, b.admin().await);
    let mut connected = (false, false);
    let mut admitted = Vec::new();
    for bits in 0..16u8 {
        let (a_on, a_conn, b_on, b_conn) =
            (bits & 1 != 0, bits & 2 != 0, bits & 4 != 0, bits & 8 != 0);
        enable(&a_admin, a_on).await;
        enable(&b_admin, b_on).await;
        if connected.0 != a_conn {
            connect(&a_admin, &alice.id, a_conn).await;
        }
        if connected.1 != b_conn {
            connect(&b_admin, &bob.id, b_conn).await;
        }
        connected = (a_conn, b_conn);
        let result = find(&alice, &bob.id).await;
        let case = format!(
            "A enabled {a_on}, alice connected {a_conn}, B enabled {b_on}, bob connected {b_conn}"
        );
        match (a_on, a_conn) {
            (false, _) => check(
                result,
                Code::FailedPrecondition,
                "your company has not enabled",
            ),
            (true, false) => check(
                result,
                Code::PermissionDenied,
                "you are not on your company's connected-members list",
            ),
            // A's half admits; B's half decides and says nothing of why.
            (true, true) if !(b_on && b_conn) => check(result, Code::NotFound, "bob@b.example"),
            (true, true) => {
                let profile = result.unwrap_or_else(|e| panic!("{case}: {e:?}"));
                assert_eq!(
                    (
                        profile.user_id.as_str(),
                        profile.display_name.as_str(),
                        profile.company.as_str()
                    ),
                    ("bob@b.example", "Bob", "B Corp")
                );
                admitted.push(case);
            }
        }
    }
    assert_eq!(admitted.len(), 1, "{admitted:?}");
    // The other direction goes through B's own half first.
    let back = find(&bob, &alice.id).await.unwrap();
    assert_eq!(
        (back.display_name.as_str(), back.company.as_str()),
        ("Alice", "a.example Inc.")
    );
}

#[tokio::test]
async fn lookups_refuse_bad_ids_own_company_and_unpeered_tenants() {
    let (a, _b, alice, _bob) = two_companies().await;
    let admin = a.admin().await;
    enable(&admin, true).await;
    connect(&admin, &alice.id, true).await;
    check(
        find(&alice, "not an id").await,
        Code::InvalidArgument,
        "name@tenant",
    );
    check(
        find(&alice, "carol@a.example").await,
        Code::InvalidArgument,
        "in your own company",
    );
    check(
        find(&alice, "zed@z.example").await,
        Code::FailedPrecondition,
        "not peered with z.example",
    );
    check(
        find(&alice, "nobody@b.example").await,
        Code::NotFound,
        "nobody@b.example",
    );
}

#[tokio::test]
async fn granting_notifies_the_member_and_auto_grant_connects_new_members() {
    let a = TestNode::start("a.example").await;
    let admin = a.admin().await;
    let alice = a.member("alice").await;
    let mut stream = alice.watch(&[]).await.unwrap();
    connect(&admin, &alice.id, true).await;
    let notice = stream.next_notice().await;
    assert_eq!(notice.kind, "external_granted");
    assert!(notice.text.contains("other companies"), "{}", notice.text);
    connect(&admin, &alice.id, false).await;
    assert_eq!(stream.next_notice().await.kind, "external_revoked");
    let listed: Vec<String> = alice
        .client
        .profiles
        .clone()
        .list_notices(pb::ListNoticesRequest {})
        .await
        .unwrap()
        .into_inner()
        .notices
        .into_iter()
        .map(|n| n.kind)
        .collect();
    assert_eq!(listed, vec!["external_granted", "external_revoked"]);

    // Auto-grant applies only while external messaging is on.
    set(
        &admin,
        pb::SetExternalSettingsRequest {
            auto_grant: Some(true),
            ..Default::default()
        },
    )
    .await;
    let carol = a.member("carol").await;
    enable(&admin, true).await;
    let dave = a.member("dave").await;
    let connected: Vec<String> = admin
        .external
        .clone()
        .list_connected(pb::ListConnectedRequest {})
        .await
        .unwrap()
        .into_inner()
        .members
        .into_iter()
        .map(|m| m.member_id)
        .collect();
    assert_eq!(connected, vec![dave.id.clone()]);
    assert!(!connected.contains(&carol.id));
    let dave_notices = dave
        .client
        .profiles
        .clone()
        .list_notices(pb::ListNoticesRequest {})
        .await
        .unwrap()
        .into_inner()
        .notices;
    assert_eq!(dave_notices.len(), 1);

    let mut external = admin.external.clone();
    check(
        external
            .add_connected(pb::AddConnectedRequest {
                member_id: dave.id.clone(),
            })
            .await,
        Code::AlreadyExists,
        "already",
    );
    check(
        external
            .add_connected(pb::AddConnectedRequest {
                member_id: "ghost@a.example".into(),
            })
            .await,
        Code::NotFound,
        "ghost",
    );
    check(
        external
            .add_connected(pb::AddConnectedRequest {
                member_id: "x@b.example".into(),
            })
            .await,
        Code::InvalidArgument,
        "not a member of a.example",
    );
    check(
        external
            .remove_connected(pb::RemoveConnectedRequest {
                member_id: carol.id.clone(),
            })
            .await,
        Code::NotFound,
        "connected member",
    );
    check(
        external
            .set_external_settings(pb::SetExternalSettingsRequest {
                company: Some(" ".into()),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "company",
    );
}

#[tokio::test]
async fn members_cannot_touch_policy_or_audit() {
    let a = TestNode::start("a.example").await;
    let alice = a.member("alice").await;
    let mut external = alice.client.external.clone();
    let mut audit = alice.client.audit.clone();
    check(
        external
            .get_external_settings(pb::GetExternalSettingsRequest {})
            .await,
        Code::PermissionDenied,
        "admin role",
    );
    check(
        external
            .set_external_settings(pb::SetExternalSettingsRequest {
                enabled: Some(true),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "admin role",
    );
    check(
        external
            .add_connected(pb::AddConnectedRequest {
                member_id: alice.id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "admin role",
    );
    check(
        external
            .remove_connected(pb::RemoveConnectedRequest {
                member_id: alice.id.clone(),
            })
            .await,
        Code::PermissionDenied,
        "admin role",
    );
    check(
        external.list_connected(pb::ListConnectedRequest {}).await,
        Code::PermissionDenied,
        "admin role",
    );
    check(
        audit.search_audit(pb::AuditSearchRequest::default()).await,
        Code::PermissionDenied,
        "admin role",
    );
    check(
        audit
            .export_audit(pb::AuditSearchRequest::default())
            .await
            .map(|_| ()),
        Code::PermissionDenied,
        "admin role",
    );
    check(
        audit.verify_audit(pb::VerifyAuditRequest {}).await,
        Code::PermissionDenied,
        "admin role",
    );
    // Nothing changed.
    let settings = a
        .admin()
        .await
        .external
        .clone()
        .get_external_settings(pb::GetExternalSettingsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!settings.enabled);
}

#[tokio::test]
async fn settings_toggled_while_lookups_flow_never_leak_or_fail_oddly() {
    let (a, b, alice, bob) = two_companies().await;
    let (a_admin, b_admin) = (a.admin().await, b.admin().await);
    enable(&a_admin, true).await;
    connect(&a_admin, &alice.id, true).await;
    enable(&b_admin, true).await;
    connect(&b_admin, &bob.id, true).await;
    let looker = {
        let alice = a.login(&alice.id).await;
        let bob_id = bob.id.clone();
        tokio::spawn(async move {
            let (mut found, mut hidden) = (0, 0);
            for _ in 0..60 {
                match find(&alice, &bob_id).await {
                    Ok(p) => {
                        assert_eq!(p.user_id, bob_id);
                        found += 1;
                    }
                    Err(s) if s.code() == Code::NotFound => hidden += 1,
                    Err(s) => panic!("unexpected answer while settings change: {s:?}"),
                }
            }
            (found, hidden)
        })
    };
    for i in 0..20 {
        enable(&b_admin, i % 2 == 1).await;
        // Paces the changes so that lookups fall between them.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (found, hidden) = looker.await.unwrap();
    assert_eq!(found + hidden, 60);
    // B ended with external messaging on (i = 19); switch it off: hidden for good.
    enable(&b_admin, false).await;
    check(find(&alice, &bob.id).await, Code::NotFound, "bob@b.example");
}

#[tokio::test]
async fn the_audit_log_finds_every_external_event_and_detects_tampering() {
    let (a, b, alice, bob) = two_companies().await;
    let (a_admin, b_admin) = (a.admin().await, b.admin().await);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 1;
    enable(&a_admin, true).await;
    connect(&a_admin, &alice.id, true).await;
    // B's notices come through its outbox: each is waited for.
    enable(&b_admin, true).await;
    until_reachability(&a_admin, 1).await;
    connect(&b_admin, &bob.id, true).await;
    until_reachability(&a_admin, 2).await;
    find(&alice, &bob.id).await.unwrap();
    connect(&b_admin, &bob.id, false).await;
    until_reachability(&a_admin, 3).await;
    check(find(&alice, &bob.id).await, Code::NotFound, "bob");

    let kinds =
        |entries: &[pb::AuditEntry]| entries.iter().map(|e| e.kind.clone()).collect::<Vec<_>>();
    let everything = audit(&a_admin, pb::AuditSearchRequest::default()).await;
    assert_eq!(
        kinds(&everything),
        vec![
            "peer.accepted",
            "policy.changed",
            "peer.notified",
            "connected.added",
            "peer.notified",
            "peer.reachability",
            "peer.reachability",
            "lookup",
            "peer.reachability",
            "lookup.refused"
        ],
        "{everything:#?}"
    );
    let by_external = audit(
        &a_admin,
        pb::AuditSearchRequest {
            external_user: bob.id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(kinds(&by_external), vec!["lookup", "lookup.refused"]);
    assert_eq!(by_external[0].detail, "found");
    let by_member = audit(
        &a_admin,
        pb::AuditSearchRequest {
            member: alice.id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        kinds(&by_member),
        vec!["connected.added", "lookup", "lookup.refused"]
    );
    let by_peer = audit(
        &a_admin,
        pb::AuditSearchRequest {
            peer_tenant: "b.example".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        kinds(&by_peer),
        vec![
            "peer.accepted",
            "peer.notified",
            "peer.notified",
            "peer.reachability",
            "peer.reachability",
            "lookup",
            "peer.reachability",
            "lookup.refused"
        ]
    );
    // B told A that bob is gone: A answered "unknown" itself and sent B nothing.
    assert_eq!(
        by_external[1].detail,
        "shown as unknown: their company withdrew them"
    );
    let by_text = audit(
        &a_admin,
        pb::AuditSearchRequest {
            text: "USE STATUS ON".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(kinds(&by_text), vec!["policy.changed"]);
    let in_window = audit(
        &a_admin,
        pb::AuditSearchRequest {
            since_ms: started,
            until_ms: started + 3_600_000,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        in_window.len(),
        everything.len() - 1,
        "peering happened before `started`"
    );
    assert!(
        audit(
            &a_admin,
            pb::AuditSearchRequest {
                since_ms: started + 3_600_000,
                ..Default::default()
            }
        )
        .await
        .is_empty()
    );
    check(
        a_admin
            .audit
            .clone()
            .search_audit(pb::AuditSearchRequest {
                since_ms: 10,
                until_ms: 5,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "before until",
    );

    // B's side recorded the incoming lookups, answered and hidden, with the reason kept at home.
    let incoming = audit(
        &b_admin,
        pb::AuditSearchRequest {
            text: "lookup.incoming".into(),
            ..Default::default()
        },
    )
    .await;
    let details: Vec<&str> = incoming.iter().map(|e| e.detail.as_str()).collect();
    assert_eq!(details, vec!["answered with the public profile"]);
    assert!(
        incoming
            .iter()
            .all(|e| e.actor == "peer:a.example" && e.external_user == alice.id)
    );

    let verified = a_admin
        .audit
        .clone()
        .verify_audit(pb::VerifyAuditRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        verified.ok && verified.entries == everything.len() as i64,
        "{verified:?}"
    );

    // Export through the CLI: valid JSON lines and CSV with the same entries.
    let token = a
        .anonymous()
        .await
        .auth
        .clone()
        .login(pb::LoginRequest {
            member_id: a.admin_id.clone(),
            password: "admin password 1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let export = |format: &'static str| {
        let (url, token) = (a.url.clone(), token.clone());
        async move {
            let out = tokio::process::Command::new(support::binary())
                .args(["admin", "audit", "export", "--format", format])
                .env("WORKS_NODE", url)
                .env("WORKS_TOKEN", token)
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }
    };
    let jsonl = export("jsonl").await;
    let lines: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), everything.len());
    assert_eq!(lines[7]["kind"], "lookup");
    assert_eq!(lines[7]["external_user"], "bob@b.example");
    let csv_text = export("csv").await;
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>()[..3],
        ["seq", "at_ms", "kind"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), everything.len());
    assert_eq!(&rows[7][2], "lookup");

    // Tampering with a stored entry is detected, at that entry.
    let db = a.data_dir().join("node.db");
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        db.display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE audit_log SET detail = 'nothing to see' WHERE seq = 8")
        .execute(&mut conn)
        .await
        .unwrap();
    let broken = a_admin
        .audit
        .clone()
        .verify_audit(pb::VerifyAuditRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!broken.ok);
    assert_eq!(broken.broken_at, 8);
    assert!(
        broken.reason.contains("do not match its hash"),
        "{}",
        broken.reason
    );
    // Removing the newest entries is detected too.
    sqlx::query("UPDATE audit_log SET detail = 'found' WHERE seq = 8")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_log WHERE seq = 10")
        .execute(&mut conn)
        .await
        .unwrap();
    let truncated = a_admin
        .audit
        .clone()
        .verify_audit(pb::VerifyAuditRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        !truncated.ok && truncated.reason.contains("removed"),
        "{truncated:?}"
    );
}

#[tokio::test]
async fn switching_off_makes_members_unknown_at_the_peer_until_switched_on_again() {
    let (a, b, alice, bob) = two_companies().await;
    let (a_admin, b_admin) = (a.admin().await, b.admin().await);
    enable(&a_admin, true).await;
    connect(&a_admin, &alice.id, true).await;
    enable(&b_admin, true).await;
    connect(&b_admin, &bob.id, true).await;
    find(&alice, &bob.id).await.unwrap();
    let incoming = |admin: Client| async move {
        audit(
            &admin,
            pb::AuditSearchRequest {
                text: "lookup.incoming".into(),
                ..Default::default()
            },
        )
        .await
        .len()
    };
    assert_eq!(incoming(b_admin.clone()).await, 1);

    enable(&b_admin, false).await;
    let unknown = || async {
        audit(
            &a_admin,
            pb::AuditSearchRequest {
                text: "all members unknown".into(),
                ..Default::default()
            },
        )
        .await
    };
    support::until(support::RELAY_DEADLINE, "B's notice", || async {
        !unknown().await.is_empty()
    })
    .await;
    let told = unknown().await;
    assert_eq!(told.len(), 1);
    assert_eq!(
        (told[0].kind.as_str(), told[0].actor.as_str()),
        ("peer.reachability", "peer:b.example")
    );
    check(
        find(&alice, &bob.id).await,
        Code::NotFound,
        "bob@b.example (unknown)",
    );
    assert_eq!(
        incoming(b_admin.clone()).await,
        1,
        "an unknown member gets no more traffic"
    );

    // Back on: bob is reachable again (he is still on B's connected list).
    enable(&b_admin, true).await;
    support::until(support::RELAY_DEADLINE, "B's notice", || async {
        audit(
            &a_admin,
            pb::AuditSearchRequest {
                text: "all members reachable again".into(),
                ..Default::default()
            },
        )
        .await
        .len()
            == 2
    })
    .await;
    let again = find(&alice, &bob.id).await.unwrap();
    assert_eq!(again.user_id, bob.id);
    assert_eq!(incoming(b_admin.clone()).await, 2);

    // A peer may speak only of its own members.
    // B's node itself, with its real certificate, calling A's bridge.
    let mut from_b = support::bridge_client(&a, &b.tls_files().load_node().unwrap()).await;
    support::refused(
        &support::relay_control(
            &mut from_b,
            "b.example",
            support::wire::reachability(&[&alice.id], false),
        )
        .await,
        "b.example cannot speak for alice@a.example",
    );
    let mut both =
        support::wire::control("b.example", support::wire::reachability(&[&bob.id], true));
    if let Some(support::wire::Payload::Reachability(r)) = &mut both.payload {
        r.all_members = true;
    }
    let acks = support::relay_once(&mut from_b, vec![both]).await;
    support::refused(&acks[0], "not both");
    // Alice is still reachable from A's own point of view: nothing was stored.
    let alice_unknown = audit(
        &a_admin,
        pb::AuditSearchRequest {
            text: alice.id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert!(
        alice_unknown.iter().all(|e| e.kind != "peer.reachability"),
        "{alice_unknown:?}"
    );
}
