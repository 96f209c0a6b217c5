//! Operator commands of private studies (server stopped, like `schema add`):
//! `study add`, `study list`, `aggregator key`, `aggregator token`.
//!
//! Both operators install the same study document. `study add` checks it
//! against the installed schema (name and SHA-256), finds this data
//! directory's HPKE key in the leader's or the helper's slot (so an
//! operator cannot install a study that names someone else's key for its
//! own role), and logs `study added` with the definition's SHA-256, the
//! hash a patient's client checks before contributing.

use std::path::Path;

use medrelay_crypto::hpke::HpkePublicKey;
use medrelay_dp::study::{AggregatorKey, AggregatorRole, StudyDefinition, StudyEncoding};
use medrelay_dp::Schema;
use medrelay_policy::{LogEvent, StudyAggregator, StudyEvent};
use medrelay_wire::study::MAX_STUDIES_LISTED;
use sha2::{Digest, Sha256};

use crate::log::events;
use crate::serve::{load_log_key, ServeError};
use crate::store::{Store, StoredStudy, StudyStore};
use crate::study::keys::load_aggregator_key;
use crate::Clock;

fn arg(e: impl std::fmt::Display) -> ServeError {
    ServeError::Argument(e.to_string())
}

/// `study add` in an open store (`schemas` and `studies`: the same
/// database), for the aggregator whose HPKE public key is `own`: returns
/// the stored study and this aggregator's role in it.
pub fn add_study_in(
    schemas: &dyn Store,
    studies: &dyn StudyStore,
    own: &HpkePublicKey,
    bytes: &[u8],
    clock: &Clock,
) -> Result<(StoredStudy, AggregatorRole), ServeError> {
    let def = StudyDefinition::from_json(bytes).map_err(arg)?;
    let schema_row = schemas
        .get_schema(def.schema())?
        .ok_or_else(|| arg(format!("no schema named {:?} is installed", def.schema())))?;
    let schema = Schema::from_json(&schema_row.json).map_err(arg)?;
    let encoding = StudyEncoding::new(&schema, &def).map_err(arg)?;
    let keys = def.aggregators();
    let role = if keys.leader.public_key_bytes().ok() == Some(*own.as_bytes()) {
        AggregatorRole::Leader
    } else if keys.helper.public_key_bytes().ok() == Some(*own.as_bytes()) {
        AggregatorRole::Helper
    } else {
        return Err(arg(
            "this data directory's aggregator key is neither the study's leader key nor its helper key \
             (see `medrelay-server aggregator key`)",
        ));
    };
    let json = def.canonical_json().map_err(arg)?;
    let sha256: [u8; 32] = Sha256::digest(&json).into();
    debug_assert_eq!(&sha256, encoding.study_sha256());
    let event = events::append(&LogEvent::Study {
        at: clock.now(),
        event: StudyEvent::Added {
            study: def.name().to_owned(),
            schema: def.schema().to_owned(),
            study_sha256: sha256,
            aggregator: match role {
                AggregatorRole::Leader => StudyAggregator::Leader,
                AggregatorRole::Helper => StudyAggregator::Helper,
            },
        },
    })
    .map_err(arg)?;
    let mut stored = StoredStudy {
        name: def.name().to_owned(),
        schema: def.schema().to_owned(),
        json,
        sha256,
        log_index: 0,
    };
    stored.log_index = studies.put_study(&stored, &event)?;
    Ok((stored, role))
}

fn open(data: &Path) -> Result<Box<dyn crate::serve::Backend>, ServeError> {
    load_log_key(data)?;
    crate::serve::open_offline(data)
}

/// `medrelay-server study add --data DIR FILE` (server stopped).
pub fn add_study(data: &Path, bytes: &[u8]) -> Result<(StoredStudy, AggregatorRole), ServeError> {
    let own = load_aggregator_key(data)?.public_key();
    let store = open(data)?;
    add_study_in(&*store, &*store, &own, bytes, &Clock::System)
}

/// `medrelay-server study list --data DIR` (server stopped).
pub fn list_studies(data: &Path) -> Result<Vec<StoredStudy>, ServeError> {
    Ok(open(data)?.list_studies(MAX_STUDIES_LISTED)?)
}

/// `medrelay-server aggregator key --data DIR`: this aggregator's public
/// HPKE key as the study document's `aggregators.leader` or `.helper` entry.
pub fn aggregator_key_json(data: &Path) -> Result<String, ServeError> {
    let pk = load_aggregator_key(data)?.public_key();
    serde_json::to_string_pretty(&AggregatorKey::new(pk.as_bytes())).map_err(arg)
}
