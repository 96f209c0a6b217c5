//! Privacy parameters, query costs and the analyst's budget ledger.
//!
//! # Accounting
//!
//! A ledger holds one analyst's budget for one schema as an (ε, δ) pair.
//! Pure-DP queries (Laplace, exponential mechanism under ε) cost ε; zCDP
//! queries (Gaussian) cost ρ. The ledger keeps the two sums apart and reports
//!
//! ```text
//! ε_spent = Σ ε_pure + ε_CKS(Σ ρ, δ)
//! ```
//!
//! where `ε_CKS(ρ, δ)` is OpenDP's optimal zCDP → (ε, δ) conversion
//! (Canonne–Kamath–Steinke 2020, `make_zCDP_to_approxDP`). This is sound
//! under adaptive, interleaved composition: an ε-DP mechanism has Rényi
//! divergence at most ε at every order, so the whole interaction is
//! `(α, Σε_pure + αΣρ)`-RDP for all α, and the CKS conversion of that curve
//! is `Σε_pure` plus the conversion of `Σρ` alone. A ledger with no zCDP
//! spending therefore reports exactly `Σ ε_pure` with δ = 0 in effect.
//!
//! Every sum rounds toward +∞ (OpenDP's `InfAdd`), so the ledger never
//! under-reports. [`Ledger::debit`] refuses any cost that would push
//! `ε_spent` above the total and then changes nothing.

use std::fmt;
use std::str::FromStr;

use opendp::combinators::ConcentratedMeasure;
use opendp::measures::ZeroConcentratedDivergence;
use opendp::traits::InfAdd;
use serde::{Deserialize, Serialize};

use crate::error::{DecodeError, DpError};
use medrelay_crypto::encoding::{Decoder, Encoder};

/// An analyst's id: the 32 bytes of their medrelay principal id
/// (`medrelay_crypto::PrincipalId::as_bytes`), written as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AnalystId([u8; 32]);

impl AnalystId {
    /// Wraps a principal id's bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for AnalystId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for AnalystId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AnalystId({self})")
    }
}

impl FromStr for AnalystId {
    type Err = DecodeError;
    /// Parses 64 hex digits.
    fn from_str(s: &str) -> Result<Self, DecodeError> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return Err(DecodeError::Invalid("analyst id length"));
        }
        let hex = |c: u8| char::from(c).to_digit(16).ok_or(DecodeError::Invalid("analyst id hex"));
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            #[expect(clippy::cast_possible_truncation, reason = "two hex digits fit a byte")]
            let byte = (hex(b[2 * i])? * 16 + hex(b[2 * i + 1])?) as u8;
            *o = byte;
        }
        Ok(Self(out))
    }
}

impl Serialize for AnalystId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AnalystId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Largest ε accepted anywhere (a budget or one query).
pub const MAX_EPSILON: f64 = 100.0;
/// Largest ρ accepted for one query.
pub const MAX_RHO: f64 = 100.0;
/// Largest δ accepted for a budget.
pub const MAX_DELTA: f64 = 1e-3;

fn check(name: &'static str, x: f64, max: f64) -> Result<f64, DpError> {
    if !x.is_finite() {
        return Err(DpError::InvalidParameter { name, reason: "must be a finite number" });
    }
    if x <= 0.0 {
        return Err(DpError::InvalidParameter { name, reason: "must be positive" });
    }
    if x > max {
        return Err(DpError::InvalidParameter { name, reason: "above the allowed maximum" });
    }
    Ok(x)
}

/// A pure-DP privacy parameter ε, in (0, [`MAX_EPSILON`]].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Epsilon(f64);

impl Epsilon {
    /// Validates ε.
    pub fn new(x: f64) -> Result<Self, DpError> {
        check("epsilon", x, MAX_EPSILON).map(Self)
    }
    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }
}

/// A zCDP privacy parameter ρ, in (0, [`MAX_RHO`]].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Rho(f64);

impl Rho {
    /// Validates ρ.
    pub fn new(x: f64) -> Result<Self, DpError> {
        check("rho", x, MAX_RHO).map(Self)
    }
    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }
}

/// The δ of an (ε, δ) budget, in [[`crate::bounds::MIN_DELTA`], [`MAX_DELTA`]].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Delta(f64);

impl Delta {
    /// Validates δ (at least [`crate::bounds::MIN_DELTA`]).
    pub fn new(x: f64) -> Result<Self, DpError> {
        let x = check("delta", x, MAX_DELTA)?;
        if x < crate::bounds::MIN_DELTA {
            return Err(DpError::InvalidParameter { name: "delta", reason: "below the floor 1e-12" });
        }
        Ok(Self(x))
    }
    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }
}

macro_rules! float_conversions {
    ($($t:ident),*) => {$(
        impl TryFrom<f64> for $t {
            type Error = DpError;
            fn try_from(x: f64) -> Result<Self, DpError> {
                Self::new(x)
            }
        }
        impl From<$t> for f64 {
            fn from(x: $t) -> f64 {
                x.0
            }
        }
    )*};
}
float_conversions!(Epsilon, Rho, Delta);

/// What a query asks to spend: the analyst picks the privacy definition.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Privacy {
    /// Pure ε-DP (Laplace / discrete Laplace, exponential mechanism).
    Epsilon(Epsilon),
    /// ρ-zCDP (Gaussian / discrete Gaussian, exponential mechanism under zCDP).
    Rho(Rho),
}

/// The privacy cost of a release as OpenDP's privacy maps report it (at
/// input distance 1: one patient's summary added or removed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrivacyCost {
    /// ε of a pure-DP release.
    Epsilon(f64),
    /// ρ of a zCDP release.
    Rho(f64),
}

/// The (ε, δ) an analyst may spend on one schema.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Total ε.
    pub epsilon: Epsilon,
    /// The δ at which zCDP spending is converted to ε.
    pub delta: Delta,
}

/// A refused debit: the cost would exceed the budget. Nothing was spent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("privacy budget exceeded: spending {requested:?} would bring ε to {would_be} (δ = {delta}), total ε is {total}")]
pub struct Overspend {
    /// The refused cost.
    pub requested: PrivacyCost,
    /// ε spent after the debit, had it been allowed (∞ if not representable).
    pub would_be: f64,
    /// The budget's total ε.
    pub total: f64,
    /// The budget's δ.
    pub delta: f64,
}

/// ε of ρ-zCDP at δ by OpenDP's conversion (rounded up by OpenDP).
pub fn zcdp_to_epsilon(rho: f64, delta: Delta) -> Result<f64, DpError> {
    if rho == 0.0 {
        return Ok(0.0);
    }
    let profile = ZeroConcentratedDivergence::convert(rho)?;
    Ok(profile.epsilon(delta.get())?)
}

const LEDGER_MAGIC: &[u8; 4] = b"MRDL";
const LEDGER_VERSION: u8 = 1;
/// Largest encoded ledger accepted.
pub const MAX_LEDGER_BYTES: usize = 512;
const MAX_SCHEMA_NAME: usize = 64;

/// One analyst's budget ledger for one schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ledger {
    analyst: AnalystId,
    schema: String,
    budget: Budget,
    spent_pure_epsilon: f64,
    spent_rho: f64,
    queries: u64,
}

impl Ledger {
    /// A fresh ledger with nothing spent.
    pub fn new(analyst: AnalystId, schema: &str, budget: Budget) -> Result<Self, DpError> {
        if schema.is_empty() || schema.len() > MAX_SCHEMA_NAME {
            return Err(DpError::InvalidParameter { name: "schema", reason: "must be 1-64 bytes" });
        }
        Ok(Self {
            analyst,
            schema: schema.to_owned(),
            budget,
            spent_pure_epsilon: 0.0,
            spent_rho: 0.0,
            queries: 0,
        })
    }

    /// The analyst.
    pub fn analyst(&self) -> AnalystId {
        self.analyst
    }
    /// The schema's name.
    pub fn schema(&self) -> &str {
        &self.schema
    }
    /// The budget.
    pub fn budget(&self) -> Budget {
        self.budget
    }
    /// Σ ε of pure-DP releases so far.
    pub fn spent_pure_epsilon(&self) -> f64 {
        self.spent_pure_epsilon
    }
    /// Σ ρ of zCDP releases so far.
    pub fn spent_rho(&self) -> f64 {
        self.spent_rho
    }
    /// Number of debits so far.
    pub fn queries(&self) -> u64 {
        self.queries
    }

    /// Replaces the total budget (an operator's decision), keeping everything
    /// spent so far. A total below the spending leaves nothing to spend; it
    /// never refunds.
    pub fn set_budget(&mut self, budget: Budget) {
        self.budget = budget;
    }

    /// ε spent so far at the budget's δ (see the module docs).
    pub fn spent_epsilon(&self) -> Result<f64, DpError> {
        combined(self.spent_pure_epsilon, self.spent_rho, self.budget.delta)
    }

    /// ε left (never negative).
    pub fn remaining_epsilon(&self) -> Result<f64, DpError> {
        Ok((self.budget.epsilon.get() - self.spent_epsilon()?).max(0.0))
    }

    fn after(&self, cost: PrivacyCost) -> Result<(f64, f64, f64), DpError> {
        let (pure, rho) = match cost {
            PrivacyCost::Epsilon(e) => {
                check("cost epsilon", e, MAX_EPSILON)?;
                (self.spent_pure_epsilon.inf_add(&e)?, self.spent_rho)
            }
            PrivacyCost::Rho(r) => {
                check("cost rho", r, MAX_RHO)?;
                (self.spent_pure_epsilon, self.spent_rho.inf_add(&r)?)
            }
        };
        Ok((pure, rho, combined(pure, rho, self.budget.delta)?))
    }

    /// Checks that `cost` fits, without spending it.
    pub fn check(&self, cost: PrivacyCost) -> Result<(), DpError> {
        self.fits(cost).map(|_| ())
    }

    /// The spent sums after `cost`, if it fits.
    fn fits(&self, cost: PrivacyCost) -> Result<(f64, f64), DpError> {
        let (pure, rho, total) = self.after(cost)?;
        if total > self.budget.epsilon.get() {
            return Err(Overspend {
                requested: cost,
                would_be: total,
                total: self.budget.epsilon.get(),
                delta: self.budget.delta.get(),
            }
            .into());
        }
        Ok((pure, rho))
    }

    /// Spends `cost`, or refuses with [`DpError::Overspend`] (or an invalid
    /// parameter) and changes nothing.
    pub fn debit(&mut self, cost: PrivacyCost) -> Result<(), DpError> {
        let (pure, rho) = self.fits(cost)?;
        self.spent_pure_epsilon = pure;
        self.spent_rho = rho;
        self.queries = self.queries.saturating_add(1);
        Ok(())
    }

    /// The versioned binary form for storage (magic `MRDL`, version 1).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new(LEDGER_MAGIC, LEDGER_VERSION);
        e.fixed(self.analyst.as_bytes())
            .str(&self.schema)
            .u64(self.budget.epsilon.get().to_bits())
            .u64(self.budget.delta.get().to_bits())
            .u64(self.spent_pure_epsilon.to_bits())
            .u64(self.spent_rho.to_bits())
            .u64(self.queries);
        e.finish()
    }

    /// Decodes [`Ledger::encode`]'s output, rejecting oversized, truncated,
    /// trailing, wrong-version or out-of-range input.
    pub fn decode(bytes: &[u8]) -> Result<Self, DpError> {
        let mut d = Decoder::open(bytes, LEDGER_MAGIC, &[LEDGER_VERSION], MAX_LEDGER_BYTES)?;
        let analyst = AnalystId::from_bytes(d.array()?);
        let schema = d.str(MAX_SCHEMA_NAME)?.to_owned();
        let epsilon = Epsilon::new(f64::from_bits(d.u64()?))
            .map_err(|_| DecodeError::Invalid("ledger budget epsilon"))?;
        let delta =
            Delta::new(f64::from_bits(d.u64()?)).map_err(|_| DecodeError::Invalid("ledger budget delta"))?;
        let spent = |x: u64, what| {
            let x = f64::from_bits(x);
            if x.is_finite() && x >= 0.0 {
                Ok(x)
            } else {
                Err(DecodeError::Invalid(what))
            }
        };
        let spent_pure_epsilon = spent(d.u64()?, "ledger spent epsilon")?;
        let spent_rho = spent(d.u64()?, "ledger spent rho")?;
        let queries = d.u64()?;
        d.finish()?;
        if schema.is_empty() {
            return Err(DecodeError::Invalid("ledger schema name").into());
        }
        Ok(Self {
            analyst,
            schema,
            budget: Budget { epsilon, delta },
            spent_pure_epsilon,
            spent_rho,
            queries,
        })
    }
}

fn combined(pure: f64, rho: f64, delta: Delta) -> Result<f64, DpError> {
    Ok(pure.inf_add(&zcdp_to_epsilon(rho, delta)?)?)
}
