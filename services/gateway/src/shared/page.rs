//! The dashboard's pages: the layout every page shares, rendering, the fixed
//! notices a redirect may ask for, and the error page.
//!
//! Every form posts with the session's CSRF token in a hidden `csrf_token` field;
//! results use Post/Redirect/Get with a fixed notice key (no flash cookies) or,
//! where a secret must be shown once (create, import, rotate), the page itself.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use bizops_errors::{Error, ErrorCode};
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};

use crate::shared::{error::set_retry_after, session::CurrentSession, state::Shared};

/// What every page's layout needs.
#[derive(Debug, Serialize)]
pub struct Page {
    title: String,
    signed_in: bool,
    csrf: Option<String>,
    nav: &'static str,
    notice: Option<&'static str>,
}

impl Page {
    /// The layout of a page titled `title`, with `nav` marked as the current section.
    pub fn new(
        st: &Shared,
        session: Option<&CurrentSession>,
        title: impl Into<String>,
        nav: &'static str,
    ) -> Self {
        Self {
            title: title.into(),
            signed_in: session.is_some(),
            csrf: session.map(|s| st.csrf.token(s.session_id)),
            nav,
            notice: None,
        }
    }

    /// Shows the fixed notice `key` names, if it names one.
    pub fn notice(mut self, key: Option<&str>) -> Self {
        self.notice = key.and_then(notice_text);
        self
    }
}

/// The fixed messages a redirect may ask a page to show (`?notice=<key>`).
fn notice_text(key: &str) -> Option<&'static str> {
    Some(match key {
        "saved" => "Saved: a new version of the Pilot.",
        "enabled" => "The Pilot is enabled and accepts triggers.",
        "disabled" => "The Pilot is disabled: webhooks, schedules and Run now are refused.",
        "deleted" => "The Pilot and its runs were deleted.",
        "run_started" => "Run started: it appears in the list within seconds.",
        "replayed" => "Replay started: it appears in the list within seconds.",
        "cancelled" => "The run was cancelled.",
        "approved" => "Approved: the run continues.",
        "rejected" => "Rejected: the run ended.",
        "connected" => "Connected. The value is stored encrypted and will not be shown again.",
        "disconnected" => "Disconnected: the credential was deleted.",
        "password_changed" => "Password changed. Every other session was signed out.",
        "account_deleted" => "Your account and all of its data were deleted.",
        "signed_out" => "You are signed out.",
        _ => return None,
    })
}

/// An HTML answer that is never cached.
pub fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, Html(body)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Renders a template into an HTML answer (a render failure is a plain 500).
pub fn render(st: &Shared, status: StatusCode, name: &str, ctx: Value) -> Response {
    match st.templates.render(name, ctx) {
        Ok(body) => html(status, body),
        Err(e) => {
            let (status, body) = e.to_http();
            (status, body.error.message).into_response()
        }
    }
}

/// The HTML answer to an error: 401 goes to sign-in; others get an error page
/// with the code and the safe message.
pub fn error_page(st: &Shared, session: Option<&CurrentSession>, error: Error) -> Response {
    if error.code() == ErrorCode::Unauthenticated {
        let mut response = Redirect::to("/signin").into_response();
        response.extensions_mut().insert(ErrorCode::Unauthenticated);
        return response;
    }
    let (status, body) = error.to_http();
    let heading = match error.code() {
        ErrorCode::NotFound => "Not found",
        ErrorCode::CsrfRejected => "Please reload the page",
        ErrorCode::RateLimited => "Slow down",
        ErrorCode::Unavailable | ErrorCode::DeadlineExceeded => "Temporarily unavailable",
        ErrorCode::Internal => "Something went wrong",
        _ => "That did not work",
    };
    let (back, back_label) =
        if session.is_some() { ("/pilots", "Back to your Pilots") } else { ("/", "Home") };
    let page = Page::new(st, session, heading, "");
    let mut response = render(
        st,
        status,
        "error.html",
        context! { page, heading, message => body.error.message, code => body.error.code, back, back_label },
    );
    if let Some(after) = error.retry_after() {
        set_retry_after(&mut response, after);
    }
    response
}

/// What a dashboard handler answers: the page, or the error page.
pub type PageResult = Result<Response, Response>;

/// Maps an error inside an authenticated page handler.
pub fn fail(st: &Shared, s: &CurrentSession) -> impl Fn(Error) -> Response {
    let (st, s) = (st.clone(), s.clone());
    move |e| error_page(&st, Some(&s), e)
}

/// The query of a dashboard page: a notice to show, the page of a list.
#[derive(Debug, Default, Deserialize)]
pub struct PageParams {
    /// A key of the fixed notices (`?notice=saved`).
    pub notice: Option<String>,
    /// The page of a list.
    pub page_token: Option<String>,
}

#[cfg(test)]
impl Page {
    /// A page as the render tests use it.
    pub fn sample(signed_in: bool) -> Self {
        Self {
            title: "T".into(),
            signed_in,
            csrf: signed_in.then(|| "tok".to_owned()),
            nav: "pilots",
            notice: Some("Saved: a new version of the Pilot."),
        }
    }
}

/// Renders a template with `ctx`, failing the test with minijinja's error.
#[cfg(test)]
#[track_caller]
pub fn render_ok(name: &str, ctx: Value) -> String {
    let templates = crate::shared::templates::Templates::new().unwrap_or_else(|e| panic!("{e:#}"));
    match templates.render_raw(name, ctx) {
        Ok(html) => html,
        Err(e) => panic!("{name}: {e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_page_renders() {
        render_ok(
            "error.html",
            context! { page => Page::sample(false), heading => "h", message => "m", code => "C", back => "/", back_label => "Home" },
        );
    }
}
