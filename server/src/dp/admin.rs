//! Operator commands of the DP service, run against the database with the
//! server stopped (sled admits one process), like enrollment:
//! `schema add`, `schema list` and `budget set`. `init` installs the default
//! `health-basics` schema. Every change is appended to the audit log in the
//! same transaction, so auditors see which schemas exist and which budget
//! each analyst was given.
//!
//! # Threat model
//!
//! The operator is trusted to choose schemas and budgets, not to hide them:
//! a schema is logged with the SHA-256 of the exact JSON clients download,
//! and every budget change with its ε and δ. A schema never changes once
//! installed (summaries and ledgers refer to it by name); a budget change
//! keeps what was spent and so can never refund an analyst.

use std::path::Path;

use medrelay_crypto::PrincipalId;
use medrelay_dp::budget::zcdp_to_epsilon;
use medrelay_dp::{Budget, Delta, Epsilon, Ledger, Schema, MAX_SCHEMA_BYTES};
use medrelay_policy::LogEvent;
use medrelay_wire::dp::MAX_SCHEMAS_LISTED;
use medrelay_wire::Role;
use sha2::{Digest, Sha256};

use crate::log::events;
use crate::serve::{load_log_key, ServeError};
use crate::store::{Store, StoredSchema};
use crate::Clock;

fn arg(e: impl std::fmt::Display) -> ServeError {
    ServeError::Argument(e.to_string())
}

fn open(data: &Path) -> Result<Box<dyn crate::serve::Backend>, ServeError> {
    load_log_key(data)?;
    crate::serve::open_offline(data)
}

/// Validates and installs a schema in an open store, logging it.
pub fn install_schema(store: &dyn Store, schema: &Schema, clock: &Clock) -> Result<StoredSchema, ServeError> {
    let json = serde_json::to_vec(schema).map_err(arg)?;
    if json.len() > MAX_SCHEMA_BYTES {
        return Err(arg(format!("schema: canonical form exceeds {MAX_SCHEMA_BYTES} bytes")));
    }
    let sha256: [u8; 32] = Sha256::digest(&json).into();
    let event = events::append(&LogEvent::SchemaAdded {
        at: clock.now(),
        schema: schema.name().to_owned(),
        schema_sha256: sha256,
    })
    .map_err(arg)?;
    let mut stored = StoredSchema { name: schema.name().to_owned(), json, sha256, log_index: 0 };
    stored.log_index = store.put_schema(&stored, &event)?;
    Ok(stored)
}

/// Installs the shipped `health-basics` schema (called by `init`).
pub fn install_default_schema(store: &dyn Store, clock: &Clock) -> Result<StoredSchema, ServeError> {
    install_schema(store, &Schema::health_basics(), clock)
}

/// `schema add`: parses and validates a schema document and installs it in
/// an open store. Invalid documents (unknown keys, inverted bounds, bad
/// names…) and taken names are refused and change nothing.
pub fn add_schema_in(store: &dyn Store, bytes: &[u8], clock: &Clock) -> Result<StoredSchema, ServeError> {
    let schema = Schema::from_json(bytes).map_err(arg)?;
    install_schema(store, &schema, clock)
}

/// `medrelay-server schema add --data DIR FILE` (server stopped).
pub fn add_schema(data: &Path, bytes: &[u8]) -> Result<StoredSchema, ServeError> {
    add_schema_in(&*open(data)?, bytes, &Clock::System)
}

/// `medrelay-server schema list --data DIR` (server stopped).
pub fn list_schemas(data: &Path) -> Result<Vec<StoredSchema>, ServeError> {
    Ok(open(data)?.list_schemas(MAX_SCHEMAS_LISTED)?)
}

/// The budget for `--epsilon X` or `--rho Y` (exactly one) at δ. A ρ total
/// is stored as the ε OpenDP's zCDP → (ε, δ) conversion gives for ρ at δ, so
/// an analyst who asks only ρ-queries can spend exactly ρ.
pub fn budget_from(epsilon: Option<f64>, rho: Option<f64>, delta: f64) -> Result<Budget, ServeError> {
    let delta = Delta::new(delta).map_err(arg)?;
    let epsilon = match (epsilon, rho) {
        (Some(e), None) => Epsilon::new(e).map_err(arg)?,
        (None, Some(r)) => {
            let r = medrelay_dp::Rho::new(r).map_err(arg)?;
            Epsilon::new(zcdp_to_epsilon(r.get(), delta).map_err(arg)?).map_err(arg)?
        }
        _ => return Err(arg("give exactly one of --epsilon and --rho")),
    };
    Ok(Budget { epsilon, delta })
}

/// `budget set` in an open store: the analyst must be a registered analyst
/// and the schema installed; spending so far is kept.
pub fn set_budget_in(
    store: &dyn Store,
    analyst: &PrincipalId,
    schema: &str,
    budget: Budget,
    clock: &Clock,
) -> Result<Ledger, ServeError> {
    match store.get_principal(analyst)? {
        Some(p) if p.role == Role::Analyst => {}
        Some(p) => return Err(arg(format!("principal {analyst} is a {}, not an analyst", p.role))),
        None => return Err(arg(format!("no principal {analyst} is registered"))),
    }
    if store.get_schema(schema)?.is_none() {
        return Err(arg(format!("no schema named {schema:?} is installed")));
    }
    let event = events::append(&LogEvent::BudgetSet {
        at: clock.now(),
        analyst: *analyst,
        schema: schema.to_owned(),
        epsilon: budget.epsilon.get(),
        delta: budget.delta.get(),
    })
    .map_err(arg)?;
    Ok(store.set_budget(analyst, schema, budget, &event)?.0)
}

/// `medrelay-server budget set --data DIR --analyst ID --schema NAME
/// (--epsilon X | --rho Y) [--delta D]` (server stopped).
pub fn set_budget(
    data: &Path,
    analyst: &PrincipalId,
    schema: &str,
    budget: Budget,
) -> Result<Ledger, ServeError> {
    set_budget_in(&*open(data)?, analyst, schema, budget, &Clock::System)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::serve::db_dir;
    use crate::store::SledStore;

    #[test]
    fn budgets_need_exactly_one_of_epsilon_and_rho() {
        let b = budget_from(Some(2.0), None, 1e-6).unwrap();
        assert_eq!((b.epsilon.get(), b.delta.get()), (2.0, 1e-6));
        let r = budget_from(None, Some(0.5), 1e-6).unwrap();
        assert_eq!(r.epsilon.get(), zcdp_to_epsilon(0.5, Delta::new(1e-6).unwrap()).unwrap());
        assert!(r.epsilon.get() > 0.5);
        for bad in [
            budget_from(None, None, 1e-6),
            budget_from(Some(1.0), Some(1.0), 1e-6),
            budget_from(Some(-1.0), None, 1e-6),
            budget_from(Some(f64::NAN), None, 1e-6),
            budget_from(Some(1.0), None, 0.5),
            budget_from(None, Some(0.0), 1e-6),
        ] {
            assert!(matches!(bad, Err(ServeError::Argument(_))), "{bad:?}");
        }
    }

    #[test]
    fn schema_add_validates_and_refuses_duplicates_without_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let clock = Clock::manual(5);
        let stored = install_default_schema(&store, &clock).unwrap();
        assert_eq!((stored.name.as_str(), stored.log_index), ("health-basics", 0));
        assert_eq!(stored.sha256, <[u8; 32]>::from(Sha256::digest(&stored.json)));
        // The stored JSON is a valid schema equal to the shipped one.
        assert_eq!(Schema::from_json(&stored.json).unwrap(), Schema::health_basics());
        let dup = add_schema_in(&store, medrelay_dp::HEALTH_BASICS_JSON.as_bytes(), &clock).unwrap_err();
        assert!(matches!(dup, ServeError::Store(crate::store::StoreError::AlreadyExists("schema"))));
        let inverted = br#"{"name":"x","fields":[{"name":"a","type":"float","min":5,"max":1,
            "derive":{"from":"latest_observation","codes":[{"system":"s","code":"c"}]}}]}"#;
        let err = add_schema_in(&store, inverted, &clock).unwrap_err();
        assert!(err.to_string().contains("lower bound"), "{err}");
        let unknown = br#"{"name":"x","fields":[],"colour":"red"}"#;
        assert!(add_schema_in(&store, unknown, &clock).unwrap_err().to_string().contains("unknown field"));
        assert_eq!(store.log_size().unwrap(), 1);
        assert_eq!(store.list_schemas(10).unwrap().len(), 1);
        assert!(store.get_schema("x").unwrap().is_none());
    }

    /// Rewrites the stored `health-basics` schema in a stopped server's
    /// database: `edit` changes the canonical JSON; the stored hash is
    /// recomputed when `rehash` (a server lying consistently), else kept.
    fn tamper_schema(data: &Path, rehash: bool) {
        // The server stopped a moment ago in this process: sled releases
        // its file lock shortly after the last handle is dropped.
        let store = SledStore::open_waiting(&db_dir(data), std::time::Duration::from_secs(30)).unwrap();
        let db = store.raw_db();
        let key = b"dsc/health-basics";
        let mut stored = StoredSchema::decode(&db.get(key).unwrap().unwrap()).unwrap();
        let mut doc: serde_json::Value = serde_json::from_slice(&stored.json).unwrap();
        // Widen what the summary derives: count any F-code (mental health)
        // as "asthma".
        doc["fields"][6]["derive"]["codes"][0] =
            serde_json::json!({ "system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F", "prefix": true });
        let schema = Schema::from_json(&serde_json::to_vec(&doc).unwrap()).unwrap();
        stored.json = serde_json::to_vec(&schema).unwrap();
        if rehash {
            stored.sha256 = Sha256::digest(&stored.json).into();
        }
        db.insert(key, stored.encode()).unwrap();
        db.flush().unwrap();
    }

    #[test]
    fn a_patient_client_refuses_a_schema_the_log_does_not_record() {
        use medrelay_client::{ClientError, Passphrase, Patient, ServerOptions};
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("server");
        crate::init(&data).unwrap();
        let bundle = dir.path().join("alpha.json");
        std::fs::write(&bundle, include_str!("../../../tests/data/fhir-patient-alpha.json")).unwrap();
        let pass = Passphrase::new("correct horse battery staple").unwrap();
        let profile = dir.path().join("alpha");
        let server = crate::LocalServer::start(&data, "test/log", 1).unwrap();
        let patient = Patient::init(&profile, &ServerOptions::new(server.url()), "Alpha", &pass).unwrap();
        let request = medrelay_client::ImportRequest { paths: vec![bundle], ..Default::default() };
        patient.import(&request, &mut |_| ()).unwrap();
        // The honest schema verifies against its `schema added` entry.
        let honest = patient.summary("health-basics").unwrap();
        assert_eq!(honest.doc.values["asthma"], Some(serde_json::Value::Bool(false)));
        server.stop().unwrap();

        for (rehash, expected) in [
            (false, "does not hash to its stated SHA-256"),
            (true, "log entry 0 does not record this schema"),
        ] {
            tamper_schema(&data, rehash);
            let server = crate::LocalServer::start(&data, "test/log", 1).unwrap();
            let connect = medrelay_client::Connect { server: Some(server.url()), ca_cert: None };
            let patient = Patient::open(&profile, &connect, &pass).unwrap();
            match patient.summary("health-basics") {
                Err(ClientError::Verification(m)) => assert!(m.contains(expected), "{m}"),
                other => panic!("a tampered schema was used: {other:?}"),
            }
            server.stop().unwrap();
        }
    }
}
