//! The bridge: how tenant nodes of different companies talk.
//!
//! gRPC over TLS 1.3 with a client certificate required on both ends. The
//! peer's tenant id is taken from its verified certificate, once per call, by
//! `identity`; the service then compares every tenant a request names with
//! it, and parses every member id it names into a typed id. The crate knows
//! nothing of SQL or of members beyond their ids: a node plugs its rules in
//! through the [`BridgeHandler`] trait and keeps the [`TrustStore`] current.
//!
//! # Layout
//!
//! - `tls`: rustls configurations for the server and for dialing a peer.
//! - `identity`: the trust store (pinned CAs per peer tenant) and the check
//!   that turns a certificate chain into a `TenantId`.
//! - `limits`: the connection cap, the HTTP/2 preface deadline and the
//!   other limits of a server's connections (the node's client API uses
//!   them too).
//! - `server`: the TLS accept loop and the gRPC service.
//! - `client`: dialing a peer and calling it.
//! - `ids`: tenant, member, room and event ids, parsed once at an edge;
//!   the node uses the same types.
//! - `error`: the crate's errors and their gRPC statuses.
#![forbid(unsafe_code)]

pub mod client;
pub mod error;
pub mod identity;
pub mod ids;
pub mod limits;
pub mod server;
pub mod tls;

pub use client::{PeerClient, PingReport};
pub use error::{BridgeError, HandlerError};
pub use identity::{AnnouncementError, ChainError, PeerCerts, PinError, TrustStore};
pub use limits::ServerLimits;
pub use server::{BridgeHandler, MAX_BATCH, NewPeer, Outcome, PublicProfile, serve};
pub use tls::NodeIdentity;
pub use works_certs::TenantId;
