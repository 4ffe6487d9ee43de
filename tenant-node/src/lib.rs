//! A tenant node: one company's messaging server.
//!
//! # Layout, by area (calls go down this list, never up)
//!
//! - `cli` (with `demo`), `client`: the `tenant-node` command line and the
//!   client library it and the tests use.
//! - `node`, `init`, `config`: start-up, the data directory, configuration.
//! - `ops`: the operations port (health, readiness, Prometheus metrics) and
//!   the API layer that counts calls; it reads, never writes.
//! - `api`: the client API edge (gRPC); `federation`: the bridge edge
//!   (answers to peers, the receiving gate). The only areas, with `cli` and
//!   `client`, that see protobuf types.
//! - `rooms`: rooms and messages (CRUD, the send path, the host sequencer,
//!   files, content limits); `outbox`: the durable per-peer queue, its
//!   deliverers and delivery receipts.
//! - `contacts` (with invitation links and mail), `peers`, `accounts` (with
//!   photos), `policy` (with the audit log), `live` (the hub and members'
//!   live streams): the other domain areas.
//! - `admission`: who may talk to whom across companies, in one place.
//! - `tenant`, `model`, `ids`, `error`, `quota`: the shared core.
//! - `store`: SQL over sqlx (SQLite or PostgreSQL); no rules.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod admission;
pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod contacts;
pub mod error;
pub mod federation;
pub mod ids;
pub mod init;
pub mod line;
pub mod live;
pub mod messaging_api;
pub mod model;
pub mod node;
pub mod ops;
pub mod outbox;
pub mod peers;
pub mod policy;
pub mod quota;
pub mod rooms;
pub mod store;
pub mod tenant;
pub mod wire;
