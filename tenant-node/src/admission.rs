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
//! [`decide`] makes, so it cannot run without passing this check; a room
//! event is queued for a peer only with the [`RoomPermit`] this module
//! returned for it.

use sqlx::AnyConnection;

use crate::error::{Error, Result};
use crate::ids::{MemberId, RoomId, TenantId};
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

/// Proof that this node's half admits an event `sender` adds to `room`:
/// every pair of a local and an external member in the room that includes
/// the sender passed [`decide`], or the event is one that needs no
/// admission ([`unchecked`]). The outbox takes one for every room event it
/// queues for a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPermit {
    room: RoomId,
    sender: MemberId,
}

impl RoomPermit {
    pub fn room(&self) -> &RoomId {
        &self.room
    }
    pub fn sender(&self) -> &MemberId {
        &self.sender
    }
    /// Whether this permit covers an event of `sender` in `room`.
    pub fn covers(&self, room: &RoomId, sender: &MemberId) -> bool {
        &self.room == room && &self.sender == sender
    }
}

/// Why a room event needs no check of its own here; each caller says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unchecked {
    /// Someone leaves (leaving, removed, becoming unknown): every node with
    /// members in the room must hear of it, whatever the policy says now.
    Departure,
    /// A rename changes only what the room's current members see of it.
    Rename,
    /// A change our member proposes to a room hosted elsewhere, other than
    /// a message: the host checks it, and what it brings back passes our
    /// receiving gate (our members join only as our half admits them).
    Proposal,
}

/// The permit of an event that needs no admission check, for `why`.
pub fn unchecked(room: &RoomId, sender: &MemberId, why: Unchecked) -> RoomPermit {
    tracing::trace!(room = %room, sender = %sender, ?why, "room event needs no admission check");
    RoomPermit {
        room: *room,
        sender: sender.clone(),
    }
}

/// The permit of an invitation `actor` makes in `room`: every member it
/// brings in was admitted, each with every member of the room after it
/// (`joiners`, one permit each).
pub fn invitation(room: &RoomId, actor: &MemberId, joiners: &[RoomPermit]) -> Option<RoomPermit> {
    (!joiners.is_empty() && joiners.iter().all(|p| &p.room == room)).then(|| RoomPermit {
        room: *room,
        sender: actor.clone(),
    })
}

/// Proof that a control message may be queued for `peer`: for a profile
/// sync, that this node's half admits the member with every holder it
/// names (one [`Permit`] each); for an announcement, why it needs none.
/// The outbox takes one for every control message it queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPermit {
    peer: TenantId,
    /// The member and the holders a profile sync may name; `None` for an
    /// announcement, which names no holders.
    profile: Option<(MemberId, Vec<MemberId>)>,
}

impl ControlPermit {
    pub fn peer(&self) -> &TenantId {
        &self.peer
    }
    /// Whether this permit covers a sync of `member`'s profile to
    /// `holders`, none of them missing from the permits it was made of.
    pub fn covers_profile(&self, member: &MemberId, holders: &[MemberId]) -> bool {
        self.profile
            .as_ref()
            .is_some_and(|(m, hs)| m == member && holders.iter().all(|h| hs.contains(h)))
    }
    pub fn is_announcement(&self) -> bool {
        self.profile.is_none()
    }
}

/// Why an announcement to a peer needs no admission check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcement {
    /// Which of our members the peer can reach: it tells the peer what
    /// our half now refuses (or admits again), and names no one of theirs.
    Reachability,
    /// Which CAs to trust for this node: every peer must hear it.
    Cas,
}

/// The permit of an announcement to `peer`, for `why`.
pub fn announcement(peer: &TenantId, why: Announcement) -> ControlPermit {
    tracing::trace!(peer = %peer, ?why, "announcement needs no admission check");
    ControlPermit {
        peer: peer.clone(),
        profile: None,
    }
}

/// The permit of a sync of `member`'s profile to the holders of one peer
/// tenant: one permit per holder, each for `member`; `None` when there is
/// none, or they are not all for `member` and one tenant.
pub fn profile_sync(member: &MemberId, holders: &[Permit]) -> Option<ControlPermit> {
    let peer = holders.first()?.peer().clone();
    holders
        .iter()
        .all(|p| &p.local == member && p.peer() == &peer)
        .then(|| ControlPermit {
            peer,
            profile: Some((
                member.clone(),
                holders.iter().map(|p| p.external.clone()).collect(),
            )),
        })
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
    /// The refusal as the local member who asked sees it, for their own
    /// pair with `external`.
    pub fn to_member(self, external: &MemberId) -> Error {
        self.to_asker(None, external)
    }

    /// The refusal as `asker`, a local member, sees it when this node's
    /// half refused `local` ↔ `external`: `local` is the asker, or a
    /// colleague the asker would bring together with `external` (inviting
    /// them, or inviting `external` to a room they are in). The message
    /// names whoever is not permitted.
    pub fn to_asker_about(self, asker: &MemberId, local: &MemberId, external: &MemberId) -> Error {
        self.to_asker((asker != local).then_some(local), external)
    }

    /// `colleague`: the local member refused, when it is not the asker.
    fn to_asker(self, colleague: Option<&MemberId>, external: &MemberId) -> Error {
        match (self, colleague) {
            (Denied::ExternalDisabled, _) => Error::FailedPrecondition(
                "your company has not enabled messaging with other companies".into(),
            ),
            (Denied::NotConnected, None) => Error::PermissionDenied(
                "you are not on your company's connected-members list for other companies".into(),
            ),
            (Denied::NotConnected, Some(local)) => Error::PermissionDenied(format!(
                "{local} is not on {}'s connected-members list for other companies",
                local.tenant()
            )),
            (Denied::NotPeered, _) => Error::FailedPrecondition(format!(
                "your company's node is not peered with {}",
                external.tenant()
            )),
            (Denied::Blocked, None) => Error::FailedPrecondition(format!("you blocked {external}")),
            (Denied::Blocked, Some(local)) => {
                Error::FailedPrecondition(format!("{local} blocked {external}"))
            }
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
        self.admit_in(&mut conn, local, external).await
    }

    /// `admit`, reading the facts in the caller's transaction.
    pub(crate) async fn admit_in(
        &self,
        conn: &mut AnyConnection,
        local: &MemberId,
        external: &MemberId,
    ) -> Result<Result<Permit, Denied>> {
        if !local.belongs_to(&self.id) || external.belongs_to(&self.id) {
            return Err(Error::Internal(format!(
                "admission asked for {local} ↔ {external}, which is not local ↔ external"
            )));
        }
        let half = half(conn, local, external, external.tenant()).await?;
        Ok(decide(local, external, half))
    }

    /// This node's half for an event `actor` adds to `room`, of `kind`,
    /// whose members are `members` (see [`room_event`]).
    pub(crate) async fn admit_room_event(
        &self,
        conn: &mut AnyConnection,
        room: &RoomId,
        kind: RoomKind,
        host: Option<&TenantId>,
        actor: &MemberId,
        members: &[MemberId],
    ) -> Result<Result<RoomPermit, (Denied, MemberId)>> {
        room_event(conn, &self.id, room, kind, host, actor, members).await
    }
}

/// This node's (`us`) half for an event `actor` adds to `room`, of `kind`,
/// whose members are `members`: every pair of a local and an external
/// member that includes the actor must be admitted. A block counts only in
/// a direct room (it is between two people); in a group, members who stop
/// being permitted are removed from the room instead. In a group hosted
/// elsewhere this node talks only to the `host`, so the peering that counts
/// is the host's, whoever the external member is. `Err((why, local
/// member))` names the first pair refused.
pub(crate) async fn room_event(
    conn: &mut AnyConnection,
    us: &TenantId,
    room: &RoomId,
    kind: RoomKind,
    host: Option<&TenantId>,
    actor: &MemberId,
    members: &[MemberId],
) -> Result<Result<RoomPermit, (Denied, MemberId)>> {
    let pairs: Vec<(&MemberId, &MemberId)> = if actor.belongs_to(us) {
        members
            .iter()
            .filter(|m| !m.belongs_to(us))
            .map(|x| (actor, x))
            .collect()
    } else {
        members
            .iter()
            .filter(|m| m.belongs_to(us))
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
    Ok(Ok(RoomPermit {
        room: *room,
        sender: actor.clone(),
    }))
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
    fn a_refusal_names_whoever_is_not_permitted() {
        let alice = MemberId::parse("alice@a.example").unwrap();
        let carol = MemberId::parse("carol@a.example").unwrap();
        let bob = MemberId::parse("bob@b.example").unwrap();
        let shown = |denied: Denied, local: &MemberId| {
            denied.to_asker_about(&alice, local, &bob).to_string()
        };
        assert_eq!(
            shown(Denied::NotConnected, &carol),
            "carol@a.example is not on a.example's connected-members list for other companies"
        );
        assert_eq!(
            shown(Denied::NotConnected, &alice),
            "you are not on your company's connected-members list for other companies"
        );
        assert_eq!(
            shown(Denied::Blocked, &carol),
            "carol@a.example blocked bob@b.example"
        );
        assert_eq!(shown(Denied::Blocked, &alice), "you blocked bob@b.example");
        assert_eq!(
            shown(Denied::NotPeered, &carol),
            "your company's node is not peered with b.example"
        );
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

    mod room_events {
        use super::super::*;
        use crate::store::testing::{TempStore, temp_store};
        use crate::store::{contacts as contact_store, policy};

        fn room() -> RoomId {
            RoomId::parse("01J0000000000000000000000A").unwrap()
        }

        /// External messaging on, the given members connected, the given
        /// tenants peered.
        async fn facts(t: &TempStore, connected: &[&MemberId], peered: &[&str]) {
            let mut conn = t.conn().await;
            policy::set_setting(&mut conn, policy::EXTERNAL_ENABLED, "on")
                .await
                .unwrap();
            for m in connected {
                policy::connect(&mut conn, m, "admin@a.example", 1)
                    .await
                    .unwrap();
            }
            drop(conn);
            for p in peered {
                let tenant = TenantId::parse(p).unwrap();
                t.store
                    .upsert_declared_peer(&tenant, "127.0.0.1:1", "-")
                    .await
                    .unwrap();
            }
        }

        async fn judge(
            t: &TempStore,
            kind: RoomKind,
            host: Option<&str>,
            actor: &MemberId,
            members: &[&MemberId],
        ) -> Result<RoomPermit, (Denied, MemberId)> {
            let us = TenantId::parse("a.example").unwrap();
            let host = host.map(|h| TenantId::parse(h).unwrap());
            let members: Vec<MemberId> = members.iter().map(|m| (*m).clone()).collect();
            let mut conn = t.conn().await;
            room_event(
                &mut conn,
                &us,
                &room(),
                kind,
                host.as_ref(),
                actor,
                &members,
            )
            .await
            .unwrap()
        }

        #[tokio::test]
        async fn a_room_of_our_own_members_needs_no_policy() {
            let t = temp_store().await;
            let a = t.member("a@a.example").await;
            let a2 = t.member("a2@a.example").await;
            // External messaging is off and nobody is connected.
            let permit = judge(&t, RoomKind::Group, None, &a, &[&a, &a2])
                .await
                .unwrap();
            assert!(permit.covers(&room(), &a));
            assert!(!permit.covers(&room(), &a2));
        }

        #[tokio::test]
        async fn our_sender_needs_every_pair_with_the_other_company() {
            let t = temp_store().await;
            let a = t.member("a@a.example").await;
            let b = MemberId::parse("b@b.example").unwrap();
            let c = MemberId::parse("c@c.example").unwrap();
            facts(&t, &[&a], &["b.example"]).await;
            assert_eq!(
                judge(&t, RoomKind::Group, None, &a, &[&a, &b])
                    .await
                    .map(|p| p.sender().clone()),
                Ok(a.clone())
            );
            // c's company is not peered with ours.
            assert_eq!(
                judge(&t, RoomKind::Group, None, &a, &[&a, &b, &c]).await,
                Err((Denied::NotPeered, a.clone()))
            );
        }

        #[tokio::test]
        async fn an_external_sender_needs_every_local_member_admitted() {
            let t = temp_store().await;
            let a = t.member("a@a.example").await;
            let a2 = t.member("a2@a.example").await;
            let b = MemberId::parse("b@b.example").unwrap();
            facts(&t, &[&a], &["b.example"]).await;
            // a2 is not on the connected-members list: the refusal names a2.
            assert_eq!(
                judge(&t, RoomKind::Group, None, &b, &[&a, &b, &a2]).await,
                Err((Denied::NotConnected, a2.clone()))
            );
            let mut conn = t.conn().await;
            policy::connect(&mut conn, &a2, "admin@a.example", 1)
                .await
                .unwrap();
            drop(conn);
            assert!(
                judge(&t, RoomKind::Group, None, &b, &[&a, &b, &a2])
                    .await
                    .is_ok()
            );
        }

        #[tokio::test]
        async fn a_block_counts_in_a_direct_room_only() {
            let t = temp_store().await;
            let a = t.member("a@a.example").await;
            let b = MemberId::parse("b@b.example").unwrap();
            facts(&t, &[&a], &["b.example"]).await;
            let mut conn = t.conn().await;
            contact_store::block(&mut conn, a.as_str(), b.as_str(), 1)
                .await
                .unwrap();
            drop(conn);
            assert_eq!(
                judge(&t, RoomKind::Direct, None, &a, &[&a, &b]).await,
                Err((Denied::Blocked, a.clone()))
            );
            assert_eq!(
                judge(&t, RoomKind::Direct, None, &b, &[&a, &b]).await,
                Err((Denied::Blocked, a.clone()))
            );
            assert!(
                judge(&t, RoomKind::Group, None, &b, &[&a, &b])
                    .await
                    .is_ok()
            );
        }

        #[tokio::test]
        async fn in_a_group_hosted_elsewhere_the_hosts_peering_counts() {
            let t = temp_store().await;
            let a = t.member("a@a.example").await;
            let c = MemberId::parse("c@c.example").unwrap();
            // Peered with the host b.example only, never with c.example.
            facts(&t, &[&a], &["b.example"]).await;
            assert!(
                judge(&t, RoomKind::Group, Some("b.example"), &a, &[&a, &c])
                    .await
                    .is_ok()
            );
            assert_eq!(
                judge(&t, RoomKind::Group, None, &a, &[&a, &c]).await,
                Err((Denied::NotPeered, a.clone()))
            );
            // A direct room's two members talk to each other's node.
            assert_eq!(
                judge(&t, RoomKind::Direct, Some("b.example"), &a, &[&a, &c]).await,
                Err((Denied::NotPeered, a.clone()))
            );
        }

        #[tokio::test]
        async fn a_suspended_member_is_not_connected() {
            let t = temp_store().await;
            let a = t.member("a@a.example").await;
            let b = MemberId::parse("b@b.example").unwrap();
            facts(&t, &[&a], &["b.example"]).await;
            t.store
                .set_member_state(&a, crate::model::MemberState::Suspended)
                .await
                .unwrap();
            assert_eq!(
                judge(&t, RoomKind::Direct, None, &b, &[&a, &b]).await,
                Err((Denied::NotConnected, a.clone()))
            );
        }

        #[test]
        fn an_unchecked_permit_still_names_its_room_and_sender() {
            let a = MemberId::parse("a@a.example").unwrap();
            let other = RoomId::parse("01J0000000000000000000000B").unwrap();
            let permit = unchecked(&room(), &a, Unchecked::Departure);
            assert!(permit.covers(&room(), &a));
            assert!(!permit.covers(&other, &a));
        }

        #[tokio::test]
        async fn an_invitation_needs_a_permit_for_each_member_it_brings_in() {
            let t = temp_store().await;
            let a = t.member("a@a.example").await;
            let a2 = t.member("a2@a.example").await;
            let joiner = judge(&t, RoomKind::Group, None, &a2, &[&a, &a2])
                .await
                .unwrap();
            assert_eq!(invitation(&room(), &a, &[]), None);
            let permit = invitation(&room(), &a, &[joiner]).unwrap();
            assert!(permit.covers(&room(), &a));
            let elsewhere = unchecked(
                &RoomId::parse("01J0000000000000000000000B").unwrap(),
                &a2,
                Unchecked::Proposal,
            );
            assert_eq!(invitation(&room(), &a, &[elsewhere]), None);
        }
    }
}
