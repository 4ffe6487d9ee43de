//! Python packages the tests use as off-the-shelf clients (LINE's SDK, the
//! Prometheus parser), each in a virtual environment the tests make
//! themselves under `<workspace>/target/`, from PyPI on first use.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The interpreter of `<workspace>/target/<name>`, a virtual environment
/// with `distribution==version`, made when missing or of another version
/// (with `python3 -m venv`, or the interpreter in `WORKS_TEST_BASE_PYTHON`,
/// and pip). Other processes making it at the same time wait on a lock
/// file; callers keep the answer in a `OnceLock` of their own.
pub fn venv(name: &str, distribution: &str, version: &str) -> Result<PathBuf, String> {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::fs::create_dir_all(&target)
        .map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    let lock_path = target.join(format!("{name}.lock"));
    let lock = File::create(&lock_path)
        .map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    let made = make(&target.join(name), distribution, version);
    let _ = lock.unlock();
    made
}

fn make(venv: &Path, distribution: &str, version: &str) -> Result<PathBuf, String> {
    let python = venv.join("bin/python");
    if installed(&python, distribution).as_deref() == Some(version) {
        return Ok(python);
    }
    if !python.exists() {
        let base = std::env::var_os("WORKS_TEST_BASE_PYTHON").unwrap_or("python3".into());
        let out = run(Command::new(&base).arg("-m").arg("venv").arg(venv))?;
        if !out.status.success() {
            return Err(format!(
                "`{} -m venv {}` failed: {}",
                Path::new(&base).display(),
                venv.display(),
                text_of(&out)
            ));
        }
    }
    let requirement = format!("{distribution}=={version}");
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
            text_of(&out)
        ));
    }
    match installed(&python, distribution) {
        Some(v) if v == version => Ok(python),
        other => Err(format!(
            "after `pip install {requirement}`, {} reports {distribution} {other:?}",
            python.display()
        )),
    }
}

/// The installed version of `distribution`, if this interpreter has it.
fn installed(python: &Path, distribution: &str) -> Option<String> {
    let out = Command::new(python)
        .args([
            "-c",
            &format!("import importlib.metadata as m; print(m.version({distribution:?}))"),
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn run(command: &mut Command) -> Result<Output, String> {
    let shown = format!("{command:?}");
    command
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))
}

pub fn text_of(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}
