//! The analyst's private studies (two aggregators): the studies the server
//! leads, a study's open batch and released ones, releasing a batch, and
//! the statistics computed here from the released noisy sums, each with its
//! interval, histograms as charts. The same `medrelay_client::Analyst`
//! calls as `medrelay-doctor study …`.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use askama::Template;
use medrelay_client::ClientError;
use medrelay_dp::study::{Interval, StudyResults, DEFAULT_QUANTILES};
use medrelay_wire::dp::PrivacyCost;

use crate::analyst::AnalystApp;
use crate::page::{self, blocking, Ctx, Flash, Layout, PageError};
use crate::svg::{num, Bar, Chart};

/// Routes of the analyst's study pages.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/studies", web::get().to(list))
        .route("/studies/{study}", web::get().to(show))
        .route("/studies/{study}/release", web::post().to(release));
}

/// One study in the list.
#[derive(Clone, Debug)]
struct Row {
    name: String,
    description: String,
    schema: String,
    open_batch: u64,
    ready: bool,
    released: usize,
}

#[derive(Template)]
#[template(path = "analyst_studies.html")]
struct List {
    layout: Layout,
    studies: Vec<Row>,
    leader: bool,
}

async fn list(ctx: Ctx, app: web::Data<AnalystApp>) -> Result<HttpResponse, PageError> {
    let a = Arc::clone(&app.analyst);
    let found = blocking(move || match a.studies() {
        // Not a study leader: no private studies here.
        Err(ClientError::Server { status: 404, .. }) => Ok(None),
        Err(e) => Err(e),
        Ok(list) => {
            let mut rows = Vec::with_capacity(list.len());
            for s in list {
                let status = a.study_status(&s.name)?;
                rows.push(Row {
                    description: s
                        .definition
                        .get("description")
                        .and_then(|d| d.as_str())
                        .unwrap_or_default()
                        .to_owned(),
                    name: s.name,
                    schema: s.schema,
                    open_batch: status.open_batch,
                    ready: status.ready,
                    released: status.released.len(),
                });
            }
            Ok(Some(rows))
        }
    })
    .await
    .map_err(ctx.fail())?;
    page::ok(&List {
        layout: ctx.layout("Private studies"),
        leader: found.is_some(),
        studies: found.unwrap_or_default(),
    })
}

/// An interval as read: value, low, high.
type Shown = [String; 3];

/// An interval as read: value [low, high].
fn interval(i: &Interval) -> Shown {
    [num(i.value), num(i.low), num(i.high)]
}

/// A statistic of one group (everyone, or one stratum).
#[derive(Clone, Debug)]
struct GroupView {
    label: String,
    count: Shown,
    /// field, n, mean, standard deviation.
    fields: Vec<(String, Shown, Shown, Shown)>,
    /// "x, y", n, r.
    correlations: Vec<(String, Shown, Shown)>,
    /// The chart, the ± of every bin, and the quantiles (alpha, value, low, high).
    histograms: Vec<(Option<Chart>, String, Vec<[String; 4]>)>,
}

fn group_views(r: &StudyResults) -> Vec<GroupView> {
    std::iter::once(&r.overall)
        .chain(r.strata.iter())
        .enumerate()
        .map(|(g, s)| GroupView {
            label: s.label.clone(),
            count: interval(&s.count),
            fields: s
                .fields
                .iter()
                .map(|f| (f.field.clone(), interval(&f.count), interval(&f.mean), interval(&f.std_dev)))
                .collect(),
            correlations: s
                .correlations
                .iter()
                .map(|c| (format!("{}, {}", c.x, c.y), interval(&c.count), interval(&c.r)))
                .collect(),
            histograms: s
                .histograms
                .iter()
                .enumerate()
                .map(|(h, hist)| {
                    let bars: Vec<Bar> = hist
                        .bins
                        .iter()
                        .map(|b| Bar {
                            label: b.label.clone(),
                            value: b.count,
                            plus_minus: Some(hist.half_width),
                        })
                        .collect();
                    let chart = Chart::bars(
                        &format!("study-{g}-{h}"),
                        &format!("{}: noisy count per bin", hist.field),
                        "patients",
                        &bars,
                    );
                    let quantiles = hist
                        .quantiles
                        .iter()
                        .map(|q| [num(q.alpha), num(q.value), num(q.low), num(q.high)])
                        .collect();
                    (chart, num(hist.half_width), quantiles)
                })
                .collect(),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "analyst_study.html")]
struct Show {
    layout: Layout,
    name: String,
    description: String,
    schema: String,
    min_batch_size: u64,
    numeric: Vec<String>,
    open_batch: u64,
    ready: bool,
    released: Vec<u64>,
    confidence: String,
    releases_summed: u32,
    groups: Vec<GroupView>,
}

#[derive(serde::Deserialize)]
struct ShowQuery {
    confidence: Option<f64>,
}

async fn show(
    ctx: Ctx,
    app: web::Data<AnalystApp>,
    study: web::Path<String>,
    q: web::Query<ShowQuery>,
) -> Result<HttpResponse, PageError> {
    let name = study.into_inner();
    let confidence = q.confidence.unwrap_or(0.95);
    if !(confidence > 0.0 && confidence < 1.0) {
        return Ok(ctx.redirect_with(
            &format!("/studies/{}", page::url_part(&name)),
            Flash::problem("The confidence must lie strictly between 0 and 1."),
        ));
    }
    let a = Arc::clone(&app.analyst);
    let wanted = name.clone();
    let (def, status, results) = blocking(move || {
        let verified = a.study(&wanted)?;
        let status = a.study_status(&wanted)?;
        let results = if status.released.is_empty() {
            None
        } else {
            Some(a.study_results(&wanted, None, confidence, &DEFAULT_QUANTILES)?)
        };
        Ok((verified.definition().clone(), status, results))
    })
    .await
    .map_err(ctx.fail())?;
    page::ok(&Show {
        layout: ctx.layout(format!("Private study {name}")),
        description: def.description().to_owned(),
        schema: def.schema().to_owned(),
        min_batch_size: def.min_batch_size(),
        numeric: def.numeric().to_vec(),
        open_batch: status.open_batch,
        ready: status.ready,
        released: status.released,
        confidence: num(confidence * 100.0),
        releases_summed: results.as_ref().map_or(0, |r| r.releases),
        groups: results.as_ref().map(group_views).unwrap_or_default(),
        name,
    })
}

async fn release(
    ctx: Ctx,
    app: web::Data<AnalystApp>,
    study: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let name = study.into_inner();
    let back = format!("/studies/{}", page::url_part(&name));
    let a = Arc::clone(&app.analyst);
    let result = web::block(move || a.study_release(&name, None))
        .await
        .map_err(|e| ctx.fail()(crate::page::Problem::from(e)))?;
    match result {
        Ok(r) => {
            let cost = match r.noise.cost {
                PrivacyCost::Epsilon(e) => format!("ε = {}", num(e)),
                PrivacyCost::Rho(x) => format!("ρ = {}", num(x)),
            };
            let rejected: Vec<String> =
                r.rejected.iter().filter(|(_, n)| **n > 0).map(|(k, n)| format!("{n} {k}")).collect();
            let rejected = if rejected.is_empty() {
                String::new()
            } else {
                format!(" The aggregators rejected {}.", rejected.join(", "))
            };
            Ok(ctx.redirect_with(
                &back,
                Flash::ok(format!(
                    "Released batch {} (each aggregator's noise costs {cost}; audit log entry {}).{rejected}",
                    r.batch, r.log_index
                )),
            ))
        }
        // Too small or released before: the server released nothing.
        Err(e) => Ok(ctx.redirect_with(&back, Flash::problem(format!("Not released: {e}")))),
    }
}
