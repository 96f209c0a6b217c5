//! The contract every medrelay command-line client keeps without a
//! server: the help text names every command, usage errors exit 2, and a
//! missing profile is one clear line (exit 1) that creates nothing.
//!
//! Each client package runs it from its own `tests/cli.rs` (including this
//! file by path), because only a package's own tests make cargo build its
//! binary, which the end-to-end tests in `tests/` then drive.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs `bin` with `args` and a passphrase, without server, profile or
/// token from the environment.
pub fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env_remove("MEDRELAY_SERVER")
        .env_remove("MEDRELAY_PROFILE")
        .env_remove("MEDRELAY_ENROLLMENT_TOKEN")
        .env("MEDRELAY_PASSPHRASE", "correct horse battery staple")
        .output()
        .unwrap()
}

/// `--help` succeeds and lists each of `commands`.
pub fn help_names_every_command(bin: &str, commands: &[&str]) {
    let out = run(bin, &["--help"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    for command in commands {
        assert!(text.lines().any(|l| l.trim_start().starts_with(command)), "{command} missing from:\n{text}");
    }
}

/// An unknown command, `bare_command` without its required arguments and
/// an unknown flag each exit 2.
pub fn usage_errors_exit_2(bin: &str, bare_command: &str) {
    assert_eq!(run(bin, &["frobnicate"]).status.code(), Some(2));
    assert_eq!(run(bin, &[bare_command]).status.code(), Some(2), "a command without its required arguments");
    assert_eq!(run(bin, &["--no-such-flag", "whoami"]).status.code(), Some(2));
}

/// `command` on a profile directory that does not exist fails with one
/// `error: profile …` line and does not create the directory.
pub fn a_missing_profile_is_one_clear_line_and_creates_nothing(bin: &str, command: &str, tmp: &str) {
    let name = PathBuf::from(bin).file_name().unwrap().to_string_lossy().into_owned();
    let dir = PathBuf::from(tmp).join(format!("{name}-cli-no-profile"));
    let _ = std::fs::remove_dir_all(&dir);
    let out = run(bin, &["--profile", dir.to_str().unwrap(), command]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: profile ") && err.contains("run `init` first"), "{err}");
    assert!(!dir.exists(), "a failed command created the profile directory");
}
