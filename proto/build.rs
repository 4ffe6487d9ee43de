//! Compiles the .proto files with protox (pure Rust), so the build needs no
//! system `protoc`. Each API's encoded descriptor set is kept for server
//! reflection, separately, so each port reflects only its own services.

use prost::Message;
use std::path::PathBuf;

const APIS: &[(&str, &str)] = &[
    ("client", "works/client/v1/client.proto"),
    ("federation", "works/federation/v1/federation.proto"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    for (name, proto) in APIS {
        let files = protox::compile([proto], [&root])?;
        std::fs::write(
            out_dir.join(format!("{name}_descriptor.bin")),
            files.encode_to_vec(),
        )?;
        tonic_prost_build::configure()
            .build_server(true)
            .build_client(true)
            .compile_fds(files)?;
        println!("cargo:rerun-if-changed={}", root.join(proto).display());
    }
    Ok(())
}
