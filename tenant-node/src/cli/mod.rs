//! The `tenant-node` command line: server commands (`init`, `serve`, `demo`)
//! and client subcommands that admins and members script against.
//!
//! Client subcommands take `--node URL` (env `WORKS_NODE`), `--token T` (env
//! `WORKS_TOKEN`) and `--json` (one JSON document on stdout; errors go to
//! stderr with a non-zero exit).

pub mod demo;

mod commands;
mod output;

pub use commands::status_error;
pub use output::{delivery_line, event_line};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::WebListen;

#[derive(Parser)]
#[command(
    name = "tenant-node",
    version,
    about = "A company's messaging server and its command-line client"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
pub struct ClientOpts {
    /// The node's client API.
    #[arg(
        long,
        env = "WORKS_NODE",
        default_value = "http://127.0.0.1:4780",
        global = true
    )]
    node: String,
    /// A token from `tenant-node login`.
    #[arg(long, env = "WORKS_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Create a data directory: config, database and the first admin.
    Init {
        #[arg(long)]
        data: PathBuf,
        /// The company's tenant id, a domain name such as acme.example.
        #[arg(long)]
        tenant: String,
        /// The company's name as members of other companies will see it.
        #[arg(long)]
        company: String,
        /// Client API address (default 127.0.0.1:4780).
        #[arg(long)]
        api: Option<SocketAddr>,
        /// Bridge address for peering (default 127.0.0.1:4781).
        #[arg(long)]
        bridge: Option<SocketAddr>,
        /// Web address for the browser app (default 127.0.0.1:4782; "" for none).
        #[arg(long, value_name = "ADDR")]
        web: Option<WebListen>,
        /// Ops address for health, readiness and metrics (default
        /// 127.0.0.1:4783; "" for none). No authentication: keep it private.
        #[arg(long, value_name = "ADDR")]
        ops: Option<WebListen>,
        /// The first admin's password; generated and printed once when absent.
        #[arg(long, env = "WORKS_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: Option<String>,
        /// Keep the data in this database (postgres://...) instead of SQLite.
        #[arg(long, env = "WORKS_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
    /// Run the node until SIGINT or SIGTERM.
    Serve {
        #[arg(long)]
        data: PathBuf,
    },
    /// Start two nodes on a temporary directory and play a conversation.
    Demo {
        /// Then keep both nodes up, with their web ports, until Ctrl-C.
        #[arg(long)]
        web: bool,
    },
    /// Log in and print a token (use it as WORKS_TOKEN).
    Login {
        #[arg(long)]
        user: String,
        #[arg(long, env = "WORKS_PASSWORD", hide_env_values = true)]
        password: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Revoke the current token.
    Logout {
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Show who the token belongs to.
    Whoami {
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Your profile, or another member's.
    Profile {
        #[command(subcommand)]
        command: ProfileCommand,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Admin console.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Members of other companies.
    Contact {
        #[command(subcommand)]
        command: ContactCommand,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Friend requests from and to other companies.
    Request {
        #[command(subcommand)]
        command: RequestCommand,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Rooms and messages.
    Room {
        #[command(subcommand)]
        command: RoomCommand,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Notices to you, such as your admin allowing you to talk with other
    /// companies (`room watch` shows them live).
    Notice {
        #[command(subcommand)]
        command: NoticeCommand,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Chat with LINE users through the company's LINE Official Account.
    Line {
        #[command(subcommand)]
        command: LineCommand,
        #[command(flatten)]
        client: ClientOpts,
    },
}

#[derive(Subcommand)]
pub enum LineCommand {
    /// Your message ID, the link that opens the company's LINE account with
    /// it typed in, and its QR code, for LINE users to reach you.
    Invite {
        /// Also write the QR code as PNG to this file.
        #[arg(long)]
        qr_png: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum NoticeCommand {
    /// Your recent notices, newest first.
    List,
}

#[derive(Subcommand)]
pub enum ContactCommand {
    /// Find a member of another company by exact id.
    Find {
        id: String,
    },
    /// Send a friend request to a member of another company.
    Add {
        id: String,
    },
    /// Make an invitation link and QR code for a member of another company.
    Invite {
        /// Lifetime in seconds (default 7 days).
        #[arg(long)]
        ttl: Option<u64>,
        /// Also write the QR code as PNG to this file.
        #[arg(long)]
        qr_png: Option<PathBuf>,
        /// Also write the QR code as SVG to this file.
        #[arg(long)]
        qr_svg: Option<PathBuf>,
        /// Also email the link and QR code to this address.
        #[arg(long)]
        email: Option<String>,
    },
    /// Redeem another company's member's invitation link: contacts at once.
    Redeem {
        link: String,
    },
    /// Your external contacts (or the trash).
    List {
        #[arg(long)]
        trash: bool,
    },
    Show {
        id: String,
    },
    /// Move a contact to the trash.
    Delete {
        id: String,
    },
    /// Bring a contact back from the trash.
    Restore {
        id: String,
    },
    /// Stop delivery of a user's requests and messages.
    Block {
        id: String,
    },
    Unblock {
        id: String,
    },
}

#[derive(Args)]
pub struct EditContact {
    id: String,
    #[arg(long)]
    name: Option<String>,
    /// Replaces the phone numbers (repeat for several; "" clears them).
    #[arg(long = "phone")]
    phones: Vec<String>,
    /// Replaces the email addresses (repeat for several; "" clears them).
    #[arg(long = "email")]
    emails: Vec<String>,
    #[arg(long)]
    group: Option<String>,
    #[arg(long)]
    company: Option<String>,
    #[arg(long)]
    team: Option<String>,
    #[arg(long)]
    position: Option<String>,
    #[arg(long)]
    website: Option<String>,
    /// YYYY-MM-DD.
    #[arg(long)]
    birth_date: Option<String>,
    #[arg(long)]
    line: Option<String>,
    #[arg(long)]
    facebook: Option<String>,
    #[arg(long)]
    x: Option<String>,
    #[arg(long)]
    memo: Option<String>,
    /// The display name is synced from the user's company: refused.
    #[arg(long)]
    nickname: Option<String>,
}

#[derive(Subcommand)]
pub enum RequestCommand {
    /// Incoming and outgoing friend requests.
    List,
    Accept {
        id: String,
    },
    Decline {
        id: String,
        /// Also block the sender.
        #[arg(long)]
        block: bool,
    },
}

#[derive(Subcommand)]
pub enum ProfileCommand {
    /// Show a profile (yours when no id is given).
    Show { member: Option<String> },
    /// Change your display name or photo.
    Set {
        #[arg(long)]
        display_name: Option<String>,
        /// A PNG or JPEG file; it is re-encoded (at most 512 px a side, no
        /// metadata kept).
        #[arg(long, conflicts_with = "clear_photo")]
        photo: Option<PathBuf>,
        #[arg(long)]
        clear_photo: bool,
    },
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Members of the company.
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
    /// The company name.
    Company {
        #[command(subcommand)]
        command: CompanyCommand,
    },
    /// "Chat with WORKS users from other companies": the settings.
    External {
        #[command(subcommand)]
        command: ExternalCommand,
    },
    /// Members allowed to talk with other companies.
    Connected {
        #[command(subcommand)]
        command: ConnectedCommand,
    },
    /// "Chat with LINE users": the settings and the members allowed.
    Line {
        #[command(subcommand)]
        command: AdminLineCommand,
    },
    /// The audit log of external events.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Peering with other companies' nodes.
    Peer {
        #[command(subcommand)]
        command: PeerCommand,
    },
    /// This node's CA and certificate: show, rotate, retire, renew.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    fn is_on(self) -> bool {
        matches!(self, OnOff::On)
    }
}

#[derive(Subcommand)]
pub enum ExternalCommand {
    Show,
    /// Change the settings given; the others stay as they are.
    Set {
        /// Use status.
        #[arg(long)]
        enabled: Option<OnOff>,
        /// Connect new members automatically.
        #[arg(long)]
        auto_grant: Option<OnOff>,
        /// Stop your members sending files into rooms with other companies
        /// (files other companies send still come in).
        #[arg(long)]
        restrict_files: Option<OnOff>,
        /// The company name other companies see as the fixed status.
        #[arg(long)]
        company: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum AdminLineCommand {
    /// The settings, and the channel the node's `[line]` configures.
    Show,
    /// Change the settings given; the others stay as they are.
    Set {
        /// Use status (needs a `[line]` section in node.toml).
        #[arg(long)]
        enabled: Option<OnOff>,
        /// Allow new members to chat with LINE users automatically.
        #[arg(long)]
        auto_grant: Option<OnOff>,
        /// Stop members sharing files in rooms with LINE users.
        #[arg(long)]
        restrict_files: Option<OnOff>,
        /// Sent to a LINE user who adds the account as a friend (at most
        /// 1000 characters).
        #[arg(long)]
        greeting: Option<String>,
    },
    /// Members allowed to chat with LINE users.
    Connected {
        #[command(subcommand)]
        command: ConnectedCommand,
    },
}

#[derive(Subcommand)]
pub enum ConnectedCommand {
    Add { id: String },
    Remove { id: String },
    List,
}

#[derive(Args, Clone)]
pub struct AuditFilter {
    #[arg(long)]
    member: Option<String>,
    #[arg(long)]
    external: Option<String>,
    #[arg(long)]
    peer: Option<String>,
    /// Case-insensitive text in the entry.
    #[arg(long)]
    text: Option<String>,
    /// RFC 3339 time or unix milliseconds.
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    Search {
        #[command(flatten)]
        filter: AuditFilter,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Every matching entry as JSON lines or CSV on stdout.
    Export {
        #[arg(long, value_enum)]
        format: ExportFormat,
        #[command(flatten)]
        filter: AuditFilter,
    },
    /// Recompute the hash chain.
    Verify,
}

#[derive(Subcommand)]
pub enum CaCommand {
    /// Fingerprints and expiry dates.
    Show,
    /// Start a change-over to a new CA; peers trust both until `retire`.
    Rotate,
    /// End the change-over: peers trust the new CA alone.
    Retire,
    /// Re-issue this node's certificate from the current CA.
    Renew,
}

#[derive(Subcommand)]
pub enum PeerCommand {
    /// Print a one-time, expiring invitation token for another company's admin.
    Invite {
        /// Only this tenant may redeem it.
        #[arg(long = "for")]
        for_tenant: Option<String>,
        /// Lifetime in seconds (default one day).
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Redeem another node's invitation and pin each other's CA.
    Accept {
        #[arg(value_name = "TOKEN")]
        invitation: String,
    },
    /// Peers with state, last contact, queue depth and lag.
    List,
    /// Check a peering end to end.
    Test { tenant: String },
    /// End a peering on both sides.
    Remove { tenant: String },
}

#[derive(Subcommand)]
pub enum MemberCommand {
    /// Add a member (NAME is the part before @tenant).
    Add {
        name: String,
        #[arg(long)]
        display_name: String,
        #[arg(long, env = "WORKS_MEMBER_PASSWORD", hide_env_values = true)]
        password: String,
        /// Give the member the admin role.
        #[arg(long)]
        admin: bool,
    },
    List,
    Suspend {
        id: String,
    },
    Unsuspend {
        id: String,
    },
}

#[derive(Subcommand)]
pub enum CompanyCommand {
    Show,
    Set { name: String },
}

#[derive(Subcommand)]
pub enum RoomCommand {
    /// Your rooms, most recently active first, with unread counts.
    List,
    /// Create a room: one MEMBER without --name makes a 1:1 room; otherwise a group.
    Create {
        #[arg(long)]
        name: Option<String>,
        #[arg(required = true)]
        members: Vec<String>,
    },
    Show {
        room: String,
    },
    /// Add members to a group room (group master only).
    Invite {
        room: String,
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Remove a member from a group room (group master only).
    Remove {
        room: String,
        member: String,
    },
    Leave {
        room: String,
    },
    /// Rename a group room (in a room with other companies, group master
    /// only).
    Rename {
        room: String,
        name: String,
    },
    /// Send a text message, a sticker or a file.
    Send {
        room: String,
        /// The message (leave out with --sticker or --file).
        #[arg(default_value = "")]
        text: String,
        /// Send this sticker instead of text.
        #[arg(long, conflicts_with = "file")]
        sticker: Option<String>,
        /// Upload this file and post it instead of text.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// Idempotency key; a retry with the same key is stored once.
        #[arg(long)]
        key: Option<String>,
    },
    /// Save a posted file.
    Download {
        /// The attachment id, as `history` shows it.
        attachment: String,
        /// Where to write it (default: its own name, in this directory).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// A room's messages, oldest first.
    History {
        room: String,
        /// Only events after this sequence number.
        #[arg(long)]
        since: Option<u64>,
        /// Only events before this sequence number.
        #[arg(long, conflicts_with = "since")]
        before: Option<u64>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Mark a room read up to SEQ (default: everything).
    Read {
        room: String,
        seq: Option<u64>,
    },
    /// Stream events as they arrive (unread ones first), and notices to
    /// you as they are sent.
    Watch {
        room: Option<String>,
        /// Start after this sequence number (needs ROOM).
        #[arg(long, requires = "room")]
        since: Option<u64>,
        /// Exit after this many events and notices.
        #[arg(long)]
        count: Option<u64>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use clap::Parser;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
        for args in [
            &["tenant-node", "admin", "line", "show"][..],
            &[
                "tenant-node",
                "admin",
                "line",
                "set",
                "--enabled",
                "on",
                "--auto-grant",
                "off",
                "--restrict-files",
                "on",
                "--greeting",
                "Hello",
            ],
            &[
                "tenant-node",
                "admin",
                "line",
                "connected",
                "add",
                "bob@a.example",
            ],
            &[
                "tenant-node",
                "admin",
                "line",
                "connected",
                "remove",
                "bob@a.example",
            ],
            &[
                "tenant-node",
                "admin",
                "line",
                "connected",
                "list",
                "--json",
            ],
            &["tenant-node", "line", "invite", "--qr-png", "qr.png"],
        ] {
            if let Err(e) = super::Cli::try_parse_from(args) {
                panic!("{args:?}: {e}");
            }
        }
        assert!(
            super::Cli::try_parse_from(["tenant-node", "admin", "line", "set", "--enabled", "yes"])
                .is_err()
        );
    }
}
