//! The gRPC edge of the executor.

use async_nats::jetstream;
use bizops_authn::{OwnerId, require_service, require_user};
use bizops_bus::Subjects;
use bizops_errors::{Error, ErrorCode};
use bizops_proto::{
    catalog::v1 as cpb,
    events::v1 as ev,
    executor::v1::{self as pb, executor_service_server::ExecutorService},
    timestamp::to_proto,
};
use bizops_runtime::paging::Page;
use time::OffsetDateTime;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    clients::Clients,
    deletion::Deleter,
    engine::Engine,
    events::Events,
    model::{RunState, approval, run},
    store::{ApprovalRow, RunRow, RunStore, StepRow},
};

/// Largest manual or replayed payload.
const MAX_PAYLOAD: usize = 1024 * 1024;

/// Everything the RPC handlers share.
pub struct Executor<S> {
    pub(crate) store: S,
    pub(crate) engine: Engine,
    pub(crate) events: Events,
    pub(crate) clients: Clients,
    pub(crate) js: jetstream::Context,
    pub(crate) subjects: Subjects,
    pub(crate) deleter: Deleter,
}

/// An id from a request field; a malformed one is simply not found.
fn id(text: &str, what: &'static str) -> Result<Uuid, Error> {
    text.trim().parse().map_err(|_| Error::not_found(what))
}

fn run_pb(r: &RunRow, steps: &[StepRow]) -> pb::Run {
    pb::Run {
        id: r.id.to_string(),
        owner_id: r.owner_id.to_string(),
        pilot_id: r.pilot_id.to_string(),
        pilot_version: r.pilot_version,
        trigger_id: r.trigger_id.to_string(),
        source: i32::from(r.source),
        status: i32::from(r.status),
        created_at: Some(to_proto(r.created_at)),
        started_at: r.started_at.map(to_proto),
        finished_at: r.finished_at.map(to_proto),
        error: r.error.clone().unwrap_or_default(),
        steps: steps.iter().map(step_pb).collect(),
        replay_of_run_id: r.replay_of_run_id.map(|u| u.to_string()).unwrap_or_default(),
    }
}

fn step_pb(s: &StepRow) -> pb::StepRun {
    let duration_ms = match (s.started_at, s.finished_at) {
        (Some(a), Some(b)) => u64::try_from((b - a).whole_milliseconds()).unwrap_or(0),
        _ => 0,
    };
    pb::StepRun {
        step_key: s.step_key.clone(),
        kind: s.kind.clone(),
        status: i32::from(s.status),
        started_at: s.started_at.map(to_proto),
        finished_at: s.finished_at.map(to_proto),
        duration_ms,
        attempts: u32::try_from(s.attempts).unwrap_or(0),
        provider: s.provider.clone().unwrap_or_default(),
        output_preview: s.output.as_ref().map(|v| v.to_string()).unwrap_or_default(),
        output_truncated: s.output_truncated,
        error: s.error.clone().unwrap_or_default(),
    }
}

fn approval_pb(a: &ApprovalRow) -> pb::Approval {
    pb::Approval {
        id: a.id.to_string(),
        run_id: a.run_id.to_string(),
        pilot_id: a.pilot_id.to_string(),
        step_key: a.step_key.clone(),
        status: i32::from(a.status),
        message: a.message.clone(),
        created_at: Some(to_proto(a.created_at)),
        expires_at: Some(to_proto(a.expires_at)),
        decided_at: a.decided_at.map(to_proto),
        decided_by: a.decided_by.map(|u| u.to_string()).unwrap_or_default(),
        comment: a.comment.clone().unwrap_or_default(),
    }
}

fn reply<T>(result: Result<T, Error>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

impl<S: RunStore> Executor<S> {
    /// Publishes a trigger and waits for JetStream's ack.
    async fn publish(&self, t: ev::Trigger, owner: Uuid, pilot: Uuid) -> Result<String, Error> {
        let msg_id = Subjects::trigger_msg_id(pilot, &t.idempotency_key);
        bizops_bus::publish(
            &self.js,
            self.subjects.trigger(owner, pilot),
            Some(&msg_id),
            bizops_bus::encode(&t),
        )
        .await
        .map_err(Error::unavailable)?;
        Ok(t.trigger_id)
    }

    async fn start_run(&self, request: Request<pb::StartRunRequest>) -> Result<pb::StartRunResponse, Error> {
        let user = require_user(&request)?;
        // The catalog decides, with the user's own access token, whether the Pilot
        // is theirs and which version is current.
        let authorization = request
            .metadata()
            .get("authorization")
            .cloned()
            .ok_or_else(|| Error::new(ErrorCode::Unauthenticated, "sign in first: no access token"))?;
        let req = request.into_inner();
        let pilot = id(&req.pilot_id, "pilot")?;
        let payload = if req.payload_json.trim().is_empty() { "{}".to_owned() } else { req.payload_json };
        if payload.len() > MAX_PAYLOAD {
            return Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!("payload_json: at most {MAX_PAYLOAD} bytes"),
            ));
        }
        serde_json::from_str::<serde_json::Value>(&payload)
            .map_err(|e| Error::invalid("payload_json", format!("is not JSON: {e}")))?;
        if req.idempotency_key.len() > 256 {
            return Err(Error::invalid("idempotency_key", "must be at most 256 characters"));
        }
        if req.idempotency_key.chars().any(char::is_control) {
            return Err(Error::invalid("idempotency_key", "must not contain control characters"));
        }
        let mut get = Request::new(cpb::GetPilotRequest { pilot_id: pilot.to_string() });
        get.metadata_mut().insert("authorization", authorization);
        bizops_telemetry::propagation::inject_grpc(get.metadata_mut());
        let found = cpb::catalog_service_client::CatalogServiceClient::new(self.clients.catalog_channel())
            .get_pilot(get)
            .await
            .map_err(|s| Error::from_status(&s))?
            .into_inner()
            .pilot
            .ok_or_else(|| Error::not_found("pilot"))?;
        if !found.enabled {
            return Err(Error::new(ErrorCode::PilotDisabled, "the Pilot is disabled; enable it to run it"));
        }
        let key =
            if req.idempotency_key.is_empty() { Uuid::now_v7().to_string() } else { req.idempotency_key };
        let trigger = ev::Trigger {
            trigger_id: Uuid::now_v7().to_string(),
            owner_id: user.owner_id.to_string(),
            pilot_id: pilot.to_string(),
            pilot_version: found.version,
            idempotency_key: format!("manual:{key}"),
            source: ev::TriggerSource::Manual as i32,
            payload: payload.into_bytes().into(),
            content_type: "application/json".into(),
            accepted_at: Some(to_proto(OffsetDateTime::now_utc())),
            ..Default::default()
        };
        let trigger_id = self.publish(trigger, user.owner_id.as_uuid(), pilot).await?;
        Ok(pb::StartRunResponse { trigger_id })
    }

    async fn publish_state(&self, r: &RunRow) {
        let state =
            RunState { id: r.id, owner_id: r.owner_id, pilot_id: r.pilot_id, status: r.status, seq: 0 };
        self.events.publish(&state, None).await;
    }
}

#[tonic::async_trait]
impl<S: RunStore> ExecutorService for Executor<S> {
    #[tracing::instrument(skip_all)]
    async fn start_run(
        &self,
        request: Request<pb::StartRunRequest>,
    ) -> Result<Response<pb::StartRunResponse>, Status> {
        reply(self.start_run(request).await)
    }

    #[tracing::instrument(skip_all)]
    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::GetRunResponse>, Status> {
        reply(
            async {
                let user = require_user(&request)?;
                let (r, steps) = self.store.get(user.owner_id, id(&request.get_ref().run_id, "run")?).await?;
                Ok(pb::GetRunResponse { run: Some(run_pb(&r, &steps)) })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        reply(
            async {
                let user = require_user(&request)?;
                let req = request.get_ref();
                let pilot = id(&req.pilot_id, "pilot")?;
                let page = Page::parse("", req.page_size, &req.page_token)?;
                let rows = self.store.list(user.owner_id, pilot, page.after(), page.limit()).await?;
                let (rows, next) = page.finish(rows, |r| (r.created_at, r.id));
                Ok(pb::ListRunsResponse {
                    runs: rows.iter().map(|r| run_pb(r, &[])).collect(),
                    next_page_token: next,
                })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn cancel_run(
        &self,
        request: Request<pb::CancelRunRequest>,
    ) -> Result<Response<pb::CancelRunResponse>, Status> {
        reply(
            async {
                let user = require_user(&request)?;
                let r = self.store.cancel(user.owner_id, id(&request.get_ref().run_id, "run")?).await?;
                self.publish_state(&r).await;
                tracing::info!(run_id = %r.id, "run cancelled");
                Ok(pb::CancelRunResponse { run: Some(run_pb(&r, &[])) })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn replay_run(
        &self,
        request: Request<pb::ReplayRunRequest>,
    ) -> Result<Response<pb::ReplayRunResponse>, Status> {
        reply(
            async {
                let user = require_user(&request)?;
                let req = request.get_ref();
                let source = self.store.replay_source(user.owner_id, id(&req.run_id, "run")?).await?;
                let Some((payload, content_type)) = source.payload else {
                    return Err(Error::new(
                        ErrorCode::FailedPrecondition,
                        "the trigger payload of this run is gone (payloads are kept 7 days)",
                    ));
                };
                let from = if req.from_failed_step {
                    Some(source.failed_step.ok_or_else(|| {
                        Error::new(
                            ErrorCode::FailedPrecondition,
                            "no step of this run failed; replay it from the start",
                        )
                    })?)
                } else {
                    None
                };
                let original = &source.run;
                let trigger = ev::Trigger {
                    trigger_id: Uuid::now_v7().to_string(),
                    owner_id: original.owner_id.to_string(),
                    pilot_id: original.pilot_id.to_string(),
                    pilot_version: original.pilot_version,
                    idempotency_key: format!("replay:{}", Uuid::now_v7()),
                    source: ev::TriggerSource::Replay as i32,
                    payload: payload.into(),
                    content_type,
                    accepted_at: Some(to_proto(OffsetDateTime::now_utc())),
                    replay_of_run_id: original.id.to_string(),
                    replay_from_step_key: from.unwrap_or_default(),
                    ..Default::default()
                };
                let trigger_id = self.publish(trigger, original.owner_id, original.pilot_id).await?;
                Ok(pb::ReplayRunResponse { trigger_id })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn list_approvals(
        &self,
        request: Request<pb::ListApprovalsRequest>,
    ) -> Result<Response<pb::ListApprovalsResponse>, Status> {
        reply(
            async {
                let user = require_user(&request)?;
                let req = request.get_ref();
                let page = Page::parse("", req.page_size, &req.page_token)?;
                let rows = self.store.pending(user.owner_id, page.after(), page.limit()).await?;
                let (rows, next) = page.finish(rows, |a| (a.created_at, a.id));
                Ok(pb::ListApprovalsResponse {
                    approvals: rows.iter().map(approval_pb).collect(),
                    next_page_token: next,
                })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn decide_approval(
        &self,
        request: Request<pb::DecideApprovalRequest>,
    ) -> Result<Response<pb::DecideApprovalResponse>, Status> {
        reply(
            async {
                let user = require_user(&request)?;
                let req = request.get_ref();
                let approval_id = id(&req.approval_id, "approval")?;
                let approve = match req.decision() {
                    pb::Decision::Approve => true,
                    pb::Decision::Reject => false,
                    pb::Decision::Unspecified => {
                        return Err(Error::invalid("decision", "is required (approve or reject)"));
                    }
                };
                if req.comment.chars().count() > 2000 {
                    return Err(Error::invalid("comment", "must be at most 2000 characters"));
                }
                let comment = (!req.comment.trim().is_empty()).then(|| req.comment.trim().to_owned());
                let decided = self
                    .store
                    .decide(user.owner_id, approval_id, approve, user.owner_id.as_uuid(), comment)
                    .await?;
                if decided.status == approval::APPROVED {
                    self.engine.enqueue(decided.run_id);
                }
                let status = if approve { run::QUEUED } else { run::REJECTED };
                let state = RunState {
                    id: decided.run_id,
                    owner_id: user.owner_id.as_uuid(),
                    pilot_id: decided.pilot_id,
                    status,
                    seq: 0,
                };
                self.events.publish(&state, None).await;
                tracing::info!(run_id = %decided.run_id, approve, "approval decided");
                Ok(pb::DecideApprovalResponse { approval: Some(approval_pb(&decided)) })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all)]
    async fn delete_pilot_data(
        &self,
        request: Request<pb::DeletePilotDataRequest>,
    ) -> Result<Response<pb::DeletePilotDataResponse>, Status> {
        reply(
            async {
                require_service(&request, &["catalog", "identity"])?;
                let req = request.get_ref();
                let owner = OwnerId::parse("owner_id", &req.owner_id)?;
                let pilot: Uuid =
                    req.pilot_id.trim().parse().map_err(|_| Error::invalid("pilot_id", "must be a UUID"))?;
                let (runs, jobs) =
                    self.deleter.pilot(owner.as_uuid(), pilot).await.map_err(Error::unavailable)?;
                Ok(pb::DeletePilotDataResponse { runs_deleted: runs, jobs_deleted: jobs })
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
                let (runs, jobs) = self.deleter.owner(owner.as_uuid()).await.map_err(Error::unavailable)?;
                tracing::info!(owner_id = %owner, runs, jobs, "owner data deleted");
                Ok(pb::DeleteOwnerDataResponse { runs_deleted: runs, jobs_deleted: jobs })
            }
            .await,
        )
    }
}
