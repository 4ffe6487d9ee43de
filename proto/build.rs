//! Compiles the .proto files with protox (pure Rust), so the build needs no
//! system `protoc`. The encoded descriptor set is kept for server reflection.

use prost::Message;
use std::path::PathBuf;

const PROTOS: &[&str] = &["works/client/v1/client.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let files = protox::compile(PROTOS, [&root])?;
    std::fs::write(out_dir.join("works_descriptor.bin"), files.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(files)?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={}", root.join(proto).display());
    }
    Ok(())
}
