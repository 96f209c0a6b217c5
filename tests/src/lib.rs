//! medrelay-tests: end-to-end tests. They live in `tests/` and drive the
//! real `medrelay-server`, `medrelay-patient`, `medrelay-doctor` and
//! `medrelay-auditor` binaries against a server on a loopback port with a
//! temporary data directory.
//!
//! The binaries must be built first; `cargo test --workspace` does that.
//! To run only these tests:
//!
//! ```sh
//! cargo build --bins -p medrelay-server -p medrelay-patient -p medrelay-doctor -p medrelay-auditor
//! cargo test -p medrelay-tests
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
