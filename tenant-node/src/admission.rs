//! Admission: who may talk to whom across companies. The one place it is
//! decided.
//!
//! A cross-tenant interaction between `a@A` and `b@B` is admitted only if A
//! enabled external messaging, `a` is on A's connected-members list, B did the
//! same for `b`, A and B are peered, and neither blocked the other. Each node
//! decides its own half here, for everything it sends and receives, and never
//! trusts the other node's claim about the other half.
//!
//! Code that sends or stores cross-tenant data takes a [`Permit`], which only
//! [`decide`] makes, so it cannot run without passing this check.

use sqlx::AnyConnection;

use crate::error::{Error, Result};
use crate::ids::{MemberId, TenantId};
use crate::model::RoomKind;
use crate::store::policy;
use crate::tenant::Tenant;

/// What this node knows of its half of the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Half {
    /// This company's admin enabled external messaging.
    pub enabled: bool,
    /// The local member is on the connected-members list (and active).
    pub connected: bool,
    /// The other company's node is a peer of this one.
    pub peered: bool,
    /// The local member blocked the external user.
    pub blocked: bool,
}

/// Why this node's half refuses. Shown as is to the node's own members;
/// never sent to the other company, which only learns "not found".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    ExternalDisabled,
    NotConnected,
    NotPeered,
    Blocked,
}

/// Proof that this node's half admits `local` ↔ `external` right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    local: MemberId,
    external: MemberId,
}

impl Permit {
    pub fn local(&self) -> &MemberId {
        &self.local
    }
    pub fn external(&self) -> &MemberId {
        &self.external
    }
    pub fn peer(&self) -> &TenantId {
        self.external.tenant()
    }
}

/// The rule itself: a pure function of this node's facts.
pub fn decide(local: &MemberId, external: &MemberId, half: Half) -> Result<Permit, Denied> {
    if !half.enabled {
        return Err(Denied::ExternalDisabled);
    }
    if !half.connected {
        return Err(Denied::NotConnected);
    }
    if !half.peered {
        return Err(Denied::NotPeered);
    }
    if half.blocked {
        return Err(Denied::Blocked);
    }
    Ok(Permit {
        local: local.clone(),
        external: external.clone(),
    })
}

impl Denied {
    /// The refusal as the local member who asked sees it.
    pub fn to_member(self, external: &MemberId) -> Error {
        match self {
            Denied::ExternalDisabled => Error::FailedPrecondition(
                "your company has not enabled messaging with other companies".into(),
            ),
            Denied::NotConnected => Error::PermissionDenied(
                "you are not on your company's connected-members list for other companies".into(),
            ),
            Denied::NotPeered => Error::FailedPrecondition(format!(
                "your company's node is not peered with {}",
                external.tenant()
            )),
            Denied::Blocked => Error::FailedPrecondition(format!("you blocked {external}")),
        }
    }

    /// The refusal as the other company sees it: nothing about why.
    pub fn to_peer(self, local: &MemberId) -> Error {
        Error::NotFound(format!("user {local}"))
    }

    pub fn reason(self) -> &'static str {
        match self {
            Denied::ExternalDisabled => "external messaging disabled",
            Denied::NotConnected => "member not connected",
            Denied::NotPeered => "not peered",
            Denied::Blocked => "blocked",
        }
    }
}

impl Tenant {
    /// Gathers this node's facts and decides its half for `local` ↔ `external`.
    pub async fn admit(
        &self,
        local: &MemberId,
        external: &MemberId,
    ) -> Result<Result<Permit, Denied>> {
        if !local.belongs_to(&self.id) || external.belongs_to(&self.id) {
            return Err(Error::Internal(format!(
                "admission asked for {local} ↔ {external}, which is not local ↔ external"
            )));
        }
        let mut conn = self.store.pool().acquire().await?;
        let half = half(&mut conn, local, external, external.tenant()).await?;
        Ok(decide(local, external, half))
    }

    /// This node's half for an event `actor` adds to a room of `kind` whose
    /// members are `members`: every pair of a local and an external member
    /// that includes the actor must be admitted. A block counts only in a
    /// direct room (it is between two people); in a group, members who stop
    /// being permitted are removed from the room instead. In a group hosted
    /// elsewhere this node talks only to the `host`, so the peering that
    /// counts is the host's, whoever the external member is.
    /// `Err((why, local member))` names the first pair refused.
    pub(crate) async fn admit_room_event(
        &self,
        conn: &mut AnyConnection,
        kind: RoomKind,
        host: Option<&TenantId>,
        actor: &MemberId,
        members: &[MemberId],
    ) -> Result<Result<(), (Denied, MemberId)>> {
        let pairs: Vec<(&MemberId, &MemberId)> = if actor.belongs_to(&self.id) {
            members
                .iter()
                .filter(|m| !m.belongs_to(&self.id))
                .map(|x| (actor, x))
                .collect()
        } else {
            members
                .iter()
                .filter(|m| m.belongs_to(&self.id))
                .map(|m| (m, actor))
                .collect()
        };
        for (local, external) in pairs {
            let peer = match (kind, host) {
                (RoomKind::Group, Some(host)) => host,
                _ => external.tenant(),
            };
            let mut half = half(conn, local, external, peer).await?;
            if kind == RoomKind::Group {
                half.blocked = false;
            }
            if let Err(denied) = decide(local, external, half) {
                return Ok(Err((denied, local.clone())));
            }
        }
        Ok(Ok(()))
    }
}

/// The facts of `local` ↔ `external`, with the peering of `peer` (the
/// external member's tenant, or the host of a group hosted elsewhere).
async fn half(
    conn: &mut AnyConnection,
    local: &MemberId,
    external: &MemberId,
    peer: &TenantId,
) -> Result<Half> {
    let facts = policy::pair_facts(conn, local, external, peer).await?;
    Ok(Half {
        enabled: facts.enabled,
        connected: facts.connected,
        peered: facts.peered,
        blocked: facts.blocked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_full_half_is_admitted() {
        let a = MemberId::parse("a@a.example").unwrap();
        let b = MemberId::parse("b@b.example").unwrap();
        let mut admitted = 0;
        for bits in 0..16u8 {
            let half = Half {
                enabled: bits & 1 != 0,
                connected: bits & 2 != 0,
                peered: bits & 4 != 0,
                blocked: bits & 8 != 0,
            };
            match decide(&a, &b, half) {
                Ok(permit) => {
                    admitted += 1;
                    assert_eq!(
                        (permit.local(), permit.external(), permit.peer().as_str()),
                        (&a, &b, "b.example")
                    );
                    assert_eq!(
                        half,
                        Half {
                            enabled: true,
                            connected: true,
                            peered: true,
                            blocked: false
                        }
                    );
                }
                Err(denied) => {
                    let expected = if !half.enabled {
                        Denied::ExternalDisabled
                    } else if !half.connected {
                        Denied::NotConnected
                    } else if !half.peered {
                        Denied::NotPeered
                    } else {
                        Denied::Blocked
                    };
                    assert_eq!(denied, expected, "{half:?}");
                }
            }
        }
        assert_eq!(admitted, 1);
    }

    #[test]
    fn the_other_company_learns_nothing_of_why() {
        let a = MemberId::parse("a@a.example").unwrap();
        let texts: Vec<String> = [
            Denied::ExternalDisabled,
            Denied::NotConnected,
            Denied::NotPeered,
            Denied::Blocked,
        ]
        .iter()
        .map(|d| d.to_peer(&a).to_string())
        .collect();
        assert!(
            texts.iter().all(|t| t == "user a@a.example not found"),
            "{texts:?}"
        );
    }
}
