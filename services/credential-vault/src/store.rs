//! Owner-scoped storage. Every method runs in a transaction that sets
//! `app.owner_id`, as the service role (NOBYPASSRLS): row-level security makes a
//! missing or wrong owner match nothing. Cross-owner paths live in `system.rs`.

use std::future::Future;

use bizops_authn::OwnerId;
use sqlx::{PgPool, Postgres, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::crypto::{CryptoError, Sealed};

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The owner has as many credentials as allowed.
    #[error("credential limit of {0} reached")]
    LimitExceeded(u32),
    /// The value could not be sealed.
    #[error("sealing the value failed: {0}")]
    Seal(#[from] CryptoError),
    /// Anything else from the database.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<StoreError> for bizops_errors::Error {
    fn from(e: StoreError) -> Self {
        use bizops_errors::{Error, ErrorCode};
        match e {
            StoreError::LimitExceeded(n) => Error::new(
                ErrorCode::LimitExceeded,
                format!("credentials: the limit of {n} credentials per account is reached; delete one first"),
            ),
            StoreError::Seal(e) => Error::internal(e),
            StoreError::Db(e) => Error::internal(e),
        }
    }
}

/// What a user may see of a credential: never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialMeta {
    /// Credential id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Connector kind name.
    pub kind: String,
    /// First stored.
    pub created_at: OffsetDateTime,
    /// Last replaced.
    pub updated_at: OffsetDateTime,
    /// Last resolved for a run.
    pub last_used_at: Option<OffsetDateTime>,
    /// `…a1b2`.
    pub fingerprint: String,
}

/// A stored credential as it is needed to decrypt it.
#[derive(Clone)]
pub struct SealedRow {
    /// Credential id.
    pub id: Uuid,
    /// Owner.
    pub owner_id: Uuid,
    /// Name.
    pub name: String,
    /// Connector kind name.
    pub kind: String,
    /// Value ciphertext.
    pub ciphertext: Vec<u8>,
    /// Wrapped data key.
    pub wrapped_key: Vec<u8>,
    /// KEK version of the wrapped key.
    pub kek_version: i32,
    /// The minimum decryption version in force when read.
    pub min_decryption_version: i32,
}

impl std::fmt::Debug for SealedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("kek_version", &self.kek_version)
            .finish_non_exhaustive()
    }
}

/// Owner-scoped storage of credentials.
pub trait CredentialStore: Send + Sync + 'static {
    /// Creates or replaces credential `name`. `seal` is called with the credential's
    /// id (the existing one on replace) and returns the sealed value. A new name is
    /// refused with [`StoreError::LimitExceeded`] once the owner has `limit`.
    fn put(
        &self,
        owner: OwnerId,
        name: &str,
        kind: &str,
        limit: u32,
        at: OffsetDateTime,
        seal: impl FnOnce(Uuid) -> Result<Sealed, CryptoError> + Send,
    ) -> impl Future<Output = Result<CredentialMeta, StoreError>> + Send;
    /// The owner's credentials, by name.
    fn list(&self, owner: OwnerId) -> impl Future<Output = Result<Vec<CredentialMeta>, StoreError>> + Send;
    /// Deletes credential `name`; false if there was none.
    fn delete(&self, owner: OwnerId, name: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The stored form of the named credentials that exist, by name.
    fn sealed(
        &self,
        owner: OwnerId,
        names: &[String],
    ) -> impl Future<Output = Result<Vec<SealedRow>, StoreError>> + Send;
    /// Records that a run used these credentials.
    fn mark_used(
        &self,
        owner: OwnerId,
        ids: &[Uuid],
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The Postgres implementation, on the service role's pool.
#[derive(Debug, Clone)]
pub struct PgCredentialStore {
    pool: PgPool,
}

impl PgCredentialStore {
    /// A store on `pool` (connected as `bizops_vault`).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    async fn scoped(&self, owner: OwnerId) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query!("SELECT set_config('app.owner_id', $1, true)", owner.to_string())
            .fetch_one(&mut *tx)
            .await?;
        Ok(tx)
    }
}

impl CredentialStore for PgCredentialStore {
    async fn put(
        &self,
        owner: OwnerId,
        name: &str,
        kind: &str,
        limit: u32,
        at: OffsetDateTime,
        seal: impl FnOnce(Uuid) -> Result<Sealed, CryptoError> + Send,
    ) -> Result<CredentialMeta, StoreError> {
        let mut tx = self.scoped(owner).await?;
        // Serialises this owner's puts, so the count below cannot be raced past.
        sqlx::query!(
            "SELECT pg_advisory_xact_lock(hashtextextended('vault.credentials:' || $1, 0))",
            owner.to_string()
        )
        .fetch_one(&mut *tx)
        .await?;
        let existing =
            sqlx::query_scalar!("SELECT id FROM vault.credentials WHERE name = $1 FOR UPDATE", name)
                .fetch_optional(&mut *tx)
                .await?;
        let id = match existing {
            Some(id) => id,
            None => {
                let count = sqlx::query_scalar!("SELECT count(*) AS \"n!\" FROM vault.credentials")
                    .fetch_one(&mut *tx)
                    .await?;
                if count >= i64::from(limit) {
                    return Err(StoreError::LimitExceeded(limit));
                }
                Uuid::now_v7()
            }
        };
        // CPU only (microseconds): no network call while the transaction is open.
        let sealed = seal(id)?;
        let kek_version =
            i32::try_from(sealed.kek_version).map_err(|_| StoreError::Seal(CryptoError::Encrypt))?;
        let meta = sqlx::query_as!(
            CredentialMeta,
            "INSERT INTO vault.credentials
                 (id, owner_id, name, kind, ciphertext, wrapped_key, kek_version, fingerprint, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
             ON CONFLICT (owner_id, name) DO UPDATE SET
                 kind = EXCLUDED.kind,
                 ciphertext = EXCLUDED.ciphertext,
                 wrapped_key = EXCLUDED.wrapped_key,
                 kek_version = EXCLUDED.kek_version,
                 fingerprint = EXCLUDED.fingerprint,
                 updated_at = EXCLUDED.updated_at
             RETURNING id, name, kind, created_at, updated_at, last_used_at, fingerprint",
            id,
            owner.as_uuid(),
            name,
            kind,
            sealed.ciphertext,
            sealed.wrapped_key,
            kek_version,
            sealed.fingerprint,
            at,
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(meta)
    }

    async fn list(&self, owner: OwnerId) -> Result<Vec<CredentialMeta>, StoreError> {
        let mut tx = self.scoped(owner).await?;
        let rows = sqlx::query_as!(
            CredentialMeta,
            "SELECT id, name, kind, created_at, updated_at, last_used_at, fingerprint
             FROM vault.credentials ORDER BY name"
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows)
    }

    async fn delete(&self, owner: OwnerId, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.scoped(owner).await?;
        let done =
            sqlx::query!("DELETE FROM vault.credentials WHERE name = $1", name).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn sealed(&self, owner: OwnerId, names: &[String]) -> Result<Vec<SealedRow>, StoreError> {
        let mut tx = self.scoped(owner).await?;
        let rows = sqlx::query_as!(
            SealedRow,
            "SELECT c.id, c.owner_id, c.name, c.kind, c.ciphertext, c.wrapped_key, c.kek_version,
                    s.min_decryption_version
             FROM vault.credentials c CROSS JOIN vault.settings s
             WHERE c.name = ANY($1) ORDER BY c.name",
            names
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows)
    }

    async fn mark_used(&self, owner: OwnerId, ids: &[Uuid], at: OffsetDateTime) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.scoped(owner).await?;
        sqlx::query!(
            "UPDATE vault.credentials SET last_used_at = $2
             WHERE id = ANY($1) AND (last_used_at IS NULL OR last_used_at < $2)",
            ids,
            at
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
