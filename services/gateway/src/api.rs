//! The public JSON API under `/api/v1`. Every handler is annotated for the
//! OpenAPI document, which is generated from them (`/api/openapi.json`).
//!
//! Authentication is the session cookie; state-changing requests also need the
//! same origin and the CSRF token from `GET /api/v1/session` in `X-CSRF-Token`
//! (enforced by the middleware in `http.rs` before a handler runs).

use axum::{
    Json,
    extract::{
        FromRequest, FromRequestParts, Request, State,
        rejection::{PathRejection, QueryRejection},
    },
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use bizops_errors::{Error, ErrorCode};
use http::request::Parts;
use serde::de::DeserializeOwned;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, SecurityScheme},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    error::{ApiError, rate_limited, unauthenticated},
    model::*,
    ops,
    ratelimit::{email_key, source_key},
    session::CurrentSession,
    state::{ClientIp, SessionSlot, Shared},
};

/// The signed-in session of an API request (401 without one).
pub struct Authed(pub CurrentSession);

impl FromRequestParts<Shared> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &Shared) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<SessionSlot>()
            .and_then(|s| s.0.clone())
            .map(Authed)
            .ok_or_else(|| ApiError(unauthenticated()))
    }
}

/// A JSON body whose rejections use the one error shape.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(ApiError(json_rejection(&rejection))),
        }
    }
}

fn json_rejection(rejection: &axum::extract::rejection::JsonRejection) -> Error {
    use axum::extract::rejection::JsonRejection as R;
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return Error::new(ErrorCode::PayloadTooLarge, "the request body is too large");
    }
    match rejection {
        R::MissingJsonContentType(_) => {
            Error::invalid("body", "send JSON with the header Content-Type: application/json")
        }
        R::JsonSyntaxError(_) => Error::invalid("body", "is not valid JSON"),
        R::JsonDataError(e) => {
            // serde's message names the field and what was expected.
            let detail: String = e.body_text().chars().take(300).collect();
            Error::invalid(
                "body",
                detail.trim_start_matches("Failed to deserialize the JSON body into the target type: "),
            )
        }
        _ => Error::invalid("body", "could not be read"),
    }
}

/// A path parameter whose rejections (not a number, not UTF-8) use the one error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// A query string whose rejections use the one error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError(path_rejection(&rejection))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError(query_rejection(&rejection))
    }
}

/// The error for a path parameter axum could not extract, naming the parameter.
pub fn path_rejection(rejection: &PathRejection) -> Error {
    use axum::extract::path::ErrorKind as K;
    match rejection {
        PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
            K::ParseErrorAtKey { key, expected_type, .. } => {
                Error::invalid(key, format!("must be {}", type_name(expected_type)))
            }
            K::InvalidUtf8InPathParam { key } => Error::invalid(key, "is not valid UTF-8"),
            K::DeserializeError { key, .. } => Error::invalid(key, "is not valid"),
            K::ParseErrorAtIndex { expected_type, .. } | K::ParseError { expected_type, .. } => {
                Error::invalid("path", format!("a parameter must be {}", type_name(expected_type)))
            }
            _ => Error::invalid("path", "is not valid"),
        },
        // A route whose handler wants a parameter the route does not have: a bug here.
        other => Error::internal(std::io::Error::other(other.body_text())),
    }
}

/// What a Rust type name means to an API client.
fn type_name(rust: &str) -> &'static str {
    match rust {
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" | "isize" => "a whole number",
        "bool" => "true or false",
        _ => "a valid value",
    }
}

/// The error for a query string axum could not deserialize.
pub fn query_rejection(rejection: &QueryRejection) -> Error {
    // serde_urlencoded names the field and what was expected, never the value.
    let text = rejection.body_text();
    let detail: String =
        text.trim_start_matches("Failed to deserialize query string: ").chars().take(200).collect();
    Error::invalid("query", detail)
}

type ApiResult<T> = Result<T, ApiError>;

/// Adds the cookie-and-CSRF security schemes.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::session::SECURE_COOKIE_NAME,
                "The session cookie set by POST /api/v1/auth/login (HttpOnly).",
            ))),
        );
        components.add_security_scheme(
            "csrf",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                crate::csrf::HEADER,
                "The csrf_token of GET /api/v1/session; required with the cookie on every state-changing \
                 request, which must also carry Origin (or Sec-Fetch-Site: same-origin).",
            ))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "BizOps Pilot API",
        description = "Public HTTP API of BizOps Pilot: accounts and sessions, Pilots, runs, approvals, \
                       connectors and webhook ingest. Errors have one shape: \
                       {\"error\": {\"code\": \"...\", \"message\": \"...\"}} (codes in docs/errors.md).",
        license(name = "Apache-2.0")
    ),
    modifiers(&Security),
    components(schemas(ErrorBody, ErrorDetail)),
    tags(
        (name = "auth", description = "Accounts and sessions"),
        (name = "pilots", description = "Pilots, versions, schedules, secrets"),
        (name = "runs", description = "Runs and live events"),
        (name = "approvals", description = "Human approvals"),
        (name = "connectors", description = "Connector credentials (write-only)"),
        (name = "webhooks", description = "Signed webhook ingest"),
    )
)]
struct ApiDoc;

/// The API routes with their OpenAPI document.
pub fn router() -> OpenApiRouter<Shared> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(session))
        .routes(routes!(change_password))
        .routes(routes!(delete_me))
        .routes(routes!(export_me))
        .routes(routes!(list_pilots, create_pilot))
        .routes(routes!(import_pilot))
        .routes(routes!(get_pilot, update_pilot, delete_pilot))
        .routes(routes!(list_versions))
        .routes(routes!(get_version))
        .routes(routes!(enable_pilot))
        .routes(routes!(disable_pilot))
        .routes(routes!(get_schedules, put_schedules))
        .routes(routes!(export_pilot))
        .routes(routes!(rotate_secret))
        .routes(routes!(list_runs, run_now))
        .routes(routes!(get_run))
        .routes(routes!(cancel_run))
        .routes(routes!(replay_run))
        .routes(routes!(crate::live::run_events))
        .routes(routes!(list_approvals))
        .routes(routes!(decide_approval))
        .routes(routes!(list_connectors))
        .routes(routes!(put_connector, delete_connector))
        .routes(routes!(test_connector))
}

/// Turns a login into the response the API and the dashboard share: the account,
/// session facts, the CSRF token and the cookie.
pub fn session_response(
    st: &Shared,
    status: StatusCode,
    account: Account,
    session: &ops::NewSession,
) -> ApiResult<Response> {
    use secrecy::ExposeSecret as _;
    let cookie = st.cookies.set(session.token.expose_secret(), session.expires_at)?;
    let body = SessionInfo {
        account,
        session_id: session.session_id.to_string(),
        expires_at: rfc3339(session.expires_at),
        csrf_token: st.csrf.token(session.session_id),
    };
    Ok((status, [(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

/// Rate limits of sign-in and sign-up: per client network and, for sign-in, per email.
pub fn check_login_limits(st: &Shared, ip: ClientIp, email: Option<&str>) -> Result<(), Error> {
    if let Some(ip) = ip.0 {
        st.limits.login_per_source.check(&source_key(ip)).map_err(rate_limited)?;
    }
    if let Some(email) = email {
        st.limits.login_per_email.check(&email_key(email)).map_err(rate_limited)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- auth

/// Create an account. It does not sign in; call login next.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = RegisterBody,
    responses(
        (status = 201, description = "Created", body = Account),
        (status = 400, description = "Invalid email or weak password", body = ErrorBody),
        (status = 409, description = "The email is taken", body = ErrorBody),
        (status = 429, description = "Too many attempts", body = ErrorBody),
    ))]
#[tracing::instrument(name = "api.register", skip_all)]
async fn register(
    State(st): State<Shared>,
    ip: ClientIp,
    ApiJson(body): ApiJson<RegisterBody>,
) -> ApiResult<(StatusCode, Json<Account>)> {
    check_login_limits(&st, ip, None)?;
    let account = ops::register(&st, ip.0, &body).await?;
    Ok((StatusCode::CREATED, Json(account)))
}

/// Sign in: sets the session cookie and returns the CSRF token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginBody,
    responses(
        (status = 200, description = "Signed in; `Set-Cookie` carries the session", body = SessionInfo),
        (status = 401, description = "Wrong email or password", body = ErrorBody),
        (status = 429, description = "Too many attempts", body = ErrorBody),
    ))]
#[tracing::instrument(name = "api.login", skip_all)]
async fn login(
    State(st): State<Shared>,
    ip: ClientIp,
    ApiJson(body): ApiJson<LoginBody>,
) -> ApiResult<Response> {
    check_login_limits(&st, ip, Some(&body.email))?;
    let (account, session) = ops::login(&st, ip.0, &body.email, &body.password).await?;
    session_response(&st, StatusCode::OK, account, &session)
}

/// Sign out: the session ends at once and the cookie is removed.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "Signed out")),
    security(("session" = [], "csrf" = [])))]
#[tracing::instrument(name = "api.logout", skip_all)]
async fn logout(State(st): State<Shared>, slot: axum::Extension<SessionSlot>) -> ApiResult<Response> {
    if let Some(s) = &slot.0.0 {
        ops::logout(&st, s).await?;
    }
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, st.cookies.clear())]).into_response())
}

/// Who is signed in, and the CSRF token for state-changing requests.
#[utoipa::path(get, path = "/api/v1/session", tag = "auth",
    responses(
        (status = 200, description = "The session", body = SessionInfo),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ),
    security(("session" = [])))]
#[tracing::instrument(name = "api.session", skip_all)]
async fn session(State(st): State<Shared>, Authed(s): Authed) -> ApiResult<Json<SessionInfo>> {
    let account = ops::account(&st, &s).await?;
    Ok(Json(SessionInfo {
        account,
        session_id: s.session_id.to_string(),
        expires_at: rfc3339(s.expires_at),
        csrf_token: st.csrf.token(s.session_id),
    }))
}

/// Change the password. Every session ends; the answer sets a fresh cookie and
/// carries the new session's CSRF token.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "auth", request_body = ChangePasswordBody,
    responses(
        (status = 200, description = "Changed; a fresh session", body = SessionInfo),
        (status = 400, description = "The new password is too weak", body = ErrorBody),
        (status = 401, description = "Wrong current password or no session", body = ErrorBody),
    ),
    security(("session" = [], "csrf" = [])))]
#[tracing::instrument(name = "api.change_password", skip_all)]
async fn change_password(
    State(st): State<Shared>,
    Authed(s): Authed,
    ip: ClientIp,
    ApiJson(body): ApiJson<ChangePasswordBody>,
) -> ApiResult<Response> {
    let session = ops::change_password(&st, &s, ip.0, &body.current_password, &body.new_password).await?;
    let account = ops::account(&st, &with_token(&s, &session)).await?;
    session_response(&st, StatusCode::OK, account, &session)
}

/// The request's session replaced by a fresh one (after a password change).
pub fn with_token(old: &CurrentSession, new: &ops::NewSession) -> CurrentSession {
    CurrentSession {
        token: new.token.clone(),
        owner_id: old.owner_id,
        session_id: new.session_id,
        expires_at: new.expires_at,
    }
}

/// Delete the account and everything it owns, at once. Needs the password.
#[utoipa::path(delete, path = "/api/v1/me", tag = "auth", request_body = DeleteAccountBody,
    responses(
        (status = 204, description = "Deleted; the cookie is removed"),
        (status = 401, description = "Wrong password or no session", body = ErrorBody),
    ),
    security(("session" = [], "csrf" = [])))]
#[tracing::instrument(name = "api.delete_me", skip_all)]
async fn delete_me(
    State(st): State<Shared>,
    Authed(s): Authed,
    ip: ClientIp,
    ApiJson(body): ApiJson<DeleteAccountBody>,
) -> ApiResult<Response> {
    ops::delete_account(&st, &s, ip.0, &body.password).await?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, st.cookies.clear())]).into_response())
}

/// Export the account and all its Pilots as JSON.
#[utoipa::path(get, path = "/api/v1/me/export", tag = "auth",
    responses((status = 200, description = "The export", body = AccountExport)),
    security(("session" = [])))]
#[tracing::instrument(name = "api.export_me", skip_all)]
async fn export_me(State(st): State<Shared>, Authed(s): Authed) -> ApiResult<Response> {
    let export = ops::export_account(&st, &s).await?;
    Ok(([(header::CONTENT_DISPOSITION, "attachment; filename=\"bizops-export.json\"")], Json(export))
        .into_response())
}

// ---------------------------------------------------------------- pilots

/// The caller's Pilots, newest first.
#[utoipa::path(get, path = "/api/v1/pilots", tag = "pilots", params(PageQuery),
    responses((status = 200, description = "A page of Pilots", body = PilotList)),
    security(("session" = [])))]
#[tracing::instrument(name = "api.list_pilots", skip_all)]
async fn list_pilots(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<PilotList>> {
    Ok(Json(ops::list_pilots(&st, &s, q.page_size, q.page_token).await?))
}

/// Create a Pilot. The webhook secret is in this answer only.
#[utoipa::path(post, path = "/api/v1/pilots", tag = "pilots", request_body = CreatePilotBody,
    responses(
        (status = 201, description = "Created", body = PilotWithSecret),
        (status = 400, description = "The spec is not valid; the message names the field", body = ErrorBody),
    ),
    security(("session" = [], "csrf" = [])))]
#[tracing::instrument(name = "api.create_pilot", skip_all)]
async fn create_pilot(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiJson(body): ApiJson<CreatePilotBody>,
) -> ApiResult<(StatusCode, Json<PilotWithSecret>)> {
    Ok((StatusCode::CREATED, Json(ops::create_pilot(&st, &s, body.spec, body.enabled).await?)))
}

/// Create a Pilot from a `bizops.pilot/v1` document. The secret is in this answer only.
#[utoipa::path(post, path = "/api/v1/pilots/import", tag = "pilots", request_body = ImportBody,
    responses(
        (status = 201, description = "Imported", body = PilotWithSecret),
        (status = 400, description = "The document is not valid", body = ErrorBody),
    ),
    security(("session" = [], "csrf" = [])))]
#[tracing::instrument(name = "api.import_pilot", skip_all)]
async fn import_pilot(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiJson(body): ApiJson<ImportBody>,
) -> ApiResult<(StatusCode, Json<PilotWithSecret>)> {
    let document = serde_json::to_string(&body.document).map_err(Error::internal)?;
    Ok((StatusCode::CREATED, Json(ops::import_pilot(&st, &s, &document, body.enabled).await?)))
}

/// One Pilot at its current version.
#[utoipa::path(get, path = "/api/v1/pilots/{pilot_id}", tag = "pilots",
    params(("pilot_id" = String, Path, description = "Pilot id")),
    responses(
        (status = 200, description = "The Pilot", body = Pilot),
        (status = 404, description = "No such Pilot (or not yours)", body = ErrorBody),
    ),
    security(("session" = [])))]
#[tracing::instrument(name = "api.get_pilot", skip_all, fields(pilot_id = %id))]
async fn get_pilot(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Pilot>> {
    Ok(Json(ops::get_pilot(&st, &s, &id).await?))
}

/// Save a new version (optimistic concurrency on `expected_version`).
#[utoipa::path(put, path = "/api/v1/pilots/{pilot_id}", tag = "pilots", request_body = UpdatePilotBody,
    params(("pilot_id" = String, Path, description = "Pilot id")),
    responses(
        (status = 200, description = "The Pilot at its new version", body = Pilot),
        (status = 400, description = "The spec is not valid", body = ErrorBody),
        (status = 404, description = "No such Pilot", body = ErrorBody),
        (status = 409, description = "Someone saved a newer version (STALE_VERSION)", body = ErrorBody),
    ),
    security(("session" = [], "csrf" = [])))]
#[tracing::instrument(name = "api.update_pilot", skip_all, fields(pilot_id = %id))]
async fn update_pilot(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdatePilotBody>,
) -> ApiResult<Json<Pilot>> {
    Ok(Json(ops::update_pilot(&st, &s, &id, body.expected_version, body.spec).await?))
}

/// Delete a Pilot, its versions, secrets, schedules and runs.
#[utoipa::path(delete, path = "/api/v1/pilots/{pilot_id}", tag = "pilots",
    params(("pilot_id" = String, Path, description = "Pilot id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such Pilot", body = ErrorBody),
    ),
    security(("session" = [], "csrf" = [])))]
#[tracing::instrument(name = "api.delete_pilot", skip_all, fields(pilot_id = %id))]
async fn delete_pilot(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    ops::delete_pilot(&st, &s, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Version history, newest first.
#[utoipa::path(get, path = "/api/v1/pilots/{pilot_id}/versions", tag = "pilots",
    params(("pilot_id" = String, Path, description = "Pilot id"), PageQuery),
    responses(
        (status = 200, description = "A page of versions", body = VersionList),
        (status = 404, description = "No such Pilot", body = ErrorBody),
    ),
    security(("session" = [])))]
#[tracing::instrument(name = "api.list_versions", skip_all, fields(pilot_id = %id))]
async fn list_versions(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<VersionList>> {
    Ok(Json(ops::list_versions(&st, &s, &id, q.page_size, q.page_token).await?))
}

/// One immutable version.
#[utoipa::path(get, path = "/api/v1/pilots/{pilot_id}/versions/{version}", tag = "pilots",
    params(("pilot_id" = String, Path, description = "Pilot id"), ("version" = i64, Path, description = "Version number")),
    responses(
        (status = 200, description = "The version", body = PilotVersion),
        (status = 404, description = "No such Pilot or version", body = ErrorBody),
    ),
    security(("session" = [])))]
#[tracing::instrument(name = "api.get_version", skip_all, fields(pilot_id = %p.pilot_id, version = p.version))]
async fn get_version(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiPath(p): ApiPath<VersionPath>,
) -> ApiResult<Json<PilotVersion>> {
    Ok(Json(ops::get_version(&st, &s, &p.pilot_id, p.version).await?))
}

/// The parameters of `/pilots/{pilot_id}/versions/{version}`, by name (so a
/// malformed one is named in the error).
#[derive(serde::Deserialize)]
struct VersionPath {
    pilot_id: String,
    version: i64,
}

/// Enable a Pilot (it accepts triggers).
#[utoipa::path(post, path = "/api/v1/pilots/{pilot_id}/enable", tag = "pilots",
    params(("pilot_id" = String, Path, description = "Pilot id")),
    responses((status = 200, description = "The Pilot", body = Pilot), (status = 404, description = "No such Pilot", body = ErrorBody)),
    security(("session" = [], "csrf" = [])))]
#[tracing::instrument(name = "api.enable_pilot", skip_all, fields(pilot_id = %id))]
async fn enable_pilot(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Pilot>> {
    Ok(Json(ops::set_enabled(&st, &s, &id, true).await?))
}

/// Disable a Pilot (webhooks, schedules and run-now are refused).
#[utoipa::path(post, path = "/api/v1/pilots/{pilot_id}/disable", tag = "pilots",
    params(("pilot_id" = String, Path, description = "Pilot id")),
    responses((status = 200, description = "The Pilot", body = Pilot), (status = 404, description = "No such Pilot", body = ErrorBody)),
    security(("session" = [], "csrf" = [])))]
#[tracing::instrument(name = "api.disable_pilot", skip_all, fields(pilot_id = %id))]
async fn disable_pilot(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Pilot>> {
    Ok(Json(ops::set_enabled(&st, &s, &id, false).await?))
}

/// A Pilot's schedules (they are part of its spec).
#[utoipa::path(get, path = "/api/v1/pilots/{pilot_id}/schedules", tag = "pilots",
    params(("pilot_id" = String, Path, description = "Pilot id")),
    responses((status = 200, description = "The schedules", body = ScheduleList), (status = 404, description = "No such Pilot", body = ErrorBody)),
    security(("session" = [])))]
#[tracing::instrument(name = "api.get_schedules", skip_all, fields(pilot_id = %id))]
async fn get_schedules(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ScheduleList>> {
    let pilot = ops::get_pilot(&st, &s, &id).await?;
    Ok(Json(ScheduleList { version: pilot.version, schedules: pilot.spec.schedules }))
}

/// Replace a Pilot's schedules (writes a new version of its spec).
#[utoipa::path(put, path = "/api/v1/pilots/{pilot_id}/schedules", tag = "pilots", request_body = PutSchedulesBody,
    params(("pilot_id" = String, Path, description = "Pilot id")),
    responses(
        (status = 200, description = "The Pilot at its new version", body = Pilot),
        (status = 400, description = "A schedule is not valid", body = ErrorBody),
        (status = 409, description = "Someone saved a newer version", body = ErrorBody),
    ),
    security(("session" = [], "csrf" = [])))]
#[tracing::instrument(name = "api.put_schedules", skip_all, fields(pilot_id = %id))]
async fn put_schedules(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PutSchedulesBody>,
) -> ApiResult<Json<Pilot>> {
    let pilot = ops::get_pilot(&st, &s, &id).await?;
    if pilot.version != body.expected_version {
        return Err(ApiError(Error::new(
            ErrorCode::StaleVersion,
            "someone saved a newer version; reload and try again",
        )));
    }
    let spec = PilotSpec { schedules: body.schedules, ..pilot.spec };
    Ok(Json(ops::update_pilot(&st, &s, &id, body.expected_version, spec).await?))
}

/// The Pilot as a `bizops.pilot/v1` document, without secrets.
#[utoipa::path(get, path = "/api/v1/pilots/{pilot_id}/export", tag = "pilots",
    params(("pilot_id" = String, Path, description = "Pilot id")),
    responses(
        (status = 200, description = "The document (schema: docs/pilot-export.schema.json)", body = Object),
        (status = 404, description = "No such Pilot", body = ErrorBody),
    ),
    security(("session" = [])))]
#[tracing::instrument(name = "api.export_pilot", skip_all, fields(pilot_id = %id))]
async fn export_pilot(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let document = ops::export_pilot(&st, &s, &id).await?;
    let disposition = format!("attachment; filename=\"pilot-{}.json\"", ops::parse_id("pilot_id", &id)?);
    Ok(([(header::CONTENT_DISPOSITION, disposition)], Json(document)).into_response())
}

/// Issue a new webhook secret (shown this once); the old one works for a grace period.
#[utoipa::path(post, path = "/api/v1/pilots/{pilot_id}/webhook-secret/rotate", tag = "pilots",
    params(("pilot_id" = String, Path, description = "Pilot id")),
    responses((status = 200, description = "The new secret", body = RotatedSecret), (status = 404, description = "No such Pilot", body = ErrorBody)),
    security(("session" = [], "csrf" = [])))]
#[tracing::instrument(name = "api.rotate_secret", skip_all, fields(pilot_id = %id))]
async fn rotate_secret(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<RotatedSecret>> {
    Ok(Json(ops::rotate_secret(&st, &s, &id).await?))
}

/// Runs of a Pilot, newest first.
#[utoipa::path(get, path = "/api/v1/pilots/{pilot_id}/runs", tag = "runs",
    params(("pilot_id" = String, Path, description = "Pilot id"), PageQuery),
    responses((status = 200, description = "A page of runs", body = RunList), (status = 404, description = "No such Pilot", body = ErrorBody)),
    security(("session" = [])))]
#[tracing::instrument(name = "api.list_runs", skip_all, fields(pilot_id = %id))]
async fn list_runs(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<RunList>> {
    Ok(Json(ops::list_runs(&st, &s, &id, q.page_size, q.page_token).await?))
}

/// Run now with a JSON payload.
#[utoipa::path(post, path = "/api/v1/pilots/{pilot_id}/runs", tag = "runs", request_body = RunNowBody,
    params(("pilot_id" = String, Path, description = "Pilot id")),
    responses(
        (status = 202, description = "Accepted", body = TriggerAccepted),
        (status = 404, description = "No such Pilot", body = ErrorBody),
        (status = 409, description = "The Pilot is disabled", body = ErrorBody),
    ),
    security(("session" = [], "csrf" = [])))]
#[tracing::instrument(name = "api.run_now", skip_all, fields(pilot_id = %id))]
async fn run_now(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RunNowBody>,
) -> ApiResult<(StatusCode, Json<TriggerAccepted>)> {
    Ok((StatusCode::ACCEPTED, Json(ops::run_now(&st, &s, &id, body.payload, body.idempotency_key).await?)))
}

// ---------------------------------------------------------------- runs

/// One run with its steps.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}", tag = "runs",
    params(("run_id" = String, Path, description = "Run id")),
    responses((status = 200, description = "The run", body = Run), (status = 404, description = "No such run", body = ErrorBody)),
    security(("session" = [])))]
#[tracing::instrument(name = "api.get_run", skip_all, fields(run_id = %id))]
async fn get_run(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Run>> {
    Ok(Json(ops::get_run(&st, &s, &id).await?))
}

/// Cancel a queued, running or waiting run.
#[utoipa::path(post, path = "/api/v1/runs/{run_id}/cancel", tag = "runs",
    params(("run_id" = String, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run", body = Run),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run has finished", body = ErrorBody),
    ),
    security(("session" = [], "csrf" = [])))]
#[tracing::instrument(name = "api.cancel_run", skip_all, fields(run_id = %id))]
async fn cancel_run(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Run>> {
    Ok(Json(ops::cancel_run(&st, &s, &id).await?))
}

/// Run the same trigger payload again.
#[utoipa::path(post, path = "/api/v1/runs/{run_id}/replay", tag = "runs", request_body = ReplayBody,
    params(("run_id" = String, Path, description = "Run id")),
    responses((status = 202, description = "Accepted", body = TriggerAccepted), (status = 404, description = "No such run", body = ErrorBody)),
    security(("session" = [], "csrf" = [])))]
#[tracing::instrument(name = "api.replay_run", skip_all, fields(run_id = %id))]
async fn replay_run(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ReplayBody>,
) -> ApiResult<(StatusCode, Json<TriggerAccepted>)> {
    Ok((StatusCode::ACCEPTED, Json(ops::replay_run(&st, &s, &id, body.from_failed_step).await?)))
}

// ---------------------------------------------------------------- approvals

/// Pending approvals, oldest first.
#[utoipa::path(get, path = "/api/v1/approvals", tag = "approvals", params(PageQuery),
    responses((status = 200, description = "A page of approvals", body = ApprovalList)),
    security(("session" = [])))]
#[tracing::instrument(name = "api.list_approvals", skip_all)]
async fn list_approvals(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<ApprovalList>> {
    Ok(Json(ops::list_approvals(&st, &s, q.page_size, q.page_token).await?))
}

/// Approve (the run resumes) or reject (the run ends as rejected).
#[utoipa::path(post, path = "/api/v1/approvals/{approval_id}/decision", tag = "approvals", request_body = DecisionBody,
    params(("approval_id" = String, Path, description = "Approval id")),
    responses(
        (status = 200, description = "The approval after the decision", body = Approval),
        (status = 404, description = "No such approval", body = ErrorBody),
        (status = 409, description = "Already decided or expired", body = ErrorBody),
    ),
    security(("session" = [], "csrf" = [])))]
#[tracing::instrument(name = "api.decide_approval", skip_all, fields(approval_id = %id))]
async fn decide_approval(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> ApiResult<Json<Approval>> {
    Ok(Json(ops::decide(&st, &s, &id, body.decision, &body.comment).await?))
}

// ---------------------------------------------------------------- connectors

/// The caller's connectors: metadata only, never values.
#[utoipa::path(get, path = "/api/v1/connectors", tag = "connectors",
    responses((status = 200, description = "The connectors", body = ConnectorList)),
    security(("session" = [])))]
#[tracing::instrument(name = "api.list_connectors", skip_all)]
async fn list_connectors(State(st): State<Shared>, Authed(s): Authed) -> ApiResult<Json<ConnectorList>> {
    Ok(Json(ops::list_connectors(&st, &s).await?))
}

/// Connect or replace a credential. The value is write-only.
#[utoipa::path(put, path = "/api/v1/connectors/{name}", tag = "connectors", request_body = PutConnectorBody,
    params(("name" = String, Path, description = "Connector name, [a-z][a-z0-9_-]{0,62}")),
    responses(
        (status = 200, description = "Stored", body = Connector),
        (status = 400, description = "The value is not valid for the kind", body = ErrorBody),
    ),
    security(("session" = [], "csrf" = [])))]
#[tracing::instrument(name = "api.put_connector", skip_all, fields(connector = %name))]
async fn put_connector(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<PutConnectorBody>,
) -> ApiResult<Json<Connector>> {
    Ok(Json(ops::put_connector(&st, &s, &name, body.kind, &body.value).await?))
}

/// Disconnect: the credential is deleted at once.
#[utoipa::path(delete, path = "/api/v1/connectors/{name}", tag = "connectors",
    params(("name" = String, Path, description = "Connector name")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such connector", body = ErrorBody)),
    security(("session" = [], "csrf" = [])))]
#[tracing::instrument(name = "api.delete_connector", skip_all, fields(connector = %name))]
async fn delete_connector(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    ops::delete_connector(&st, &s, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A live check of a credential against its provider.
#[utoipa::path(post, path = "/api/v1/connectors/{name}/test", tag = "connectors",
    params(("name" = String, Path, description = "Connector name")),
    responses((status = 200, description = "The result", body = ConnectorTest), (status = 404, description = "No such connector", body = ErrorBody)),
    security(("session" = [], "csrf" = [])))]
#[tracing::instrument(name = "api.test_connector", skip_all, fields(connector = %name))]
async fn test_connector(
    State(st): State<Shared>,
    Authed(s): Authed,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<ConnectorTest>> {
    Ok(Json(ops::test_connector(&st, &s, &name).await?))
}
