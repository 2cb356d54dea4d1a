//! The connectors' JSON API (tag `connectors`): list, connect, test and
//! disconnect credentials.

use axum::{Json, extract::State, http::StatusCode};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    connectors::{
        model::{Connector, ConnectorList, ConnectorTest, PutConnectorBody},
        ops,
    },
    shared::{
        extract::{ApiJson, ApiPath, ApiResult, Authed},
        model::ErrorBody,
        state::Shared,
    },
};

/// The connectors' routes with their OpenAPI entries.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(list_connectors))
        .routes(routes!(put_connector, delete_connector))
        .routes(routes!(test_connector))
}

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
