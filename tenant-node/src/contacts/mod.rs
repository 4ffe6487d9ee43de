//! Members of other companies: finding them by exact id, friend requests,
//! external contacts, trash and blocks. Every cross-company step goes through
//! `admission`, on the way out and on the way in.

pub mod invitations;
pub mod line;
pub mod mail;

use works_bridge::error::clip;
use works_bridge::{BridgeError, PublicProfile};

use std::collections::BTreeMap;

use crate::admission::{self, Permit};
use crate::error::{Error, Result};
use crate::ids::{MemberId, TenantId};
use crate::model::{Caller, MemberState, Notice};
use crate::quota::HOUR_MS;
use crate::store::audit::{self, NewEntry};
use crate::store::contacts::{self as store, ContactRow, RequestRow};
use crate::store::limits::{self, ArrivalFilter};
use crate::store::{now_ms, policy};
use crate::tenant::Tenant;
use crate::wire::status::from_peer;
use crate::wire::{Control, Profile};

impl Tenant {
    /// Finds a member of another company by exact id: their public profile
    /// when both companies admit it, otherwise "not found".
    pub async fn find_external(
        &self,
        caller: &Caller,
        external: &MemberId,
    ) -> Result<PublicProfile> {
        self.require_external(external)?;
        let permit = self.permit_for(caller, external, "lookup").await?;
        let peer = self.store.peer(permit.peer()).await?.ok_or_else(|| {
            Error::Internal(format!("admitted without a peer row for {}", permit.peer()))
        })?;
        let answer = match self.dial(&peer).await {
            Ok(mut client) => client.lookup_user(permit.local(), permit.external()).await,
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
            Ok(profile) if profile.user == *external => {
                if let Ok(company) = crate::tenant::clean_name("company", &profile.company, 100) {
                    let mut w = self.store.begin_write().await?;
                    limits::set_peer_company(&mut w.tx, permit.peer().as_str(), &company, now_ms())
                        .await?;
                    w.commit().await?;
                }
                Ok(profile)
            }
            Ok(profile) => Err(Error::Unavailable(format!(
                "{} answered for {} instead of {external}",
                permit.peer(),
                profile.user
            ))),
            Err(BridgeError::Refused(status)) if status.code() == tonic::Code::NotFound => {
                Err(Error::NotFound(format!("user {external}")))
            }
            Err(e) => Err(from_peer(permit.peer(), e)),
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
        requester: &MemberId,
        user: &MemberId,
    ) -> Result<PublicProfile> {
        let l = &self.limits;
        self.count_arrival(
            ARRIVAL_LOOKUP,
            peer,
            requester,
            &[
                (
                    Scope::Member,
                    l.incoming_lookups_per_member_hour,
                    format!(
                        "{requester} already looked up {} users this hour, the most {} answers for one member",
                        l.incoming_lookups_per_member_hour, self.id
                    ),
                ),
                (
                    Scope::Peer,
                    l.incoming_lookups_per_peer_hour,
                    format!(
                        "members of {peer} already looked up {} users this hour, the most {} answers for one company",
                        l.incoming_lookups_per_peer_hour, self.id
                    ),
                ),
            ],
        )
        .await?;
        let not_found = || Error::NotFound(format!("user {}", clip(user.as_str())));
        if !user.belongs_to(&self.id) {
            return Err(not_found());
        }
        let local = user;
        let verdict = self.admit(local, requester).await?;
        let member = self.store.member(local).await?;
        let found =
            matches!((&verdict, &member), (Ok(_), Some(m)) if m.state == MemberState::Active);
        let detail = match &verdict {
            Err(denied) => format!("answered not found ({})", denied.reason()),
            Ok(_) if !found => "answered not found (no such member)".to_string(),
            Ok(_) => "answered with the public profile".to_string(),
        };
        self.record(
            NewEntry::new("lookup.incoming", format!("peer:{peer}"))
                .member(local)
                .external(requester)
                .peer(peer)
                .detail(detail),
        )
        .await?;
        let Some(profile) = member.filter(|_| found) else {
            return Err(not_found());
        };
        let photo = if profile.has_photo {
            self.store.member_photo(local).await?
        } else {
            None
        };
        Ok(PublicProfile {
            user: local.clone(),
            display_name: profile.display_name,
            photo: photo.as_ref().map(|p| p.bytes.clone()).unwrap_or_default(),
            photo_content_type: photo.map(|p| p.content_type).unwrap_or_default(),
            company: self.company_name().await?,
        })
    }
}

/// A friend request as a member sees it.
#[derive(Debug, Clone)]
pub struct FriendRequestView {
    pub id: String,
    pub external_user: String,
    pub outgoing: bool,
    pub state: String,
    pub display_name: String,
    /// The other company's name, one per tenant (the latest its node sent).
    pub company: String,
    /// The other company's tenant id, from its node's verified certificate.
    pub tenant: String,
    pub created_at_ms: i64,
}

/// An external contact: synced fields from the user's company, read-only
/// here, and the owner's own fields.
#[derive(Debug, Clone)]
pub struct ContactView {
    pub user_id: String,
    pub display_name: String,
    pub photo: Vec<u8>,
    pub photo_content_type: String,
    /// The user's company name, their fixed status, one per tenant (the
    /// latest its node sent); "unknown" when their company withdrew them.
    pub status: String,
    /// The user's tenant id, verified: shown beside the company name.
    pub tenant: String,
    pub fields: serde_json::Value,
    pub trashed: bool,
    pub created_at_ms: i64,
}

fn view_of_request(r: RequestRow, company: String, tenant: String) -> FriendRequestView {
    FriendRequestView {
        id: r.id,
        external_user: r.external_user,
        outgoing: r.outgoing,
        state: r.state,
        display_name: r.display_name,
        company,
        tenant,
        created_at_ms: r.created_at_ms,
    }
}

/// What `peer_arrivals` counts: friend requests, lookups, profile syncs.
const ARRIVAL_REQUEST: &str = "friend_request";
const ARRIVAL_LOOKUP: &str = "lookup";
const ARRIVAL_PROFILE: &str = "profile_sync";

/// Whom a limit on arrivals counts: one peer member, or the peer in all.
#[derive(Debug, Clone, Copy)]
enum Scope {
    Member,
    Peer,
}

enum Outcome {
    Pending(FriendRequestView),
    Accepted(ContactView),
}

impl Tenant {
    /// The public profile of one of our members, as peers see it.
    async fn public_profile(&self, member: &MemberId) -> Result<PublicProfile> {
        let m = self
            .store
            .member(member)
            .await?
            .ok_or_else(|| Error::NotFound(format!("member {member}")))?;
        let photo = if m.has_photo {
            self.store.member_photo(member).await?
        } else {
            None
        };
        Ok(PublicProfile {
            user: member.clone(),
            display_name: m.display_name,
            photo: photo.as_ref().map(|p| p.bytes.clone()).unwrap_or_default(),
            photo_content_type: photo.map(|p| p.content_type).unwrap_or_default(),
            company: self.company_name().await?,
        })
    }

    /// Checks our half for `local` ↔ `external`, and that the user is not
    /// "unknown"; a refusal is audited and told to our member precisely.
    async fn permit_for(&self, caller: &Caller, external: &MemberId, kind: &str) -> Result<Permit> {
        let (reason, error) = match self.admit(&caller.member, external).await? {
            Ok(permit) => {
                if !self.is_unknown(external).await? {
                    return Ok(permit);
                }
                (
                    "shown as unknown: their company withdrew them",
                    Error::NotFound(format!("user {external} (unknown)")),
                )
            }
            Err(denied) => (denied.reason(), denied.to_member(external)),
        };
        self.record(
            NewEntry::new(&format!("{kind}.refused"), &caller.member)
                .member(&caller.member)
                .external(external)
                .peer(external.tenant())
                .detail(reason),
        )
        .await?;
        Err(error)
    }

    async fn dial_tenant(&self, tenant: &TenantId) -> Result<works_bridge::PeerClient> {
        let peer = self.store.peer(tenant).await?.ok_or_else(|| {
            Error::FailedPrecondition(format!("your company's node is not peered with {tenant}"))
        })?;
        self.dial(&peer).await.map_err(|e| from_peer(tenant, e))
    }

    pub async fn send_friend_request(
        &self,
        caller: &Caller,
        external: &MemberId,
    ) -> Result<FriendRequestView> {
        self.require_external(external)?;
        match self.request_to(caller, external, None).await? {
            Outcome::Pending(view) => Ok(view),
            Outcome::Accepted(_) => Err(Error::Internal("accepted without an invitation".into())),
        }
    }

    /// Redeems another company's member's invitation link: a request that
    /// their node accepts at once.
    pub async fn redeem_link(&self, caller: &Caller, link: &str) -> Result<ContactView> {
        let parsed = crate::contacts::invitations::parse_link(link)?;
        if parsed.issuer.belongs_to(&self.id) {
            return Err(Error::invalid(
                "link",
                "this invitation is from your own company",
            ));
        }
        if parsed.claims.expires_at_ms <= now_ms() {
            return Err(Error::FailedPrecondition(format!(
                "this invitation from {} has expired; ask for a new one",
                parsed.issuer
            )));
        }
        match self
            .request_to(caller, &parsed.issuer, Some(link.trim()))
            .await?
        {
            Outcome::Accepted(contact) => Ok(contact),
            Outcome::Pending(_) => Err(Error::Internal("the invitation was not honoured".into())),
        }
    }

    async fn request_to(
        &self,
        caller: &Caller,
        external: &MemberId,
        invitation: Option<&str>,
    ) -> Result<Outcome> {
        let external = external.clone();
        let permit = self.permit_for(caller, &external, "request").await?;
        let mut conn = self.store.pool().acquire().await?;
        if let Some(c) =
            store::contact(&mut conn, caller.member.as_str(), external.as_str()).await?
            && c.trashed_at_ms.is_none()
        {
            return Err(Error::AlreadyExists(format!(
                "{external} is already your contact"
            )));
        }
        if let Some(pending) =
            store::pending_between(&mut conn, caller.member.as_str(), external.as_str()).await?
        {
            return Err(if pending.outgoing {
                Error::AlreadyExists(format!("your request to {external} is still pending"))
            } else {
                Error::FailedPrecondition(format!(
                    "{external} already asked you; accept their request {}",
                    pending.id
                ))
            });
        }
        let since = now_ms() - HOUR_MS;
        if store::outgoing_since(&mut conn, Some(caller.member.as_str()), None, since).await?
            >= i64::from(self.limits.requests_per_member_hour)
        {
            return Err(Error::ResourceExhausted(format!(
                "at most {} friend requests an hour; try again later",
                self.limits.requests_per_member_hour
            )));
        }
        if store::outgoing_since(&mut conn, None, Some(permit.peer().as_str()), since).await?
            >= i64::from(self.limits.requests_per_peer_hour)
        {
            return Err(Error::ResourceExhausted(format!(
                "your company sent {} the most friend requests allowed an hour; try again later",
                permit.peer()
            )));
        }
        drop(conn);
        let id = ulid::Ulid::new().to_string();
        let me = self.public_profile(&caller.member).await?;
        let mut client = self.dial_tenant(permit.peer()).await?;
        let sent = client
            .send_friend_request(&id, &me, permit.external(), invitation)
            .await;
        self.record(
            NewEntry::new("request.sent", &caller.member)
                .member(permit.local())
                .external(permit.external())
                .peer(permit.peer())
                .detail(match &sent {
                    Ok(None) => format!("request {id} delivered"),
                    Ok(Some(_)) => format!("request {id} accepted at once (invitation link)"),
                    Err(e) => format!("request {id} not delivered: {e}"),
                }),
        )
        .await?;
        let accepted = match sent {
            Ok(accepted) => accepted,
            Err(BridgeError::Refused(s)) if s.code() == tonic::Code::NotFound => {
                return Err(Error::NotFound(format!("user {external}")));
            }
            Err(e) => return Err(from_peer(permit.peer(), e)),
        };
        let at = now_ms();
        let row = RequestRow {
            id,
            local_member: caller.member.to_string(),
            external_user: external.to_string(),
            outgoing: true,
            state: "pending".into(),
            display_name: String::new(),
            company: String::new(),
            created_at_ms: at,
            decided_at_ms: None,
        };
        let contact = match accepted {
            Some(profile) => Some(
                self.synced_contact(caller.member.as_str(), profile, at)
                    .await?,
            ),
            None => None,
        };
        let mut w = self.store.begin_write().await?;
        store::insert_request(&mut w.tx, &row).await?;
        let Some(contact) = contact else {
            w.commit().await?;
            return Ok(Outcome::Pending(self.request_view(row).await?));
        };
        store::decide_request(&mut w.tx, &row.id, "accepted", at).await?;
        store::upsert_contact(&mut w.tx, &contact).await?;
        limits::set_peer_company(&mut w.tx, permit.peer().as_str(), &contact.company, at).await?;
        w.commit().await?;
        self.open_direct_after_acceptance(&caller.member, &external)
            .await;
        Ok(Outcome::Accepted(self.contact(caller, &external).await?))
    }

    /// A new contact row from a profile a peer sent, checked like any input.
    async fn synced_contact(
        &self,
        owner: &str,
        profile: PublicProfile,
        at: i64,
    ) -> Result<ContactRow> {
        let display_name = crate::tenant::clean_name("display_name", &profile.display_name, 100)?;
        let photo = if profile.photo.is_empty() {
            None
        } else {
            Some(
                crate::accounts::photo::normalize(profile.photo, self.limits.max_photo_bytes)
                    .await?,
            )
        };
        Ok(ContactRow {
            owner: owner.to_string(),
            user_id: profile.user.to_string(),
            fields: serde_json::json!({ "name": display_name }).to_string(),
            display_name,
            photo_type: photo.as_ref().map(|p| p.content_type.clone()),
            photo: photo.map(|p| p.bytes),
            company: crate::tenant::clean_name("company", &profile.company, 100)?,
            created_at_ms: at,
            synced_at_ms: at,
            trashed_at_ms: None,
        })
    }

    /// Refuses a member of this company where one of another is asked for.
    fn require_external(&self, user: &MemberId) -> Result<()> {
        if user.belongs_to(&self.id) {
            return Err(Error::invalid(
                "user_id",
                format!("{user} is in your own company"),
            ));
        }
        Ok(())
    }

    /// A request from a peer's member arrives (through the bridge).
    pub async fn receive_friend_request(
        &self,
        peer: &TenantId,
        id: &str,
        from: PublicProfile,
        to: &MemberId,
        invitation: Option<&str>,
    ) -> Result<Option<PublicProfile>> {
        let requester = from.user.clone();
        let not_found = || Error::NotFound(format!("user {}", clip(to.as_str())));
        if !to.belongs_to(&self.id) {
            return Err(not_found());
        }
        let local = to.clone();
        let verdict = self.admit(&local, &requester).await?;
        let active =
            matches!(self.store.member(&local).await?, Some(m) if m.state == MemberState::Active);
        if verdict.is_err() || !active {
            let why = verdict
                .err()
                .map(|d| d.reason())
                .unwrap_or("no such member");
            self.record(
                NewEntry::new("request.refused", format!("peer:{peer}"))
                    .member(&local)
                    .external(&requester)
                    .peer(peer)
                    .detail(format!("request {id} answered not found ({why})")),
            )
            .await?;
            return Err(not_found());
        }
        let display_name = crate::tenant::clean_name("display_name", &from.display_name, 100)?;
        let company = crate::tenant::clean_name("company", &from.company, 100)?;
        let row = RequestRow {
            id: id.to_string(),
            local_member: local.to_string(),
            external_user: requester.to_string(),
            outgoing: false,
            state: "pending".into(),
            display_name: display_name.clone(),
            company: company.clone(),
            created_at_ms: now_ms(),
            decided_at_ms: None,
        };
        if let Some(link) = invitation {
            // Counted like any new request, whether the link holds or not:
            // each refusal is audited, so guessing links is limited too.
            let mut w = self.store.begin_write().await?;
            self.count_incoming_request(&mut w.tx, peer, &requester, &local, row.created_at_ms)
                .await?;
            w.commit().await?;
            return self
                .accept_by_invitation(peer, row, from, link, &local, &requester)
                .await
                .map(Some);
        }
        let mut w = self.store.begin_write().await?;
        if let Some(pending) =
            store::pending_incoming(&mut w.tx, local.as_str(), requester.as_str()).await?
        {
            // Asked again while the first is pending (or a retry): one
            // request, one notice.
            tracing::info!(peer = %peer, from = %requester, to = %local, request = %pending.id, "friend request repeated while pending");
            return Ok(None);
        }
        self.count_incoming_request(&mut w.tx, peer, &requester, &local, row.created_at_ms)
            .await?;
        if !store::insert_request(&mut w.tx, &row).await? {
            // The same request again (a retry): already stored, and the
            // transaction that counted it rolls back.
            return Ok(None);
        }
        // Decoded only within the limits just counted; the member who
        // accepts has the requester's photo at once.
        if !from.photo.is_empty() {
            let photo =
                crate::accounts::photo::normalize(from.photo, self.limits.max_photo_bytes).await?;
            store::set_request_photo(&mut w.tx, &row.id, &photo.bytes, &photo.content_type).await?;
        }
        limits::set_peer_company(&mut w.tx, peer.as_str(), &company, row.created_at_ms).await?;
        audit::append(
            &mut w.tx,
            &NewEntry::new("request.received", format!("peer:{peer}"))
                .member(&local)
                .external(&requester)
                .peer(peer)
                .detail(format!("request {id} from {display_name} ({company})")),
            now_ms(),
        )
        .await?;
        let notice = Notice::new(
            &local,
            "friend_request",
            format!("{display_name} ({company}, {requester}) wants to add you as a contact"),
        );
        policy::insert_notice(&mut w.tx, &notice).await?;
        w.commit().await?;
        self.hub.notice(notice);
        Ok(None)
    }

    /// Counts a call from `member` of `peer` against hourly limits, and
    /// stores it when it is within them all; a call over one stores nothing.
    async fn count_arrival(
        &self,
        kind: &'static str,
        peer: &TenantId,
        member: &MemberId,
        checks: &[(Scope, u32, String)],
    ) -> Result<()> {
        let mut w = self.store.begin_write().await?;
        count_arrival_in(&mut w.tx, kind, peer, member, checks).await?;
        w.commit().await
    }

    /// The receiver's limits on new friend requests from a peer: per peer
    /// member, per peer company (so made-up members do not escape) and per
    /// recipient (so one of ours is not flooded with notices). Within them
    /// all, the request is counted in the caller's transaction.
    async fn count_incoming_request(
        &self,
        conn: &mut sqlx::AnyConnection,
        peer: &TenantId,
        requester: &MemberId,
        local: &MemberId,
        now: i64,
    ) -> Result<()> {
        let since = now - HOUR_MS;
        let filter = |peer: Option<&'static str>| ArrivalFilter {
            kind: ARRIVAL_REQUEST,
            since_ms: since,
            peer,
            external_user: None,
            local_member: None,
        };
        let l = &self.limits;
        let checks = [
            (
                ArrivalFilter {
                    external_user: Some(requester.as_str()),
                    ..filter(None)
                },
                l.incoming_requests_per_member_hour,
                format!(
                    "{requester} already sent {} friend requests this hour, the most {} accepts from one member",
                    l.incoming_requests_per_member_hour, self.id
                ),
            ),
            (
                ArrivalFilter {
                    peer: Some(peer.as_str()),
                    ..filter(None)
                },
                l.incoming_requests_per_peer_hour,
                format!(
                    "members of {peer} already sent {} friend requests this hour, the most {} accepts from one company",
                    l.incoming_requests_per_peer_hour, self.id
                ),
            ),
            (
                ArrivalFilter {
                    peer: Some(peer.as_str()),
                    local_member: Some(local.as_str()),
                    ..filter(None)
                },
                l.incoming_requests_per_recipient_hour,
                format!(
                    "{local} already got {} friend requests from {peer} this hour, the most {} accepts",
                    l.incoming_requests_per_recipient_hour, self.id
                ),
            ),
        ];
        for (filter, limit, what) in checks {
            let counted = limits::count_arrivals(&mut *conn, filter).await?;
            if let Some(wait) = crate::quota::wait_ms(limit, counted, HOUR_MS, now) {
                return Err(crate::quota::exceeded(what, wait));
            }
        }
        limits::record_arrival(
            conn,
            ARRIVAL_REQUEST,
            peer.as_str(),
            requester.as_str(),
            local.as_str(),
            now,
            since,
        )
        .await
    }

    /// A request that carries one of our member's invitation links: checked,
    /// used up and accepted at once, all in one transaction.
    async fn accept_by_invitation(
        &self,
        peer: &TenantId,
        row: RequestRow,
        from: PublicProfile,
        link: &str,
        local: &MemberId,
        requester: &MemberId,
    ) -> Result<PublicProfile> {
        let at = now_ms();
        let contact = self.synced_contact(local.as_str(), from, at).await?;
        let mut w = self.store.begin_write().await?;
        if let Err(e) = self.use_invitation(&mut w.tx, link, local, requester).await {
            drop(w);
            self.record(
                NewEntry::new("request.refused", format!("peer:{peer}"))
                    .member(local)
                    .external(requester)
                    .peer(peer)
                    .detail(format!("request {}: {e}", row.id)),
            )
            .await?;
            return Err(e);
        }
        store::insert_request(&mut w.tx, &row).await?;
        store::decide_request(&mut w.tx, &row.id, "accepted", at).await?;
        store::upsert_contact(&mut w.tx, &contact).await?;
        limits::set_peer_company(&mut w.tx, peer.as_str(), &contact.company, at).await?;
        audit::append(
            &mut w.tx,
            &NewEntry::new("request.accepted_by_invitation", format!("peer:{peer}"))
                .member(local)
                .external(requester)
                .peer(peer)
                .detail(format!("request {}; contact added", row.id)),
            at,
        )
        .await?;
        let notice = Notice::new(
            local,
            "contact_added",
            format!(
                "{} ({requester}) used your invitation and is now your contact",
                contact.display_name
            ),
        );
        policy::insert_notice(&mut w.tx, &notice).await?;
        w.commit().await?;
        self.hub.notice(notice);
        self.public_profile(local).await
    }

    pub async fn friend_requests(&self, caller: &Caller) -> Result<Vec<FriendRequestView>> {
        let rows = {
            let mut conn = self.store.pool().acquire().await?;
            store::requests_of(&mut conn, caller.member.as_str()).await?
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.request_view(row).await?);
        }
        Ok(out)
    }

    async fn request_view(&self, row: RequestRow) -> Result<FriendRequestView> {
        let user =
            MemberId::parse(&row.external_user).map_err(|e| Error::Internal(e.to_string()))?;
        let company = self.peer_company(user.tenant()).await?;
        Ok(view_of_request(row, company, user.tenant().to_string()))
    }

    /// The company name a peer tenant last sent; its tenant id until it
    /// has sent one. Never a member's own: one name per tenant.
    pub async fn peer_company(&self, tenant: &TenantId) -> Result<String> {
        let mut conn = self.store.pool().acquire().await?;
        Ok(limits::peer_company(&mut conn, tenant.as_str())
            .await?
            .unwrap_or_else(|| tenant.to_string()))
    }

    async fn incoming_pending(&self, caller: &Caller, id: &str) -> Result<(RequestRow, MemberId)> {
        let mut conn = self.store.pool().acquire().await?;
        let row = store::request(&mut conn, id.trim())
            .await?
            .filter(|r| r.local_member == caller.member.as_str() && !r.outgoing)
            .ok_or_else(|| Error::NotFound(format!("friend request {id}")))?;
        if row.state != "pending" {
            return Err(Error::FailedPrecondition(format!(
                "friend request {id} was already {}",
                row.state
            )));
        }
        let external =
            MemberId::parse(&row.external_user).map_err(|e| Error::Internal(e.to_string()))?;
        Ok((row, external))
    }

    pub async fn accept_friend_request(&self, caller: &Caller, id: &str) -> Result<ContactView> {
        let (row, external) = self.incoming_pending(caller, id).await?;
        let permit = self.permit_for(caller, &external, "request").await?;
        let me = self.public_profile(&caller.member).await?;
        let mut client = self.dial_tenant(permit.peer()).await?;
        match client
            .answer_friend_request(&row.id, &me, &external, true)
            .await
        {
            Ok(()) => {}
            Err(BridgeError::Refused(s)) if s.code() == tonic::Code::NotFound => {
                return Err(Error::NotFound(format!("user {external}")));
            }
            Err(e) => return Err(from_peer(permit.peer(), e)),
        }
        let at = now_ms();
        let mut w = self.store.begin_write().await?;
        let photo = store::request_photo(&mut w.tx, &row.id).await?;
        let contact = ContactRow {
            owner: caller.member.to_string(),
            user_id: external.to_string(),
            display_name: row.display_name.clone(),
            photo_type: photo.as_ref().map(|p| p.1.clone()),
            photo: photo.map(|p| p.0),
            company: row.company.clone(),
            fields: serde_json::json!({ "name": row.display_name }).to_string(),
            created_at_ms: at,
            synced_at_ms: at,
            trashed_at_ms: None,
        };
        store::decide_request(&mut w.tx, &row.id, "accepted", at).await?;
        store::upsert_contact(&mut w.tx, &contact).await?;
        audit::append(
            &mut w.tx,
            &NewEntry::new("request.accepted", &caller.member)
                .member(&caller.member)
                .external(&external)
                .peer(external.tenant())
                .detail(format!("request {}; contact added", row.id)),
            at,
        )
        .await?;
        w.commit().await?;
        self.contact(caller, &external).await
    }

    /// Declines a request, and blocks its sender when asked. The sender's
    /// node hears "declined" either way.
    pub async fn decline_friend_request(
        &self,
        caller: &Caller,
        id: &str,
        block: bool,
    ) -> Result<()> {
        let (row, external) = self.incoming_pending(caller, id).await?;
        let at = now_ms();
        let mut w = self.store.begin_write().await?;
        store::decide_request(&mut w.tx, &row.id, "declined", at).await?;
        if block {
            store::block(&mut w.tx, caller.member.as_str(), external.as_str(), at).await?;
        }
        audit::append(
            &mut w.tx,
            &NewEntry::new(
                if block {
                    "request.blocked"
                } else {
                    "request.declined"
                },
                &caller.member,
            )
            .member(&caller.member)
            .external(&external)
            .peer(external.tenant())
            .detail(format!("request {}", row.id)),
            at,
        )
        .await?;
        w.commit().await?;
        let me = PublicProfile::bare(caller.member.clone());
        if let Err(e) = async {
            let mut client = self.dial_tenant(external.tenant()).await?;
            client
                .answer_friend_request(&row.id, &me, &external, false)
                .await
                .map_err(|e| from_peer(external.tenant(), e))
        }
        .await
        {
            tracing::info!(request = %row.id, error = %e, "the requester's node was not told of the decline");
        }
        Ok(())
    }

    /// A peer's member answered one of our members' requests (through the bridge).
    pub async fn receive_friend_answer(
        &self,
        peer: &TenantId,
        id: &str,
        from: PublicProfile,
        to: &MemberId,
        accepted: bool,
    ) -> Result<()> {
        let not_found = || Error::NotFound(format!("friend request {id}"));
        let mut conn = self.store.pool().acquire().await?;
        let row = store::request(&mut conn, id)
            .await?
            .filter(|r| {
                r.outgoing
                    && r.local_member == to.as_str()
                    && r.external_user.eq_ignore_ascii_case(from.user.as_str())
            })
            .ok_or_else(not_found)?;
        drop(conn);
        if row.state != "pending" {
            return Ok(());
        }
        let local =
            MemberId::parse(&row.local_member).map_err(|e| Error::Internal(e.to_string()))?;
        let external =
            MemberId::parse(&row.external_user).map_err(|e| Error::Internal(e.to_string()))?;
        let at = now_ms();
        let contact = if accepted {
            Some(self.synced_contact(&row.local_member, from, at).await?)
        } else {
            None
        };
        let mut w = self.store.begin_write().await?;
        if let Some(contact) = &contact {
            if self.admit(&local, &external).await?.is_err() {
                return Err(Error::NotFound(format!("user {to}")));
            }
            store::upsert_contact(&mut w.tx, contact).await?;
            limits::set_peer_company(&mut w.tx, peer.as_str(), &contact.company, at).await?;
        }
        store::decide_request(
            &mut w.tx,
            id,
            if accepted { "accepted" } else { "declined" },
            at,
        )
        .await?;
        audit::append(
            &mut w.tx,
            &NewEntry::new(
                if accepted {
                    "request.accepted_by_peer"
                } else {
                    "request.declined_by_peer"
                },
                format!("peer:{peer}"),
            )
            .member(&local)
            .external(&external)
            .peer(peer)
            .detail(format!("request {id}")),
            at,
        )
        .await?;
        let notice = if accepted {
            Notice::new(
                &local,
                "request_accepted",
                format!("{external} accepted your request; they are in your contacts"),
            )
        } else {
            Notice::new(
                &local,
                "request_declined",
                format!("{external} did not accept your request"),
            )
        };
        policy::insert_notice(&mut w.tx, &notice).await?;
        w.commit().await?;
        self.hub.notice(notice);
        if accepted {
            self.open_direct_after_acceptance(&local, &external).await;
        }
        Ok(())
    }

    /// On acceptance the requester's node opens the two members' direct
    /// room (and hosts it); the other node gets it through the relay.
    async fn open_direct_after_acceptance(&self, local: &MemberId, external: &MemberId) {
        match self.open_direct(local, external).await {
            Ok(room) => tracing::info!(room = %room, %local, %external, "direct room opened"),
            Err(e) => {
                tracing::warn!(%local, %external, error = %e, "cannot open the direct room")
            }
        }
    }

    pub async fn contact(&self, caller: &Caller, external: &MemberId) -> Result<ContactView> {
        self.require_external(external)?;
        let mut conn = self.store.pool().acquire().await?;
        let row = store::contact(&mut conn, caller.member.as_str(), external.as_str())
            .await?
            .ok_or_else(|| Error::NotFound(format!("contact {external}")))?;
        drop(conn);
        self.contact_view(row).await
    }

    async fn contact_view(&self, row: ContactRow) -> Result<ContactView> {
        let user = MemberId::parse(&row.user_id).map_err(|e| Error::Internal(e.to_string()))?;
        let status = if crate::ids::is_line(&user) {
            "LINE".to_string()
        } else if self.is_unknown(&user).await? {
            "unknown".to_string()
        } else {
            self.peer_company(user.tenant()).await?
        };
        Ok(ContactView {
            user_id: row.user_id,
            display_name: row.display_name,
            photo: row.photo.unwrap_or_default(),
            photo_content_type: row.photo_type.unwrap_or_default(),
            status,
            tenant: user.tenant().to_string(),
            fields: serde_json::from_str(&row.fields).unwrap_or(serde_json::Value::Null),
            trashed: row.trashed_at_ms.is_some(),
            created_at_ms: row.created_at_ms,
        })
    }

    pub async fn contacts(&self, caller: &Caller, trash: bool) -> Result<Vec<ContactView>> {
        let mut conn = self.store.pool().acquire().await?;
        let rows = store::contacts(&mut conn, caller.member.as_str(), trash).await?;
        drop(conn);
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.contact_view(row).await?);
        }
        Ok(out)
    }

    /// Moves a contact to the trash (`trash`) or back.
    pub async fn trash_contact(
        &self,
        caller: &Caller,
        external: &MemberId,
        trash: bool,
    ) -> Result<ContactView> {
        self.require_external(external)?;
        let at = now_ms();
        let mut w = self.store.begin_write().await?;
        let current = store::contact(&mut w.tx, caller.member.as_str(), external.as_str())
            .await?
            .ok_or_else(|| Error::NotFound(format!("contact {external}")))?;
        if current.trashed_at_ms.is_some() == trash {
            return Err(Error::FailedPrecondition(format!(
                "contact {external} is {} the trash already",
                if trash { "in" } else { "not in" }
            )));
        }
        if trash
            && let Some((room, colleague)) = crate::store::rooms::shared_with_colleague(
                &mut w.tx,
                external,
                &caller.member,
                &self.id,
            )
            .await?
        {
            return Err(Error::FailedPrecondition(format!(
                "{external} shares room {room} with {colleague}; they must leave it (or be removed) before you can delete the contact"
            )));
        }
        store::set_trashed(
            &mut w.tx,
            caller.member.as_str(),
            external.as_str(),
            trash.then_some(at),
        )
        .await?;
        audit::append(
            &mut w.tx,
            &NewEntry::new(
                if trash {
                    "contact.deleted"
                } else {
                    "contact.restored"
                },
                &caller.member,
            )
            .member(&caller.member)
            .external(external)
            .peer(external.tenant()),
            at,
        )
        .await?;
        w.commit().await?;
        self.contact(caller, external).await
    }

    pub async fn set_blocked(
        &self,
        caller: &Caller,
        external: &MemberId,
        blocked: bool,
    ) -> Result<()> {
        self.require_external(external)?;
        let at = now_ms();
        let mut w = self.store.begin_write().await?;
        let changed = if blocked {
            store::block(&mut w.tx, caller.member.as_str(), external.as_str(), at).await?
        } else {
            store::unblock(&mut w.tx, caller.member.as_str(), external.as_str()).await?
        };
        if !changed {
            return Err(Error::FailedPrecondition(format!(
                "{external} is {} blocked",
                if blocked { "already" } else { "not" }
            )));
        }
        audit::append(
            &mut w.tx,
            &NewEntry::new(
                if blocked {
                    "user.blocked"
                } else {
                    "user.unblocked"
                },
                &caller.member,
            )
            .member(&caller.member)
            .external(external)
            .peer(external.tenant()),
            at,
        )
        .await?;
        w.commit().await
    }
}

/// A change to the owner's fields of a contact; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct ContactEdit {
    pub name: Option<String>,
    pub phones: Option<Vec<String>>,
    pub emails: Option<Vec<String>>,
    pub texts: Vec<(&'static str, Option<String>)>,
    pub birth_date: Option<String>,
    pub messengers: Vec<(String, String)>,
    /// Names of synced fields the caller tried to change.
    pub synced: Vec<&'static str>,
}

const MAX_FIELD_CHARS: usize = 200;
const MAX_MEMO_CHARS: usize = 2000;
const MAX_LIST: usize = 10;

fn check_text(field: &'static str, value: &str, max: usize) -> Result<String> {
    let value = value.trim();
    if value.chars().count() > max {
        return Err(Error::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(value.to_string())
}

fn check_list(field: &'static str, values: &[String], email: bool) -> Result<Vec<String>> {
    if values.len() > MAX_LIST {
        return Err(Error::invalid(field, format!("at most {MAX_LIST} entries")));
    }
    values
        .iter()
        .map(|v| {
            let v = check_text(field, v, MAX_FIELD_CHARS)?;
            if v.is_empty() {
                return Err(Error::invalid(field, "entries must not be empty"));
            }
            if email && !(v.contains('@') && !v.starts_with('@') && !v.ends_with('@')) {
                return Err(Error::invalid(
                    field,
                    format!("{v:?} is not an email address"),
                ));
            }
            if !email
                && !v
                    .chars()
                    .all(|c| c.is_ascii_digit() || "+-() .".contains(c))
            {
                return Err(Error::invalid(
                    field,
                    format!("{v:?} is not a phone number"),
                ));
            }
            Ok(v)
        })
        .collect()
}

fn check_date(value: &str) -> Result<String> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(String::new());
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(v, format).map_err(|_| {
        Error::invalid(
            "birth_date",
            format!("{:?} is not a date like 1990-04-01", clip(v)),
        )
    })?;
    Ok(v.to_string())
}

impl Tenant {
    pub async fn edit_contact(
        &self,
        caller: &Caller,
        external: &MemberId,
        edit: ContactEdit,
    ) -> Result<ContactView> {
        self.require_external(external)?;
        if let Some(field) = edit.synced.first() {
            return Err(Error::FailedPrecondition(format!(
                "{field} is synced from {}'s company and read-only here; edit the contact's own name instead",
                external
            )));
        }
        let mut w = self.store.begin_write().await?;
        let row = store::contact(&mut w.tx, caller.member.as_str(), external.as_str())
            .await?
            .ok_or_else(|| Error::NotFound(format!("contact {external}")))?;
        let mut fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&row.fields).unwrap_or_default();
        let mut set = |key: &str, value: String| {
            if value.is_empty() {
                fields.remove(key);
            } else {
                fields.insert(key.to_string(), serde_json::Value::String(value));
            }
        };
        if let Some(name) = &edit.name {
            let name = check_text("name", name, MAX_FIELD_CHARS)?;
            if name.is_empty() {
                return Err(Error::invalid("name", "a contact needs a name"));
            }
            set("name", name);
        }
        for (field, value) in &edit.texts {
            if let Some(value) = value {
                let max = if *field == "memo" {
                    MAX_MEMO_CHARS
                } else {
                    MAX_FIELD_CHARS
                };
                set(field, check_text(field, value, max)?);
            }
        }
        if let Some(date) = &edit.birth_date {
            set("birth_date", check_date(date)?);
        }
        for (key, list, email) in [
            ("phones", &edit.phones, false),
            ("emails", &edit.emails, true),
        ] {
            if let Some(list) = list {
                let checked = check_list(if email { "emails" } else { "phones" }, list, email)?;
                if checked.is_empty() {
                    fields.remove(key);
                } else {
                    fields.insert(key.into(), serde_json::json!(checked));
                }
            }
        }
        if !edit.messengers.is_empty() {
            let mut ids = fields
                .get("messengers")
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default();
            for (network, id) in &edit.messengers {
                let network = check_text("messengers", &network.to_lowercase(), 32)?;
                if network.is_empty() {
                    return Err(Error::invalid(
                        "messengers",
                        "a messenger needs a network name",
                    ));
                }
                let id = check_text("messengers", id, MAX_FIELD_CHARS)?;
                if id.is_empty() {
                    ids.remove(&network);
                } else {
                    ids.insert(network, serde_json::Value::String(id));
                }
            }
            if ids.len() > MAX_LIST {
                return Err(Error::invalid(
                    "messengers",
                    format!("at most {MAX_LIST} networks"),
                ));
            }
            fields.insert("messengers".into(), serde_json::Value::Object(ids));
        }
        store::set_fields(
            &mut w.tx,
            caller.member.as_str(),
            external.as_str(),
            &serde_json::Value::Object(fields).to_string(),
        )
        .await?;
        w.commit().await?;
        self.contact(caller, external).await
    }
}

impl Tenant {
    /// Queues a member's public profile for every peer whose members hold
    /// them as a contact, for those holders this node's half admits with
    /// the member now (none while external messaging is off, the member
    /// is not connected, or the member blocked the holder). A newer
    /// profile replaces one still queued; a peer that is down gets it when
    /// it is back.
    pub async fn push_profile(&self, member: &MemberId) -> Result<()> {
        let profile = Profile::from(self.public_profile(member).await?);
        let at = now_ms();
        let mut w = self.store.begin_write().await?;
        let holders: Vec<MemberId> = store::holders_of(&mut w.tx, member.as_str())
            .await?
            .iter()
            .filter_map(|h| MemberId::parse(h).ok())
            .collect();
        let mut by_peer: BTreeMap<TenantId, Vec<Permit>> = BTreeMap::new();
        for holder in &holders {
            match self.admit_in(&mut w.tx, member, holder).await? {
                Ok(permit) => by_peer
                    .entry(holder.tenant().clone())
                    .or_default()
                    .push(permit),
                Err(denied) => {
                    tracing::debug!(member = %member, holder = %holder, reason = denied.reason(), "profile not synced to a contact")
                }
            }
        }
        let mut told = Vec::new();
        for (peer, permits) in by_peer {
            let Some(permit) = admission::profile_sync(member, &permits) else {
                continue;
            };
            let control = Control::Profile {
                profile: profile.clone(),
                holders: permits.iter().map(|p| p.external().clone()).collect(),
            };
            self.queue_control(&mut w.tx, &permit, &control, at).await?;
            audit::append(
                &mut w.tx,
                &NewEntry::new("profile.pushed", member)
                    .member(member)
                    .peer(&peer)
                    .detail(format!("queued for {} contact(s)", permits.len())),
                at,
            )
            .await?;
            told.push(peer);
        }
        w.commit().await?;
        told.iter().for_each(|peer| self.outbox.wake(peer));
        Ok(())
    }

    /// After the company name changed, or external messaging came back
    /// on: every member held as a contact.
    pub async fn push_all_profiles(&self) -> Result<()> {
        let owners = {
            let mut conn = self.store.pool().acquire().await?;
            store::owners_with_contacts(&mut conn).await?
        };
        for owner in owners {
            if let Ok(member) = MemberId::parse(&owner) {
                self.push_profile(&member).await?;
            }
        }
        Ok(())
    }

    /// A peer's member changed their profile: a control message, applied
    /// in the caller's transaction (the relay batch's) to the contacts of
    /// `holders` that this node's half admits with them now.
    pub(crate) async fn receive_profile(
        &self,
        conn: &mut sqlx::AnyConnection,
        peer: &TenantId,
        profile: Profile,
        holders: &[MemberId],
    ) -> Result<()> {
        let user = profile.user.clone();
        if !user.belongs_to(peer) {
            return Err(Error::PermissionDenied(format!(
                "{peer} cannot speak for {user}"
            )));
        }
        if let Some(other) = holders.iter().find(|h| !h.belongs_to(&self.id)) {
            return Err(Error::invalid(
                "holders",
                format!("{other} is not a member of {}", self.id),
            ));
        }
        let limit = self.limits.profile_syncs_per_member_hour;
        count_arrival_in(
            &mut *conn,
            ARRIVAL_PROFILE,
            peer,
            &user,
            &[(
                Scope::Member,
                limit,
                format!(
                    "{user}'s profile was already synced {limit} times this hour, the most {} accepts",
                    self.id
                ),
            )],
        )
        .await?;
        let at = now_ms();
        let display_name = crate::tenant::clean_name("display_name", &profile.display_name, 100)?;
        let company = crate::tenant::clean_name("company", &profile.company, 100)?;
        let photo = if profile.photo.is_empty() {
            None
        } else {
            Some(
                crate::accounts::photo::normalize(profile.photo, self.limits.max_photo_bytes)
                    .await?,
            )
        };
        limits::set_peer_company(&mut *conn, peer.as_str(), &company, at).await?;
        let mut synced = 0;
        for holder in holders {
            if let Err(denied) = self.admit_in(&mut *conn, holder, &user).await? {
                tracing::debug!(holder = %holder, user = %user, reason = denied.reason(), "synced profile not applied to a contact");
                continue;
            }
            synced += store::sync_profile(
                &mut *conn,
                holder.as_str(),
                user.as_str(),
                &display_name,
                photo
                    .as_ref()
                    .map(|p| (p.bytes.as_slice(), p.content_type.as_str())),
                &company,
                at,
            )
            .await?;
        }
        if synced > 0 {
            audit::append(
                &mut *conn,
                &NewEntry::new("profile.synced", format!("peer:{peer}"))
                    .external(&user)
                    .peer(peer)
                    .detail(format!(
                        "{display_name} ({company}) for {synced} contact(s)"
                    )),
                at,
            )
            .await?;
        }
        Ok(())
    }
}

/// `Tenant::count_arrival` in the caller's transaction.
async fn count_arrival_in(
    conn: &mut sqlx::AnyConnection,
    kind: &'static str,
    peer: &TenantId,
    member: &MemberId,
    checks: &[(Scope, u32, String)],
) -> Result<()> {
    let now = now_ms();
    for (scope, limit, what) in checks {
        let filter = ArrivalFilter {
            kind,
            since_ms: now - HOUR_MS,
            peer: Some(peer.as_str()),
            external_user: match scope {
                Scope::Member => Some(member.as_str()),
                Scope::Peer => None,
            },
            local_member: None,
        };
        let counted = limits::count_arrivals(&mut *conn, filter).await?;
        if let Some(wait) = crate::quota::wait_ms(*limit, counted, HOUR_MS, now) {
            return Err(crate::quota::exceeded(what.clone(), wait));
        }
    }
    limits::record_arrival(
        &mut *conn,
        kind,
        peer.as_str(),
        member.as_str(),
        "",
        now,
        now - HOUR_MS,
    )
    .await?;
    Ok(())
}
