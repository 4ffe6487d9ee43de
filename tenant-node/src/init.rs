//! `tenant-node init`: a data directory with its config, database and first admin.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::accounts::generate_password;
use crate::config::{CONFIG_FILE, Config, WebListen};
use crate::ids::{MemberId, TenantId};
use crate::model::Role;
use crate::node::Node;
use works_certs::NodeTlsFiles;

pub const ADMIN_NAME: &str = "admin";

pub struct InitOptions {
    pub data_dir: PathBuf,
    pub tenant: String,
    pub company: String,
    pub api: Option<SocketAddr>,
    pub bridge: Option<SocketAddr>,
    /// The web port's address, or none; the default when absent.
    pub web: Option<WebListen>,
    /// The ops port's address, or none; the default when absent.
    pub ops: Option<WebListen>,
    pub admin_password: Option<String>,
    /// Where the data lives; the embedded SQLite file when absent.
    pub database_url: Option<String>,
}

pub struct Initialized {
    pub config_path: PathBuf,
    /// SHA-256 of the new CA certificate; peers pin it.
    pub ca_fingerprint: String,
    pub admin: MemberId,
    pub admin_password: String,
    /// True when the password was generated here and must be shown once.
    pub password_generated: bool,
}

pub async fn init(options: InitOptions) -> anyhow::Result<Initialized> {
    let tenant = TenantId::parse(&options.tenant).context("invalid --tenant")?;
    let config_path = options.data_dir.join(CONFIG_FILE);
    if config_path.exists() {
        bail!(
            "{} already exists: this data directory is initialised",
            config_path.display()
        );
    }
    create_private_dir(&options.data_dir)?;
    let mut config = Config::new(&tenant);
    if let Some(api) = options.api {
        config.api.listen = api;
    }
    if let Some(bridge) = options.bridge {
        config.bridge.listen = bridge;
    }
    if let Some(web) = options.web {
        config.web.listen = web;
    }
    if let Some(ops) = options.ops {
        config.ops.listen = ops;
    }
    if let Some(url) = options.database_url {
        config.storage.url = url;
    }
    let (admin_password, password_generated) = match options.admin_password {
        Some(p) => (p, false),
        None => (generate_password(), true),
    };
    crate::accounts::check_password_rules(&admin_password).context("invalid --admin-password")?;

    let tls = NodeTlsFiles::in_dir(Config::resolve(&options.data_dir, &config.bridge.tls_dir));
    let (ca, _) = tls
        .create(&tenant, &[])
        .context("cannot create the node's CA and certificate")?;
    let node = Node::open(config.clone(), &options.data_dir).await?;
    node.tenant
        .init_company_name(&options.company)
        .await
        .context("invalid --company")?;
    let admin = node
        .tenant
        .create_member(ADMIN_NAME, "Administrator", &admin_password, Role::Admin)
        .await
        .context("cannot create the first admin")?;
    node.tenant.store.close().await;
    // The config is written last: its presence means the directory is complete.
    std::fs::write(&config_path, config.to_toml())
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    Ok(Initialized {
        ca_fingerprint: ca.fingerprint(),
        config_path,
        admin: admin.id,
        admin_password,
        password_generated,
    })
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", dir.display()))?;
    }
    Ok(())
}
