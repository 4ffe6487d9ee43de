//! The scale-out backend: the same promises on the local PostgreSQL
//! (127.0.0.1:5432), each test in a database of its own, dropped at the end.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::{self, TestNode, check, text};
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tonic::Code;
use works_proto::client::v1 as pb;

/// A database of its own on the local PostgreSQL (also for `ops` and
/// `replicas`).
pub(crate) struct Database(works_tests::postgres::Database);

impl Database {
    pub(crate) async fn create() -> Database {
        Database(
            works_tests::postgres::Database::create("works_test")
                .await
                .expect("the local PostgreSQL must run on 127.0.0.1:5432"),
        )
    }

    pub(crate) fn url(&self) -> String {
        self.0.url()
    }

    pub(crate) async fn drop_it(self) {
        self.0.drop_it().await.expect("drop the test database");
    }
}

/// A PostgreSQL server of the test's own, for what the shared one must not
/// suffer (a restart): Debian's server binaries on a fresh cluster in a
/// temporary directory, listening on an ephemeral loopback port. As root it
/// runs as the `postgres` user, as PostgreSQL requires.
pub(crate) struct OwnServer {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    port: u16,
    server: Option<std::process::Child>,
}

impl OwnServer {
    pub(crate) async fn start() -> OwnServer {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server binaries under /usr/lib/postgresql")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|bin| bin.join("initdb").exists())
            .max()
            .expect("an initdb under /usr/lib/postgresql/*/bin");
        let dir = tempfile::tempdir().expect("temp dir");
        if let Some((uid, gid)) = Self::postgres_user() {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
        }
        let out = Self::as_server_user(std::process::Command::new(bin.join("initdb")))
            .current_dir(dir.path())
            .args(["--username", "postgres", "--auth", "trust", "--no-sync"])
            .arg("--pgdata")
            .arg(dir.path().join("data"))
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = OwnServer {
            dir,
            bin,
            port,
            server: None,
        };
        server.run().await;
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A fast shutdown (every connection closed, as at a server's
    /// restart), then the server starts again on the same port.
    pub(crate) async fn restart(&mut self) {
        self.stop();
        self.run().await;
    }

    async fn run(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log");
        let server = Self::as_server_user(std::process::Command::new(self.bin.join("postgres")))
            .current_dir(self.dir.path())
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "fsync=off", "-c", "max_connections=300"])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.server = Some(server);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while PgConnection::connect(&self.url()).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the test's PostgreSQL did not start: {}",
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            // SIGINT: PostgreSQL's fast shutdown.
            let _ = std::process::Command::new("kill")
                .args(["-INT", &server.id().to_string()])
                .status();
            let _ = server.wait();
        }
    }

    /// The `postgres` user's ids, when this runs as root.
    fn postgres_user() -> Option<(u32, u32)> {
        use std::os::unix::fs::MetadataExt;
        if std::fs::metadata("/proc/self").ok()?.uid() != 0 {
            return None;
        }
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
        let mut fields = line.split(':').skip(2);
        Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
    }

    fn as_server_user(mut command: std::process::Command) -> std::process::Command {
        use std::os::unix::process::CommandExt;
        if let Some((uid, gid)) = Self::postgres_user() {
            command.uid(uid).gid(gid);
        }
        command
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn postgres_backend_keeps_order_idempotency_and_durability() {
    let db = Database::create().await;
    let url = db.url();
    let mut node = TestNode::start_with("acme.example", |c| c.storage.url = url.clone()).await;
    let alice = node.member("alice").await;
    let bob = node.member("bob").await;
    let room = alice.direct_room(&bob.id).await;
    let mut stream = bob.watch(&[(&room.id, 0)]).await.unwrap();

    // Concurrent writers: PostgreSQL runs them in parallel, the room row
    // still hands out one dense sequence.
    let mut writers = Vec::new();
    for w in 0..4 {
        let sender = node
            .login(if w % 2 == 0 { &alice.id } else { &bob.id })
            .await;
        let room = room.id.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..25 {
                sender.send(&room, &format!("w{w}-{i}")).await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let seen: Vec<u64> = stream.take(101).await.iter().map(|e| e.seq).collect();
    assert_eq!(seen, (1..=101).collect::<Vec<_>>());

    // Concurrent retries of one send are stored once, also without SQLite's single writer.
    let mut retries = Vec::new();
    for _ in 0..8 {
        let alice = node.login(&alice.id).await;
        let room = room.id.clone();
        retries.push(tokio::spawn(async move {
            alice.send_keyed(&room, "same-key", "once").await.unwrap()
        }));
    }
    let mut ids = BTreeSet::new();
    for r in retries {
        ids.insert(r.await.unwrap().event.unwrap().event_id);
    }
    assert_eq!(ids.len(), 1);
    check(
        alice.send_keyed(&room.id, "same-key", "twice").await,
        Code::AlreadyExists,
        "different message",
    );

    node.kill().await;
    node.restart().await;
    let bob = node.login(&bob.id).await;
    let history = bob.history(&room.id).await.unwrap();
    assert_eq!(history.len(), 102);
    assert_eq!(
        history.iter().filter(|e| text(e) == Some("once")).count(),
        1
    );
    // Policy and the hash-chained audit log on PostgreSQL.
    let admin = node.admin().await;
    admin
        .external
        .clone()
        .add_connected(works_proto::client::v1::AddConnectedRequest {
            member_id: bob.id.clone(),
        })
        .await
        .unwrap();
    let found = admin
        .audit
        .clone()
        .search_audit(works_proto::client::v1::AuditSearchRequest {
            member: bob.id.clone(),
            text: "connected".into(),
            since_ms: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].kind, "connected.added");
    // Text search folds non-ASCII case and accents as on SQLite, and takes
    // `%` and `_` literally.
    admin
        .external
        .clone()
        .set_external_settings(works_proto::client::v1::SetExternalSettingsRequest {
            company: Some("École 100%".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    for (text, expected) in [("ÉCOLE", 1), ("ecole 100%", 1), ("%%%", 0), ("_", 0)] {
        let found = admin
            .audit
            .clone()
            .search_audit(works_proto::client::v1::AuditSearchRequest {
                text: text.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .entries;
        assert_eq!(found.len(), expected, "{text:?}: {found:?}");
    }
    let verified = admin
        .audit
        .clone()
        .verify_audit(works_proto::client::v1::VerifyAuditRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(verified.ok && verified.entries == 2, "{verified:?}");
    node.kill().await;
    db.drop_it().await;
}

#[tokio::test]
async fn rooms_across_companies_relay_on_postgresql() {
    let (db_a, db_b) = (Database::create().await, Database::create().await);
    let (url_a, url_b) = (db_a.url(), db_b.url());
    let a = TestNode::start_with("a.example", |c| c.storage.url = url_a.clone()).await;
    let mut b = TestNode::start_with("b.example", |c| c.storage.url = url_b.clone()).await;
    support::peer_with(&a, &b).await;
    let alice = a.member("alice").await;
    let bob = b.member("bob").await;
    support::allow(&a.admin().await, true, &alice.id, true).await;
    support::allow(&b.admin().await, true, &bob.id, true).await;
    support::befriend(&alice, &bob).await;
    let deadline = std::time::Duration::from_secs(30);
    support::until(deadline, "bob has the direct room", || async {
        !bob.rooms().await.is_empty()
    })
    .await;
    let room = bob.rooms().await.remove(0).id;
    b.terminate().await;
    for i in 0..50 {
        alice.send(&room, &format!("a{i}")).await.unwrap();
    }
    b.restart().await;
    let bob = b.login(&bob.id).await;
    let reply = bob.send_keyed(&room, "k", "b0").await.unwrap();
    let id = reply.event.unwrap().event_id;
    support::until(deadline, "bob's message is delivered", || async {
        bob.delivery(&room, &id).await.unwrap().state == pb::DeliveryState::Delivered as i32
    })
    .await;
    let file = bob
        .send_file(&room, "f.bin", &[7u8; 100_000])
        .await
        .unwrap();
    let file_id = support::attachment(&file.event.unwrap()).map(|a| a.id.clone());
    let texts = |events: Vec<pb::RoomEvent>| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| text(e).map(str::to_string))
            .collect()
    };
    let expected: Vec<String> = (0..50)
        .map(|i| format!("a{i}"))
        .chain(["b0".into()])
        .collect();
    let file_id = file_id.unwrap();
    support::until(
        deadline,
        "both nodes hold the same 51 messages, and the file",
        || async {
            let at_alice = alice.history(&room).await.unwrap();
            let has_file = at_alice
                .iter()
                .any(|e| support::attachment(e).is_some_and(|a| a.id == file_id));
            has_file
                && texts(at_alice) == expected
                && texts(bob.history(&room).await.unwrap()) == expected
        },
    )
    .await;
    let (_, bytes) = alice.download(&file_id).await.unwrap();
    assert_eq!(bytes, vec![7u8; 100_000]);
    drop((a, b));
    db_a.drop_it().await;
    db_b.drop_it().await;
}
