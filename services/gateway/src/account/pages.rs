//! The account's dashboard pages: home, the privacy policy, sign-in, sign-up,
//! sign-out and the account page (password change, deletion).

use std::collections::BTreeMap;

use axum::{
    Extension, Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use bizops_errors::ErrorCode;
use minijinja::{Value, context};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};

use crate::{
    account::{model::RegisterBody, ops},
    shared::{
        error::set_retry_after,
        extract::{ClientIp, PageAuthed, WebForm, WebQuery},
        page::{Page, PageParams, PageResult, error_page, fail, render},
        session::CurrentSession,
        state::{SessionSlot, Shared},
    },
};

/// The privacy policy, served at `/privacy`.
const PRIVACY_POLICY: &str = include_str!("../../../../docs/privacy-policy.txt");

/// The account's pages.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(home))
        .route("/privacy", get(privacy))
        .route("/signin", get(signin_page).post(signin))
        .route("/signup", get(signup_page).post(signup))
        .route("/signout", post(signout))
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
    WebQuery(q): WebQuery<PageParams>,
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
        ops::check_login_limits(&st, ip)?;
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
        ops::check_login_limits(&st, ip)?;
        let body = RegisterBody {
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
    WebQuery(q): WebQuery<PageParams>,
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
    use super::*;
    use crate::{account::model::Account, shared::page::render_ok};

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
    fn account_pages_render_with_realistic_data() {
        render_ok(
            "signup.html",
            context! { page => Page::sample(false), email => "", display_name => "", errors => BTreeMap::<String, String>::new() },
        );
        render_ok("signin.html", context! { page => Page::sample(false), email => "", error => "bad" });
        render_ok(
            "privacy.html",
            context! { page => Page::sample(false), blocks => policy_blocks(PRIVACY_POLICY) },
        );
        let account = Account {
            id: "a".into(),
            email: "a@b.test".into(),
            display_name: "A".into(),
            created_at: None,
            password_changed_at: None,
        };
        render_ok(
            "account.html",
            context! { page => Page::sample(true), account, password_error => "x", delete_error => "y" },
        );
    }
}
