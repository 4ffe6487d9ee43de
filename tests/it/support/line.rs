//! A company's node with its LINE Official Account on the stand-in LINE
//! platform: the node's `[line]` points at the stand-in, the stand-in's
//! webhooks go to the node's web port (or LINE's own port, on a node with
//! none), and the admin has LINE switched on.

use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use tenant_node::client::Client;
use tenant_node::config::{LineConfig, WebListen};
use works_line_standin::{LinePlatform, LineUser};
use works_proto::client::v1 as pb;

use super::{EVENT_DEADLINE, Member, TestNode, until};

pub struct LineCompany {
    pub node: TestNode,
    pub line: LinePlatform,
    pub admin: Client,
    _secrets: TempDir,
}

/// Starts `tenant`'s node with a LINE channel on a fresh stand-in
/// platform, with `[web] public_url` set to its web port, and switches
/// LINE on with `greeting`.
pub async fn line_company(tenant: &str, greeting: &str) -> LineCompany {
    start_line_company(tenant, greeting, false).await
}

/// The same on a node with no web port: LINE's webhook is served on a port
/// of its own (`[line] webhook_listen`).
pub async fn line_company_without_web(tenant: &str, greeting: &str) -> LineCompany {
    start_line_company(tenant, greeting, true).await
}

async fn start_line_company(tenant: &str, greeting: &str, own_port: bool) -> LineCompany {
    let line = LinePlatform::start(works_line_standin::Config::generate())
        .await
        .expect("start the LINE stand-in");
    let secrets = tempfile::tempdir().expect("temp dir");
    let secret_file = secrets.path().join("channel-secret");
    let token_file = secrets.path().join("access-token");
    // Surrounding whitespace is trimmed, as a pasted secret has it.
    write_secret(&secret_file, &format!("{}\n", line.config().channel_secret));
    write_secret(&token_file, &format!("  {}\n", line.config().access_token));
    let config = LineConfig {
        api_base_url: line.url(),
        data_api_base_url: line.url(),
        channel_id: "2000000001".into(),
        channel_secret_file: secret_file,
        access_token_file: token_file,
        basic_id: line.config().basic_id.clone(),
        webhook_listen: own_port.then(|| ([127, 0, 0, 1], 0).into()),
    };
    let mut node = TestNode::start_with(tenant, |c| {
        c.line = Some(config.clone());
        if own_port {
            c.web.listen = WebListen(None);
        }
    })
    .await;
    let webhook = if own_port {
        node.line_webhook.clone().expect("LINE's webhook port")
    } else {
        let web = node.web.clone().expect("a web port");
        node.edit_config(|c| c.web.public_url = Some(web.clone()));
        node.restart().await;
        web
    };
    line.set_webhook(&format!("{webhook}/line/webhook"));
    let admin = node.admin().await;
    set_line(&admin, Some(true), Some(greeting)).await;
    LineCompany {
        node,
        line,
        admin,
        _secrets: secrets,
    }
}

fn write_secret(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).expect("write a secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
}

pub async fn set_line(
    admin: &Client,
    enabled: Option<bool>,
    greeting: Option<&str>,
) -> pb::LineSettings {
    admin
        .line
        .clone()
        .set_line_settings(pb::SetLineSettingsRequest {
            enabled,
            greeting: greeting.map(str::to_string),
            ..Default::default()
        })
        .await
        .expect("set LINE settings")
        .into_inner()
}

impl LineCompany {
    /// A member on the LINE connected-members list.
    pub async fn line_member(&self, name: &str) -> Member {
        let member = self.node.member(name).await;
        self.admin
            .line
            .clone()
            .add_line_connected(pb::AddConnectedRequest {
                member_id: member.id.clone(),
            })
            .await
            .expect("add to the LINE list");
        member
    }

    /// Waits until the stand-in saw `count` messages from the account in
    /// `chat`, and returns them.
    pub async fn until_sent(&self, chat: &str, count: usize) -> Vec<Value> {
        let line = self.line.clone();
        let chat = chat.to_string();
        until(
            EVENT_DEADLINE,
            &format!("{count} messages reached LINE chat {chat}"),
            || {
                let line = line.clone();
                let chat = chat.clone();
                async move { line.conversation(&chat).len() >= count }
            },
        )
        .await;
        self.line.conversation(chat.as_str())
    }

    /// A LINE user who follows the account and binds to `member` with the
    /// text of their invitation link; returns the LINE room.
    pub async fn bound(&self, user: &LineUser, member: &Member) -> pb::Room {
        assert_eq!(self.line.follow(user).await.expect("follow"), 200);
        let (status, _) = self
            .line
            .text(user, &format!("Hello {}", member.id))
            .await
            .expect("text");
        assert_eq!(status, 200);
        line_room_with(member, &line_member_id(&user.id)).await
    }
}

/// The room member id of a LINE user.
pub fn line_member_id(user_id: &str) -> String {
    format!("{}@line.invalid", user_id.to_ascii_lowercase())
}

/// Waits for `member`'s 1:1 LINE room with `user`.
pub async fn line_room_with(member: &Member, user: &str) -> pb::Room {
    let deadline = tokio::time::Instant::now() + EVENT_DEADLINE;
    loop {
        if let Some(room) = member.rooms().await.into_iter().find(|r| {
            r.line && r.kind == pb::RoomKind::Direct as i32 && r.members.iter().any(|m| m == user)
        }) {
            return room;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no LINE room of {} with {user}",
            member.id
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text of a LINE message object, if it is a text.
pub fn line_text(message: &Value) -> Option<&str> {
    (message["type"] == "text")
        .then(|| message["text"].as_str())
        .flatten()
}
