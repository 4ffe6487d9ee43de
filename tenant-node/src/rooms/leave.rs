//! Leaving: members who stop being permitted to talk across companies
//! leave every external room, and members a peer refuses (or who became
//! unknown to us) are taken out of the rooms this node hosts. Each
//! departure is a "became unknown" event everyone in the room sees.

use std::sync::Arc;

use super::Change;
use crate::admission::{self, Unchecked};
use crate::error::{Error, Result};
use crate::ids::{MemberId, RoomId, TenantId};
use crate::model::EventBody;
use crate::outbox::Refused;
use crate::store::rooms;
use crate::tenant::Tenant;

/// Acts on the refusals the deliverers report: a peer that refused for good
/// a change bringing its own members into a room hosted here has them
/// taken out again. Runs for as long as the node does.
pub async fn take_refused(tenant: Arc<Tenant>) {
    let Some(mut refusals) = tenant.outbox.take_refusals() else {
        return;
    };
    while let Some(Refused {
        room,
        peer,
        members,
    }) = refusals.recv().await
    {
        let removed = match members {
            None => tenant.remove_unreachable(&room, Some(&peer), None).await,
            Some(members) => {
                let mut done = Ok(());
                for m in &members {
                    if done.is_ok() {
                        done = tenant.remove_unreachable(&room, None, Some(m)).await;
                    }
                }
                done
            }
        };
        if let Err(e) = removed {
            tracing::warn!(room = %room, peer = %peer, error = %e, "cannot remove a peer's members from a room");
        }
    }
}

impl Tenant {
    /// Takes `members` (every member, when `None`) out of every room they
    /// share with another company: they stopped being permitted to talk
    /// across. Each departure is a "became unknown" event, sequenced here
    /// for rooms this node hosts and proposed to the host for the others;
    /// the rooms leave the members' lists at once and history stays.
    pub(crate) async fn leave_external_rooms(&self, members: Option<&[MemberId]>) -> Result<()> {
        let mut conn = self.store.pool().acquire().await?;
        let members = match members {
            Some(m) => m.to_vec(),
            None => rooms::members_in_external_rooms(&mut conn, &self.id).await?,
        };
        let mut work = Vec::new();
        for member in members {
            for room in rooms::external_rooms_of(&mut conn, &member, &self.id).await? {
                work.push((member.clone(), room));
            }
        }
        drop(conn);
        for (member, room) in work {
            let change = Change::new(&member, EventBody::Unknown, None);
            let mut w = self.store.begin_write().await?;
            let Some(row) = rooms::room(&mut w.tx, &room).await? else {
                continue;
            };
            match row.host.clone() {
                None => {
                    let applied = self.host_change(&mut w.tx, &row, change).await?;
                    w.commit().await?;
                    self.announce(applied);
                }
                Some(host) => {
                    rooms::delete_membership(&mut w.tx, &room, &member).await?;
                    let permit = admission::unchecked(&room, &member, Unchecked::Departure);
                    self.queue_for_host(
                        &mut w.tx,
                        &permit,
                        &host,
                        &change.id,
                        &change.body,
                        change.at_ms,
                    )
                    .await?;
                    w.commit().await?;
                    self.outbox.wake(&host);
                }
            }
            tracing::info!(room = %room, member = %member, "member no longer permitted across companies; left the room");
        }
        Ok(())
    }

    /// Removes members who stopped being reachable from the rooms this node
    /// hosts: every member of `tenant`, or just `member`. Each one's
    /// departure is a "became unknown" event.
    pub(crate) async fn remove_unreachable(
        &self,
        room: &RoomId,
        tenant: Option<&TenantId>,
        member: Option<&MemberId>,
    ) -> Result<()> {
        let mut w = self.store.begin_write().await?;
        let Some(row) = rooms::room(&mut w.tx, room).await? else {
            return Ok(());
        };
        if row.host.is_some() {
            return Ok(());
        }
        let gone: Vec<MemberId> = rooms::member_ids(&mut w.tx, room)
            .await?
            .into_iter()
            .filter(|m| tenant.is_some_and(|t| m.belongs_to(t)) || member == Some(m))
            .collect();
        let mut applied = Vec::new();
        for m in gone {
            let row = rooms::room(&mut w.tx, room)
                .await?
                .ok_or_else(|| Error::NotFound(format!("room {room}")))?;
            applied.push(
                self.host_change(&mut w.tx, &row, Change::new(&m, EventBody::Unknown, None))
                    .await?,
            );
        }
        w.commit().await?;
        for a in applied {
            tracing::info!(room = %room, member = %a.event.sender, "member became unknown and left the room");
            self.announce(a);
        }
        Ok(())
    }
}
