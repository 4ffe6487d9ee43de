//! Generated protobuf types and gRPC stubs.
//!
//! This crate is the wire edge: only the adapter modules of the other crates
//! (`tenant-node/src/grpc/`, later `bridge/`) import it. Domain and storage code
//! never see these types.
#![forbid(unsafe_code)]

pub mod client {
    pub mod v1 {
        tonic::include_proto!("works.client.v1");
    }
}

/// Encoded `FileDescriptorSet` of every service, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("works_descriptor");
