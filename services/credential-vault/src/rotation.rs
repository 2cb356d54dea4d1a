//! Key rotation: rewraps every data key under the active KEK, in batches, online.
//!
//! A job row holds the target version, a snapshot bound (the largest credential id
//! when it started), a cursor and the counts; each batch's compare-and-swap writes
//! and the job's progress commit together, so a job stopped anywhere (shutdown,
//! crash) resumes exactly after its last batch. One replica at a time works on the
//! running job (a session advisory lock on a connection that closes if the worker
//! dies); every replica looks for a running job at start-up and every
//! `rotation.poll_interval`. Only data keys are unwrapped and rewrapped; values are
//! never decrypted.

use std::sync::Arc;

use bizops_authn::OwnerId;
use bizops_runtime::Stopped;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::{
    config::RotationConfig,
    crypto::{Binding, KeyRing},
    system::{JobRow, Rewrap, SystemStore},
};

/// Credentials per batch when the request says 0.
pub const DEFAULT_BATCH_SIZE: u32 = 100;
/// Largest batch a request may ask for.
pub const MAX_BATCH_SIZE: u32 = 1000;

/// Starts rotation jobs and works on them.
#[derive(Debug, Clone)]
pub struct Rotator {
    system: SystemStore,
    keys: Arc<KeyRing>,
    config: RotationConfig,
    wake: Arc<Notify>,
}

impl Rotator {
    /// A rotator over the system store.
    pub fn new(system: SystemStore, keys: Arc<KeyRing>, config: RotationConfig) -> Self {
        Self { system, keys, config, wake: Arc::new(Notify::new()) }
    }

    /// The running job, or a new one rewrapping under the active KEK; wakes the worker.
    pub async fn start(&self, batch_size: u32) -> Result<(JobRow, bool), sqlx::Error> {
        let (job, created) = self.system.start_rotation(self.keys.active_version(), batch_size).await?;
        if created {
            tracing::info!(job_id = %job.id, target_version = job.target_version, total = job.total,
                batch_size = job.batch_size, "key rotation started");
        }
        self.wake.notify_one();
        Ok((job, created))
    }

    /// Works on running jobs until shutdown: at once (a job left running by a
    /// stopped or crashed replica resumes), when woken, and every poll interval.
    pub async fn supervise(self, stopped: Stopped) {
        loop {
            if stopped.is_stopped() {
                return;
            }
            if let Err(e) = self.run_pending(&stopped).await {
                tracing::warn!(error = %e, "key rotation worker failed; will retry");
            }
            let wait = stopped.clone().wait();
            tokio::select! {
                () = wait => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
    }

    /// Runs the running job (if any, and if no other replica does) until it is done
    /// or shutdown begins.
    async fn run_pending(&self, stopped: &Stopped) -> Result<(), sqlx::Error> {
        if self.system.running_job().await?.is_none() {
            return Ok(());
        }
        let Some(mut conn) = self.system.lock_rotation().await? else {
            tracing::debug!("another replica works on the key rotation");
            return Ok(());
        };
        let result = self.work(&mut conn, stopped).await;
        self.system.unlock_rotation(conn).await;
        result
    }

    async fn work(&self, conn: &mut sqlx::PgConnection, stopped: &Stopped) -> Result<(), sqlx::Error> {
        // Re-read under the lock: the job may have finished meanwhile.
        let Some(mut job) = self.system.running_job().await? else { return Ok(()) };
        let target = u32::try_from(job.target_version).unwrap_or(0);
        if !self.keys.contains(target) {
            let reason = format!("KEK version {target} (the job's target) is not in this replica's keyring");
            tracing::error!(job_id = %job.id, "key rotation failed: {reason}");
            return self.system.fail_rotation(job.id, &reason).await;
        }
        if job.cursor_id.is_some() {
            tracing::info!(job_id = %job.id, done = job.done, failed = job.failed, total = job.total,
                "key rotation resumed");
        }
        loop {
            if stopped.is_stopped() {
                tracing::info!(job_id = %job.id, done = job.done, total = job.total,
                    "key rotation paused for shutdown; it resumes at the next start");
                return Ok(());
            }
            let min = u32::try_from(self.system.min_decryption_version().await?).unwrap_or(0);
            let rows = self.system.rotation_batch(conn, &job).await?;
            let Some(last) = rows.last().map(|r| r.id) else {
                self.system.finish_rotation(conn, job.id).await?;
                let done = self.system.job(job.id).await?.unwrap_or(job);
                tracing::info!(job_id = %done.id, done = done.done, failed = done.failed,
                    target_version = done.target_version, "key rotation completed");
                return Ok(());
            };
            let (mut rewraps, mut already, mut failed) = (Vec::new(), 0i64, 0i64);
            for row in &rows {
                if row.kek_version == job.target_version {
                    already += 1;
                    continue;
                }
                let binding = Binding {
                    owner: OwnerId(row.owner_id),
                    credential_id: row.id,
                    kind: &row.kind,
                    name: &row.name,
                };
                let version = u32::try_from(row.kek_version).unwrap_or(0);
                match self.keys.rewrap(&binding, &row.wrapped_key, version, min, target) {
                    Ok(new) => rewraps.push(Rewrap { id: row.id, old: row.wrapped_key.clone(), new }),
                    Err(e) => {
                        failed += 1;
                        tracing::warn!(job_id = %job.id, credential_id = %row.id, kek_version = row.kek_version,
                            error = %e, "key rotation could not rewrap a credential's data key");
                    }
                }
            }
            let outcome =
                self.system.apply_rotation_batch(conn, &job, &rewraps, already, failed, last).await?;
            if !outcome.still_running {
                tracing::info!(job_id = %job.id, "key rotation job is no longer running; stopping");
                return Ok(());
            }
            metrics::counter!("vault_rotation_done_total").increment(outcome.done.max(0) as u64);
            metrics::counter!("vault_rotation_failed_total").increment(outcome.failed.max(0) as u64);
            job.cursor_id = Some(last);
            job.done += outcome.done;
            job.failed += outcome.failed;
            tracing::debug!(job_id = %job.id, done = job.done, failed = job.failed, total = job.total,
                "key rotation batch committed");
            if !self.config.batch_pause.is_zero() {
                let wait = stopped.clone().wait();
                tokio::select! {
                    () = wait => {}
                    () = tokio::time::sleep(self.config.batch_pause) => {}
                }
            }
        }
    }
}

/// A job id from an RPC field.
pub fn parse_job_id(text: &str) -> Option<Uuid> {
    text.trim().parse().ok()
}
