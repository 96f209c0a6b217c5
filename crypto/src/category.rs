//! Record categories, sensitivity labels and key classes.
//!
//! A patient's PRE keys are split by [`KeyClass`]: a record is encrypted under
//! the key of its class, and a grant carries re-encryption keys only for the
//! classes its scope touches. The class of a record follows from its
//! [`RecordCategory`] by [`RecordCategory::key_class`], a fixed public rule, so
//! the patient client, the server and the policy check all agree on it. (The
//! policy crate's scopes use the same rule to reach only the classes their
//! category codes name: a record coded both `vital-signs` and `laboratory` is
//! a laboratory record, outside a vital-signs-only grant.)

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::DecodeError;

/// A group of record categories that share one PRE key pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum KeyClass {
    /// Everything not in another class.
    General = 0,
    /// Laboratory results (Observation/DiagnosticReport with category `laboratory`).
    Laboratory = 1,
    /// Imaging (ImagingStudy, or category `imaging`).
    Imaging = 2,
    /// Medication requests, statements, administrations, dispenses.
    Medications = 3,
    /// Records labelled mental health.
    MentalHealth = 4,
    /// Records labelled substance use.
    SubstanceUse = 5,
    /// Records labelled sexual and reproductive health (including HIV).
    SexualHealth = 6,
    /// Records labelled genetics.
    Genetics = 7,
}

impl KeyClass {
    /// Every class, in code order.
    pub const ALL: [KeyClass; 8] = [
        KeyClass::General,
        KeyClass::Laboratory,
        KeyClass::Imaging,
        KeyClass::Medications,
        KeyClass::MentalHealth,
        KeyClass::SubstanceUse,
        KeyClass::SexualHealth,
        KeyClass::Genetics,
    ];

    /// The one-byte code used in encodings.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The class with the given code.
    pub fn from_code(code: u8) -> Result<Self, DecodeError> {
        Self::ALL.get(usize::from(code)).copied().ok_or(DecodeError::Invalid("key class"))
    }

    /// The textual name (`general`, `laboratory`, `mental-health`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyClass::General => "general",
            KeyClass::Laboratory => "laboratory",
            KeyClass::Imaging => "imaging",
            KeyClass::Medications => "medications",
            KeyClass::MentalHealth => "mental-health",
            KeyClass::SubstanceUse => "substance-use",
            KeyClass::SexualHealth => "sexual-health",
            KeyClass::Genetics => "genetics",
        }
    }

    /// The class a record without sensitivity labels falls in, from its FHIR
    /// resource type and category codes.
    pub fn for_resource(resource_type: &str, codes: &[String]) -> Self {
        let has = |c: &str| codes.iter().any(|x| x == c);
        match resource_type {
            "ImagingStudy" => KeyClass::Imaging,
            "MedicationRequest"
            | "MedicationStatement"
            | "MedicationAdministration"
            | "MedicationDispense"
            | "Medication" => KeyClass::Medications,
            _ if has("laboratory") => KeyClass::Laboratory,
            _ if has("imaging") => KeyClass::Imaging,
            _ => KeyClass::General,
        }
    }
}

impl fmt::Display for KeyClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyClass {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, DecodeError> {
        Self::ALL.into_iter().find(|c| c.as_str() == s).ok_or(DecodeError::Invalid("key class name"))
    }
}

/// A sensitivity label. Records carrying one are excluded from a grant unless
/// the grant names the label explicitly, and each label has its own key class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum SensitivityLabel {
    /// Mental health (e.g. ICD-10 F-codes, HL7 `PSY`/`MH`).
    MentalHealth = 0,
    /// Substance use (e.g. HL7 `ETH`/`SUD`, 42 CFR Part 2).
    SubstanceUse = 1,
    /// Sexual and reproductive health, including HIV (HL7 `SEX`/`HIV`).
    SexualHealth = 2,
    /// Genetic information (HL7 `GDIS`).
    Genetics = 3,
}

impl SensitivityLabel {
    /// Every label, in code order.
    pub const ALL: [SensitivityLabel; 4] = [
        SensitivityLabel::MentalHealth,
        SensitivityLabel::SubstanceUse,
        SensitivityLabel::SexualHealth,
        SensitivityLabel::Genetics,
    ];

    /// The textual name (`mental-health`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            SensitivityLabel::MentalHealth => "mental-health",
            SensitivityLabel::SubstanceUse => "substance-use",
            SensitivityLabel::SexualHealth => "sexual-health",
            SensitivityLabel::Genetics => "genetics",
        }
    }

    /// The key class records with this label are encrypted under.
    pub const fn key_class(self) -> KeyClass {
        match self {
            SensitivityLabel::MentalHealth => KeyClass::MentalHealth,
            SensitivityLabel::SubstanceUse => KeyClass::SubstanceUse,
            SensitivityLabel::SexualHealth => KeyClass::SexualHealth,
            SensitivityLabel::Genetics => KeyClass::Genetics,
        }
    }

    fn from_code(code: u8) -> Result<Self, DecodeError> {
        Self::ALL.get(usize::from(code)).copied().ok_or(DecodeError::Invalid("sensitivity label"))
    }
}

impl fmt::Display for SensitivityLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SensitivityLabel {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, DecodeError> {
        Self::ALL.into_iter().find(|c| c.as_str() == s).ok_or(DecodeError::Invalid("sensitivity label name"))
    }
}

/// Most category codes a record may carry.
pub const MAX_CATEGORY_CODES: usize = 16;
/// Longest resource type or category code, in bytes.
pub const MAX_CODE_LEN: usize = 64;

/// What a record is, as far as the policy needs to know: its FHIR resource
/// type (or `Binary`/`DocumentReference` for other files), its category codes,
/// and its sensitivity labels. Codes and labels are kept sorted and unique so
/// the encoding is canonical.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecordCategory {
    resource_type: String,
    codes: Vec<String>,
    sensitivity: Vec<SensitivityLabel>,
}

impl RecordCategory {
    /// Validates and normalises a category. The resource type is a FHIR type
    /// name (`[A-Z][A-Za-z]*`); codes use `[A-Za-z0-9._-]`; both at most
    /// [`MAX_CODE_LEN`] bytes, at most [`MAX_CATEGORY_CODES`] codes.
    pub fn new(
        resource_type: &str,
        codes: impl IntoIterator<Item = String>,
        sensitivity: impl IntoIterator<Item = SensitivityLabel>,
    ) -> Result<Self, DecodeError> {
        validate_resource_type(resource_type)?;
        let mut codes: Vec<String> = codes.into_iter().collect();
        if codes.len() > MAX_CATEGORY_CODES {
            return Err(DecodeError::Invalid("too many category codes"));
        }
        for c in &codes {
            validate_code(c)?;
        }
        codes.sort();
        codes.dedup();
        let mut sensitivity: Vec<SensitivityLabel> = sensitivity.into_iter().collect();
        sensitivity.sort();
        sensitivity.dedup();
        Ok(Self { resource_type: resource_type.to_owned(), codes, sensitivity })
    }

    /// The FHIR resource type.
    pub fn resource_type(&self) -> &str {
        &self.resource_type
    }

    /// The category codes, sorted.
    pub fn codes(&self) -> &[String] {
        &self.codes
    }

    /// The sensitivity labels, sorted.
    pub fn sensitivity(&self) -> &[SensitivityLabel] {
        &self.sensitivity
    }

    /// The key class this record is encrypted under: the class of its first
    /// sensitivity label (in [`SensitivityLabel`] order) if it has any,
    /// otherwise [`KeyClass::for_resource`].
    pub fn key_class(&self) -> KeyClass {
        match self.sensitivity.first() {
            Some(label) => label.key_class(),
            None => KeyClass::for_resource(&self.resource_type, &self.codes),
        }
    }

    pub(crate) fn encode(&self, e: &mut crate::encoding::Encoder) {
        e.str(&self.resource_type);
        e.u8(u8::try_from(self.codes.len()).unwrap_or(u8::MAX));
        for c in &self.codes {
            e.str(c);
        }
        e.u8(u8::try_from(self.sensitivity.len()).unwrap_or(u8::MAX));
        for s in &self.sensitivity {
            e.u8(*s as u8);
        }
    }

    pub(crate) fn decode(d: &mut crate::encoding::Decoder<'_>) -> Result<Self, DecodeError> {
        let resource_type = d.str(MAX_CODE_LEN)?.to_owned();
        let n = usize::from(d.u8()?);
        if n > MAX_CATEGORY_CODES {
            return Err(DecodeError::Invalid("too many category codes"));
        }
        let mut codes = Vec::with_capacity(n);
        for _ in 0..n {
            codes.push(d.str(MAX_CODE_LEN)?.to_owned());
        }
        let m = usize::from(d.u8()?);
        if m > SensitivityLabel::ALL.len() {
            return Err(DecodeError::Invalid("too many sensitivity labels"));
        }
        let mut sensitivity = Vec::with_capacity(m);
        for _ in 0..m {
            sensitivity.push(SensitivityLabel::from_code(d.u8()?)?);
        }
        let cat = Self::new(&resource_type, codes.clone(), sensitivity.clone())?;
        // Canonical form only: sorted, unique.
        if cat.codes != codes || cat.sensitivity != sensitivity {
            return Err(DecodeError::Invalid("category not in canonical order"));
        }
        Ok(cat)
    }
}

impl fmt::Display for RecordCategory {
    /// `Observation?category=laboratory,vital-signs#mental-health`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.resource_type)?;
        if !self.codes.is_empty() {
            write!(f, "?category={}", self.codes.join(","))?;
        }
        for (i, s) in self.sensitivity.iter().enumerate() {
            f.write_str(if i == 0 { "#" } else { "," })?;
            f.write_str(s.as_str())?;
        }
        Ok(())
    }
}

fn validate_resource_type(s: &str) -> Result<(), DecodeError> {
    let mut chars = s.chars();
    let ok = s.len() <= MAX_CODE_LEN
        && chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(DecodeError::Invalid("resource type"))
    }
}

fn validate_code(s: &str) -> Result<(), DecodeError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_CODE_LEN
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(DecodeError::Invalid("category code"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(rt: &str, codes: &[&str], labels: &[SensitivityLabel]) -> RecordCategory {
        RecordCategory::new(rt, codes.iter().map(|s| s.to_string()), labels.iter().copied()).unwrap()
    }

    #[test]
    fn key_class_rule() {
        assert_eq!(cat("Observation", &["laboratory"], &[]).key_class(), KeyClass::Laboratory);
        assert_eq!(cat("Observation", &["vital-signs"], &[]).key_class(), KeyClass::General);
        assert_eq!(cat("ImagingStudy", &[], &[]).key_class(), KeyClass::Imaging);
        assert_eq!(cat("MedicationRequest", &[], &[]).key_class(), KeyClass::Medications);
        assert_eq!(
            cat("Observation", &["laboratory"], &[SensitivityLabel::Genetics]).key_class(),
            KeyClass::Genetics
        );
        assert_eq!(
            cat("Condition", &[], &[SensitivityLabel::SubstanceUse, SensitivityLabel::MentalHealth])
                .key_class(),
            KeyClass::MentalHealth
        );
    }

    #[test]
    fn names_round_trip() {
        for c in KeyClass::ALL {
            assert_eq!(c.as_str().parse::<KeyClass>().unwrap(), c);
            assert_eq!(KeyClass::from_code(c.code()).unwrap(), c);
        }
        for l in SensitivityLabel::ALL {
            assert_eq!(l.as_str().parse::<SensitivityLabel>().unwrap(), l);
        }
        assert!(KeyClass::from_code(8).is_err());
        assert!("psychiatry".parse::<SensitivityLabel>().is_err());
    }

    #[test]
    fn invalid_categories_are_rejected() {
        assert!(RecordCategory::new("observation", [], []).is_err());
        assert!(RecordCategory::new("Obs ervation", [], []).is_err());
        assert!(RecordCategory::new("Observation", ["a b".to_string()], []).is_err());
        assert!(RecordCategory::new("Observation", [String::new()], []).is_err());
        assert!(RecordCategory::new("Observation", (0..17).map(|i| format!("c{i}")), []).is_err());
    }

    #[test]
    fn display_is_readable() {
        let c = cat("Observation", &["vital-signs", "laboratory"], &[SensitivityLabel::MentalHealth]);
        assert_eq!(c.to_string(), "Observation?category=laboratory,vital-signs#mental-health");
    }
}
