//! Members of other companies: finding them by exact id. Every step goes
//! through `admission`, on the way out and on the way in.

use works_bridge::{BridgeError, PublicProfile};

use crate::error::{Error, Result};
use crate::ids::{MemberId, TenantId};
use crate::model::{Caller, MemberState};
use crate::peers::bridge_error;
use crate::store::audit::NewEntry;
use crate::tenant::Tenant;

impl Tenant {
    /// Finds a member of another company by exact id: their public profile
    /// when both companies admit it, otherwise "not found".
    pub async fn find_external(&self, caller: &Caller, user: &str) -> Result<PublicProfile> {
        let external = MemberId::parse(user).map_err(Error::bad_id("user_id"))?;
        if external.belongs_to(&self.id) {
            return Err(Error::invalid(
                "user_id",
                format!("{external} is in your own company"),
            ));
        }
        let permit = match self.admit(&caller.member, &external).await? {
            Ok(permit) => permit,
            Err(denied) => {
                self.record(
                    NewEntry::new("lookup.refused", &caller.member)
                        .member(&caller.member)
                        .external(&external)
                        .peer(external.tenant())
                        .detail(denied.reason()),
                )
                .await?;
                return Err(denied.to_member(&external));
            }
        };
        if self.is_unknown(permit.external()).await? {
            self.record(
                NewEntry::new("lookup.refused", &caller.member)
                    .member(permit.local())
                    .external(permit.external())
                    .peer(permit.peer())
                    .detail("shown as unknown: their company withdrew them"),
            )
            .await?;
            return Err(Error::NotFound(format!("user {external} (unknown)")));
        }
        let peer = self.store.peer(permit.peer()).await?.ok_or_else(|| {
            Error::Internal(format!("admitted without a peer row for {}", permit.peer()))
        })?;
        let answer = match self.dial(&peer).await {
            Ok(mut client) => {
                client
                    .lookup_user(permit.local().as_str(), permit.external().as_str())
                    .await
            }
            Err(e) => Err(e),
        };
        let outcome = match &answer {
            Ok(_) => "found".to_string(),
            Err(e) => e.to_string(),
        };
        self.record(
            NewEntry::new("lookup", &caller.member)
                .member(permit.local())
                .external(permit.external())
                .peer(permit.peer())
                .detail(outcome),
        )
        .await?;
        match answer {
            Ok(profile) if profile.user == external.as_str() => Ok(profile),
            Ok(profile) => Err(Error::Unavailable(format!(
                "{} answered for {} instead of {external}",
                permit.peer(),
                profile.user
            ))),
            Err(BridgeError::Refused(status)) if status.code() == tonic::Code::NotFound => {
                Err(Error::NotFound(format!("user {external}")))
            }
            Err(e) => Err(bridge_error(permit.peer(), e)),
        }
    }

    /// Whether the user's company told us they are no longer reachable.
    pub async fn is_unknown(&self, user: &MemberId) -> Result<bool> {
        let mut conn = self.store.pool().acquire().await?;
        crate::store::policy::is_unknown(&mut conn, user).await
    }

    /// A peer's member asks for one of ours (called through the bridge, with
    /// `requester` already checked to belong to `peer`).
    pub async fn answer_lookup(
        &self,
        peer: &TenantId,
        requester: &str,
        user: &str,
    ) -> Result<PublicProfile> {
        let requester = MemberId::parse(requester).map_err(Error::bad_id("requester"))?;
        let not_found = || Error::NotFound(format!("user {user}"));
        let Ok(local) = MemberId::parse(user) else {
            return Err(not_found());
        };
        if !local.belongs_to(&self.id) {
            return Err(not_found());
        }
        let verdict = self.admit(&local, &requester).await?;
        let member = self.store.member(&local).await?;
        let found =
            matches!((&verdict, &member), (Ok(_), Some(m)) if m.state == MemberState::Active);
        let detail = match &verdict {
            Err(denied) => format!("answered not found ({})", denied.reason()),
            Ok(_) if !found => "answered not found (no such member)".to_string(),
            Ok(_) => "answered with the public profile".to_string(),
        };
        self.record(
            NewEntry::new("lookup.incoming", format!("peer:{peer}"))
                .member(&local)
                .external(&requester)
                .peer(peer)
                .detail(detail),
        )
        .await?;
        let Some(profile) = member.filter(|_| found) else {
            return Err(not_found());
        };
        let photo = if profile.has_photo {
            self.store.member_photo(&local).await?
        } else {
            None
        };
        Ok(PublicProfile {
            user: local.to_string(),
            display_name: profile.display_name,
            photo: photo.as_ref().map(|p| p.bytes.clone()).unwrap_or_default(),
            photo_content_type: photo.map(|p| p.content_type).unwrap_or_default(),
            company: self.company_name().await?,
        })
    }
}
