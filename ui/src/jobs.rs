//! Long operations (an import, fetching a chart) run on a thread of their
//! own while the browser shows their progress at `/jobs/{id}`. The page
//! refreshes itself once a second (a `<meta http-equiv="refresh">`, so it
//! needs no script) and sends the person on when the job is done.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{web, HttpResponse};
use askama::Template;
use medrelay_client::{ClientError, Progress};

use crate::page::{self, Ctx, Flash, Layout, PageError, Problem};

/// Most jobs remembered; the oldest finished ones are forgotten first.
const MAX_JOBS: usize = 32;

/// How a job ended.
#[derive(Clone, Debug)]
enum Outcome {
    Running,
    /// Done: where to go next and what to say there.
    Done {
        next: String,
        flash: Flash,
    },
    Failed(String),
}

/// One job.
#[derive(Debug)]
pub(crate) struct Job {
    title: String,
    what: &'static str,
    done: AtomicU64,
    total: AtomicU64,
    outcome: Mutex<Outcome>,
}

impl Job {
    /// Reports progress.
    pub(crate) fn progress(&self, p: Progress) {
        self.total.store(p.total, Ordering::Relaxed);
        self.done.store(p.done, Ordering::Relaxed);
    }

    fn finish(&self, outcome: Outcome) {
        *self.outcome.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = outcome;
    }

    fn outcome(&self) -> Outcome {
        self.outcome.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// The jobs of one app.
#[derive(Debug, Default)]
pub(crate) struct Jobs {
    next: AtomicU64,
    jobs: Mutex<BTreeMap<u64, Arc<Job>>>,
}

impl Jobs {
    /// Starts `work` on its own thread; returns the job's page.
    /// `work` reports progress through the job and returns where to go
    /// next and what to say there.
    pub(crate) fn start<F>(&self, title: String, what: &'static str, work: F) -> Result<String, Problem>
    where
        F: FnOnce(&Job) -> Result<(String, Flash), ClientError> + Send + 'static,
    {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let job = Arc::new(Job {
            title,
            what,
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
            outcome: Mutex::new(Outcome::Running),
        });
        {
            let mut jobs = self.jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            while jobs.len() >= MAX_JOBS {
                let finished =
                    jobs.iter().find(|(_, j)| !matches!(j.outcome(), Outcome::Running)).map(|(k, _)| *k);
                match finished {
                    Some(k) => {
                        jobs.remove(&k);
                    }
                    None => {
                        return Err(Problem::bad_request(
                            "too many operations are running; wait for one to finish",
                        ))
                    }
                }
            }
            jobs.insert(id, Arc::clone(&job));
        }
        let worker = Arc::clone(&job);
        std::thread::Builder::new()
            .name(format!("medrelay-ui-job-{id}"))
            .spawn(move || {
                let outcome = match work(&worker) {
                    Ok((next, flash)) => Outcome::Done { next, flash },
                    Err(e) => Outcome::Failed(e.to_string()),
                };
                worker.finish(outcome);
            })
            .map_err(|e| Problem::bad_request(format!("cannot start the operation: {e}")))?;
        Ok(format!("/jobs/{id}"))
    }

    fn get(&self, id: u64) -> Option<Arc<Job>> {
        self.jobs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&id).cloned()
    }
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    layout: Layout,
    what: &'static str,
    done: u64,
    total: u64,
    failed: Option<String>,
}

/// `GET /jobs/{id}`: the progress page, or on to the result.
pub(crate) async fn show(
    ctx: Ctx,
    jobs: web::Data<Jobs>,
    id: web::Path<u64>,
) -> Result<HttpResponse, PageError> {
    let job = jobs.get(*id).ok_or_else(|| ctx.fail()(Problem::not_found("no such operation")))?;
    match job.outcome() {
        Outcome::Done { next, flash } => Ok(ctx.redirect_with(&next, flash)),
        outcome => {
            let failed = match outcome {
                Outcome::Failed(e) => Some(e),
                _ => None,
            };
            page::ok(&JobPage {
                layout: ctx.layout(job.title.clone()),
                what: job.what,
                done: job.done.load(Ordering::Relaxed),
                total: job.total.load(Ordering::Relaxed),
                failed,
            })
        }
    }
}
