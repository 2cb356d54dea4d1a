//! The runs' dashboard pages: run now, a Pilot's runs, one run (live through
//! `app.js` and the events API), cancel and replay.

use axum::{
    Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Redirect},
    routing::{get, post},
};
use bizops_errors::Error;
use minijinja::context;
use serde::Deserialize;

use crate::{
    pilots,
    runs::ops,
    shared::{
        extract::{PageAuthed, WebForm, WebPath, WebQuery},
        ops::parse_id,
        page::{Page, PageParams, PageResult, error_page, fail, render},
        state::Shared,
    },
};

/// The runs' pages.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/pilots/{id}/run", post(run_now))
        .route("/pilots/{id}/runs", get(runs_page))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/cancel", post(cancel_run))
        .route("/runs/{id}/replay", post(replay_run))
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
    let id = parse_id("pilot_id", &id).map_err(fail(&st, &s))?.to_string();
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

async fn runs_page(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebPath(id): WebPath<String>,
    WebQuery(q): WebQuery<PageParams>,
) -> PageResult {
    let pilot = pilots::ops::get_pilot(&st, &s, &id).await.map_err(fail(&st, &s))?;
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
    WebQuery(q): WebQuery<PageParams>,
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
    let pilot = parse_id("pilot_id", &form.pilot_id).map_err(fail(&st, &s))?;
    ops::replay_run(&st, &s, &id, form.from_failed_step.is_some()).await.map_err(fail(&st, &s))?;
    Ok(Redirect::to(&format!("/pilots/{pilot}/runs?notice=replayed")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        pilots::pages::tests::sample_pilot,
        runs::model::{Run, StepRun},
        shared::page::render_ok,
    };

    #[test]
    fn run_pages_render_with_realistic_data() {
        let run = Run {
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
            steps: vec![StepRun {
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
            context! { page => Page::sample(true), pilot => sample_pilot(), runs => vec![run.clone()], next_page_token => "" },
        );
        render_ok("run.html", context! { page => Page::sample(true), run });
    }
}
