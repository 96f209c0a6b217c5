//! Operations: the admin socket, sweeps, metrics, scans, migration, quotas
//! and HTTP hygiene.

pub mod admin;
pub(crate) mod hygiene;
pub(crate) mod maintenance;
pub(crate) mod metrics;
pub mod migrate;
pub mod quota;
pub mod scan;
