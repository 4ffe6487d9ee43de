//! Readiness: the database answers, its schema has every migration of this
//! binary, and the node's servers are up and not draining.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::store::Store;

/// How long the database may take to answer a readiness query.
const DATABASE_DEADLINE: Duration = Duration::from_secs(2);

/// Which of the node's servers are serving; `Node::serve` keeps it.
pub struct Servers {
    servers: Vec<(&'static str, AtomicBool)>,
    draining: AtomicBool,
}

impl Servers {
    /// The servers this node runs (`api`, `bridge`, `web`…), none up yet.
    pub fn new(names: &[&'static str]) -> Self {
        Servers {
            servers: names.iter().map(|n| (*n, AtomicBool::new(false))).collect(),
            draining: AtomicBool::new(false),
        }
    }

    pub fn set_up(&self, name: &str, up: bool) {
        if let Some((_, flag)) = self.servers.iter().find(|(n, _)| *n == name) {
            flag.store(up, Ordering::SeqCst);
        }
    }

    /// The node stops: not ready any more, whatever else holds.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
}

/// One readiness check: its name, and what is wrong, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub problem: Option<String>,
}

/// Runs every check.
pub async fn checks(store: &Store, servers: &Servers) -> Vec<Check> {
    let database = match tokio::time::timeout(DATABASE_DEADLINE, store.ping()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("the database does not answer: {e}")),
        Err(_) => Some(format!(
            "the database did not answer within {DATABASE_DEADLINE:?}"
        )),
    };
    let migrations = if database.is_some() {
        Some("unknown while the database does not answer".to_string())
    } else {
        match tokio::time::timeout(DATABASE_DEADLINE, store.unapplied_migrations()).await {
            Ok(Ok(missing)) if missing.is_empty() => None,
            Ok(Ok(missing)) => Some(format!("not applied: {missing:?}")),
            Ok(Err(e)) => Some(format!("cannot read the applied migrations: {e}")),
            Err(_) => Some(format!(
                "the applied migrations not read within {DATABASE_DEADLINE:?}"
            )),
        }
    };
    let mut all = vec![
        Check {
            name: "database",
            problem: database,
        },
        Check {
            name: "migrations",
            problem: migrations,
        },
    ];
    for (name, up) in &servers.servers {
        all.push(Check {
            name,
            problem: (!up.load(Ordering::SeqCst)).then(|| "not listening".to_string()),
        });
    }
    all.push(Check {
        name: "draining",
        problem: servers
            .draining
            .load(Ordering::SeqCst)
            .then(|| "the node is shutting down".to_string()),
    });
    all
}

/// Ready (true) when no check has a problem; the text says, a line per
/// check, what failed (or `ok`).
pub fn verdict(checks: &[Check]) -> (bool, String) {
    let failing: Vec<String> = checks
        .iter()
        .filter_map(|c| c.problem.as_ref().map(|p| format!("{}: {p}\n", c.name)))
        .collect();
    if failing.is_empty() {
        (true, "ok\n".into())
    } else {
        (false, failing.concat())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &'static str, problem: Option<&str>) -> Check {
        Check {
            name,
            problem: problem.map(str::to_string),
        }
    }

    #[test]
    fn ready_only_when_every_check_passes() {
        assert_eq!(
            verdict(&[check("database", None), check("api", None)]),
            (true, "ok\n".into())
        );
        let (ready, text) = verdict(&[
            check("database", Some("the database does not answer: closed")),
            check(
                "migrations",
                Some("unknown while the database does not answer"),
            ),
            check("api", None),
            check("web", Some("not listening")),
        ]);
        assert!(!ready);
        assert_eq!(
            text,
            "database: the database does not answer: closed\n\
             migrations: unknown while the database does not answer\n\
             web: not listening\n"
        );
    }

    #[tokio::test]
    async fn a_closed_database_and_a_server_down_are_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("node.db").display());
        let store = Store::open(&url, Some(2), crate::config::Synchronous::Normal)
            .await
            .unwrap();
        let servers = Servers::new(&["api", "bridge"]);
        servers.set_up("api", true);
        servers.set_up("bridge", true);
        assert_eq!(
            verdict(&checks(&store, &servers).await),
            (true, "ok\n".into())
        );
        servers.set_up("bridge", false);
        let (ready, text) = verdict(&checks(&store, &servers).await);
        assert!(!ready);
        assert_eq!(text, "bridge: not listening\n");
        servers.set_up("bridge", true);
        store.close().await;
        let (ready, text) = verdict(&checks(&store, &servers).await);
        assert!(!ready);
        assert!(text.starts_with("database: "), "{text}");
        assert!(text.contains("migrations: unknown"), "{text}");
        servers.set_draining();
        assert!(
            verdict(&checks(&store, &servers).await)
                .1
                .contains("draining")
        );
    }

    #[tokio::test]
    async fn a_migration_missing_from_the_database_is_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("node.db").display());
        let store = Store::open(&url, Some(2), crate::config::Synchronous::Normal)
            .await
            .unwrap();
        assert_eq!(
            store.unapplied_migrations().await.unwrap(),
            Vec::<i64>::new()
        );
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)")
            .execute(store.pool())
            .await
            .unwrap();
        let missing = store.unapplied_migrations().await.unwrap();
        assert_eq!(missing.len(), 1);
        let servers = Servers::new(&[]);
        let (ready, text) = verdict(&checks(&store, &servers).await);
        assert!(!ready);
        assert!(text.starts_with("migrations: not applied"), "{text}");
    }
}
