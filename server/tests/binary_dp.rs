//! The real `medrelay-server` binary's DP operator commands: `init` installs
//! `health-basics`, `schema add` validates and refuses bad or duplicate
//! schemas, `schema list` shows them, `budget set` refuses unknown analysts
//! and schemas with a clear message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_medrelay-server");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("RUST_LOG", "warn").output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn schema_and_budget_commands() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let out = run(&["schema", "list", "--data", d]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not initialized"), "{}", stderr(&out));

    assert!(run(&["init", "--data", d]).status.success());
    let out = run(&["schema", "list", "--data", d]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("health-basics\t"), "{}", stdout(&out));

    let inverted = dir.path().join("inverted.json");
    std::fs::write(
        &inverted,
        r#"{"name":"vitals","fields":[{"name":"hr","type":"float","min":200,"max":30,
            "derive":{"from":"latest_observation","codes":[{"system":"http://loinc.org","code":"8867-4"}]}}]}"#,
    )
    .unwrap();
    let out = run(&["schema", "add", "--data", d, inverted.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("lower bound 200 is not below upper bound 30"), "{}", stderr(&out));

    let good = dir.path().join("vitals.json");
    std::fs::write(
        &good,
        r#"{"name":"vitals","fields":[{"name":"hr","type":"float","min":30,"max":200,
            "derive":{"from":"latest_observation","codes":[{"system":"http://loinc.org","code":"8867-4"}]}}]}"#,
    )
    .unwrap();
    let out = run(&["schema", "add", "--data", d, good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("installed schema vitals"), "{}", stdout(&out));
    assert!(stdout(&out).contains("log index 1"), "{}", stdout(&out));
    let out = run(&["schema", "add", "--data", d, good.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    let out = run(&["schema", "list", "--data", d]);
    assert_eq!(stdout(&out).lines().count(), 2);

    let nobody = "ab".repeat(32);
    let out =
        run(&["budget", "set", "--data", d, "--analyst", &nobody, "--schema", "vitals", "--epsilon", "2"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no principal"), "{}", stderr(&out));
    let out = run(&["budget", "set", "--data", d, "--analyst", &nobody, "--schema", "vitals"]);
    assert!(!out.status.success(), "either --epsilon or --rho is required");
    let out = run(&[
        "budget",
        "set",
        "--data",
        d,
        "--analyst",
        &nobody,
        "--schema",
        "vitals",
        "--epsilon",
        "1",
        "--rho",
        "1",
    ]);
    assert!(!out.status.success());
}
