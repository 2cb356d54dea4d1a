//! Owner-scoped storage. Every method runs in a transaction that sets
//! `app.owner_id`, as the service role (NOBYPASSRLS): row-level security makes a
//! missing or wrong owner match nothing. Cross-owner paths live in `system.rs`.

use std::future::Future;

use bizops_authn::OwnerId;
use sqlx::{PgPool, Postgres, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The email is registered already.
    #[error("email already registered")]
    DuplicateEmail,
    /// Anything else from the database.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<StoreError> for bizops_errors::Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::DuplicateEmail => bizops_errors::Error::new(
                bizops_errors::ErrorCode::AlreadyExists,
                "email: an account with this email exists already; sign in instead",
            ),
            StoreError::Db(e) => bizops_errors::Error::internal(e),
        }
    }
}

/// An account row.
#[derive(Clone)]
pub struct AccountRow {
    /// Owner id.
    pub id: Uuid,
    /// Normalised email.
    pub email: String,
    /// Display name.
    pub display_name: Option<String>,
    /// scrypt PHC string.
    pub password_hash: String,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Password last set.
    pub password_changed_at: OffsetDateTime,
}

impl std::fmt::Debug for AccountRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountRow").field("id", &self.id).finish_non_exhaustive()
    }
}

/// A session row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRow {
    /// Session id (the token's `sid`).
    pub id: Uuid,
    /// Owner.
    pub owner_id: Uuid,
    /// Opened.
    pub created_at: OffsetDateTime,
    /// Absolute expiry.
    pub expires_at: OffsetDateTime,
    /// Last use (written at most once per resolution interval).
    pub last_seen_at: OffsetDateTime,
}

/// Owner-scoped storage of accounts and sessions.
pub trait AccountStore: Send + Sync + 'static {
    /// Inserts a new account.
    fn create_account(&self, account: &AccountRow) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The account of `owner`.
    fn account(&self, owner: OwnerId) -> impl Future<Output = Result<Option<AccountRow>, StoreError>> + Send;
    /// Opens a session, but only while the account's hash is still `verified_hash`
    /// (the one the password was just checked against): a sign-in that raced a
    /// password change must not outlive it. False if the hash changed.
    fn create_session(
        &self,
        session: &SessionRow,
        verified_hash: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// A session of `owner`.
    fn session(
        &self,
        owner: OwnerId,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<SessionRow>, StoreError>> + Send;
    /// Updates `last_seen_at`.
    fn touch_session(
        &self,
        owner: OwnerId,
        id: Uuid,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Ends one session; false if it did not exist.
    fn delete_session(
        &self,
        owner: OwnerId,
        id: Uuid,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Replaces `old_hash` (compare-and-swap), ends every session of the owner and
    /// opens `fresh`, atomically. False if the hash was not `old_hash` any more.
    fn replace_password(
        &self,
        owner: OwnerId,
        old_hash: &str,
        new_hash: &str,
        fresh: &SessionRow,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Replaces the hash after a parameter change, only if it is still `old_hash`.
    fn upgrade_hash(
        &self,
        owner: OwnerId,
        old_hash: &str,
        new_hash: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Records a successful sign-in from a (hashed) source address.
    fn remember_source(
        &self,
        owner: OwnerId,
        source_hash: &[u8],
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The Postgres implementation, on the service role's pool.
#[derive(Debug, Clone)]
pub struct PgAccountStore {
    pool: PgPool,
}

impl PgAccountStore {
    /// A store on `pool` (connected as `bizops_identity`).
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

impl AccountStore for PgAccountStore {
    async fn create_account(&self, a: &AccountRow) -> Result<(), StoreError> {
        let mut tx = self.scoped(OwnerId(a.id)).await?;
        let inserted = sqlx::query!(
            "INSERT INTO identity.accounts (id, email, display_name, password_hash, created_at, updated_at, password_changed_at)
             VALUES ($1, $2, $3, $4, $5, $5, $6)",
            a.id,
            a.email,
            a.display_name,
            a.password_hash,
            a.created_at,
            a.password_changed_at,
        )
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(sqlx::Error::Database(e)) if e.constraint() == Some("accounts_email_key") => {
                return Err(StoreError::DuplicateEmail);
            }
            other => other?,
        };
        tx.commit().await?;
        Ok(())
    }

    async fn account(&self, owner: OwnerId) -> Result<Option<AccountRow>, StoreError> {
        let mut tx = self.scoped(owner).await?;
        let row = sqlx::query_as!(
            AccountRow,
            "SELECT id, email, display_name, password_hash, created_at, password_changed_at
             FROM identity.accounts WHERE id = $1",
            owner.as_uuid()
        )
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn create_session(&self, s: &SessionRow, verified_hash: &str) -> Result<bool, StoreError> {
        let mut tx = self.scoped(OwnerId(s.owner_id)).await?;
        let done = sqlx::query!(
            "INSERT INTO identity.sessions (id, owner_id, created_at, expires_at, last_seen_at)
             SELECT $1, $2, $3, $4, $5
             WHERE EXISTS (SELECT 1 FROM identity.accounts WHERE id = $2 AND password_hash = $6)",
            s.id,
            s.owner_id,
            s.created_at,
            s.expires_at,
            s.last_seen_at,
            verified_hash,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn session(&self, owner: OwnerId, id: Uuid) -> Result<Option<SessionRow>, StoreError> {
        let mut tx = self.scoped(owner).await?;
        let row = sqlx::query_as!(
            SessionRow,
            "SELECT id, owner_id, created_at, expires_at, last_seen_at FROM identity.sessions WHERE id = $1",
            id
        )
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn touch_session(&self, owner: OwnerId, id: Uuid, at: OffsetDateTime) -> Result<(), StoreError> {
        let mut tx = self.scoped(owner).await?;
        sqlx::query!(
            "UPDATE identity.sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2",
            id,
            at
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_session(&self, owner: OwnerId, id: Uuid) -> Result<bool, StoreError> {
        let mut tx = self.scoped(owner).await?;
        let done = sqlx::query!("DELETE FROM identity.sessions WHERE id = $1", id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn replace_password(
        &self,
        owner: OwnerId,
        old_hash: &str,
        new_hash: &str,
        fresh: &SessionRow,
    ) -> Result<bool, StoreError> {
        let mut tx = self.scoped(owner).await?;
        let changed = sqlx::query!(
            "UPDATE identity.accounts SET password_hash = $3, password_changed_at = $4, updated_at = $4
             WHERE id = $1 AND password_hash = $2",
            owner.as_uuid(),
            old_hash,
            new_hash,
            fresh.created_at,
        )
        .execute(&mut *tx)
        .await?;
        if changed.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query!("DELETE FROM identity.sessions WHERE owner_id = $1", owner.as_uuid())
            .execute(&mut *tx)
            .await?;
        sqlx::query!(
            "INSERT INTO identity.sessions (id, owner_id, created_at, expires_at, last_seen_at) VALUES ($1, $2, $3, $4, $5)",
            fresh.id,
            fresh.owner_id,
            fresh.created_at,
            fresh.expires_at,
            fresh.last_seen_at,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn upgrade_hash(&self, owner: OwnerId, old_hash: &str, new_hash: &str) -> Result<bool, StoreError> {
        let mut tx = self.scoped(owner).await?;
        let done = sqlx::query!(
            "UPDATE identity.accounts SET password_hash = $3, updated_at = now() WHERE id = $1 AND password_hash = $2",
            owner.as_uuid(),
            old_hash,
            new_hash,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn remember_source(
        &self,
        owner: OwnerId,
        source_hash: &[u8],
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.scoped(owner).await?;
        sqlx::query!(
            "INSERT INTO identity.known_sources (owner_id, source_hash, last_success_at) VALUES ($1, $2, $3)
             ON CONFLICT (owner_id, source_hash) DO UPDATE SET last_success_at = EXCLUDED.last_success_at",
            owner.as_uuid(),
            source_hash,
            at,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
