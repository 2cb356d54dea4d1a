//! Counting an owner's rows in every table of every schema.

use std::collections::BTreeMap;

use bizops_testkit::TestDb;
use uuid::Uuid;

/// Tables that hold no owner's data, so have no `owner_id` column: migration
/// bookkeeping, the login throttle (keyed by a keyed hash of the address, deleted
/// by the account deletion itself), the scheduler's shared high-water mark, the
/// vault's key checks, rotation jobs and settings. A new table without
/// `owner_id` fails the test until it is listed here (or given the column).
const OWNERLESS: &[&str] = &[
    "catalog._sqlx_migrations",
    "catalog.webhook_key_checks",
    "executor._sqlx_migrations",
    "executor.scheduler_state",
    "identity._sqlx_migrations",
    "identity.login_failures",
    "vault._sqlx_migrations",
    "vault.kek_checks",
    "vault.rotation_jobs",
    "vault.settings",
];

/// Rows that belong to `owner`, per table, across the four schemas. Each table
/// is read as its service's system role (which bypasses row-level security)
/// where that role may read it, else as the superuser.
pub async fn owner_rows(db: &TestDb, owner: Uuid) -> BTreeMap<String, i64> {
    let superuser = db.superuser_pool().await.unwrap();
    let tables: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT t.table_schema::text, t.table_name::text,
                EXISTS (SELECT 1 FROM information_schema.columns c
                        WHERE c.table_schema = t.table_schema AND c.table_name = t.table_name
                          AND c.column_name = 'owner_id')
         FROM information_schema.tables t
         WHERE t.table_schema IN ('identity', 'catalog', 'vault', 'executor') AND t.table_type = 'BASE TABLE'
         ORDER BY 1, 2",
    )
    .fetch_all(&superuser)
    .await
    .unwrap();
    assert!(tables.len() >= 15, "the schemas are migrated: {tables:?}");
    let mut rows = BTreeMap::new();
    for (schema, table, has_owner) in tables {
        let name = format!("{schema}.{table}");
        let column = match (has_owner, name.as_str()) {
            (_, "identity.accounts") => "id",
            (true, _) => "owner_id",
            (false, _) => {
                assert!(
                    OWNERLESS.contains(&name.as_str()),
                    "{name} has no owner_id column; is it owner data?"
                );
                continue;
            }
        };
        let system = format!("bizops_{schema}_system");
        let readable: bool = sqlx::query_scalar("SELECT has_table_privilege($1, $2, 'SELECT')")
            .bind(&system)
            .bind(&name)
            .fetch_one(&superuser)
            .await
            .unwrap();
        let pool = if readable {
            sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&db.url(&system)).await.unwrap()
        } else {
            superuser.clone()
        };
        // Names from information_schema, quoted.
        let sql = format!("SELECT count(*) FROM \"{schema}\".\"{table}\" WHERE \"{column}\" = $1");
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(owner).fetch_one(&pool).await.unwrap();
        rows.insert(name, n);
    }
    rows
}

pub fn nonzero(rows: &BTreeMap<String, i64>) -> Vec<(&String, &i64)> {
    rows.iter().filter(|(_, n)| **n > 0).collect()
}
