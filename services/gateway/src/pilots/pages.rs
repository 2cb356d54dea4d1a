//! The Pilots' dashboard pages: the list and import, a Pilot's page (with its
//! webhook examples), the editor, enable/disable, secret rotation, deletion and
//! export.

use std::collections::BTreeMap;

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use bizops_errors::{Error, ErrorCode};
use minijinja::context;
use serde::Deserialize;

use crate::{
    pilots::{
        editor::{self, Action, EditorForm},
        model::{Pilot, PilotSpec},
        ops,
    },
    shared::{
        extract::{PageAuthed, WebForm, WebPath, WebQuery},
        ops::parse_id,
        page::{Page, PageParams, PageResult, error_page, fail, render},
        session::CurrentSession,
        state::Shared,
    },
};

/// The Pilots' pages.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/pilots", get(pilots_page))
        .route("/pilots/import", post(import))
        .route("/pilots/new", get(new_pilot_page).post(new_pilot))
        .route("/pilots/{id}", get(pilot_page))
        .route("/pilots/{id}/edit", get(edit_page).post(edit))
        .route("/pilots/{id}/enabled", post(set_enabled))
        .route("/pilots/{id}/rotate", post(rotate))
        .route("/pilots/{id}/delete", post(delete_pilot))
        .route("/pilots/{id}/export", get(export_pilot))
}

fn kind_labels() -> BTreeMap<&'static str, &'static str> {
    editor::KINDS.iter().copied().collect()
}

async fn pilots_page(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebQuery(q): WebQuery<PageParams>,
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
    pilot: &Pilot,
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
    WebQuery(q): WebQuery<PageParams>,
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
    F: FnOnce(PilotSpec, EditorForm) -> Fut,
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
    let id = parse_id("pilot_id", &id).map_err(fail(&st, &s))?.to_string();
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
    let id = parse_id("pilot_id", &id).map_err(fail(&st, &s))?;
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

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::shared::page::render_ok;

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

    /// A Pilot with a step of every kind and a schedule.
    pub fn sample_pilot() -> Pilot {
        let spec: PilotSpec = serde_json::from_value(serde_json::json!({
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
        Pilot {
            id: "0190".into(),
            version: 2,
            enabled: true,
            spec,
            created_at: Some("2026-11-27T12:00:00Z".into()),
            updated_at: None,
            webhook_secret_issued_at: None,
            webhook_url: "https://x/hooks/0190".into(),
        }
    }

    #[test]
    fn pilot_pages_render_with_realistic_data() {
        let pilot = sample_pilot();
        let form = EditorForm::from_spec(&pilot.spec, 2, true);
        let mut errors = BTreeMap::new();
        errors.insert("steps[1].slack.text".to_owned(), "is required".to_owned());
        errors.insert("steps[2]".to_owned(), "needs html, text or both".to_owned());
        let kind_fields: BTreeMap<&str, &[editor::FieldDef]> =
            editor::KINDS.iter().map(|(k, _)| (*k, editor::kind_fields(k))).collect();
        let html = render_ok(
            "editor.html",
            context! { page => Page::sample(true), pilot_id => "0190", form, errors, form_error => "x",
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
            context! { page => Page::sample(true), pilot => pilot.clone(), secret => "whsec_x", curl_simple, curl_signed, kind_labels => kind_labels() },
        );
        render_ok(
            "pilots.html",
            context! { page => Page::sample(true), pilots => vec![pilot], next_page_token => "n", import_document => "" },
        );
    }
}
