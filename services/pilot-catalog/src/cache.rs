//! A short-lived in-memory cache of decrypted webhook secrets, so VerifyWebhook —
//! on the hot path of every webhook — costs one indexed query per Pilot per TTL.
//! Writes in this process invalidate their Pilot at once; other replicas see the
//! change after at most the TTL.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use time::OffsetDateTime;
use uuid::Uuid;

use crate::webhook::SecretKey;

/// What VerifyWebhook needs about a Pilot.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Owner.
    pub owner_id: Uuid,
    /// Current version.
    pub version: i64,
    /// Accepts triggers.
    pub enabled: bool,
    /// Decrypted secrets with their end of validity (None = current).
    pub secrets: Vec<(SecretKey, Option<OffsetDateTime>)>,
}

impl Entry {
    /// The secrets valid at `now`.
    pub fn valid_keys(&self, now: OffsetDateTime) -> Vec<SecretKey> {
        self.secrets
            .iter()
            .filter(|(_, until)| until.is_none_or(|u| u > now))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// When an entry was read, and the entry (`None`: the Pilot does not exist).
type Cached = (Instant, Option<Arc<Entry>>);

/// The cache; `None` entries remember unknown Pilots too (so a flood of webhooks
/// to a made-up id does not become a flood of queries).
#[derive(Debug, Clone)]
pub struct WebhookCache {
    ttl: Duration,
    max_entries: usize,
    map: Arc<Mutex<HashMap<Uuid, Cached>>>,
}

impl WebhookCache {
    /// A cache keeping entries for `ttl` (zero disables it).
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, max_entries: 50_000, map: Arc::default() }
    }

    /// A fresh entry, or `None` when absent or stale. The inner option is `None`
    /// for a Pilot known not to exist.
    pub fn get(&self, pilot: Uuid) -> Option<Option<Arc<Entry>>> {
        if self.ttl.is_zero() {
            return None;
        }
        let map = self.map.lock().ok()?;
        let (at, entry) = map.get(&pilot)?;
        (at.elapsed() < self.ttl).then(|| entry.clone())
    }

    /// Stores what was just read from the database.
    pub fn put(&self, pilot: Uuid, entry: Option<Arc<Entry>>) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= self.max_entries {
                let ttl = self.ttl;
                map.retain(|_, (at, _)| at.elapsed() < ttl);
                if map.len() >= self.max_entries {
                    map.clear();
                }
            }
            map.insert(pilot, (Instant::now(), entry));
        }
    }

    /// Forgets every Pilot of an owner (account deletion).
    pub fn invalidate_owner(&self, owner: Uuid) {
        if let Ok(mut map) = self.map.lock() {
            map.retain(|_, (_, entry)| entry.as_ref().is_none_or(|e| e.owner_id != owner));
        }
    }

    /// Forgets a Pilot (after a write that changes what VerifyWebhook answers).
    pub fn invalidate(&self, pilot: Uuid) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(&pilot);
        }
    }
}
