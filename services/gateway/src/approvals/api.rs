//! The approvals' JSON API (tag `approvals`): pending approvals and decisions.

use axum::{Json, extract::State};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    approvals::{
        model::{Approval, ApprovalList, DecisionBody},
        ops,
    },
    shared::{
        extract::{ApiJson, ApiPath, ApiQuery, ApiResult, Authed},
        model::{ErrorBody, PageQuery},
        state::Shared,
    },
};

/// The approvals' routes with their OpenAPI entries.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new().routes(routes!(list_approvals)).routes(routes!(decide_approval))
}

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
