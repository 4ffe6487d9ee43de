//! External-messaging policy (admin): use status, connected members,
//! auto-grant, file restriction, company name; and members' notices.

pub mod audit;
pub mod line;

use crate::admission::{self, Announcement};
use crate::error::{Error, Result};
use crate::ids::{MemberId, TenantId};
use crate::model::{Caller, MemberState, Notice};
use crate::quota::HOUR_MS;
use crate::store::audit::{self as audit_log, NewEntry};
use crate::store::{WriteTx, limits, now_ms, policy};
use crate::tenant::Tenant;
use crate::wire::Control;

/// Members one reachability notice may name; a peer that withdraws more
/// at once says "all members".
const MAX_REACHABILITY_MEMBERS: usize = 1000;
/// What `peer_arrivals` counts for reachability notices.
const ARRIVAL_REACHABILITY: &str = "reachability";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalSettings {
    pub enabled: bool,
    pub auto_grant: bool,
    pub restrict_files: bool,
    pub company: String,
}

/// A change to the settings; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct SettingsChange {
    pub enabled: Option<bool>,
    pub auto_grant: Option<bool>,
    pub restrict_files: Option<bool>,
    pub company: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Connected {
    pub member: MemberId,
    pub display_name: String,
    pub granted_by: String,
    pub granted_at_ms: i64,
}

impl From<policy::ConnectedRow> for Connected {
    fn from(r: policy::ConnectedRow) -> Connected {
        Connected {
            member: r.member,
            display_name: r.display_name,
            granted_by: r.granted_by,
            granted_at_ms: r.granted_at_ms,
        }
    }
}

/// The reachability rows a notice about `members` of `peer` sets: one per
/// member, or the peer's "all members" row.
fn reachability_keys(peer: &TenantId, members: &[MemberId]) -> Vec<String> {
    if members.is_empty() {
        vec![policy::all_members_key(peer)]
    } else {
        members.iter().map(MemberId::to_string).collect()
    }
}

fn on_off(v: bool) -> &'static str {
    if v { "on" } else { "off" }
}

impl Tenant {
    /// Queues, for every peer, that `members` (all members, when empty)
    /// became unknown to other companies or reachable again, in the
    /// caller's transaction: the peers hear it in order with the room
    /// events around it, even when they are down now. Returns the peers to
    /// wake after the commit.
    async fn queue_reachability(
        &self,
        w: &mut WriteTx,
        by: &str,
        members: &[MemberId],
        reachable: bool,
    ) -> Result<Vec<TenantId>> {
        let at = now_ms();
        let peers = crate::store::peers::all(&mut w.tx).await?;
        let who = if members.is_empty() {
            "all members".to_string()
        } else {
            members
                .iter()
                .map(MemberId::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let state = if reachable { "reachable" } else { "unknown" };
        let control = Control::Reachability {
            members: members.to_vec(),
            reachable,
        };
        for peer in &peers {
            let permit = admission::announcement(peer, Announcement::Reachability);
            self.queue_control(&mut w.tx, &permit, &control, at).await?;
            audit_log::append(
                &mut w.tx,
                &NewEntry::new("peer.notified", by)
                    .peer(peer)
                    .detail(format!("queued: {who} {state}")),
                at,
            )
            .await?;
        }
        Ok(peers)
    }

    /// `queue_reachability` in a transaction of its own, for a change
    /// committed elsewhere (a member suspended or reinstated).
    async fn tell_peers(&self, by: &str, members: &[MemberId], reachable: bool) -> Result<()> {
        let mut w = self.store.begin_write().await?;
        let told = self
            .queue_reachability(&mut w, by, members, reachable)
            .await?;
        w.commit().await?;
        self.wake_all(&told);
        Ok(())
    }

    fn wake_all(&self, peers: &[TenantId]) {
        peers.iter().for_each(|p| self.outbox.wake(p));
    }

    /// A peer's control message about its members' reachability, applied
    /// in the caller's transaction (the relay batch's). Those who became
    /// unknown leave the rooms this node hosts after the commit
    /// (`unreachable_left`).
    pub(crate) async fn reachability_changed(
        &self,
        conn: &mut sqlx::AnyConnection,
        peer: &TenantId,
        members: &[MemberId],
        reachable: bool,
    ) -> Result<()> {
        if members.len() > MAX_REACHABILITY_MEMBERS {
            return Err(Error::invalid(
                "members",
                format!(
                    "at most {MAX_REACHABILITY_MEMBERS} members per notice; set all_members for more"
                ),
            ));
        }
        if let Some(other) = members.iter().find(|m| !m.belongs_to(peer)) {
            return Err(Error::PermissionDenied(format!(
                "{peer} cannot speak for {other}"
            )));
        }
        let at = now_ms();
        let counted = limits::count_arrivals(
            &mut *conn,
            limits::ArrivalFilter {
                kind: ARRIVAL_REACHABILITY,
                since_ms: at - HOUR_MS,
                peer: Some(peer.as_str()),
                external_user: None,
                local_member: None,
            },
        )
        .await?;
        let limit = self.limits.reachability_notices_per_peer_hour;
        if let Some(wait) = crate::quota::wait_ms(limit, counted, HOUR_MS, at) {
            return Err(crate::quota::exceeded(
                format!(
                    "{peer} already sent {limit} reachability notices this hour, the most {} accepts",
                    self.id
                ),
                wait,
            ));
        }
        limits::record_arrival(
            &mut *conn,
            ARRIVAL_REACHABILITY,
            peer.as_str(),
            "",
            "",
            at,
            at - HOUR_MS,
        )
        .await?;
        let keys = reachability_keys(peer, members);
        for key in &keys {
            policy::set_reachability(&mut *conn, key, peer.as_str(), reachable, at).await?;
        }
        let state = if reachable {
            "reachable again"
        } else {
            "unknown"
        };
        let entry = NewEntry::new("peer.reachability", format!("peer:{peer}"))
            .peer(peer)
            .detail(format!(
                "{} {state}",
                if members.is_empty() {
                    "all members".to_string()
                } else {
                    keys.join(", ")
                }
            ));
        audit_log::append(&mut *conn, &entry, at).await?;
        tracing::info!(peer = %peer, members = keys.len(), reachable, "peer reachability notice");
        Ok(())
    }

    /// After a peer's members became unknown (`members`; all, when empty):
    /// they get no more traffic, so they leave the rooms this node hosts.
    pub(crate) async fn unreachable_left(
        &self,
        peer: &TenantId,
        members: &[MemberId],
    ) -> Result<()> {
        let mut conn = self.store.pool().acquire().await?;
        let hosted = crate::store::rooms::hosted_rooms_with(&mut conn, peer).await?;
        drop(conn);
        for (room, member) in hosted {
            if members.is_empty() || members.contains(&member) {
                self.remove_unreachable(&room, None, Some(&member)).await?;
            }
        }
        Ok(())
    }

    pub async fn external_settings(&self, caller: &Caller) -> Result<ExternalSettings> {
        caller.require_admin()?;
        self.read_external_settings().await
    }

    async fn read_external_settings(&self) -> Result<ExternalSettings> {
        let mut conn = self.store.pool().acquire().await?;
        Ok(ExternalSettings {
            enabled: policy::flag(&mut conn, policy::EXTERNAL_ENABLED).await?,
            auto_grant: policy::flag(&mut conn, policy::EXTERNAL_AUTO_GRANT).await?,
            restrict_files: policy::flag(&mut conn, policy::EXTERNAL_RESTRICT_FILES).await?,
            company: self.company_name().await?,
        })
    }

    pub async fn set_external_settings(
        &self,
        caller: &Caller,
        change: SettingsChange,
    ) -> Result<ExternalSettings> {
        caller.require_admin()?;
        let company = change
            .company
            .as_deref()
            .map(|c| crate::tenant::clean_name("company", c, 100))
            .transpose()?;
        let before = self.read_external_settings().await?;
        let mut w = self.store.begin_write().await?;
        let mut changed = Vec::new();
        for (key, label, new, old) in [
            (
                policy::EXTERNAL_ENABLED,
                "use status",
                change.enabled,
                before.enabled,
            ),
            (
                policy::EXTERNAL_AUTO_GRANT,
                "auto-grant",
                change.auto_grant,
                before.auto_grant,
            ),
            (
                policy::EXTERNAL_RESTRICT_FILES,
                "restrict files",
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
        if let Some(company) = &company
            && company != &before.company
        {
            policy::set_setting(&mut w.tx, crate::store::settings::COMPANY_NAME, company).await?;
            changed.push(format!("company name {company:?}"));
        }
        if !changed.is_empty() {
            audit_log::append(
                &mut w.tx,
                &NewEntry::new("policy.changed", &caller.member).detail(changed.join(", ")),
                now_ms(),
            )
            .await?;
        }
        let switched = change.enabled.filter(|enabled| *enabled != before.enabled);
        let told = match switched {
            Some(enabled) => {
                self.queue_reachability(&mut w, caller.member.as_str(), &[], enabled)
                    .await?
            }
            None => Vec::new(),
        };
        w.commit().await?;
        self.wake_all(&told);
        if !changed.is_empty() {
            tracing::info!(by = %caller.member, change = %changed.join(", "), "external messaging settings changed");
        }
        match switched {
            Some(false) => self.leave_external_rooms(None).await?,
            // Back on: peers' members who hold ours as contacts get their
            // profiles as they are now.
            Some(true) => self.push_all_profiles().await?,
            None => {}
        }
        if switched != Some(true) && company.is_some_and(|c| c != before.company) {
            self.push_all_profiles().await?;
        }
        self.read_external_settings().await
    }

    pub async fn connected_members(&self, caller: &Caller) -> Result<Vec<Connected>> {
        caller.require_admin()?;
        let mut conn = self.store.pool().acquire().await?;
        Ok(policy::connected(&mut conn)
            .await?
            .into_iter()
            .map(Connected::from)
            .collect())
    }

    pub async fn add_connected(&self, caller: &Caller, id: &MemberId) -> Result<()> {
        caller.require_admin()?;
        self.require_grantable(id).await?;
        let mut w = self.store.begin_write().await?;
        if !policy::connect(&mut w.tx, id, caller.member.as_str(), now_ms()).await? {
            return Err(Error::AlreadyExists(format!(
                "{id} is already a connected member"
            )));
        }
        let notice = self.grant(&mut w, id, caller.member.as_str()).await?;
        let told = self
            .queue_reachability(
                &mut w,
                caller.member.as_str(),
                std::slice::from_ref(id),
                true,
            )
            .await?;
        w.commit().await?;
        self.wake_all(&told);
        self.hub.notice(notice);
        // Contacts elsewhere see the member as they are now.
        self.push_profile(id).await
    }

    /// A member an admin may put on a connected-members list: one who
    /// exists and is not suspended.
    pub(crate) async fn require_grantable(&self, id: &MemberId) -> Result<()> {
        match self.store.member(id).await? {
            None => Err(Error::NotFound(format!("member {id}"))),
            Some(m) if m.state == MemberState::Suspended => Err(Error::FailedPrecondition(
                format!("member {id} is suspended"),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Records a grant and the member's notice, inside the caller's transaction.
    async fn grant(&self, w: &mut WriteTx, id: &MemberId, by: &str) -> Result<Notice> {
        audit_log::append(
            &mut w.tx,
            &NewEntry::new("connected.added", by).member(id),
            now_ms(),
        )
        .await?;
        let notice = Notice::new(
            id,
            "external_granted",
            "your admin allowed you to talk with members of other companies",
        );
        policy::insert_notice(&mut w.tx, &notice).await?;
        tracing::info!(member = %id, by, "connected member added");
        Ok(notice)
    }

    pub async fn remove_connected(&self, caller: &Caller, id: &MemberId) -> Result<()> {
        caller.require_admin()?;
        let mut w = self.store.begin_write().await?;
        if !policy::disconnect(&mut w.tx, id).await? {
            return Err(Error::NotFound(format!("connected member {id}")));
        }
        audit_log::append(
            &mut w.tx,
            &NewEntry::new("connected.removed", &caller.member).member(id),
            now_ms(),
        )
        .await?;
        let notice = Notice::new(
            id,
            "external_revoked",
            "your admin no longer allows you to talk with members of other companies",
        );
        policy::insert_notice(&mut w.tx, &notice).await?;
        let told = self
            .queue_reachability(
                &mut w,
                caller.member.as_str(),
                std::slice::from_ref(id),
                false,
            )
            .await?;
        w.commit().await?;
        self.wake_all(&told);
        tracing::info!(member = %id, by = %caller.member, "connected member removed");
        self.hub.notice(notice);
        self.leave_external_rooms(Some(std::slice::from_ref(id)))
            .await
    }

    /// Suspends or reinstates a member (`accounts`), and what that means
    /// across companies. A suspended member is no longer permitted to talk
    /// across, as a member taken off the connected list: they leave every
    /// external room at once (the others see them become unknown) and the
    /// peers are told. Reinstated, a connected member is reachable again
    /// and the peers are told so; no room comes back by itself, as for a
    /// member connected again.
    pub async fn set_member_state(
        &self,
        caller: &Caller,
        id: &MemberId,
        state: MemberState,
    ) -> Result<crate::model::Member> {
        caller.require_admin()?;
        let before = self.store.member(id).await?.map(|m| m.state);
        let member = self.change_member_state(caller, id, state).await?;
        if before == Some(state) {
            return Ok(member);
        }
        let reachable = {
            let mut conn = self.store.pool().acquire().await?;
            policy::external_enabled(&mut conn).await?
                && policy::is_on_connected_list(&mut conn, id).await?
        };
        let one = std::slice::from_ref(id);
        match state {
            MemberState::Suspended => {
                self.leave_external_rooms(Some(one)).await?;
                if reachable {
                    self.tell_peers(caller.member.as_str(), one, false).await?;
                }
            }
            MemberState::Active => {
                if reachable {
                    self.tell_peers(caller.member.as_str(), one, true).await?;
                    self.push_profile(id).await?;
                }
            }
        }
        Ok(member)
    }

    /// Grants a newly added member when the admin chose automatic grants.
    pub(crate) async fn auto_grant(&self, id: &MemberId, by: &str) -> Result<()> {
        let mut w = self.store.begin_write().await?;
        if !(policy::external_enabled(&mut w.tx).await?
            && policy::flag(&mut w.tx, policy::EXTERNAL_AUTO_GRANT).await?)
        {
            return Ok(());
        }
        if !policy::connect(&mut w.tx, id, by, now_ms()).await? {
            return Ok(());
        }
        let notice = self.grant(&mut w, id, by).await?;
        let told = self
            .queue_reachability(&mut w, by, std::slice::from_ref(id), true)
            .await?;
        w.commit().await?;
        self.wake_all(&told);
        self.hub.notice(notice);
        Ok(())
    }

    pub async fn notices(&self, caller: &Caller) -> Result<Vec<Notice>> {
        let mut conn = self.store.pool().acquire().await?;
        Ok(policy::notices(&mut conn, &caller.member, 100)
            .await?
            .into_iter()
            .collect())
    }
}
