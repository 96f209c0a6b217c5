//! medrelay-ui: the local web apps of the patient, the doctor, the analyst
//! and the auditor, served by their client binaries (`medrelay-patient
//! ui`, `medrelay-doctor ui`, `medrelay-auditor ui`) on `127.0.0.1`.
//!
//! The page is only a window: the client process that serves it holds the
//! unlocked keys and does every encryption, signature, decryption and
//! verification through `medrelay-client`, exactly as the command-line
//! clients do, and talks to the medrelay server itself. The browser never
//! receives a key, a bearer token or the passphrase; it receives the HTML
//! a person asked to see (which, for a doctor's chart or a patient's own
//! record, is health data, sent only over loopback).
//!
//! Pages are rendered on the server with askama (one base layout, partials
//! named `*_partial.html`, errors as a partial), work without JavaScript
//! (one small script adds drag and drop to the import page), and draw
//! charts as SVG on the server ([`svg`](crate::svg)).
//!
//! # Threat model
//!
//! Trusted: the user's machine and browser. Not trusted: every other web
//! page open in that browser, other hosts on the network, and DNS. So the
//! app listens on loopback only, serves only its own `Host`, signs a
//! browser in with a one-time launch token exchanged for an `HttpOnly`,
//! `SameSite=Strict` cookie, requires a CSRF token on every state-changing
//! request, and sends a CSP that loads nothing from anywhere else (see
//! [`security`](crate::security) for each rule). Out of scope: other
//! programs running as the same user (they can read the keystore's
//! process memory anyway); other local users can connect to the port but
//! hold no session. Cookies are scoped to a host, not a port, so another
//! local web server the same browser visits on 127.0.0.1 could receive the
//! session cookie: the session therefore lives only as long as the app
//! runs and ends after an hour idle.
//!
//! # Example
//!
//! ```no_run
//! use medrelay_client::{Connect, Passphrase, Patient};
//! use medrelay_ui::{run, RoleApp, UiOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pass = Passphrase::from_env_or_prompt(false)?;
//! let patient = Patient::open(std::path::Path::new("/home/me/.medrelay/patient"), &Connect::default(), &pass)?;
//! run(RoleApp::Patient(patient), &UiOptions { port: 0, open_browser: true }, |launch| {
//!     println!("open {}", launch.launch_url());
//! })?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod analyst;
mod assets;
mod auditor;
#[cfg(feature = "cli")]
pub mod cli;
mod clinical;
mod doctor;
pub mod exposure;
mod history;
mod import;
mod jobs;
mod page;
mod patient;
pub mod security;
mod studies;
mod svg;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpResponse, HttpServer};
use askama::Template;
use medrelay_client::{Analyst, Auditor, Doctor, Patient};
use zeroize::Zeroizing;

use crate::page::{Ctx, Shell};
use crate::security::Gate;

/// The role whose app to serve, with its opened profile.
#[derive(Debug)]
#[non_exhaustive]
pub enum RoleApp {
    /// A patient: records, import, grants, history, research.
    Patient(Patient),
    /// A doctor: shared patients and their charts.
    Doctor(Doctor),
    /// An analyst: DP queries within a budget.
    Analyst(Analyst),
    /// An auditor: log verification, the full audit, grants and accesses.
    Auditor(Auditor),
}

impl RoleApp {
    /// The role's name (`patient`, …).
    pub fn role(&self) -> &'static str {
        match self {
            RoleApp::Patient(_) => "patient",
            RoleApp::Doctor(_) => "doctor",
            RoleApp::Analyst(_) => "analyst",
            RoleApp::Auditor(_) => "auditor",
        }
    }
}

/// How to serve.
#[derive(Clone, Debug)]
pub struct UiOptions {
    /// Port on 127.0.0.1 (0: a free one).
    pub port: u16,
    /// Open the default browser on the launch URL.
    pub open_browser: bool,
}

/// Where the app listens; handed to the caller before serving starts.
pub struct Launch {
    /// The bound address (always on 127.0.0.1).
    pub address: SocketAddr,
    /// The app's base URL.
    pub url: String,
    /// Whether a browser was started on the sign-in link.
    pub browser_opened: bool,
    launch_url: Zeroizing<String>,
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launch").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Launch {
    /// The one-time sign-in URL (carries the launch token: show it only to
    /// the user).
    pub fn launch_url(&self) -> &str {
        &self.launch_url
    }
}

/// Why the app could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UiError {
    /// The port could not be bound.
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind {
        /// The port asked for.
        port: u16,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("the local web app failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// The running server's handle, for `/quit`.
#[derive(Debug, Default)]
struct Quit(OnceLock<ServerHandle>);

/// The identity shown in the layout.
fn shell_for(app: &RoleApp) -> Shell {
    let (name, nav, id) = match app {
        RoleApp::Patient(p) => ("Patient", patient::NAV, p.whoami()),
        RoleApp::Doctor(d) => ("Doctor", doctor::NAV, d.whoami()),
        RoleApp::Analyst(a) => ("Research", analyst::NAV, a.whoami()),
        RoleApp::Auditor(a) => ("Audit", auditor::NAV, a.whoami()),
    };
    let short: String = id.id.to_string().chars().take(12).collect();
    Shell::new(name, id.name, short, nav)
}

/// Serves `app` on 127.0.0.1 until the user quits (the page's Quit button)
/// or the process gets SIGINT/SIGTERM. `announce` is called once the port
/// is bound, with the launch URL to show the user.
pub fn run(app: RoleApp, options: &UiOptions, announce: impl FnOnce(&Launch)) -> Result<(), UiError> {
    let listener = TcpListener::bind(("127.0.0.1", options.port))
        .map_err(|source| UiError::Bind { port: options.port, source })?;
    let address = listener.local_addr().map_err(|source| UiError::Bind { port: options.port, source })?;
    let role = app.role();
    let (gate, token) = Gate::new(role, address.port(), security::IDLE_TIMEOUT);
    let url = format!("http://127.0.0.1:{}/", address.port());
    let mut launch = Launch {
        address,
        launch_url: Zeroizing::new(format!("{url}launch?token={}", token.as_str())),
        url,
        browser_opened: false,
    };
    drop(token);
    let profile = match &app {
        RoleApp::Patient(p) => p.whoami().profile,
        RoleApp::Doctor(d) => d.whoami().profile,
        RoleApp::Analyst(a) => a.whoami().profile,
        RoleApp::Auditor(a) => a.whoami().profile,
    };
    let opener = if options.open_browser { open_browser(&profile, &launch) } else { None };
    launch.browser_opened = opener.is_some();
    announce(&launch);
    let gate = web::Data::new(gate);
    let shell = web::Data::new(shell_for(&app));
    let quit = web::Data::new(Quit::default());
    let jobs = web::Data::new(jobs::Jobs::default());
    let state = RoleState::new(app);
    let q = quit.clone();
    let result = actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            let app = App::new()
                .app_data(gate.clone())
                .app_data(shell.clone())
                .app_data(quit.clone())
                .app_data(jobs.clone())
                .app_data(web::FormConfig::default().limit(64 * 1024))
                .app_data(web::QueryConfig::default())
                .wrap(from_fn(security::guard))
                .route("/launch", web::get().to(launch_handler))
                .route("/quit", web::post().to(quit_handler))
                .route("/jobs/{id}", web::get().to(jobs::show))
                .configure(assets::configure);
            state.configure(app)
        })
        .workers(2)
        .shutdown_timeout(5)
        .listen(listener)
        .map_err(UiError::Serve)?
        .run();
        let _ = q.0.set(server.handle());
        server.await.map_err(UiError::Serve)
    });
    if let Some(file) = opener {
        let _ = std::fs::remove_file(file);
    }
    result
}

/// [`run`], announcing the app on standard output: its address, the
/// one-time sign-in link, and how to stop it. This is what the client
/// binaries' `ui` subcommands call.
pub fn serve(app: RoleApp, options: &UiOptions) -> Result<(), UiError> {
    let who = match &app {
        RoleApp::Patient(p) => p.whoami().name,
        RoleApp::Doctor(d) => d.whoami().name,
        RoleApp::Analyst(a) => a.whoami().name,
        RoleApp::Auditor(a) => a.whoami().name,
    };
    let role = app.role();
    let open = options.open_browser;
    run(app, options, |launch| {
        println!("medrelay {role} app for {who} at {}", launch.url);
        println!("sign in with this link (it works once): {}", launch.launch_url());
        if launch.browser_opened {
            println!("your browser was opened on it");
        } else if open {
            println!("no browser could be started: open the link yourself");
        }
        println!("the app runs until you press Ctrl-C or choose \"Lock and quit\" on the page");
    })
}

/// The per-role state and routes.
#[derive(Clone)]
enum RoleState {
    Patient(web::Data<patient::PatientApp>),
    Doctor(web::Data<doctor::DoctorApp>),
    Analyst(web::Data<analyst::AnalystApp>),
    Auditor(web::Data<auditor::AuditorApp>),
}

impl RoleState {
    fn new(app: RoleApp) -> Self {
        match app {
            RoleApp::Patient(p) => RoleState::Patient(web::Data::new(patient::PatientApp::new(p))),
            RoleApp::Doctor(d) => RoleState::Doctor(web::Data::new(doctor::DoctorApp::new(d))),
            RoleApp::Analyst(a) => RoleState::Analyst(web::Data::new(analyst::AnalystApp::new(a))),
            RoleApp::Auditor(a) => RoleState::Auditor(web::Data::new(auditor::AuditorApp::new(a))),
        }
    }

    fn configure<T>(&self, app: App<T>) -> App<T>
    where
        T: actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Error = actix_web::Error,
            InitError = (),
        >,
    {
        match self {
            RoleState::Patient(s) => app.app_data(s.clone()).configure(patient::routes),
            RoleState::Doctor(s) => app.app_data(s.clone()).configure(doctor::routes),
            RoleState::Analyst(s) => app.app_data(s.clone()).configure(analyst::routes),
            RoleState::Auditor(s) => app.app_data(s.clone()).configure(auditor::routes),
        }
    }
}

#[derive(serde::Deserialize)]
struct LaunchQuery {
    token: String,
}

/// The page the launch URL answers with: it sets the session cookie and
/// moves on to `/` with a same-origin refresh (a `SameSite=Strict` cookie
/// set during a navigation that started elsewhere, e.g. the terminal, is
/// sent only on navigations that start on this origin).
#[derive(Template)]
#[template(path = "launch.html")]
struct LaunchPage;

async fn launch_handler(gate: web::Data<Gate>, q: web::Query<LaunchQuery>) -> HttpResponse {
    match gate.redeem(&q.token) {
        Some(cookie) => {
            let mut res = page::html(actix_web::http::StatusCode::OK, &LaunchPage);
            set_cookie(&mut res, &security::session_cookie(gate.cookie_name(), &cookie));
            res
        }
        None => {
            eprintln!("refused GET /launch: {}", security::Refusal::BadLaunch.code());
            security::refusal_response(security::Refusal::BadLaunch)
        }
    }
}

#[derive(Template)]
#[template(path = "quit.html")]
struct QuitPage {
    app: &'static str,
}

async fn quit_handler(
    ctx: Ctx,
    gate: web::Data<Gate>,
    quit: web::Data<Quit>,
    shell: web::Data<Shell>,
) -> HttpResponse {
    let _ = ctx;
    gate.end();
    if let Some(handle) = quit.0.get().cloned() {
        actix_web::rt::spawn(async move {
            actix_web::rt::time::sleep(Duration::from_millis(200)).await;
            handle.stop(true).await;
        });
    }
    let mut res = page::html(actix_web::http::StatusCode::OK, &QuitPage { app: shell.app });
    set_cookie(&mut res, &security::session_cookie(gate.cookie_name(), ""));
    res
}

fn set_cookie(res: &mut HttpResponse, value: &str) {
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(value) {
        res.headers_mut().append(actix_web::http::header::SET_COOKIE, v);
    }
}

/// Opens the default browser on a private file that redirects to the
/// launch URL (so the token is not on any command line other users can
/// list). Returns the file to delete at exit.
fn open_browser(profile: &std::path::Path, launch: &Launch) -> Option<PathBuf> {
    let file = profile.join(format!("ui-launch-{}.html", launch.address.port()));
    let page = format!(
        "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=\"0;url={0}\">\
         <title>medrelay</title><a href=\"{0}\">Open medrelay</a>\n",
        launch.launch_url()
    );
    medrelay_client::keystore::write_private(&file, page.as_bytes()).ok()?;
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    let spawned = std::process::Command::new(opener)
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if spawned.is_err() {
        let _ = std::fs::remove_file(&file);
        return None;
    }
    Some(file)
}
