//! The `Line` service: the admin's LINE settings and connected members, a
//! member's LINE entry points.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use works_proto::client::v1 as pb;

use super::caller;
use crate::policy::line::LineSettingsChange;
use crate::tenant::Tenant;

type Reply<T> = Result<Response<T>, Status>;

pub struct LineApi(pub Arc<Tenant>);

fn settings(s: crate::policy::line::LineSettings) -> pb::LineSettings {
    let (channel_id, basic_id) = s.channel.unwrap_or_default();
    pb::LineSettings {
        enabled: s.enabled,
        auto_grant: s.auto_grant,
        restrict_files: s.restrict_files,
        greeting: s.greeting,
        channel_id,
        basic_id,
    }
}

#[tonic::async_trait]
impl pb::line_server::Line for LineApi {
    async fn get_line_settings(
        &self,
        request: Request<pb::GetLineSettingsRequest>,
    ) -> Reply<pb::LineSettings> {
        let who = caller(&self.0, &request).await?;
        Ok(Response::new(settings(self.0.line_settings(&who).await?)))
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
        Ok(Response::new(settings(
            self.0.set_line_settings(&who, change).await?,
        )))
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
        let i = self.0.line_invite(&who).await?;
        Ok(Response::new(pb::LineInvite {
            message_id: i.message_id,
            basic_id: i.basic_id,
            link: i.link,
            qr_svg: i.qr_svg,
            qr_png: i.qr_png,
            qr_terminal: i.qr_terminal,
        }))
    }
}
