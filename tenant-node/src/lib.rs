//! A tenant node: one company's messaging server.
//!
//! # Layout
//!
//! - `config`, `init`, `node`: configuration, data directory set-up, start-up.
//! - `ids`, `model`, `error`: typed ids, domain types, the error enum.
//! - `tenant` with `accounts`, `rooms`, `watch`, `peers`, `policy`, `audit`,
//!   `contacts`: the domain rules; `admission` decides who may talk across
//!   companies, in one place.
//! - `federation`: this node's answers on the bridge (`works-bridge`).
//! - `hub`: in-process fan-out of stored events to live streams.
//! - `store`: SQL over sqlx (SQLite or PostgreSQL); no rules.
//! - `grpc`: the client API edge; the only module that sees protobuf types.
//! - `cli`, `demo`: the `tenant-node` command line.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod admission;
pub mod attachments;
pub mod audit;
pub mod cli;
pub mod client;
pub mod config;
pub mod contacts;
pub mod content;
pub mod demo;
pub mod error;
pub mod federation;
pub mod grpc;
pub mod hub;
pub mod ids;
pub mod inbound;
pub mod init;
pub mod invitations;
pub mod mail;
pub mod model;
pub mod node;
pub mod peers;
pub mod photo;
pub mod policy;
pub mod quota;
pub mod relay;
pub mod rooms;
pub mod sends;
pub mod store;
pub mod tenant;
pub mod watch;
