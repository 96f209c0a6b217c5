//! Versioned schema migrations, applied at start.
//!
//! The migrations are plain SQL files in `migrations/`, compiled into the
//! binary. Each applied one is recorded with the SHA-256 of its text. At
//! start, under a session advisory lock (so that replicas starting together
//! do not both migrate), the server applies the ones the database lacks,
//! each in its own transaction, and refuses to start on a database that
//! records a migration this binary does not know (written by a newer
//! version) or one whose text differs from what this binary carries.

use postgres::Client;
use sha2::{Digest, Sha256};

use super::Fail;
use crate::store::StoreError;

/// The migrations this binary knows, in order: (version, name, SQL).
pub(super) const MIGRATIONS: &[(i32, &str, &str)] =
    &[(1, "initial", include_str!("migrations/0001_initial.sql"))];

/// Advisory lock key held while migrating ("medrelay" in ASCII).
const MIGRATION_LOCK: i64 = 0x6d65_6472_656c_6179;

/// The newest schema version this binary knows.
pub(super) fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Brings the database's schema to [`latest`]; returns the versions applied now.
pub(super) fn migrate(client: &mut Client) -> Result<Vec<i32>, Fail> {
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS medrelay_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             sha256     bytea NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )?;
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let out = apply(client);
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])?;
    out
}

fn apply(client: &mut Client) -> Result<Vec<i32>, Fail> {
    let rows = client.query("SELECT version, sha256 FROM medrelay_migrations ORDER BY version", &[])?;
    let mut applied = Vec::with_capacity(rows.len());
    for row in &rows {
        let version: i32 = row.try_get(0)?;
        let sha: Vec<u8> = row.try_get(1)?;
        match MIGRATIONS.iter().find(|m| m.0 == version) {
            None => {
                return Err(StoreError::Backend(format!(
                    "the database schema is at version {version}, newer than this medrelay-server \
                     knows (up to {}): run the newer binary, or restore a matching backup",
                    latest()
                ))
                .into())
            }
            Some((_, name, sql)) if Sha256::digest(sql.as_bytes()).as_slice() != sha.as_slice() => {
                return Err(StoreError::Backend(format!(
                    "database migration {version} ({name}) differs from this binary's: refusing to start"
                ))
                .into())
            }
            Some(_) => applied.push(version),
        }
    }
    let mut now = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let mut tx = client.transaction()?;
        tx.batch_execute(sql)?;
        let sha = Sha256::digest(sql.as_bytes()).to_vec();
        tx.execute(
            "INSERT INTO medrelay_migrations (version, name, sha256) VALUES ($1, $2, $3)",
            &[version, name, &sha],
        )?;
        tx.commit()?;
        tracing::info!(version, name, "database migration applied");
        now.push(*version);
    }
    Ok(now)
}
