#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    tenant_node::cli::main()
}
