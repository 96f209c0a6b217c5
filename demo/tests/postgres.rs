//! The narrated demo over PostgreSQL with two replicas, as
//! `medrelay-demo --database postgres://… --replicas 2` runs it: the same
//! story, each role's client sent to one replica (so the grant made through
//! A is served by B, the revocation made through A is honoured by B at
//! once, the analyst's budget is one ledger across both, and the auditor's
//! checkpoints signed by B and then A are consistent), and the final scan
//! covers the database's rows as well as both replicas' data directories.
//!
//! The database is a fresh one on the test binary's throwaway cluster
//! (`medrelay_server::store::postgres::testing`): skipped with a message if
//! PostgreSQL is not installed, failed under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use medrelay_demo::{run, DemoOptions};
use medrelay_server::store::postgres::testing::fresh_database;
use medrelay_server::{DatabaseUrl, LocalServer, Quotas};

#[test]
fn the_demo_tells_the_whole_story_on_postgresql_with_two_replicas() {
    let Some(url) = fresh_database() else { return };
    let database = DatabaseUrl::new(url);
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("demo");
    let opts = DemoOptions {
        data: Some(keep.clone()),
        cohort: 3,
        seed: 7,
        database: Some(database.clone()),
        replicas: 2,
    };
    let mut out = Vec::new();
    let outcome = run(&opts, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    common::assert_the_whole_story(&text, &outcome);
    for told in [
        "store: PostgreSQL database",
        "replica B serves the HTTP API on",
        "a copy of A's: one log, one signing key",
        "registered through replica B; Alpha, at replica A, finds that key",
        "Dr Grey sees 3 records shared by Alpha (replica B)",
        "re-encrypted by replica B",
        "revoked through replica A: committed",
        "again (replica B) → refused: revoked",
        "at once: replica B still held the grant's keys in its cache from step 4",
        "the accesses replica B served are in the one log",
        "entries (replica B): root recomputed",
        "3 through replica A, 3 through replica B",
        "ε = 0.4) (replica B)",
        "one budget across replicas",
        "the earlier checkpoint was signed by replica B, this one by replica A",
        "scanned the data directories (replica A ",
        "every row of its",
        "every bytea value as raw bytes",
    ] {
        assert!(text.contains(told), "the story does not say {told:?}:\n{text}");
    }
    assert_eq!(text.matches("re-encrypted by replica B").count(), 3, "{text}");

    // The database holds the whole log: a replica started again from the
    // kept data directory serves it.
    let kept_log_size = || {
        let a = LocalServer::start_replica(
            &keep.join("replica-a"),
            &database,
            "medrelay.demo/log",
            1,
            Quotas::default(),
            None,
        )
        .unwrap();
        let size = a.state().store().log_size().unwrap();
        a.stop().unwrap();
        size
    };
    assert_eq!(kept_log_size(), outcome.log_entries);

    // A second demo on the same database is refused (it would add a second
    // log signing key to its log), and changes nothing there.
    let again = DemoOptions { data: Some(dir.path().join("again")), ..opts };
    let err = run(&again, &mut Vec::new()).unwrap_err();
    assert!(err.message.contains("already holds a log"), "{err}");
    assert_eq!(kept_log_size(), outcome.log_entries);
}
