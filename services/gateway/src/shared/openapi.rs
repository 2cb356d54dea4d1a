//! The OpenAPI document's frame (`/api/openapi.json`): every JSON handler is
//! annotated with `#[utoipa::path]` in its feature's `api` module, and `routes`
//! merges them onto this.

use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, SecurityScheme},
};

use crate::shared::{
    csrf,
    model::{ErrorBody, ErrorDetail},
    session,
};

/// Adds the cookie-and-CSRF security schemes.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                session::SECURE_COOKIE_NAME,
                "The session cookie set by POST /api/v1/auth/login (HttpOnly).",
            ))),
        );
        components.add_security_scheme(
            "csrf",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                csrf::HEADER,
                "The csrf_token of GET /api/v1/session; required with the cookie on every state-changing \
                 request, which must also carry Origin (or Sec-Fetch-Site: same-origin).",
            ))),
        );
    }
}

/// The document's info, tags, security schemes and error shapes; every
/// feature's routes add their paths (see `routes`).
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
pub struct ApiDoc;
