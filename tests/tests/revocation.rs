//! Revocation reaches every service. identity, pilot-catalog, credential-vault and
//! executor run as real processes. The three services behind identity accept only
//! access tokens (a session token is refused with an error that says what to do),
//! and after sign-out, a password change or the account's deletion the old session
//! gets no new access token at once, and its last access token is refused by every
//! service once it expires. identity mints them for 3 s here (55 s by default; the
//! verifiers allow 5 s of clock skew, so the default bound is 60 s).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bizops_e2e::procs::{Options, Procs};
use bizops_proto::{
    catalog::v1::{self as cpb, catalog_service_client::CatalogServiceClient},
    executor::v1::{self as xpb, executor_service_client::ExecutorServiceClient},
    identity::v1::{self as ipb, identity_service_client::IdentityServiceClient},
    vault::v1::{self as vpb, vault_service_client::VaultServiceClient},
};
use bizops_testkit::{PASSWORD, authed, wait::poll};
use tokio::time::Instant;
use tonic::{Code, transport::Channel};
use uuid::Uuid;

const ACCESS_TTL: Duration = Duration::from_secs(3);
/// The verifiers' leeway for clock skew.
const LEEWAY: Duration = Duration::from_secs(5);

struct Clients {
    identity: IdentityServiceClient<Channel>,
    catalog: CatalogServiceClient<Channel>,
    vault: VaultServiceClient<Channel>,
    executor: ExecutorServiceClient<Channel>,
}

impl Clients {
    async fn new(procs: &Procs) -> Self {
        Self {
            identity: IdentityServiceClient::connect(procs.grpc_url("identity")).await.unwrap(),
            catalog: CatalogServiceClient::connect(procs.grpc_url("pilot-catalog")).await.unwrap(),
            vault: VaultServiceClient::connect(procs.grpc_url("credential-vault")).await.unwrap(),
            executor: ExecutorServiceClient::connect(procs.grpc_url("executor")).await.unwrap(),
        }
    }

    /// Registers a fresh account and signs in: its email and session token.
    async fn user(&self, tag: &str) -> (String, String) {
        let email = format!("{tag}-{}@example.com", Uuid::now_v7().simple());
        let mut identity = self.identity.clone();
        identity
            .register(ipb::RegisterRequest {
                email: email.clone(),
                password: PASSWORD.into(),
                display_name: String::new(),
            })
            .await
            .unwrap();
        let session = identity
            .login(ipb::LoginRequest { email: email.clone(), password: PASSWORD.into() })
            .await
            .unwrap()
            .into_inner()
            .session
            .unwrap();
        (email, session.token)
    }

    async fn exchange(&self, session: &str) -> Result<String, tonic::Status> {
        let request = ipb::ExchangeTokenRequest { subject_token: session.to_owned() };
        Ok(self.identity.clone().exchange_token(request).await?.into_inner().access_token)
    }

    /// One user call at each service with `token`: what each answered.
    async fn probe(&self, token: &str) -> [(&'static str, Result<(), tonic::Status>); 3] {
        let (mut catalog, mut vault, mut executor) =
            (self.catalog.clone(), self.vault.clone(), self.executor.clone());
        let approvals = xpb::ListApprovalsRequest { page_size: 10, page_token: String::new() };
        let catalog = catalog.list_pilots(authed(token, cpb::ListPilotsRequest::default()));
        let vault = vault.list_credentials(authed(token, vpb::ListCredentialsRequest {}));
        let executor = executor.list_approvals(authed(token, approvals));
        let (c, v, x) = tokio::join!(catalog, vault, executor);
        [("pilot-catalog", c.map(drop)), ("credential-vault", v.map(drop)), ("executor", x.map(drop))]
    }
}

#[derive(Debug, Clone, Copy)]
enum Revocation {
    SignOut,
    PasswordChange,
    Deletion,
}

/// Signs in, exchanges, revokes the session `how`, and checks that no new access
/// token is minted at once and that the last one stops working at every service
/// within its lifetime (plus the leeway).
async fn revoke(clients: &Clients, how: Revocation) {
    let (_, session) = clients.user(&format!("{how:?}").to_lowercase()).await;
    let minted = Instant::now();
    let access = clients.exchange(&session).await.unwrap();
    for (service, answer) in clients.probe(&access).await {
        answer.unwrap_or_else(|s| panic!("{how:?}: {service} refused a fresh access token: {s:?}"));
    }

    let mut identity = clients.identity.clone();
    match how {
        Revocation::SignOut => {
            identity.logout(authed(&session, ipb::LogoutRequest {})).await.unwrap();
        }
        Revocation::PasswordChange => {
            let request = ipb::ChangePasswordRequest {
                current_password: PASSWORD.into(),
                new_password: "velvet otter juggling seven lanterns".into(),
            };
            identity.change_password(authed(&session, request)).await.unwrap();
        }
        Revocation::Deletion => {
            let request = ipb::DeleteAccountRequest { password: PASSWORD.into() };
            identity.delete_account(authed(&session, request)).await.unwrap();
        }
    }
    let refused = clients.exchange(&session).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{how:?}: a new access token was minted: {refused:?}");

    // The access token minted before dies with its lifetime, everywhere. (A whole
    // second of slack: `iat` and `exp` are whole seconds.)
    let bound = ACCESS_TTL + LEEWAY + Duration::from_secs(2);
    let refused = poll(bound.saturating_sub(minted.elapsed()), || async {
        let answers = clients.probe(&access).await;
        answers.iter().all(|(_, a)| a.is_err()).then_some(answers)
    })
    .await;
    let Some(answers) = refused else {
        let answers = clients.probe(&access).await;
        let accepted: Vec<_> = answers.iter().filter(|(_, a)| a.is_ok()).map(|(s, _)| *s).collect();
        panic!("{how:?}: the revoked session's access token still works at {accepted:?} after {bound:?}");
    };
    for (service, answer) in answers {
        let s = answer.unwrap_err();
        assert_eq!(s.code(), Code::Unauthenticated, "{how:?}: {service}: {s:?}");
        assert!(s.message().contains("expired"), "{how:?}: {service}: {}", s.message());
    }
}

#[tokio::test]
async fn services_accept_only_access_tokens_and_a_revoked_session_loses_them_all() {
    let mut procs = Procs::start(Options {
        extra: vec![("identity", "BIZOPS_SESSION__ACCESS_TTL".into(), format!("{}s", ACCESS_TTL.as_secs()))],
        ..Options::default()
    })
    .await;
    let clients = Clients::new(&procs).await;

    // A session token presented directly to the services is refused, and says why.
    let (_, session) = clients.user("direct").await;
    for (service, answer) in clients.probe(&session).await {
        let s = answer.expect_err(service);
        assert_eq!(s.code(), Code::Unauthenticated, "{service}: {s:?}");
        assert!(s.message().contains("ExchangeToken"), "{service}: {}", s.message());
    }
    let access = clients.exchange(&session).await.unwrap();
    for (service, answer) in clients.probe(&access).await {
        answer.unwrap_or_else(|s| panic!("{service} refused an access token: {s:?}"));
    }

    tokio::join!(
        revoke(&clients, Revocation::SignOut),
        revoke(&clients, Revocation::PasswordChange),
        revoke(&clients, Revocation::Deletion),
    );

    for (binary, logs) in procs.stop_all().await {
        assert!(!logs.contains(&session) && !logs.contains(&access), "a token in the logs of {binary}");
    }
}
