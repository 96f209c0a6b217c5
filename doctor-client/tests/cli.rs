//! The `medrelay-doctor` command line without a server (the shared client
//! contract). Building these tests also builds the binary that the
//! end-to-end tests in `tests/` drive.

#[path = "../../client/tests/cli_contract/mod.rs"]
mod cli_contract;

const BIN: &str = env!("CARGO_BIN_EXE_medrelay-doctor");

#[test]
fn help_names_every_command() {
    cli_contract::help_names_every_command(
        BIN,
        &["init", "whoami", "shared", "fetch", "fetch-all", "history", "ui"],
    );
}

#[test]
fn usage_errors_exit_2() {
    cli_contract::usage_errors_exit_2(BIN, "fetch");
}

#[test]
fn a_missing_profile_is_one_clear_line_and_creates_nothing() {
    cli_contract::a_missing_profile_is_one_clear_line_and_creates_nothing(
        BIN,
        "shared",
        env!("CARGO_TARGET_TMPDIR"),
    );
}

#[test]
fn the_web_app_on_a_missing_profile_is_one_clear_line_and_creates_nothing() {
    cli_contract::a_missing_profile_is_one_clear_line_and_creates_nothing(
        BIN,
        "ui",
        env!("CARGO_TARGET_TMPDIR"),
    );
}
