//! A fresh database per test.

use anyhow::Context as _;
use sqlx::{
    AssertSqlSafe, Connection as _, Executor as _, PgConnection, migrate::Migrator, postgres::PgPoolOptions,
};

const ROLES_SQL: &str = include_str!("../../../scripts/sql/roles.sql");

/// A superuser connection URL for creating and dropping test databases.
pub fn admin_url() -> String {
    std::env::var("BIZOPS_TEST_ADMIN_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn with_database(url: &str, user: &str, db: &str) -> String {
    // Replace user and database in a postgres://user@host:port/db URL.
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host_and_db = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    let host = host_and_db.split_once('/').map(|(h, _)| h).unwrap_or(host_and_db);
    format!("postgres://{user}@{host}/{db}")
}

/// A database created for one test, owned by `bizops_migrator`, migrated, and
/// dropped (with `FORCE`) when the value is dropped.
pub struct TestDb {
    name: String,
    admin: String,
    keep: bool,
}

impl TestDb {
    /// Creates the roles (idempotent), a new database, and runs `migrator` as
    /// `bizops_migrator`.
    pub async fn create(migrator: &Migrator) -> anyhow::Result<Self> {
        let db = Self::empty().await?;
        let mut mig =
            PgConnection::connect(&db.url("bizops_migrator")).await.context("connecting as migrator")?;
        migrator.run(&mut mig).await.context("running migrations")?;
        mig.close().await.ok();
        Ok(db)
    }

    /// Creates the roles (idempotent) and a new, empty database owned by
    /// `bizops_migrator` (for tests that run a service's `migrate` themselves).
    pub async fn empty() -> anyhow::Result<Self> {
        let admin = admin_url();
        let name = format!("bizops_test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnection::connect(&admin).await.with_context(
            || "connecting to local Postgres as a superuser (is `scripts/dev-services` running?)",
        )?;
        conn.execute(ROLES_SQL).await.context("creating roles")?;
        conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name} OWNER bizops_migrator")))
            .await
            .context("creating the test database")?;
        conn.close().await.ok();
        Ok(Self { name, admin, keep: std::env::var_os("BIZOPS_TEST_KEEP_DB").is_some() })
    }

    /// Runs `migrator` as `bizops_migrator` (several services on one database).
    pub async fn migrate(&self, migrator: &Migrator) -> anyhow::Result<()> {
        let mut mig =
            PgConnection::connect(&self.url("bizops_migrator")).await.context("connecting as migrator")?;
        migrator.run(&mut mig).await.context("running migrations")?;
        mig.close().await.ok();
        Ok(())
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL for `role` on this database (local trust authentication; no TLS on
    /// the loopback, where it would only cost CPU).
    pub fn url(&self, role: &str) -> String {
        format!("{}?sslmode=disable", with_database(&self.admin, role, &self.name))
    }

    /// The `BIZOPS_DATABASE__*` variables of service `svc` on this database: its
    /// service role, its system role and the migrator.
    pub fn env(&self, svc: &str) -> Vec<(String, String)> {
        vec![
            ("BIZOPS_DATABASE__URL".into(), self.url(&format!("bizops_{svc}"))),
            ("BIZOPS_DATABASE__SYSTEM_URL".into(), self.url(&format!("bizops_{svc}_system"))),
            ("BIZOPS_DATABASE__MIGRATE_URL".into(), self.url("bizops_migrator")),
        ]
    }

    /// A superuser pool on this database, for assertions that must see every row.
    pub async fn superuser_pool(&self) -> anyhow::Result<sqlx::PgPool> {
        Ok(PgPoolOptions::new()
            .max_connections(2)
            .connect(&with_database(&self.admin, "postgres", &self.name))
            .await?)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("keeping test database {}", self.name);
            return;
        }
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop may run inside a Tokio runtime; use a thread with its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let _ = conn
                        .execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                        .await;
                }
            });
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn rewrites_user_and_database() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "bizops_x", "db1"),
            "postgres://bizops_x@127.0.0.1:5432/db1"
        );
        assert_eq!(with_database("postgres://localhost/postgres", "u", "d"), "postgres://u@localhost/d");
    }
}
