//! A chart for reading: the FHIR resources a doctor fetched (decrypted in
//! this process) turned into the sections a clinician scans first —
//! demographics, problems, medications, allergies, immunizations, a table
//! of lab results — and plots of vital signs and lab values over time.
//!
//! Reading is forgiving (a missing field shows as blank, an unknown
//! resource type is counted under "other records"); nothing here changes
//! or re-serializes a resource, and nothing leaves the process.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::svg::{self, Chart, Point, Series};

/// Most lab-value plots drawn (the values with the most measurements).
const MAX_LAB_PLOTS: usize = 4;
/// Lab results shown at once; older ones are behind a disclosure.
pub(crate) const RECENT_LABS: usize = 15;

/// Demographics from the Patient resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Demographics {
    pub(crate) name: String,
    pub(crate) gender: String,
    pub(crate) birth_date: String,
    pub(crate) deceased: String,
}

/// One line of a section (problem, medication, allergy, immunization).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) what: String,
    pub(crate) status: String,
    pub(crate) date: String,
    pub(crate) detail: String,
}

/// One lab result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LabRow {
    pub(crate) date: String,
    pub(crate) test: String,
    pub(crate) value: String,
    pub(crate) flag: String,
    pub(crate) range: String,
}

/// The chart of one patient.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClinicalChart {
    pub(crate) patient: Option<Demographics>,
    pub(crate) conditions: Vec<Entry>,
    pub(crate) medications: Vec<Entry>,
    pub(crate) allergies: Vec<Entry>,
    pub(crate) immunizations: Vec<Entry>,
    pub(crate) labs: Vec<LabRow>,
    pub(crate) vitals: Vec<Chart>,
    pub(crate) lab_plots: Vec<Chart>,
    /// Other resource types and how many of each.
    pub(crate) other: Vec<(String, usize)>,
}

/// A CodeableConcept as text: its `text`, else the first coding's
/// `display`, else its `code`.
pub(crate) fn concept_text(cc: Option<&Value>) -> String {
    let Some(cc) = cc else { return String::new() };
    if let Some(t) = cc.get("text").and_then(Value::as_str) {
        return t.to_owned();
    }
    let codings = cc.get("coding").and_then(Value::as_array);
    for c in codings.into_iter().flatten() {
        if let Some(d) = c.get("display").and_then(Value::as_str) {
            return d.to_owned();
        }
    }
    codings
        .into_iter()
        .flatten()
        .find_map(|c| c.get("code").and_then(Value::as_str))
        .unwrap_or_default()
        .to_owned()
}

fn codes_of(cc: Option<&Value>) -> Vec<&str> {
    cc.and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("code").and_then(Value::as_str))
        .collect()
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// A FHIR date or dateTime as a day number (days since 1970-01-01, with
/// the time of day as a fraction, in UTC when an offset is given).
pub(crate) fn parse_fhir_date(s: &str) -> Option<f64> {
    let s = s.trim();
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts = date.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next().map(str::parse).transpose().ok()?.unwrap_or(1);
    let d: u32 = parts.next().map(str::parse).transpose().ok()?.unwrap_or(1);
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1..=9999).contains(&y)
    {
        return None;
    }
    let mut day = svg::days_from_civil(y, m, d) as f64;
    if let Some(t) = time {
        let (clock, offset_min) = if let Some(c) = t.strip_suffix('Z') {
            (c, 0i64)
        } else if let Some(i) = t.rfind(['+', '-']) {
            let (c, off) = t.split_at(i);
            let sign = if off.starts_with('-') { -1 } else { 1 };
            let (oh, om) = off[1..].split_once(':')?;
            (c, sign * (oh.parse::<i64>().ok()? * 60 + om.parse::<i64>().ok()?))
        } else {
            (t, 0)
        };
        let mut hms = clock.split(':');
        let h: f64 = hms.next()?.parse().ok()?;
        let mi: f64 = hms.next().map(str::parse).transpose().ok()?.unwrap_or(0.0);
        let sec: f64 = hms.next().map(str::parse).transpose().ok()?.unwrap_or(0.0);
        day += (h * 3600.0 + mi * 60.0 + sec - offset_min as f64 * 60.0) / 86_400.0;
    }
    Some(day)
}

/// The first date among `fields` (each a dateTime or a Period's start).
fn date_of(v: &Value, fields: &[&str]) -> String {
    for f in fields {
        match v.get(*f) {
            Some(Value::String(s)) => return s.clone(),
            Some(p @ Value::Object(_)) => {
                if let Some(s) = p.get("start").and_then(Value::as_str) {
                    return s.to_owned();
                }
            }
            _ => {}
        }
    }
    String::new()
}

/// The date part of a dateTime, for tables.
fn day_text(s: &str) -> String {
    s.split('T').next().unwrap_or_default().to_owned()
}

fn categories(v: &Value) -> Vec<&str> {
    let concepts: Vec<&Value> = match v.get("category") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(c @ Value::Object(_)) => vec![c],
        _ => Vec::new(),
    };
    concepts.into_iter().flat_map(|c| codes_of(Some(c))).collect()
}

fn quantity(q: &Value) -> Option<(f64, String)> {
    let value = q.get("value").and_then(Value::as_f64)?;
    let unit = q
        .get("unit")
        .and_then(Value::as_str)
        .or_else(|| q.get("code").and_then(Value::as_str))
        .unwrap_or_default();
    Some((value, display_unit(unit)))
}

/// A unit as a clinician reads it. Exports often carry the UCUM code as
/// the unit text (`Cel`, `mm[Hg]`, `10*3/uL`, `{score}`): the common codes
/// get their usual symbols and annotations in braces are dropped (a unit
/// that is only an annotation, like `{score}`, is no unit).
pub(crate) fn display_unit(unit: &str) -> String {
    let unit = unit.trim();
    let special = match unit {
        "Cel" => Some("°C"),
        "[degF]" => Some("°F"),
        "mm[Hg]" => Some("mmHg"),
        "[lb_av]" => Some("lb"),
        "[in_i]" => Some("in"),
        "mL/min/{1.73_m2}" => Some("mL/min/1.73 m²"),
        _ => None,
    };
    if let Some(s) = special {
        return s.to_owned();
    }
    let mut out = String::with_capacity(unit.len());
    let mut depth = 0usize;
    for ch in unit.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(ch),
            _ => {}
        }
    }
    let out = out.trim_end_matches('/').trim();
    if out == "1" {
        return String::new();
    }
    let mut out = out
        .replace("10*3", "10³")
        .replace("10*6", "10⁶")
        .replace("10*9", "10⁹")
        .replace("10*12", "10¹²")
        .replace("m2", "m²");
    if out.contains("uL") || out.contains("ug") || out.contains("umol") || out.contains("uU") {
        out = out.replace("uL", "µL").replace("ug", "µg").replace("umol", "µmol").replace("uU", "µU");
    }
    out
}

/// An Observation's value as text.
fn value_text(obs: &Value) -> String {
    if let Some((v, unit)) = obs.get("valueQuantity").and_then(quantity) {
        return format!("{} {unit}", svg::num(v)).trim_end().to_owned();
    }
    if let Some(s) = obs.get("valueString").and_then(Value::as_str) {
        return s.to_owned();
    }
    if let Some(cc) = obs.get("valueCodeableConcept") {
        return concept_text(Some(cc));
    }
    if let Some(b) = obs.get("valueBoolean").and_then(Value::as_bool) {
        return b.to_string();
    }
    let comps: Vec<String> = obs
        .get("component")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let (v, unit) = c.get("valueQuantity").and_then(quantity)?;
            Some(format!("{}: {} {unit}", concept_text(c.get("code")), svg::num(v)))
        })
        .collect();
    comps.join("; ")
}

fn range_text(obs: &Value) -> String {
    let Some(r) = obs.get("referenceRange").and_then(Value::as_array).and_then(|a| a.first()) else {
        return String::new();
    };
    if let Some(t) = r.get("text").and_then(Value::as_str) {
        return t.to_owned();
    }
    let low = r.get("low").and_then(quantity);
    let high = r.get("high").and_then(quantity);
    match (low, high) {
        (Some((l, u)), Some((h, _))) => format!("{}–{} {u}", svg::num(l), svg::num(h)),
        (Some((l, u)), None) => format!("≥ {} {u}", svg::num(l)),
        (None, Some((h, u))) => format!("≤ {} {u}", svg::num(h)),
        (None, None) => String::new(),
    }
}

fn human_name(p: &Value) -> String {
    let Some(n) = p.get("name").and_then(Value::as_array).and_then(|a| a.first()) else {
        return String::new();
    };
    if let Some(t) = n.get("text").and_then(Value::as_str) {
        return t.to_owned();
    }
    let mut parts: Vec<&str> =
        n.get("given").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    if let Some(f) = n.get("family").and_then(Value::as_str) {
        parts.push(f);
    }
    parts.join(" ")
}

/// Numeric measurements of one kind, for plotting: series name → points,
/// with the unit.
#[derive(Default)]
struct Measurements {
    unit: String,
    series: BTreeMap<String, Vec<Point>>,
}

impl Measurements {
    fn count(&self) -> usize {
        self.series.values().map(Vec::len).sum()
    }

    fn chart(&self, id: &str, title: &str) -> Option<Chart> {
        let series: Vec<Series> = self
            .series
            .iter()
            .map(|(name, points)| Series { name: name.clone(), points: points.clone() })
            .collect();
        Chart::lines(id, title, &self.unit, &series)
    }
}

/// Adds an Observation's numeric values (its own, or its components') to
/// `into[title]`.
fn measure(obs: &Value, title: &str, into: &mut BTreeMap<String, Measurements>) {
    let Some(day) = parse_fhir_date(&date_of(obs, &["effectiveDateTime", "effectivePeriod", "issued"]))
    else {
        return;
    };
    if let Some((v, unit)) = obs.get("valueQuantity").and_then(quantity) {
        let m = into.entry(title.to_owned()).or_default();
        m.unit = unit;
        m.series.entry(title.to_owned()).or_default().push(Point { x: day, y: v });
        return;
    }
    for c in obs.get("component").and_then(Value::as_array).into_iter().flatten() {
        if let Some((v, unit)) = c.get("valueQuantity").and_then(quantity) {
            let m = into.entry(title.to_owned()).or_default();
            m.unit = unit;
            m.series.entry(concept_text(c.get("code"))).or_default().push(Point { x: day, y: v });
        }
    }
}

fn newest_first<T>(rows: &mut [(String, T)]) {
    rows.sort_by(|a, b| {
        let key = |s: &str| parse_fhir_date(s).unwrap_or(f64::NEG_INFINITY);
        key(&b.0).total_cmp(&key(&a.0))
    });
}

/// One line per vaccine (newest first): how many doses, the last date,
/// and the earlier ones.
fn group_immunizations(doses: Vec<Entry>) -> Vec<Entry> {
    let mut order: Vec<String> = Vec::new();
    let mut by_vaccine: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    for d in doses {
        if !by_vaccine.contains_key(&d.what) {
            order.push(d.what.clone());
        }
        by_vaccine.entry(d.what.clone()).or_default().push(d);
    }
    order
        .into_iter()
        .filter_map(|v| {
            let doses = by_vaccine.remove(&v)?;
            let last = doses.first()?;
            let earlier: Vec<&str> =
                doses.iter().skip(1).map(|d| d.date.as_str()).filter(|d| !d.is_empty()).collect();
            let status =
                if doses.len() == 1 { last.status.clone() } else { format!("{} doses", doses.len()) };
            Some(Entry {
                what: v,
                status,
                date: last.date.clone(),
                detail: if earlier.is_empty() {
                    String::new()
                } else {
                    format!("also {}", earlier.join(", "))
                },
            })
        })
        .collect()
}

impl ClinicalChart {
    /// Lab results newest first: the first [`RECENT_LABS`], and the rest.
    pub(crate) fn labs_split(&self) -> (&[LabRow], &[LabRow]) {
        self.labs.split_at(self.labs.len().min(RECENT_LABS))
    }

    /// Builds the chart from decoded FHIR resources.
    pub(crate) fn build(resources: &[Value]) -> Self {
        let mut chart = ClinicalChart::default();
        let mut conditions = Vec::new();
        let mut medications = Vec::new();
        let mut allergies = Vec::new();
        let mut immunizations = Vec::new();
        let mut labs = Vec::new();
        let mut vitals: BTreeMap<String, Measurements> = BTreeMap::new();
        let mut lab_values: BTreeMap<String, Measurements> = BTreeMap::new();
        let mut other: BTreeMap<String, usize> = BTreeMap::new();
        for r in resources {
            let rt = r.get("resourceType").and_then(Value::as_str).unwrap_or("(unknown)");
            match rt {
                "Patient" => {
                    chart.patient = Some(Demographics {
                        name: human_name(r),
                        gender: r.get("gender").and_then(Value::as_str).unwrap_or_default().to_owned(),
                        birth_date: r.get("birthDate").and_then(Value::as_str).unwrap_or_default().to_owned(),
                        deceased: match (r.get("deceasedDateTime"), r.get("deceasedBoolean")) {
                            (Some(Value::String(d)), _) => format!("deceased {}", day_text(d)),
                            (_, Some(Value::Bool(true))) => "deceased".into(),
                            _ => String::new(),
                        },
                    });
                }
                "Condition" => {
                    let date = date_of(r, &["onsetDateTime", "onsetPeriod", "recordedDate"]);
                    let abated = date_of(r, &["abatementDateTime", "abatementPeriod"]);
                    conditions.push((
                        date.clone(),
                        Entry {
                            what: concept_text(r.get("code")),
                            status: concept_text(r.get("clinicalStatus")),
                            date: day_text(&date),
                            detail: if abated.is_empty() {
                                String::new()
                            } else {
                                format!("resolved {}", day_text(&abated))
                            },
                        },
                    ));
                }
                "MedicationRequest"
                | "MedicationStatement"
                | "MedicationAdministration"
                | "MedicationDispense" => {
                    let what = match r.get("medicationCodeableConcept") {
                        Some(cc) => concept_text(Some(cc)),
                        None => str_at(r, &["medicationReference", "display"])
                            .unwrap_or("(medication)")
                            .to_owned(),
                    };
                    let date = date_of(
                        r,
                        &[
                            "authoredOn",
                            "effectiveDateTime",
                            "effectivePeriod",
                            "dateAsserted",
                            "whenHandedOver",
                        ],
                    );
                    let dosage = ["dosageInstruction", "dosage"]
                        .iter()
                        .find_map(|f| r.get(*f).and_then(Value::as_array).and_then(|a| a.first()))
                        .and_then(|d| d.get("text").and_then(Value::as_str))
                        .unwrap_or_default()
                        .to_owned();
                    medications.push((
                        date.clone(),
                        Entry {
                            what,
                            status: r.get("status").and_then(Value::as_str).unwrap_or_default().to_owned(),
                            date: day_text(&date),
                            detail: dosage,
                        },
                    ));
                }
                "AllergyIntolerance" => {
                    let reactions: Vec<String> = r
                        .get("reaction")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .flat_map(|x| x.get("manifestation").and_then(Value::as_array).into_iter().flatten())
                        .map(|m| concept_text(Some(m)))
                        .filter(|s| !s.is_empty())
                        .collect();
                    let criticality = r.get("criticality").and_then(Value::as_str).unwrap_or_default();
                    let date = date_of(r, &["onsetDateTime", "recordedDate"]);
                    let mut detail = reactions.join(", ");
                    if !criticality.is_empty() {
                        detail = if detail.is_empty() {
                            format!("criticality {criticality}")
                        } else {
                            format!("{detail} (criticality {criticality})")
                        };
                    }
                    allergies.push((
                        date.clone(),
                        Entry {
                            what: concept_text(r.get("code")),
                            status: concept_text(r.get("clinicalStatus")),
                            date: day_text(&date),
                            detail,
                        },
                    ));
                }
                "Immunization" => {
                    let date = date_of(r, &["occurrenceDateTime", "recorded"]);
                    immunizations.push((
                        date.clone(),
                        Entry {
                            what: concept_text(r.get("vaccineCode")),
                            status: r.get("status").and_then(Value::as_str).unwrap_or_default().to_owned(),
                            date: day_text(&date),
                            detail: String::new(),
                        },
                    ));
                }
                "Observation" => {
                    let cats = categories(r);
                    let title = concept_text(r.get("code"));
                    if cats.contains(&"vital-signs") {
                        measure(r, &title, &mut vitals);
                    } else if cats.contains(&"laboratory") {
                        let date = date_of(r, &["effectiveDateTime", "effectivePeriod", "issued"]);
                        let flag = r
                            .get("interpretation")
                            .and_then(Value::as_array)
                            .and_then(|a| a.first())
                            .map(|i| concept_text(Some(i)))
                            .unwrap_or_default();
                        labs.push((
                            date.clone(),
                            LabRow {
                                date: day_text(&date),
                                test: title.clone(),
                                value: value_text(r),
                                flag,
                                range: range_text(r),
                            },
                        ));
                        measure(r, &title, &mut lab_values);
                    } else {
                        *other.entry("Observation (other)".into()).or_default() += 1;
                    }
                }
                other_type => *other.entry(other_type.to_owned()).or_default() += 1,
            }
        }
        for list in [&mut conditions, &mut medications, &mut allergies, &mut immunizations] {
            newest_first(list);
        }
        newest_first(&mut labs);
        chart.conditions = conditions.into_iter().map(|(_, e)| e).collect();
        chart.medications = medications.into_iter().map(|(_, e)| e).collect();
        chart.allergies = allergies.into_iter().map(|(_, e)| e).collect();
        chart.immunizations = group_immunizations(immunizations.into_iter().map(|(_, e)| e).collect());
        chart.labs = labs.into_iter().map(|(_, l)| l).collect();
        chart.vitals = vitals
            .iter()
            .enumerate()
            .filter_map(|(i, (title, m))| m.chart(&format!("vital-{i}"), title))
            .collect();
        let mut plotted: Vec<(&String, &Measurements)> =
            lab_values.iter().filter(|(_, m)| m.count() >= 2).collect();
        plotted.sort_by(|a, b| b.1.count().cmp(&a.1.count()).then(a.0.cmp(b.0)));
        chart.lab_plots = plotted
            .into_iter()
            .take(MAX_LAB_PLOTS)
            .enumerate()
            .filter_map(|(i, (title, m))| m.chart(&format!("lab-{i}"), title))
            .collect();
        chart.other = other.into_iter().collect();
        chart
    }

    /// Whether nothing readable was found.
    pub(crate) fn is_empty(&self) -> bool {
        self.patient.is_none()
            && self.conditions.is_empty()
            && self.medications.is_empty()
            && self.allergies.is_empty()
            && self.immunizations.is_empty()
            && self.labs.is_empty()
            && self.vitals.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ucum_codes_read_as_clinicians_write_them() {
        for (code, shown) in [
            ("Cel", "°C"),
            ("[degF]", "°F"),
            ("mm[Hg]", "mmHg"),
            ("{score}", ""),
            ("1", ""),
            ("kg/m2", "kg/m²"),
            ("10*3/uL", "10³/µL"),
            ("10*12/L", "10¹²/L"),
            ("mL/min/{1.73_m2}", "mL/min/1.73 m²"),
            ("{beats}/min", "/min"),
            ("mg/dL", "mg/dL"),
            ("%", "%"),
        ] {
            assert_eq!(display_unit(code), shown, "{code}");
        }
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn fhir_dates_become_day_numbers() {
        let day = |y, m, d| svg::days_from_civil(y, m, d) as f64;
        assert_eq!(parse_fhir_date("2020"), Some(day(2020, 1, 1)));
        assert_eq!(parse_fhir_date("2020-03"), Some(day(2020, 3, 1)));
        assert_eq!(parse_fhir_date("2020-03-04"), Some(day(2020, 3, 4)));
        assert_eq!(parse_fhir_date("2020-03-04T12:00:00Z"), Some(day(2020, 3, 4) + 0.5));
        assert_eq!(parse_fhir_date("2020-03-04T14:00:00+02:00"), Some(day(2020, 3, 4) + 0.5));
        assert_eq!(parse_fhir_date("2020-03-04T06:00:00.000-06:00"), Some(day(2020, 3, 4) + 0.5));
        for bad in ["", "x", "2020-13-01", "2020-01-01-01", "2020-01-01Tnoon"] {
            assert_eq!(parse_fhir_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_chart_reads_each_section() {
        let resources = vec![
            json!({"resourceType":"Patient","id":"p","name":[{"given":["Ana","M"],"family":"Lee"}],
                   "gender":"female","birthDate":"1970-02-01"}),
            json!({"resourceType":"Condition","id":"c1","code":{"coding":[{"display":"Diabetes"}]},
                   "clinicalStatus":{"coding":[{"code":"active"}]},"onsetDateTime":"2015-04-01T00:00:00Z"}),
            json!({"resourceType":"Condition","id":"c2","code":{"text":"Sinusitis"},"onsetDateTime":"2019-01-01",
                   "abatementDateTime":"2019-02-01"}),
            json!({"resourceType":"MedicationRequest","id":"m","status":"active",
                   "medicationCodeableConcept":{"text":"Metformin 500 mg"},"authoredOn":"2015-04-02",
                   "dosageInstruction":[{"text":"twice daily"}]}),
            json!({"resourceType":"AllergyIntolerance","id":"a","code":{"text":"Peanut"},"criticality":"high",
                   "reaction":[{"manifestation":[{"text":"Hives"}]}]}),
            json!({"resourceType":"Immunization","id":"i","vaccineCode":{"text":"Influenza"},
                   "occurrenceDateTime":"2020-10-01","status":"completed"}),
            json!({"resourceType":"Observation","id":"o1","category":[{"coding":[{"code":"laboratory"}]}],
                   "code":{"text":"HbA1c"},"valueQuantity":{"value":7.4,"unit":"%"},
                   "effectiveDateTime":"2020-01-01","referenceRange":[{"low":{"value":4,"unit":"%"},"high":{"value":5.6,"unit":"%"}}],
                   "interpretation":[{"coding":[{"code":"H","display":"High"}]}]}),
            json!({"resourceType":"Observation","id":"o2","category":[{"coding":[{"code":"laboratory"}]}],
                   "code":{"text":"HbA1c"},"valueQuantity":{"value":6.9,"unit":"%"},"effectiveDateTime":"2021-01-01"}),
            json!({"resourceType":"Observation","id":"v1","category":[{"coding":[{"code":"vital-signs"}]}],
                   "code":{"text":"Blood pressure"},"effectiveDateTime":"2020-01-01",
                   "component":[{"code":{"text":"Systolic"},"valueQuantity":{"value":130,"unit":"mm[Hg]"}},
                                {"code":{"text":"Diastolic"},"valueQuantity":{"value":85,"unit":"mm[Hg]"}}]}),
            json!({"resourceType":"Encounter","id":"e"}),
            json!({"resourceType":"Observation","id":"s","category":[{"coding":[{"code":"social-history"}]}]}),
        ];
        let c = ClinicalChart::build(&resources);
        let p = c.patient.clone().expect("patient");
        assert_eq!(
            (p.name.as_str(), p.gender.as_str(), p.birth_date.as_str()),
            ("Ana M Lee", "female", "1970-02-01")
        );
        assert_eq!(c.conditions.len(), 2);
        assert_eq!(c.conditions[0].what, "Sinusitis", "newest first");
        assert_eq!(c.conditions[0].detail, "resolved 2019-02-01");
        assert_eq!(c.conditions[1].status, "active");
        assert_eq!(c.conditions[1].date, "2015-04-01");
        assert_eq!(c.medications[0].detail, "twice daily");
        assert_eq!(c.allergies[0].detail, "Hives (criticality high)");
        assert_eq!(c.immunizations[0].what, "Influenza");
        assert_eq!(c.immunizations[0].status, "completed");
        assert_eq!(c.labs.len(), 2);
        assert_eq!(c.labs[1].value, "7.4 %");
        assert_eq!(c.labs[1].range, "4–5.6 %");
        assert_eq!(c.labs[1].flag, "High");
        assert_eq!(c.vitals.len(), 1);
        let names: Vec<&str> = c.vitals[0].series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["Diastolic", "Systolic"]);
        assert_eq!(c.lab_plots.len(), 1, "HbA1c has two values");
        assert_eq!(c.other, [("Encounter".to_owned(), 1), ("Observation (other)".to_owned(), 1)]);
        assert!(!c.is_empty());
        assert!(ClinicalChart::build(&[]).is_empty());
    }

    #[test]
    fn immunizations_are_grouped_by_vaccine() {
        let dose = |id: &str, v: &str, d: &str| json!({"resourceType":"Immunization","id":id,"vaccineCode":{"text":v},"occurrenceDateTime":d,"status":"completed"});
        let c = ClinicalChart::build(&[
            dose("a", "Influenza", "2018-10-01"),
            dose("b", "MMR", "2019-01-01"),
            dose("c", "Influenza", "2020-10-01"),
            dose("d", "Influenza", "2019-10-01"),
        ]);
        assert_eq!(c.immunizations.len(), 2);
        assert_eq!(c.immunizations[0].what, "Influenza");
        assert_eq!(c.immunizations[0].status, "3 doses");
        assert_eq!(c.immunizations[0].date, "2020-10-01");
        assert_eq!(c.immunizations[0].detail, "also 2019-10-01, 2018-10-01");
        assert_eq!(c.immunizations[1].status, "completed");
    }

    #[test]
    fn odd_resources_do_not_break_the_chart() {
        let resources = vec![
            json!({"resourceType":"Observation","category":"not a concept","valueQuantity":{"value":"x"}}),
            json!({"resourceType":"Condition","code":7}),
            json!({"resourceType":"MedicationRequest","medicationReference":{"display":"Aspirin"}}),
            json!({"no":"type"}),
            json!([1, 2]),
        ];
        let c = ClinicalChart::build(&resources);
        assert_eq!(c.conditions[0].what, "");
        assert_eq!(c.medications[0].what, "Aspirin");
        assert!(c.other.iter().any(|(t, _)| t == "(unknown)"));
    }
}
