//! This node's side of the bridge: what it answers to verified peers.
//!
//! The bridge crate has established who is calling; here the node applies
//! its own rules and storage, and maps its errors to the bridge's.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use works_bridge::{BridgeHandler, HandlerError, NewPeer, Outcome, PublicProfile};
use works_proto::federation::v1 as pb;

use crate::ids::{MemberId, TenantId};
use crate::tenant::Tenant;
use crate::wire::status;

pub struct NodeBridge(pub Arc<Tenant>);

#[tonic::async_trait]
impl BridgeHandler for NodeBridge {
    fn tenant(&self) -> &TenantId {
        &self.0.id
    }

    async fn relay(
        &self,
        peer: &TenantId,
        chain: &[CertificateDer<'static>],
        envelopes: Vec<pb::Envelope>,
    ) -> Vec<Outcome> {
        self.0.receive_envelopes(peer, chain, envelopes).await
    }

    async fn attachment(
        &self,
        peer: &TenantId,
        requester: &MemberId,
        id: &str,
    ) -> Result<Vec<u8>, HandlerError> {
        self.0
            .serve_attachment(peer, requester, id)
            .await
            .map_err(status::to_peer)
    }

    async fn redeem(&self, peer: NewPeer) -> Result<(), HandlerError> {
        self.0
            .redeem_invitation(&peer.tenant, &peer.endpoint, peer.ca, &peer.secret)
            .await
            .map_err(status::to_peer)
    }

    async fn contact(&self, peer: &TenantId) -> Result<(), HandlerError> {
        self.0.outbox.peer_back(peer);
        self.0
            .store
            .peer_contacted(peer)
            .await
            .map_err(status::to_peer)
    }

    async fn unpeer(&self, peer: &TenantId) -> Result<(), HandlerError> {
        self.0.peer_ended(peer).await.map_err(status::to_peer)
    }

    async fn lookup_user(
        &self,
        peer: &TenantId,
        requester: &MemberId,
        user: &MemberId,
    ) -> Result<PublicProfile, HandlerError> {
        self.0
            .answer_lookup(peer, requester, user)
            .await
            .map_err(status::to_peer)
    }

    async fn friend_request(
        &self,
        peer: &TenantId,
        request_id: &str,
        from: PublicProfile,
        to: &MemberId,
        invitation: Option<&str>,
    ) -> Result<Option<PublicProfile>, HandlerError> {
        self.0
            .receive_friend_request(peer, request_id, from, to, invitation)
            .await
            .map_err(status::to_peer)
    }

    async fn friend_answer(
        &self,
        peer: &TenantId,
        request_id: &str,
        from: PublicProfile,
        to: &MemberId,
        accepted: bool,
    ) -> Result<(), HandlerError> {
        self.0
            .receive_friend_answer(peer, request_id, from, to, accepted)
            .await
            .map_err(status::to_peer)
    }
}
