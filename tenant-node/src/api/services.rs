//! Service implementations: parse, authenticate, call the domain, convert.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};
use works_proto::client::v1 as pb;

use super::convert::{
    audit_filter, ca_change, contact_edit, event_id, external_profile, member_id, member_ids,
    role_from_pb, room_id, room_kind_from_pb, room_to_pb, tenant_id,
};
use super::{bearer, caller};
use crate::error::Error;
use crate::live::watch::WatchRequest;
use crate::model::{Caller, MemberState};
use crate::policy::SettingsChange;
use crate::policy::line::LineSettingsChange;
use crate::rooms::uploads::{Part, UploadTarget};
use crate::rooms::{Content, HistoryQuery};
use crate::tenant::Tenant;

type Reply<T> = Result<Response<T>, Status>;

pub struct AuthApi(pub Arc<Tenant>);
pub struct AdminApi(pub Arc<Tenant>);
pub struct ProfilesApi(pub Arc<Tenant>);
pub struct RoomsApi(pub Arc<Tenant>);
pub struct PeeringApi(pub Arc<Tenant>);
pub struct ExternalPolicyApi(pub Arc<Tenant>);
pub struct AuditApi(pub Arc<Tenant>);
pub struct ContactsApi(pub Arc<Tenant>);
pub struct LineApi(pub Arc<Tenant>);

#[tonic::async_trait]
impl pb::auth_server::Auth for AuthApi {
    async fn login(&self, request: Request<pb::LoginRequest>) -> Reply<pb::LoginResponse> {
        let source = request.remote_addr().map(|a| a.ip());
        let r = request.into_inner();
        let member = member_id("member_id", &r.member_id)?;
        let login = self.0.login(&member, &r.password, source).await?;
        Ok(Response::new(pb::LoginResponse {
            token: login.token,
            member_id: login.member.to_string(),
            expires_at_ms: login.expires_at_ms,
        }))
    }

    async fn logout(&self, request: Request<pb::LogoutRequest>) -> Reply<pb::LogoutResponse> {
        caller(&self.0, &request).await?;
        self.0.logout(bearer(&request)?).await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn who_am_i(&self, request: Request<pb::WhoAmIRequest>) -> Reply<pb::Member> {
        let who = caller(&self.0, &request).await?;
        Ok(Response::new(self.0.whoami(&who).await?.into()))
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminApi {
    async fn add_member(&self, request: Request<pb::AddMemberRequest>) -> Reply<pb::Member> {
        let who = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let role = role_from_pb(r.role)?;
        let member = self
            .0
            .add_member(&who, &r.name, &r.display_name, &r.password, role)
            .await?;
        Ok(Response::new(member.into()))
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Reply<pb::ListMembersResponse> {
        let who = caller(&self.0, &request).await?;
        let members = self.0.list_members(&who).await?;
        Ok(Response::new(pb::ListMembersResponse {
            members: members.into_iter().map(Into::into).collect(),
        }))
    }

    async fn suspend_member(
        &self,
        request: Request<pb::SuspendMemberRequest>,
    ) -> Reply<pb::Member> {
        let who = caller(&self.0, &request).await?;
        // The role first, as the domain checks it: a member without it
        // hears so whatever id they sent.
        who.require_admin()?;
        let member = self
            .0
            .local_member_id("member_id", &request.into_inner().member_id)?;
        let member = self
            .0
            .set_member_state(&who, &member, MemberState::Suspended)
            .await?;
        Ok(Response::new(member.into()))
    }

    async fn unsuspend_member(
        &self,
        request: Request<pb::UnsuspendMemberRequest>,
    ) -> Reply<pb::Member> {
        let who = caller(&self.0, &request).await?;
        who.require_admin()?;
        let member = self
            .0
            .local_member_id("member_id", &request.into_inner().member_id)?;
        let member = self
            .0
            .set_member_state(&who, &member, MemberState::Active)
            .await?;
        Ok(Response::new(member.into()))
    }

    async fn get_company(&self, request: Request<pb::GetCompanyRequest>) -> Reply<pb::Company> {
        let who = caller(&self.0, &request).await?;
        Ok(Response::new(pb::Company {
            tenant: self.0.id.to_string(),
            name: self.0.company_setting(&who).await?,
        }))
    }

    async fn set_company(&self, request: Request<pb::SetCompanyRequest>) -> Reply<pb::Company> {
        let who = caller(&self.0, &request).await?;
        let name = self
            .0
            .set_company_name(&who, &request.into_inner().name)
            .await?;
        Ok(Response::new(pb::Company {
            tenant: self.0.id.to_string(),
            name,
        }))
    }
}

#[tonic::async_trait]
impl pb::profiles_server::Profiles for ProfilesApi {
    async fn get_profile(&self, request: Request<pb::GetProfileRequest>) -> Reply<pb::Profile> {
        let who = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let member = if r.member_id.trim().is_empty() {
            None
        } else {
            Some(self.0.local_member_id("member_id", &r.member_id)?)
        };
        Ok(Response::new(
            self.0.profile(&who, member.as_ref()).await?.into(),
        ))
    }

    async fn set_profile(&self, request: Request<pb::SetProfileRequest>) -> Reply<pb::Profile> {
        let who = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let profile = self
            .0
            .set_profile(&who, r.display_name.as_deref(), r.photo, r.clear_photo)
            .await?;
        Ok(Response::new(profile.into()))
    }

    async fn list_notices(
        &self,
        request: Request<pb::ListNoticesRequest>,
    ) -> Reply<pb::ListNoticesResponse> {
        let who = caller(&self.0, &request).await?;
        let notices = self.0.notices(&who).await?;
        Ok(Response::new(pb::ListNoticesResponse {
            notices: notices.into_iter().map(Into::into).collect(),
        }))
    }
}

#[tonic::async_trait]
impl pb::peering_server::Peering for PeeringApi {
    async fn invite_peer(
        &self,
        request: Request<pb::InvitePeerRequest>,
    ) -> Reply<pb::PeerInvitation> {
        let who = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let ttl = (r.ttl_secs > 0).then(|| std::time::Duration::from_secs(r.ttl_secs));
        // The role first, as the domain checks it: a member without it
        // hears so whatever they sent.
        who.require_admin()?;
        let for_tenant = if r.for_tenant.trim().is_empty() {
            None
        } else {
            Some(tenant_id("for_tenant", &r.for_tenant)?)
        };
        let invitation = self.0.invite_peer(&who, for_tenant.as_ref(), ttl).await?;
        Ok(Response::new(pb::PeerInvitation {
            token: invitation.token,
            expires_at_ms: invitation.expires_at_ms,
        }))
    }

    async fn accept_peer(&self, request: Request<pb::AcceptPeerRequest>) -> Reply<pb::Peer> {
        let who = caller(&self.0, &request).await?;
        let peer = self
            .0
            .accept_peer(&who, &request.into_inner().token)
            .await?;
        Ok(Response::new(peer.into()))
    }

    async fn list_peers(
        &self,
        request: Request<pb::ListPeersRequest>,
    ) -> Reply<pb::ListPeersResponse> {
        let who = caller(&self.0, &request).await?;
        let peers = self.0.list_peers(&who).await?;
        Ok(Response::new(pb::ListPeersResponse {
            peers: peers.into_iter().map(Into::into).collect(),
        }))
    }

    async fn test_peer(&self, request: Request<pb::TestPeerRequest>) -> Reply<pb::PeerTestReport> {
        let who = caller(&self.0, &request).await?;
        who.require_admin()?;
        let tenant = tenant_id("tenant", &request.into_inner().tenant)?;
        let report = self.0.test_peer(&who, &tenant).await?;
        Ok(Response::new(report.into()))
    }

    async fn remove_peer(
        &self,
        request: Request<pb::RemovePeerRequest>,
    ) -> Reply<pb::RemovePeerResponse> {
        let who = caller(&self.0, &request).await?;
        who.require_admin()?;
        let tenant = tenant_id("tenant", &request.into_inner().tenant)?;
        let (peer_told, detail) = self.0.remove_peer(&who, &tenant).await?;
        Ok(Response::new(pb::RemovePeerResponse { peer_told, detail }))
    }

    async fn get_ca(&self, request: Request<pb::GetCaRequest>) -> Reply<pb::CaStatus> {
        let who = caller(&self.0, &request).await?;
        Ok(Response::new(self.0.ca_status(&who)?.into()))
    }

    async fn rotate_ca(&self, request: Request<pb::RotateCaRequest>) -> Reply<pb::CaChange> {
        let who = caller(&self.0, &request).await?;
        let (ca, notices) = self.0.rotate_ca(&who).await?;
        Ok(Response::new(ca_change(ca, notices)))
    }

    async fn retire_ca(&self, request: Request<pb::RetireCaRequest>) -> Reply<pb::CaChange> {
        let who = caller(&self.0, &request).await?;
        let (ca, notices) = self.0.retire_previous_ca(&who).await?;
        Ok(Response::new(ca_change(ca, notices)))
    }

    async fn renew_node_certificate(
        &self,
        request: Request<pb::RenewNodeCertificateRequest>,
    ) -> Reply<pb::CaStatus> {
        let who = caller(&self.0, &request).await?;
        Ok(Response::new(self.0.renew_node_certificate(&who)?.into()))
    }
}

type SendResponseStream =
    Pin<Box<dyn Stream<Item = Result<pb::SendMessageResponse, Status>> + Send>>;
type WatchResponseStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;
type AttachmentStream = Pin<Box<dyn Stream<Item = Result<pb::AttachmentData, Status>> + Send>>;

/// Bytes per chunk of a download.
const DOWNLOAD_CHUNK: usize = 64 * 1024;
/// Most sends of one `SendStream` in flight; past it the stream reads no
/// further request until the oldest is answered (HTTP/2 flow control then
/// holds the client back). Twice a group commit's largest group.
const SEND_STREAM_IN_FLIGHT: usize = 256;

/// A send as both `SendMessage` and `SendStream` take it: parse, store,
/// convert.
async fn send(
    tenant: &Tenant,
    who: &Caller,
    r: pb::SendMessageRequest,
) -> Result<pb::SendMessageResponse, Error> {
    let given = [&r.text, &r.sticker, &r.attachment_id]
        .iter()
        .filter(|f| !f.is_empty())
        .count();
    let content = match given {
        0 => return Err(Error::invalid("text", "message is empty")),
        1 if !r.text.is_empty() => Content::Text(r.text),
        1 if !r.sticker.is_empty() => Content::Sticker(r.sticker),
        1 => Content::Attachment(r.attachment_id),
        _ => {
            return Err(Error::invalid(
                "text",
                "send one of text, sticker or attachment_id",
            ));
        }
    };
    let room = room_id(&r.room_id)?;
    let sent = tenant
        .send_message(who, &room, &r.idempotency_key, content)
        .await?;
    Ok(pb::SendMessageResponse {
        event: Some(sent.event.into()),
        duplicate: sent.duplicate,
        delivery: Some(sent.delivery.into()),
        refused: None,
    })
}

#[tonic::async_trait]
impl pb::rooms_server::Rooms for RoomsApi {
    async fn create_room(&self, request: Request<pb::CreateRoomRequest>) -> Reply<pb::Room> {
        let who = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let kind = room_kind_from_pb(r.kind)?;
        let members = member_ids("members", &r.members)?;
        let room = self.0.create_room(&who, kind, &r.name, &members).await?;
        Ok(Response::new(room_to_pb(room, &self.0.id)))
    }

    async fn list_rooms(
        &self,
        request: Request<pb::ListRoomsRequest>,
    ) -> Reply<pb::ListRoomsResponse> {
        let who = caller(&self.0, &request).await?;
        let rooms = self.0.list_rooms(&who).await?;
        Ok(Response::new(pb::ListRoomsResponse {
            rooms: rooms
                .into_iter()
                .map(|r| room_to_pb(r, &self.0.id))
                .collect(),
        }))
    }

    async fn get_room(&self, request: Request<pb::GetRoomRequest>) -> Reply<pb::Room> {
        let who = caller(&self.0, &request).await?;
        let room = room_id(&request.into_inner().room_id)?;
        let room = self.0.room(&who, &room).await?;
        Ok(Response::new(room_to_pb(room, &self.0.id)))
    }

    async fn invite_members(&self, request: Request<pb::InviteMembersRequest>) -> Reply<pb::Room> {
        let who = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let members = member_ids("members", &r.members)?;
        let room = room_id(&r.room_id)?;
        let room = self.0.invite_members(&who, &room, &members).await?;
        Ok(Response::new(room_to_pb(room, &self.0.id)))
    }

    async fn remove_member(&self, request: Request<pb::RemoveMemberRequest>) -> Reply<pb::Room> {
        let who = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let member = member_id("member_id", &r.member_id)?;
        let room = room_id(&r.room_id)?;
        let room = self.0.remove_member(&who, &room, &member).await?;
        Ok(Response::new(room_to_pb(room, &self.0.id)))
    }

    async fn leave_room(
        &self,
        request: Request<pb::LeaveRoomRequest>,
    ) -> Reply<pb::LeaveRoomResponse> {
        let who = caller(&self.0, &request).await?;
        let room = room_id(&request.into_inner().room_id)?;
        let event = self.0.leave_room(&who, &room).await?;
        Ok(Response::new(pb::LeaveRoomResponse {
            event: Some(event.into()),
        }))
    }

    async fn rename_room(&self, request: Request<pb::RenameRoomRequest>) -> Reply<pb::Room> {
        let who = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let room = room_id(&r.room_id)?;
        let room = self.0.rename_room(&who, &room, &r.name).await?;
        Ok(Response::new(room_to_pb(room, &self.0.id)))
    }

    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Reply<pb::SendMessageResponse> {
        let who = caller(&self.0, &request).await?;
        Ok(Response::new(
            send(&self.0, &who, request.into_inner()).await?,
        ))
    }

    type SendStreamStream = SendResponseStream;

    async fn send_stream(
        &self,
        request: Request<tonic::Streaming<pb::SendMessageRequest>>,
    ) -> Reply<Self::SendStreamStream> {
        caller(&self.0, &request).await?;
        let token = bearer(&request)?.to_string();
        let tenant = self.0.clone();
        // futures' combinators, by path: tokio-stream's `StreamExt` has
        // the same names and no `buffered`.
        use futures_util::StreamExt as Futures;
        let answers = Futures::map(request.into_inner(), move |item| {
            let tenant = tenant.clone();
            let token = token.clone();
            async move {
                let request = item?;
                // From memory (the session cache): a logout or a
                // suspension since the stream opened ends it.
                let who = tenant.authenticate(&token).await?;
                Ok(match send(&tenant, &who, request).await {
                    Ok(sent) => sent,
                    Err(refused) => {
                        let status = Status::from(refused);
                        pb::SendMessageResponse {
                            refused: Some(pb::SendRefusal {
                                code: status.code() as i32,
                                message: status.message().to_string(),
                            }),
                            ..Default::default()
                        }
                    }
                })
            }
        });
        // In request order; each send enters the group commit queue when
        // first polled, which `buffered` does in request order.
        let answers = Futures::buffered(answers, SEND_STREAM_IN_FLIGHT);
        // The first status ends the stream.
        let answers = Futures::scan(answers, false, |ended, answer: Result<_, Status>| {
            let item = (!*ended).then(|| {
                *ended = answer.is_err();
                answer
            });
            futures_util::future::ready(item)
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn get_delivery(&self, request: Request<pb::GetDeliveryRequest>) -> Reply<pb::Delivery> {
        let who = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let room = room_id(&r.room_id)?;
        let event = event_id(&r.event_id)?;
        let delivery = self.0.delivery(&who, &room, &event).await?;
        Ok(Response::new(delivery.into()))
    }

    async fn history(&self, request: Request<pb::HistoryRequest>) -> Reply<pb::HistoryResponse> {
        let who = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let room = room_id(&r.room_id)?;
        let page = self
            .0
            .history(
                &who,
                &room,
                HistoryQuery {
                    after_seq: r.after_seq,
                    before_seq: r.before_seq,
                    limit: r.limit,
                },
            )
            .await?;
        Ok(Response::new(pb::HistoryResponse {
            events: page.events.into_iter().map(Into::into).collect(),
            has_more: page.has_more,
        }))
    }

    async fn mark_read(
        &self,
        request: Request<pb::MarkReadRequest>,
    ) -> Reply<pb::MarkReadResponse> {
        let who = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let room = room_id(&r.room_id)?;
        let (last_read_seq, unread) = self.0.mark_read(&who, &room, r.seq).await?;
        Ok(Response::new(pb::MarkReadResponse {
            last_read_seq,
            unread,
        }))
    }

    async fn upload_attachment(
        &self,
        request: Request<tonic::Streaming<pb::UploadChunk>>,
    ) -> Reply<pb::Attachment> {
        let who = caller(&self.0, &request).await?;
        let mut chunks = request.into_inner();
        let first = chunks
            .message()
            .await?
            .ok_or_else(|| Error::invalid("room_id", "the upload carried no chunk"))?;
        let mut data = first.data;
        // Refuse as soon as the limit is passed; nothing is stored.
        self.0.check_attachment_size(data.len())?;
        while let Some(chunk) = chunks.message().await? {
            data.extend_from_slice(&chunk.data);
            self.0.check_attachment_size(data.len())?;
        }
        let room = room_id(&first.room_id)?;
        let meta = self
            .0
            .upload_attachment(&who, &room, &first.name, &first.content_type, data)
            .await?;
        Ok(Response::new(meta.into()))
    }

    async fn upload_part(
        &self,
        request: Request<pb::UploadPartRequest>,
    ) -> Reply<pb::UploadPartResponse> {
        let who = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let room;
        let target = if r.upload_id.is_empty() {
            room = room_id(&r.room_id)?;
            UploadTarget::New {
                room: &room,
                name: &r.name,
                content_type: &r.content_type,
                size: r.size,
            }
        } else {
            for (field, set) in [
                ("room_id", !r.room_id.is_empty()),
                ("name", !r.name.is_empty()),
                ("content_type", !r.content_type.is_empty()),
                ("size", r.size != 0),
            ] {
                if set {
                    return Err(Error::invalid(field, "set on the first part only").into());
                }
            }
            UploadTarget::Existing(&r.upload_id)
        };
        let outcome = self
            .0
            .upload_part(
                &who,
                Part {
                    target,
                    offset: r.offset,
                    data: r.data,
                    last: r.last,
                },
            )
            .await?;
        Ok(Response::new(pb::UploadPartResponse {
            upload_id: outcome.upload_id,
            received: outcome.received,
            attachment: outcome.stored.map(Into::into),
        }))
    }

    type DownloadAttachmentStream = AttachmentStream;

    async fn download_attachment(
        &self,
        request: Request<pb::DownloadAttachmentRequest>,
    ) -> Reply<Self::DownloadAttachmentStream> {
        let who = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let (meta, data) = self.0.download_attachment(&who, &r.attachment_id).await?;
        let mut items = vec![Ok(pb::AttachmentData {
            attachment: Some(meta.into()),
            data: Vec::new(),
        })];
        items.extend(data.chunks(DOWNLOAD_CHUNK).map(|c| {
            Ok(pb::AttachmentData {
                attachment: None,
                data: c.to_vec(),
            })
        }));
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }

    type WatchStream = WatchResponseStream;

    async fn watch(&self, request: Request<pb::WatchRequest>) -> Reply<Self::WatchStream> {
        let who = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let room = if r.room_id.trim().is_empty() {
            None
        } else {
            Some(room_id(&r.room_id)?)
        };
        let cursors = r
            .cursors
            .iter()
            .map(|c| Ok((room_id(&c.room_id)?, c.seq)))
            .collect::<Result<_, Error>>()?;
        let events = self.0.watch(who, WatchRequest { cursors, room }).await?;
        let stream =
            ReceiverStream::new(events).map(|item| item.map(Into::into).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }
}

#[tonic::async_trait]
impl pb::external_policy_server::ExternalPolicy for ExternalPolicyApi {
    async fn get_external_settings(
        &self,
        request: Request<pb::GetExternalSettingsRequest>,
    ) -> Reply<pb::ExternalSettings> {
        let who = caller(&self.0, &request).await?;
        Ok(Response::new(self.0.external_settings(&who).await?.into()))
    }

    async fn set_external_settings(
        &self,
        request: Request<pb::SetExternalSettingsRequest>,
    ) -> Reply<pb::ExternalSettings> {
        let who = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let change = SettingsChange {
            enabled: r.enabled,
            auto_grant: r.auto_grant,
            restrict_files: r.restrict_files,
            company: r.company,
        };
        Ok(Response::new(
            self.0.set_external_settings(&who, change).await?.into(),
        ))
    }

    async fn list_connected(
        &self,
        request: Request<pb::ListConnectedRequest>,
    ) -> Reply<pb::ListConnectedResponse> {
        let who = caller(&self.0, &request).await?;
        let members = self.0.connected_members(&who).await?;
        Ok(Response::new(pb::ListConnectedResponse {
            members: members.into_iter().map(Into::into).collect(),
        }))
    }

    async fn add_connected(
        &self,
        request: Request<pb::AddConnectedRequest>,
    ) -> Reply<pb::AddConnectedResponse> {
        let who = caller(&self.0, &request).await?;
        who.require_admin()?;
        let member = self
            .0
            .local_member_id("member_id", &request.into_inner().member_id)?;
        self.0.add_connected(&who, &member).await?;
        Ok(Response::new(pb::AddConnectedResponse {}))
    }

    async fn remove_connected(
        &self,
        request: Request<pb::RemoveConnectedRequest>,
    ) -> Reply<pb::RemoveConnectedResponse> {
        let who = caller(&self.0, &request).await?;
        who.require_admin()?;
        let member = self
            .0
            .local_member_id("member_id", &request.into_inner().member_id)?;
        self.0.remove_connected(&who, &member).await?;
        Ok(Response::new(pb::RemoveConnectedResponse {}))
    }
}

#[tonic::async_trait]
impl pb::line_server::Line for LineApi {
    async fn get_line_settings(
        &self,
        request: Request<pb::GetLineSettingsRequest>,
    ) -> Reply<pb::LineSettings> {
        let who = caller(&self.0, &request).await?;
        Ok(Response::new(self.0.line_settings(&who).await?.into()))
    }

    async fn set_line_settings(
        &self,
        request: Request<pb::SetLineSettingsRequest>,
    ) -> Reply<pb::LineSettings> {
        let who = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let change = LineSettingsChange {
            enabled: r.enabled,
            auto_grant: r.auto_grant,
            restrict_files: r.restrict_files,
            greeting: r.greeting,
        };
        Ok(Response::new(
            self.0.set_line_settings(&who, change).await?.into(),
        ))
    }

    async fn list_line_connected(
        &self,
        request: Request<pb::ListConnectedRequest>,
    ) -> Reply<pb::ListConnectedResponse> {
        let who = caller(&self.0, &request).await?;
        let members = self.0.line_connected(&who).await?;
        Ok(Response::new(pb::ListConnectedResponse {
            members: members.into_iter().map(Into::into).collect(),
        }))
    }

    async fn add_line_connected(
        &self,
        request: Request<pb::AddConnectedRequest>,
    ) -> Reply<pb::AddConnectedResponse> {
        let who = caller(&self.0, &request).await?;
        who.require_admin()?;
        let member = self
            .0
            .local_member_id("member_id", &request.into_inner().member_id)?;
        self.0.add_line_connected(&who, &member).await?;
        Ok(Response::new(pb::AddConnectedResponse {}))
    }

    async fn remove_line_connected(
        &self,
        request: Request<pb::RemoveConnectedRequest>,
    ) -> Reply<pb::RemoveConnectedResponse> {
        let who = caller(&self.0, &request).await?;
        who.require_admin()?;
        let member = self
            .0
            .local_member_id("member_id", &request.into_inner().member_id)?;
        self.0.remove_line_connected(&who, &member).await?;
        Ok(Response::new(pb::RemoveConnectedResponse {}))
    }

    async fn get_line_invite(
        &self,
        request: Request<pb::GetLineInviteRequest>,
    ) -> Reply<pb::LineInvite> {
        let who = caller(&self.0, &request).await?;
        Ok(Response::new(self.0.line_invite(&who).await?.into()))
    }
}

type AuditStream = Pin<Box<dyn Stream<Item = Result<pb::AuditEntry, Status>> + Send>>;

#[tonic::async_trait]
impl pb::audit_server::Audit for AuditApi {
    async fn search_audit(
        &self,
        request: Request<pb::AuditSearchRequest>,
    ) -> Reply<pb::AuditSearchResponse> {
        let who = caller(&self.0, &request).await?;
        let entries = self
            .0
            .audit_search(&who, audit_filter(request.get_ref()))
            .await?;
        Ok(Response::new(pb::AuditSearchResponse {
            entries: entries.into_iter().map(Into::into).collect(),
        }))
    }

    type ExportAuditStream = AuditStream;

    async fn export_audit(
        &self,
        request: Request<pb::AuditSearchRequest>,
    ) -> Reply<Self::ExportAuditStream> {
        let who = caller(&self.0, &request).await?;
        let mut filter = audit_filter(request.get_ref());
        filter.limit = crate::policy::audit::MAX_PAGE;
        // Check access and filters now, so a refusal is the call's status.
        let first = self.0.audit_search(&who, filter.clone()).await?;
        let tenant = self.0.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut page = first;
            loop {
                let Some(last) = page.last().map(|e| e.seq) else {
                    return;
                };
                for entry in page {
                    if tx.send(Ok(entry.into())).await.is_err() {
                        return;
                    }
                }
                filter.after_seq = last;
                page = match tenant.audit_search(&who, filter.clone()).await {
                    Ok(page) => page,
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                };
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn verify_audit(
        &self,
        request: Request<pb::VerifyAuditRequest>,
    ) -> Reply<pb::VerifyAuditResponse> {
        let who = caller(&self.0, &request).await?;
        Ok(Response::new(match self.0.audit_verify(&who).await? {
            Ok(entries) => pb::VerifyAuditResponse {
                ok: true,
                entries,
                broken_at: 0,
                reason: String::new(),
            },
            Err((broken_at, reason)) => pb::VerifyAuditResponse {
                ok: false,
                entries: 0,
                broken_at,
                reason,
            },
        }))
    }
}

#[tonic::async_trait]
impl pb::contacts_server::Contacts for ContactsApi {
    async fn find_user(&self, request: Request<pb::FindUserRequest>) -> Reply<pb::ExternalProfile> {
        let who = caller(&self.0, &request).await?;
        let user = member_id("user_id", &request.into_inner().user_id)?;
        let profile = self.0.find_external(&who, &user).await?;
        Ok(Response::new(external_profile(profile)))
    }

    async fn create_invitation(
        &self,
        request: Request<pb::CreateInvitationRequest>,
    ) -> Reply<pb::InvitationLink> {
        let who = caller(&self.0, &request).await?;
        let ttl = request.get_ref().ttl_secs;
        let ttl_ms = (ttl > 0).then(|| i64::try_from(ttl.saturating_mul(1000)).unwrap_or(i64::MAX));
        let email = request.get_ref().email.clone();
        let invitation = self
            .0
            .create_invitation(&who, ttl_ms, (!email.is_empty()).then_some(email.as_str()))
            .await?;
        Ok(Response::new(pb::InvitationLink {
            link: invitation.link,
            expires_at_ms: invitation.expires_at_ms,
            qr_svg: invitation.qr.svg,
            qr_png: invitation.qr.png,
            qr_text: invitation.qr.terminal,
            emailed: invitation.emailed,
        }))
    }

    async fn redeem_invitation(
        &self,
        request: Request<pb::RedeemInvitationRequest>,
    ) -> Reply<pb::ExternalContact> {
        let who = caller(&self.0, &request).await?;
        Ok(Response::new(
            self.0
                .redeem_link(&who, &request.into_inner().link)
                .await?
                .into(),
        ))
    }

    async fn send_friend_request(
        &self,
        request: Request<pb::SendFriendRequestRequest>,
    ) -> Reply<pb::FriendRequest> {
        let who = caller(&self.0, &request).await?;
        let user = member_id("user_id", &request.into_inner().user_id)?;
        let sent = self.0.send_friend_request(&who, &user).await?;
        Ok(Response::new(sent.into()))
    }

    async fn list_friend_requests(
        &self,
        request: Request<pb::ListFriendRequestsRequest>,
    ) -> Reply<pb::ListFriendRequestsResponse> {
        let who = caller(&self.0, &request).await?;
        let requests = self.0.friend_requests(&who).await?;
        Ok(Response::new(pb::ListFriendRequestsResponse {
            requests: requests.into_iter().map(Into::into).collect(),
        }))
    }

    async fn accept_friend_request(
        &self,
        request: Request<pb::AnswerFriendRequestRequest>,
    ) -> Reply<pb::ExternalContact> {
        let who = caller(&self.0, &request).await?;
        let r = request.into_inner();
        if r.block {
            return Err(crate::error::Error::invalid("block", "only a decline can block").into());
        }
        Ok(Response::new(
            self.0.accept_friend_request(&who, &r.id).await?.into(),
        ))
    }

    async fn decline_friend_request(
        &self,
        request: Request<pb::AnswerFriendRequestRequest>,
    ) -> Reply<pb::DeclineFriendRequestResponse> {
        let who = caller(&self.0, &request).await?;
        let r = request.into_inner();
        self.0.decline_friend_request(&who, &r.id, r.block).await?;
        Ok(Response::new(pb::DeclineFriendRequestResponse {}))
    }

    async fn list_contacts(
        &self,
        request: Request<pb::ListContactsRequest>,
    ) -> Reply<pb::ListContactsResponse> {
        let who = caller(&self.0, &request).await?;
        let contacts = self.0.contacts(&who, request.into_inner().trash).await?;
        Ok(Response::new(pb::ListContactsResponse {
            contacts: contacts.into_iter().map(Into::into).collect(),
        }))
    }

    async fn get_contact(&self, request: Request<pb::ContactRef>) -> Reply<pb::ExternalContact> {
        let who = caller(&self.0, &request).await?;
        let user = member_id("user_id", &request.into_inner().user_id)?;
        Ok(Response::new(self.0.contact(&who, &user).await?.into()))
    }

    async fn edit_contact(
        &self,
        request: Request<pb::EditContactRequest>,
    ) -> Reply<pb::ExternalContact> {
        let who = caller(&self.0, &request).await?;
        let r = request.into_inner();
        let user = member_id("user_id", &r.user_id)?;
        Ok(Response::new(
            self.0
                .edit_contact(&who, &user, contact_edit(r))
                .await?
                .into(),
        ))
    }

    async fn delete_contact(&self, request: Request<pb::ContactRef>) -> Reply<pb::ExternalContact> {
        let who = caller(&self.0, &request).await?;
        Ok(Response::new(
            self.0
                .trash_contact(
                    &who,
                    &member_id("user_id", &request.into_inner().user_id)?,
                    true,
                )
                .await?
                .into(),
        ))
    }

    async fn restore_contact(
        &self,
        request: Request<pb::ContactRef>,
    ) -> Reply<pb::ExternalContact> {
        let who = caller(&self.0, &request).await?;
        Ok(Response::new(
            self.0
                .trash_contact(
                    &who,
                    &member_id("user_id", &request.into_inner().user_id)?,
                    false,
                )
                .await?
                .into(),
        ))
    }

    async fn block_user(&self, request: Request<pb::ContactRef>) -> Reply<pb::BlockResponse> {
        let who = caller(&self.0, &request).await?;
        self.0
            .set_blocked(
                &who,
                &member_id("user_id", &request.into_inner().user_id)?,
                true,
            )
            .await?;
        Ok(Response::new(pb::BlockResponse {}))
    }

    async fn unblock_user(&self, request: Request<pb::ContactRef>) -> Reply<pb::BlockResponse> {
        let who = caller(&self.0, &request).await?;
        self.0
            .set_blocked(
                &who,
                &member_id("user_id", &request.into_inner().user_id)?,
                false,
            )
            .await?;
        Ok(Response::new(pb::BlockResponse {}))
    }
}
