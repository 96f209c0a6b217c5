//! The analyst's app: the query builder (statistic and fields from the
//! schema, filters, ε), answers with their accuracy and mechanisms,
//! histograms as charts, and the remaining budget. Every answer is asked
//! through `medrelay_client::Analyst::query`, so the server debits the
//! budget durably before it answers, exactly as for the CLI.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use actix_web::{web, HttpResponse};
use askama::Template;
use medrelay_client::dp::{build_query, parse_schema, QueryArgs};
use medrelay_client::time::{format_utc, now};
use medrelay_client::Analyst;
use medrelay_dp::{FieldType, Schema};
use medrelay_wire::dp::{Accuracy, AnswerValue, BudgetStatus, DpAnswer, Mechanism, PrivacyCost, SchemaInfo};

use crate::page::{self, blocking, Ctx, Flash, Layout, PageError};
use crate::svg::{num, Bar, Chart};

/// The analyst's navigation.
pub(crate) const NAV: &[(&str, &str)] = &[("/", "Ask a question"), ("/studies", "Private studies")];

/// Most answers kept on the page.
const MAX_ANSWERS: usize = 20;

/// A schema field as people read it.
#[derive(Clone, Debug)]
pub(crate) struct FieldView {
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    pub(crate) values: String,
    pub(crate) description: String,
    /// Category values (for filters), empty otherwise.
    pub(crate) choices: Vec<String>,
    pub(crate) numeric: bool,
    pub(crate) boolean: bool,
}

fn views_of(schema: &Schema) -> Vec<FieldView> {
    schema
        .fields()
        .iter()
        .map(|f| {
            let (values, choices, numeric, boolean) = match &f.field_type {
                FieldType::Bool {} => ("true, false".to_owned(), Vec::new(), false, true),
                FieldType::Category { values } => (values.join(", "), values.clone(), false, false),
                FieldType::Integer { min, max } | FieldType::Float { min, max } => {
                    (format!("{}–{}", num(*min), num(*max)), Vec::new(), true, false)
                }
            };
            FieldView {
                name: f.name.clone(),
                kind: f.field_type.name(),
                values,
                description: f.description.clone(),
                choices,
                numeric,
                boolean,
            }
        })
        .collect()
}

/// The fields of a schema the server lists (empty if it does not parse).
pub(crate) fn field_views(info: &SchemaInfo) -> Vec<FieldView> {
    parse_schema(info, &info.name).map(|s| views_of(&s)).unwrap_or_default()
}

/// One answer as shown.
#[derive(Clone, Debug)]
struct AnswerView {
    n: usize,
    schema: String,
    question: String,
    value: Option<String>,
    accuracy: String,
    chart: Option<Chart>,
    components: Vec<[String; 4]>,
    cost: String,
    budget_after: String,
    log_index: u64,
    at: String,
}

/// The analyst app's state.
pub(crate) struct AnalystApp {
    pub(crate) analyst: Arc<Analyst>,
    answers: Mutex<Vec<AnswerView>>,
}

impl std::fmt::Debug for AnalystApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalystApp").finish_non_exhaustive()
    }
}

impl AnalystApp {
    pub(crate) fn new(analyst: Analyst) -> Self {
        Self { analyst: Arc::new(analyst), answers: Mutex::new(Vec::new()) }
    }
}

/// Routes of the analyst app.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home)).route("/query", web::post().to(ask));
    crate::studies::routes(cfg);
}

const STATISTICS: &[(&str, &str)] = &[
    ("count", "Count"),
    ("sum", "Sum"),
    ("mean", "Mean"),
    ("median", "Median"),
    ("quantile", "Quantile"),
    ("histogram", "Histogram"),
    ("variance", "Variance"),
    ("std-dev", "Standard deviation"),
    ("correlation", "Correlation"),
];

/// What the query form sent (repeated keys for category filters).
#[derive(Clone, Debug, Default)]
struct QueryForm {
    schema: String,
    statistic: String,
    field: String,
    field2: String,
    alpha: String,
    bins: String,
    epsilon: String,
    /// Field → filter parts: bool value, category values, min, max.
    is: BTreeMap<String, String>,
    any_of: BTreeMap<String, Vec<String>>,
    min: BTreeMap<String, String>,
    max: BTreeMap<String, String>,
}

impl QueryForm {
    fn from_pairs(pairs: &[(String, String)]) -> Self {
        let mut f = QueryForm::default();
        for (k, v) in pairs {
            let v = v.trim();
            match k.as_str() {
                "schema" => f.schema = v.to_owned(),
                "statistic" => f.statistic = v.to_owned(),
                "field" => f.field = v.to_owned(),
                "field2" => f.field2 = v.to_owned(),
                "alpha" => f.alpha = v.to_owned(),
                "bins" => f.bins = v.to_owned(),
                "epsilon" => f.epsilon = v.to_owned(),
                _ if v.is_empty() => {}
                other => {
                    if let Some(field) = other.strip_prefix("is.") {
                        f.is.insert(field.to_owned(), v.to_owned());
                    } else if let Some(field) = other.strip_prefix("in.") {
                        f.any_of.entry(field.to_owned()).or_default().push(v.to_owned());
                    } else if let Some(field) = other.strip_prefix("min.") {
                        f.min.insert(field.to_owned(), v.to_owned());
                    } else if let Some(field) = other.strip_prefix("max.") {
                        f.max.insert(field.to_owned(), v.to_owned());
                    }
                }
            }
        }
        f
    }

    /// The CLI's query arguments for this form (the same parser builds
    /// the query).
    fn args(&self) -> Result<QueryArgs, String> {
        if self.statistic.is_empty() {
            return Err("pick a statistic".into());
        }
        let mut statistic = vec![self.statistic.clone()];
        if self.statistic != "count" {
            if self.field.is_empty() {
                return Err(format!("pick the field for the {}", self.statistic));
            }
            statistic.push(self.field.clone());
        }
        if self.statistic == "correlation" {
            if self.field2.is_empty() {
                return Err("pick the second field of the correlation".into());
            }
            statistic.push(self.field2.clone());
        }
        let mut filters = Vec::new();
        for (field, v) in &self.is {
            filters.push(format!("{field}={v}"));
        }
        for (field, values) in &self.any_of {
            filters.push(format!("{field}={}", values.join(",")));
        }
        let fields: std::collections::BTreeSet<&String> = self.min.keys().chain(self.max.keys()).collect();
        for field in fields {
            let lo = self.min.get(field).map(String::as_str).unwrap_or_default();
            let hi = self.max.get(field).map(String::as_str).unwrap_or_default();
            filters.push(format!("{field}={lo}..{hi}"));
        }
        let number = |what: &str, s: &str| -> Result<Option<f64>, String> {
            if s.is_empty() {
                return Ok(None);
            }
            s.parse::<f64>().map(Some).map_err(|_| format!("{what} must be a number, not {s:?}"))
        };
        let epsilon = number("ε", &self.epsilon)?.ok_or("say how much ε to spend")?;
        Ok(QueryArgs {
            statistic,
            filters,
            epsilon: Some(epsilon),
            rho: None,
            alpha: if self.statistic == "quantile" { number("the quantile", &self.alpha)? } else { None },
            bins: (self.statistic == "histogram" && !self.bins.is_empty()).then(|| self.bins.clone()),
            candidates: None,
        })
    }

    /// The question in words.
    fn question(&self, args: &QueryArgs) -> String {
        let mut q = args.statistic.join(" ");
        if let Some(a) = args.alpha {
            q.push_str(&format!(" (α = {})", num(a)));
        }
        if let Some(b) = &args.bins {
            q.push_str(&format!(" (bins {b})"));
        }
        if !args.filters.is_empty() {
            q.push_str(" where ");
            q.push_str(&args.filters.join(" and "));
        }
        q
    }
}

fn cost_text(cost: &PrivacyCost) -> String {
    match cost {
        PrivacyCost::Epsilon(e) => format!("ε = {}", num(*e)),
        PrivacyCost::Rho(r) => format!("ρ = {}", num(*r)),
    }
}

fn mechanism_text(m: Mechanism) -> String {
    serde_json::to_value(m).ok().and_then(|v| v.as_str().map(|s| s.replace('_', " "))).unwrap_or_default()
}

fn accuracy_text(a: &Accuracy) -> String {
    match a {
        Accuracy::Interval { confidence, low, high, guaranteed } => format!(
            "The true value is in [{}, {}] with {}% confidence{}",
            num(*low),
            num(*high),
            num(confidence * 100.0),
            if *guaranteed { "" } else { " (estimate)" }
        ),
        Accuracy::PerBin { confidence, half_width } => format!(
            "Every bin's true count is within ±{} of its bar (all bins together, {}% confidence)",
            num(*half_width),
            num(confidence * 100.0)
        ),
        Accuracy::Rank { confidence, within } => format!(
            "At most {} patients off the target rank, with {}% confidence (plus the candidate spacing)",
            num(*within),
            num(confidence * 100.0)
        ),
    }
}

fn answer_view(n: usize, question: String, a: &DpAnswer) -> AnswerView {
    let ans = &a.answer;
    let (value, chart) = match &ans.value {
        AnswerValue::Scalar(x) => (Some(num(*x)), None),
        AnswerValue::Histogram(bins) => {
            let pm = match ans.accuracy {
                Accuracy::PerBin { half_width, .. } => Some(half_width),
                _ => None,
            };
            let bars: Vec<Bar> = bins
                .iter()
                .map(|b| Bar { label: b.label.clone(), value: b.count as f64, plus_minus: pm })
                .collect();
            (None, Chart::bars(&format!("answer-{n}"), "Noisy count per bin", "patients", &bars))
        }
    };
    AnswerView {
        n,
        schema: ans.schema.clone(),
        question,
        value,
        accuracy: accuracy_text(&ans.accuracy),
        chart,
        components: ans
            .components
            .iter()
            .map(|c| [c.name.clone(), mechanism_text(c.mechanism), num(c.scale), cost_text(&c.cost)])
            .collect(),
        cost: cost_text(&ans.cost),
        budget_after: format!("{} of {}", num(a.budget.remaining_epsilon), num(a.budget.total_epsilon)),
        log_index: a.log_index,
        at: format_utc(now()),
    }
}

#[derive(Clone, Debug)]
struct BudgetView {
    total: String,
    spent: String,
    remaining: String,
    queries: u64,
    spent_raw: f64,
    total_raw: f64,
}

fn budget_view(b: &BudgetStatus) -> BudgetView {
    BudgetView {
        total: num(b.total_epsilon),
        spent: num(b.spent_epsilon),
        remaining: num(b.remaining_epsilon),
        queries: b.queries,
        spent_raw: b.spent_epsilon,
        total_raw: b.total_epsilon.max(f64::MIN_POSITIVE),
    }
}

#[derive(Template)]
#[template(path = "analyst_home.html")]
struct Home {
    layout: Layout,
    schemas: Vec<(String, String)>,
    schema: String,
    description: String,
    fields: Vec<FieldView>,
    budget: Option<BudgetView>,
    statistics: &'static [(&'static str, &'static str)],
    form: QueryForm,
    answers: Vec<AnswerView>,
}

#[derive(serde::Deserialize)]
struct SchemaQuery {
    #[serde(default)]
    schema: String,
}

async fn home(
    ctx: Ctx,
    app: web::Data<AnalystApp>,
    q: web::Query<SchemaQuery>,
) -> Result<HttpResponse, PageError> {
    let a = Arc::clone(&app.analyst);
    let wanted = q.schema.clone();
    let (schemas, chosen, budget) = blocking(move || {
        let schemas = a.schemas()?;
        let chosen = schemas.iter().find(|s| s.name == wanted).or_else(|| schemas.first()).cloned();
        let budget = match &chosen {
            Some(s) => Some(a.budget(&s.name)?),
            None => None,
        };
        Ok((schemas, chosen, budget))
    })
    .await
    .map_err(ctx.fail())?;
    let schema = chosen.as_ref().map(|s| s.name.clone()).unwrap_or_default();
    let answers: Vec<AnswerView> = app
        .answers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter(|a| a.schema == schema)
        .cloned()
        .collect();
    page::ok(&Home {
        layout: ctx.layout("Ask a differentially private question"),
        schemas: schemas.iter().map(|s| (s.name.clone(), s.description.clone())).collect(),
        description: chosen.as_ref().map(|s| s.description.clone()).unwrap_or_default(),
        fields: chosen.as_ref().map(field_views).unwrap_or_default(),
        budget: budget.as_ref().map(budget_view),
        statistics: STATISTICS,
        form: QueryForm {
            schema: schema.clone(),
            statistic: "count".into(),
            epsilon: "0.1".into(),
            ..Default::default()
        },
        schema,
        answers,
    })
}

async fn ask(
    ctx: Ctx,
    app: web::Data<AnalystApp>,
    body: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, PageError> {
    let form = QueryForm::from_pairs(&body);
    let back = format!("/?schema={}", crate::page::url_part(&form.schema));
    let args = match form.args() {
        Ok(a) => a,
        Err(problem) => return Ok(ctx.redirect_with(&back, Flash::problem(format!("Not asked: {problem}.")))),
    };
    let question = form.question(&args);
    let a = Arc::clone(&app.analyst);
    let schema = form.schema.clone();
    let result = web::block(move || {
        let query = build_query(&a.schema(&schema)?, &args)?;
        a.query(&schema, &query)
    })
    .await
    .map_err(|e| ctx.fail()(crate::page::Problem::from(e)))?;
    match result {
        Ok(answer) => {
            let mut answers = app.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = answers.iter().map(|a| a.n).max().unwrap_or(0) + 1;
            answers.insert(0, answer_view(n, question, &answer));
            answers.truncate(MAX_ANSWERS);
            Ok(ctx.redirect_with(
                &format!("{back}#answer-{n}"),
                Flash::ok(format!(
                    "Answered; {} spent, ε {} left.",
                    cost_text(&answer.answer.cost),
                    num(answer.budget.remaining_epsilon)
                )),
            ))
        }
        // A refused or malformed question is the analyst's to fix: say so
        // on the builder (the server spent nothing).
        Err(e) => Ok(ctx.redirect_with(&back, Flash::problem(format!("Not answered: {e}")))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn the_form_becomes_the_clis_arguments() {
        let f = QueryForm::from_pairs(&pairs(&[
            ("schema", "health-basics"),
            ("statistic", "median"),
            ("field", "bmi"),
            ("epsilon", "0.25"),
            ("is.diabetes", "true"),
            ("is.smoker", ""),
            ("in.sex", "female"),
            ("in.sex", "other"),
            ("min.birth_year", "1950"),
            ("max.systolic_bp", "140"),
        ]));
        let args = f.args().expect("args");
        assert_eq!(args.statistic, ["median", "bmi"]);
        assert_eq!(args.epsilon, Some(0.25));
        assert_eq!(
            args.filters,
            ["diabetes=true", "sex=female,other", "birth_year=1950..", "systolic_bp=..140"]
        );
        assert_eq!(
            f.question(&args),
            "median bmi where diabetes=true and sex=female,other and birth_year=1950.. and systolic_bp=..140"
        );
    }

    #[test]
    fn incomplete_forms_say_what_is_missing() {
        let f = QueryForm::from_pairs(&pairs(&[("statistic", "mean"), ("epsilon", "0.1")]));
        assert!(f.args().unwrap_err().contains("field"));
        let f = QueryForm::from_pairs(&pairs(&[("statistic", "count"), ("epsilon", "lots")]));
        assert!(f.args().unwrap_err().contains("number"));
        let f = QueryForm::from_pairs(&pairs(&[("statistic", "count")]));
        assert!(f.args().unwrap_err().contains("ε"));
        let f = QueryForm::from_pairs(&pairs(&[
            ("statistic", "correlation"),
            ("field", "bmi"),
            ("epsilon", "1"),
        ]));
        assert!(f.args().unwrap_err().contains("second field"));
        let f = QueryForm::from_pairs(&pairs(&[("statistic", "count"), ("epsilon", "1")]));
        assert_eq!(f.args().expect("count").statistic, ["count"]);
    }
}
