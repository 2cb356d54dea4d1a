//! The gRPC edge of pilot-catalog: validation, ownership from the verified caller,
//! and one stable error code per failure.

use std::{sync::Arc, time::Duration};

use bizops_authn::{OwnerId, require_service, require_user};
use bizops_bus::{EventKind, Subjects};
use bizops_errors::{Error, ErrorCode};
use bizops_proto::{
    catalog::v1::{self as pb, catalog_service_server::CatalogService},
    events::v1 as events,
    timestamp::{from_proto, to_proto},
};
use bizops_runtime::{clock::Clock, paging::Page};
use prost::Message as _;
use secrecy::ExposeSecret as _;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    cache::{Entry, WebhookCache},
    config::LimitsConfig,
    export, schedule,
    spec::{self, Limits},
    store::{OutboxEvent, PilotRow, PilotStore, SealedSecret, VersionRow},
    system::SystemStore,
    webhook::{self, Keyring, SecretKey},
};

/// The one public answer for an unknown Pilot and a bad signature.
const NOT_ACCEPTED: &str = "webhook not accepted";
/// Largest ListDueSchedules window.
const MAX_DUE_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Where a page of due ticks ended: its last tick, Pilot and schedule (schedule
/// ids are unique only within their Pilot, so the Pilot is part of the order).
#[derive(Debug, PartialEq)]
struct DueCursor {
    tick: OffsetDateTime,
    pilot: Uuid,
    schedule: Uuid,
}

impl DueCursor {
    fn key(&self) -> (OffsetDateTime, Uuid, Uuid) {
        (self.tick, self.pilot, self.schedule)
    }

    fn token(&self) -> String {
        format!("{}.{}:{}:{}", self.tick.unix_timestamp(), self.tick.nanosecond(), self.pilot, self.schedule)
    }

    /// Also reads the token of a catalog before the Pilot was part of it
    /// (`<tick>:<schedule>`, during a rolling update): that page then starts at
    /// the tick's first schedule, and the ticks handed out twice collapse on
    /// their message ids.
    fn parse(token: &str) -> Option<Self> {
        let (time, rest) = token.split_once(':')?;
        let (secs, nanos) = time.split_once('.')?;
        let tick = OffsetDateTime::from_unix_timestamp(secs.parse().ok()?)
            .ok()?
            .replace_nanosecond(nanos.parse().ok()?)
            .ok()?;
        let (pilot, schedule) = match rest.split_once(':') {
            Some((pilot, schedule)) => (pilot.parse().ok()?, schedule.parse().ok()?),
            None => {
                let _: Uuid = rest.parse().ok()?;
                (Uuid::nil(), Uuid::nil())
            }
        };
        Some(Self { tick, pilot, schedule })
    }
}

/// Everything the RPC handlers share.
pub struct Catalog<S> {
    pub(crate) store: S,
    pub(crate) system: SystemStore,
    pub(crate) keyring: Keyring,
    pub(crate) cache: WebhookCache,
    pub(crate) limits: LimitsConfig,
    pub(crate) rotation_grace: Duration,
    pub(crate) tolerance: Duration,
    pub(crate) subjects: Subjects,
    pub(crate) outbox_wake: Arc<Notify>,
    /// Where "now" comes from: webhook timestamps, the rotation grace period.
    pub(crate) clock: Arc<dyn Clock>,
}

fn pilot_pb(row: &PilotRow) -> pb::Pilot {
    pb::Pilot {
        id: row.id.to_string(),
        owner_id: row.owner_id.to_string(),
        version: row.version,
        spec: Some(row.spec.clone()),
        enabled: row.enabled,
        created_at: Some(to_proto(row.created_at)),
        updated_at: Some(to_proto(row.updated_at)),
        webhook_secret_issued_at: Some(to_proto(row.webhook_secret_issued_at)),
    }
}

fn summary_pb(v: &VersionRow) -> pb::PilotVersionSummary {
    pb::PilotVersionSummary {
        version: v.version,
        title: v.title.clone(),
        step_count: u32::try_from(v.step_count).unwrap_or(0),
        created_at: Some(to_proto(v.created_at)),
    }
}

/// A Pilot id from a request field; a malformed one is simply not found.
fn pilot_id(text: &str) -> Result<Uuid, Error> {
    text.trim().parse().map_err(|_| Error::not_found("pilot"))
}

fn reply<T>(result: Result<T, Error>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

impl<S: PilotStore> Catalog<S> {
    fn limits(&self) -> Limits {
        Limits { max_steps: self.limits.max_steps, max_document_bytes: self.limits.max_document_bytes }
    }

    /// A new secret, sealed for Pilot `id`; returns the shown-once text too.
    fn new_secret(&self, id: Uuid) -> Result<(SealedSecret, secrecy::SecretString), Error> {
        let key = SecretKey::generate().map_err(|e| Error::internal(format!("no randomness: {e}")))?;
        let (key_id, ciphertext) = self.keyring.seal(&key, id.as_bytes()).map_err(Error::internal)?;
        Ok((SealedSecret { id: Uuid::now_v7(), key_id, ciphertext }, key.to_secret_string()))
    }

    async fn create(
        &self,
        owner: OwnerId,
        mut spec: pb::PilotSpec,
        enabled: bool,
    ) -> Result<(PilotRow, String), Error> {
        spec::validate(&mut spec, self.limits())?;
        let id = Uuid::now_v7();
        let (sealed, secret) = self.new_secret(id)?;
        let row = self.store.create(owner, &spec, enabled, &sealed, id, self.limits.max_pilots).await?;
        metrics::counter!("catalog_pilots_created_total").increment(1);
        tracing::info!(owner_id = %owner, pilot_id = %id, "pilot created");
        Ok((row, secret.expose_secret().to_owned()))
    }

    async fn verify_webhook(
        &self,
        req: pb::VerifyWebhookRequest,
    ) -> Result<pb::VerifyWebhookResponse, Error> {
        let reject = |reason: &'static str| {
            metrics::counter!("catalog_webhook_verifications_total", "result" => reason).increment(1);
            tracing::info!(reason, "webhook rejected");
            Error::new(ErrorCode::WebhookRejected, NOT_ACCEPTED)
        };
        let Ok(id) = req.pilot_id.trim().parse::<Uuid>() else { return Err(reject("unknown_pilot")) };
        let entry = match self.cache.get(id) {
            Some(entry) => entry,
            None => {
                let read = self.cache.generation();
                let entry = self.load_webhook(id).await?;
                self.cache.put(id, entry.clone(), read);
                entry
            }
        };
        let Some(entry) = entry else { return Err(reject("unknown_pilot")) };
        let now = self.clock.now();
        let headers: Vec<(String, String)> = req.headers.into_iter().map(|h| (h.name, h.value)).collect();
        let tolerance = i64::try_from(self.tolerance.as_secs()).unwrap_or(300);
        webhook::verify(&entry.valid_keys(now), &headers, &req.body, now.unix_timestamp(), tolerance)
            .map_err(|r| reject(r.label()))?;
        if !entry.enabled {
            metrics::counter!("catalog_webhook_verifications_total", "result" => "disabled").increment(1);
            return Err(Error::new(ErrorCode::PilotDisabled, "the Pilot is disabled"));
        }
        metrics::counter!("catalog_webhook_verifications_total", "result" => "accepted").increment(1);
        Ok(pb::VerifyWebhookResponse {
            owner_id: entry.owner_id.to_string(),
            pilot_id: id.to_string(),
            pilot_version: entry.version,
        })
    }

    async fn load_webhook(&self, id: Uuid) -> Result<Option<Arc<Entry>>, Error> {
        let now = self.clock.now();
        let Some(record) = self.system.webhook(id, now).await.map_err(Error::internal)? else {
            return Ok(None);
        };
        let mut secrets = Vec::with_capacity(record.secrets.len());
        for (key_id, sealed, until) in record.secrets {
            match self.keyring.open(&key_id, &sealed, id.as_bytes()) {
                Ok(key) => secrets.push((key, until)),
                // A previous secret in its grace period that no longer decrypts (its
                // catalog key was removed) only ends its grace early.
                Err(e) if until.is_some() => {
                    tracing::error!(pilot_id = %id, error = %e, "a previous webhook secret does not decrypt; ignored");
                }
                Err(e) => {
                    tracing::error!(pilot_id = %id, error = %e, "the current webhook secret does not decrypt");
                    return Err(Error::internal(e));
                }
            }
        }
        Ok(Some(Arc::new(Entry {
            owner_id: record.owner_id,
            version: record.version,
            enabled: record.enabled,
            secrets,
        })))
    }

    async fn due_schedules(
        &self,
        req: pb::ListDueSchedulesRequest,
    ) -> Result<pb::ListDueSchedulesResponse, Error> {
        let after =
            req.after.as_ref().and_then(from_proto).ok_or_else(|| Error::invalid("after", "is required"))?;
        let until =
            req.until.as_ref().and_then(from_proto).ok_or_else(|| Error::invalid("until", "is required"))?;
        if until < after {
            return Err(Error::invalid("until", "must not be before after"));
        }
        if until - after > MAX_DUE_WINDOW {
            return Err(Error::invalid("until", "the window may span at most 24 hours"));
        }
        let limit = match req.limit {
            0 => 1000,
            n => n.min(10_000) as usize,
        };
        let cursor = match req.page_token.as_str() {
            "" => None,
            token => {
                Some(DueCursor::parse(token).ok_or_else(|| Error::invalid("page_token", "is not valid"))?)
            }
        };
        let per_minute = self.limits.schedule_ticks_per_minute as usize;
        let mut due: Vec<((OffsetDateTime, Uuid, Uuid), pb::DueSchedule)> = Vec::new();
        for s in self.system.schedules().await.map_err(Error::internal)? {
            let (Ok(cron), Ok(tz)) = (schedule::parse(&s.cron), schedule::timezone(&s.timezone)) else {
                tracing::warn!(pilot_id = %s.pilot_id, schedule_id = %s.id, "stored schedule does not parse; skipped");
                continue;
            };
            // A schedule fires at most once a minute, so this bounds its ticks.
            let most = usize::try_from((until - after).whole_minutes()).unwrap_or(0).saturating_add(2);
            for tick in schedule::ticks(&cron, tz, after, until, most) {
                due.push((
                    (tick, s.pilot_id, s.id),
                    pb::DueSchedule {
                        owner_id: s.owner_id.to_string(),
                        pilot_id: s.pilot_id.to_string(),
                        schedule_id: s.id.to_string(),
                        tick: Some(to_proto(tick)),
                        pilot_version: s.version,
                    },
                ));
            }
        }
        due.sort_by_key(|(key, _)| *key);
        // One owner's ticks within a minute beyond the cap are not fired, so a
        // flood of schedules cannot crowd out everyone else's (deterministic:
        // every page and every replica drops the same ones).
        let mut per_owner_minute: std::collections::HashMap<(String, i64), usize> =
            std::collections::HashMap::new();
        let mut dropped = 0u64;
        due.retain(|((tick, _, _), d)| {
            let n = per_owner_minute
                .entry((d.owner_id.clone(), tick.unix_timestamp().div_euclid(60)))
                .or_default();
            *n += 1;
            let keep = *n <= per_minute;
            if !keep {
                dropped += 1;
            }
            keep
        });
        if dropped > 0 && cursor.is_none() {
            metrics::counter!("catalog_schedule_ticks_dropped_total").increment(dropped);
            tracing::warn!(dropped, "schedule ticks over an owner's per-minute cap were not fired");
        }
        let start = match cursor {
            Some(c) => due.partition_point(|(key, _)| *key <= c.key()),
            None => 0,
        };
        let rest = due.len().saturating_sub(start);
        let page: Vec<_> = due.into_iter().skip(start).take(limit).collect();
        let next_page_token = match page.last() {
            Some(((tick, pilot, schedule), _)) if rest > limit => {
                DueCursor { tick: *tick, pilot: *pilot, schedule: *schedule }.token()
            }
            _ => String::new(),
        };
        Ok(pb::ListDueSchedulesResponse { due: page.into_iter().map(|(_, d)| d).collect(), next_page_token })
    }
}

#[tonic::async_trait]
impl<S: PilotStore> CatalogService for Catalog<S> {
    #[tracing::instrument(skip_all)]
    async fn create_pilot(
        &self,
        request: Request<pb::CreatePilotRequest>,
    ) -> Result<Response<pb::CreatePilotResponse>, Status> {
        reply(
            async {
                let user = require_user(&request)?;
                let req = request.into_inner();
                let (row, webhook_secret) =
                    self.create(user.owner_id, req.spec.unwrap_or_default(), req.enabled).await?;
                Ok(pb::CreatePilotResponse { pilot: Some(pilot_pb(&row)), webhook_secret })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn get_pilot(
        &self,
        request: Request<pb::GetPilotRequest>,
    ) -> Result<Response<pb::GetPilotResponse>, Status> {
        reply(
            async {
                let user = require_user(&request)?;
                let row = self.store.get(user.owner_id, pilot_id(&request.get_ref().pilot_id)?).await?;
                Ok(pb::GetPilotResponse { pilot: Some(pilot_pb(&row)) })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn list_pilots(
        &self,
        request: Request<pb::ListPilotsRequest>,
    ) -> Result<Response<pb::ListPilotsResponse>, Status> {
        reply(
            async {
                let user = require_user(&request)?;
                let req = request.get_ref();
                let page = Page::<Uuid>::parse("p:", req.page_size, &req.page_token)?;
                let rows = self.store.list(user.owner_id, page.after(), page.limit()).await?;
                let (rows, next) = page.finish(rows, |r| r.id);
                Ok(pb::ListPilotsResponse {
                    pilots: rows.iter().map(pilot_pb).collect(),
                    next_page_token: next,
                })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn update_pilot(
        &self,
        request: Request<pb::UpdatePilotRequest>,
    ) -> Result<Response<pb::UpdatePilotResponse>, Status> {
        reply(async {
            let user = require_user(&request)?;
            let req = request.into_inner();
            let id = pilot_id(&req.pilot_id)?;
            if req.expected_version < 1 {
                return Err(Error::invalid("expected_version", "is required (the version you edited)"));
            }
            let mut spec = req.spec.unwrap_or_default();
            spec::validate(&mut spec, self.limits())?;
            let row = self.store.update(user.owner_id, id, req.expected_version, &spec).await?;
            self.cache.invalidate(id);
            tracing::info!(owner_id = %user.owner_id, pilot_id = %id, version = row.version, "pilot updated");
            Ok(pb::UpdatePilotResponse { pilot: Some(pilot_pb(&row)) })
        }
        .await)
    }

    #[tracing::instrument(skip_all)]
    async fn delete_pilot(
        &self,
        request: Request<pb::DeletePilotRequest>,
    ) -> Result<Response<pb::DeletePilotResponse>, Status> {
        reply(
            async {
                let user = require_user(&request)?;
                let id = pilot_id(&request.get_ref().pilot_id)?;
                let event = events::PilotDeleted {
                    owner_id: user.owner_id.to_string(),
                    pilot_id: id.to_string(),
                    deleted_at: Some(to_proto(self.clock.now())),
                };
                let event = OutboxEvent {
                    subject: self.subjects.event(user.owner_id.as_uuid(), EventKind::PilotDeleted),
                    msg_id: format!("pilot_deleted:{id}"),
                    payload: event.encode_to_vec(),
                };
                self.store.delete(user.owner_id, id, &event).await?;
                self.cache.invalidate(id);
                self.outbox_wake.notify_one();
                tracing::info!(owner_id = %user.owner_id, pilot_id = %id, "pilot deleted");
                Ok(pb::DeletePilotResponse {})
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn set_enabled(
        &self,
        request: Request<pb::SetEnabledRequest>,
    ) -> Result<Response<pb::SetEnabledResponse>, Status> {
        reply(
            async {
                let user = require_user(&request)?;
                let req = request.get_ref();
                let id = pilot_id(&req.pilot_id)?;
                let row = self.store.set_enabled(user.owner_id, id, req.enabled).await?;
                self.cache.invalidate(id);
                Ok(pb::SetEnabledResponse { pilot: Some(pilot_pb(&row)) })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn list_versions(
        &self,
        request: Request<pb::ListVersionsRequest>,
    ) -> Result<Response<pb::ListVersionsResponse>, Status> {
        reply(
            async {
                let user = require_user(&request)?;
                let req = request.get_ref();
                let id = pilot_id(&req.pilot_id)?;
                let page = Page::<i64>::parse("v:", req.page_size, &req.page_token)?;
                let rows = self.store.list_versions(user.owner_id, id, page.after(), page.limit()).await?;
                let (rows, next) = page.finish(rows, |r| r.version);
                Ok(pb::ListVersionsResponse {
                    versions: rows.iter().map(summary_pb).collect(),
                    next_page_token: next,
                })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn get_version(
        &self,
        request: Request<pb::GetVersionRequest>,
    ) -> Result<Response<pb::GetVersionResponse>, Status> {
        reply(
            async {
                let user = require_user(&request)?;
                let req = request.get_ref();
                let id = pilot_id(&req.pilot_id)?;
                let v = self.store.get_version(user.owner_id, id, req.version).await?;
                Ok(pb::GetVersionResponse {
                    version: Some(pb::PilotVersion {
                        pilot_id: id.to_string(),
                        owner_id: user.owner_id.to_string(),
                        version: v.version,
                        spec: v.spec,
                        created_at: Some(to_proto(v.created_at)),
                    }),
                })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn export_pilot(
        &self,
        request: Request<pb::ExportPilotRequest>,
    ) -> Result<Response<pb::ExportPilotResponse>, Status> {
        reply(
            async {
                let user = require_user(&request)?;
                let row = self.store.get(user.owner_id, pilot_id(&request.get_ref().pilot_id)?).await?;
                let exported_at = self
                    .clock
                    .now()
                    .format(&time::format_description::well_known::Rfc3339)
                    .map_err(Error::internal)?;
                let doc = export::to_document(&row.spec, Some(exported_at))?;
                Ok(pb::ExportPilotResponse { json: export::to_json(&doc)? })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn import_pilot(
        &self,
        request: Request<pb::ImportPilotRequest>,
    ) -> Result<Response<pb::ImportPilotResponse>, Status> {
        reply(
            async {
                let user = require_user(&request)?;
                let req = request.into_inner();
                // The JSON text is larger than the encoded content it carries; the real
                // size limit is enforced on the content by `spec::validate`.
                let spec = export::parse(&req.json, export::json_envelope(self.limits.max_document_bytes))?;
                let (row, webhook_secret) = self.create(user.owner_id, spec, req.enabled).await?;
                Ok(pb::ImportPilotResponse { pilot: Some(pilot_pb(&row)), webhook_secret })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn rotate_webhook_secret(
        &self,
        request: Request<pb::RotateWebhookSecretRequest>,
    ) -> Result<Response<pb::RotateWebhookSecretResponse>, Status> {
        reply(
            async {
                let user = require_user(&request)?;
                let id = pilot_id(&request.get_ref().pilot_id)?;
                let (sealed, secret) = self.new_secret(id)?;
                let until = self.clock.now() + self.rotation_grace;
                self.store.rotate_secret(user.owner_id, id, &sealed, until).await?;
                self.cache.invalidate(id);
                tracing::info!(owner_id = %user.owner_id, pilot_id = %id, "webhook secret rotated");
                Ok(pb::RotateWebhookSecretResponse {
                    webhook_secret: secret.expose_secret().to_owned(),
                    previous_valid_until: Some(to_proto(until)),
                })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn verify_webhook(
        &self,
        request: Request<pb::VerifyWebhookRequest>,
    ) -> Result<Response<pb::VerifyWebhookResponse>, Status> {
        reply(
            async {
                require_service(&request, &["gateway"])?;
                self.verify_webhook(request.into_inner()).await
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn list_due_schedules(
        &self,
        request: Request<pb::ListDueSchedulesRequest>,
    ) -> Result<Response<pb::ListDueSchedulesResponse>, Status> {
        reply(
            async {
                require_service(&request, &["executor"])?;
                self.due_schedules(request.into_inner()).await
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn delete_owner_data(
        &self,
        request: Request<pb::DeleteOwnerDataRequest>,
    ) -> Result<Response<pb::DeleteOwnerDataResponse>, Status> {
        reply(
            async {
                require_service(&request, &["identity"])?;
                let owner = OwnerId::parse("owner_id", &request.get_ref().owner_id)?;
                let deleted = self.system.delete_owner(owner).await.map_err(Error::internal)?;
                self.cache.invalidate_owner(owner.as_uuid());
                tracing::info!(owner_id = %owner, pilots_deleted = deleted, "owner data deleted");
                Ok(pb::DeleteOwnerDataResponse { pilots_deleted: deleted })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn get_version_for_run(
        &self,
        request: Request<pb::GetVersionForRunRequest>,
    ) -> Result<Response<pb::GetVersionForRunResponse>, Status> {
        reply(
            async {
                require_service(&request, &["executor"])?;
                let req = request.get_ref();
                let owner = OwnerId::parse("owner_id", &req.owner_id)?;
                let id = pilot_id(&req.pilot_id)?;
                let v = self
                    .system
                    .version_for_run(owner, id, req.version)
                    .await
                    .map_err(Error::internal)?
                    .ok_or_else(|| Error::not_found("pilot version"))?;
                let spec = pb::PilotSpec::decode(v.spec.as_slice()).map_err(Error::internal)?;
                Ok(pb::GetVersionForRunResponse {
                    version: Some(pb::PilotVersion {
                        pilot_id: id.to_string(),
                        owner_id: owner.to_string(),
                        version: req.version,
                        spec: Some(spec),
                        created_at: Some(to_proto(v.created_at)),
                    }),
                    enabled: v.enabled,
                })
            }
            .await,
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn due_cursors_carry_the_pilot_and_read_the_older_form() {
        let c = DueCursor {
            tick: time::macros::datetime!(2026-06-01 10:00:00.5 UTC),
            pilot: Uuid::now_v7(),
            schedule: Uuid::now_v7(),
        };
        assert_eq!(DueCursor::parse(&c.token()), Some(c));
        let old = DueCursor::parse("1780308000.0:0193a000-0000-7000-8000-000000000001").unwrap();
        assert_eq!(
            (old.pilot, old.schedule),
            (Uuid::nil(), Uuid::nil()),
            "starts at the tick's first schedule"
        );
        for bad in ["", "1.0", "1.0:x", "1.0:0193a000-0000-7000-8000-000000000001:x", "x.0:y"] {
            assert_eq!(DueCursor::parse(bad), None, "{bad}");
        }
    }
}
