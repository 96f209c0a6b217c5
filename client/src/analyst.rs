//! The analyst's operations: enrollment, the installed summary schemas,
//! differentially private queries and the remaining privacy budget.
//!
//! An analyst holds only a signing key (no PRE keys: analysts never read a
//! record). Every answer is a noisy release the server computed and charged
//! to this analyst's budget before sending it; the client checks that the
//! answer and the budget are for this analyst, this schema and the query it
//! asked.

use std::path::Path;

use medrelay_crypto::PrincipalId;
use medrelay_dp::{Query, Schema};
use medrelay_wire::dp::{BudgetStatus, DpAnswer, SchemaInfo};
use medrelay_wire::Role;

use crate::dp::parse_schema;
use crate::http::ServerOptions;
use crate::keystore::Passphrase;
use crate::session::{Connect, Identity, SigningSession};
use crate::ClientError;

/// An analyst profile, opened.
pub struct Analyst {
    session: SigningSession,
}

impl std::fmt::Debug for Analyst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyst").field("principal", &self.session.id()).finish_non_exhaustive()
    }
}

impl Analyst {
    /// Creates a signing key in `dir` and enrolls with the operator's
    /// one-time analyst token (`medrelay-server enroll --role analyst`).
    pub fn init(
        dir: &Path,
        server: &ServerOptions,
        name: &str,
        enrollment_token: &str,
        pass: &Passphrase,
    ) -> Result<Self, ClientError> {
        let session = SigningSession::enroll(dir, server, Role::Analyst, name, enrollment_token, pass)?;
        Ok(Self { session })
    }

    /// Opens the analyst profile in `dir`.
    pub fn open(dir: &Path, connect: &Connect, pass: &Passphrase) -> Result<Self, ClientError> {
        Ok(Self { session: SigningSession::open(dir, Role::Analyst, connect, pass)? })
    }

    /// Id and signing-key fingerprint.
    pub fn whoami(&self) -> Identity {
        self.session.identity()
    }

    /// The principal id.
    pub fn id(&self) -> PrincipalId {
        self.session.id()
    }

    /// The installed summary schemas.
    pub fn schemas(&self) -> Result<Vec<SchemaInfo>, ClientError> {
        Ok(self.session.http.dp_schemas()?.schemas)
    }

    /// One schema, parsed (its fields, types and public bounds), e.g. to
    /// build a query with [`crate::dp::build_query`].
    pub fn schema(&self, name: &str) -> Result<Schema, ClientError> {
        parse_schema(&self.session.http.dp_schema(name)?, name)
    }

    /// Asks a DP query. The server debits the budget before answering; a
    /// query the budget cannot pay is refused with
    /// [`ClientError::BudgetExceeded`] and spends nothing.
    pub fn query(&self, schema: &str, query: &Query) -> Result<DpAnswer, ClientError> {
        let answer = self.session.http.dp_query(schema, query)?;
        if answer.answer.schema != schema || answer.answer.query != *query {
            return Err(ClientError::Protocol("the server answered another query".into()));
        }
        self.check_budget(&answer.budget, schema)?;
        Ok(answer)
    }

    /// This analyst's budget for `schema`: total, spent and remaining ε.
    pub fn budget(&self, schema: &str) -> Result<BudgetStatus, ClientError> {
        let status = self.session.http.dp_budget(schema)?;
        self.check_budget(&status, schema)?;
        Ok(status)
    }

    fn check_budget(&self, status: &BudgetStatus, schema: &str) -> Result<(), ClientError> {
        if status.analyst != self.id() || status.schema != schema {
            return Err(ClientError::Protocol(
                "the server reported another analyst's or schema's budget".into(),
            ));
        }
        Ok(())
    }
}

/// Private studies (see [`crate::study`]).
impl Analyst {
    /// The studies the leader offers.
    pub fn studies(&self) -> Result<Vec<medrelay_wire::study::StudyInfo>, ClientError> {
        Ok(self.session.http.studies()?.studies)
    }

    /// Study `name`, checked against the signed log.
    pub fn study(&self, name: &str) -> Result<crate::study::VerifiedStudy, ClientError> {
        crate::study::verified_study(&self.session.http, &self.session.profile, name)
    }

    /// The open batch, whether it is big enough, and the batches released.
    pub fn study_status(&self, name: &str) -> Result<medrelay_wire::study::StudyStatus, ClientError> {
        let s = self.session.http.study_status(name)?;
        if s.study != name {
            return Err(ClientError::Protocol("the server reported another study".into()));
        }
        Ok(s)
    }

    /// Releases `batch` (default: the open one). The leader logs the cost
    /// before releasing; a batch below the minimum size or released before
    /// is refused (`batch_too_small`, `already_released`).
    pub fn study_release(
        &self,
        name: &str,
        batch: Option<u64>,
    ) -> Result<medrelay_wire::study::StudyRelease, ClientError> {
        let batch = match batch {
            Some(b) => b,
            None => self.study_status(name)?.open_batch,
        };
        let r = self.session.http.study_release(name, batch)?;
        if r.study != name || r.batch != batch {
            return Err(ClientError::Protocol("the server released another batch".into()));
        }
        Ok(r)
    }

    /// Every statistic of the study from its releases (all, or `batch`),
    /// each with an interval at `confidence`; computed here (post-processing,
    /// nothing spent) after checking each release against the log.
    pub fn study_results(
        &self,
        name: &str,
        batch: Option<u64>,
        confidence: f64,
        quantiles: &[f64],
    ) -> Result<medrelay_dp::study::StudyResults, ClientError> {
        let study = self.study(name)?;
        let mut releases = self.session.http.study_releases(name)?.releases;
        if let Some(b) = batch {
            releases.retain(|r| r.batch == b);
            if releases.is_empty() {
                return Err(ClientError::Invalid(format!("batch {b} of study {name} is not released")));
            }
        }
        crate::study::study_results(
            &self.session.http,
            &self.session.profile,
            &study,
            &releases,
            confidence,
            quantiles,
        )
    }
}
