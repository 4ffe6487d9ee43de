//! Start-up in stages: `Config` (parsed, no I/O) → `Node::open` (pool,
//! migrations, TLS identity, peers) → `Node::serve(listeners, shutdown)`. The
//! caller binds, so tests use port 0.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use works_bridge::NodeIdentity;
use works_bridge::tls::ServerCert;
use works_certs::NodeTlsFiles;

use crate::config::Config;
use crate::federation::NodeBridge;
use crate::ids::TenantId;
use crate::store::Store;
use crate::tenant::Tenant;

pub struct Node {
    pub tenant: Arc<Tenant>,
    pub config: Config,
}

/// The sockets a node serves on; the web port is optional.
pub struct Listeners {
    pub api: TcpListener,
    pub bridge: TcpListener,
    pub web: Option<TcpListener>,
    /// LINE's webhook, when `[line] webhook_listen` gives it a port.
    pub line: Option<TcpListener>,
    /// Health, readiness and metrics, unless `[ops] listen` is empty.
    pub ops: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let api = TcpListener::bind(config.api.listen)
            .await
            .with_context(|| format!("cannot listen on {} (api)", config.api.listen))?;
        let bridge = TcpListener::bind(config.bridge.listen)
            .await
            .with_context(|| format!("cannot listen on {} (bridge)", config.bridge.listen))?;
        let web = match config.web.listen.0 {
            None => None,
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (web)"))?,
            ),
        };
        let line = match config.line.as_ref().and_then(|l| l.webhook_listen) {
            None => None,
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (LINE webhook)"))?,
            ),
        };
        let ops = match config.ops.listen.0 {
            None => None,
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (ops)"))?,
            ),
        };
        Ok(Listeners {
            api,
            bridge,
            web,
            line,
            ops,
        })
    }
}

impl Node {
    pub async fn open(config: Config, data_dir: &Path) -> anyhow::Result<Node> {
        let tenant_id = config.tenant_id()?;
        let files = NodeTlsFiles::in_dir(Config::resolve(data_dir, &config.bridge.tls_dir));
        let node_cert = files
            .load_node()
            .with_context(|| format!("cannot load the node certificate of {tenant_id}"))?;
        let identity = NodeIdentity::from_node_cert(&node_cert)?;
        let server_cert = ServerCert::new(&identity)?;
        let url = config.database_url(data_dir);
        let store = Store::open(
            &url,
            config.storage.max_connections,
            config.storage.synchronous,
        )
        .await
        .with_context(|| format!("cannot open the database of {tenant_id}"))?;
        let mut tenant = Tenant::new(
            tenant_id,
            store,
            config.limits.clone(),
            files,
            identity,
            server_cert,
        );
        tenant.smtp = config.smtp.clone();
        tenant.replica = format!(
            "{}/{}",
            crate::ops::replica_id(config.ops.replica_id.as_deref()),
            ulid::Ulid::new()
        );
        tenant.database_url = url.clone();
        tenant.public_url = config
            .web
            .public_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_string());
        if let Some(line) = &config.line {
            let channel = crate::messaging_api::Channel::open(line, data_dir)
                .with_context(|| format!("cannot open the LINE channel of {}", tenant.id))?;
            tenant.line = Some(Arc::new(channel));
        }
        // During a CA change-over the previous certificate is still shown
        // to peers that have not acknowledged the new CA.
        if let Some(previous) = tenant.tls_files.load_previous_node().with_context(|| {
            format!("cannot load the previous node certificate of {}", tenant.id)
        })? {
            tenant.set_previous_identity(Some(NodeIdentity::from_node_cert(&previous)?));
        }
        let tenant = Arc::new(tenant);
        let mut declared = Vec::new();
        for peer in &config.peers {
            let mut pem = String::new();
            for file in &peer.ca_files {
                let path = Config::resolve(data_dir, file);
                pem.push_str(&std::fs::read_to_string(&path).with_context(|| {
                    format!(
                        "cannot read CA file {} of peer {}",
                        path.display(),
                        peer.tenant
                    )
                })?);
            }
            works_certs::certificates(&pem)
                .with_context(|| format!("CA files of peer {}", peer.tenant))?;
            declared.push((TenantId::parse(&peer.tenant)?, peer.endpoint_list(), pem));
        }
        tenant.load_peers(&declared).await?;
        Ok(Node { tenant, config })
    }

    /// Serves the client API and the bridge until `shutdown` resolves, then
    /// drains in stages, a log line each: no new connections, calls in
    /// flight finish (within `GRACE`), the deliverers finish their current
    /// batch, storage closes. The ops port answers (not ready) until the end.
    pub async fn serve(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        // Replicas on PostgreSQL: everything committed from here on rings.
        let bells = crate::live::doorbell::install(&self.tenant);
        let bridge_addr = listeners.bridge.local_addr()?;
        self.tenant.set_bridge_endpoint(
            self.config
                .bridge
                .advertise
                .clone()
                .unwrap_or_else(|| bridge_addr.to_string()),
        );
        let store = self.tenant.store.clone();
        let (stop, _) = tokio::sync::watch::channel(false);
        let stopped = |stop: &tokio::sync::watch::Sender<bool>| {
            let mut rx = stop.subscribe();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let mut names = vec!["api", "bridge"];
        if listeners.web.is_some() {
            names.push("web");
        }
        let servers = Arc::new(crate::ops::Servers::new(&names));
        // Every listener is bound by now and takes connections (they wait in
        // the kernel until its server runs): up from the start, so the ops
        // port never answers "not listening" for a port that is; each goes
        // down when its server stops.
        for name in &names {
            servers.set_up(name, true);
        }
        // The ops port stops last, so probes see the node drain.
        let (ops_stop, _) = tokio::sync::watch::channel(false);
        // It serves the team that watches the node, not its members: when it
        // fails, the node goes on without it (and says so).
        let ops = listeners.ops.map(|listener| {
            let serving = crate::ops::serve_ops(
                self.tenant.clone(),
                servers.clone(),
                crate::ops::replica_id(self.config.ops.replica_id.as_deref()),
                listener,
                stopped(&ops_stop),
            );
            tokio::spawn(async move {
                if let Err(e) = serving.await {
                    tracing::error!(error = %e, "the ops port stopped; the node serves on without it");
                }
            })
        });
        let tls = works_bridge::tls::server_config(self.tenant.server_cert.clone())?;
        let bridge = tokio::spawn(tracked(
            servers.clone(),
            "bridge",
            works_bridge::serve(
                listeners.bridge,
                tls,
                self.tenant.trust.clone(),
                Arc::new(NodeBridge(self.tenant.clone())),
                works_bridge::ServerLimits {
                    max_connections: self.config.limits.max_bridge_connections,
                    preface_timeout: self.config.limits.preface_timeout(),
                    keepalive_interval: self.config.limits.keepalive_interval(),
                    keepalive_timeout: self.config.limits.keepalive_timeout(),
                    ..works_bridge::ServerLimits::default()
                },
                stopped(&stop),
            ),
        ));
        let purge = tokio::spawn(purge_sessions(self.tenant.clone()));
        let mut relay = tokio::spawn(crate::outbox::run(self.tenant.clone(), stop.subscribe()));
        let refused = tokio::spawn(crate::rooms::leave::take_refused(self.tenant.clone()));
        let sends = tokio::spawn(crate::rooms::send::run(self.tenant.clone()));
        let line_inbox = tokio::spawn(crate::line::inbox::run(self.tenant.clone()));
        let doorbell =
            bells.map(|bells| tokio::spawn(crate::live::doorbell::run(self.tenant.clone(), bells)));
        // LINE's webhook on a port of its own (`[line] webhook_listen`).
        let line_port = listeners.line.map(|listener| {
            tokio::spawn(crate::line::webhook::serve(
                self.tenant.clone(),
                listener,
                stopped(&stop),
            ))
        });
        let greet = tokio::spawn({
            let tenant = self.tenant.clone();
            async move { tenant.greet_peers().await }
        });
        // Without a web port, a task that only waits for the node to stop.
        let mut web = match listeners.web {
            Some(listener) => tokio::spawn(tracked(
                servers.clone(),
                "web",
                crate::api::serve_web(self.tenant.clone(), listener, stopped(&stop)),
            )),
            None => {
                let stopped = stopped(&stop);
                tokio::spawn(async move {
                    stopped.await;
                    anyhow::Ok(())
                })
            }
        };
        let api = tokio::spawn(tracked(
            servers.clone(),
            "api",
            crate::api::serve_api(self.tenant.clone(), listeners.api, stopped(&stop)),
        ));
        let (mut api, mut bridge) = (api, bridge);
        // A server that stops on its own (it failed) stops the node too.
        let (api_result, bridge_result, web_result) = tokio::select! {
            _ = shutdown => {
                servers.set_draining();
                let _ = stop.send(true);
                tracing::info!("draining: no new connections accepted");
                // The deliverers finish the batch they are sending, then
                // stop; open streams into the servers (peers' relays,
                // members' live streams) get a moment to finish, then
                // close.
                refused.abort();
                greet.abort();
                let results = (
                    within_grace(api).await,
                    within_grace(bridge).await,
                    within_grace(web).await,
                );
                tracing::info!("draining: calls in flight finished");
                results
            }
            finished = &mut api => {
                tracing::error!("the client API stopped; stopping the node");
                let _ = stop.send(true);
                (
                    finished.map_err(anyhow::Error::from),
                    within_grace(bridge).await,
                    within_grace(web).await,
                )
            }
            finished = &mut bridge => {
                tracing::error!("the bridge stopped; stopping the node");
                let _ = stop.send(true);
                (
                    within_grace(api).await,
                    finished
                        .map(|r| r.map_err(anyhow::Error::from))
                        .map_err(anyhow::Error::from),
                    within_grace(web).await,
                )
            }
            finished = &mut web => {
                tracing::error!("the web port stopped; stopping the node");
                let _ = stop.send(true);
                (
                    within_grace(api).await,
                    within_grace(bridge).await,
                    finished.map_err(anyhow::Error::from),
                )
            }
        };
        servers.set_draining();
        let _ = stop.send(true);
        purge.abort();
        line_inbox.abort();
        if let Some(doorbell) = doorbell {
            doorbell.abort();
        }
        if let Some(port) = line_port {
            port.abort();
        }
        refused.abort();
        greet.abort();
        // The deliverer task bounds its own wait for the current batches.
        if tokio::time::timeout(GRACE * 2, &mut relay).await.is_err() {
            relay.abort();
        }
        tracing::info!("draining: outbox deliverers stopped");
        // Sends waiting for the group commit are answered by now (their
        // calls have finished or been dropped).
        sends.abort();
        store.close().await;
        tracing::info!("draining: storage closed");
        let _ = ops_stop.send(true);
        if let Some(mut ops) = ops
            && tokio::time::timeout(GRACE, &mut ops).await.is_err()
        {
            ops.abort();
        }
        api_result.context("api task")??;
        bridge_result.context("bridge task")??;
        web_result.context("web task")??;
        Ok(())
    }
}

/// A server counts as up (`/readyz`) from its start until it ends.
fn tracked<F: Future>(
    servers: Arc<crate::ops::Servers>,
    name: &'static str,
    server: F,
) -> impl Future<Output = F::Output> {
    servers.set_up(name, true);
    async move {
        let result = server.await;
        servers.set_up(name, false);
        result
    }
}

/// How long open streams may take to finish when the node stops.
const GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits for a server task to finish its graceful shutdown, for at most
/// `GRACE`; then drops it with whatever streams it still holds.
async fn within_grace<T, E>(
    mut task: tokio::task::JoinHandle<Result<T, E>>,
) -> anyhow::Result<anyhow::Result<()>>
where
    E: Into<anyhow::Error>,
{
    match tokio::time::timeout(GRACE, &mut task).await {
        Ok(Ok(result)) => Ok(result.map(|_| ()).map_err(Into::into)),
        Ok(Err(join)) => Err(join.into()),
        Err(_) => {
            task.abort();
            tracing::info!("streams still open at shutdown were closed");
            Ok(Ok(()))
        }
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
