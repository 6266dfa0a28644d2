//! A per-worker cache of small files, bounded in bytes, revalidated on an interval.
//!
//! One cache per worker thread: `Rc` and `Cell`, no locks. Values are opaque (the server
//! stores a file with its response head pre-rendered). Each entry remembers when it was last
//! checked against the file system; [`Cache::get`] reports it `stale` after
//! [`REVALIDATE_AFTER_MS`], and the caller stats the file before using it again, so an edited
//! file is served fresh within that interval. Eviction is CLOCK (second chance): an entry
//! used since the last sweep survives one more.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

/// How long a cached file is served without looking at the file system again: an edit is
/// served within this.
pub(crate) const REVALIDATE_AFTER_MS: u64 = 1000;
/// Bytes charged per entry on top of its own weight (key, map slot, bookkeeping).
const ENTRY_OVERHEAD: usize = 128;

struct Slot<V> {
    value: Rc<V>,
    weight: usize,
    checked_ms: Cell<u64>,
    referenced: Cell<bool>,
}

pub struct Cache<V> {
    map: HashMap<Box<[u8]>, Slot<V>>,
    used: usize,
    budget: usize,
    /// Entries evicted so far (for the server's metrics).
    evicted: u64,
}

/// A cache hit; `stale` means revalidate before use.
pub struct Hit<'a, V> {
    pub value: &'a Rc<V>,
    pub stale: bool,
}

impl<V> Cache<V> {
    pub fn new(budget_bytes: usize) -> Cache<V> {
        Cache {
            map: HashMap::new(),
            used: 0,
            budget: budget_bytes,
            evicted: 0,
        }
    }

    pub fn get(&self, key: &[u8], now_ms: u64) -> Option<Hit<'_, V>> {
        let slot = self.map.get(key)?;
        slot.referenced.set(true);
        let stale = now_ms.saturating_sub(slot.checked_ms.get()) >= REVALIDATE_AFTER_MS;
        Some(Hit {
            value: &slot.value,
            stale,
        })
    }

    /// Records that the entry for `key` was found current at `now_ms`.
    pub fn revalidated(&self, key: &[u8], now_ms: u64) {
        if let Some(slot) = self.map.get(key) {
            slot.checked_ms.set(now_ms);
        }
    }

    /// Stores `value` (weighing `weight` bytes) under `key`, evicting as needed. A value
    /// heavier than a quarter of the budget is not stored.
    pub fn insert(&mut self, key: &[u8], value: Rc<V>, weight: usize, now_ms: u64) {
        self.remove(key);
        let weight = weight + key.len() + ENTRY_OVERHEAD;
        if weight > self.budget / 4 {
            return;
        }
        if self.used + weight > self.budget {
            self.evict(self.used + weight - self.budget);
        }
        self.used += weight;
        let slot = Slot {
            value,
            weight,
            checked_ms: Cell::new(now_ms),
            referenced: Cell::new(false),
        };
        self.map.insert(key.into(), slot);
    }

    /// Adds `extra` bytes to the weight of the entry for `key` if it holds `value` (its
    /// value grew: a file's compressed variants arrived), evicting others as needed.
    /// Returns false, changing nothing, when the entry is not there or would weigh more
    /// than a quarter of the budget (as [`Cache::insert`] refuses).
    pub fn grow(&mut self, key: &[u8], value: &Rc<V>, extra: usize) -> bool {
        let Some(slot) = self.map.get_mut(key) else {
            return false;
        };
        if !Rc::ptr_eq(&slot.value, value) || slot.weight + extra > self.budget / 4 {
            return false;
        }
        slot.weight += extra;
        // The entry itself is referenced: the sweep passes it over once.
        slot.referenced.set(true);
        self.used += extra;
        if self.used > self.budget {
            self.evict(self.used - self.budget);
        }
        true
    }

    pub fn remove(&mut self, key: &[u8]) {
        if let Some(slot) = self.map.remove(key) {
            self.used -= slot.weight;
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn used_bytes(&self) -> usize {
        self.used
    }

    /// Entries evicted to stay within the budget, so far.
    pub fn evictions(&self) -> u64 {
        self.evicted
    }

    /// Empties the cache (the eviction count stays).
    pub fn clear(&mut self) {
        self.map.clear();
        self.used = 0;
    }

    /// Frees at least `need` bytes, and an eighth of the budget more so that a full cache
    /// does not sweep on every insert. Unreferenced entries go first; at most two passes.
    fn evict(&mut self, need: usize) {
        let target = need + self.budget / 8;
        let mut freed = 0;
        let before = self.map.len();
        for _pass in 0..2 {
            self.map.retain(|_, slot| {
                if freed >= target || slot.referenced.replace(false) {
                    return true;
                }
                freed += slot.weight;
                false
            });
            if freed >= target {
                break;
            }
        }
        self.used -= freed;
        self.evicted += (before - self.map.len()) as u64;
    }
}

/// Longest path remembered as missing; a longer one is looked up every time.
const ABSENT_MAX_KEY: usize = 256;
/// Bytes the remembered missing paths may take (keys plus [`ENTRY_OVERHEAD`] each); past
/// it they are all forgotten at once, so a flood of distinct missing paths costs this much
/// and then what it would cost with no memory of them.
const ABSENT_MAX_BYTES: usize = 256 * 1024;

/// Paths found missing, remembered for `REVALIDATE_AFTER_MS` (1 s): a path asked for again
/// within that is answered 404 without a system call, as a cached file is answered without
/// one, and a file created there is served within the same interval as an edit.
#[derive(Default)]
pub struct Absent {
    map: HashMap<Box<[u8]>, u64>,
    bytes: usize,
}

impl Absent {
    /// Whether `key` was found missing less than `REVALIDATE_AFTER_MS` ago.
    pub fn contains(&self, key: &[u8], now_ms: u64) -> bool {
        self.map
            .get(key)
            .is_some_and(|&at| now_ms.saturating_sub(at) < REVALIDATE_AFTER_MS)
    }

    /// Records that `key` was found missing at `now_ms`.
    pub fn insert(&mut self, key: &[u8], now_ms: u64) {
        if key.len() > ABSENT_MAX_KEY {
            return;
        }
        if let Some(at) = self.map.get_mut(key) {
            *at = now_ms;
            return;
        }
        let weight = key.len() + ENTRY_OVERHEAD;
        if self.bytes + weight > ABSENT_MAX_BYTES {
            self.clear();
        }
        self.map.insert(key.into(), now_ms);
        self.bytes += weight;
    }

    /// Forgets every path (the cache is dropped).
    pub fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }

    /// Forgets `key` (it was found).
    pub fn remove(&mut self, key: &[u8]) {
        if self.map.remove(key).is_some() {
            self.bytes -= key.len() + ENTRY_OVERHEAD;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_paths_are_remembered_for_the_interval_then_looked_up_again() {
        let mut a = Absent::default();
        assert!(!a.contains(b"/x", 0));
        a.insert(b"/x", 1_000);
        assert!(a.contains(b"/x", 1_000));
        assert!(a.contains(b"/x", 1_000 + REVALIDATE_AFTER_MS - 1));
        assert!(!a.contains(b"/x", 1_000 + REVALIDATE_AFTER_MS));
        // Found missing again: remembered from then.
        a.insert(b"/x", 5_000);
        assert!(a.contains(b"/x", 5_500));
        a.remove(b"/x");
        assert!(!a.contains(b"/x", 5_500));
        assert_eq!(a.bytes, 0);
        // Dropped with the cache (SIGHUP).
        a.insert(b"/y", 5_000);
        a.clear();
        assert!(!a.contains(b"/y", 5_000));
        assert_eq!(a.bytes, 0);
    }

    #[test]
    fn absent_paths_stay_within_their_bound() {
        let mut a = Absent::default();
        a.insert(&[b'a'; ABSENT_MAX_KEY + 1], 0);
        assert!(!a.contains(&[b'a'; ABSENT_MAX_KEY + 1], 0));
        for i in 0..100_000u32 {
            a.insert(format!("/missing/{i}").as_bytes(), 0);
            assert!(a.bytes <= ABSENT_MAX_BYTES);
        }
        // The latest is remembered; the map was emptied as it filled.
        assert!(a.contains(b"/missing/99999", 0));
        assert!(a.map.len() < 100_000);
        assert_eq!(
            a.bytes,
            a.map
                .keys()
                .map(|k| k.len() + ENTRY_OVERHEAD)
                .sum::<usize>()
        );
    }

    #[test]
    fn hits_go_stale_after_the_interval() {
        let mut c = Cache::new(1 << 20);
        c.insert(b"/a", Rc::new(1), 10, 1000);
        assert!(!c.get(b"/a", 1000 + REVALIDATE_AFTER_MS - 1).unwrap().stale);
        assert!(c.get(b"/a", 1000 + REVALIDATE_AFTER_MS).unwrap().stale);
        c.revalidated(b"/a", 5000);
        assert!(!c.get(b"/a", 5001).unwrap().stale);
        assert!(c.get(b"/b", 0).is_none());
    }

    #[test]
    fn stays_within_budget_and_keeps_referenced_entries() {
        let budget = 100 * (100 + ENTRY_OVERHEAD + 8);
        let mut c = Cache::new(budget);
        for i in 0..1000u32 {
            let key = format!("/{i:07}");
            c.insert(key.as_bytes(), Rc::new(i), 100, 0);
            assert!(c.used_bytes() <= budget);
            // Keep touching one hot key: it must survive every sweep.
            c.insert_if_absent_for_test(b"/hot", 100);
            assert!(c.get(b"/hot", 0).is_some(), "hot key evicted at {i}");
        }
        assert!(c.len() > 10);
        assert!(
            c.evictions() >= 1000 - c.len() as u64 - 1,
            "{}",
            c.evictions()
        );
        c.clear();
        assert_eq!((c.len(), c.used_bytes()), (0, 0));
    }

    #[test]
    fn replaces_and_refuses_oversized() {
        let mut c = Cache::new(10_000);
        c.insert(b"/a", Rc::new(1), 100, 0);
        c.insert(b"/a", Rc::new(2), 200, 0);
        assert_eq!(**c.get(b"/a", 0).unwrap().value, 2);
        assert_eq!(c.used_bytes(), 200 + 2 + ENTRY_OVERHEAD);
        c.insert(b"/big", Rc::new(3), 5_000, 0);
        assert!(c.get(b"/big", 0).is_none());
        c.remove(b"/a");
        assert_eq!((c.len(), c.used_bytes()), (0, 0));
    }

    #[test]
    fn an_entry_that_grows_is_weighed_anew() {
        let mut c = Cache::new(10_000);
        let a = Rc::new(1);
        c.insert(b"/a", a.clone(), 100, 0);
        assert!(!c.grow(b"/a", &Rc::new(1), 1_000));
        assert_eq!(c.used_bytes(), 100 + 2 + ENTRY_OVERHEAD, "another value");
        assert!(c.grow(b"/a", &a, 1_000));
        assert_eq!(c.used_bytes(), 1_100 + 2 + ENTRY_OVERHEAD);
        assert!(!c.grow(b"/a", &a, 2_000), "past a quarter of the budget");
        assert_eq!(c.used_bytes(), 1_100 + 2 + ENTRY_OVERHEAD);
        // Growing past the budget evicts others.
        for i in 0..14u32 {
            c.insert(format!("/{i:03}").as_bytes(), Rc::new(i), 500, 0);
        }
        let used = c.used_bytes();
        assert!(c.grow(b"/a", &a, 1_000));
        assert!(
            c.used_bytes() <= 10_000 && c.len() < 15,
            "{used} -> {}",
            c.used_bytes()
        );
        c.remove(b"/a");
        assert!(c.used_bytes() < used);
    }

    impl Cache<u32> {
        fn insert_if_absent_for_test(&mut self, key: &[u8], weight: usize) {
            if self.get(key, 0).is_none() {
                self.insert(key, Rc::new(0), weight, 0);
            }
        }
    }
}
