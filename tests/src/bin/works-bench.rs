#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    works_tests::bench::main()
}
