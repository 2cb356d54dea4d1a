//! The dashboard, driven as a browser without JavaScript would.

use reqwest::StatusCode;

use crate::harness::{COOKIE, Gateway, PASSWORD};

#[tokio::test]
async fn sign_up_and_sign_in_through_the_forms() {
    let gw = Gateway::start().await;
    let mut b = gw.browser();
    let page = b.get("/signup").await;
    page.assert(StatusCode::OK);
    assert!(page.body.contains("href=\"/privacy\""), "sign-up links the privacy policy");
    assert!(page.body.contains("<label for=\"email\">"));

    let weak = b.post_form("/signup", &[("email", "grace@example.com"), ("password", "short")]).await;
    weak.assert(StatusCode::BAD_REQUEST);
    assert!(weak.body.contains("id=\"err-password\""), "the problem is shown beside the password field");
    assert!(weak.body.contains("value=\"grace@example.com\""), "the email is kept");
    assert!(b.cookie.is_none());

    let r = b.post_form("/signup", &[("email", "grace@example.com"), ("password", PASSWORD)]).await;
    r.assert(StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/pilots"));
    assert_eq!(b.cookie.as_ref().map(|c| c.0.as_str()), Some(COOKIE));
    b.get("/pilots").await.assert(StatusCode::OK);

    let mut other = gw.browser();
    let wrong =
        other.post_form("/signin", &[("email", "grace@example.com"), ("password", "not it at all")]).await;
    wrong.assert(StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("role=\"alert\""));
    assert!(!wrong.body.contains("not it at all"), "the password is never echoed");
    let ok = other.post_form("/signin", &[("email", "grace@example.com"), ("password", PASSWORD)]).await;
    ok.assert(StatusCode::SEE_OTHER);

    let privacy = other.get("/privacy").await;
    privacy.assert(StatusCode::OK);
    assert!(privacy.body.contains("<h1>Privacy Policy</h1>") && privacy.body.contains("<h2>Cookies</h2>"));
}

#[tokio::test]
async fn pages_need_a_session() {
    let gw = Gateway::start().await;
    let mut b = gw.browser();
    for path in ["/pilots", "/pilots/new", "/approvals", "/connectors", "/account"] {
        let r = b.get(path).await;
        r.assert(StatusCode::SEE_OTHER);
        assert_eq!(r.header("location"), Some("/signin"), "{path}");
    }
    assert_eq!(b.get("/").await.header("location"), Some("/signin"));
    let r = b.get("/no/such/page").await;
    r.assert(StatusCode::NOT_FOUND);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
}

#[tokio::test]
async fn the_editor_adds_reorders_and_removes_steps_and_saves() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let mut fields: Vec<(String, String)> =
        vec![("title".into(), "Orders to Slack".into()), ("enabled".into(), "on".into())];
    let post = |fields: &Vec<(String, String)>, action: &str, kind: &str| {
        let mut f = fields.clone();
        f.push(("action".into(), action.into()));
        f.push(("new_step_kind".into(), kind.into()));
        f
    };
    let as_refs =
        |f: &Vec<(String, String)>| f.iter().map(|(a, b)| (a.clone(), b.clone())).collect::<Vec<_>>();

    let r = b.post_form("/pilots/new", &refs(&as_refs(&post(&fields, "add_step", "slack")))).await;
    r.assert(StatusCode::OK);
    assert!(r.body.contains("name=\"steps[0].slack.text\""));
    assert!(r.body.contains("name=\"steps[0].key\" value=\"slack\""));
    fields.extend([
        ("steps[0].kind".into(), "slack".into()),
        ("steps[0].key".into(), "notify".into()),
        ("steps[0].slack.text".into(), "New order".into()),
        ("steps[0].requires_approval".into(), "on".into()),
    ]);
    let r = b.post_form("/pilots/new", &refs(&as_refs(&post(&fields, "add_step", "approval")))).await;
    assert!(r.body.contains("name=\"steps[1].approval.message\""));
    fields.extend([
        ("steps[1].kind".into(), "approval".into()),
        ("steps[1].key".into(), "ask".into()),
        ("steps[1].approval.message".into(), "Post it?".into()),
    ]);
    let r = b.post_form("/pilots/new", &refs(&as_refs(&post(&fields, "up:1", "")))).await;
    let ask = r.body.find("value=\"ask\"").unwrap();
    let notify = r.body.find("value=\"notify\"").unwrap();
    assert!(ask < notify, "the approval moved first");
    let r = b.post_form("/pilots/new", &refs(&as_refs(&post(&fields, "remove_step:0", "")))).await;
    assert!(!r.body.contains("value=\"notify\"") && r.body.contains("value=\"ask\""));
    let r = b.post_form("/pilots/new", &refs(&as_refs(&post(&fields, "add_schedule", "")))).await;
    assert!(r.body.contains("name=\"schedules[0].cron\""));

    // The catalog's error lands beside the field it names (its field path, not
    // its wording, says where).
    gw.world().reject_spec = Some((
        "the Pilot's first step has a problem".into(),
        "steps[0].slack.text".into(),
        "refers to step \"x\", which runs after it".into(),
    ));
    let r = b.post_form("/pilots/new", &refs(&as_refs(&post(&fields, "save", "")))).await;
    r.assert(StatusCode::BAD_REQUEST);
    let at = r.body.find("id=\"err-steps-0-slack-text\"").expect("error beside the field");
    assert!(
        r.body[at..]
            .starts_with("id=\"err-steps-0-slack-text\">refers to step &quot;x&quot;, which runs after it"),
        "{}",
        &r.body[at..at + 120]
    );
    assert!(
        r.body.contains("aria-describedby=\"err-steps-0-slack-text\"")
            || r.body.contains("err-steps-0-slack-text\" aria-invalid")
    );
    assert!(r.body.contains("value=\"New order\"") || r.body.contains(">New order</textarea>"), "input kept");
    gw.world().reject_spec = None;

    let r = b.post_form("/pilots/new", &refs(&as_refs(&post(&fields, "save", "")))).await;
    r.assert(StatusCode::OK);
    assert!(r.body.contains("id=\"webhook-secret\">whsec_"), "the secret is shown once, on create");
    let (id, pilot) = gw.world().pilots.iter().next().map(|(i, p)| (*i, p.clone())).unwrap();
    assert_eq!(pilot.spec.steps.len(), 2);
    assert!(pilot.spec.steps[0].requires_approval);
    assert!(pilot.enabled);
    let again = b.get(&format!("/pilots/{id}")).await;
    assert!(!again.body.contains("whsec_") || again.body.contains("whsec_…"), "never again");
    let text = again.body.replace("&#x2f;", "/");
    assert!(text.contains(&format!("<code id=\"webhook-url\">https://gateway.test/hooks/{id}</code>")));
    assert!(again.body.contains("X-Pilot-Secret") && again.body.contains("webhook-signature: v1,"));

    // Editing an existing Pilot: stale versions are refused.
    let edit = b.get(&format!("/pilots/{id}/edit")).await;
    edit.assert(StatusCode::OK);
    assert!(edit.body.contains("name=\"expected_version\" value=\"1\""));
    let mut changed = fields.clone();
    changed[0].1 = "Renamed".into();
    changed.push(("expected_version".into(), "1".into()));
    let r = b.post_form(&format!("/pilots/{id}/edit"), &refs(&as_refs(&post(&changed, "save", "")))).await;
    r.assert(StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some(format!("/pilots/{id}?notice=saved").as_str()));
    let r = b.post_form(&format!("/pilots/{id}/edit"), &refs(&as_refs(&post(&changed, "save", "")))).await;
    r.assert(StatusCode::CONFLICT);
    assert!(r.body.contains("newer version"));
}

fn refs(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

#[tokio::test]
async fn pilot_page_actions() {
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let (id, first_secret) = gw.pilot(&mut b, "Actions").await;
    let r = b.post_form(&format!("/pilots/{id}/run"), &[("payload", "{\"order\": 1}")]).await;
    r.assert(StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some(format!("/pilots/{id}/runs?notice=run_started").as_str()));
    assert_eq!(gw.world().started[0].payload_json, "{\"order\":1}");
    let bad = b.post_form(&format!("/pilots/{id}/run"), &[("payload", "{oops")]).await;
    bad.assert(StatusCode::BAD_REQUEST);

    let rotated = b.post_form(&format!("/pilots/{id}/rotate"), &[]).await;
    rotated.assert(StatusCode::OK);
    assert!(rotated.body.contains("id=\"webhook-secret\">whsec_"));
    assert!(!rotated.body.contains(&first_secret));

    let export = b.get(&format!("/pilots/{id}/export")).await;
    export.assert(StatusCode::OK);
    assert!(export.header("content-disposition").unwrap().contains(&format!("pilot-{id}.json")));

    let runs = b.get(&format!("/pilots/{id}/runs?notice=run_started")).await;
    assert!(runs.body.contains("Run started"));
    let nothing = b.get(&format!("/pilots/{id}?notice=<script>alert(1)</script>")).await;
    assert!(!nothing.body.contains("<script>alert"), "notices are fixed texts");

    let refused = b.post_form(&format!("/pilots/{id}/delete"), &[]).await;
    refused.assert(StatusCode::BAD_REQUEST);
    let r = b.post_form(&format!("/pilots/{id}/delete"), &[("confirm", "on")]).await;
    r.assert(StatusCode::SEE_OTHER);
    assert!(gw.world().pilots.is_empty());
}

#[tokio::test]
async fn runs_approvals_connectors_and_account_pages() {
    use bizops_proto::events::v1::{RunStatus, StepStatus};
    let gw = Gateway::start().await;
    let mut b = gw.user().await;
    let (pilot, _) = gw.pilot(&mut b, "Pages").await;
    let run = gw.fakes.add_run(pilot, RunStatus::AwaitingApproval, &[("ask", StepStatus::AwaitingApproval)]);

    let list = b.get(&format!("/pilots/{pilot}/runs")).await;
    assert!(list.body.contains(&format!("href=\"/runs/{run}\"")));
    let page = b.get(&format!("/runs/{run}")).await;
    page.assert(StatusCode::OK);
    assert!(page.body.contains("data-status=\"awaiting_approval\""));
    assert!(page.body.contains("data-live=\"true\""));
    assert!(page.body.contains("id=\"go-approvals\""));

    let inbox = b.get("/approvals").await;
    assert!(inbox.body.contains("Post it to Slack?"));
    let approval = gw.world().approvals.keys().next().copied().unwrap();
    let r =
        b.post_form(&format!("/approvals/{approval}"), &[("decision", "approve"), ("comment", "go")]).await;
    r.assert(StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some(format!("/runs/{run}?notice=approved").as_str()));
    assert!(!b.get("/approvals").await.body.contains("Post it to Slack?"));

    let r = b
        .post_form(
            "/connectors",
            &[("kind", "slack"), ("name", "slack"), ("value", "https://hooks.slack.test/x/secret-value-1")],
        )
        .await;
    r.assert(StatusCode::SEE_OTHER);
    let page = b.get("/connectors?notice=connected").await;
    assert!(page.body.contains("data-connector=\"slack\""));
    assert!(!page.body.contains("secret-value-1"));
    let bad = b
        .post_form(
            "/connectors",
            &[("kind", "slack"), ("name", "slack"), ("value", "not a url secret-value-2")],
        )
        .await;
    bad.assert(StatusCode::BAD_REQUEST);
    assert!(!bad.body.contains("secret-value-2"), "a refused value is not echoed");
    let test = b.post_form("/connectors/slack/test", &[]).await;
    assert!(test.body.contains("id=\"test-result\""));
    b.post_form("/connectors/slack/delete", &[]).await.assert(StatusCode::SEE_OTHER);
    assert!(gw.world().credentials.is_empty());

    let account = b.get("/account").await;
    assert!(account.body.contains(&b.email));
    let mismatch = b
        .post_form(
            "/account/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", "aaaaaaaaaaaaaaaa1"),
                ("confirm_password", "different"),
            ],
        )
        .await;
    mismatch.assert(StatusCode::BAD_REQUEST);
    let unconfirmed = b.post_form("/account/delete", &[("password", PASSWORD)]).await;
    unconfirmed.assert(StatusCode::BAD_REQUEST);
    assert!(!gw.world().accounts.is_empty());
    let r = b.post_form("/account/delete", &[("password", PASSWORD), ("confirm", "on")]).await;
    r.assert(StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/signin?notice=account_deleted"));
    assert!(b.cookie.is_none());
    assert!(gw.world().accounts.is_empty());
}
