//! The Pilots' JSON API (tag `pilots`): Pilots, versions, schedules, export
//! and import, and the webhook secret.

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use bizops_errors::{Error, ErrorCode};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    pilots::{
        model::{
            CreatePilotBody, ImportBody, Pilot, PilotList, PilotSpec, PilotVersion, PilotWithSecret,
            PutSchedulesBody, RotatedSecret, ScheduleList, UpdatePilotBody, VersionList,
        },
        ops,
    },
    shared::{
        error::ApiError,
        extract::{ApiJson, ApiPath, ApiQuery, ApiResult, Authed},
        model::{ErrorBody, PageQuery},
        ops::parse_id,
        state::Shared,
    },
};

/// The Pilots' routes with their OpenAPI entries.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
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
}

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
    let disposition = format!("attachment; filename=\"pilot-{}.json\"", parse_id("pilot_id", &id)?);
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
