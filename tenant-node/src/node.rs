//! Start-up in stages: `Config` (parsed, no I/O) → `Node::open` (pool,
//! migrations) → `Node::serve(listener, shutdown)`. The caller binds, so tests
//! use port 0.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::store::Store;
use crate::tenant::Tenant;

pub struct Node {
    pub tenant: Arc<Tenant>,
    pub config: Config,
}

impl Node {
    pub async fn open(config: Config, data_dir: &Path) -> anyhow::Result<Node> {
        let tenant_id = config.tenant_id()?;
        let url = config.database_url(data_dir);
        let store = Store::open(&url, config.storage.max_connections)
            .await
            .with_context(|| format!("cannot open the database of {tenant_id}"))?;
        let tenant = Arc::new(Tenant::new(tenant_id, store, config.limits.clone()));
        Ok(Node { tenant, config })
    }

    /// Serves the client API until `shutdown` resolves, then closes storage.
    pub async fn serve(
        self,
        api: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let store = self.tenant.store.clone();
        let purge = tokio::spawn(purge_sessions(self.tenant.clone()));
        let served = crate::grpc::serve_api(self.tenant, api, shutdown).await;
        purge.abort();
        store.close().await;
        served
    }
}

/// Drops expired login sessions once an hour.
async fn purge_sessions(tenant: Arc<Tenant>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        every.tick().await;
        match tenant.store.purge_expired_sessions().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired sessions dropped"),
            Err(e) => tracing::warn!(error = %e, "cannot drop expired sessions"),
        }
    }
}
