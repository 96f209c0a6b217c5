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
