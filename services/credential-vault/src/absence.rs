//! Remembered absence: "this owner has none of these credentials", for a couple
//! of seconds, so runs of Pilots whose AI steps could use the owner's key (and
//! usually find none) do not cost a database transaction each. Only absence is
//! remembered — never a value, never a presence — so a disconnected credential is
//! gone at once as before. A credential stored through this replica is seen at
//! once too (the owner's entries are dropped, and a lookup that started before
//! the store cannot put its stale answer back: see [`Absence::remember`]); one
//! stored through another replica is seen within [`Absence::TTL`] (by the vault's
//! clock, which a test can move).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bizops_runtime::clock::{Clock, SystemClock};
use time::OffsetDateTime;
use uuid::Uuid;

/// Entries kept at most; beyond it the map starts over.
const MAX_ENTRIES: usize = 50_000;

/// The remembered absences of this replica.
pub struct Absence {
    map: Mutex<HashMap<(Uuid, Vec<String>), OffsetDateTime>>,
    generation: AtomicU64,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Absence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Absence")
            .field("map", &self.map)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Default for Absence {
    fn default() -> Self {
        Self::new(Arc::new(SystemClock))
    }
}

impl Absence {
    /// How long an absence is believed.
    pub const TTL: Duration = Duration::from_secs(2);

    /// No absences yet; their age is read from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { map: Mutex::default(), generation: AtomicU64::default(), clock }
    }

    /// The generation to pass to [`Absence::remember`]; read it before the lookup.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Whether `owner` was seen, less than [`Absence::TTL`] ago, to have none of `names`
    /// (not when the clock went back since: an absence is never believed longer).
    pub fn is_absent(&self, owner: Uuid, names: &[String]) -> bool {
        let Ok(map) = self.map.lock() else { return false };
        let now = self.clock.now();
        map.get(&(owner, names.to_vec())).is_some_and(|&at| at <= now && now - at < Self::TTL)
    }

    /// Remembers that a lookup that started at `generation` found none of `names`
    /// — unless a credential was stored since (then the answer may be stale).
    pub fn remember(&self, owner: Uuid, names: Vec<String>, generation: u64) {
        let Ok(mut map) = self.map.lock() else { return };
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert((owner, names), self.clock.now());
    }

    /// A credential of `owner` was stored: forget its absences.
    pub fn stored(&self, owner: Uuid) {
        let Ok(mut map) = self.map.lock() else { return };
        self.generation.fetch_add(1, Ordering::SeqCst);
        map.retain(|(o, _), _| *o != owner);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use bizops_runtime::clock::ShiftedClock;

    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn absence_is_remembered_per_owner_and_names_and_a_store_forgets_it() {
        let a = Absence::default();
        let (ann, bob) = (Uuid::now_v7(), Uuid::now_v7());
        assert!(!a.is_absent(ann, &names(&["anthropic"])));
        a.remember(ann, names(&["anthropic"]), a.generation());
        assert!(a.is_absent(ann, &names(&["anthropic"])));
        assert!(!a.is_absent(ann, &names(&["anthropic", "slack"])));
        assert!(!a.is_absent(bob, &names(&["anthropic"])));
        a.stored(ann);
        assert!(!a.is_absent(ann, &names(&["anthropic"])));
    }

    #[test]
    fn an_absence_is_believed_for_its_ttl_only() {
        let clock = ShiftedClock::default();
        let a = Absence::new(Arc::new(clock.clone()));
        let ann = Uuid::now_v7();
        a.remember(ann, names(&["anthropic"]), a.generation());
        clock.set_offset(time::Duration::try_from(Absence::TTL).unwrap() - time::Duration::seconds(1));
        assert!(a.is_absent(ann, &names(&["anthropic"])), "within the TTL");
        clock.set_offset(time::Duration::try_from(Absence::TTL).unwrap());
        assert!(!a.is_absent(ann, &names(&["anthropic"])), "past the TTL");
        // Remembered "later" than now (the clock went back): not believed.
        a.remember(ann, names(&["anthropic"]), a.generation());
        clock.set_offset(time::Duration::ZERO);
        assert!(!a.is_absent(ann, &names(&["anthropic"])), "the clock went back");
    }

    #[test]
    fn a_lookup_that_started_before_a_store_cannot_remember_its_stale_answer() {
        let a = Absence::default();
        let ann = Uuid::now_v7();
        let started = a.generation();
        a.stored(ann); // the credential was committed while the lookup ran
        a.remember(ann, names(&["anthropic"]), started);
        assert!(!a.is_absent(ann, &names(&["anthropic"])));
    }
}
