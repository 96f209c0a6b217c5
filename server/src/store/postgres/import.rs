//! Writing a [`Row`] dump into an empty database (for `medrelay-server
//! migrate`). Each call is one transaction; log entries are appended
//! through the same path as live appends, so the Merkle tree is rebuilt
//! from the copied entries.

use postgres::Transaction;

use super::{append_in, big, lock_head, PgStore, R};
use crate::store::dump::Row;
use crate::store::study::StoredStudy;
use crate::store::{
    Challenge, Enrollment, LogAppend, RecordMeta, Session, StoreError, StoredGrant, StoredPrincipal,
    StoredSchema,
};

impl PgStore {
    /// Whether the database holds nothing yet (no log entry, principal,
    /// token, schema or study): `migrate` copies only into such a one.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        self.run(|c| {
            let row = c.query_one(
                "SELECT (SELECT size FROM log_head WHERE id = 1) = 0 \
                 AND NOT EXISTS (SELECT 1 FROM principals) AND NOT EXISTS (SELECT 1 FROM enrollments) \
                 AND NOT EXISTS (SELECT 1 FROM sessions) AND NOT EXISTS (SELECT 1 FROM dp_schemas) \
                 AND NOT EXISTS (SELECT 1 FROM studies)",
                &[],
            )?;
            Ok(row.try_get(0)?)
        })
    }

    /// Writes `rows` in one transaction. Log entries must continue the
    /// log exactly (entry `i` when the log holds `i`).
    pub fn import(&self, rows: &[Row]) -> Result<(), StoreError> {
        self.tx(|tx| {
            let mut log: Vec<(u64, &LogAppend)> = Vec::new();
            for row in rows {
                if let Row::LogEntry(i, e) = row {
                    log.push((*i, e));
                } else {
                    import_row(tx, row)?;
                }
            }
            if !log.is_empty() {
                let size = lock_head(tx)?;
                if log.iter().enumerate().any(|(k, (i, _))| *i != size + k as u64) {
                    return Err(StoreError::Backend("log entries out of order in the copy".into()).into());
                }
                let events: Vec<&LogAppend> = log.iter().map(|(_, e)| *e).collect();
                append_in(tx, size, &events)?;
            }
            Ok(())
        })
    }
}

fn import_row(tx: &mut Transaction<'_>, row: &Row) -> R<()> {
    match row {
        Row::Challenge(h, v) => {
            let c = Challenge::decode(v)?;
            tx.execute(
                "INSERT INTO challenges (nonce_hash, expires_at, value) VALUES ($1, $2, $3)",
                &[&h.as_slice(), &super::time(c.expires_at), v],
            )?;
        }
        Row::Session(h, v) => {
            let s = Session::decode(v)?;
            tx.execute(
                "INSERT INTO sessions (token_hash, principal, expires_at, value) VALUES ($1, $2, $3, $4)",
                &[&h.as_slice(), &s.principal.as_bytes().as_slice(), &super::time(s.expires_at), v],
            )?;
        }
        Row::Enrollment(h, v) => {
            let e = Enrollment::decode(v)?;
            tx.execute(
                "INSERT INTO enrollments (token_hash, expires_at, value) VALUES ($1, $2, $3)",
                &[&h.as_slice(), &super::time(e.expires_at), v],
            )?;
        }
        Row::Principal(v) => {
            let p = StoredPrincipal::decode(v)?;
            tx.execute(
                "INSERT INTO principals (id, value) VALUES ($1, $2)",
                &[&p.id().as_bytes().as_slice(), v],
            )?;
        }
        Row::Suspension(id, idx) => {
            tx.execute(
                "INSERT INTO suspensions (principal, log_index) VALUES ($1, $2)",
                &[&id.as_bytes().as_slice(), &big(*idx)?],
            )?;
        }
        Row::Capsule(id, v) => {
            tx.execute("INSERT INTO capsules (id, value) VALUES ($1, $2)", &[&id.as_bytes().as_slice(), v])?;
        }
        Row::Delivered(grant, capsule, v) => {
            tx.execute(
                "INSERT INTO delivered (grant_id, capsule, value) VALUES ($1, $2, $3)",
                &[&grant.as_bytes().as_slice(), &capsule.as_bytes().as_slice(), v],
            )?;
        }
        Row::Record(meta, envelope) => {
            let m = RecordMeta::decode(meta)?;
            tx.execute(
                "INSERT INTO records (id, owner, meta, envelope) VALUES ($1, $2, $3, $4)",
                &[&m.record_id().as_bytes().as_slice(), &m.owner().as_bytes().as_slice(), meta, envelope],
            )?;
        }
        Row::Grant(v) => {
            let g = StoredGrant::decode(v)?;
            tx.execute(
                "INSERT INTO grants (id, patient, doctor, value) VALUES ($1, $2, $3, $4)",
                &[
                    &g.grant_id.as_bytes().as_slice(),
                    &g.patient.as_bytes().as_slice(),
                    &g.doctor.as_bytes().as_slice(),
                    v,
                ],
            )?;
        }
        Row::Rekeys(id, v) => {
            tx.execute(
                "INSERT INTO rekeys (grant_id, value) VALUES ($1, $2)",
                &[&id.as_bytes().as_slice(), v],
            )?;
        }
        Row::LogEntry(..) => return Err(StoreError::Backend("log entries go through append".into()).into()),
        Row::Schema(v) => {
            let s = StoredSchema::decode(v)?;
            tx.execute("INSERT INTO dp_schemas (name, value) VALUES ($1, $2)", &[&s.name, v])?;
        }
        Row::Summary(schema, patient, v) => {
            tx.execute(
                "INSERT INTO dp_summaries (schema_name, patient, value) VALUES ($1, $2, $3)",
                &[schema, &patient.as_bytes().as_slice(), v],
            )?;
        }
        Row::Ledger(analyst, schema, v) => {
            tx.execute(
                "INSERT INTO dp_ledgers (analyst, schema_name, value) VALUES ($1, $2, $3)",
                &[&analyst.as_bytes().as_slice(), schema, v],
            )?;
        }
        Row::Study(v) => {
            let s = StoredStudy::decode(v)?;
            tx.execute("INSERT INTO studies (name, value) VALUES ($1, $2)", &[&s.name, v])?;
        }
        Row::StudyPending(study, id, report) => {
            tx.execute(
                "INSERT INTO study_pending (study, id, report) VALUES ($1, $2, $3)",
                &[study, &id.as_slice(), report],
            )?;
        }
        Row::StudySeen(study, id) => {
            tx.execute("INSERT INTO study_seen (study, id) VALUES ($1, $2)", &[study, &id.as_slice()])?;
        }
        Row::StudyQuota(study, patient, used) => {
            tx.execute(
                "INSERT INTO study_quota (study, patient, used) VALUES ($1, $2, $3)",
                &[study, &patient.as_bytes().as_slice(), &big(*used)?],
            )?;
        }
        Row::StudyOpenBatch(study, batch) => {
            tx.execute(
                "INSERT INTO study_open_batch (study, batch) VALUES ($1, $2)",
                &[study, &big(*batch)?],
            )?;
        }
        Row::StudyJob(study, job, v) => {
            tx.execute(
                "INSERT INTO study_jobs (study, job_id, value) VALUES ($1, $2, $3)",
                &[study, &job.as_slice(), v],
            )?;
        }
        Row::StudyJobResponse(study, job, hash, response) => {
            tx.execute(
                "INSERT INTO study_job_responses (study, job_id, hash, response) VALUES ($1, $2, $3, $4)",
                &[study, &job.as_slice(), &hash.as_slice(), response],
            )?;
        }
        Row::StudyBatch(study, batch, v) => {
            tx.execute(
                "INSERT INTO study_batches (study, batch, value) VALUES ($1, $2, $3)",
                &[study, &big(*batch)?, v],
            )?;
        }
    }
    Ok(())
}
