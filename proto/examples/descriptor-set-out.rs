//! Writes the client API's encoded `FileDescriptorSet` to the path given, for
//! code generators that take a descriptor set instead of running `protoc`
//! (the web app's `npm run gen` feeds it to protoc-gen-es).
//!
//! `cargo run -p works-proto --example descriptor-set-out -- client.binpb`

fn main() -> std::io::Result<()> {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: descriptor-set-out PATH");
        std::process::exit(2);
    };
    std::fs::write(path, works_proto::CLIENT_DESCRIPTOR_SET)
}
