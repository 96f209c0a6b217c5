//! The static assets, compiled into the binary: one stylesheet and one
//! small script (drag and drop on the import page). Nothing is loaded from
//! anywhere else.

use actix_web::{web, HttpResponse};

const STYLESHEET: &str = include_str!("../static/medrelay.css");
const IMPORT_SCRIPT: &str = include_str!("../static/import.js");

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok().content_type("text/css; charset=utf-8").body(STYLESHEET)
}

async fn import_script() -> HttpResponse {
    HttpResponse::Ok().content_type("text/javascript; charset=utf-8").body(IMPORT_SCRIPT)
}

/// `/static/…` routes.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/static/medrelay.css", web::get().to(stylesheet))
        .route("/static/import.js", web::get().to(import_script));
}
