//! Webhook ingest: `POST /hooks/{pilot_id}`.
//!
//! Size and the per-source rate limit first, then the catalog's VerifyWebhook
//! (Standard Webhooks signature or `X-Pilot-Secret`), then the per-Pilot rate
//! limit (charged only for verified requests), then a `bizops.events.v1.Trigger`
//! is published to `<P>.triggers.<owner>.<pilot>` with `Nats-Msg-Id` =
//! `<pilot_id>:<key>`, and `202 {"trigger_id"}` is answered only once JetStream
//! has acknowledged it. The trigger id is derived from the Pilot and the key, so
//! a repeated delivery (a sender retrying after a 503 whose first attempt was
//! stored after all) is answered with the id of the one run it makes. Unknown Pilot, bad signature and disabled Pilot (the
//! catalog's stable codes) get the same 401; any other failure of the catalog is
//! a 503 with `Retry-After`. The body is never logged; no cookie is ever read here.

use axum::{
    Json,
    body::Body,
    extract::{Path, State, rejection::PathRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use bizops_errors::{Error, ErrorCode};
use bizops_proto::{catalog::v1 as catalog, events::v1 as events};
use bytes::Bytes;
use time::OffsetDateTime;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    runs::model::TriggerAccepted,
    shared::{
        error::{ApiError, rate_limited},
        extract::ClientIp,
        model::ErrorBody,
        ratelimit::source_key,
        state::Shared,
    },
};

/// The public answer to every refused webhook (unknown Pilot, bad signature,
/// disabled Pilot), so none can be told apart.
pub const NOT_ACCEPTED: &str = "webhook not accepted";
/// Headers passed to VerifyWebhook; nothing else (cookies, proxies' headers)
/// leaves the gateway.
const VERIFY_HEADERS: &[&str] =
    &["webhook-id", "webhook-timestamp", "webhook-signature", "x-pilot-secret", "content-type"];
/// How long a sender may take to send the body.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Longest accepted idempotency key.
const MAX_KEY_LEN: usize = 256;

/// The webhook route with its OpenAPI entry.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new().routes(routes!(ingest))
}

fn outcome(result: &'static str) {
    metrics::counter!("gateway_webhooks_total", "result" => result).increment(1);
}

fn rejected(reason: &'static str) -> ApiError {
    outcome("rejected");
    metrics::counter!("gateway_webhook_rejections_total", "reason" => reason).increment(1);
    tracing::info!(reason, "webhook rejected");
    ApiError(Error::new(ErrorCode::WebhookRejected, NOT_ACCEPTED))
}

fn unavailable(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ApiError {
    outcome("unavailable");
    ApiError(
        Error::new(
            ErrorCode::Unavailable,
            "the webhook could not be stored; nothing was accepted, retry shortly",
        )
        .with_retry_after(std::time::Duration::from_secs(5))
        .with_source(source),
    )
}

/// The idempotency key: `webhook-id`, else `Idempotency-Key`, else a fresh id.
fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let given = headers.get("webhook-id").or_else(|| headers.get("idempotency-key"));
    let Some(value) = given else { return Ok(Uuid::now_v7().to_string()) };
    let ok = !value.is_empty()
        && value.len() <= MAX_KEY_LEN
        && value.as_bytes().iter().all(|b| (0x21..=0x7e).contains(b));
    if !ok {
        outcome("invalid");
        return Err(ApiError(Error::invalid(
            "webhook-id",
            format!("must be 1-{MAX_KEY_LEN} visible ASCII characters (also Idempotency-Key)"),
        )));
    }
    Ok(String::from_utf8_lossy(value.as_bytes()).into_owned())
}

/// Trigger a Pilot. Sign the request the Standard Webhooks way (`webhook-id`,
/// `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of
/// "{id}.{timestamp}.{body}" keyed by the base64-decoded part of the secret after
/// `whsec_`>`), or send the secret itself as `X-Pilot-Secret`. Any content type,
/// at most 1 MiB by default. A repeated `webhook-id` (or `Idempotency-Key`) for
/// the same Pilot is accepted once.
#[utoipa::path(post, path = "/hooks/{pilot_id}", tag = "webhooks",
    params(
        ("pilot_id" = String, Path, description = "Pilot id"),
        ("webhook-id" = Option<String>, Header, description = "Standard Webhooks message id; also the idempotency key"),
        ("webhook-timestamp" = Option<String>, Header, description = "Unix seconds"),
        ("webhook-signature" = Option<String>, Header, description = "v1,<base64 signature> (space-separated list)"),
        ("x-pilot-secret" = Option<String>, Header, description = "The simple form: the webhook secret itself"),
        ("idempotency-key" = Option<String>, Header, description = "Idempotency key when there is no webhook-id"),
    ),
    request_body(content = String, description = "Any payload (JSON, form, text)", content_type = "*/*"),
    responses(
        (status = 202, description = "Stored for running", body = TriggerAccepted),
        (status = 401, description = "Not accepted: unknown Pilot, bad signature or disabled Pilot", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 429, description = "Too many requests (Retry-After)", body = ErrorBody),
        (status = 503, description = "Could not be stored; nothing accepted (Retry-After)", body = ErrorBody),
    ))]
#[tracing::instrument(name = "webhook", skip_all, fields(pilot_id = tracing::field::Empty))]
async fn ingest(
    State(st): State<Shared>,
    ip: ClientIp,
    pilot_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = st.webhook_body_bytes;
    let too_large = || {
        outcome("too_large");
        ApiError(Error::new(ErrorCode::PayloadTooLarge, format!("the body is larger than {limit} bytes")))
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    if let Some(ip) = ip.0
        && let Err(wait) = st.limits.webhook_per_source.check(&source_key(ip))
    {
        outcome("rate_limited");
        return Err(ApiError(rate_limited(wait)));
    }
    let Some(pilot) = pilot_id.ok().and_then(|Path(id)| id.parse::<Uuid>().ok()) else {
        return Err(rejected("unknown_pilot"));
    };
    tracing::Span::current().record("pilot_id", tracing::field::display(pilot));
    let body: Bytes = match tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return Err(too_large()),
        Err(_) => {
            outcome("invalid");
            return Err(ApiError(Error::invalid("body", "was not received in time")));
        }
    };
    let key = idempotency_key(&headers)?;

    let verified = verify(&st, pilot, &headers, &body).await?;
    // The Pilot's budget is charged only for verified requests, so unsigned
    // floods (held back by the per-source limit above) cannot use up the real
    // sender's allowance.
    if let Err(wait) = st.limits.webhook_per_pilot.check(&pilot) {
        outcome("rate_limited");
        return Err(ApiError(rate_limited(wait)));
    }
    let Ok(owner) = verified.owner_id.parse::<Uuid>() else {
        return Err(unavailable(std::io::Error::other("VerifyWebhook answered a malformed owner id")));
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(200).collect())
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let trigger = events::Trigger {
        trigger_id: trigger_id(pilot, &key).to_string(),
        owner_id: owner.to_string(),
        pilot_id: pilot.to_string(),
        pilot_version: verified.pilot_version,
        idempotency_key: key.clone(),
        source: events::TriggerSource::Webhook as i32,
        payload: body,
        content_type,
        accepted_at: Some(bizops_proto::timestamp::to_proto(OffsetDateTime::now_utc())),
        ..Default::default()
    };
    let subject = st.subjects.trigger(owner, pilot);
    let msg_id = bizops_bus::Subjects::trigger_msg_id(pilot, &key);
    let publish = bizops_bus::publish(&st.jetstream, subject, Some(&msg_id), bizops_bus::encode(&trigger));
    let published = match tokio::time::timeout(st.publish_timeout, publish).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return Err(unavailable(e)),
        Err(_) => return Err(unavailable(std::io::Error::other("JetStream did not acknowledge in time"))),
    };
    outcome(if published.duplicate { "duplicate" } else { "accepted" });
    let trigger_id = trigger.trigger_id;
    tracing::info!(trigger_id = %trigger_id, duplicate = published.duplicate, "webhook accepted");
    Ok((StatusCode::ACCEPTED, Json(TriggerAccepted { trigger_id })).into_response())
}

async fn verify(
    st: &Shared,
    pilot: Uuid,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<catalog::VerifyWebhookResponse, ApiError> {
    let forwarded: Vec<catalog::HttpHeader> = VERIFY_HEADERS
        .iter()
        .filter_map(|name| {
            let value = headers.get(*name)?.to_str().ok()?;
            Some(catalog::HttpHeader { name: (*name).to_owned(), value: value.to_owned() })
        })
        .collect();
    let b = &st.backends;
    let request =
        catalog::VerifyWebhookRequest { pilot_id: pilot.to_string(), headers: forwarded, body: body.clone() };
    let result = b
        .call_raw("verify_webhook", b.timeout(), || {
            let request = b.as_gateway_to_catalog(request.clone())?;
            let mut client = b.catalog();
            Ok(async move { client.verify_webhook(request).await })
        })
        .await;
    let failure = match result {
        Ok(v) => return Ok(v),
        Err(failure) => failure,
    };
    // Only the catalog's own, stable answers about this webhook are the public
    // 401. Anything else — the catalog refusing the gateway itself (a trust
    // misconfiguration), an outage, a proxy's status — must not look like a bad
    // signature to the sender: it is a 503 to retry, and an error for operators.
    match failure.stable_code() {
        Some(ErrorCode::WebhookRejected | ErrorCode::NotFound) => Err(rejected("signature_or_unknown")),
        Some(ErrorCode::PilotDisabled) => Err(rejected("disabled")),
        code => {
            let error = failure.into_error("verify_webhook");
            tracing::error!(
                error.code = %error.code(),
                stable_code = code.map(ErrorCode::as_str),
                "VerifyWebhook failed; answering 503 (check the catalog's trusted callers if this persists)"
            );
            Err(unavailable(error))
        }
    }
}

/// The trigger id of a webhook: a UUID (version 8) from SHA-256 of the Pilot id
/// and the idempotency key. Every delivery of one message has the same id — also
/// after the stream's duplicate window, and after the executor took the first one
/// in (the executor makes one run per Pilot and key).
fn trigger_id(pilot: Uuid, key: &str) -> Uuid {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    hash.update(b"bizops.webhook-trigger.v1\0");
    hash.update(pilot.as_bytes());
    hash.update(key.as_bytes());
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhooks_trigger_id_is_the_same_for_every_delivery_and_differs_per_pilot_and_key() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(trigger_id(a, "msg_1"), trigger_id(a, "msg_1"));
        assert_ne!(trigger_id(a, "msg_1"), trigger_id(a, "msg_2"));
        assert_ne!(trigger_id(a, "msg_1"), trigger_id(b, "msg_1"));
        assert_eq!(trigger_id(a, "msg_1").get_version_num(), 8);
    }
}
