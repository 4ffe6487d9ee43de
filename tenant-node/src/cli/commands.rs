//! What each subcommand does.

use anyhow::{Context, anyhow};
use serde_json::json;
use tokio_stream::StreamExt;
use works_proto::client::v1 as pb;

use super::output::{self, print, safe};
use super::{
    AdminCommand, AdminLineCommand, AuditCommand, AuditFilter, CaCommand, ClientOpts, Command,
    CompanyCommand, ConnectedCommand, ContactCommand, ExportFormat, ExternalCommand, LineCommand,
    MemberCommand, NoticeCommand, PeerCommand, ProfileCommand, RequestCommand, RoomCommand,
};
use crate::client::Client;
use crate::config::{Config, LogFormat};
use crate::init::{InitOptions, init};
use crate::node::{Listeners, Node};

/// A gRPC status as the CLI reports it: `not found: room … not found`.
fn rpc<T>(result: Result<tonic::Response<T>, tonic::Status>) -> anyhow::Result<T> {
    result
        .map(tonic::Response::into_inner)
        .map_err(status_error)
}

pub fn status_error(status: tonic::Status) -> anyhow::Error {
    // A node's message may quote what another company sent.
    anyhow!(
        "{}: {}",
        works_bridge::error::code_name(status.code()),
        safe(status.message())
    )
}

async fn connect(opts: &ClientOpts) -> anyhow::Result<Client> {
    Ok(Client::connect(&opts.node, opts.token.as_deref()).await?)
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Init {
            data,
            tenant,
            company,
            api,
            bridge,
            web,
            ops,
            admin_password,
            database_url,
        } => {
            let done = init(InitOptions {
                data_dir: data.clone(),
                tenant,
                company,
                api,
                bridge,
                web,
                ops,
                admin_password,
                database_url,
            })
            .await?;
            println!("initialised {}", data.display());
            println!("config:   {}", done.config_path.display());
            println!("admin:    {}", done.admin);
            println!("CA:       sha256 {}", done.ca_fingerprint);
            if done.password_generated {
                println!("password: {}", done.admin_password);
                println!(
                    "(shown once: store it now, then run `tenant-node serve --data {}`)",
                    data.display()
                );
            }
            Ok(())
        }
        Command::Serve { data } => serve(&data).await,
        Command::Demo { web } => crate::cli::demo::run(web).await,
        Command::Login {
            user,
            password,
            client,
        } => {
            let c = connect(&client).await?;
            let login = rpc(c
                .auth
                .clone()
                .login(pb::LoginRequest {
                    member_id: user,
                    password,
                })
                .await)?;
            print(
                client.json,
                json!({"token": login.token, "member_id": login.member_id, "expires_at_ms": login.expires_at_ms}),
                || login.token.clone(),
            );
            Ok(())
        }
        Command::Logout { client } => {
            let c = connect(&client).await?;
            rpc(c.auth.clone().logout(pb::LogoutRequest {}).await)?;
            print(client.json, json!({"logged_out": true}), || {
                "logged out".into()
            });
            Ok(())
        }
        Command::Whoami { client } => {
            let c = connect(&client).await?;
            let me = rpc(c.auth.clone().who_am_i(pb::WhoAmIRequest {}).await)?;
            print(client.json, output::member_json(&me), || {
                output::member_line(&me)
            });
            Ok(())
        }
        Command::Profile { command, client } => profile(command, &client).await,
        Command::Admin { command, client } => admin(command, &client).await,
        Command::Room { command, client } => room(command, &client).await,
        Command::Contact { command, client } => contact(command, &client).await,
        Command::Request { command, client } => friend_request(command, &client).await,
        Command::Notice { command, client } => notice(command, &client).await,
        Command::Line { command, client } => line(command, &client).await,
    }
}

async fn notice(command: NoticeCommand, opts: &ClientOpts) -> anyhow::Result<()> {
    let c = connect(opts).await?;
    match command {
        NoticeCommand::List => {
            let list = rpc(c
                .profiles
                .clone()
                .list_notices(pb::ListNoticesRequest {})
                .await)?;
            print(
                opts.json,
                json!({"notices": list.notices.iter().map(output::notice_json).collect::<Vec<_>>()}),
                || {
                    list.notices
                        .iter()
                        .map(output::notice_line)
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
    }
    Ok(())
}

async fn serve(data: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(data)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn,h2=warn,tower=warn".into());
    match config.log.format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
    }
    let listeners = Listeners::bind(&config).await?;
    let node = Node::open(config, data).await?;
    let api = listeners.api.local_addr()?;
    let bridge = listeners.bridge.local_addr()?;
    let web = listeners.web.as_ref().map(|w| w.local_addr()).transpose()?;
    let ops = listeners.ops.as_ref().map(|o| o.local_addr()).transpose()?;
    let shown = |addr: Option<std::net::SocketAddr>| addr.map_or("none".into(), |a| a.to_string());
    let ops_shown = shown(ops);
    match web {
        Some(web) => {
            tracing::info!(tenant = %node.tenant.id, %api, %bridge, %web, ops = %ops_shown, "node started")
        }
        None => {
            tracing::info!(tenant = %node.tenant.id, %api, %bridge, ops = %ops_shown, "node started; no web port")
        }
    }
    // Scripts and tests read these lines to find ephemeral ports; the
    // bridge's comes last.
    println!("api listening on {api}");
    if let Some(web) = web {
        println!("web listening on {web}");
    }
    if let Some(ops) = ops {
        println!("ops listening on {ops}");
    }
    if let Some(line) = listeners
        .line
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?
    {
        tracing::info!(%line, "LINE's webhook served on a port of its own");
        println!("line webhook listening on {line}");
    }
    println!("bridge listening on {bridge}");
    node.serve(listeners, shutdown_signal()).await?;
    tracing::info!("node stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; stop with SIGINT");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("draining: shutdown signal received");
}

async fn profile(command: ProfileCommand, opts: &ClientOpts) -> anyhow::Result<()> {
    let c = connect(opts).await?;
    let profile = match command {
        ProfileCommand::Show { member } => rpc(c
            .profiles
            .clone()
            .get_profile(pb::GetProfileRequest {
                member_id: member.unwrap_or_default(),
            })
            .await)?,
        ProfileCommand::Set {
            display_name,
            photo,
            clear_photo,
        } => {
            let photo = match photo {
                Some(path) => Some(
                    std::fs::read(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                ),
                None => None,
            };
            rpc(c
                .profiles
                .clone()
                .set_profile(pb::SetProfileRequest {
                    display_name,
                    photo,
                    clear_photo,
                })
                .await)?
        }
    };
    print(opts.json, output::profile_json(&profile), || {
        output::profile_text(&profile)
    });
    Ok(())
}

async fn admin(command: AdminCommand, opts: &ClientOpts) -> anyhow::Result<()> {
    let c = connect(opts).await?;
    let mut admin = c.admin.clone();
    match command {
        AdminCommand::Member { command } => {
            let member = match command {
                MemberCommand::Add {
                    name,
                    display_name,
                    password,
                    admin: is_admin,
                } => rpc(admin
                    .add_member(pb::AddMemberRequest {
                        name,
                        display_name,
                        password,
                        role: if is_admin {
                            pb::Role::Admin
                        } else {
                            pb::Role::Member
                        } as i32,
                    })
                    .await)?,
                MemberCommand::List => {
                    let list = rpc(admin.list_members(pb::ListMembersRequest {}).await)?;
                    print(
                        opts.json,
                        json!({"members": list.members.iter().map(output::member_json).collect::<Vec<_>>()}),
                        || {
                            list.members
                                .iter()
                                .map(output::member_line)
                                .collect::<Vec<_>>()
                                .join("\n")
                        },
                    );
                    return Ok(());
                }
                MemberCommand::Suspend { id } => rpc(admin
                    .suspend_member(pb::SuspendMemberRequest { member_id: id })
                    .await)?,
                MemberCommand::Unsuspend { id } => rpc(admin
                    .unsuspend_member(pb::UnsuspendMemberRequest { member_id: id })
                    .await)?,
            };
            print(opts.json, output::member_json(&member), || {
                output::member_line(&member)
            });
        }
        AdminCommand::Company { command } => {
            let company = match command {
                CompanyCommand::Show => rpc(admin.get_company(pb::GetCompanyRequest {}).await)?,
                CompanyCommand::Set { name } => {
                    rpc(admin.set_company(pb::SetCompanyRequest { name }).await)?
                }
            };
            print(
                opts.json,
                json!({"tenant": company.tenant, "name": company.name}),
                || format!("{} ({})", safe(&company.name), safe(&company.tenant)),
            );
        }
        AdminCommand::Peer { command } => peer(command, &c, opts).await?,
        AdminCommand::External { command } => {
            let mut external = c.external.clone();
            let settings = match command {
                ExternalCommand::Show => rpc(external
                    .get_external_settings(pb::GetExternalSettingsRequest {})
                    .await)?,
                ExternalCommand::Set {
                    enabled,
                    auto_grant,
                    restrict_files,
                    company,
                } => rpc(external
                    .set_external_settings(pb::SetExternalSettingsRequest {
                        enabled: enabled.map(|v| v.is_on()),
                        auto_grant: auto_grant.map(|v| v.is_on()),
                        restrict_files: restrict_files.map(|v| v.is_on()),
                        company,
                    })
                    .await)?,
            };
            let on = |b: bool| if b { "on" } else { "off" };
            print(
                opts.json,
                json!({"enabled": settings.enabled, "auto_grant": settings.auto_grant,
                       "restrict_files": settings.restrict_files, "company": settings.company}),
                || {
                    format!(
                        "chat with other companies: {}\nauto-grant new members:    {}\nrestrict files:            {}\ncompany name (status):     {}",
                        on(settings.enabled),
                        on(settings.auto_grant),
                        on(settings.restrict_files),
                        safe(&settings.company)
                    )
                },
            );
        }
        AdminCommand::Connected { command } => {
            let mut external = c.external.clone();
            match command {
                ConnectedCommand::Add { id } => {
                    rpc(external
                        .add_connected(pb::AddConnectedRequest {
                            member_id: id.clone(),
                        })
                        .await)?;
                    print(opts.json, json!({"connected": id}), || {
                        format!("{id} may now talk with other companies")
                    });
                }
                ConnectedCommand::Remove { id } => {
                    rpc(external
                        .remove_connected(pb::RemoveConnectedRequest {
                            member_id: id.clone(),
                        })
                        .await)?;
                    print(opts.json, json!({"disconnected": id}), || {
                        format!("{id} may no longer talk with other companies")
                    });
                }
                ConnectedCommand::List => {
                    let list = rpc(external.list_connected(pb::ListConnectedRequest {}).await)?;
                    print(opts.json, output::connected_json(&list.members), || {
                        output::connected_text(&list.members)
                    });
                }
            }
        }
        AdminCommand::Line { command } => admin_line(command, &c, opts).await?,
        AdminCommand::Audit { command } => audit(command, &c, opts).await?,
        AdminCommand::Ca { command } => {
            let mut peering = c.peering.clone();
            let (ca, notices) = match command {
                CaCommand::Show => (rpc(peering.get_ca(pb::GetCaRequest {}).await)?, Vec::new()),
                CaCommand::Renew => (
                    rpc(peering
                        .renew_node_certificate(pb::RenewNodeCertificateRequest {})
                        .await)?,
                    Vec::new(),
                ),
                CaCommand::Rotate => {
                    let change = rpc(peering.rotate_ca(pb::RotateCaRequest {}).await)?;
                    (change.ca.unwrap_or_default(), change.peers)
                }
                CaCommand::Retire => {
                    let change = rpc(peering.retire_ca(pb::RetireCaRequest {}).await)?;
                    (change.ca.unwrap_or_default(), change.peers)
                }
            };
            print(opts.json, output::ca_json(&ca, &notices), || {
                output::ca_text(&ca, &notices)
            });
        }
    }
    Ok(())
}

async fn admin_line(
    command: AdminLineCommand,
    c: &Client,
    opts: &ClientOpts,
) -> anyhow::Result<()> {
    let mut line = c.line.clone();
    let settings = match command {
        AdminLineCommand::Show => rpc(line.get_line_settings(pb::GetLineSettingsRequest {}).await)?,
        AdminLineCommand::Set {
            enabled,
            auto_grant,
            restrict_files,
            greeting,
        } => rpc(line
            .set_line_settings(pb::SetLineSettingsRequest {
                enabled: enabled.map(|v| v.is_on()),
                auto_grant: auto_grant.map(|v| v.is_on()),
                restrict_files: restrict_files.map(|v| v.is_on()),
                greeting,
            })
            .await)?,
        AdminLineCommand::Connected { command } => {
            match command {
                ConnectedCommand::Add { id } => {
                    rpc(line
                        .add_line_connected(pb::AddConnectedRequest {
                            member_id: id.clone(),
                        })
                        .await)?;
                    print(opts.json, json!({"connected": id}), || {
                        format!("{id} may now chat with LINE users")
                    });
                }
                ConnectedCommand::Remove { id } => {
                    rpc(line
                        .remove_line_connected(pb::RemoveConnectedRequest {
                            member_id: id.clone(),
                        })
                        .await)?;
                    print(opts.json, json!({"disconnected": id}), || {
                        format!("{id} may no longer chat with LINE users")
                    });
                }
                ConnectedCommand::List => {
                    let list = rpc(line.list_line_connected(pb::ListConnectedRequest {}).await)?;
                    print(opts.json, output::connected_json(&list.members), || {
                        output::connected_text(&list.members)
                    });
                }
            }
            return Ok(());
        }
    };
    print(opts.json, output::line_settings_json(&settings), || {
        output::line_settings_text(&settings)
    });
    Ok(())
}

/// A member's LINE entry points: what they give LINE users to reach them.
async fn line(command: LineCommand, opts: &ClientOpts) -> anyhow::Result<()> {
    let c = connect(opts).await?;
    match command {
        LineCommand::Invite { qr_png } => {
            let invite = rpc(c
                .line
                .clone()
                .get_line_invite(pb::GetLineInviteRequest {})
                .await)?;
            if let Some(path) = &qr_png {
                std::fs::write(path, &invite.qr_png)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            print(
                opts.json,
                json!({"message_id": invite.message_id, "basic_id": invite.basic_id,
                       "link": invite.link, "qr_svg": invite.qr_svg}),
                || {
                    // The code is drawn in lines of block characters: each
                    // line is checked, the line breaks are kept.
                    let qr: Vec<_> = invite.qr_terminal.lines().map(safe).collect();
                    format!(
                        "message ID: {}\nLINE account: {}\nlink: {}\n{}",
                        safe(&invite.message_id),
                        safe(&invite.basic_id),
                        safe(&invite.link),
                        qr.join("\n")
                    )
                },
            );
        }
    }
    Ok(())
}

async fn peer(command: PeerCommand, c: &Client, opts: &ClientOpts) -> anyhow::Result<()> {
    let mut peering = c.peering.clone();
    match command {
        PeerCommand::Invite { for_tenant, ttl } => {
            let invitation = rpc(peering
                .invite_peer(pb::InvitePeerRequest {
                    for_tenant: for_tenant.unwrap_or_default(),
                    ttl_secs: ttl.unwrap_or(0),
                })
                .await)?;
            print(
                opts.json,
                json!({"token": invitation.token, "expires_at_ms": invitation.expires_at_ms}),
                || invitation.token.clone(),
            );
        }
        PeerCommand::Accept { invitation } => {
            let peer = rpc(peering
                .accept_peer(pb::AcceptPeerRequest { token: invitation })
                .await)?;
            print(opts.json, output::peer_json(&peer), || {
                format!(
                    "peered with {} at {}",
                    safe(&peer.tenant),
                    safe(&peer.endpoint)
                )
            });
        }
        PeerCommand::List => {
            let list = rpc(peering.list_peers(pb::ListPeersRequest {}).await)?;
            print(
                opts.json,
                json!({"peers": list.peers.iter().map(output::peer_json).collect::<Vec<_>>()}),
                || {
                    list.peers
                        .iter()
                        .map(output::peer_line)
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
        PeerCommand::Test { tenant } => {
            let report = rpc(peering.test_peer(pb::TestPeerRequest { tenant }).await)?;
            print(opts.json, output::peer_test_json(&report), || {
                output::peer_test_text(&report)
            });
            if !report.ok {
                return Err(anyhow!(
                    "the peering with {} has problems",
                    safe(&report.tenant)
                ));
            }
        }
        PeerCommand::Remove { tenant } => {
            let removed = rpc(peering.remove_peer(pb::RemovePeerRequest { tenant }).await)?;
            print(
                opts.json,
                json!({"peer_told": removed.peer_told, "detail": removed.detail}),
                || safe(&removed.detail).into_owned(),
            );
        }
    }
    Ok(())
}

async fn room(command: RoomCommand, opts: &ClientOpts) -> anyhow::Result<()> {
    let c = connect(opts).await?;
    let mut rooms = c.rooms.clone();
    let show_room = |room: pb::Room| {
        print(opts.json, output::room_json(&room), || {
            output::room_text(&room)
        });
    };
    match command {
        RoomCommand::List => {
            let me = rpc(c.auth.clone().who_am_i(pb::WhoAmIRequest {}).await)?;
            let list = rpc(rooms.list_rooms(pb::ListRoomsRequest {}).await)?;
            print(
                opts.json,
                json!({"rooms": list.rooms.iter().map(output::room_json).collect::<Vec<_>>()}),
                || {
                    list.rooms
                        .iter()
                        .map(|r| output::room_line(r, Some(&me.id)))
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
        RoomCommand::Create { name, members } => {
            let kind = if name.is_none() && members.len() == 1 {
                pb::RoomKind::Direct
            } else {
                pb::RoomKind::Group
            };
            show_room(rpc(rooms
                .create_room(pb::CreateRoomRequest {
                    kind: kind as i32,
                    name: name.unwrap_or_default(),
                    members,
                })
                .await)?);
        }
        RoomCommand::Show { room } => {
            show_room(rpc(rooms
                .get_room(pb::GetRoomRequest { room_id: room })
                .await)?);
        }
        RoomCommand::Invite { room, members } => {
            show_room(rpc(rooms
                .invite_members(pb::InviteMembersRequest {
                    room_id: room,
                    members,
                })
                .await)?);
        }
        RoomCommand::Remove { room, member } => {
            show_room(rpc(rooms
                .remove_member(pb::RemoveMemberRequest {
                    room_id: room,
                    member_id: member,
                })
                .await)?);
        }
        RoomCommand::Rename { room, name } => {
            show_room(rpc(rooms
                .rename_room(pb::RenameRoomRequest {
                    room_id: room,
                    name,
                })
                .await)?);
        }
        RoomCommand::Leave { room } => {
            let left = rpc(rooms
                .leave_room(pb::LeaveRoomRequest { room_id: room })
                .await)?;
            let event = left.event.unwrap_or_default();
            print(opts.json, output::event_json(&event), || {
                output::event_line(&event)
            });
        }
        RoomCommand::Send {
            room,
            text,
            sticker,
            file,
            key,
        } => {
            let attachment_id = match file {
                Some(path) => upload(&mut rooms, &room, &path).await?.id,
                None => String::new(),
            };
            let sent = rpc(rooms
                .send_message(pb::SendMessageRequest {
                    room_id: room,
                    idempotency_key: key.unwrap_or_else(|| ulid::Ulid::new().to_string()),
                    text,
                    sticker: sticker.unwrap_or_default(),
                    attachment_id,
                })
                .await)?;
            let event = sent.event.unwrap_or_default();
            let delivery = sent.delivery.unwrap_or_default();
            let mut value = output::event_json(&event);
            value["duplicate"] = json!(sent.duplicate);
            value["delivery"] = output::delivery_json(&delivery);
            print(opts.json, value, || {
                let note = if sent.duplicate {
                    " (already stored)"
                } else {
                    ""
                };
                format!(
                    "{}{note} [{}]",
                    output::event_line(&event),
                    output::delivery_line(&delivery)
                )
            });
        }
        RoomCommand::Download { attachment, out } => {
            let mut chunks = rpc(rooms
                .download_attachment(pb::DownloadAttachmentRequest {
                    attachment_id: attachment,
                })
                .await)?;
            let mut meta = None;
            let mut data = Vec::new();
            while let Some(chunk) = chunks
                .message()
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
            {
                if chunk.attachment.is_some() {
                    meta = chunk.attachment;
                }
                data.extend_from_slice(&chunk.data);
            }
            let meta = meta.ok_or_else(|| anyhow::anyhow!("the node sent no file description"))?;
            // Only the file name, never a path the sender chose.
            let name = std::path::Path::new(&meta.name)
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_else(|| meta.id.clone().into());
            let path = out.unwrap_or_else(|| name.into());
            std::fs::write(&path, &data)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            print(
                opts.json,
                json!({"id": meta.id, "name": meta.name, "size": data.len(), "path": path.display().to_string()}),
                || {
                    format!(
                        "saved {} ({} bytes) to {}",
                        safe(&meta.name),
                        data.len(),
                        safe(&path.display().to_string())
                    )
                },
            );
        }
        RoomCommand::History {
            room,
            since,
            before,
            limit,
        } => {
            let page = rpc(rooms
                .history(pb::HistoryRequest {
                    room_id: room,
                    after_seq: since,
                    before_seq: before,
                    limit,
                })
                .await)?;
            print(
                opts.json,
                json!({"events": page.events.iter().map(output::event_json).collect::<Vec<_>>(), "has_more": page.has_more}),
                || {
                    page.events
                        .iter()
                        .map(output::event_line)
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
        RoomCommand::Read { room, seq } => {
            let read = rpc(rooms
                .mark_read(pb::MarkReadRequest {
                    room_id: room,
                    seq: seq.unwrap_or(u64::MAX),
                })
                .await)?;
            print(
                opts.json,
                json!({"last_read_seq": read.last_read_seq, "unread": read.unread}),
                || format!("read up to #{}; {} unread", read.last_read_seq, read.unread),
            );
        }
        RoomCommand::Watch { room, since, count } => {
            let cursors = match (&room, since) {
                (Some(room), Some(seq)) => vec![pb::RoomCursor {
                    room_id: room.clone(),
                    seq,
                }],
                _ => Vec::new(),
            };
            let mut stream = rpc(rooms
                .watch(pb::WatchRequest {
                    cursors,
                    room_id: room.unwrap_or_default(),
                })
                .await)?;
            let mut seen = 0u64;
            while count.is_none_or(|n| seen < n) {
                let Some(item) = stream.next().await else {
                    break;
                };
                let item = item.map_err(status_error)?;
                // One JSON document per line: a stream of events, and of
                // notices as `{"notice": …}`.
                match item.kind {
                    Some(pb::watch_event::Kind::RoomEvent(event)) => {
                        print(opts.json, output::event_json(&event), || {
                            output::event_line(&event)
                        });
                    }
                    Some(pb::watch_event::Kind::Notice(notice)) => {
                        print(
                            opts.json,
                            json!({"notice": output::notice_json(&notice)}),
                            || output::notice_line(&notice),
                        );
                    }
                    None => continue,
                }
                seen += 1;
            }
        }
    }
    Ok(())
}

fn parse_time(flag: &str, value: &Option<String>) -> anyhow::Result<i64> {
    let Some(value) = value else { return Ok(0) };
    if let Ok(ms) = value.parse::<i64>() {
        return Ok(ms);
    }
    let t = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            anyhow!("--{flag} {value:?} is neither RFC 3339 nor unix milliseconds: {e}")
        })?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn audit_request(filter: &AuditFilter, limit: u32) -> anyhow::Result<pb::AuditSearchRequest> {
    Ok(pb::AuditSearchRequest {
        member: filter.member.clone().unwrap_or_default(),
        external_user: filter.external.clone().unwrap_or_default(),
        peer_tenant: filter.peer.clone().unwrap_or_default(),
        text: filter.text.clone().unwrap_or_default(),
        since_ms: parse_time("since", &filter.since)?,
        until_ms: parse_time("until", &filter.until)?,
        after_seq: 0,
        limit,
    })
}

async fn audit(command: AuditCommand, c: &Client, opts: &ClientOpts) -> anyhow::Result<()> {
    let mut audit = c.audit.clone();
    match command {
        AuditCommand::Search { filter, limit } => {
            let found = rpc(audit.search_audit(audit_request(&filter, limit)?).await)?;
            print(
                opts.json,
                json!({"entries": found.entries.iter().map(output::audit_json).collect::<Vec<_>>()}),
                || {
                    found
                        .entries
                        .iter()
                        .map(output::audit_line)
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
        AuditCommand::Export { format, filter } => {
            let mut stream = rpc(audit.export_audit(audit_request(&filter, 0)?).await)?;
            let stdout = std::io::stdout();
            let mut csv = match format {
                ExportFormat::Csv => {
                    let mut w = csv::Writer::from_writer(stdout.lock());
                    w.write_record(output::AUDIT_CSV_HEADER)?;
                    Some(w)
                }
                ExportFormat::Jsonl => None,
            };
            while let Some(entry) = stream.next().await {
                let entry = entry.map_err(status_error)?;
                match &mut csv {
                    Some(w) => w.write_record(output::audit_csv_record(&entry))?,
                    None => println!("{}", output::json_line(&output::audit_json(&entry))),
                }
            }
            if let Some(mut w) = csv {
                w.flush()?;
            }
        }
        AuditCommand::Verify => {
            let v = rpc(audit.verify_audit(pb::VerifyAuditRequest {}).await)?;
            print(
                opts.json,
                json!({"ok": v.ok, "entries": v.entries, "broken_at": (!v.ok).then_some(v.broken_at), "reason": (!v.ok).then_some(&v.reason)}),
                || {
                    if v.ok {
                        format!(
                            "audit log intact: {} entries, hash chain verified",
                            v.entries
                        )
                    } else {
                        format!(
                            "AUDIT LOG BROKEN at entry {}: {}",
                            v.broken_at,
                            safe(&v.reason)
                        )
                    }
                },
            );
            if !v.ok {
                return Err(anyhow!("the audit log does not verify"));
            }
        }
    }
    Ok(())
}

async fn contact(command: ContactCommand, opts: &ClientOpts) -> anyhow::Result<()> {
    let c = connect(opts).await?;
    let mut contacts = c.contacts.clone();
    let show = |contact: pb::ExternalContact| {
        print(opts.json, output::contact_json(&contact), || {
            output::contact_text(&contact)
        });
    };
    match command {
        ContactCommand::Find { id } => {
            let p = rpc(contacts
                .find_user(pb::FindUserRequest { user_id: id })
                .await)?;
            print(
                opts.json,
                json!({"user_id": p.user_id, "display_name": p.display_name, "company": p.company,
                       "tenant": p.tenant,
                       "photo_content_type": p.photo_content_type, "photo_bytes": p.photo.len()}),
                || {
                    format!(
                        "{}  {}  ({})",
                        safe(&p.user_id),
                        safe(&p.display_name),
                        safe(&output::company_with_tenant(&p.company, &p.tenant))
                    )
                },
            );
        }
        ContactCommand::Add { id } => {
            let r = rpc(contacts
                .send_friend_request(pb::SendFriendRequestRequest { user_id: id })
                .await)?;
            print(opts.json, output::request_json(&r), || {
                format!("request {} sent to {}", safe(&r.id), safe(&r.user_id))
            });
        }
        ContactCommand::Invite {
            ttl,
            qr_png,
            qr_svg,
            email,
        } => {
            let inv = rpc(contacts
                .create_invitation(pb::CreateInvitationRequest {
                    ttl_secs: ttl.unwrap_or(0),
                    email: email.unwrap_or_default(),
                })
                .await)?;
            if let Some(path) = &qr_png {
                std::fs::write(path, &inv.qr_png)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            if let Some(path) = &qr_svg {
                std::fs::write(path, &inv.qr_svg)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            print(
                opts.json,
                json!({"link": inv.link, "expires_at_ms": inv.expires_at_ms, "qr_svg": inv.qr_svg, "emailed": inv.emailed}),
                || {
                    // The code is drawn in lines of block characters: each
                    // line is checked, the line breaks are kept.
                    let qr: Vec<_> = inv.qr_text.lines().map(safe).collect();
                    format!("{}\n{}", qr.join("\n"), safe(&inv.link))
                },
            );
        }
        ContactCommand::Redeem { link } => {
            show(rpc(contacts
                .redeem_invitation(pb::RedeemInvitationRequest { link })
                .await)?);
        }
        ContactCommand::List { trash } => {
            let list = rpc(contacts
                .list_contacts(pb::ListContactsRequest { trash })
                .await)?;
            print(
                opts.json,
                json!({"contacts": list.contacts.iter().map(output::contact_json).collect::<Vec<_>>()}),
                || {
                    list.contacts
                        .iter()
                        .map(output::contact_line)
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
        ContactCommand::Show { id } => show(rpc(contacts
            .get_contact(pb::ContactRef { user_id: id })
            .await)?),
        ContactCommand::Delete { id } => show(rpc(contacts
            .delete_contact(pb::ContactRef { user_id: id })
            .await)?),
        ContactCommand::Restore { id } => show(rpc(contacts
            .restore_contact(pb::ContactRef { user_id: id })
            .await)?),
        ContactCommand::Block { id } => {
            rpc(contacts
                .block_user(pb::ContactRef {
                    user_id: id.clone(),
                })
                .await)?;
            print(opts.json, json!({"blocked": id}), || {
                format!("{id} is blocked")
            });
        }
        ContactCommand::Unblock { id } => {
            rpc(contacts
                .unblock_user(pb::ContactRef {
                    user_id: id.clone(),
                })
                .await)?;
            print(opts.json, json!({"unblocked": id}), || {
                format!("{id} is no longer blocked")
            });
        }
    }
    Ok(())
}

async fn friend_request(command: RequestCommand, opts: &ClientOpts) -> anyhow::Result<()> {
    let c = connect(opts).await?;
    let mut contacts = c.contacts.clone();
    match command {
        RequestCommand::List => {
            let list = rpc(contacts
                .list_friend_requests(pb::ListFriendRequestsRequest {})
                .await)?;
            print(
                opts.json,
                json!({"requests": list.requests.iter().map(output::request_json).collect::<Vec<_>>()}),
                || {
                    list.requests
                        .iter()
                        .map(output::request_line)
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
        RequestCommand::Accept { id } => {
            let contact = rpc(contacts
                .accept_friend_request(pb::AnswerFriendRequestRequest { id, block: false })
                .await)?;
            print(opts.json, output::contact_json(&contact), || {
                format!(
                    "{} is now your contact\n{}",
                    safe(&contact.user_id),
                    output::contact_text(&contact)
                )
            });
        }
        RequestCommand::Decline { id, block } => {
            rpc(contacts
                .decline_friend_request(pb::AnswerFriendRequestRequest {
                    id: id.clone(),
                    block,
                })
                .await)?;
            print(opts.json, json!({"declined": id, "blocked": block}), || {
                format!(
                    "request {id} declined{}",
                    if block { " and its sender blocked" } else { "" }
                )
            });
        }
    }
    Ok(())
}

/// Uploads a file for a room in chunks; returns what the node stored.
async fn upload(
    rooms: &mut pb::rooms_client::RoomsClient<crate::client::Svc>,
    room: &str,
    path: &std::path::Path,
) -> anyhow::Result<pb::Attachment> {
    const CHUNK: usize = 64 * 1024;
    let data =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let content_type = content_type_of(path);
    let mut chunks: Vec<pb::UploadChunk> = data
        .chunks(CHUNK)
        .map(|c| pb::UploadChunk {
            data: c.to_vec(),
            ..Default::default()
        })
        .collect();
    if chunks.is_empty() {
        chunks.push(pb::UploadChunk::default());
    }
    chunks[0].room_id = room.to_string();
    chunks[0].name = name;
    chunks[0].content_type = content_type.into();
    rpc(rooms.upload_attachment(tokio_stream::iter(chunks)).await)
}

/// A MIME type from a file's extension; octet-stream when unknown.
fn content_type_of(path: &std::path::Path) -> &'static str {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "pdf" => "application/pdf",
        "txt" | "md" => "text/plain",
        "csv" => "text/csv",
        "json" => "application/json",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}
