//! The account's JSON API (tag `auth`): sign-up, sign-in and -out, the
//! session and its CSRF token, password change, deletion and export.
//!
//! Authentication is the session cookie; state-changing requests also need the
//! same origin and the CSRF token from `GET /api/v1/session` in `X-CSRF-Token`
//! (enforced by `shared::middleware` before a handler runs).

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    account::{
        model::{
            Account, AccountExport, ChangePasswordBody, DeleteAccountBody, LoginBody, RegisterBody,
            SessionInfo,
        },
        ops,
    },
    shared::{
        extract::{ApiJson, ApiResult, Authed, ClientIp},
        model::{ErrorBody, rfc3339},
        state::{SessionSlot, Shared},
    },
};

/// The account's routes with their OpenAPI entries.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(session))
        .routes(routes!(change_password))
        .routes(routes!(delete_me))
        .routes(routes!(export_me))
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
    ops::check_login_limits(&st, ip)?;
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
    ops::check_login_limits(&st, ip)?;
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
    let account = ops::account_of(&st, &session.token).await?;
    session_response(&st, StatusCode::OK, account, &session)
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
