//! The integration tests, one binary: each module was a test binary of its
//! own, each linking the whole node; together they link once. A test's name
//! is `module::name`, so one area runs with its module as the filter:
//! `cargo test -p works-tests --test integration relay::`.
//!
//! The modules share one process. None sets an environment variable or a
//! global (tracing subscriber, current directory); every node is a child
//! process on its own ephemeral ports with its own data directory, and each
//! PostgreSQL test has a database of its own.

mod support;

mod access;
mod authz;
mod browser;
mod chat;
mod cli;
mod contacts;
mod control;
mod faults;
mod hostile;
mod hostile_output;
mod hostile_requests;
mod limits;
mod line;
mod line_admin;
mod line_sdk;
mod ops;
mod peering;
mod policy;
mod postgres;
mod properties;
mod relay;
mod replicas;
mod restart;
mod room_policy;
mod send_stream;
mod soak;
mod web;
mod web_build;
