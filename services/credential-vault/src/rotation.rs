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
//!
//! Rotation never wraps a key backwards: a job is refused while any credential is
//! under a version above the active one of the replica asked to start it (its
//! keyring is behind), and a batch leaves a row above the job's target as it is
//! (a put by a replica with a newer keyring). A row changed under a batch by a put
//! is re-read and decided again, so a concurrent put is never counted as a failure
//! (only a data key that cannot be unwrapped is).

use std::sync::Arc;

use bizops_authn::OwnerId;
use bizops_runtime::Stopped;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::{
    config::RotationConfig,
    crypto::{Binding, KeyRing},
    system::{JobRow, Rewrap, SystemStore, WrappedRow},
};

/// Credentials per batch when the request says 0.
pub const DEFAULT_BATCH_SIZE: u32 = 100;
/// Largest batch a request may ask for.
pub const MAX_BATCH_SIZE: u32 = 1000;

/// Why a rotation could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Credentials are wrapped under a version above this replica's active one: a
    /// job started here would wrap them backwards.
    #[error(
        "credentials are wrapped under KEK version {stored}, above this replica's active version {active}; \
         update the keyring everywhere first (every replica configured with KEK version {stored} as the \
         active version), then start the rotation again"
    )]
    KeyringBehind {
        /// The highest version credentials are wrapped under.
        stored: u32,
        /// This replica's active version.
        active: u32,
    },
    /// Anything else from the database.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// What a batch does with one credential.
enum Step {
    /// Counted as done without a write: already under the target, or above it.
    Done,
    /// Its data key could not be unwrapped (tampered, retired, unknown version).
    Failed,
    /// To be stored if the row still holds the wrapped key read.
    Rewrap(Rewrap),
}

/// Counts of one batch.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    done: i64,
    failed: i64,
}

impl Tally {
    fn count(&mut self, step: Step, rewraps: &mut Vec<Rewrap>) {
        match step {
            Step::Done => self.done += 1,
            Step::Failed => self.failed += 1,
            Step::Rewrap(r) => rewraps.push(r),
        }
    }
}

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

    /// The running job, or a new one rewrapping under the active KEK; wakes the
    /// worker. Refused while any credential is wrapped under a version above the
    /// active one: this replica's keyring is behind another's.
    pub async fn start(&self, batch_size: u32) -> Result<(JobRow, bool), StartError> {
        let active = self.keys.active_version();
        if let Some(stored) = self.system.max_kek_version().await? {
            let stored = u32::try_from(stored).unwrap_or(0);
            if stored > active {
                tracing::warn!(
                    kek_version = stored,
                    active_version = active,
                    "key rotation refused: credentials are under a newer KEK version than this replica's active one"
                );
                return Err(StartError::KeyringBehind { stored, active });
            }
        }
        let (job, created) = self.system.start_rotation(active, batch_size).await?;
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
            // Unwrapping and wrapping is CPU only; done before the transaction opens.
            let (mut tally, mut rewraps) = (Tally::default(), Vec::new());
            for row in &rows {
                tally.count(self.step(&job, row, target, min), &mut rewraps);
            }

            let Some(mut tx) = self.system.begin_batch(conn, job.id).await? else {
                tracing::info!(job_id = %job.id, "key rotation job is no longer running; stopping");
                return Ok(());
            };
            if !self.config.batch_hold.is_zero() {
                tracing::debug!(job_id = %job.id, "key rotation batch holding its transaction open");
                tokio::time::sleep(self.config.batch_hold).await;
            }
            let swapped = self.system.swap_wrapped_keys(&mut tx, &rewraps, job.target_version).await?;
            tally.done += swapped.len() as i64;
            let missed: Vec<Uuid> = rewraps.iter().map(|r| r.id).filter(|id| !swapped.contains(id)).collect();
            if !missed.is_empty() {
                // Changed since read: replaced by a put (perhaps by a replica with an
                // older or newer keyring) or deleted. Re-read under a row lock, so it
                // cannot change again before this batch commits, and decide again.
                let current = self.system.lock_wrapped(&mut tx, &missed).await?;
                tally.done += (missed.len() - current.len()) as i64; // deleted: nothing to rewrap
                let mut retries = Vec::new();
                for row in &current {
                    tally.count(self.step(&job, row, target, min), &mut retries);
                }
                let swapped = self.system.swap_wrapped_keys(&mut tx, &retries, job.target_version).await?;
                tally.done += swapped.len() as i64;
                // Locked rows cannot miss again; should one, it is counted, never hidden.
                tally.failed += (retries.len() - swapped.len()) as i64;
                tracing::debug!(job_id = %job.id, changed = missed.len(), retried = retries.len(),
                    "key rotation re-read credentials changed during its batch");
            }
            self.system.record_batch(&mut tx, job.id, last, tally.done, tally.failed).await?;
            tx.commit().await?;

            metrics::counter!("vault_rotation_done_total").increment(tally.done.max(0) as u64);
            metrics::counter!("vault_rotation_failed_total").increment(tally.failed.max(0) as u64);
            job.cursor_id = Some(last);
            job.done += tally.done;
            job.failed += tally.failed;
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

    /// What a batch does with one credential. A row under the target, or above it
    /// (wrapped by a replica whose keyring is newer than the job), is left as it is:
    /// a key is never wrapped backwards.
    fn step(&self, job: &JobRow, row: &WrappedRow, target: u32, min: u32) -> Step {
        let version = u32::try_from(row.kek_version).unwrap_or(0);
        if version >= target {
            if version > target {
                tracing::debug!(job_id = %job.id, credential_id = %row.id, kek_version = row.kek_version,
                    "key rotation left a credential under a newer KEK version as it is");
            }
            return Step::Done;
        }
        let binding =
            Binding { owner: OwnerId(row.owner_id), credential_id: row.id, kind: &row.kind, name: &row.name };
        match self.keys.rewrap(&binding, &row.wrapped_key, version, min, target) {
            Ok(new) => Step::Rewrap(Rewrap { id: row.id, old: row.wrapped_key.clone(), new }),
            Err(e) => {
                tracing::warn!(job_id = %job.id, credential_id = %row.id, kek_version = row.kek_version,
                    error = %e, "key rotation could not rewrap a credential's data key");
                Step::Failed
            }
        }
    }
}

/// A job id from an RPC field.
pub fn parse_job_id(text: &str) -> Option<Uuid> {
    text.trim().parse().ok()
}
