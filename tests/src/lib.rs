//! What the integration tests and the load generator share.
//!
//! # Layout
//!
//! - `scenario`: start a node's `serve` as a child process, peer nodes,
//!   allow external messaging and members, befriend, wait for a room; used
//!   by `tests/support` and by `bench`.
//! - `postgres`: a database of its own on the local PostgreSQL server.
//! - `bench`: the load generator behind the `works-bench` binary
//!   (`src/bin/works-bench.rs`): relay throughput, latency, memory and the
//!   soak, on nodes it starts as child processes.
#![forbid(unsafe_code)]

pub mod bench;
pub mod postgres;
pub mod scenario;
