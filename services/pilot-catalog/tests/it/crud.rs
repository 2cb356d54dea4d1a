//! Create, read, list, update (versions), enable, export/import, delete.

use bizops_proto::{catalog::v1 as pb, events::v1 as events};
use futures_util::StreamExt as _;
use prost::Message as _;
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn create_get_update_versions_enable_and_delete() {
    let cat = Catalog::start().await;
    let owner = owner();
    let token = cat.user(owner);
    let created = cat.create(&token, sample_spec()).await;
    let pilot = created.pilot.unwrap();
    assert_eq!(
        (pilot.version, pilot.enabled, pilot.owner_id.as_str()),
        (1, true, owner.to_string().as_str())
    );
    assert!(created.webhook_secret.starts_with("whsec_"));
    let spec = pilot.spec.clone().unwrap();
    assert!(!spec.schedules[0].id.is_empty(), "schedule ids are assigned");

    let got = cat
        .client()
        .get_pilot(authed(&token, pb::GetPilotRequest { pilot_id: pilot.id.clone() }))
        .await
        .unwrap();
    assert_eq!(got.into_inner().pilot.unwrap(), pilot);

    // Update writes version 2; version 1 stays as it was.
    let mut edited = spec.clone();
    edited.title = "Triage support email, v2".into();
    edited.steps.pop();
    let updated = cat
        .client()
        .update_pilot(authed(
            &token,
            pb::UpdatePilotRequest {
                pilot_id: pilot.id.clone(),
                expected_version: 1,
                spec: Some(edited.clone()),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .pilot
        .unwrap();
    assert_eq!(
        (updated.version, updated.spec.as_ref().unwrap().title.as_str()),
        (2, "Triage support email, v2")
    );
    assert_eq!(updated.spec.as_ref().unwrap().schedules[0].id, spec.schedules[0].id, "schedule ids are kept");

    // A stale update is ABORTED and changes nothing.
    let stale = cat
        .client()
        .update_pilot(authed(
            &token,
            pb::UpdatePilotRequest {
                pilot_id: pilot.id.clone(),
                expected_version: 1,
                spec: Some(spec.clone()),
            },
        ))
        .await;
    let s = assert_status(stale, Code::Aborted, "STALE_VERSION");
    assert!(s.message().contains("current version is 2"), "{}", s.message());

    let versions = cat
        .client()
        .list_versions(authed(
            &token,
            pb::ListVersionsRequest { pilot_id: pilot.id.clone(), page_size: 1, page_token: String::new() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(versions.versions.iter().map(|v| v.version).collect::<Vec<_>>(), [2]);
    let older = cat
        .client()
        .list_versions(authed(
            &token,
            pb::ListVersionsRequest {
                pilot_id: pilot.id.clone(),
                page_size: 1,
                page_token: versions.next_page_token,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(older.versions[0].version, 1);
    assert_eq!(older.versions[0].step_count, 7);
    assert!(older.next_page_token.is_empty());
    let v1 = cat
        .client()
        .get_version(authed(&token, pb::GetVersionRequest { pilot_id: pilot.id.clone(), version: 1 }))
        .await
        .unwrap()
        .into_inner()
        .version
        .unwrap();
    assert_eq!(v1.spec.unwrap(), spec, "versions are immutable");

    let disabled = cat
        .client()
        .set_enabled(authed(&token, pb::SetEnabledRequest { pilot_id: pilot.id.clone(), enabled: false }))
        .await
        .unwrap()
        .into_inner()
        .pilot
        .unwrap();
    assert!(!disabled.enabled);

    // Delete publishes a pilot-deleted event (through the outbox) for the executor.
    let stream = format!("{}_EVENTS", cat.prefix);
    let js = async_nats::jetstream::new(cat.nats.clone());
    cat.client()
        .delete_pilot(authed(&token, pb::DeletePilotRequest { pilot_id: pilot.id.clone() }))
        .await
        .unwrap();
    assert_status(
        cat.client().get_pilot(authed(&token, pb::GetPilotRequest { pilot_id: pilot.id.clone() })).await,
        Code::NotFound,
        "NOT_FOUND",
    );
    let consumer = js
        .get_stream(&stream)
        .await
        .unwrap()
        .create_consumer(async_nats::jetstream::consumer::pull::Config::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let msg = tokio::time::timeout(std::time::Duration::from_secs(10), messages.next())
        .await
        .expect("event arrives")
        .unwrap()
        .unwrap();
    assert_eq!(msg.subject.as_str(), format!("{}.events.{owner}.pilot_deleted", cat.prefix));
    let event = events::PilotDeleted::decode(msg.payload.as_ref()).unwrap();
    assert_eq!((event.owner_id, event.pilot_id), (owner.to_string(), pilot.id.clone()));

    // Nothing of it is left in the database.
    let pool = cat.superuser().await;
    for table in [
        "pilots WHERE id",
        "pilot_versions WHERE pilot_id",
        "schedules WHERE pilot_id",
        "webhook_secrets WHERE pilot_id",
    ] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM catalog.{table} = $1")))
                .bind(pilot.id.parse::<uuid::Uuid>().unwrap())
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    let outbox: i64 =
        sqlx::query_scalar("SELECT count(*) FROM catalog.outbox").fetch_one(&pool).await.unwrap();
    assert_eq!(outbox, 0, "published events leave the outbox");
}

#[tokio::test]
async fn list_is_newest_first_and_paged() {
    let cat = Catalog::start().await;
    let token = cat.user(owner());
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut spec = sample_spec();
        spec.title = format!("Pilot {i}");
        ids.push(cat.create(&token, spec).await.pilot.unwrap().id);
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut token_page = String::new();
    loop {
        let page = cat
            .client()
            .list_pilots(authed(
                &token,
                pb::ListPilotsRequest { page_size: 2, page_token: token_page.clone() },
            ))
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.pilots.into_iter().map(|p| p.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token_page = page.next_page_token;
    }
    assert_eq!(seen, ids);
    assert_status(
        cat.client()
            .list_pilots(authed(
                &token,
                pb::ListPilotsRequest { page_size: 2, page_token: "garbage!".into() },
            ))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
}

#[tokio::test]
async fn validation_errors_name_the_step_and_field() {
    let cat = Catalog::start().await;
    let token = cat.user(owner());
    let mut spec = sample_spec();
    if let Some(pb::step::Kind::Slack(s)) = &mut spec.steps[3].kind {
        s.text = "{{ steps.mail.output.id }}".into();
    }
    let s = assert_status(
        cat.client()
            .create_pilot(authed(&token, pb::CreatePilotRequest { spec: Some(spec), enabled: true }))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(s.message(), "steps[3] \"notify\": slack.text: refers to step \"mail\", which runs after it");

    let mut spec = sample_spec();
    if let Some(pb::step::Kind::Transform(t)) = &mut spec.steps[2].kind {
        t.template = "{% if %}".into();
    }
    let s = assert_status(
        cat.client()
            .create_pilot(authed(&token, pb::CreatePilotRequest { spec: Some(spec), enabled: true }))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert!(
        s.message().starts_with("steps[2] \"shape\": transform.template: template syntax error"),
        "{}",
        s.message()
    );
}

#[tokio::test]
async fn limits_are_answered_clearly() {
    let cat = Catalog::start_with(|c| {
        c.limits.max_pilots = 2;
        c.limits.max_steps = 3;
        c.limits.max_document_bytes = 8 * 1024;
    })
    .await;
    let token = cat.user(owner());
    let small = |title: &str| {
        let mut s = sample_spec();
        s.title = title.into();
        s.steps.truncate(3);
        s
    };
    cat.create(&token, small("one")).await;
    cat.create(&token, small("two")).await;
    let s = assert_status(
        cat.client()
            .create_pilot(authed(
                &token,
                pb::CreatePilotRequest { spec: Some(small("three")), enabled: true },
            ))
            .await,
        Code::FailedPrecondition,
        "LIMIT_EXCEEDED",
    );
    assert!(s.message().contains("at most 2 Pilots"), "{}", s.message());
    let other = cat.user(owner());
    let s = assert_status(
        cat.client()
            .create_pilot(authed(&other, pb::CreatePilotRequest { spec: Some(sample_spec()), enabled: true }))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert!(s.message().contains("at most 3 steps"), "{}", s.message());
    let mut big = small("big");
    big.description = "x".repeat(4000);
    if let Some(pb::step::Kind::Transform(t)) = &mut big.steps[2].kind {
        t.template = format!("{{\"pad\": \"{}\"}}", "y".repeat(6000));
    }
    assert_status(
        cat.client()
            .create_pilot(authed(&other, pb::CreatePilotRequest { spec: Some(big), enabled: true }))
            .await,
        Code::InvalidArgument,
        "PAYLOAD_TOO_LARGE",
    );
}

#[tokio::test]
async fn export_then_import_is_lossless_and_matches_the_schema() {
    let cat = Catalog::start().await;
    let token = cat.user(owner());
    let created = cat.create(&token, sample_spec()).await.pilot.unwrap();
    let json = cat
        .client()
        .export_pilot(authed(&token, pb::ExportPilotRequest { pilot_id: created.id.clone() }))
        .await
        .unwrap()
        .into_inner()
        .json;
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["format"], "bizops.pilot/v1");
    assert!(!json.contains("whsec_"), "no secrets in exports");

    let imported = cat
        .client()
        .import_pilot(authed(&token, pb::ImportPilotRequest { json: json.clone(), enabled: false }))
        .await
        .unwrap()
        .into_inner();
    assert!(imported.webhook_secret.starts_with("whsec_"));
    let pilot = imported.pilot.unwrap();
    assert_ne!(pilot.id, created.id, "a new Pilot");
    let strip = |mut s: pb::PilotSpec| {
        for x in &mut s.schedules {
            x.id.clear();
        }
        s
    };
    assert_eq!(strip(pilot.spec.unwrap()), strip(created.spec.unwrap()));

    // The document validates against docs/pilot-export.schema.json (Python jsonschema).
    let schema = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/pilot-export.schema.json");
    let out = std::process::Command::new(python())
        .args([
            "-c",
            "import json,sys,jsonschema; jsonschema.validate(json.load(sys.stdin), json.load(open(sys.argv[1]))); print('ok')",
            schema.to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(json.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "schema validation: {}", String::from_utf8_lossy(&out.stderr));

    // A document that breaks the format is refused, saying where.
    let broken = json.replacen("\"kind\": \"slack\"", "\"kind\": \"telegram\"", 1);
    assert_status(
        cat.client()
            .import_pilot(authed(&token, pb::ImportPilotRequest { json: broken, enabled: false }))
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
}
