//! The control messages a peer relays: which of its members we may reach,
//! a member's profile, the CAs to trust for it. Each comes in the peer's
//! outbox, in order with its room events, and is applied once (by its id)
//! in the batch's transaction; what it changes outside the database (the
//! trust store, the rooms this node hosts) follows the commit (`Later`).
//!
//! **Invariant:** a control message speaks only for the verified caller:
//! its tenant, its members, CAs that are its own (checked against the
//! certificate it presents on this stream).

use rustls::pki_types::CertificateDer;
use sqlx::AnyConnection;
use works_bridge::identity::AnnouncementError;

use crate::error::{Error, Result};
use crate::ids::{MemberId, TenantId};
use crate::store::now_ms;
use crate::store::outbox;
use crate::tenant::Tenant;
use crate::wire::{Control, ControlMessage};

/// What a control message changes once its transaction has committed.
pub(crate) enum Later {
    /// These of the peer's members (all, when empty) became unknown: they
    /// leave the rooms this node hosts.
    Unreachable {
        peer: TenantId,
        members: Vec<MemberId>,
    },
    /// The peer's CAs from now on.
    Pin {
        peer: TenantId,
        cas: Vec<CertificateDer<'static>>,
    },
}

impl Tenant {
    /// Applies one control message from `peer` (presenting `chain`) in the
    /// caller's transaction, unless it was applied before.
    pub(super) async fn receive_control(
        &self,
        conn: &mut AnyConnection,
        peer: &TenantId,
        chain: &[CertificateDer<'static>],
        message: ControlMessage,
    ) -> Result<Option<Later>> {
        if &message.from != peer {
            return Err(Error::PermissionDenied(format!(
                "{peer} cannot send a control message as {}",
                message.from
            )));
        }
        if !outbox::control_applied(&mut *conn, peer, &message.id, now_ms()).await? {
            tracing::debug!(peer = %peer, id = %message.id, "control message applied before");
            return Ok(None);
        }
        match message.control {
            Control::Reachability { members, reachable } => {
                self.reachability_changed(conn, peer, &members, reachable)
                    .await?;
                Ok((!reachable).then(|| Later::Unreachable {
                    peer: peer.clone(),
                    members,
                }))
            }
            Control::Profile { profile, holders } => {
                self.receive_profile(conn, peer, profile, &holders).await?;
                Ok(None)
            }
            Control::Cas { cas } => {
                let cas = self
                    .trust
                    .check_announcement(peer, chain, cas)
                    .map_err(|e| refused_cas(peer, e))?;
                self.replace_peer_cas(conn, peer, &cas).await?;
                Ok(Some(Later::Pin {
                    peer: peer.clone(),
                    cas,
                }))
            }
        }
    }

    pub(super) async fn after_control(&self, later: Later) {
        match later {
            Later::Unreachable { peer, members } => {
                if let Err(e) = self.unreachable_left(&peer, &members).await {
                    tracing::warn!(peer = %peer, error = %e, "cannot take unreachable members out of rooms");
                }
            }
            Later::Pin { peer, cas } => self.pin_peer_cas(&peer, cas),
        }
    }
}

/// A refused CA announcement as the peer hears it, logged.
fn refused_cas(peer: &TenantId, e: AnnouncementError) -> Error {
    tracing::warn!(peer = %peer, error = %e, "refused a CA announcement");
    match e {
        AnnouncementError::Invalid(reason) => Error::invalid("cas", reason),
        AnnouncementError::LocksOut(reason) => Error::FailedPrecondition(reason),
        AnnouncementError::NotOwn(reason) => Error::PermissionDenied(reason),
    }
}
