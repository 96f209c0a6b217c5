//! The policy service: principals, authentication, grants, suspension.

pub(crate) mod auth;
pub(crate) mod directory;
pub(crate) mod grants;
pub mod suspend;
