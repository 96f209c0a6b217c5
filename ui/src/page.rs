//! What every page shares: the layout (app, user, navigation, CSRF token,
//! flash message), the request context handlers take ([`Ctx`]), rendering
//! a typed template into a response, and errors shown as a page.

use std::future::{ready, Ready};
use std::sync::Mutex;

use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpMessage as _, HttpRequest, HttpResponse, ResponseError};
use askama::Template;
use medrelay_client::ClientError;

use crate::security::SessionView;

/// One link of the navigation bar.
#[derive(Clone, Debug)]
pub(crate) struct NavLink {
    pub(crate) href: &'static str,
    pub(crate) label: &'static str,
    pub(crate) current: bool,
}

/// A message shown once at the top of the next page (after a redirect).
#[derive(Clone, Debug)]
pub(crate) struct Flash {
    /// `true`: success; `false`: a problem.
    pub(crate) ok: bool,
    pub(crate) text: String,
}

impl Flash {
    pub(crate) fn ok(text: impl Into<String>) -> Self {
        Self { ok: true, text: text.into() }
    }

    pub(crate) fn problem(text: impl Into<String>) -> Self {
        Self { ok: false, text: text.into() }
    }
}

/// What the base layout shows around every page.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// The app's name (`Patient`, `Doctor`, …).
    pub(crate) app: &'static str,
    /// Who is signed in.
    pub(crate) user: String,
    /// Their principal id, shortened.
    pub(crate) user_id: String,
    /// The page's title.
    pub(crate) page: String,
    pub(crate) nav: Vec<NavLink>,
    /// The session's CSRF token (every form's action carries it).
    pub(crate) csrf: String,
    pub(crate) flash: Option<Flash>,
}

/// The app-wide part of the layout.
#[derive(Debug)]
pub(crate) struct Shell {
    pub(crate) app: &'static str,
    pub(crate) user: String,
    pub(crate) user_id: String,
    pub(crate) nav: &'static [(&'static str, &'static str)],
    flash: Mutex<Option<Flash>>,
}

impl Shell {
    pub(crate) fn new(
        app: &'static str,
        user: String,
        user_id: String,
        nav: &'static [(&'static str, &'static str)],
    ) -> Self {
        Self { app, user, user_id, nav, flash: Mutex::new(None) }
    }

    /// Keeps a message for the next page.
    pub(crate) fn flash(&self, flash: Flash) {
        *self.flash.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(flash);
    }

    fn take_flash(&self) -> Option<Flash> {
        self.flash.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }
}

/// The request context a handler takes: the shell and the session.
#[derive(Clone, Debug)]
pub(crate) struct Ctx {
    shell: web::Data<Shell>,
    session: SessionView,
    path: String,
}

impl FromRequest for Ctx {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let shell = req.app_data::<web::Data<Shell>>().cloned();
        let session = req.extensions().get::<SessionView>().cloned();
        ready(match (shell, session) {
            (Some(shell), Some(session)) => Ok(Self { shell, session, path: req.path().to_owned() }),
            // The guard inserts the session before any handler runs.
            _ => Err(actix_web::error::ErrorUnauthorized("not signed in")),
        })
    }
}

impl Ctx {
    /// The layout for a page titled `page` (takes the pending flash).
    pub(crate) fn layout(&self, page: impl Into<String>) -> Layout {
        let nav = self
            .shell
            .nav
            .iter()
            .map(|(href, label)| NavLink {
                href,
                label,
                current: if *href == "/" { self.path == "/" } else { self.path.starts_with(href) },
            })
            .collect();
        Layout {
            app: self.shell.app,
            user: self.shell.user.clone(),
            user_id: self.shell.user_id.clone(),
            page: page.into(),
            nav,
            csrf: self.session.csrf.to_string(),
            flash: self.shell.take_flash(),
        }
    }

    /// Keeps a message for the next page.
    pub(crate) fn flash(&self, flash: Flash) {
        self.shell.flash(flash);
    }

    /// A `303 See Other` to `to` with a message for the page it shows.
    pub(crate) fn redirect_with(&self, to: &str, flash: Flash) -> HttpResponse {
        self.flash(flash);
        redirect(to)
    }

    /// Maps an error to a full error page in this layout.
    pub(crate) fn fail<E: Into<Problem>>(&self) -> impl FnOnce(E) -> PageError + '_ {
        move |e| PageError { problem: e.into(), layout: Some(Box::new(self.layout("Something went wrong"))) }
    }
}

/// Percent-encodes a URL path segment or query value (everything but
/// unreserved characters).
pub(crate) fn url_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `303 See Other` to `to`.
pub(crate) fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((actix_web::http::header::LOCATION, to)).finish()
}

/// Renders a template into an HTML response with `status`.
pub(crate) fn html<T: Template>(status: StatusCode, page: &T) -> HttpResponse {
    match page.render() {
        Ok(body) => HttpResponse::build(status).content_type("text/html; charset=utf-8").body(body),
        Err(_) => HttpResponse::InternalServerError()
            .content_type("text/plain; charset=utf-8")
            .body("the page could not be rendered"),
    }
}

/// Renders a template into a `200 OK` HTML response.
pub(crate) fn ok<T: Template>(page: &T) -> Result<HttpResponse, PageError> {
    Ok(html(StatusCode::OK, page))
}

/// A problem to show: status and one line for the person.
#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) status: StatusCode,
    pub(crate) title: &'static str,
    pub(crate) message: String,
}

impl Problem {
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, title: "That did not work", message: message.into() }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self { status: StatusCode::NOT_FOUND, title: "Not found", message: message.into() }
    }
}

impl From<ClientError> for Problem {
    fn from(e: ClientError) -> Self {
        let (status, title) = match &e {
            ClientError::Invalid(_)
            | ClientError::UnknownSchema(_)
            | ClientError::NoSummary(_)
            | ClientError::BudgetExceeded(_)
            | ClientError::Summary { .. }
            | ClientError::Fhir { .. } => (StatusCode::BAD_REQUEST, "That did not work"),
            ClientError::Server { status: 404, .. } => (StatusCode::NOT_FOUND, "Not found"),
            ClientError::Server { .. } => (StatusCode::BAD_GATEWAY, "The medrelay server refused"),
            ClientError::Unreachable { .. } => {
                (StatusCode::BAD_GATEWAY, "The medrelay server cannot be reached")
            }
            ClientError::Verification(_) | ClientError::LogIntegrity(_) | ClientError::Decryption(_) => {
                (StatusCode::BAD_GATEWAY, "Verification failed")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong"),
        };
        Self { status, title, message: e.to_string() }
    }
}

impl From<actix_web::error::BlockingError> for Problem {
    fn from(_: actix_web::error::BlockingError) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            title: "Busy",
            message: "the app is shutting down or overloaded; try again".into(),
        }
    }
}

/// An error page.
#[derive(Debug)]
pub(crate) struct PageError {
    problem: Problem,
    layout: Option<Box<Layout>>,
}

impl From<Problem> for PageError {
    fn from(problem: Problem) -> Self {
        Self { problem, layout: None }
    }
}

impl From<ClientError> for PageError {
    fn from(e: ClientError) -> Self {
        Problem::from(e).into()
    }
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.problem.title, self.problem.message)
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.problem.status
    }

    fn error_response(&self) -> HttpResponse {
        match &self.layout {
            Some(layout) => html(
                self.problem.status,
                &ErrorPage {
                    layout: layout.as_ref().clone(),
                    title: self.problem.title,
                    message: &self.problem.message,
                },
            ),
            None => html(
                self.problem.status,
                &RefusalPage { status: self.problem.status.as_u16(), message: &self.problem.message },
            ),
        }
    }
}

/// A full page showing one problem.
#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage<'a> {
    pub(crate) layout: Layout,
    pub(crate) title: &'a str,
    pub(crate) message: &'a str,
}

/// A refusal before any session exists (wrong host, no cookie, bad token).
#[derive(Template)]
#[template(path = "refusal.html")]
pub(crate) struct RefusalPage<'a> {
    pub(crate) status: u16,
    pub(crate) message: &'a str,
}

/// Runs blocking client work on the blocking pool.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, Problem>
where
    F: FnOnce() -> Result<T, ClientError> + Send + 'static,
    T: Send + 'static,
{
    web::block(f).await?.map_err(Problem::from)
}

#[cfg(test)]
mod tests {
    #[test]
    fn url_parts_are_percent_encoded() {
        assert_eq!(super::url_part("health-basics_2.v~1"), "health-basics_2.v~1");
        assert_eq!(super::url_part("a b/c?d#é"), "a%20b%2Fc%3Fd%23%C3%A9");
    }
}
