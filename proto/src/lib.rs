//! Generated protobuf types and gRPC stubs.
//!
//! This crate is the wire edge: only the adapter modules of the other crates
//! (`tenant-node/src/api/`, `federation/`, `wire/`, `bridge/`) import it.
//! Domain and storage code never see these types.
#![forbid(unsafe_code)]

pub mod client {
    pub mod v1 {
        tonic::include_proto!("works.client.v1");
    }
}

pub mod federation {
    pub mod v1 {
        tonic::include_proto!("works.federation.v1");
    }
}

/// Encoded `FileDescriptorSet` of the client API, for gRPC server reflection.
pub const CLIENT_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("client_descriptor");

/// Encoded `FileDescriptorSet` of the bridge, for gRPC server reflection.
pub const FEDERATION_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("federation_descriptor");
