//! A slab whose keys carry a generation.
//!
//! The reactor files every socket under a `mio::Token` and finds its owner with an O(1) slab
//! lookup. Slab slots are reused, and the kernel cannot withdraw an event that is already in the
//! batch `epoll_wait` returned (mio #219): if connection A closes and connection B is accepted
//! into A's slot during the same batch, A's leftover event would reach B. So each key carries the
//! generation of the value it was issued for; a key from an earlier generation finds nothing.
//!
//! The same type keys the per-peer sessions of the UDP services, so their timers go stale the
//! same way when a session ends.

use slab::Slab;

/// Low half of a key: the slab index. High half: the generation (never 0, so no key is 0 and
/// small numbers stay free for fixed tokens such as the signal source).
const INDEX_BITS: u32 = usize::BITS / 2;
const INDEX_MASK: usize = (1 << INDEX_BITS) - 1;
const GENERATION_MASK: usize = usize::MAX >> INDEX_BITS;

/// Values stored under generation-tagged keys.
pub struct Slots<T> {
    slab: Slab<Slot<T>>,
    /// The generation the next inserted value gets; wraps, skipping 0.
    next_generation: usize,
}

struct Slot<T> {
    generation: usize,
    value: T,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            slab: Slab::new(),
            next_generation: 1,
        }
    }
}

impl<T> Slots<T> {
    /// Stores the value `make` builds from its key. The key is known before the value exists,
    /// because registering a socket with mio needs the token first. Fails with `make`'s error
    /// (nothing is stored), or with `None` when the index space is exhausted.
    pub fn insert_with<E>(
        &mut self,
        make: impl FnOnce(usize) -> Result<T, E>,
    ) -> Result<Option<usize>, E> {
        let entry = self.slab.vacant_entry();
        let index = entry.key();
        if index > INDEX_MASK {
            return Ok(None);
        }
        let generation = self.next_generation;
        self.next_generation = match (generation + 1) & GENERATION_MASK {
            0 => 1,
            next => next,
        };
        let key = (generation << INDEX_BITS) | index;
        let value = make(key)?;
        entry.insert(Slot { generation, value });
        Ok(Some(key))
    }

    /// Stores a value; `None` when the index space is exhausted.
    pub fn insert(&mut self, value: T) -> Option<usize> {
        self.insert_with(|_| Ok::<T, std::convert::Infallible>(value))
            .unwrap_or_else(|never| match never {})
    }

    pub fn get(&self, key: usize) -> Option<&T> {
        let (index, generation) = split(key);
        self.slab
            .get(index)
            .filter(|slot| slot.generation == generation)
            .map(|slot| &slot.value)
    }

    pub fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        let (index, generation) = split(key);
        self.slab
            .get_mut(index)
            .filter(|slot| slot.generation == generation)
            .map(|slot| &mut slot.value)
    }

    pub fn contains(&self, key: usize) -> bool {
        self.get(key).is_some()
    }

    /// Removes and returns the value, if `key` is still its key.
    pub fn remove(&mut self, key: usize) -> Option<T> {
        let (index, _) = split(key);
        self.get(key)?;
        Some(self.slab.remove(index).value)
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Every live key, e.g. to visit all connections at shutdown (a copy, so the caller may
    /// remove while it walks).
    pub fn keys(&self) -> Vec<usize> {
        self.slab
            .iter()
            .map(|(index, slot)| (slot.generation << INDEX_BITS) | index)
            .collect()
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slab.iter_mut().map(|(_, slot)| &mut slot.value)
    }
}

/// A key as `#index.generation`, for log lines.
#[derive(Clone, Copy, Debug)]
pub struct KeyLabel(pub usize);

impl std::fmt::Display for KeyLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (index, generation) = split(self.0);
        write!(f, "#{index}.{generation}")
    }
}

fn split(key: usize) -> (usize, usize) {
    (key & INDEX_MASK, key >> INDEX_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_slot_does_not_answer_to_the_old_key() {
        let mut slots = Slots::default();
        let old = slots.insert("A").unwrap();
        assert_eq!(slots.remove(old), Some("A"));
        let new = slots.insert("B").unwrap();
        assert_eq!(split(old).0, split(new).0, "the slot is reused");
        assert_ne!(old, new);
        assert_eq!(slots.get(old), None);
        assert_eq!(slots.remove(old), None);
        assert_eq!(slots.get(new), Some(&"B"));
    }

    #[test]
    fn keys_are_never_zero_and_never_small() {
        let mut slots = Slots::default();
        for _ in 0..10 {
            let key = slots.insert(()).unwrap();
            assert!(key > INDEX_MASK);
        }
    }

    #[test]
    fn generation_wraps_past_zero() {
        let mut slots: Slots<()> = Slots {
            next_generation: GENERATION_MASK,
            ..Slots::default()
        };
        let last = slots.insert(()).unwrap();
        slots.remove(last);
        let wrapped = slots.insert(()).unwrap();
        assert_eq!(split(wrapped).1, 1);
        assert!(slots.insert_with(|_| Err::<(), _>("refused")).is_err());
        assert_eq!(slots.len(), 1);
    }
}
