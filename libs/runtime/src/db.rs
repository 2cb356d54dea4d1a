//! Postgres pools per role (ARCHITECTURE.md, Isolation) and migrations.

use anyhow::Context as _;
use bizops_config::{DatabaseConfig, DbRole};
use secrecy::ExposeSecret as _;
use sqlx::{
    Connection as _,
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
};

/// A pool for `role` of service `svc` (`"identity"`, `"catalog"`, …), sized from the
/// configuration and tagged with the service's name as `application_name`.
pub async fn pool(db: &DatabaseConfig, svc: &'static str, role: DbRole) -> anyhow::Result<sqlx::PgPool> {
    let url = db.url(svc, role);
    let options: PgConnectOptions = url.expose_secret().parse().context("database URL is not valid")?;
    let max = match role {
        DbRole::Service => db.max_connections,
        DbRole::System => db.system_max_connections,
        DbRole::Migrator => 1,
    };
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(db.acquire_timeout)
        .connect_with(options.application_name(svc))
        .await
        .with_context(|| format!("connecting to Postgres as the {role:?} role of {svc}"))
}

/// Applies `migrator` as the migrator role.
pub async fn migrate(db: &DatabaseConfig, svc: &'static str, migrator: &Migrator) -> anyhow::Result<()> {
    let url = db.url(svc, DbRole::Migrator);
    let mut conn =
        sqlx::PgConnection::connect(url.expose_secret()).await.context("connecting as the migrator role")?;
    migrator.run(&mut conn).await.with_context(|| format!("running {svc} migrations"))?;
    conn.close().await.ok();
    Ok(())
}
