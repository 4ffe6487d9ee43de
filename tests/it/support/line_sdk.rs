//! LINE's official Python SDK for the contract tests: a virtual environment
//! the tests make themselves, and the checker that validates recorded push
//! bodies with the SDK's own request model (`py/line_sdk_contract.py`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::python::{run, text_of};

use serde_json::Value;

/// The SDK release the contract is checked against.
pub const SDK_VERSION: &str = "3.27.0";

/// `tests/py/line_sdk_contract.py`.
pub fn contract_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("py/line_sdk_contract.py")
}

/// The interpreter of `<workspace>/target/line-sdk-py`, a virtual
/// environment with `line-bot-sdk` [`SDK_VERSION`], made (with `python3 -m
/// venv` and pip, from PyPI) when missing or of another version. Tests in
/// this process share one attempt; other processes wait on a lock file.
pub fn sdk_python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(|| super::python::venv("line-sdk-py", "line-bot-sdk", SDK_VERSION)) {
        Ok(python) => python.clone(),
        Err(e) => panic!("LINE's Python SDK is not available: {e}"),
    }
}

/// Runs the contract script in `mode` with `args`; its stdout as JSON, or
/// what went wrong.
pub fn run_contract(mode: &str, args: &[&std::ffi::OsStr]) -> Result<Value, String> {
    let python = sdk_python();
    let out = run(Command::new(&python)
        .arg(contract_script())
        .arg(mode)
        .args(args))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let parsed: Option<Value> = serde_json::from_str(&stdout).ok();
    match (out.status.success(), parsed) {
        (true, Some(value)) => Ok(value),
        (_, parsed) => Err(format!(
            "line_sdk_contract.py {mode} failed ({}): {}\n{}",
            out.status,
            parsed
                .as_ref()
                .map(|v| v["problems"].to_string())
                .unwrap_or_default(),
            text_of(&out)
        )),
    }
}

/// Validates raw push request bodies with the SDK's `PushMessageRequest`
/// model: each must parse, and its `to_dict()` must keep every field sent
/// with the same value (nothing unknown, nothing mistyped).
pub fn check_push_bodies_with_sdk(bodies: &[Value]) -> Result<Value, String> {
    let mut file = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    serde_json::to_writer(&mut file, bodies).map_err(|e| e.to_string())?;
    run_contract("pushes", &[file.path().as_os_str()])
}

/// Panics unless every recorded push body is one LINE's SDK models exactly
/// (see [`check_push_bodies_with_sdk`]).
pub fn check_pushes_with_sdk(pushes: &[works_line_standin::Push]) {
    let bodies: Vec<Value> = pushes.iter().map(|p| p.body.clone()).collect();
    if let Err(e) = check_push_bodies_with_sdk(&bodies) {
        panic!("the pushes are not what LINE's SDK models: {e}");
    }
}
