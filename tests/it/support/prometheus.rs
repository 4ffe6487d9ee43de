//! The Prometheus client library's own text-format parser, to read a
//! node's `/metrics` with an implementation that is not ours: a virtual
//! environment the tests make themselves under `<workspace>/target/ops-py`
//! with `prometheus-client` from PyPI, and `py/metrics_parse.py`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// The `prometheus-client` release the format is checked against.
pub const CLIENT_VERSION: &str = "0.21.1";

/// One sample as the parser read it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The samples named `name` whose labels include every pair in `labels`.
pub fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(n, v)| s.label(n) == Some(*v)))
        .collect()
}

/// The one value of `name` with `labels`, if there is exactly one sample.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    match find(samples, name, labels).as_slice() {
        [one] => Some(one.value),
        _ => None,
    }
}

/// The venv's interpreter, made once per test process.
fn python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(|| super::python::venv("ops-py", "prometheus-client", CLIENT_VERSION))
    {
        Ok(python) => python.clone(),
        Err(e) => panic!("the Prometheus client library is not available: {e}"),
    }
}

/// Parses `/metrics` text with `prometheus_client.parser`; fails the test
/// when the parser refuses it.
pub fn parse(text: &str) -> Vec<Sample> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/metrics_parse.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run metrics_parse.py");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write metrics");
    let out = child.wait_with_output().expect("metrics_parse.py output");
    assert!(
        out.status.success(),
        "the Prometheus parser refused the metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Vec<Value> = serde_json::from_slice(&out.stdout).expect("parser output");
    parsed
        .iter()
        .map(|s| Sample {
            name: s["name"].as_str().unwrap_or_default().to_string(),
            labels: s["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            value: match &s["value"] {
                Value::String(inf) if inf == "+Inf" => f64::INFINITY,
                Value::String(_) => f64::NEG_INFINITY,
                v => v.as_f64().unwrap_or(f64::NAN),
            },
        })
        .collect()
}
