//! The connectors' dashboard page: the list, connect (the value is never
//! echoed back), test and disconnect.

use std::collections::BTreeMap;

use axum::{
    Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Redirect},
    routing::{get, post},
};
use bizops_errors::{Error, ErrorCode};
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};

use crate::{
    connectors::{model::ConnectorKind, ops},
    shared::{
        extract::{PageAuthed, WebForm, WebPath, WebQuery},
        page::{Page, PageParams, PageResult, error_page, fail, render},
        session::CurrentSession,
        state::Shared,
    },
};

/// The connectors' pages.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/connectors", get(connectors_page).post(connect))
        .route("/connectors/{name}/test", post(test_connector))
        .route("/connectors/{name}/delete", post(disconnect))
}

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
    WebQuery(q): WebQuery<PageParams>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{connectors::model::Connector, shared::page::render_ok};

    #[test]
    fn the_connectors_page_renders_with_realistic_data() {
        let connector = Connector {
            name: "slack".into(),
            kind: "slack".into(),
            created_at: None,
            updated_at: None,
            last_used_at: None,
            fingerprint: "…ab".into(),
        };
        render_ok(
            "connectors.html",
            context! { page => Page::sample(true), connectors => vec![connector], kind_names => kind_names(), kind => "slack", name => "slack",
            test_result => TestResult { name: "slack".into(), ok: false, detail: "no".into() }, error => "bad" },
        );
    }
}
