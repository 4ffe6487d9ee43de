//! Two companies' nodes find and trust each other, and nothing else gets in.
//! Every certificate is minted by `works-certs` at test time.

use std::time::{Duration, SystemTime};

use crate::support::wire;
use crate::support::{self, TestNode, bridge_client, check, peers, refused, relay_control};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tenant_node::client::Client;
use tonic::Code;
use works_bridge::{PeerClient, TenantId, tls};
use works_certs::{NodeCert, TenantCa, Validity};
use works_proto::client::v1 as pb;
use works_proto::federation::v1 as fed;

fn tenant(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

async fn invite(admin: &Client, for_tenant: &str, ttl_secs: u64) -> String {
    admin
        .peering
        .clone()
        .invite_peer(pb::InvitePeerRequest {
            for_tenant: for_tenant.into(),
            ttl_secs,
        })
        .await
        .unwrap()
        .into_inner()
        .token
}

async fn accept(admin: &Client, token: &str) -> Result<pb::Peer, tonic::Status> {
    admin
        .peering
        .clone()
        .accept_peer(pb::AcceptPeerRequest {
            token: token.into(),
        })
        .await
        .map(|r| r.into_inner())
}

/// Rewrites one field of an invitation token, as an attacker could.
fn tamper(token: &str, field: &str, value: serde_json::Value) -> String {
    let body = token.strip_prefix("wpi1.").unwrap();
    let mut json: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
    json[field] = value;
    format!(
        "wpi1.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json).unwrap())
    )
}

/// Peers `a` with `b` by invitation from `b`.
async fn peer(a: &TestNode, b: &TestNode) {
    let token = invite(&b.admin().await, "", 0).await;
    accept(&a.admin().await, &token).await.unwrap();
}

/// Redeems a made-up secret, claiming `tenant` and presenting `ca_of`'s CA.
async fn redeem(
    client: &mut PeerClient,
    tenant: &str,
    ca_of: &TestNode,
) -> Result<tonic::Response<fed::RedeemResponse>, tonic::Status> {
    client
        .raw()
        .redeem(fed::RedeemRequest {
            secret: vec![1; 32],
            tenant: tenant.into(),
            endpoint: "127.0.0.1:9".into(),
            ca_certificate: ca_of.tls_files().load_ca().unwrap().der().to_vec(),
        })
        .await
}

fn issued_by(node: &TestNode, name: &str, validity: Validity) -> NodeCert {
    node.tls_files()
        .load_ca()
        .unwrap()
        .issue_node(&tenant(name), &[], validity)
        .unwrap()
}

#[tokio::test]
async fn two_companies_peer_by_invitation_and_unpeer_on_both_sides() {
    let a = TestNode::start("a.example").await;
    let b = TestNode::start("b.example").await;
    let (a_admin, b_admin) = (a.admin().await, b.admin().await);

    let token = invite(&b_admin, "", 600).await;
    let peered = accept(&a_admin, &token).await.unwrap();
    assert_eq!(
        (
            peered.tenant.as_str(),
            peered.endpoint.as_str(),
            peered.state.as_str()
        ),
        ("b.example", b.bridge.as_str(), "active")
    );
    assert_eq!(
        peered.ca_fingerprints,
        vec![b.tls_files().load_ca().unwrap().fingerprint()]
    );

    let seen_by_b = peers(&b_admin).await;
    assert_eq!(seen_by_b.len(), 1);
    assert_eq!(
        (
            seen_by_b[0].tenant.as_str(),
            seen_by_b[0].endpoint.as_str(),
            seen_by_b[0].source.as_str()
        ),
        ("a.example", a.bridge.as_str(), "invitation")
    );
    assert_eq!(
        seen_by_b[0].ca_fingerprints,
        vec![a.tls_files().load_ca().unwrap().fingerprint()]
    );
    assert_eq!(seen_by_b[0].queue_depth, 0);

    for (admin, other) in [(&a_admin, "b.example"), (&b_admin, "a.example")] {
        let report = admin
            .peering
            .clone()
            .test_peer(pb::TestPeerRequest {
                tenant: other.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(report.ok, "{report:?}");
        let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
        for expected in [
            "own certificate",
            "reachable",
            "handshake",
            "accepted",
            "round trip",
            "clock skew",
            "peer certificate",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
        assert!(peers(admin).await[0].last_contact_at_ms > 0);
    }

    let removed = a_admin
        .peering
        .clone()
        .remove_peer(pb::RemovePeerRequest {
            tenant: "b.example".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(removed.peer_told, "{}", removed.detail);
    assert!(peers(&a_admin).await.is_empty());
    assert!(
        peers(&b_admin).await.is_empty(),
        "the peer must forget us too"
    );
    check(
        a_admin
            .peering
            .clone()
            .test_peer(pb::TestPeerRequest {
                tenant: "b.example".into(),
            })
            .await,
        Code::NotFound,
        "peer b.example",
    );
    // A's real certificate is no longer trusted by B.
    let mut old = bridge_client(&b, &a.tls_files().load_node().unwrap()).await;
    match old.ping(&tenant("a.example")).await {
        Err(works_bridge::BridgeError::Refused(status)) => {
            assert_eq!(status.code(), Code::Unauthenticated)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn invitations_are_one_time_expiring_addressed_and_tamper_evident() {
    let a = TestNode::start("a.example").await;
    let b = TestNode::start("b.example").await;
    let c = TestNode::start("c.example").await;
    let (a_admin, b_admin, c_admin) = (a.admin().await, b.admin().await, c.admin().await);

    // Reused: the first redemption wins, the second is refused by the issuer.
    let token = invite(&b_admin, "", 0).await;
    accept(&a_admin, &token).await.unwrap();
    check(
        accept(&c_admin, &token).await,
        Code::PermissionDenied,
        "b.example refused: this invitation was already used",
    );

    // Addressed to another tenant.
    let for_c = invite(&b_admin, "c.example", 0).await;
    let d = TestNode::start("d.example").await;
    check(
        accept(&d.admin().await, &for_c).await,
        Code::PermissionDenied,
        "this invitation is for c.example, not d.example",
    );

    // Wrong CA fingerprint: the handshake is refused before any secret is sent.
    let wrong = tamper(
        &invite(&b_admin, "", 0).await,
        "ca_sha256",
        serde_json::json!("00".repeat(32)),
    );
    check(
        accept(&c_admin, &wrong).await,
        Code::FailedPrecondition,
        "CA fingerprint mismatch",
    );

    // A secret the issuer never made.
    let forged = tamper(
        &invite(&b_admin, "", 0).await,
        "secret",
        serde_json::json!(URL_SAFE_NO_PAD.encode([9u8; 32])),
    );
    check(
        accept(&c_admin, &forged).await,
        Code::PermissionDenied,
        "unknown invitation secret",
    );

    // Expired: refused locally from the token, and by the issuer even when
    // the token's own expiry is moved forward.
    let short = invite(&b_admin, "", 1).await;
    // A fixed wait: the invitation expires after one second, and there is
    // nothing to poll meanwhile (accepting it early would use it up).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    check(
        accept(&c_admin, &short).await,
        Code::FailedPrecondition,
        "has expired",
    );
    let extended = tamper(&short, "expires_at_ms", serde_json::json!(i64::MAX));
    check(
        accept(&c_admin, &extended).await,
        Code::PermissionDenied,
        "this invitation has expired",
    );

    // Malformed, or our own.
    check(
        accept(&c_admin, "wpi1.garbage").await,
        Code::InvalidArgument,
        "not a peering invitation",
    );
    check(
        accept(&c_admin, "hello").await,
        Code::InvalidArgument,
        "not a peering invitation",
    );
    check(
        accept(&b_admin, &invite(&b_admin, "", 0).await).await,
        Code::InvalidArgument,
        "own tenant",
    );
    check(
        accept(&a_admin, &invite(&b_admin, "", 0).await).await,
        Code::AlreadyExists,
        "already peered with b.example",
    );
    check(
        b_admin
            .peering
            .clone()
            .invite_peer(pb::InvitePeerRequest {
                for_tenant: "not a tenant".into(),
                ttl_secs: 0,
            })
            .await,
        Code::InvalidArgument,
        "for_tenant",
    );

    // Members are not admins.
    let member = b.member("eve").await;
    check(
        member
            .client
            .peering
            .clone()
            .invite_peer(pb::InvitePeerRequest::default())
            .await,
        Code::PermissionDenied,
        "admin role",
    );
    check(
        member
            .client
            .peering
            .clone()
            .list_peers(pb::ListPeersRequest {})
            .await,
        Code::PermissionDenied,
        "admin role",
    );

    // Nothing refused above left a peer behind.
    let names: Vec<String> = peers(&b_admin)
        .await
        .into_iter()
        .map(|p| p.tenant)
        .collect();
    assert_eq!(names, vec!["a.example"]);
    assert!(peers(&c_admin).await.is_empty());
}

#[tokio::test]
async fn the_bridge_trusts_only_the_pinned_ca_and_the_name_it_signed() {
    let a = TestNode::start("a.example").await;
    let b = TestNode::start("b.example").await;
    let c = TestNode::start("c.example").await;
    peer(&a, &b).await;
    let now = Validity::from_now(Duration::from_secs(3600));

    // The peer's real certificate: accepted, but it cannot speak for another tenant.
    let mut real = bridge_client(&b, &a.tls_files().load_node().unwrap()).await;
    let report = real.ping(&tenant("a.example")).await.unwrap();
    assert_eq!(report.tenant, "b.example");
    check(
        real.raw()
            .ping(fed::PingRequest {
                from_tenant: "c.example".into(),
                sent_at_ms: 0,
            })
            .await,
        Code::PermissionDenied,
        "from_tenant names c.example, but the caller's certificate is a.example's",
    );
    check(
        real.raw()
            .lookup_user(fed::LookupUserRequest {
                requester: "x@c.example".into(),
                user: "bob@b.example".into(),
            })
            .await,
        Code::PermissionDenied,
        "requester names c.example",
    );

    // A certificate naming a.example from a CA nobody pinned.
    let stranger_ca = TenantCa::generate(
        &tenant("a.example"),
        Validity::from_now(Duration::from_secs(3600)),
    )
    .unwrap();
    let stranger = stranger_ca
        .issue_node(&tenant("a.example"), &[], now)
        .unwrap();
    let mut unpinned = bridge_client(&b, &stranger).await;
    check(
        unpinned
            .raw()
            .ping(fed::PingRequest {
                from_tenant: "a.example".into(),
                sent_at_ms: 0,
            })
            .await,
        Code::Unauthenticated,
        "not issued by the CA of any peer",
    );

    // Spoofing: A's CA (which B pinned for a.example) signs a certificate naming c.example.
    let spoof = issued_by(&a, "c.example", now);
    let mut spoofer = bridge_client(&b, &spoof).await;
    check(
        spoofer
            .raw()
            .ping(fed::PingRequest {
                from_tenant: "c.example".into(),
                sent_at_ms: 0,
            })
            .await,
        Code::PermissionDenied,
        "chains to the CA pinned for a.example but names c.example",
    );

    // An expired certificate from the right CA.
    let past = Validity {
        not_before: SystemTime::now() - Duration::from_secs(7200),
        not_after: SystemTime::now() - Duration::from_secs(3600),
    };
    let mut expired = bridge_client(&b, &issued_by(&a, "a.example", past)).await;
    check(
        expired
            .raw()
            .ping(fed::PingRequest {
                from_tenant: "a.example".into(),
                sent_at_ms: 0,
            })
            .await,
        Code::Unauthenticated,
        "Expired",
    );

    // An unpeered node with a perfectly valid certificate of its own.
    let mut unpeered = bridge_client(&b, &c.tls_files().load_node().unwrap()).await;
    let relay = unpeered
        .raw()
        .relay(tokio_stream::iter(Vec::<fed::EnvelopeBatch>::new()))
        .await;
    check(
        relay.map(|_| ()),
        Code::Unauthenticated,
        "not issued by the CA of any peer",
    );
    check(
        redeem(&mut unpeered, "c.example", &c).await,
        Code::PermissionDenied,
        "unknown invitation secret",
    );
    // Redeeming in another tenant's name, or with a CA that did not sign the certificate.
    check(
        redeem(&mut unpeered, "d.example", &c).await,
        Code::PermissionDenied,
        "does not name d.example",
    );
    check(
        redeem(&mut unpeered, "c.example", &a).await,
        Code::Unauthenticated,
        "does not chain to the presented CA",
    );
    // B's list still holds exactly A.
    let names: Vec<String> = peers(&b.admin().await)
        .await
        .into_iter()
        .map(|p| p.tenant)
        .collect();
    assert_eq!(names, vec!["a.example"]);
}

#[tokio::test]
async fn handshakes_without_a_client_certificate_or_tls_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let b = TestNode::start("b.example").await;
    let b_ca = b.tls_files().load_ca().unwrap();

    // TLS 1.3 without a client certificate: the server aborts the handshake.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(b_ca.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(&b.bridge).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("b.example").unwrap();
    let outcome = match tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
    {
        Err(e) => e.to_string(),
        Ok(mut stream) => {
            // TLS 1.3 clients finish first; the refusal arrives as an alert.
            let _ = stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
            let mut buf = [0u8; 64];
            match stream.read(&mut buf).await {
                Err(e) => e.to_string(),
                Ok(n) => format!("read {n} bytes"),
            }
        }
    };
    assert!(outcome.contains("CertificateRequired"), "{outcome}");

    // Plain TCP speaking gRPC to the TLS port.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", b.bridge))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plain {
        let result = fed::bridge_client::BridgeClient::new(channel)
            .ping(fed::PingRequest {
                from_tenant: "a.example".into(),
                sent_at_ms: 0,
            })
            .await;
        assert!(result.is_err(), "plaintext call answered: {result:?}");
    }
    support::eventually(
        || b.log().contains("bridge handshake refused"),
        "the refusals are logged",
    )
    .await;
}

#[tokio::test]
async fn openssl_s_client_without_a_certificate_or_with_tls_1_2_is_refused() {
    let b = TestNode::start("b.example").await;
    let s_client = |args: &'static [&'static str]| {
        let bridge = b.bridge.clone();
        async move {
            let out = tokio::process::Command::new("openssl")
                .arg("s_client")
                .arg("-connect")
                .arg(&bridge)
                .args(["-servername", "b.example"])
                .args(args)
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .expect("openssl (Debian package openssl) must be installed");
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        }
    };
    let tls12 = s_client(&["-tls1_2"]).await;
    assert!(
        tls12.contains("alert protocol version") || tls12.contains("no protocols available"),
        "{tls12}"
    );
    // -ign_eof keeps reading until the server closes, so its alert is seen.
    let no_cert = s_client(&["-tls1_3", "-ign_eof"]).await;
    assert!(no_cert.contains("certificate required"), "{no_cert}");
}

#[tokio::test]
async fn peers_declared_in_the_config_file_trust_each_other() {
    let mut a = TestNode::start("a.example").await;
    let mut b = TestNode::start("b.example").await;
    for (node, other) in [(&a, &b), (&b, &a)] {
        let file = node.data_dir().join(format!("{}-ca.pem", other.tenant));
        std::fs::write(&file, other.tls_files().load_ca().unwrap().cert_pem()).unwrap();
        let endpoint = other.bridge.clone();
        let tenant = other.tenant.clone();
        node.edit_config(|c| {
            c.peers = vec![tenant_node::config::DeclaredPeer {
                tenant,
                endpoint,
                endpoints: Vec::new(),
                ca_files: vec![file.clone()],
            }];
        });
    }
    a.restart().await;
    b.restart().await;
    let a_admin = a.admin().await;
    let report = a_admin
        .peering
        .clone()
        .test_peer(pb::TestPeerRequest {
            tenant: "b.example".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(report.ok, "{report:?}");
    let report = b
        .admin()
        .await
        .peering
        .clone()
        .test_peer(pb::TestPeerRequest {
            tenant: "a.example".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(report.ok, "{report:?}");
    let listed = peers(&a_admin).await;
    assert_eq!(
        (listed[0].tenant.as_str(), listed[0].source.as_str()),
        ("b.example", "config")
    );
    check(
        a_admin
            .peering
            .clone()
            .remove_peer(pb::RemovePeerRequest {
                tenant: "b.example".into(),
            })
            .await,
        Code::FailedPrecondition,
        "declared in node.toml",
    );
}

#[tokio::test]
async fn a_ca_change_over_keeps_the_peering_alive() {
    let mut a = TestNode::start("a.example").await;
    let b = TestNode::start("b.example").await;
    peer(&a, &b).await;
    let (a_admin, b_admin) = (a.admin().await, b.admin().await);
    let old_cert = a.tls_files().load_node().unwrap();
    let old_fp = a.tls_files().load_ca().unwrap().fingerprint();
    let test = |admin: Client, other: &'static str| async move {
        admin
            .peering
            .clone()
            .test_peer(pb::TestPeerRequest {
                tenant: other.into(),
            })
            .await
            .unwrap()
            .into_inner()
    };

    check(
        a_admin
            .peering
            .clone()
            .retire_ca(pb::RetireCaRequest {})
            .await,
        Code::FailedPrecondition,
        "no CA change-over",
    );
    let change = a_admin
        .peering
        .clone()
        .rotate_ca(pb::RotateCaRequest {})
        .await
        .unwrap()
        .into_inner();
    let ca = change.ca.unwrap();
    assert_eq!(ca.previous_fingerprint, old_fp);
    assert_ne!(ca.fingerprint, old_fp);
    assert_eq!(change.peers.len(), 1);
    assert!(change.peers[0].told, "{:?}", change.peers);
    check(
        a_admin
            .peering
            .clone()
            .rotate_ca(pb::RotateCaRequest {})
            .await,
        Code::FailedPrecondition,
        "already under way",
    );

    // During the change-over B trusts both, and both directions work.
    assert_eq!(
        peers(&b_admin).await[0].ca_fingerprints,
        vec![old_fp.clone(), ca.fingerprint.clone()]
    );
    assert!(test(b_admin.clone(), "a.example").await.ok);
    assert!(test(a_admin.clone(), "b.example").await.ok);
    bridge_client(&b, &old_cert)
        .await
        .ping(&tenant("a.example"))
        .await
        .unwrap();

    // A restart keeps the new certificate.
    a.restart().await;
    let a_admin = a.admin().await;
    assert!(test(a_admin.clone(), "b.example").await.ok);

    let retired = a_admin
        .peering
        .clone()
        .retire_ca(pb::RetireCaRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(retired.peers[0].told, "{:?}", retired.peers);
    assert!(retired.ca.unwrap().previous_fingerprint.is_empty());
    assert_eq!(
        peers(&b_admin).await[0].ca_fingerprints,
        vec![ca.fingerprint.clone()]
    );
    match bridge_client(&b, &old_cert)
        .await
        .ping(&tenant("a.example"))
        .await
    {
        Err(works_bridge::BridgeError::Refused(status)) => {
            assert_eq!(status.code(), Code::Unauthenticated)
        }
        other => panic!("the retired CA's certificate must be refused, got {other:?}"),
    }
    assert!(test(b_admin.clone(), "a.example").await.ok);

    // Renewal: a new node certificate from the same CA.
    let renewed = a_admin
        .peering
        .clone()
        .renew_node_certificate(pb::RenewNodeCertificateRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renewed.fingerprint, ca.fingerprint);
    assert_ne!(
        a.tls_files().load_node().unwrap().chain_pem,
        old_cert.chain_pem
    );
    assert!(test(b_admin.clone(), "a.example").await.ok);
    assert!(test(a_admin.clone(), "b.example").await.ok);

    // A peer cannot announce CAs that would lock it out, or that are not CAs.
    let mut client = bridge_client(&b, &a.tls_files().load_node().unwrap()).await;
    let stranger = TenantCa::generate(
        &tenant("a.example"),
        Validity::from_now(Duration::from_secs(3600)),
    )
    .unwrap();
    refused(
        &relay_control(
            &mut client,
            "a.example",
            wire::cas(vec![stranger.der().to_vec()]),
        )
        .await,
        "lock itself out",
    );
    refused(
        &relay_control(&mut client, "a.example", wire::cas(vec![])).await,
        "one CA",
    );
    let leaf = works_certs::certificates(&a.tls_files().load_node().unwrap().chain_pem).unwrap()[0]
        .to_vec();
    refused(
        &relay_control(&mut client, "a.example", wire::cas(vec![leaf])).await,
        "not a CA",
    );
    refused(
        &relay_control(&mut client, "c.example", wire::cas(vec![])).await,
        "a.example cannot send a control message as c.example",
    );
}

#[tokio::test]
async fn a_node_that_starts_greets_its_peers() {
    let a = TestNode::start("a.example").await;
    let mut b = TestNode::start("b.example").await;
    peer(&a, &b).await;
    let a_admin = a.admin().await;
    b.kill().await;
    let now_ms = || {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let restarted_at = now_ms();
    b.restart().await;
    // Nothing is queued either way, so only b's greeting tells a.
    support::until(Duration::from_secs(10), "a hears from b", || async {
        peers(&a_admin).await[0].last_contact_at_ms >= restarted_at
    })
    .await;
    // b, for its part, heard a answer.
    let b_admin = b.admin().await;
    support::until(Duration::from_secs(10), "b hears a answer", || async {
        peers(&b_admin).await[0].last_contact_at_ms >= restarted_at
    })
    .await;
    assert!(!b.log().contains("peer not reachable at start-up"));
}
