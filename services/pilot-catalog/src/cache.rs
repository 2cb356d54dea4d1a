//! A short-lived in-memory cache of decrypted webhook secrets, so VerifyWebhook —
//! on the hot path of every webhook — costs one indexed query per Pilot per TTL.
//! Writes in this process invalidate their Pilot at once; other replicas see the
//! change after at most the TTL.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
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
    /// Bumped by every invalidation: an entry read from the database before an
    /// invalidation must not be stored after it (it may be stale).
    generation: Arc<AtomicU64>,
}

/// The cache generation a database read started in; see [`WebhookCache::put`].
#[derive(Debug, Clone, Copy)]
pub struct Generation(u64);

impl WebhookCache {
    /// A cache keeping entries for `ttl` (zero disables it).
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, max_entries: 50_000, map: Arc::default(), generation: Arc::default() }
    }

    /// Call before reading what will be [`WebhookCache::put`].
    pub fn generation(&self) -> Generation {
        Generation(self.generation.load(Ordering::SeqCst))
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

    /// Stores what was read from the database since `read`, unless something was
    /// invalidated meanwhile (then the read may be stale and is not cached).
    pub fn put(&self, pilot: Uuid, entry: Option<Arc<Entry>>, read: Generation) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut map) = self.map.lock() {
            if self.generation.load(Ordering::SeqCst) != read.0 {
                return;
            }
            if map.len() >= self.max_entries {
                let ttl = self.ttl;
                map.retain(|_, (at, _)| at.elapsed() < ttl);
            }
            if map.len() >= self.max_entries {
                // A flood of made-up ids must not push out real Pilots.
                map.retain(|_, (_, e)| e.is_some());
            }
            if map.len() >= self.max_entries {
                map.clear();
            }
            map.insert(pilot, (Instant::now(), entry));
        }
    }

    /// Forgets every Pilot of an owner (account deletion).
    pub fn invalidate_owner(&self, owner: Uuid) {
        if let Ok(mut map) = self.map.lock() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            map.retain(|_, (_, entry)| entry.as_ref().is_none_or(|e| e.owner_id != owner));
        }
    }

    /// Forgets a Pilot (after a write that changes what VerifyWebhook answers).
    pub fn invalidate(&self, pilot: Uuid) {
        if let Ok(mut map) = self.map.lock() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            map.remove(&pilot);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry() -> Option<Arc<Entry>> {
        Some(Arc::new(Entry { owner_id: Uuid::nil(), version: 1, enabled: true, secrets: vec![] }))
    }

    #[test]
    fn a_read_that_raced_an_invalidation_is_not_cached() {
        let cache = WebhookCache::new(Duration::from_secs(60));
        let pilot = Uuid::now_v7();
        let read = cache.generation();
        cache.invalidate(pilot); // e.g. DeletePilot committed during the read
        cache.put(pilot, entry(), read);
        assert!(cache.get(pilot).is_none(), "the possibly stale read was dropped");
        let read = cache.generation();
        cache.put(pilot, entry(), read);
        assert!(cache.get(pilot).is_some());
    }

    #[test]
    fn unknown_ids_cannot_evict_real_entries() {
        let mut cache = WebhookCache::new(Duration::from_secs(60));
        cache.max_entries = 10;
        let real = Uuid::now_v7();
        cache.put(real, entry(), cache.generation());
        for _ in 0..100 {
            cache.put(Uuid::now_v7(), None, cache.generation());
        }
        assert!(matches!(cache.get(real), Some(Some(_))), "the real Pilot stayed cached");
    }
}
