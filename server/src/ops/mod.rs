//! Operations: what the operator runs, tunes and watches beside the
//! services.
//!
//! - [`admin`]: the admin socket (live enrollment and suspension while the
//!   server runs; a Unix-domain socket in the data directory, never on the
//!   network);
//! - `maintenance`: the periodic sweep of expired sessions, challenges,
//!   enrollment tokens and cached keys ([`sweep_expired`](crate::sweep_expired));
//! - `metrics`: Prometheus metrics and `/healthz` ([`Metrics`](crate::Metrics));
//! - [`quota`]: rate limits per source, per principal and overall;
//! - `hygiene`: the body-read deadline and JSON `405`s;
//! - [`scan`]: a data directory scanned for plaintext and secret keys;
//! - [`migrate`]: copying a sled store into PostgreSQL, checked by the log's
//!   root.

pub mod admin;
pub(crate) mod hygiene;
pub(crate) mod maintenance;
pub(crate) mod metrics;
pub mod migrate;
pub mod quota;
pub mod scan;
