//! Account deletion across every service, in the order of ARCHITECTURE.md:
//! revoke all sessions → catalog DeleteOwnerData (no more webhooks or schedules)
//! → purge the owner's NATS subjects in every stream → executor DeleteOwnerData
//! (cancel running work, delete jobs, runs, approvals) → vault DeleteOwnerData →
//! identity's own rows. Calls use identity's service identity. Hard delete, at once.
//!
//! The deletion is recorded before its first step and advances one step at a time,
//! so a crash or a failed call midway is finished by a retry or by the background
//! loop; sign-in is refused while it is in progress. Every step is idempotent.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream;
use bizops_authn::{OwnerId, ServiceSigner, ServiceTokenInterceptor};
use bizops_bus::{NatsConfig, Subjects};
use bizops_proto::{
    catalog::v1::{DeleteOwnerDataRequest as CatalogDelete, catalog_service_client::CatalogServiceClient},
    executor::v1::{
        DeleteOwnerDataRequest as ExecutorDelete, executor_service_client::ExecutorServiceClient,
    },
    vault::v1::{DeleteOwnerDataRequest as VaultDelete, vault_service_client::VaultServiceClient},
};
use tonic::transport::Channel;

use crate::{
    config::IdentityConfig,
    notify::{Notice, Notifier},
    system::{DeletionLock, SystemStore},
    throttle::Throttle,
};

/// How long a request waits for another runner of the same deletion.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Steps, as recorded in `account_deletions.step` (the last one finished).
pub mod step {
    /// Recorded, nothing done yet.
    pub const STARTED: i16 = 0;
    /// Every session revoked.
    pub const SESSIONS: i16 = 1;
    /// The catalog deleted the owner's Pilots.
    pub const CATALOG: i16 = 2;
    /// The owner's messages purged from every stream.
    pub const NATS: i16 = 3;
    /// The executor deleted runs, jobs, approvals.
    pub const EXECUTOR: i16 = 4;
    /// The vault deleted the credentials.
    pub const VAULT: i16 = 5;
}

/// Where a deletion stopped.
#[derive(Debug, thiserror::Error)]
#[error("account deletion stopped after step {step}: {message}")]
pub struct Stopped {
    /// The last finished step.
    pub step: i16,
    /// Why.
    pub message: String,
}

/// Runs account deletions.
#[derive(Clone)]
pub struct Deleter {
    system: SystemStore,
    throttle: Throttle,
    catalog: Channel,
    executor: Channel,
    vault: Channel,
    signer: Option<ServiceSigner>,
    nats: NatsConfig,
    /// Connected on first use, so sign-in never depends on NATS being up.
    js: Arc<tokio::sync::OnceCell<jetstream::Context>>,
    subjects: Subjects,
    notifier: Notifier,
}

fn channel(url: &str, timeout: Duration) -> anyhow::Result<Channel> {
    Ok(tonic::transport::Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(3))
        .timeout(timeout)
        .connect_lazy())
}

impl Deleter {
    /// A deleter calling the services at the URLs of `config` as `signer` (without a signer,
    /// every deletion stops at the catalog step and says why), purging streams on
    /// the NATS of `nats`.
    pub fn new(
        config: &IdentityConfig,
        nats: NatsConfig,
        system: SystemStore,
        throttle: Throttle,
        signer: Option<ServiceSigner>,
        notifier: Notifier,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            system,
            throttle,
            catalog: channel(&config.catalog_url, config.deletion.call_timeout)?,
            executor: channel(&config.executor_url, config.deletion.call_timeout)?,
            vault: channel(&config.vault_url, config.deletion.call_timeout)?,
            signer,
            subjects: nats.subjects()?,
            nats,
            js: Arc::default(),
            notifier,
        })
    }

    async fn jetstream(&self) -> Result<&jetstream::Context, String> {
        self.js
            .get_or_try_init(|| async {
                self.nats.connect("identity").await.map(|(_, js)| js).map_err(|e| format!("NATS: {e}"))
            })
            .await
    }

    fn interceptor(&self, audience: &str) -> Result<ServiceTokenInterceptor, String> {
        self.signer
            .clone()
            .map(|s| ServiceTokenInterceptor::new(s, audience))
            .ok_or_else(|| "identity has no service key (BIZOPS_AUTH__SERVICE_KEY)".to_owned())
    }

    /// Runs (or resumes) the deletion of `owner` to the end; when another runner
    /// (the background loop, another replica) is at it, waits up to `LOCK_WAIT`
    /// for it to finish.
    #[tracing::instrument(skip(self), fields(owner_id = %owner))]
    pub async fn run(&self, owner: OwnerId) -> Result<(), Stopped> {
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        loop {
            match self.system.try_lock_deletion(owner).await {
                Ok(Some(lock)) => return self.run_locked(owner, lock).await,
                Ok(None) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(None) => {
                    let step =
                        self.system.deletion(owner).await.ok().flatten().map_or(step::STARTED, |d| d.0);
                    return Err(Stopped { step, message: "another runner is still at this deletion".into() });
                }
                Err(e) => return Err(Stopped { step: step::STARTED, message: e.to_string() }),
            }
        }
    }

    /// Runs the deletion of `owner` unless another runner is at it.
    async fn run_if_free(&self, owner: OwnerId) {
        match self.system.try_lock_deletion(owner).await {
            Ok(Some(lock)) => {
                let _ = self.run_locked(owner, lock).await;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(owner_id = %owner, error = %e, "could not lock an account deletion"),
        }
    }

    async fn run_locked(&self, owner: OwnerId, lock: DeletionLock) -> Result<(), Stopped> {
        let stop = |step: i16, message: String| Stopped { step, message };
        let Some((mut done, email)) =
            self.system.deletion(owner).await.map_err(|e| stop(step::STARTED, e.to_string()))?
        else {
            return Ok(());
        };
        let result = self.steps(owner, &mut done).await;
        if let Err(message) = result {
            tracing::warn!(step = done, error = %message, "account deletion will be retried");
            let _ = self.system.deletion_failed(owner, &message).await;
            return Err(stop(done, message));
        }
        let keys = self.throttle.keys(&email, None);
        self.system.finish_deletion(owner, keys.email()).await.map_err(|e| stop(done, e.to_string()))?;
        drop(lock);
        metrics::counter!("identity_accounts_deleted_total").increment(1);
        tracing::info!("account deleted in every service");
        let notifier = self.notifier.clone();
        tokio::spawn(async move {
            notifier.send(Notice::AccountDeleted, &email, &format!("account-deleted/{owner}")).await;
        });
        Ok(())
    }

    async fn steps(&self, owner: OwnerId, done: &mut i16) -> Result<(), String> {
        let id = owner.to_string();
        if *done < step::SESSIONS {
            self.system.revoke_sessions(owner).await.map_err(|e| e.to_string())?;
            self.advance(owner, done, step::SESSIONS).await?;
        }
        if *done < step::CATALOG {
            CatalogServiceClient::with_interceptor(self.catalog.clone(), self.interceptor("catalog")?)
                .delete_owner_data(CatalogDelete { owner_id: id.clone() })
                .await
                .map_err(|s| format!("catalog: {} {}", s.code(), s.message()))?;
            self.advance(owner, done, step::CATALOG).await?;
        }
        if *done < step::NATS {
            let js = self.jetstream().await?;
            for (stream, filter) in self.subjects.owner_filters(owner.as_uuid()) {
                let stream =
                    js.get_stream(&stream).await.map_err(|e| format!("NATS stream {stream}: {e}"))?;
                stream.purge().filter(filter).await.map_err(|e| format!("NATS purge: {e}"))?;
            }
            self.advance(owner, done, step::NATS).await?;
        }
        if *done < step::EXECUTOR {
            ExecutorServiceClient::with_interceptor(self.executor.clone(), self.interceptor("executor")?)
                .delete_owner_data(ExecutorDelete { owner_id: id.clone() })
                .await
                .map_err(|s| format!("executor: {} {}", s.code(), s.message()))?;
            self.advance(owner, done, step::EXECUTOR).await?;
        }
        if *done < step::VAULT {
            VaultServiceClient::with_interceptor(self.vault.clone(), self.interceptor("vault")?)
                .delete_owner_data(VaultDelete { owner_id: id })
                .await
                .map_err(|s| format!("vault: {} {}", s.code(), s.message()))?;
            self.advance(owner, done, step::VAULT).await?;
        }
        Ok(())
    }

    async fn advance(&self, owner: OwnerId, done: &mut i16, to: i16) -> Result<(), String> {
        self.system.advance_deletion(owner, to).await.map_err(|e| e.to_string())?;
        *done = to;
        tracing::info!(step = to, "account deletion step done");
        Ok(())
    }

    /// Resumes every unfinished deletion (the background loop).
    pub async fn resume_all(&self) {
        match self.system.pending_deletions().await {
            Ok(owners) => {
                for owner in owners {
                    self.run_if_free(owner).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not list unfinished account deletions"),
        }
    }
}
