//! What the runs' API and pages both do: the executor calls to start, list,
//! read, cancel and replay runs.

use bizops_errors::Error;
use bizops_proto::executor::v1 as executor;
use uuid::Uuid;

use crate::{
    pilots,
    runs::model::{Run, RunList, TriggerAccepted},
    shared::{
        backend::rpc,
        ops::{page, parse_id},
        session::CurrentSession,
        state::AppState,
    },
};

/// Run now.
pub async fn run_now(
    st: &AppState,
    s: &CurrentSession,
    id: &str,
    payload: Option<serde_json::Value>,
    idempotency_key: Option<String>,
) -> Result<TriggerAccepted, Error> {
    let id = parse_id("pilot_id", id)?.to_string();
    let payload_json =
        serde_json::to_string(&payload.unwrap_or_else(|| serde_json::json!({}))).map_err(Error::internal)?;
    // Without a key from the client, one per request: a retried StartRun (the
    // gateway retries UNAVAILABLE) then cannot start a second run.
    let key = idempotency_key.filter(|k| !k.is_empty()).unwrap_or_else(|| Uuid::now_v7().to_string());
    if key.len() > 200 {
        return Err(Error::invalid("idempotency_key", "must be at most 200 characters"));
    }
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        executor.start_run,
        b.user(
            &s.access,
            executor::StartRunRequest {
                pilot_id: id.clone(),
                payload_json: payload_json.clone(),
                idempotency_key: key.clone()
            },
        )
    )?;
    Ok(TriggerAccepted { trigger_id: r.trigger_id })
}

/// Runs of a Pilot.
pub async fn list_runs(
    st: &AppState,
    s: &CurrentSession,
    pilot_id: &str,
    page_size: Option<u32>,
    page_token: Option<String>,
) -> Result<RunList, Error> {
    let id = parse_id("pilot_id", pilot_id)?.to_string();
    let b = &st.backends;
    // The executor lists whatever runs the caller owns for that id, so another
    // owner's (or no) Pilot would be an empty page; the catalog decides: 404.
    let (pilot, runs) = tokio::join!(pilots::ops::get_pilot(st, s, &id), async {
        rpc!(
            st.backends,
            executor.list_runs,
            b.user(
                &s.access,
                executor::ListRunsRequest {
                    pilot_id: id.clone(),
                    page_size: page(page_size),
                    page_token: page_token.clone().unwrap_or_default(),
                },
            )
        )
    });
    pilot?;
    let r = runs?;
    Ok(RunList { runs: r.runs.into_iter().map(Into::into).collect(), next_page_token: r.next_page_token })
}

/// One run with its steps (the raw message; callers convert).
pub async fn get_run_proto(st: &AppState, s: &CurrentSession, run_id: Uuid) -> Result<executor::Run, Error> {
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        executor.get_run,
        b.user(&s.access, executor::GetRunRequest { run_id: run_id.to_string() })
    )?;
    r.run.ok_or_else(|| Error::internal(std::io::Error::other("executor returned no run")))
}

/// One run with its steps.
pub async fn get_run(st: &AppState, s: &CurrentSession, run_id: &str) -> Result<Run, Error> {
    let id = parse_id("run_id", run_id)?;
    Ok(get_run_proto(st, s, id).await?.into())
}

/// Cancel a run.
pub async fn cancel_run(st: &AppState, s: &CurrentSession, run_id: &str) -> Result<Run, Error> {
    let id = parse_id("run_id", run_id)?.to_string();
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        executor.cancel_run,
        b.user(&s.access, executor::CancelRunRequest { run_id: id.clone() })
    )?;
    r.run.map(Into::into).ok_or_else(|| Error::internal(std::io::Error::other("executor returned no run")))
}

/// Replay a run.
pub async fn replay_run(
    st: &AppState,
    s: &CurrentSession,
    run_id: &str,
    from_failed_step: bool,
) -> Result<TriggerAccepted, Error> {
    let id = parse_id("run_id", run_id)?.to_string();
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        executor.replay_run,
        b.user(&s.access, executor::ReplayRunRequest { run_id: id.clone(), from_failed_step })
    )?;
    Ok(TriggerAccepted { trigger_id: r.trigger_id })
}
