//! The approvals' dashboard pages: the pending approvals and the decision.

use axum::{
    Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Redirect},
    routing::{get, post},
};
use bizops_errors::Error;
use minijinja::context;
use serde::Deserialize;

use crate::{
    approvals::{model::Decision, ops},
    shared::{
        extract::{PageAuthed, WebForm, WebPath, WebQuery},
        page::{Page, PageParams, PageResult, error_page, fail, render},
        state::Shared,
    },
};

/// The approvals' pages.
pub fn routes() -> Router<Shared> {
    Router::new().route("/approvals", get(approvals_page)).route("/approvals/{id}", post(decide))
}

async fn approvals_page(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebQuery(q): WebQuery<PageParams>,
) -> PageResult {
    let list = ops::list_approvals(&st, &s, Some(50), q.page_token).await.map_err(fail(&st, &s))?;
    let page = Page::new(&st, Some(&s), "Approvals", "approvals").notice(q.notice.as_deref());
    Ok(render(
        &st,
        StatusCode::OK,
        "approvals.html",
        context! { page, approvals => list.approvals, next_page_token => list.next_page_token },
    ))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DecideForm {
    decision: String,
    comment: String,
}

async fn decide(
    State(st): State<Shared>,
    PageAuthed(s): PageAuthed,
    WebPath(id): WebPath<String>,
    WebForm(form): WebForm<DecideForm>,
) -> PageResult {
    let decision = match form.decision.as_str() {
        "approve" => Decision::Approve,
        "reject" => Decision::Reject,
        _ => return Err(error_page(&st, Some(&s), Error::invalid("decision", "must be approve or reject"))),
    };
    let approval = ops::decide(&st, &s, &id, decision, &form.comment).await.map_err(fail(&st, &s))?;
    let notice = if decision == Decision::Approve { "approved" } else { "rejected" };
    let to = match approval.run_id.parse::<uuid::Uuid>() {
        Ok(run) => format!("/runs/{run}?notice={notice}"),
        Err(_) => format!("/approvals?notice={notice}"),
    };
    Ok(Redirect::to(&to).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{approvals::model::Approval, shared::page::render_ok};

    #[test]
    fn the_approvals_page_renders_with_realistic_data() {
        let approval = Approval {
            id: "ap".into(),
            run_id: "0190aaaabbbbccccdddd".into(),
            pilot_id: "p".into(),
            step_key: "z".into(),
            status: "pending".into(),
            message: "ok?".into(),
            created_at: None,
            expires_at: None,
            decided_at: None,
            decided_by: String::new(),
            comment: String::new(),
        };
        render_ok(
            "approvals.html",
            context! { page => Page::sample(true), approvals => vec![approval], next_page_token => "" },
        );
    }
}
