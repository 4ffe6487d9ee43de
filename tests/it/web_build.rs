//! The committed web app (`web/dist/`, embedded in the node) and the committed
//! TypeScript client (`web/src/gen/`) match their sources, checked without npm.
//!
//! `npm run build` writes `web/dist/SOURCES.sha256`: one line per input and per
//! output, `<sha256>  <path from the repository root>`, sorted by path, each
//! content hashed with CRLF turned into LF. This test recomputes the same
//! lines; any edit to the app, the lock file, the build config or the client
//! protos without a rebuild shows up here, and so does a hand edit of `dist/`.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Keep in step with `inputs` and `outputs` in `web/scripts/sources-hash.mjs`.
const INPUTS: &[&str] = &[
    "web/src",
    "web/index.html",
    "web/package.json",
    "web/package-lock.json",
    "web/vite.config.ts",
    "web/tsconfig.json",
    "proto/works/client",
];
const OUTPUTS: &[&str] = &["web/dist"];
const MANIFEST: &str = "web/dist/SOURCES.sha256";

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_path_buf()
}

fn collect(root: &Path, path: &str, into: &mut Vec<String>) {
    let full = root.join(path);
    if full.is_dir() {
        let entries = std::fs::read_dir(&full).unwrap_or_else(|e| panic!("read {path}: {e}"));
        for entry in entries {
            let name = entry.expect("directory entry").file_name();
            let name = name.to_str().expect("file names in web/ are UTF-8");
            collect(root, &format!("{path}/{name}"), into);
        }
    } else {
        into.push(path.to_string());
    }
}

fn hash_normalised(bytes: &[u8]) -> String {
    let mut hasher = Sha256::new();
    let mut rest = bytes;
    while let Some(at) = rest.windows(2).position(|pair| pair == b"\r\n") {
        hasher.update(&rest[..at]);
        hasher.update(b"\n");
        rest = &rest[at + 2..];
    }
    hasher.update(rest);
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn listing(root: &Path) -> String {
    let mut paths = Vec::new();
    for path in INPUTS.iter().chain(OUTPUTS) {
        collect(root, path, &mut paths);
    }
    paths.retain(|path| path != MANIFEST);
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let bytes =
                std::fs::read(root.join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"));
            format!("{}  {path}\n", hash_normalised(&bytes))
        })
        .collect()
}

/// The lines of `expected` missing from `actual`, for a message that names
/// the files to look at.
fn differing(expected: &str, actual: &str) -> Vec<String> {
    expected
        .lines()
        .filter(|line| !actual.lines().any(|other| other == *line))
        .map(|line| {
            line.split_once("  ")
                .map_or(line, |(_, path)| path)
                .to_string()
        })
        .collect()
}

#[test]
fn committed_web_build_matches_its_sources() {
    let root = repository_root();
    let committed = std::fs::read_to_string(root.join(MANIFEST))
        .unwrap_or_else(|e| panic!("{MANIFEST}: {e}: run `npm run build` in web/"))
        .replace("\r\n", "\n");
    let actual = listing(&root);
    if committed != actual {
        let mut changed = differing(&actual, &committed);
        changed.extend(differing(&committed, &actual));
        changed.sort();
        changed.dedup();
        panic!(
            "web/dist does not match its sources (changed: {}): run `npm run build` in web/",
            changed.join(", ")
        );
    }
    assert!(
        root.join("web/dist/index.html").is_file(),
        "web/dist/index.html is missing: run `npm run build` in web/"
    );
}

#[test]
fn hash_ignores_platform_line_endings() {
    assert_eq!(hash_normalised(b"a\r\nb\r\n"), hash_normalised(b"a\nb\n"));
    assert_ne!(hash_normalised(b"a\rb"), hash_normalised(b"a\nb"));
    assert_eq!(
        hash_normalised(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}
