//! Grant scopes, modelled on SMART on FHIR v2 scopes and FHIR Consent: a set
//! of resource types, each optionally narrowed to category codes, plus the
//! sensitivity labels the patient explicitly includes. Sensitive records are
//! excluded unless their every label is named.
//!
//! Text form: comma-separated items, each one of
//!
//! - `Observation` — every Observation (except sensitive ones);
//! - `Observation?category=laboratory` — Observations carrying that category
//!   code (repeat the item for several codes) and in a key class one of the
//!   listed codes gives on its own: an Observation coded both `vital-signs`
//!   and `laboratory` is a laboratory record, so
//!   `Observation?category=laboratory` reaches it and
//!   `Observation?category=vital-signs` alone does not. A scope thus exposes
//!   only the key classes its codes name ([`Scope::key_classes`]);
//! - `sensitive:mental-health` — include records labelled mental health;
//! - `-sensitive:mental-health` — state explicitly that the label is excluded
//!   (the default, kept so the text round-trips).
//!
//! Example: `Condition,Observation?category=laboratory,-sensitive:mental-health`.
//! [`Scope`]'s `Display` prints the canonical form (entries sorted by type and
//! code, then included labels, then excluded labels), which parses back to the
//! same scope.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use medrelay_crypto::{KeyClass, RecordCategory, SensitivityLabel, MAX_CODE_LEN};

use crate::error::PolicyError;

/// Longest scope text accepted.
pub const MAX_SCOPE_LEN: usize = 4096;
/// Most items in a scope.
pub const MAX_SCOPE_ITEMS: usize = 64;

/// What a grant reaches. Never empty: it names at least one resource type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    /// Resource type → category codes (empty set = every category).
    entries: BTreeMap<String, BTreeSet<String>>,
    included: BTreeSet<SensitivityLabel>,
    excluded: BTreeSet<SensitivityLabel>,
}

/// Why a record does not match a scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mismatch {
    /// Resource type or category not in scope.
    OutOfScope,
    /// The record carries a listed category code, but its other codes put it
    /// in a key class none of the entry's codes maps to (an Observation coded
    /// both `vital-signs` and `laboratory` is a laboratory record, so a grant
    /// of `Observation?category=vital-signs` alone does not reach it).
    OtherKeyClass,
    /// In scope but carries a sensitivity label the scope does not include.
    SensitiveExcluded,
}

fn scope_err(entry: &str, reason: &'static str) -> PolicyError {
    PolicyError::InvalidScope { entry: entry.chars().take(64).collect(), reason }
}

fn valid_resource_type(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= MAX_CODE_LEN
        && chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_alphanumeric())
}

fn valid_code(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_CODE_LEN
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl Scope {
    /// Parses the text form (same as `str::parse`).
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        if text.len() > MAX_SCOPE_LEN {
            return Err(scope_err("", "scope text too long"));
        }
        if text.is_empty() {
            return Err(scope_err("", "empty scope: a scope must name at least one resource type"));
        }
        let mut entries: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut included = BTreeSet::new();
        let mut excluded = BTreeSet::new();
        for (n, item) in text.split(',').enumerate() {
            if n == MAX_SCOPE_ITEMS {
                return Err(scope_err(item, "too many scope items"));
            }
            if item.is_empty() {
                return Err(scope_err(item, "empty item (stray comma)"));
            }
            if let Some(label) = item.strip_prefix("-sensitive:") {
                let label: SensitivityLabel =
                    label.parse().map_err(|_| scope_err(item, "unknown sensitivity label"))?;
                if included.contains(&label) {
                    return Err(scope_err(item, "sensitivity label both included and excluded"));
                }
                if !excluded.insert(label) {
                    return Err(scope_err(item, "duplicate item"));
                }
            } else if let Some(label) = item.strip_prefix("sensitive:") {
                let label: SensitivityLabel =
                    label.parse().map_err(|_| scope_err(item, "unknown sensitivity label"))?;
                if excluded.contains(&label) {
                    return Err(scope_err(item, "sensitivity label both included and excluded"));
                }
                if !included.insert(label) {
                    return Err(scope_err(item, "duplicate item"));
                }
            } else {
                let (rt, code) = match item.split_once('?') {
                    None => (item, None),
                    Some((rt, query)) => {
                        let code = query
                            .strip_prefix("category=")
                            .ok_or_else(|| scope_err(item, "only the `category=` parameter is supported"))?;
                        if !valid_code(code) {
                            return Err(scope_err(item, "invalid category code"));
                        }
                        (rt, Some(code))
                    }
                };
                if !valid_resource_type(rt) {
                    return Err(scope_err(item, "invalid resource type (expected e.g. `Observation`)"));
                }
                match (entries.get_mut(rt), code) {
                    (None, None) => {
                        entries.insert(rt.to_owned(), BTreeSet::new());
                    }
                    (None, Some(code)) => {
                        entries.insert(rt.to_owned(), BTreeSet::from([code.to_owned()]));
                    }
                    (Some(codes), Some(code)) if !codes.is_empty() => {
                        if !codes.insert(code.to_owned()) {
                            return Err(scope_err(item, "duplicate item"));
                        }
                    }
                    (Some(_), _) => {
                        return Err(scope_err(
                            item,
                            "resource type listed both with and without a category, or twice",
                        ));
                    }
                }
            }
        }
        if entries.is_empty() {
            return Err(scope_err(text, "scope names no resource type"));
        }
        Ok(Self { entries, included, excluded })
    }

    /// The resource types in scope, each with its category codes (empty =
    /// every category).
    pub fn entries(&self) -> impl Iterator<Item = (&str, &BTreeSet<String>)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The sensitivity labels explicitly included.
    pub fn included_labels(&self) -> &BTreeSet<SensitivityLabel> {
        &self.included
    }

    /// Whether a record of this category is in scope.
    pub fn matches(&self, category: &RecordCategory) -> bool {
        self.check(category).is_ok()
    }

    /// Why a record is not in scope, checked in order: resource type and
    /// category codes, then the key class the codes give (an entry with
    /// codes reaches only the classes they map to), then sensitivity labels.
    pub(crate) fn check(&self, category: &RecordCategory) -> Result<(), Mismatch> {
        // Fail closed: an empty scope (unconstructible, but checked anyway)
        // reaches nothing.
        let Some(codes) = self.entries.get(category.resource_type()) else {
            return Err(Mismatch::OutOfScope);
        };
        if !codes.is_empty() {
            if !category.codes().iter().any(|c| codes.contains(c)) {
                return Err(Mismatch::OutOfScope);
            }
            // The record's class by its type and codes (labels aside) must be
            // one the listed codes reach alone, so a scope exposes only the
            // classes its own codes name (review finding F6). Labelled
            // records are held to the same rule: a label never widens what
            // an entry reaches.
            let class = KeyClass::for_resource(category.resource_type(), category.codes());
            let rt = category.resource_type();
            if !codes.iter().any(|c| KeyClass::for_resource(rt, std::slice::from_ref(c)) == class) {
                return Err(Mismatch::OtherKeyClass);
            }
        }
        if category.sensitivity().iter().all(|l| self.included.contains(l)) {
            Ok(())
        } else {
            Err(Mismatch::SensitiveExcluded)
        }
    }

    /// The key classes whose records this scope may reach: the patient
    /// client makes one re-encryption key per class (and shows the patient
    /// each one before signing), and the server requires a key for exactly
    /// these.
    ///
    /// Consistent with [`RecordCategory::key_class`] and [`Scope::matches`]:
    /// a record with sensitivity labels is in its first label's class, and
    /// can match only if all its labels are included, so every included
    /// label's class is reachable (when any entry exists). Otherwise the
    /// class is [`KeyClass::for_resource`] of the resource type and codes.
    /// An entry that lists category codes reaches only the classes its codes
    /// map to, each alone (`Observation?category=vital-signs` → general):
    /// a record whose other codes put it in another class does not match
    /// it. An entry without codes (a whole type) reaches every class a
    /// record of that type can be in, whatever its codes: we evaluate
    /// `for_resource` on no code and on each combination of the codes that
    /// rule looks at (`laboratory`, `imaging`).
    pub fn key_classes(&self) -> BTreeSet<KeyClass> {
        let mut out = BTreeSet::new();
        for (rt, codes) in &self.entries {
            out.extend(entry_classes(rt, codes));
        }
        if !self.entries.is_empty() {
            out.extend(self.included.iter().map(|l| l.key_class()));
        }
        out
    }
}

/// The classes an entry's unlabelled records can be in: for listed codes,
/// the class of each code alone; for a whole type (no codes), every class
/// [`KeyClass::for_resource`] can give that type.
fn entry_classes(resource_type: &str, codes: &BTreeSet<String>) -> BTreeSet<KeyClass> {
    if !codes.is_empty() {
        return codes
            .iter()
            .map(|c| KeyClass::for_resource(resource_type, std::slice::from_ref(c)))
            .collect();
    }
    let rule_codes = ["laboratory", "imaging"];
    (0..4u8)
        .map(|bits| {
            let set: Vec<String> = rule_codes
                .iter()
                .enumerate()
                .filter(|(bit, _)| bits & (1 << bit) != 0)
                .map(|(_, c)| (*c).to_owned())
                .collect();
            KeyClass::for_resource(resource_type, &set)
        })
        .collect()
}

impl FromStr for Scope {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        Self::parse(s)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut item = |f: &mut fmt::Formatter<'_>, s: fmt::Arguments<'_>| -> fmt::Result {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_fmt(s)
        };
        for (rt, codes) in &self.entries {
            if codes.is_empty() {
                item(f, format_args!("{rt}"))?;
            }
            for c in codes {
                item(f, format_args!("{rt}?category={c}"))?;
            }
        }
        for l in &self.included {
            item(f, format_args!("sensitive:{l}"))?;
        }
        for l in &self.excluded {
            item(f, format_args!("-sensitive:{l}"))?;
        }
        Ok(())
    }
}

impl serde::Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn cat(rt: &str, codes: &[&str], labels: &[SensitivityLabel]) -> RecordCategory {
        RecordCategory::new(rt, codes.iter().map(|s| s.to_string()), labels.iter().copied()).unwrap()
    }

    #[test]
    fn canonical_text_round_trips() {
        for s in [
            "Condition,Observation?category=laboratory,-sensitive:mental-health",
            "Observation",
            "Observation?category=laboratory,Observation?category=vital-signs,sensitive:genetics",
            "ImagingStudy,MedicationRequest,sensitive:mental-health,sensitive:substance-use,-sensitive:genetics",
        ] {
            let scope: Scope = s.parse().unwrap();
            assert_eq!(scope.to_string(), s);
            assert_eq!(scope.to_string().parse::<Scope>().unwrap(), scope);
        }
    }

    #[test]
    fn non_canonical_text_normalises() {
        let s: Scope =
            "-sensitive:genetics,Observation?category=vital-signs,Condition,Observation?category=laboratory"
                .parse()
                .unwrap();
        assert_eq!(
            s.to_string(),
            "Condition,Observation?category=laboratory,Observation?category=vital-signs,-sensitive:genetics"
        );
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Scope>(&json).unwrap(), s);
    }

    #[test]
    fn bad_scopes_say_what_is_wrong() {
        let cases = [
            ("", "empty scope"),
            ("sensitive:genetics", "names no resource type"),
            ("Observation,,Condition", "stray comma"),
            ("observation", "invalid resource type"),
            ("Observation?code=1234", "category="),
            ("Observation?category=", "invalid category code"),
            ("Observation?category=a b", "invalid category code"),
            ("Observation,Observation", "twice"),
            ("Observation,Observation?category=laboratory", "both with and without"),
            ("Observation?category=laboratory,Observation?category=laboratory", "duplicate"),
            ("Observation,sensitive:psychiatry", "unknown sensitivity label"),
            ("Observation,sensitive:genetics,-sensitive:genetics", "both included and excluded"),
        ];
        for (text, want) in cases {
            match Scope::parse(text) {
                Err(PolicyError::InvalidScope { reason, .. }) => {
                    assert!(reason.contains(want), "{text:?}: {reason}")
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        let long = "Observation,".repeat(400);
        assert!(matches!(Scope::parse(&long), Err(PolicyError::InvalidScope { .. })));
        let many = (0..65).map(|i| format!("T{i}")).collect::<Vec<_>>().join(",");
        assert!(
            matches!(Scope::parse(&many), Err(PolicyError::InvalidScope { reason, .. }) if reason.contains("too many"))
        );
    }

    #[test]
    fn matching_rules() {
        let s: Scope = "Condition,Observation?category=laboratory,sensitive:genetics".parse().unwrap();
        assert!(s.matches(&cat("Condition", &[], &[])));
        assert!(s.matches(&cat("Observation", &["laboratory", "vital-signs"], &[])));
        assert!(!s.matches(&cat("Observation", &["vital-signs"], &[])));
        assert!(!s.matches(&cat("Observation", &[], &[])));
        assert!(!s.matches(&cat("MedicationRequest", &[], &[])));
        assert!(s.matches(&cat("Condition", &[], &[SensitivityLabel::Genetics])));
        assert_eq!(
            s.check(&cat("Condition", &[], &[SensitivityLabel::MentalHealth])),
            Err(Mismatch::SensitiveExcluded)
        );
        assert_eq!(
            s.check(&cat("Condition", &[], &[SensitivityLabel::Genetics, SensitivityLabel::MentalHealth])),
            Err(Mismatch::SensitiveExcluded)
        );
    }

    #[test]
    fn key_classes_cover_exactly_the_reachable_records() {
        let classes = |t: &str| t.parse::<Scope>().unwrap().key_classes().into_iter().collect::<Vec<_>>();
        use KeyClass::*;
        assert_eq!(classes("MedicationRequest"), vec![Medications]);
        assert_eq!(classes("ImagingStudy"), vec![Imaging]);
        // A whole type reaches every class its records can be in.
        assert_eq!(classes("Observation"), vec![General, Laboratory, Imaging]);
        assert_eq!(classes("Condition"), vec![General, Laboratory, Imaging]);
        // Listed codes reach only the classes they map to on their own.
        assert_eq!(classes("Observation?category=laboratory"), vec![Laboratory]);
        assert_eq!(classes("Observation?category=imaging"), vec![Imaging]);
        assert_eq!(classes("Observation?category=vital-signs"), vec![General]);
        assert_eq!(
            classes("Observation?category=laboratory,Observation?category=vital-signs"),
            vec![General, Laboratory]
        );
        assert_eq!(classes("ImagingStudy?category=vital-signs"), vec![Imaging]);
        assert_eq!(classes("MedicationRequest,sensitive:mental-health"), vec![Medications, MentalHealth]);
        assert_eq!(classes("Observation?category=vital-signs,sensitive:genetics"), vec![General, Genetics]);
        // Exhaustive check on a grid of categories, both ways: every
        // matching record's class is in the set, and every class in the set
        // is the class of some matching record (no class is delegated that
        // no record in scope can need).
        let scopes = [
            "Observation?category=laboratory,sensitive:genetics",
            "Condition",
            "Observation",
            "Observation?category=vital-signs",
            "Observation?category=imaging",
            "Observation?category=laboratory,Observation?category=vital-signs",
            "Observation?category=vital-signs,sensitive:mental-health",
            "ImagingStudy,MedicationRequest?category=community",
            "Claim,sensitive:genetics,sensitive:substance-use",
        ];
        let code_sets: [&[&str]; 9] = [
            &[],
            &["laboratory"],
            &["imaging"],
            &["vital-signs"],
            &["community"],
            &["vital-signs", "laboratory"],
            &["vital-signs", "imaging"],
            &["imaging", "laboratory"],
            &["imaging", "laboratory", "vital-signs"],
        ];
        let label_sets: [&[SensitivityLabel]; 5] = [
            &[],
            &[SensitivityLabel::Genetics],
            &[SensitivityLabel::MentalHealth],
            &[SensitivityLabel::SubstanceUse],
            &[SensitivityLabel::Genetics, SensitivityLabel::SubstanceUse],
        ];
        for text in scopes {
            let s: Scope = text.parse().unwrap();
            let mut reached = BTreeSet::new();
            for rt in ["Observation", "Condition", "ImagingStudy", "MedicationRequest", "Claim"] {
                for codes in code_sets {
                    for labels in label_sets {
                        let c = cat(rt, codes, labels);
                        if s.matches(&c) {
                            reached.insert(c.key_class());
                        }
                    }
                }
            }
            assert_eq!(reached, s.key_classes(), "{text}");
        }
    }

    #[test]
    fn a_record_coded_into_another_class_is_refused_not_exposed() {
        // Coded both vital-signs and laboratory: a laboratory record.
        let both = cat("Observation", &["laboratory", "vital-signs"], &[]);
        assert_eq!(both.key_class(), KeyClass::Laboratory);
        let vitals: Scope = "Observation?category=vital-signs".parse().unwrap();
        assert_eq!(vitals.key_classes(), BTreeSet::from([KeyClass::General]));
        assert_eq!(vitals.check(&both), Err(Mismatch::OtherKeyClass));
        assert!(vitals.matches(&cat("Observation", &["vital-signs"], &[])));
        assert!(vitals.matches(&cat("Observation", &["social-history", "vital-signs"], &[])));
        let lab: Scope = "Observation?category=laboratory".parse().unwrap();
        assert!(lab.matches(&both));
        // Naming both codes reaches it through the laboratory code.
        let either: Scope =
            "Observation?category=laboratory,Observation?category=vital-signs".parse().unwrap();
        assert!(either.matches(&both));
        // The same for imaging, and laboratory wins over imaging.
        let img: Scope = "Observation?category=imaging".parse().unwrap();
        assert!(img.matches(&cat("Observation", &["imaging"], &[])));
        assert_eq!(
            img.check(&cat("Observation", &["imaging", "laboratory"], &[])),
            Err(Mismatch::OtherKeyClass)
        );
        // A label does not widen an entry: the record's codes still put it
        // in the laboratory class (and the class check comes first).
        let labelled = cat("Observation", &["laboratory", "vital-signs"], &[SensitivityLabel::MentalHealth]);
        let vitals_mh: Scope = "Observation?category=vital-signs,sensitive:mental-health".parse().unwrap();
        assert_eq!(vitals_mh.check(&labelled), Err(Mismatch::OtherKeyClass));
        assert!(vitals_mh.matches(&cat("Observation", &["vital-signs"], &[SensitivityLabel::MentalHealth])));
        let lab_mh: Scope = "Observation?category=laboratory,sensitive:mental-health".parse().unwrap();
        assert!(lab_mh.matches(&labelled));
        // A code that does not match at all stays plain out of scope.
        assert_eq!(vitals.check(&cat("Observation", &["laboratory"], &[])), Err(Mismatch::OutOfScope));
    }

    #[test]
    fn whole_type_entries_reach_every_class_as_before() {
        let obs: Scope = "Observation".parse().unwrap();
        for codes in [
            &[][..],
            &["laboratory"],
            &["imaging"],
            &["vital-signs", "laboratory"],
            &["imaging", "laboratory"],
        ] {
            assert!(obs.matches(&cat("Observation", codes, &[])), "{codes:?}");
        }
        let studies: Scope = "ImagingStudy".parse().unwrap();
        assert!(studies.matches(&cat("ImagingStudy", &["laboratory"], &[])));
        assert_eq!(studies.key_classes(), BTreeSet::from([KeyClass::Imaging]));
        // A type whose class ignores codes: listing a code keeps that class.
        let studies_ct: Scope = "ImagingStudy?category=laboratory".parse().unwrap();
        assert!(studies_ct.matches(&cat("ImagingStudy", &["laboratory"], &[])));
        assert_eq!(studies_ct.key_classes(), BTreeSet::from([KeyClass::Imaging]));
    }

    #[test]
    fn administrative_and_financial_types_are_named_like_any_other() {
        // Real exports carry Organization, Practitioner, Coverage, Claim and
        // ExplanationOfBenefit records; a scope names them by type, and a
        // claim labelled through its diagnosis stays excluded.
        let s: Scope = "Claim,ExplanationOfBenefit,Organization,Practitioner".parse().unwrap();
        assert!(s.matches(&cat("Claim", &[], &[])));
        assert!(s.matches(&cat("ExplanationOfBenefit", &[], &[])));
        assert!(s.matches(&cat("Organization", &[], &[])));
        assert!(!s.matches(&cat("Coverage", &[], &[])));
        assert_eq!(
            s.check(&cat("Claim", &[], &[SensitivityLabel::SubstanceUse])),
            Err(Mismatch::SensitiveExcluded)
        );
        // Unlabelled, they are in the general class (the rule also allows
        // for a laboratory or imaging category code on any type).
        assert_eq!(cat("Claim", &[], &[]).key_class(), KeyClass::General);
        let general = vec![KeyClass::General, KeyClass::Laboratory, KeyClass::Imaging];
        assert_eq!(s.key_classes().into_iter().collect::<Vec<_>>(), general);
        let with: Scope = "Claim,sensitive:substance-use".parse().unwrap();
        assert!(with.matches(&cat("Claim", &[], &[SensitivityLabel::SubstanceUse])));
        assert!(with.key_classes().contains(&KeyClass::SubstanceUse));
    }

    #[test]
    fn an_empty_scope_matches_nothing() {
        // Unconstructible through the API; checked here for fail-closed.
        let empty = Scope {
            entries: BTreeMap::new(),
            included: BTreeSet::from([SensitivityLabel::Genetics]),
            excluded: BTreeSet::new(),
        };
        assert!(!empty.matches(&cat("Observation", &[], &[])));
        assert!(!empty.matches(&cat("Observation", &[], &[SensitivityLabel::Genetics])));
        assert!(empty.key_classes().is_empty());
    }
}
