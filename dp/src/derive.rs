//! Derivation of a patient's summary from its own decrypted FHIR R4 resources.
//!
//! This runs on the patient's machine, over plaintext that never leaves it;
//! only the resulting summary is uploaded.

use serde_json::Value;

use crate::error::DeriveError;
use crate::schema::{CodeMatch, Derivation, FieldType, Schema};
use crate::summary::{FieldValue, Summary};

/// Most resources considered (after unpacking bundles).
pub const MAX_RESOURCES: usize = 100_000;

/// Derives `schema`'s summary from FHIR R4 resources (JSON objects; `Bundle`s
/// are unpacked one level deep).
///
/// Semantics per rule:
/// - `patient_birth_year` / `patient_gender`: from the Patient resource(s);
///   several Patients that disagree are an error.
/// - `latest_observation`: the latest matching Observation by
///   `effectiveDateTime` (else `effectivePeriod.start`, else `issued`;
///   undated ones rank below dated ones; among equal times the later one in
///   the input wins). Entered-in-error and cancelled ones are skipped.
/// - `condition_present`: true if any matching Condition is not refuted or
///   entered-in-error, false otherwise.
///
/// Fields with no source stay unknown (`null`). Values are not clamped here:
/// queries clamp them to the public bounds.
pub fn derive_summary(schema: &Schema, resources: &[Value]) -> Result<Summary, DeriveError> {
    let mut flat: Vec<&Value> = Vec::new();
    for (index, r) in resources.iter().enumerate() {
        let kind =
            r.get("resourceType").and_then(Value::as_str).ok_or(DeriveError::NotAResource { index })?;
        if kind == "Bundle" {
            let entries = r.get("entry").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            flat.extend(entries.iter().filter_map(|e| e.get("resource")));
        } else {
            flat.push(r);
        }
        if flat.len() > MAX_RESOURCES {
            return Err(DeriveError::TooManyResources { limit: MAX_RESOURCES, actual: flat.len() });
        }
    }
    let of_type = |t: &'static str| {
        flat.iter().copied().filter(move |r| r.get("resourceType").and_then(Value::as_str) == Some(t))
    };

    let mut values = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let value = match &field.derive {
            Derivation::PatientBirthYear => {
                let mut year = None;
                for p in of_type("Patient") {
                    let Some(date) = p.get("birthDate") else { continue };
                    let y = date
                        .as_str()
                        .and_then(parse_fhir_instant)
                        .map(|k| k.year)
                        .ok_or(DeriveError::BadBirthDate)?;
                    if year.is_some_and(|prev| prev != y) {
                        return Err(DeriveError::ConflictingPatients { what: "birthDate" });
                    }
                    year = Some(y);
                }
                year.map(FieldValue::Integer)
            }
            Derivation::PatientGender => {
                let mut gender: Option<&str> = None;
                for p in of_type("Patient") {
                    let Some(g) = p.get("gender").and_then(Value::as_str) else { continue };
                    // Codes outside the FHIR value set are recorded as "unknown".
                    let g = match g {
                        "female" | "male" | "other" | "unknown" => g,
                        _ => "unknown",
                    };
                    if gender.is_some_and(|prev| prev != g) {
                        return Err(DeriveError::ConflictingPatients { what: "gender" });
                    }
                    gender = Some(g);
                }
                gender.map(|g| FieldValue::Category(g.to_owned()))
            }
            Derivation::LatestObservation { codes, component_of, unit } => {
                let mut best: Option<(Option<SortKey>, f64)> = None;
                for obs in of_type("Observation") {
                    if matches!(
                        obs.get("status").and_then(Value::as_str),
                        Some("entered-in-error" | "cancelled")
                    ) {
                        continue;
                    }
                    let quantity = if has_code(obs.get("code"), codes) {
                        obs.get("valueQuantity")
                    } else if has_code(obs.get("code"), component_of) {
                        obs.get("component")
                            .and_then(Value::as_array)
                            .and_then(|cs| cs.iter().find(|c| has_code(c.get("code"), codes)))
                            .and_then(|c| c.get("valueQuantity"))
                    } else {
                        None
                    };
                    let Some(x) = quantity.and_then(|q| quantity_value(q, unit.as_deref())) else {
                        continue;
                    };
                    let key = observation_time(obs);
                    if best.as_ref().is_none_or(|(k, _)| key >= *k) {
                        best = Some((key, x));
                    }
                }
                best.map(|(_, x)| match field.field_type {
                    #[expect(clippy::cast_possible_truncation, reason = "rounded and range-checked")]
                    FieldType::Integer { .. } if x.round().abs() < 9.0e15 => {
                        FieldValue::Integer(x.round() as i64)
                    }
                    _ => FieldValue::Float(x),
                })
            }
            Derivation::ConditionPresent { codes } => {
                let present = of_type("Condition").any(|c| {
                    let verification = c
                        .get("verificationStatus")
                        .and_then(|v| v.get("coding"))
                        .and_then(Value::as_array)
                        .and_then(|cs| cs.first())
                        .and_then(|c| c.get("code"))
                        .and_then(Value::as_str);
                    !matches!(verification, Some("refuted" | "entered-in-error"))
                        && has_code(c.get("code"), codes)
                });
                Some(FieldValue::Bool(present))
            }
        };
        values.push(value);
    }
    Ok(Summary::from_parts(schema, values))
}

/// Whether a CodeableConcept has a coding matching one of `codes`.
fn has_code(concept: Option<&Value>, codes: &[CodeMatch]) -> bool {
    let Some(codings) = concept.and_then(|c| c.get("coding")).and_then(Value::as_array) else {
        return false;
    };
    codings.iter().any(|coding| {
        let system = coding.get("system").and_then(Value::as_str).unwrap_or_default();
        let code = coding.get("code").and_then(Value::as_str).unwrap_or_default();
        codes.iter().any(|m| m.matches(system, code))
    })
}

fn quantity_value(q: &Value, unit: Option<&str>) -> Option<f64> {
    if let Some(required) = unit {
        let code = q.get("code").and_then(Value::as_str);
        let text = q.get("unit").and_then(Value::as_str);
        if code != Some(required) && (code.is_some() || text != Some(required)) {
            return None;
        }
    }
    q.get("value").and_then(Value::as_f64).filter(|x| x.is_finite())
}

fn observation_time(obs: &Value) -> Option<SortKey> {
    obs.get("effectiveDateTime")
        .or_else(|| obs.get("effectivePeriod").and_then(|p| p.get("start")))
        .or_else(|| obs.get("issued"))
        .and_then(Value::as_str)
        .and_then(parse_fhir_instant)
}

/// A FHIR date/dateTime/instant reduced to a comparable point in time
/// (UTC seconds; partial dates mean the start of their period).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct SortKey {
    utc_seconds: i64,
    nanos: u32,
    year: i64,
}

fn parse_fhir_instant(s: &str) -> Option<SortKey> {
    let b = s.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    let year = num(0..4)?;
    let (mut month, mut day, mut secs, mut nanos, mut offset) = (1, 1, 0, 0u32, 0i64);
    let mut rest = &s[4..];
    if !rest.is_empty() {
        if b.get(4) != Some(&b'-') {
            return None;
        }
        month = num(5..7)?;
        rest = &s[7..];
        if !rest.is_empty() {
            if b.get(7) != Some(&b'-') {
                return None;
            }
            day = num(8..10)?;
            rest = &s[10..];
        }
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    if !rest.is_empty() {
        // "Thh:mm:ss(.fff)(Z|+hh:mm|-hh:mm)"
        if b.get(10) != Some(&b'T') || b.get(13) != Some(&b':') {
            return None;
        }
        let (h, m) = (num(11..13)?, num(14..16)?);
        let sec = if b.get(16) == Some(&b':') { num(17..19)? } else { 0 };
        if h > 23 || m > 59 || sec > 60 {
            return None;
        }
        secs = h * 3600 + m * 60 + sec;
        let mut i = if b.get(16) == Some(&b':') { 19 } else { 16 };
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            let digits = &s[start..i.min(start + 9)];
            let padded = format!("{digits:0<9}");
            nanos = padded.parse().ok()?;
        }
        match b.get(i) {
            Some(b'Z') if i + 1 == b.len() => {}
            Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b.get(i + 3) == Some(&b':') => {
                let off = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
                offset = if *sign == b'+' { off } else { -off };
            }
            None => {}
            _ => return None,
        }
    }
    let days = days_from_civil(year, month, day);
    Some(SortKey { utc_seconds: days * 86_400 + secs - offset, nanos, year })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn instants_order_across_offsets_and_precision() {
        let a = parse_fhir_instant("2024-03-01T10:00:00+02:00").unwrap();
        let b = parse_fhir_instant("2024-03-01T09:00:00Z").unwrap();
        assert!(a < b, "08:00Z is before 09:00Z");
        assert!(parse_fhir_instant("2024").unwrap() < parse_fhir_instant("2024-01-01T00:00:01Z").unwrap());
        assert_eq!(parse_fhir_instant("1980-07-15").unwrap().year, 1980);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for bad in
            ["", "19", "1980-13-01", "1980-1-01", "2024-03-01T25:00:00Z", "2024-03-01T10:00:00+0200", "abcd"]
        {
            assert!(parse_fhir_instant(bad).is_none(), "{bad}");
        }
    }
}
