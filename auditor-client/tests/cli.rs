//! The `medrelay-auditor` command line without a server: the help text names
//! every command, usage errors exit 2, and a missing profile is one clear
//! line (exit 1) that creates nothing. Building these tests also builds
//! the binary that the end-to-end tests in `tests/` drive.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medrelay-auditor"))
        .args(args)
        .env_remove("MEDRELAY_SERVER")
        .env_remove("MEDRELAY_PROFILE")
        .env_remove("MEDRELAY_ENROLLMENT_TOKEN")
        .env("MEDRELAY_PASSPHRASE", "correct horse battery staple")
        .output()
        .unwrap()
}

#[test]
fn help_names_every_command() {
    let out = run(&["--help"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    for command in ["init", "whoami", "verify", "audit", "grants", "accesses"] {
        assert!(text.lines().any(|l| l.trim_start().starts_with(command)), "{command} missing from:\n{text}");
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(run(&["init"]).status.code(), Some(2), "a command without its required arguments");
    assert_eq!(run(&["--no-such-flag", "whoami"]).status.code(), Some(2));
}

#[test]
fn a_missing_profile_is_one_clear_line_and_creates_nothing() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("medrelay-auditor-cli-no-profile");
    let _ = std::fs::remove_dir_all(&dir);
    let out = run(&["--profile", dir.to_str().unwrap(), "verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: profile ") && err.contains("run `init` first"), "{err}");
    assert!(!dir.exists(), "a failed command created the profile directory");
}
