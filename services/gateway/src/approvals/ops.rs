//! What the approvals' API and pages both do: the executor calls to list and
//! decide approvals.

use bizops_errors::Error;
use bizops_proto::executor::v1 as executor;

use crate::{
    approvals::model::{Approval, ApprovalList, Decision},
    shared::{
        backend::rpc,
        ops::{page, parse_id},
        session::CurrentSession,
        state::AppState,
    },
};

/// Pending approvals.
pub async fn list_approvals(
    st: &AppState,
    s: &CurrentSession,
    page_size: Option<u32>,
    page_token: Option<String>,
) -> Result<ApprovalList, Error> {
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        executor.list_approvals,
        b.user(
            &s.access,
            executor::ListApprovalsRequest {
                page_size: page(page_size),
                page_token: page_token.clone().unwrap_or_default()
            },
        )
    )?;
    Ok(ApprovalList {
        approvals: r.approvals.into_iter().map(Into::into).collect(),
        next_page_token: r.next_page_token,
    })
}

/// Approve or reject.
pub async fn decide(
    st: &AppState,
    s: &CurrentSession,
    approval_id: &str,
    decision: Decision,
    comment: &str,
) -> Result<Approval, Error> {
    let id = parse_id("approval_id", approval_id)?.to_string();
    if comment.chars().count() > 2000 {
        return Err(Error::invalid("comment", "must be at most 2000 characters"));
    }
    let decision = match decision {
        Decision::Approve => executor::Decision::Approve,
        Decision::Reject => executor::Decision::Reject,
    } as i32;
    let b = &st.backends;
    let r = rpc!(
        st.backends,
        executor.decide_approval,
        b.user(
            &s.access,
            executor::DecideApprovalRequest {
                approval_id: id.clone(),
                decision,
                comment: comment.to_owned()
            }
        )
    )?;
    r.approval
        .map(Into::into)
        .ok_or_else(|| Error::internal(std::io::Error::other("executor returned no approval")))
}
