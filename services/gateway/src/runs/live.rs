//! Live run view: `GET /api/v1/runs/{run_id}/events` (Server-Sent Events).
//!
//! The stream subscribes to core NATS `<P>.runs.<owner>.<run>` — the owner is the
//! caller's own, from the verified session — and only then asks the executor
//! for the run (GetRun), so another owner's run is a 404 and no event published
//! between the two is missed. It sends:
//!
//! - `snapshot`: the whole run ([`crate::runs::model::Run`]) at the start and after each change;
//! - `change`: each `bizops.events.v1.RunEvent` ([`crate::runs::model::RunEvent`]);
//! - `end`: once the run is final, the session ends, or the view times out.
//!
//! The session is re-verified every few seconds, so signing out ends the stream.

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::State,
    response::sse::{Event, KeepAlive, Sse},
};
use bizops_proto::events::v1 as events;
use futures_util::{Stream, StreamExt as _};
use prost::Message as _;
use tokio::sync::mpsc;

use crate::{
    runs::{
        model::{self, run_status_is_final},
        ops,
    },
    shared::{
        error::ApiError,
        extract::{ApiPath, Authed},
        model::ErrorBody,
        ops::parse_id,
        session::CurrentSession,
        state::Shared,
    },
};

/// How often an open stream re-checks its session.
const SESSION_RECHECK: Duration = Duration::from_secs(5);

/// Live state changes of a run as Server-Sent Events (`snapshot`, `change`, `end`).
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/events", tag = "runs",
    params(("run_id" = String, Path, description = "Run id")),
    responses(
        (status = 200, description = "text/event-stream of `snapshot` (Run), `change` (RunEvent) and `end` events", content_type = "text/event-stream", body = model::RunEvent),
        (status = 404, description = "No such run", body = ErrorBody),
    ),
    security(("session" = [])))]
#[tracing::instrument(name = "api.run_events", skip_all, fields(run_id = %run_id))]
pub async fn run_events(
    State(st): State<Shared>,
    Authed(session): Authed,
    ApiPath(run_id): ApiPath<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let run_id = parse_id("run_id", &run_id)?;
    let slot = st.live_views.open(session.session_id)?;
    let subject = st.subjects.run_events(session.owner_id, run_id);
    let subscriber = st.nats.subscribe(subject).await.map_err(bizops_errors::Error::unavailable)?;
    let run = ops::get_run_proto(&st, &session, run_id).await?;
    let (tx, rx) = mpsc::channel::<Event>(32);
    tokio::spawn(async move {
        forward(st.clone(), session, run, subscriber, tx).await;
        drop(slot);
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn snapshot(run: &bizops_proto::executor::v1::Run) -> Option<Event> {
    Event::default().event("snapshot").json_data(model::Run::from(run.clone())).ok()
}

fn end(reason: &'static str) -> Event {
    Event::default().event("end").data(reason)
}

async fn forward(
    st: Shared,
    mut session: CurrentSession,
    mut run: bizops_proto::executor::v1::Run,
    mut subscriber: async_nats::Subscriber,
    tx: mpsc::Sender<Event>,
) {
    let send = |e: Event| {
        let tx = tx.clone();
        async move { tx.send(e).await.is_ok() }
    };
    if let Some(e) = snapshot(&run)
        && !send(e).await
    {
        return;
    }
    if run_status_is_final(run.status()) {
        let _ = send(end("finished")).await;
        return;
    }
    let stopped = st.stopped.clone();
    let deadline = tokio::time::sleep(st.live_view);
    tokio::pin!(deadline);
    let mut recheck = tokio::time::interval(SESSION_RECHECK);
    recheck.tick().await;
    let mut last_sequence = 0u64;
    loop {
        tokio::select! {
            () = stopped.clone().wait() => {
                let _ = send(end("server shutting down")).await;
                break;
            }
            () = &mut deadline => {
                let _ = send(end("timeout")).await;
                break;
            }
            () = tx.closed() => break,
            _ = recheck.tick() => {
                match st.sessions.verify(session.token.clone()).await {
                    // The session's current access token, for the calls to come.
                    Ok(Some(fresh)) => session = fresh,
                    _ => {
                        let _ = send(end("signed out")).await;
                        break;
                    }
                }
            }
            message = subscriber.next() => {
                let Some(message) = message else {
                    let _ = send(end("event source closed")).await;
                    break;
                };
                let Ok(event) = events::RunEvent::decode(message.payload.as_ref()) else {
                    tracing::warn!("undecodable run event dropped");
                    continue;
                };
                if event.run_id != run.id || (event.sequence != 0 && event.sequence <= last_sequence) {
                    continue;
                }
                last_sequence = event.sequence;
                let final_status = run_status_is_final(event.run_status());
                if let Ok(e) = Event::default().event("change").json_data(model::RunEvent::from(event))
                    && !send(e).await
                {
                    break;
                }
                // Outputs and timings are not in the event; send the run as it is now.
                if let Ok(fresh) = ops::get_run_proto(&st, &session, session_run_id(&run)).await {
                    run = fresh;
                    if let Some(e) = snapshot(&run)
                        && !send(e).await
                    {
                        break;
                    }
                }
                if final_status || run_status_is_final(run.status()) {
                    let _ = send(end("finished")).await;
                    break;
                }
            }
        }
    }
    let _ = subscriber.unsubscribe().await;
}

fn session_run_id(run: &bizops_proto::executor::v1::Run) -> uuid::Uuid {
    run.id.parse().unwrap_or_default()
}
