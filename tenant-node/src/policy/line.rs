//! The admin's "Chat with LINE users" settings, apart from those for other
//! companies: use status, LINE connected members, automatic grants to new
//! members, the file restriction in rooms with LINE users and the automatic
//! greeting. Admission reads them (`store::line::facts`); switching LINE
//! off takes LINE rooms out of members' lists and stops what is sent and
//! accepted for them, and the audit keeps everything.

use crate::error::{Error, Result};
use crate::ids::MemberId;
use crate::model::{Caller, Notice};
use crate::store::audit::{self as audit_log, NewEntry};
use crate::store::policy::List;
use crate::store::{line, now_ms, policy};
use crate::tenant::Tenant;

use super::Connected;

/// The greeting until the admin writes one.
pub const DEFAULT_GREETING: &str =
    "Thank you for adding us on LINE. Send the message ID of the person you want to talk to.";
/// The longest greeting: one LINE text message.
const MAX_GREETING_CHARS: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineSettings {
    pub enabled: bool,
    pub auto_grant: bool,
    pub restrict_files: bool,
    pub greeting: String,
    /// The channel `[line]` configures: its id and basic id.
    pub channel: Option<(String, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct LineSettingsChange {
    pub enabled: Option<bool>,
    pub auto_grant: Option<bool>,
    pub restrict_files: Option<bool>,
    pub greeting: Option<String>,
}

fn on_off(v: bool) -> &'static str {
    if v { "on" } else { "off" }
}

impl Tenant {
    pub async fn line_settings(&self, caller: &Caller) -> Result<LineSettings> {
        caller.require_admin()?;
        self.read_line_settings().await
    }

    pub(crate) async fn read_line_settings(&self) -> Result<LineSettings> {
        let mut conn = self.store.pool().acquire().await?;
        self.read_line_settings_in(&mut conn).await
    }

    /// The settings as `conn` (a transaction, say) sees them.
    pub(crate) async fn read_line_settings_in(
        &self,
        conn: &mut sqlx::AnyConnection,
    ) -> Result<LineSettings> {
        Ok(LineSettings {
            enabled: policy::flag(conn, line::LINE_ENABLED).await?,
            auto_grant: policy::flag(conn, line::LINE_AUTO_GRANT).await?,
            restrict_files: policy::flag(conn, line::LINE_RESTRICT_FILES).await?,
            greeting: policy::setting(conn, line::LINE_GREETING)
                .await?
                .unwrap_or_else(|| DEFAULT_GREETING.to_string()),
            channel: self
                .line
                .as_ref()
                .map(|c| (c.channel_id.clone(), c.basic_id.clone())),
        })
    }

    pub async fn set_line_settings(
        &self,
        caller: &Caller,
        change: LineSettingsChange,
    ) -> Result<LineSettings> {
        caller.require_admin()?;
        if change.enabled == Some(true) && self.line.is_none() {
            return Err(Error::FailedPrecondition(
                "this node has no LINE channel: add a [line] section to node.toml (channel id, secret and access token files, basic id) and restart".into(),
            ));
        }
        let greeting = change
            .greeting
            .as_deref()
            .map(|g| {
                let g = g.trim();
                if g.chars().count() > MAX_GREETING_CHARS {
                    return Err(Error::invalid(
                        "greeting",
                        format!("must be at most {MAX_GREETING_CHARS} characters"),
                    ));
                }
                if g.chars().any(|c| c.is_control() && c != '\n') {
                    return Err(Error::invalid(
                        "greeting",
                        "must not contain control characters",
                    ));
                }
                Ok(g.to_string())
            })
            .transpose()?;
        let before = self.read_line_settings().await?;
        let mut w = self.store.begin_write().await?;
        let mut changed = Vec::new();
        for (key, label, new, old) in [
            (
                line::LINE_ENABLED,
                "LINE use status",
                change.enabled,
                before.enabled,
            ),
            (
                line::LINE_AUTO_GRANT,
                "LINE auto-grant",
                change.auto_grant,
                before.auto_grant,
            ),
            (
                line::LINE_RESTRICT_FILES,
                "LINE restrict files",
                change.restrict_files,
                before.restrict_files,
            ),
        ] {
            if let Some(new) = new
                && new != old
            {
                policy::set_setting(&mut w.tx, key, on_off(new)).await?;
                changed.push(format!("{label} {}", on_off(new)));
            }
        }
        if let Some(greeting) = &greeting
            && greeting != &before.greeting
        {
            policy::set_setting(&mut w.tx, line::LINE_GREETING, greeting).await?;
            changed.push("LINE greeting changed".to_string());
        }
        if !changed.is_empty() {
            audit_log::append(
                &mut w.tx,
                &NewEntry::new("line.policy.changed", &caller.member).detail(changed.join(", ")),
                now_ms(),
            )
            .await?;
        }
        w.commit().await?;
        if !changed.is_empty() {
            tracing::info!(by = %caller.member, change = %changed.join(", "), "LINE settings changed");
        }
        self.read_line_settings().await
    }

    pub async fn line_connected(&self, caller: &Caller) -> Result<Vec<Connected>> {
        caller.require_admin()?;
        let mut conn = self.store.pool().acquire().await?;
        Ok(policy::connected_on(&mut conn, List::Line)
            .await?
            .into_iter()
            .map(Connected::from)
            .collect())
    }

    pub async fn add_line_connected(&self, caller: &Caller, id: &MemberId) -> Result<()> {
        caller.require_admin()?;
        self.require_grantable(id).await?;
        let mut w = self.store.begin_write().await?;
        if !policy::connect_to(&mut w.tx, List::Line, id, caller.member.as_str(), now_ms()).await? {
            return Err(Error::AlreadyExists(format!(
                "{id} is already on the LINE connected-members list"
            )));
        }
        let notice = self
            .line_grant(&mut w.tx, id, caller.member.as_str())
            .await?;
        w.commit().await?;
        self.hub.notice(notice);
        Ok(())
    }

    async fn line_grant(
        &self,
        conn: &mut sqlx::AnyConnection,
        id: &MemberId,
        by: &str,
    ) -> Result<Notice> {
        audit_log::append(
            conn,
            &NewEntry::new("line.connected.added", by).member(id),
            now_ms(),
        )
        .await?;
        let notice = Notice::new(
            id,
            "line_granted",
            "your admin allowed you to chat with LINE users",
        );
        policy::insert_notice(conn, &notice).await?;
        tracing::info!(member = %id, by, "LINE connected member added");
        Ok(notice)
    }

    pub async fn remove_line_connected(&self, caller: &Caller, id: &MemberId) -> Result<()> {
        caller.require_admin()?;
        let mut w = self.store.begin_write().await?;
        if !policy::disconnect_from(&mut w.tx, List::Line, id).await? {
            return Err(Error::NotFound(format!("LINE connected member {id}")));
        }
        audit_log::append(
            &mut w.tx,
            &NewEntry::new("line.connected.removed", &caller.member).member(id),
            now_ms(),
        )
        .await?;
        let notice = Notice::new(
            id,
            "line_revoked",
            "your admin no longer allows you to chat with LINE users",
        );
        policy::insert_notice(&mut w.tx, &notice).await?;
        w.commit().await?;
        tracing::info!(member = %id, by = %caller.member, "LINE connected member removed");
        self.hub.notice(notice);
        Ok(())
    }

    /// Grants a newly added member LINE when the admin chose automatic
    /// grants for LINE.
    pub(crate) async fn line_auto_grant(&self, id: &MemberId, by: &str) -> Result<()> {
        let mut w = self.store.begin_write().await?;
        if !(policy::flag(&mut w.tx, line::LINE_ENABLED).await?
            && policy::flag(&mut w.tx, line::LINE_AUTO_GRANT).await?)
        {
            return Ok(());
        }
        if !policy::connect_to(&mut w.tx, List::Line, id, by, now_ms()).await? {
            return Ok(());
        }
        let notice = self.line_grant(&mut w.tx, id, by).await?;
        w.commit().await?;
        self.hub.notice(notice);
        Ok(())
    }
}
