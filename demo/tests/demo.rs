//! The narrated demo, as `medrelay-demo --data DIR` runs it (with a small
//! cohort) on the embedded sled store: every step behaves as told, the
//! story names what a newcomer should see, and the kept directory holds a
//! server that starts again with the whole log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use medrelay_demo::{run, DemoOptions};
use medrelay_server::LocalServer;

#[test]
fn the_demo_tells_the_whole_story_and_keeps_its_data_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("demo");
    let opts = DemoOptions { data: Some(keep.clone()), cohort: 3, seed: 7, ..DemoOptions::default() };
    let mut out = Vec::new();
    let outcome = run(&opts, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    common::assert_the_whole_story(&text, &outcome);
    assert_eq!(outcome.kept.as_deref(), Some(keep.as_path()));
    // One server, no replicas to speak of.
    assert!(!text.contains("replica"), "{text}");
    assert!(text.contains("(sled, embedded)"), "{text}");

    // The kept server data opens again with the whole log.
    let server = LocalServer::start(&keep.join("server"), "medrelay.demo/log", 1).unwrap();
    assert_eq!(server.state().store().log_size().unwrap(), outcome.log_entries);
    server.stop().unwrap();
    // A second run into the same directory is refused, and changes nothing.
    let before = std::fs::read_dir(&keep).unwrap().count();
    let err = run(&opts, &mut Vec::new()).unwrap_err();
    assert!(err.message.contains("is not empty"), "{err}");
    assert_eq!(std::fs::read_dir(&keep).unwrap().count(), before);
}
