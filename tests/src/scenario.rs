//! The steps that bring companies to a conversation, shared by the
//! integration tests' harness (`tests/support`) and the load generator
//! (`bench`): start a node's `serve` as a child process and wait until it
//! listens, peer two nodes, allow external messaging and members, befriend,
//! and wait for a room to show. Everything goes through the public client
//! API; each caller adds its own way of failing (a test panics, the bench
//! reports an error).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tenant_node::client::Client;
use tenant_node::config::{CONFIG_FILE, Config, WebListen};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::Status;
use works_proto::client::v1 as pb;

/// Makes `to` the data directory of another replica of the node whose data
/// directory is `from`, as a second machine would run it: the same TLS
/// files and node.toml (so the same database), with the API and the bridge
/// on ephemeral loopback ports, and the web and ops ports too or none.
pub fn replica_data_dir(from: &Path, to: &Path, web_and_ops: bool) -> anyhow::Result<()> {
    let (tls_from, tls_to) = (from.join("tls"), to.join("tls"));
    std::fs::create_dir_all(&tls_to)
        .with_context(|| format!("cannot create {}", tls_to.display()))?;
    let entries = std::fs::read_dir(&tls_from)
        .with_context(|| format!("cannot read {}", tls_from.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", tls_from.display()))?;
        std::fs::copy(entry.path(), tls_to.join(entry.file_name()))
            .with_context(|| format!("cannot copy {}", entry.path().display()))?;
    }
    let path = from.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut config = Config::parse(&text)
        .with_context(|| format!("{} is not a valid config", path.display()))?;
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    config.api.listen = any;
    config.bridge.listen = any;
    let other = WebListen(web_and_ops.then_some(any));
    config.web.listen = other;
    config.ops.listen = other;
    let path = to.join(CONFIG_FILE);
    std::fs::write(&path, config.to_toml())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// How often `room_where` asks again.
const POLL: Duration = Duration::from_millis(20);

/// A step of a scenario the node refused: which one, and the node's status.
#[derive(Debug)]
pub struct StepError {
    pub step: &'static str,
    pub status: Status,
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, describe(&self.status))
    }
}

impl std::error::Error for StepError {}

/// Names the call a status answered, for `?` on a client call.
pub trait Step<T> {
    fn step(self, step: &'static str) -> Result<T, StepError>;
}

impl<T> Step<T> for Result<tonic::Response<T>, Status> {
    fn step(self, step: &'static str) -> Result<T, StepError> {
        self.map(tonic::Response::into_inner)
            .map_err(|status| StepError { step, status })
    }
}

/// A status on one line: the code's name and the message, with control
/// characters escaped (a message may quote what another company sent).
pub fn describe(status: &Status) -> String {
    let mut message = String::with_capacity(status.message().len());
    for c in status.message().chars() {
        if c.is_control() {
            message.extend(c.escape_default());
        } else {
            message.push(c);
        }
    }
    format!(
        "{}: {message}",
        works_bridge::error::code_name(status.code())
    )
}

/// A node's `serve` running as a child process, and where it listens.
pub struct Serving {
    pub child: Child,
    pub pid: u32,
    pub api: SocketAddr,
    /// The web port, unless the node serves none.
    pub web: Option<SocketAddr>,
    /// The ops port (health, readiness, metrics), unless the node serves none.
    pub ops: Option<SocketAddr>,
    /// LINE's webhook port, when `[line] webhook_listen` gives it one.
    pub line: Option<SocketAddr>,
    pub bridge: SocketAddr,
}

/// Runs `command` (a node's `serve`, with its arguments, environment and
/// stderr already set) and waits, at most `within`, for the lines that say
/// where it listens. Its stdout is read to the end afterwards, so the child
/// never blocks on a full pipe; it is killed when the `Child` is dropped.
pub async fn serve(mut command: Command, within: Duration) -> anyhow::Result<Serving> {
    let mut child = command
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start serve: {e}"))?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow::anyhow!("did not start: serve exited at once"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("did not start: no stdout from serve"))?;
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(within, async {
        let (mut api, mut web, mut ops, mut line_port) = (None, None, None, None);
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = line.strip_prefix("api listening on ") {
                api = Some(addr.parse::<SocketAddr>()?);
            }
            if let Some(addr) = line.strip_prefix("web listening on ") {
                web = Some(addr.parse::<SocketAddr>()?);
            }
            if let Some(addr) = line.strip_prefix("ops listening on ") {
                ops = Some(addr.parse::<SocketAddr>()?);
            }
            if let Some(addr) = line.strip_prefix("line webhook listening on ") {
                line_port = Some(addr.parse::<SocketAddr>()?);
            }
            if let Some(addr) = line.strip_prefix("bridge listening on ") {
                let api = api.ok_or_else(|| anyhow::anyhow!("bridge line before api line"))?;
                return Ok((api, web, ops, line_port, addr.parse::<SocketAddr>()?));
            }
        }
        Err(anyhow::anyhow!("serve exited before listening"))
    })
    .await;
    let (api, web, ops, line, bridge) = match found {
        Ok(Ok(addrs)) => addrs,
        Ok(Err(e)) => anyhow::bail!("did not start: {e}"),
        Err(_) => anyhow::bail!("did not start within {within:?}"),
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Serving {
        child,
        pid,
        api,
        web,
        ops,
        line,
        bridge,
    })
}

/// Peers two nodes: `b`'s admin invites, `a`'s admin accepts.
pub async fn peer(a_admin: &Client, b_admin: &Client) -> Result<(), StepError> {
    let token = b_admin
        .peering
        .clone()
        .invite_peer(pb::InvitePeerRequest::default())
        .await
        .step("invite peer")?
        .token;
    a_admin
        .peering
        .clone()
        .accept_peer(pb::AcceptPeerRequest { token })
        .await
        .step("accept peer")?;
    Ok(())
}

/// Turns external messaging on or off at `admin`'s company.
pub async fn set_external(admin: &Client, enabled: bool) -> Result<(), StepError> {
    admin
        .external
        .clone()
        .set_external_settings(pb::SetExternalSettingsRequest {
            enabled: Some(enabled),
            ..Default::default()
        })
        .await
        .step("set external settings")?;
    Ok(())
}

/// Puts `member` on, or takes them off, their company's connected list
/// (those allowed to talk across companies); nothing changes if they are
/// already where wanted.
pub async fn set_connected(admin: &Client, member: &str, connected: bool) -> Result<(), StepError> {
    let mut external = admin.external.clone();
    let listed = external
        .list_connected(pb::ListConnectedRequest {})
        .await
        .step("list connected")?
        .members;
    let is = listed.iter().any(|m| m.member_id == member);
    if connected && !is {
        external
            .add_connected(pb::AddConnectedRequest {
                member_id: member.into(),
            })
            .await
            .step("add connected")?;
    }
    if !connected && is {
        external
            .remove_connected(pb::RemoveConnectedRequest {
                member_id: member.into(),
            })
            .await
            .step("remove connected")?;
    }
    Ok(())
}

/// Adds a member through the admin API; returns their id.
pub async fn add_member(
    admin: &Client,
    name: &str,
    display_name: &str,
    password: &str,
) -> Result<String, StepError> {
    Ok(admin
        .admin
        .clone()
        .add_member(pb::AddMemberRequest {
            name: name.into(),
            display_name: display_name.into(),
            password: password.into(),
            role: pb::Role::Member as i32,
        })
        .await
        .step("add member")?
        .id)
}

/// `from` sends a friend request to `to_id` and `to` (that member's client)
/// accepts: they are contacts, and `from`'s node hosts their direct room.
pub async fn befriend(from: &Client, to: &Client, to_id: &str) -> Result<(), StepError> {
    let sent = from
        .contacts
        .clone()
        .send_friend_request(pb::SendFriendRequestRequest {
            user_id: to_id.into(),
        })
        .await
        .step("send friend request")?;
    to.contacts
        .clone()
        .accept_friend_request(pb::AnswerFriendRequestRequest {
            id: sent.id,
            block: false,
        })
        .await
        .step("accept friend request")?;
    Ok(())
}

/// One company's side of an introduction: its admin, and the member who
/// will talk with the other company.
pub struct Side<'a> {
    pub admin: &'a Client,
    pub member: &'a Client,
    pub member_id: &'a str,
}

/// Two companies to a conversation: their nodes peered (`b` invites, `a`
/// accepts), external messaging on at both, each member on their
/// company's connected list, and the members contacts (`a`'s asked, so
/// `a`'s node hosts their direct room).
pub async fn introduce(a: &Side<'_>, b: &Side<'_>) -> Result<(), StepError> {
    peer(a.admin, b.admin).await?;
    for side in [a, b] {
        set_external(side.admin, true).await?;
        set_connected(side.admin, side.member_id, true).await?;
    }
    befriend(a.member, b.member, b.member_id).await
}

/// The first room in `who`'s list that satisfies `wanted`, asking again
/// until it shows; `None` if it has not within `within`.
pub async fn room_where(
    who: &Client,
    within: Duration,
    wanted: impl Fn(&pb::Room) -> bool,
) -> Result<Option<pb::Room>, StepError> {
    let deadline = Instant::now() + within;
    loop {
        let rooms = who
            .rooms
            .clone()
            .list_rooms(pb::ListRoomsRequest {})
            .await
            .step("list rooms")?
            .rooms;
        if let Some(room) = rooms.into_iter().find(&wanted) {
            return Ok(Some(room));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_reads_on_one_line_with_its_controls_escaped() {
        let status = Status::not_found("member \u{1b}[31mmallory@b.example\nis gone");
        assert_eq!(
            describe(&status),
            r"not found: member \u{1b}[31mmallory@b.example\nis gone"
        );
        let error = StepError {
            step: "accept peer",
            status: Status::permission_denied("admins only"),
        };
        assert_eq!(
            error.to_string(),
            "accept peer: permission denied: admins only"
        );
    }
}
