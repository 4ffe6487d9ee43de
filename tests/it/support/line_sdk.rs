//! LINE's official Python SDK for the contract tests: a virtual environment
//! the tests make themselves, and the checker that validates recorded push
//! bodies with the SDK's own request model (`py/line_sdk_contract.py`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

/// The SDK release the contract is checked against.
pub const SDK_VERSION: &str = "3.27.0";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `tests/py/line_sdk_contract.py`.
pub fn contract_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("py/line_sdk_contract.py")
}

fn run(command: &mut Command) -> Result<Output, String> {
    let shown = format!("{command:?}");
    command
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))
}

fn stderr_of(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// The installed SDK version, if this interpreter has `linebot.v3`.
fn installed_version(python: &Path) -> Option<String> {
    let out = Command::new(python)
        .args([
            "-c",
            "import linebot, linebot.v3; print(linebot.__version__)",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn make_venv(venv: &Path) -> Result<PathBuf, String> {
    let python = venv.join("bin/python");
    if installed_version(&python).as_deref() == Some(SDK_VERSION) {
        return Ok(python);
    }
    if !python.exists() {
        let base = std::env::var_os("WORKS_LINE_SDK_BASE_PYTHON").unwrap_or("python3".into());
        let out = run(Command::new(&base).arg("-m").arg("venv").arg(venv))?;
        if !out.status.success() {
            return Err(format!(
                "`{} -m venv {}` failed: {}",
                Path::new(&base).display(),
                venv.display(),
                stderr_of(&out)
            ));
        }
    }
    let requirement = format!("line-bot-sdk=={SDK_VERSION}");
    let out = run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--quiet",
        &requirement,
    ]))?;
    if !out.status.success() {
        return Err(format!(
            "`{} -m pip install {requirement}` failed (it needs PyPI once): {}",
            python.display(),
            stderr_of(&out)
        ));
    }
    match installed_version(&python) {
        Some(v) if v == SDK_VERSION => Ok(python),
        other => Err(format!(
            "after `pip install {requirement}`, {} reports linebot version {other:?}",
            python.display()
        )),
    }
}

/// The interpreter of `<workspace>/target/line-sdk-py`, a virtual
/// environment with `line-bot-sdk` [`SDK_VERSION`], made (with `python3 -m
/// venv` and pip, from PyPI) when missing or of another version. Tests in
/// this process share one attempt; other processes wait on a lock file.
pub fn sdk_python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    static MAKING: Mutex<()> = Mutex::new(());
    let _one = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    let made = PYTHON.get_or_init(|| {
        let target = workspace().join("target");
        std::fs::create_dir_all(&target)
            .map_err(|e| format!("cannot create {}: {e}", target.display()))?;
        let lock_path = target.join("line-sdk-py.lock");
        let lock = File::create(&lock_path)
            .map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
        lock.lock()
            .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
        let made = make_venv(&target.join("line-sdk-py"));
        let _ = lock.unlock();
        made
    });
    match made {
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
            stderr_of(&out)
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
