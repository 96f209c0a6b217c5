//! Client side of the differential-privacy service: the patient's summary
//! preview and its clamping into the schema's public bounds, and the
//! analyst's query builder (the newcomer-friendly `count`, `median bmi`,
//! `--where sex=female,other` forms the CLI accepts, turned into
//! `medrelay_dp`'s [`Query`]).
//!
//! A summary is derived here, on the patient's machine, from the patient's
//! own decrypted FHIR records; only the [`SummaryDoc`] the patient saw and
//! confirmed leaves. The server refuses numeric values outside a field's
//! public bounds (so that what is stored is what queries use), so the
//! preview clamps them first and says which fields it clamped.

use std::path::Path;

use medrelay_dp::{
    Epsilon, Field, FieldType, Filter, Privacy, Query, Rho, Schema, Statistic, SummaryDoc, MAX_BINS,
};
use medrelay_wire::dp::SchemaInfo;
use serde::Serialize;

use crate::keystore::read_limited;
use crate::ClientError;

/// What `contribute` would submit: derived locally from the patient's own
/// decrypted records.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SummaryPreview {
    /// The schema's name.
    pub schema: String,
    /// The summary exactly as it would be submitted (already clamped).
    pub doc: SummaryDoc,
    /// How many of the patient's FHIR records it was derived from.
    pub records_used: usize,
    /// Fields whose derived value lay outside the schema's public bounds and
    /// was clamped into them.
    pub clamped: Vec<String>,
}

/// Parses the schema document a [`SchemaInfo`] carries, and checks that it
/// is the schema asked for.
pub fn parse_schema(info: &SchemaInfo, expected: &str) -> Result<Schema, ClientError> {
    let bytes = serde_json::to_vec(&info.schema)
        .map_err(|e| ClientError::Protocol(format!("schema {expected}: {e}")))?;
    let schema = Schema::from_json(&bytes)
        .map_err(|e| ClientError::Protocol(format!("the server's schema {expected} does not parse: {e}")))?;
    if info.name != expected || schema.name() != expected {
        return Err(ClientError::Protocol(format!("asked for schema {expected}, got {}", info.name)));
    }
    Ok(schema)
}

/// Clamps every numeric value of `doc` into its field's public bounds
/// (integer fields to the whole numbers within them) and returns the names
/// of the fields it changed, in schema order. Other fields are untouched.
pub fn clamp_summary(schema: &Schema, doc: &mut SummaryDoc) -> Vec<String> {
    let mut clamped = Vec::new();
    for field in schema.fields() {
        let Some((min, max)) = field.field_type.bounds() else { continue };
        let Some(Some(value)) = doc.values.get_mut(&field.name) else { continue };
        let replacement = match field.field_type {
            FieldType::Integer { .. } => clamp_integer(value, min, max),
            _ => value
                .as_f64()
                .filter(|x| *x < min || *x > max)
                .map(|x| serde_json::Value::from(x.clamp(min, max))),
        };
        if let Some(v) = replacement {
            *value = v;
            clamped.push(field.name.clone());
        }
    }
    clamped
}

/// The clamped value of an integer field, if it needs clamping.
#[expect(clippy::cast_possible_truncation, reason = "bounds are validated within ±2^53")]
fn clamp_integer(value: &serde_json::Value, min: f64, max: f64) -> Option<serde_json::Value> {
    let (lo, hi) = (min.ceil() as i64, max.floor() as i64);
    if let Some(i) = value.as_i64() {
        return (i < lo || i > hi).then(|| serde_json::Value::from(i.clamp(lo, hi)));
    }
    // A number that is not a whole number within i64 (the schema would
    // refuse it): the nearest whole number within the bounds.
    let x = value.as_f64()?;
    Some(serde_json::Value::from((x.round().clamp(min, max) as i64).clamp(lo, hi)))
}

/// What an analyst typed for one query, before it is checked against the
/// schema (see [`build_query`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryArgs {
    /// The statistic and its field(s): `count`, `sum FIELD`, `mean FIELD`,
    /// `median FIELD`, `quantile FIELD`, `histogram FIELD`, `variance FIELD`,
    /// `std-dev FIELD`, `correlation FIELD1 FIELD2`.
    pub statistic: Vec<String>,
    /// Filters: `FIELD=true|false` (bool), `FIELD=VALUE` or
    /// `FIELD=V1,V2,…` (category), `FIELD=LOW..HIGH`, `FIELD=LOW..`,
    /// `FIELD=..HIGH`, `FIELD=X`, `FIELD>=X`, `FIELD<=X` (numeric).
    pub filters: Vec<String>,
    /// ε to spend (pure DP).
    pub epsilon: Option<f64>,
    /// ρ to spend (zCDP).
    pub rho: Option<f64>,
    /// The quantile for `quantile` (in [0, 1]).
    pub alpha: Option<f64>,
    /// Histogram bins of a numeric field: a count (`5`: equal bins between
    /// the bounds) or strictly increasing edges (`18.5,25,30,40`).
    pub bins: Option<String>,
    /// Candidates for `median` / `quantile`.
    pub candidates: Option<usize>,
}

/// The statistics [`build_query`] understands, for help and error texts.
pub const STATISTICS: &str =
    "count, sum FIELD, mean FIELD, median FIELD, quantile FIELD --alpha A, histogram FIELD [--bins ..], \
     variance FIELD, std-dev FIELD, correlation FIELD1 FIELD2";

fn invalid(msg: impl Into<String>) -> ClientError {
    ClientError::Invalid(msg.into())
}

fn field_names(schema: &Schema) -> String {
    schema.fields().iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
}

fn lookup<'s>(schema: &'s Schema, name: &str) -> Result<&'s Field, ClientError> {
    schema.field(name).map(|(_, f)| f).ok_or_else(|| {
        invalid(format!("schema {} has no field {name:?} (fields: {})", schema.name(), field_names(schema)))
    })
}

fn number(text: &str, what: &str) -> Result<f64, ClientError> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| invalid(format!("{what}: {text:?} is not a number")))
}

/// Parses one `--where` filter against `schema` (see [`QueryArgs::filters`]).
pub fn parse_filter(schema: &Schema, text: &str) -> Result<Filter, ClientError> {
    let bad = |why: &str| invalid(format!("--where {text:?}: {why}"));
    let (name, op, value) = if let Some((n, v)) = text.split_once(">=") {
        (n, ">=", v)
    } else if let Some((n, v)) = text.split_once("<=") {
        (n, "<=", v)
    } else if let Some((n, v)) = text.split_once('=') {
        (n, "=", v)
    } else {
        return Err(bad("expected FIELD=VALUE, FIELD=LOW..HIGH, FIELD>=X or FIELD<=X"));
    };
    let (name, value) = (name.trim(), value.trim());
    let field = lookup(schema, name)?;
    let field_name = field.name.clone();
    match &field.field_type {
        FieldType::Bool {} => {
            if op != "=" {
                return Err(bad("a yes/no field takes FIELD=true or FIELD=false"));
            }
            let v = match value.to_ascii_lowercase().as_str() {
                "true" | "yes" => true,
                "false" | "no" => false,
                _ => return Err(bad("a yes/no field takes true or false")),
            };
            Ok(Filter::Is { field: field_name, value: serde_json::Value::Bool(v) })
        }
        FieldType::Category { values } => {
            if op != "=" {
                return Err(bad("a category field takes FIELD=VALUE or FIELD=V1,V2"));
            }
            let wanted: Vec<String> = value.split(',').map(|v| v.trim().to_owned()).collect();
            if let Some(unknown) = wanted.iter().find(|w| !values.contains(w)) {
                return Err(bad(&format!("{unknown:?} is not one of {}", values.join(", "))));
            }
            match <[String; 1]>::try_from(wanted) {
                Ok([one]) => Ok(Filter::Is { field: field_name, value: serde_json::Value::String(one) }),
                Err(many) => Ok(Filter::OneOf { field: field_name, values: many }),
            }
        }
        FieldType::Integer { .. } | FieldType::Float { .. } => {
            let what = format!("--where {text:?}");
            let (min, max) = match op {
                ">=" => (Some(number(value, &what)?), None),
                "<=" => (None, Some(number(value, &what)?)),
                _ => match value.split_once("..") {
                    Some((lo, hi)) => {
                        let lo = if lo.trim().is_empty() { None } else { Some(number(lo, &what)?) };
                        let hi = if hi.trim().is_empty() { None } else { Some(number(hi, &what)?) };
                        (lo, hi)
                    }
                    None => {
                        let x = number(value, &what)?;
                        (Some(x), Some(x))
                    }
                },
            };
            match (min, max) {
                (None, None) => return Err(bad("a range needs a low and/or a high end")),
                (Some(lo), Some(hi)) if lo > hi => return Err(bad("the low end is above the high end")),
                _ => {}
            }
            Ok(Filter::Range { field: field_name, min, max })
        }
    }
}

/// Histogram edges for a numeric field from `--bins` (a count or a list).
fn parse_bins(field: &Field, text: &str) -> Result<Vec<f64>, ClientError> {
    let Some((min, max)) = field.field_type.bounds() else {
        return Err(invalid(format!(
            "--bins applies to numeric fields; {} is a {} field (its values are the bins)",
            field.name,
            field.field_type.name()
        )));
    };
    if !text.contains(',') {
        let n: usize =
            text.trim().parse().ok().filter(|n| (1..=MAX_BINS).contains(n)).ok_or_else(|| {
                invalid(format!("--bins {text:?}: a bin count 1..={MAX_BINS} or edges a,b,c"))
            })?;
        #[expect(clippy::cast_precision_loss, reason = "at most MAX_BINS")]
        return Ok((0..=n).map(|k| min + (max - min) * k as f64 / n as f64).collect());
    }
    let edges = text.split(',').map(|e| number(e, "--bins")).collect::<Result<Vec<_>, _>>()?;
    if edges.len() < 2 || edges.windows(2).any(|w| w[0] >= w[1]) {
        return Err(invalid("--bins: edges must be at least two strictly increasing numbers"));
    }
    Ok(edges)
}

fn numeric_field(schema: &Schema, name: &str, statistic: &str) -> Result<String, ClientError> {
    let field = lookup(schema, name)?;
    if field.field_type.bounds().is_none() {
        return Err(invalid(format!(
            "{statistic} needs a numeric field; {} is a {} field",
            field.name,
            field.field_type.name()
        )));
    }
    Ok(field.name.clone())
}

/// Parses the statistic words (see [`QueryArgs::statistic`]) against `schema`.
pub fn parse_statistic(schema: &Schema, args: &QueryArgs) -> Result<Statistic, ClientError> {
    let words: Vec<&str> = args.statistic.iter().map(String::as_str).collect();
    let Some((&kind, fields)) = words.split_first() else {
        return Err(invalid(format!("which statistic? one of: {STATISTICS}")));
    };
    let kind = kind.to_ascii_lowercase().replace('_', "-");
    let arity = match kind.as_str() {
        "count" => 0,
        "correlation" => 2,
        "sum" | "mean" | "median" | "quantile" | "histogram" | "variance" | "std-dev" | "stddev" => 1,
        other => return Err(invalid(format!("unknown statistic {other:?}; one of: {STATISTICS}"))),
    };
    if fields.len() != arity {
        let need = match arity {
            0 => "no field".to_owned(),
            1 => "one field".to_owned(),
            _ => "two fields".to_owned(),
        };
        return Err(invalid(format!("{kind} takes {need}, got {}: {STATISTICS}", fields.len())));
    }
    if args.alpha.is_some() && kind != "quantile" {
        return Err(invalid("--alpha applies to quantile only"));
    }
    if args.bins.is_some() && kind != "histogram" {
        return Err(invalid("--bins applies to histogram only"));
    }
    if args.candidates.is_some() && kind != "quantile" && kind != "median" {
        return Err(invalid("--candidates applies to median and quantile only"));
    }
    let one = |stat: &str| numeric_field(schema, fields[0], stat);
    Ok(match kind.as_str() {
        "count" => Statistic::Count {},
        "sum" => Statistic::Sum { field: one("sum")? },
        "mean" => Statistic::Mean { field: one("mean")? },
        "variance" => Statistic::Variance { field: one("variance")? },
        "std-dev" | "stddev" => Statistic::StdDev { field: one("std-dev")? },
        "median" => Statistic::Median { field: one("median")?, candidates: args.candidates },
        "quantile" => {
            let alpha = args.alpha.ok_or_else(|| invalid("quantile needs --alpha (e.g. 0.9)"))?;
            if !(0.0..=1.0).contains(&alpha) {
                return Err(invalid("--alpha must be between 0 and 1"));
            }
            Statistic::Quantile { field: one("quantile")?, alpha, candidates: args.candidates }
        }
        "histogram" => {
            let field = lookup(schema, fields[0])?;
            let edges = args.bins.as_deref().map(|b| parse_bins(field, b)).transpose()?;
            Statistic::Histogram { field: field.name.clone(), edges }
        }
        _ => {
            let x = numeric_field(schema, fields[0], "correlation")?;
            let y = numeric_field(schema, fields[1], "correlation")?;
            if x == y {
                return Err(invalid("correlation needs two different fields"));
            }
            Statistic::Correlation { x, y }
        }
    })
}

/// The privacy parameter from `--epsilon` / `--rho` (exactly one).
pub fn parse_privacy(epsilon: Option<f64>, rho: Option<f64>) -> Result<Privacy, ClientError> {
    match (epsilon, rho) {
        (Some(e), None) => {
            Epsilon::new(e).map(Privacy::Epsilon).map_err(|e| invalid(format!("--epsilon: {e}")))
        }
        (None, Some(r)) => Rho::new(r).map(Privacy::Rho).map_err(|e| invalid(format!("--rho: {e}"))),
        (None, None) => {
            Err(invalid("say how much privacy budget to spend: --epsilon E (e.g. 0.1) or --rho R"))
        }
        (Some(_), Some(_)) => Err(invalid("give either --epsilon or --rho, not both")),
    }
}

/// Builds a [`Query`] from what the analyst typed, checked against `schema`
/// (fields exist and have the right type, categories are listed). The
/// server checks it again.
pub fn build_query(schema: &Schema, args: &QueryArgs) -> Result<Query, ClientError> {
    let privacy = parse_privacy(args.epsilon, args.rho)?;
    let statistic = parse_statistic(schema, args)?;
    if args.filters.len() > medrelay_dp::MAX_FILTERS {
        return Err(invalid(format!("at most {} --where filters", medrelay_dp::MAX_FILTERS)));
    }
    let filters = args.filters.iter().map(|f| parse_filter(schema, f)).collect::<Result<Vec<_>, _>>()?;
    Ok(Query { statistic, filters, privacy })
}

/// Reads a raw query document (`--query-file`): `medrelay_dp`'s [`Query`]
/// JSON, size-limited to [`medrelay_dp::MAX_QUERY_BYTES`].
pub fn read_query_file(path: &Path) -> Result<Query, ClientError> {
    let limit = medrelay_dp::MAX_QUERY_BYTES as u64;
    let bytes = read_limited(path, limit).map_err(|e| match e {
        ClientError::Profile { .. } => invalid(format!("{}: larger than {limit} bytes", path.display())),
        other => other,
    })?;
    Query::from_json(&bytes).map_err(|e| invalid(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        let mut doc: serde_json::Value = serde_json::from_str(medrelay_dp::HEALTH_BASICS_JSON).unwrap();
        doc["fields"].as_array_mut().unwrap().push(json!({
            "name": "smoker", "type": "bool",
            "derive": {"from": "condition_present", "codes": [{"system": "http://snomed.info/sct", "code": "77176002"}]}
        }));
        Schema::from_json(&serde_json::to_vec(&doc).unwrap()).unwrap()
    }

    fn filter(text: &str) -> Filter {
        parse_filter(&schema(), text).unwrap()
    }

    fn refused(text: &str) -> String {
        match parse_filter(&schema(), text) {
            Err(ClientError::Invalid(m)) => m,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn where_forms_become_filters() {
        assert_eq!(filter("smoker=true"), Filter::Is { field: "smoker".into(), value: json!(true) });
        assert_eq!(filter("diabetes=no"), Filter::Is { field: "diabetes".into(), value: json!(false) });
        assert_eq!(filter("sex=female"), Filter::Is { field: "sex".into(), value: json!("female") });
        assert_eq!(
            filter("sex=female,other"),
            Filter::OneOf { field: "sex".into(), values: vec!["female".into(), "other".into()] }
        );
        assert_eq!(
            filter("bmi=18.5..25"),
            Filter::Range { field: "bmi".into(), min: Some(18.5), max: Some(25.0) }
        );
        assert_eq!(filter("bmi=30.."), Filter::Range { field: "bmi".into(), min: Some(30.0), max: None });
        assert_eq!(filter("bmi=..25"), Filter::Range { field: "bmi".into(), min: None, max: Some(25.0) });
        assert_eq!(filter("bmi>=30"), Filter::Range { field: "bmi".into(), min: Some(30.0), max: None });
        assert_eq!(
            filter("birth_year<=1960"),
            Filter::Range { field: "birth_year".into(), min: None, max: Some(1960.0) }
        );
        assert_eq!(
            filter("birth_year=1968"),
            Filter::Range { field: "birth_year".into(), min: Some(1968.0), max: Some(1968.0) }
        );
        // The JSON shapes are exactly medrelay_dp's.
        let json = serde_json::to_value(filter("sex=female,other")).unwrap();
        assert_eq!(json, json!({"op": "one_of", "field": "sex", "values": ["female", "other"]}));
        let json = serde_json::to_value(filter("bmi=..25")).unwrap();
        assert_eq!(json, json!({"op": "range", "field": "bmi", "min": null, "max": 25.0}));
    }

    #[test]
    fn bad_where_forms_are_refused_with_the_reason() {
        assert!(refused("weight=80").contains("has no field \"weight\" (fields: birth_year, sex"));
        assert!(refused("smoker=maybe").contains("true or false"));
        assert!(refused("smoker>=1").contains("FIELD=true"));
        assert!(refused("sex=female,robot").contains("\"robot\" is not one of female, male, other, unknown"));
        assert!(refused("bmi=25..18").contains("low end is above the high end"));
        assert!(refused("bmi=..").contains("low and/or a high end"));
        assert!(refused("bmi=fat").contains("not a number"));
        assert!(refused("bmi=NaN").contains("not a number"));
        assert!(refused("bmi").contains("expected FIELD=VALUE"));
    }

    fn args(words: &[&str]) -> QueryArgs {
        QueryArgs {
            statistic: words.iter().map(|w| (*w).to_owned()).collect(),
            epsilon: Some(0.5),
            ..QueryArgs::default()
        }
    }

    #[test]
    fn statistics_and_privacy_become_a_query() {
        let s = schema();
        let q =
            build_query(&s, &QueryArgs { filters: vec!["smoker=true".into()], ..args(&["count"]) }).unwrap();
        assert_eq!(
            serde_json::to_value(&q).unwrap(),
            json!({"statistic": {"kind": "count"},
                   "filters": [{"op": "is", "field": "smoker", "value": true}],
                   "privacy": {"epsilon": 0.5}})
        );
        // What we build is what the server parses.
        let round = Query::from_json(&serde_json::to_vec(&q).unwrap()).unwrap();
        assert_eq!(round, q);
        medrelay_dp::plan(&s, &q).unwrap();

        let stat = |a: QueryArgs| parse_statistic(&s, &a).unwrap();
        assert_eq!(
            stat(args(&["median", "bmi"])),
            Statistic::Median { field: "bmi".into(), candidates: None }
        );
        assert_eq!(
            stat(QueryArgs { alpha: Some(0.9), ..args(&["quantile", "systolic_bp"]) }),
            Statistic::Quantile { field: "systolic_bp".into(), alpha: 0.9, candidates: None }
        );
        assert_eq!(stat(args(&["std-dev", "bmi"])), Statistic::StdDev { field: "bmi".into() });
        assert_eq!(stat(args(&["std_dev", "bmi"])), Statistic::StdDev { field: "bmi".into() });
        assert_eq!(
            stat(args(&["correlation", "bmi", "systolic_bp"])),
            Statistic::Correlation { x: "bmi".into(), y: "systolic_bp".into() }
        );
        assert_eq!(
            stat(args(&["histogram", "sex"])),
            Statistic::Histogram { field: "sex".into(), edges: None }
        );
        assert_eq!(
            stat(QueryArgs { bins: Some("3".into()), ..args(&["histogram", "bmi"]) }),
            Statistic::Histogram { field: "bmi".into(), edges: Some(vec![10.0, 30.0, 50.0, 70.0]) }
        );
        assert_eq!(
            stat(QueryArgs { bins: Some("18.5,25,30".into()), ..args(&["histogram", "bmi"]) }),
            Statistic::Histogram { field: "bmi".into(), edges: Some(vec![18.5, 25.0, 30.0]) }
        );
        let q =
            build_query(&s, &QueryArgs { epsilon: None, rho: Some(0.01), ..args(&["mean", "bmi"]) }).unwrap();
        assert_eq!(serde_json::to_value(q.privacy).unwrap(), json!({"rho": 0.01}));
    }

    #[test]
    fn bad_statistics_are_refused_with_the_reason() {
        let s = schema();
        let err = |a: QueryArgs| match build_query(&s, &a) {
            Err(ClientError::Invalid(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(err(args(&[])).contains("which statistic?"));
        assert!(err(args(&["average", "bmi"])).contains("unknown statistic \"average\""));
        assert!(err(args(&["count", "bmi"])).contains("count takes no field"));
        assert!(err(args(&["mean"])).contains("mean takes one field"));
        assert!(err(args(&["mean", "sex"])).contains("needs a numeric field; sex is a category field"));
        assert!(err(args(&["quantile", "bmi"])).contains("needs --alpha"));
        assert!(err(QueryArgs { alpha: Some(1.5), ..args(&["quantile", "bmi"]) }).contains("between 0 and 1"));
        assert!(err(QueryArgs { alpha: Some(0.5), ..args(&["mean", "bmi"]) }).contains("quantile only"));
        assert!(err(QueryArgs { bins: Some("3".into()), ..args(&["histogram", "sex"]) })
            .contains("numeric fields"));
        assert!(err(QueryArgs { bins: Some("30,20".into()), ..args(&["histogram", "bmi"]) })
            .contains("increasing"));
        assert!(err(args(&["correlation", "bmi", "bmi"])).contains("two different fields"));
        assert!(err(QueryArgs { epsilon: None, ..args(&["count"]) }).contains("--epsilon E"));
        assert!(err(QueryArgs { rho: Some(0.1), ..args(&["count"]) }).contains("not both"));
        assert!(err(QueryArgs { epsilon: Some(-1.0), ..args(&["count"]) }).contains("--epsilon: "));
    }

    #[test]
    fn clamping_pulls_out_of_bounds_values_in_and_names_the_fields() {
        let s = Schema::health_basics();
        let mut doc = SummaryDoc {
            schema: "health-basics".into(),
            values: [
                ("birth_year".to_owned(), Some(json!(1850))),
                ("sex".to_owned(), Some(json!("female"))),
                ("systolic_bp".to_owned(), Some(json!(120.5))),
                ("bmi".to_owned(), Some(json!(82.25))),
                ("diabetes".to_owned(), Some(json!(true))),
                ("hypertension".to_owned(), None),
            ]
            .into_iter()
            .collect(),
        };
        let clamped = clamp_summary(&s, &mut doc);
        assert_eq!(clamped, vec!["birth_year".to_owned(), "bmi".to_owned()]);
        assert_eq!(doc.values["birth_year"], Some(json!(1900)));
        assert_eq!(doc.values["bmi"], Some(json!(70.0)));
        assert_eq!(doc.values["systolic_bp"], Some(json!(120.5)), "in bounds: unchanged");
        assert_eq!(doc.values["sex"], Some(json!("female")));
        assert_eq!(doc.values["hypertension"], None);
        // The result is what the server accepts: valid, every number in bounds.
        let summary = medrelay_dp::Summary::validate(&s, &doc).unwrap();
        assert_eq!(summary.to_doc(&s).values["birth_year"], Some(json!(1900)));
        // Clamping twice changes nothing more.
        assert!(clamp_summary(&s, &mut doc).is_empty());

        // Lower float bound and upper integer bound; values at the bounds stay.
        let mut doc = SummaryDoc {
            schema: "health-basics".into(),
            values: [
                ("birth_year".to_owned(), Some(json!(2031))),
                ("systolic_bp".to_owned(), Some(json!(12))),
                ("bmi".to_owned(), Some(json!(10.0))),
            ]
            .into_iter()
            .collect(),
        };
        assert_eq!(clamp_summary(&s, &mut doc), vec!["birth_year".to_owned(), "systolic_bp".to_owned()]);
        assert_eq!(doc.values["birth_year"], Some(json!(2030)));
        assert_eq!(doc.values["systolic_bp"], Some(json!(60.0)));
        assert_eq!(doc.values["bmi"], Some(json!(10.0)));
        // A fractional value in an integer field becomes a whole number in bounds.
        let mut doc = SummaryDoc {
            schema: "health-basics".into(),
            values: [("birth_year".to_owned(), Some(json!(1e300)))].into_iter().collect(),
        };
        assert_eq!(clamp_summary(&s, &mut doc), vec!["birth_year".to_owned()]);
        assert_eq!(doc.values["birth_year"], Some(json!(2030)));
    }
}
