//! The dashboard: server-rendered HTML (minijinja templates compiled into the
//! binary), one CSS and one JS file under `/static`, no inline script or style.
//! Every form posts with the session's CSRF token in a hidden `csrf_token` field;
//! results use Post/Redirect/Get with a fixed notice key (no flash cookies) or,
//! where a secret must be shown once (create, import, rotate), the page itself.

use std::collections::BTreeMap;

use axum::{
    Extension, Form, Router,
    extract::{FromRequest, FromRequestParts, Path, Query, Request, State, rejection::FormRejection},
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use bizops_errors::{Error, ErrorCode};
use http::request::Parts;
use minijinja::{Environment, Value, context};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    api::check_login_limits,
    editor::{self, Action, EditorForm},
    error::set_retry_after,
    model::{self, ConnectorKind, Decision},
    ops,
    session::CurrentSession,
    state::{ClientIp, SessionSlot, Shared},
};

/// The privacy policy, served at `/privacy`.
const PRIVACY_POLICY: &str = include_str!("../../../docs/privacy-policy.txt");

/// The dashboard's templates.
pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

macro_rules! templates {
    ($env:ident, $($name:literal),+ $(,)?) => {
        $( $env.add_template($name, include_str!(concat!("../templates/", $name)))?; )+
    };
}

/// `steps[0].slack.text` → `steps-0-slack-text`, for element ids.
fn fid(name: &str) -> String {
    let mut out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    out.trim_matches('-').to_owned()
}

/// RFC 3339 → `2026-11-27 12:18 UTC`; empty for none.
fn when(value: Value) -> String {
    let Some(text) = value.as_str() else { return String::new() };
    match time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        Ok(t) => {
            let t = t.to_offset(time::UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute()
            )
        }
        Err(_) => text.to_owned(),
    }
}

fn truncate(text: String, length: Option<usize>) -> String {
    let length = length.unwrap_or(255);
    if text.chars().count() <= length {
        return text;
    }
    let mut cut: String = text.chars().take(length.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

impl Templates {
    /// Compiles every template.
    pub fn new() -> Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        templates!(
            env,
            "base.html",
            "macros.html",
            "error.html",
            "signin.html",
            "signup.html",
            "privacy.html",
            "pilots.html",
            "editor.html",
            "pilot.html",
            "runs.html",
            "run.html",
            "approvals.html",
            "connectors.html",
            "account.html",
        );
        env.add_filter("fid", fid);
        env.add_filter("when", when);
        env.add_filter("truncate", truncate);
        env.add_filter("urlencode", |text: String| {
            url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>()
        });
        Ok(Self { env })
    }

    /// Renders `name` with `ctx`.
    pub fn render<S: Serialize>(&self, name: &str, ctx: S) -> Result<String, Error> {
        self.env.get_template(name).and_then(|t| t.render(ctx)).map_err(Error::internal)
    }
}

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
    fn new(
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

    fn notice(mut self, key: Option<&str>) -> Self {
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

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, Html(body)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn render(st: &Shared, status: StatusCode, name: &str, ctx: Value) -> Response {
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

/// The signed-in session of a page request; without one, a redirect to sign-in.
pub struct PageAuthed(pub CurrentSession);

impl FromRequestParts<Shared> for PageAuthed {
    type Rejection = Redirect;

    async fn from_request_parts(parts: &mut Parts, _: &Shared) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<SessionSlot>()
            .and_then(|s| s.0.clone())
            .map(PageAuthed)
            .ok_or(Redirect::to("/signin"))
    }
}

fn session_of(extensions: &http::Extensions) -> Option<CurrentSession> {
    extensions.get::<SessionSlot>().and_then(|s| s.0.clone())
}

/// A path parameter; a malformed one gets the error page (never axum's plain text).
pub struct WebPath<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<Shared> for WebPath<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &Shared) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, st).await {
            Ok(Path(v)) => Ok(Self(v)),
            Err(r) => {
                Err(error_page(st, session_of(&parts.extensions).as_ref(), crate::api::path_rejection(&r)))
            }
        }
    }
}

/// A query string; a malformed one gets the error page.
pub struct WebQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<Shared> for WebQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &Shared) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, st).await {
            Ok(Query(v)) => Ok(Self(v)),
            Err(r) => {
                Err(error_page(st, session_of(&parts.extensions).as_ref(), crate::api::query_rejection(&r)))
            }
        }
    }
}

/// A form body; a malformed one gets the error page.
pub struct WebForm<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequest<Shared> for WebForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, st: &Shared) -> Result<Self, Self::Rejection> {
        let session = session_of(req.extensions());
        match Form::<T>::from_request(req, st).await {
            Ok(Form(v)) => Ok(Self(v)),
            Err(r) => Err(error_page(st, session.as_ref(), form_rejection(&r))),
        }
    }
}

fn form_rejection(rejection: &FormRejection) -> Error {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return Error::new(ErrorCode::PayloadTooLarge, "the form is larger than allowed");
    }
    match rejection {
        FormRejection::InvalidFormContentType(_) => {
            Error::invalid("form", "send it as application/x-www-form-urlencoded")
        }
        _ => Error::invalid("form", "could not be read; reload the page and try again"),
    }
}

type PageResult = Result<Response, Response>;

/// Maps an error inside an authenticated page handler.
fn fail(st: &Shared, s: &CurrentSession) -> impl Fn(Error) -> Response {
    let (st, s) = (st.clone(), s.clone());
    move |e| error_page(&st, Some(&s), e)
}

#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    notice: Option<String>,
    page_token: Option<String>,
}

/// The dashboard's routes.
pub fn router() -> Router<Shared> {
    Router::new()
        .route("/", get(home))
        .route("/privacy", get(privacy))
        .route("/signin", get(signin_page).post(signin))
        .route("/signup", get(signup_page).post(signup))
        .route("/signout", post(signout))
        .route("/pilots", get(pilots_page))
        .route("/pilots/import", post(import))
        .route("/pilots/new", get(new_pilot_page).post(new_pilot))
        .route("/pilots/{id}", get(pilot_page))
        .route("/pilots/{id}/edit", get(edit_page).post(edit))
        .route("/pilots/{id}/enabled", post(set_enabled))
        .route("/pilots/{id}/run", post(run_now))
        .route("/pilots/{id}/rotate", post(rotate))
        .route("/pilots/{id}/delete", post(delete_pilot))
        .route("/pilots/{id}/export", get(export_pilot))
        .route("/pilots/{id}/runs", get(runs_page))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/cancel", post(cancel_run))
        .route("/runs/{id}/replay", post(replay_run))
        .route("/approvals", get(approvals_page))
        .route("/approvals/{id}", post(decide))
        .route("/connectors", get(connectors_page).post(connect))
        .route("/connectors/{name}/test", post(test_connector))
        .route("/connectors/{name}/delete", post(disconnect))
        .route("/account", get(account_page))
        .route("/account/password", post(change_password))
        .route("/account/delete", post(delete_account))
}

async fn home(slot: Extension<SessionSlot>) -> Redirect {
    if slot.0.0.is_some() { Redirect::to("/pilots") } else { Redirect::to("/signin") }
}

// ---------------------------------------------------------------- privacy

#[derive(Serialize)]
struct Block {
    kind: &'static str,
    text: String,
    items: Vec<String>,
}

/// The plain-text policy as headings, paragraphs and lists.
fn policy_blocks(text: &str) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    for (i, line) in text.lines().map(str::trim).filter(|l| !l.is_empty()).enumerate() {
        if let Some(item) = line.strip_prefix("- ") {
            match blocks.last_mut() {
                Some(b) if b.kind == "ul" => b.items.push(item.to_owned()),
                _ => blocks.push(Block { kind: "ul", text: String::new(), items: vec![item.to_owned()] }),
            }
            continue;
        }
        let heading = line.len() <= 40
            && !line.ends_with(['.', ':', ')'])
            && !line.starts_with("Effective")
            && !line.contains('@');
        let kind = if i == 0 {
            "h1"
        } else if heading {
            "h2"
        } else {
            "p"
        };
        blocks.push(Block { kind, text: line.to_owned(), items: Vec::new() });
    }
    blocks
}

/// The policy. Only the anonymous page may be cached (by anyone): with a session
/// cookie the page carries the signed-in layout and its CSRF token, and even a
/// cookie that turns out invalid gets a `Set-Cookie` removing it, so both are
/// `no-store` (set by `html`). `Vary: Cookie` keeps a cached anonymous copy from
/// being served to a request that has a cookie.
async fn privacy(
    State(st): State<Shared>,
    slot: Extension<SessionSlot>,
    headers: http::HeaderMap,
) -> Response {
    let page = Page::new(&st, slot.0.0.as_ref(), "Privacy policy", "privacy");
    let mut response = render(
        &st,
        StatusCode::OK,
        "privacy.html",
        context! { page, blocks => policy_blocks(PRIVACY_POLICY) },
    );
    let has_cookie = st.cookies.present(&headers) || slot.0.0.is_some();
    if !has_cookie && response.status() == StatusCode::OK {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    }
    response.headers_mut().insert(header::VARY, HeaderValue::from_static("Cookie"));
    response
}

// ---------------------------------------------------------------- sign in / up / out

#[derive(Deserialize, Default)]
#[serde(default)]
struct SigninForm {
    email: String,
    password: String,
}

async fn signin_page(
    State(st): State<Shared>,
    slot: Extension<SessionSlot>,
    WebQuery(q): WebQuery<PageQuery>,
) -> Response {
    if slot.0.0.is_some() {
        return Redirect::to("/pilots").into_response();
    }
    let page = Page::new(&st, None, "Sign in", "signin").notice(q.notice.as_deref());
    render(&st, StatusCode::OK, "signin.html", context! { page, email => "" })
}

/// After sign-in or sign-up: the cookie, and on to the Pilots.
fn signed_in(st: &Shared, session: &ops::NewSession, to: &str) -> Response {
    match st.cookies.set(session.token.expose_secret(), session.expires_at) {
        Ok(cookie) => {
            let mut response = Redirect::to(to).into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            response
        }
        Err(e) => error_page(st, None, e),
    }
}

async fn signin(State(st): State<Shared>, ip: ClientIp, WebForm(form): WebForm<SigninForm>) -> Response {
    let attempt = async {
        check_login_limits(&st, ip, Some(&form.email))?;
        ops::login(&st, ip.0, &form.email, &form.password).await
    };
    match attempt.await {
        Ok((_, session)) => signed_in(&st, &session, "/pilots"),
        Err(e) => {
            let (status, body) = e.to_http();
            let page = Page::new(&st, None, "Sign in", "signin");
            let mut response = render(
                &st,
                status,
                "signin.html",
                context! { page, email => form.email, error => body.error.message },
            );
            if let Some(after) = e.retry_after() {
                set_retry_after(&mut response, after);
            }
            response
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SignupForm {
    email: String,
    password: String,
    display_name: String,
}

async fn signup_page(State(st): State<Shared>, slot: Extension<SessionSlot>) -> Response {
    if slot.0.0.is_some() {
        return Redirect::to("/pilots").into_response();
    }
    let page = Page::new(&st, None, "Sign up", "signup");
    render(
        &st,
        StatusCode::OK,
        "signup.html",
        context! { page, email => "", display_name => "", errors => BTreeMap::<String, String>::new() },
    )
}

async fn signup(State(st): State<Shared>, ip: ClientIp, WebForm(form): WebForm<SignupForm>) -> Response {
    let attempt = async {
        check_login_limits(&st, ip, None)?;
        let body = model::RegisterBody {
            email: form.email.clone(),
            password: form.password.clone(),
            display_name: form.display_name.clone(),
        };
        ops::register(&st, ip.0, &body).await?;
        ops::login(&st, ip.0, &form.email, &form.password).await
    };
    match attempt.await {
        Ok((_, session)) => signed_in(&st, &session, "/pilots"),
        Err(e) => {
            let (status, body) = e.to_http();
            let mut errors = BTreeMap::new();
            let mut error = Some(body.error.message.clone());
            if let (Some(field), Some(problem)) = (e.field(), e.problem())
                && ["email", "password", "display_name"].contains(&field)
            {
                errors.insert(field.to_owned(), problem.to_owned());
                error = None;
            }
            if e.code() == ErrorCode::WeakPassword && errors.is_empty() {
                errors.insert("password".to_owned(), body.error.message.clone());
                error = None;
            }
            let page = Page::new(&st, None, "Sign up", "signup");
            let mut response = render(
                &st,
                status,
                "signup.html",
                context! { page, email => form.email, display_name => form.display_name, errors, error },
            );
            if let Some(after) = e.retry_after() {
                set_retry_after(&mut response, after);
            }
            response
        }
    }
}

async fn signout(State(st): State<Shared>, slot: Extension<SessionSlot>) -> Response {
    if let Some(s) = &slot.0.0
        && let Err(e) = ops::logout(&st, s).await
    {
        return error_page(&st, Some(s), e);
    }
    let mut response = Redirect::to("/signin?notice=signed_out").into_response();
    response.headers_mut().insert(header::SET_COOKIE, st.cookies.clear());
    response
}

// ---------------------------------------------------------------- pilots

fn kind_labels() -> BTreeMap<&'static str, &'static str> {
    editor::KINDS.iter().copied().collect()
}

async fn pilots_page(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebQuery(q): WebQuery<PageQuery>,
) -> PageResult {
    let list = ops::list_pilots(&st, &s, Some(50), q.page_token).await.map_err(fail(&st, &s))?;
    let page = Page::new(&st, Some(&s), "Pilots", "pilots").notice(q.notice.as_deref());
    Ok(render(
        &st,
        StatusCode::OK,
        "pilots.html",
        context! { page, pilots => list.pilots, next_page_token => list.next_page_token, import_document => "" },
    ))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ImportForm {
    document: String,
    enabled: Option<String>,
}

async fn import(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebForm(form): WebForm<ImportForm>,
) -> PageResult {
    match ops::import_pilot(&st, &s, &form.document, form.enabled.is_some()).await {
        Ok(created) => Ok(pilot_view(&st, &s, &created.pilot, Some(&created.webhook_secret), None)),
        Err(e)
            if matches!(
                e.code(),
                ErrorCode::InvalidArgument | ErrorCode::PayloadTooLarge | ErrorCode::LimitExceeded
            ) =>
        {
            let (status, body) = e.to_http();
            let page = Page::new(&st, Some(&s), "Pilots", "pilots");
            let list = ops::list_pilots(&st, &s, Some(50), None).await.map_err(fail(&st, &s))?;
            Ok(render(
                &st,
                status,
                "pilots.html",
                context! { page, pilots => list.pilots, next_page_token => list.next_page_token,
                import_document => form.document, import_error => body.error.message },
            ))
        }
        Err(e) => Err(error_page(&st, Some(&s), e)),
    }
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The two copyable curl examples of a Pilot page.
pub fn curl_examples(url: &str, secret: Option<&str>) -> (String, String) {
    let secret = secret.map_or_else(
        || "'whsec_…'   # the secret shown when you created or rotated it".to_owned(),
        shell_quote,
    );
    let simple = format!(
        "curl -X POST {url} \\\n  -H 'Content-Type: application/json' \\\n  -H \"X-Pilot-Secret: $SECRET\" \\\n  -d '{{\"hello\": \"world\"}}'",
        url = shell_quote(url),
    );
    let simple = format!("SECRET={secret}\n{simple}");
    let signed = format!(
        "SECRET={secret}\n\
         BODY='{{\"hello\": \"world\"}}'\n\
         ID=\"msg_$(date +%s%N)\"\n\
         TS=$(date +%s)\n\
         KEY=$(printf '%s' \"${{SECRET#whsec_}}\" | base64 -d | od -An -tx1 | tr -d ' \\n')\n\
         SIG=$(printf '%s' \"$ID.$TS.$BODY\" | openssl dgst -sha256 -mac HMAC -macopt \"hexkey:$KEY\" -binary | base64)\n\
         curl -X POST {url} \\\n  -H 'Content-Type: application/json' \\\n  -H \"webhook-id: $ID\" \\\n  -H \"webhook-timestamp: $TS\" \\\n  -H \"webhook-signature: v1,$SIG\" \\\n  -d \"$BODY\"",
        url = shell_quote(url),
    );
    (simple, signed)
}

fn pilot_view(
    st: &Shared,
    s: &CurrentSession,
    pilot: &model::Pilot,
    secret: Option<&str>,
    notice: Option<&str>,
) -> Response {
    let (curl_simple, curl_signed) = curl_examples(&pilot.webhook_url, secret);
    let page = Page::new(st, Some(s), pilot.spec.title.clone(), "pilots").notice(notice);
    render(
        st,
        StatusCode::OK,
        "pilot.html",
        context! { page, pilot, secret, curl_simple, curl_signed, kind_labels => kind_labels() },
    )
}

async fn pilot_page(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebPath(id): WebPath<String>,
    WebQuery(q): WebQuery<PageQuery>,
) -> PageResult {
    let pilot = ops::get_pilot(&st, &s, &id).await.map_err(fail(&st, &s))?;
    Ok(pilot_view(&st, &s, &pilot, None, q.notice.as_deref()))
}

fn editor_view(
    st: &Shared,
    s: &CurrentSession,
    status: StatusCode,
    pilot_id: Option<&str>,
    form: &EditorForm,
    errors: &BTreeMap<String, String>,
    form_error: Option<String>,
) -> Response {
    let title = if pilot_id.is_some() { "Edit Pilot" } else { "New Pilot" };
    let page = Page::new(st, Some(s), title, "pilots");
    let kind_fields: BTreeMap<&str, &[editor::FieldDef]> =
        editor::KINDS.iter().map(|(k, _)| (*k, editor::kind_fields(k))).collect();
    render(
        st,
        status,
        "editor.html",
        context! {
            page, pilot_id, form, errors, form_error,
            kinds => editor::KINDS, kind_labels => kind_labels(),
            kind_fields, common_fields => editor::COMMON_FIELDS,
        },
    )
}

async fn new_pilot_page(State(st): State<Shared>, PageAuthed(s): PageAuthed) -> Response {
    let form = EditorForm { enabled: true, ..EditorForm::default() };
    editor_view(&st, &s, StatusCode::OK, None, &form, &BTreeMap::new(), None)
}

/// A failed save: the message beside the field it names, or at the top.
fn save_failed(
    st: &Shared,
    s: &CurrentSession,
    pilot_id: Option<&str>,
    form: &EditorForm,
    error: Error,
) -> Response {
    let placeable = matches!(
        error.code(),
        ErrorCode::InvalidArgument
            | ErrorCode::PayloadTooLarge
            | ErrorCode::LimitExceeded
            | ErrorCode::StaleVersion
    );
    if !placeable {
        return error_page(st, Some(s), error);
    }
    let (status, body) = error.to_http();
    let mut errors = BTreeMap::new();
    let mut form_error = Some(body.error.message.clone());
    if let (Some(path), Some(problem)) = (error.field(), error.problem())
        && let Some(field) = editor::place(path, &form.field_names())
    {
        errors.insert(field, problem.to_owned());
        form_error = Some("The Pilot was not saved: see the marked field.".to_owned());
    }
    editor_view(st, s, status, pilot_id, form, &errors, form_error)
}

/// Handles an editor submission: an editing action re-renders the form; save
/// validates and calls `save`.
async fn editor_submit<F, Fut>(
    st: &Shared,
    s: &CurrentSession,
    pilot_id: Option<&str>,
    pairs: Vec<(String, String)>,
    save: F,
) -> Response
where
    F: FnOnce(model::PilotSpec, EditorForm) -> Fut,
    Fut: std::future::Future<Output = Result<Response, Error>>,
{
    let (mut form, action) = EditorForm::from_pairs(&pairs);
    if action != Action::Save {
        form.apply(&action);
        return editor_view(st, s, StatusCode::OK, pilot_id, &form, &BTreeMap::new(), None);
    }
    let spec = match form.to_spec() {
        Ok(spec) => spec,
        Err(errors) => {
            let message = Some("The Pilot was not saved: see the marked fields.".to_owned());
            return editor_view(st, s, StatusCode::BAD_REQUEST, pilot_id, &form, &errors, message);
        }
    };
    match save(spec, form.clone()).await {
        Ok(response) => response,
        Err(e) => save_failed(st, s, pilot_id, &form, e),
    }
}

async fn new_pilot(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebForm(pairs): WebForm<Vec<(String, String)>>,
) -> Response {
    let (st2, s2) = (st.clone(), s.clone());
    editor_submit(&st, &s, None, pairs, move |spec, form| async move {
        let created = ops::create_pilot(&st2, &s2, spec, form.enabled).await?;
        Ok(pilot_view(&st2, &s2, &created.pilot, Some(&created.webhook_secret), None))
    })
    .await
}

async fn edit_page(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebPath(id): WebPath<String>,
) -> PageResult {
    let pilot = ops::get_pilot(&st, &s, &id).await.map_err(fail(&st, &s))?;
    let form = EditorForm::from_spec(&pilot.spec, pilot.version, pilot.enabled);
    Ok(editor_view(&st, &s, StatusCode::OK, Some(&pilot.id), &form, &BTreeMap::new(), None))
}

async fn edit(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebPath(id): WebPath<String>,
    WebForm(pairs): WebForm<Vec<(String, String)>>,
) -> PageResult {
    let id = ops::parse_id("pilot_id", &id).map_err(fail(&st, &s))?.to_string();
    let (st2, s2, id2) = (st.clone(), s.clone(), id.clone());
    Ok(editor_submit(&st, &s, Some(&id), pairs, move |spec, form| async move {
        let pilot = ops::update_pilot(&st2, &s2, &id2, form.expected_version, spec).await?;
        Ok(Redirect::to(&format!("/pilots/{}?notice=saved", pilot.id)).into_response())
    })
    .await)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct EnabledForm {
    enabled: String,
}

async fn set_enabled(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebPath(id): WebPath<String>,
    WebForm(form): WebForm<EnabledForm>,
) -> PageResult {
    let enabled = form.enabled == "true";
    let pilot = ops::set_enabled(&st, &s, &id, enabled).await.map_err(fail(&st, &s))?;
    let notice = if pilot.enabled { "enabled" } else { "disabled" };
    Ok(Redirect::to(&format!("/pilots/{}?notice={notice}", pilot.id)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RunForm {
    payload: String,
}

async fn run_now(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebPath(id): WebPath<String>,
    WebForm(form): WebForm<RunForm>,
) -> PageResult {
    let id = ops::parse_id("pilot_id", &id).map_err(fail(&st, &s))?.to_string();
    let payload = if form.payload.trim().is_empty() {
        None
    } else {
        let value = serde_json::from_str(&form.payload)
            .map_err(|_| error_page(&st, Some(&s), Error::invalid("payload", "is not valid JSON")))?;
        Some(value)
    };
    ops::run_now(&st, &s, &id, payload, None).await.map_err(fail(&st, &s))?;
    Ok(Redirect::to(&format!("/pilots/{id}/runs?notice=run_started")).into_response())
}

async fn rotate(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebPath(id): WebPath<String>,
) -> PageResult {
    let rotated = ops::rotate_secret(&st, &s, &id).await.map_err(fail(&st, &s))?;
    let pilot = ops::get_pilot(&st, &s, &id).await.map_err(fail(&st, &s))?;
    Ok(pilot_view(&st, &s, &pilot, Some(&rotated.webhook_secret), None))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ConfirmForm {
    confirm: Option<String>,
}

async fn delete_pilot(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebPath(id): WebPath<String>,
    WebForm(form): WebForm<ConfirmForm>,
) -> PageResult {
    if form.confirm.is_none() {
        return Err(error_page(
            &st,
            Some(&s),
            Error::invalid("confirm", "tick the box to confirm the deletion"),
        ));
    }
    ops::delete_pilot(&st, &s, &id).await.map_err(fail(&st, &s))?;
    Ok(Redirect::to("/pilots?notice=deleted").into_response())
}

async fn export_pilot(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebPath(id): WebPath<String>,
) -> PageResult {
    let document = ops::export_pilot(&st, &s, &id).await.map_err(fail(&st, &s))?;
    let id = ops::parse_id("pilot_id", &id).map_err(fail(&st, &s))?;
    let body =
        serde_json::to_string_pretty(&document).map_err(|e| error_page(&st, Some(&s), Error::internal(e)))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"pilot-{id}.json\"")),
        ],
        body,
    )
        .into_response())
}

// ---------------------------------------------------------------- runs

async fn runs_page(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebPath(id): WebPath<String>,
    WebQuery(q): WebQuery<PageQuery>,
) -> PageResult {
    let pilot = ops::get_pilot(&st, &s, &id).await.map_err(fail(&st, &s))?;
    let runs = ops::list_runs(&st, &s, &id, Some(50), q.page_token).await.map_err(fail(&st, &s))?;
    let page = Page::new(&st, Some(&s), format!("Runs of {}", pilot.spec.title), "pilots")
        .notice(q.notice.as_deref());
    Ok(render(
        &st,
        StatusCode::OK,
        "runs.html",
        context! { page, pilot, runs => runs.runs, next_page_token => runs.next_page_token },
    ))
}

async fn run_page(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebPath(id): WebPath<String>,
    WebQuery(q): WebQuery<PageQuery>,
) -> PageResult {
    let run = ops::get_run(&st, &s, &id).await.map_err(fail(&st, &s))?;
    let page = Page::new(&st, Some(&s), "Run", "pilots").notice(q.notice.as_deref());
    Ok(render(&st, StatusCode::OK, "run.html", context! { page, run }))
}

async fn cancel_run(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebPath(id): WebPath<String>,
) -> PageResult {
    let run = ops::cancel_run(&st, &s, &id).await.map_err(fail(&st, &s))?;
    Ok(Redirect::to(&format!("/runs/{}?notice=cancelled", run.id)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ReplayForm {
    pilot_id: String,
    from_failed_step: Option<String>,
}

async fn replay_run(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebPath(id): WebPath<String>,
    WebForm(form): WebForm<ReplayForm>,
) -> PageResult {
    let pilot = ops::parse_id("pilot_id", &form.pilot_id).map_err(fail(&st, &s))?;
    ops::replay_run(&st, &s, &id, form.from_failed_step.is_some()).await.map_err(fail(&st, &s))?;
    Ok(Redirect::to(&format!("/pilots/{pilot}/runs?notice=replayed")).into_response())
}

// ---------------------------------------------------------------- approvals

async fn approvals_page(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebQuery(q): WebQuery<PageQuery>,
) -> PageResult {
    let list = ops::list_approvals(&st, &s, Some(50), q.page_token).await.map_err(fail(&st, &s))?;
    let page = Page::new(&st, Some(&s), "Approvals", "approvals").notice(q.notice.as_deref());
    Ok(render(
        &st,
        StatusCode::OK,
        "approvals.html",
        context! { page, approvals => list.approvals, next_page_token => list.next_page_token },
    ))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DecideForm {
    decision: String,
    comment: String,
}

async fn decide(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebPath(id): WebPath<String>,
    WebForm(form): WebForm<DecideForm>,
) -> PageResult {
    let decision = match form.decision.as_str() {
        "approve" => Decision::Approve,
        "reject" => Decision::Reject,
        _ => return Err(error_page(&st, Some(&s), Error::invalid("decision", "must be approve or reject"))),
    };
    let approval = ops::decide(&st, &s, &id, decision, &form.comment).await.map_err(fail(&st, &s))?;
    let notice = if decision == Decision::Approve { "approved" } else { "rejected" };
    let to = match approval.run_id.parse::<uuid::Uuid>() {
        Ok(run) => format!("/runs/{run}?notice={notice}"),
        Err(_) => format!("/approvals?notice={notice}"),
    };
    Ok(Redirect::to(&to).into_response())
}

// ---------------------------------------------------------------- connectors

fn kind_names() -> BTreeMap<&'static str, &'static str> {
    [
        ("slack", "Slack"),
        ("resend", "Resend"),
        ("anthropic", "Anthropic"),
        ("http_bearer", "HTTP bearer token"),
    ]
    .into_iter()
    .collect()
}

#[derive(Serialize)]
struct TestResult {
    name: String,
    ok: bool,
    detail: String,
}

async fn connectors_view(
    st: &Shared,
    s: &CurrentSession,
    status: StatusCode,
    notice: Option<&str>,
    extra: Value,
) -> PageResult {
    let list = ops::list_connectors(st, s).await.map_err(fail(st, s))?;
    let page = Page::new(st, Some(s), "Connectors", "connectors").notice(notice);
    let ctx = context! { page, connectors => list.connectors, kind_names => kind_names(), kind => "slack", name => "slack", ..extra };
    Ok(render(st, status, "connectors.html", ctx))
}

async fn connectors_page(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebQuery(q): WebQuery<PageQuery>,
) -> PageResult {
    connectors_view(&st, &s, StatusCode::OK, q.notice.as_deref(), context! {}).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ConnectForm {
    name: String,
    kind: String,
    value: String,
}

async fn connect(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebForm(form): WebForm<ConnectForm>,
) -> PageResult {
    let result = match ConnectorKind::parse(&form.kind) {
        Some(kind) => ops::put_connector(&st, &s, form.name.trim(), kind, &form.value).await.map(|_| ()),
        None => Err(Error::invalid("kind", "must be slack, resend, anthropic or http_bearer")),
    };
    match result {
        Ok(()) => Ok(Redirect::to("/connectors?notice=connected").into_response()),
        Err(e)
            if matches!(
                e.code(),
                ErrorCode::InvalidArgument | ErrorCode::LimitExceeded | ErrorCode::PayloadTooLarge
            ) =>
        {
            let (status, body) = e.to_http();
            // The value is never echoed back.
            connectors_view(
                &st,
                &s,
                status,
                None,
                context! { error => body.error.message, kind => form.kind, name => form.name },
            )
            .await
        }
        Err(e) => Err(error_page(&st, Some(&s), e)),
    }
}

async fn test_connector(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebPath(name): WebPath<String>,
) -> PageResult {
    let result = ops::test_connector(&st, &s, &name).await.map_err(fail(&st, &s))?;
    let test_result = TestResult { name, ok: result.ok, detail: result.detail };
    connectors_view(&st, &s, StatusCode::OK, None, context! { test_result }).await
}

async fn disconnect(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebPath(name): WebPath<String>,
) -> PageResult {
    ops::delete_connector(&st, &s, &name).await.map_err(fail(&st, &s))?;
    Ok(Redirect::to("/connectors?notice=disconnected").into_response())
}

// ---------------------------------------------------------------- account

async fn account_view(
    st: &Shared,
    s: &CurrentSession,
    status: StatusCode,
    notice: Option<&str>,
    extra: Value,
) -> PageResult {
    let account = ops::account(st, s).await.map_err(fail(st, s))?;
    let page = Page::new(st, Some(s), "Account", "account").notice(notice);
    Ok(render(st, status, "account.html", context! { page, account, ..extra }))
}

async fn account_page(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebQuery(q): WebQuery<PageQuery>,
) -> PageResult {
    account_view(&st, &s, StatusCode::OK, q.notice.as_deref(), context! {}).await
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PasswordForm {
    current_password: String,
    new_password: String,
    confirm_password: String,
}

async fn change_password(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    ip: ClientIp,
    WebForm(form): WebForm<PasswordForm>,
) -> PageResult {
    if form.new_password != form.confirm_password {
        return account_view(
            &st,
            &s,
            StatusCode::BAD_REQUEST,
            None,
            context! { password_error => "The new passwords do not match." },
        )
        .await;
    }
    match ops::change_password(&st, &s, ip.0, &form.current_password, &form.new_password).await {
        Ok(session) => Ok(signed_in(&st, &session, "/account?notice=password_changed")),
        Err(e)
            if matches!(
                e.code(),
                ErrorCode::InvalidArgument
                    | ErrorCode::WeakPassword
                    | ErrorCode::InvalidCredentials
                    | ErrorCode::RateLimited
            ) =>
        {
            let (status, body) = e.to_http();
            account_view(&st, &s, status, None, context! { password_error => body.error.message }).await
        }
        Err(e) => Err(error_page(&st, Some(&s), e)),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DeleteAccountForm {
    password: String,
    confirm: Option<String>,
}

async fn delete_account(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    ip: ClientIp,
    WebForm(form): WebForm<DeleteAccountForm>,
) -> PageResult {
    if form.confirm.is_none() {
        return account_view(
            &st,
            &s,
            StatusCode::BAD_REQUEST,
            None,
            context! { delete_error => "Tick the box to confirm that everything will be deleted." },
        )
        .await;
    }
    match ops::delete_account(&st, &s, ip.0, &form.password).await {
        Ok(()) => {
            let mut response = Redirect::to("/signin?notice=account_deleted").into_response();
            response.headers_mut().insert(header::SET_COOKIE, st.cookies.clear());
            Ok(response)
        }
        Err(e)
            if matches!(
                e.code(),
                ErrorCode::InvalidCredentials | ErrorCode::InvalidArgument | ErrorCode::RateLimited
            ) =>
        {
            let (status, body) = e.to_http();
            account_view(&st, &s, status, None, context! { delete_error => body.error.message }).await
        }
        Err(e) => Err(error_page(&st, Some(&s), e)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_policy_becomes_headings_paragraphs_and_lists() {
        let blocks = policy_blocks(PRIVACY_POLICY);
        assert_eq!(blocks[0].kind, "h1");
        assert_eq!(blocks[0].text, "Privacy Policy");
        assert!(blocks.iter().any(|b| b.kind == "h2" && b.text == "Cookies"));
        assert!(blocks.iter().any(|b| b.kind == "ul" && b.items.len() >= 3));
        assert!(blocks.iter().any(|b| b.kind == "p" && b.text.starts_with("Effective")));
    }

    #[test]
    fn ids_and_dates_render() {
        assert_eq!(fid("steps[0].slack.text"), "steps-0-slack-text");
        assert_eq!(when(Value::from("2026-11-27T12:18:17.5Z")), "2026-11-27 12:18 UTC");
        assert_eq!(when(Value::from(())), "");
        assert_eq!(truncate("abcdef".into(), Some(4)), "abc…");
    }

    #[test]
    fn curl_examples_quote_the_url_and_secret() {
        let (simple, signed) = curl_examples("https://x.test/hooks/1", Some("whsec_abc+/="));
        assert!(simple.contains("SECRET='whsec_abc+/='"));
        assert!(simple.contains("X-Pilot-Secret: $SECRET"));
        assert!(signed.contains("webhook-signature: v1,$SIG"));
        assert!(signed.contains("'https://x.test/hooks/1'"));
        let (simple, _) = curl_examples("https://x.test/hooks/1", None);
        assert!(simple.contains("whsec_…"));
    }

    #[test]
    fn every_template_compiles() {
        assert!(Templates::new().is_ok());
    }
}

#[cfg(test)]
mod render_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn page(signed_in: bool) -> Page {
        Page {
            title: "T".into(),
            signed_in,
            csrf: signed_in.then(|| "tok".to_owned()),
            nav: "pilots",
            notice: Some("Saved: a new version of the Pilot."),
        }
    }

    #[track_caller]
    fn render_ok(name: &str, ctx: Value) -> String {
        let t = Templates::new().unwrap();
        match t.env.get_template(name).unwrap().render(ctx) {
            Ok(html) => html,
            Err(e) => panic!("{name}: {e:#}"),
        }
    }

    #[test]
    fn every_page_renders_with_realistic_data() {
        let spec: model::PilotSpec = serde_json::from_value(serde_json::json!({
            "title": "T", "description": "D",
            "steps": [
                {"key": "a", "kind": "ai", "config": {"task": "classify", "input": "x", "labels": ["p", "q"]}},
                {"key": "s", "kind": "slack", "config": {"text": "hi"}, "requires_approval": true},
                {"key": "e", "kind": "email", "config": {"from": "a@b", "to": ["c@d"], "subject": "s", "text": "t"}},
                {"key": "h", "kind": "http", "config": {"method": "GET", "url": "https://x", "headers": [{"name": "A", "value": "b"}]}},
                {"key": "t", "kind": "transform", "config": {"template": "{}"}},
                {"key": "c", "kind": "condition", "config": {"expression": "true", "on_false": "stop"}},
                {"key": "z", "kind": "approval", "config": {"message": "ok?"}}
            ],
            "schedules": [{"id": "", "cron": "0 9 * * *", "timezone": "UTC"}]
        }))
        .unwrap();
        let pilot = model::Pilot {
            id: "0190".into(),
            version: 2,
            enabled: true,
            spec: spec.clone(),
            created_at: Some("2026-11-27T12:00:00Z".into()),
            updated_at: None,
            webhook_secret_issued_at: None,
            webhook_url: "https://x/hooks/0190".into(),
        };
        let form = EditorForm::from_spec(&spec, 2, true);
        let mut errors = BTreeMap::new();
        errors.insert("steps[1].slack.text".to_owned(), "is required".to_owned());
        errors.insert("steps[2]".to_owned(), "needs html, text or both".to_owned());
        let kind_fields: BTreeMap<&str, &[editor::FieldDef]> =
            editor::KINDS.iter().map(|(k, _)| (*k, editor::kind_fields(k))).collect();
        let html = render_ok(
            "editor.html",
            context! { page => page(true), pilot_id => "0190", form, errors, form_error => "x",
            kinds => editor::KINDS, kind_labels => kind_labels(), kind_fields,
            common_fields => editor::COMMON_FIELDS },
        );
        assert!(html.contains("id=\"err-steps-1-slack-text\">is required"), "{html}");
        assert!(html.contains(
            "aria-describedby=\"help-steps-1-slack-text err-steps-1-slack-text\" aria-invalid=\"true\""
        ));
        assert!(html.contains("<option value=\"classify\" selected>"));
        let (curl_simple, curl_signed) = curl_examples("https://x/hooks/0190", Some("whsec_x"));
        render_ok(
            "pilot.html",
            context! { page => page(true), pilot => pilot.clone(), secret => "whsec_x", curl_simple, curl_signed, kind_labels => kind_labels() },
        );
        render_ok(
            "pilots.html",
            context! { page => page(true), pilots => vec![pilot.clone()], next_page_token => "n", import_document => "" },
        );
        render_ok(
            "signup.html",
            context! { page => page(false), email => "", display_name => "", errors => BTreeMap::<String, String>::new() },
        );
        render_ok("signin.html", context! { page => page(false), email => "", error => "bad" });
        render_ok("privacy.html", context! { page => page(false), blocks => policy_blocks(PRIVACY_POLICY) });
        render_ok(
            "error.html",
            context! { page => page(false), heading => "h", message => "m", code => "C", back => "/", back_label => "Home" },
        );
        let run = model::Run {
            id: "0190aaaabbbbccccdddd".into(),
            pilot_id: "p".into(),
            pilot_version: 1,
            trigger_id: "t".into(),
            source: "webhook".into(),
            status: "awaiting_approval".into(),
            finished: false,
            created_at: Some("2026-11-27T12:00:00Z".into()),
            started_at: None,
            finished_at: None,
            error: String::new(),
            steps: vec![model::StepRun {
                step_key: "a".into(),
                kind: "ai".into(),
                status: "succeeded".into(),
                started_at: None,
                finished_at: None,
                duration_ms: 12,
                attempts: 1,
                provider: "local".into(),
                output_preview: "{}".into(),
                output_truncated: true,
                error: "e".into(),
            }],
            replay_of_run_id: String::new(),
        };
        render_ok(
            "runs.html",
            context! { page => page(true), pilot => pilot.clone(), runs => vec![run.clone()], next_page_token => "" },
        );
        render_ok("run.html", context! { page => page(true), run });
        let approval = model::Approval {
            id: "ap".into(),
            run_id: "0190aaaabbbbccccdddd".into(),
            pilot_id: "p".into(),
            step_key: "z".into(),
            status: "pending".into(),
            message: "ok?".into(),
            created_at: None,
            expires_at: None,
            decided_at: None,
            decided_by: String::new(),
            comment: String::new(),
        };
        render_ok(
            "approvals.html",
            context! { page => page(true), approvals => vec![approval], next_page_token => "" },
        );
        let connector = model::Connector {
            name: "slack".into(),
            kind: "slack".into(),
            created_at: None,
            updated_at: None,
            last_used_at: None,
            fingerprint: "…ab".into(),
        };
        render_ok(
            "connectors.html",
            context! { page => page(true), connectors => vec![connector], kind_names => kind_names(), kind => "slack", name => "slack",
            test_result => TestResult { name: "slack".into(), ok: false, detail: "no".into() }, error => "bad" },
        );
        let account = model::Account {
            id: "a".into(),
            email: "a@b.test".into(),
            display_name: "A".into(),
            created_at: None,
            password_changed_at: None,
        };
        render_ok(
            "account.html",
            context! { page => page(true), account, password_error => "x", delete_error => "y" },
        );
    }
}
