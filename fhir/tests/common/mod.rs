//! What the integration tests share: where `../shared/` and `target/` are,
//! and the rule for data that may be absent (run when present; otherwise
//! say loudly that the test was skipped, and fail in CI, where it must be
//! present).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Whether this is CI (`CI=true`), where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips the test loudly, or fails it in CI.
pub fn skip(test: &str, why: &str) {
    assert!(!in_ci(), "{test}: {why} (CI=true: this test may not be skipped)");
    eprintln!("\n*** SKIPPED {test}: {why} ***\n");
}

/// `../shared/` next to the repository, if present.
pub fn shared() -> Option<PathBuf> {
    let p = workspace().join("../shared");
    p.join("fhir-samples").is_dir().then_some(p)
}

/// The Synthea sample files, sorted by name.
pub fn synthea_files(shared: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(shared.join("fhir-samples/synthea"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    v
}

/// The `target/` directory this test runs from.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test>
    exe.parent().and_then(Path::parent).and_then(Path::parent).unwrap().to_path_buf()
}

/// Whether `python3` runs.
pub fn python3() -> bool {
    Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success())
}
