//! The runs' JSON API (tag `runs`): run now, a Pilot's runs, one run, cancel,
//! replay, and the live events (`live`).

use axum::{Json, extract::State, http::StatusCode};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    runs::{
        live,
        model::{ReplayBody, Run, RunList, RunNowBody, TriggerAccepted},
        ops,
    },
    shared::{
        extract::{ApiJson, ApiPath, ApiQuery, ApiResult, Authed},
        model::{ErrorBody, PageQuery},
        state::Shared,
    },
};

/// The runs' routes with their OpenAPI entries.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(list_runs, run_now))
        .routes(routes!(get_run))
        .routes(routes!(cancel_run))
        .routes(routes!(replay_run))
        .routes(routes!(live::run_events))
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
