//! Confirm before mutate: approve, reject, expire.

use bizops_proto::{
    catalog::v1::{self as cpb, step::Kind},
    events::v1::{RunStatus, StepStatus},
    executor::v1 as pb,
    vault::v1::ConnectorKind,
};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::path};

use crate::harness::*;

async fn pending(exec: &Exec, token: &str) -> Vec<pb::Approval> {
    exec.client
        .clone()
        .list_approvals(authed(token, pb::ListApprovalsRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .approvals
}

#[tokio::test]
async fn slack_waits_for_approval_then_posts_and_a_rejection_posts_nothing() {
    let env = Env::new().await;
    let slack = MockServer::start().await;
    Mock::given(path("/hook"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    let exec = env.start(env.config()).await;
    let owner = owner();
    let token = env.user(owner);
    env.vault.put(owner.as_uuid(), "slack", ConnectorKind::Slack, &format!("{}/hook", slack.uri()));
    let pilot = env.pilot(
        owner.as_uuid(),
        vec![
            step("draft", transform(r#"{"text": "Refund {{ trigger.amount }} EUR"}"#)),
            cpb::Step {
                requires_approval: true,
                ..step(
                    "post",
                    Kind::Slack(cpb::SlackStep {
                        connector: String::new(),
                        text: "{{ steps.draft.output.text }}".into(),
                    }),
                )
            },
        ],
    );

    env.trigger(owner.as_uuid(), pilot, "a1", serde_json::json!({"amount": 40})).await;
    let waiting = env.wait_run(&exec, owner, pilot, &[RunStatus::AwaitingApproval]).await;
    assert_eq!(step_of(&waiting, "draft").status, StepStatus::Succeeded as i32);
    assert_eq!(step_of(&waiting, "post").status, StepStatus::AwaitingApproval as i32);
    assert!(slack.received_requests().await.unwrap().is_empty(), "nothing posted before the approval");
    let approvals = pending(&exec, &token).await;
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0].step_key, "post");
    assert_eq!(approvals[0].run_id, waiting.id);

    let decided = exec
        .client
        .clone()
        .decide_approval(authed(
            &token,
            pb::DecideApprovalRequest {
                approval_id: approvals[0].id.clone(),
                decision: pb::Decision::Approve as i32,
                comment: "ok".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .approval
        .unwrap();
    assert_eq!(decided.status, pb::ApprovalStatus::Approved as i32);
    assert_eq!(decided.decided_by, owner.to_string());
    let done = env.wait_run(&exec, owner, pilot, &[RunStatus::Succeeded]).await;
    assert_eq!(done.id, waiting.id);
    assert_eq!(slack.received_requests().await.unwrap().len(), 1, "posted exactly once after approval");
    assert!(pending(&exec, &token).await.is_empty());

    // Deciding twice is refused.
    let again = exec
        .client
        .clone()
        .decide_approval(authed(
            &token,
            pb::DecideApprovalRequest {
                approval_id: approvals[0].id.clone(),
                decision: pb::Decision::Reject as i32,
                comment: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);

    // Rejected: nothing is posted and the run ends REJECTED.
    env.trigger(owner.as_uuid(), pilot, "a2", serde_json::json!({"amount": 9000})).await;
    let waiting = env.wait_run(&exec, owner, pilot, &[RunStatus::AwaitingApproval]).await;
    let approval = pending(&exec, &token).await.into_iter().find(|a| a.run_id == waiting.id).unwrap();
    exec.client
        .clone()
        .decide_approval(authed(
            &token,
            pb::DecideApprovalRequest {
                approval_id: approval.id,
                decision: pb::Decision::Reject as i32,
                comment: "too much".into(),
            },
        ))
        .await
        .unwrap();
    let rejected = env.wait_run(&exec, owner, pilot, &[RunStatus::Rejected]).await;
    assert_eq!(step_of(&rejected, "post").status, StepStatus::Rejected as i32);
    // Nothing could still post: the reaper has looked for runs to resume since the
    // rejection, and nothing is queued or executing.
    full_pass("reaper", exec.progress.reaper_passes()).await;
    env.quiesce(&[&exec]).await;
    assert_eq!(slack.received_requests().await.unwrap().len(), 1, "the rejected run posted nothing");
}

#[tokio::test]
async fn an_undecided_approval_expires() {
    let env = Env::new().await;
    let exec = env.start(env.config()).await;
    let owner = owner();
    let pilot = env.pilot(
        owner.as_uuid(),
        vec![
            step(
                "ask",
                Kind::Approval(cpb::ApprovalStep {
                    message: "Ship order {{ trigger.id }}?".into(),
                    expires_after_seconds: 1,
                }),
            ),
            step("after", transform("{}")),
        ],
    );
    env.trigger(owner.as_uuid(), pilot, "e", serde_json::json!({"id": 42})).await;
    let waiting = env.wait_run(&exec, owner, pilot, &[RunStatus::AwaitingApproval]).await;
    let approvals = pending(&exec, &env.user(owner)).await;
    assert_eq!(approvals[0].message, "Ship order 42?");
    let expired = env.wait_run(&exec, owner, pilot, &[RunStatus::Expired]).await;
    assert_eq!(expired.id, waiting.id);
    assert!(expired.steps.iter().all(|s| s.step_key != "after" || s.status != StepStatus::Succeeded as i32));
}
