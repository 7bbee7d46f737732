//! A bounded table of per-peer UDP sessions that no one source or network can monopolise.
//!
//! A UDP session costs an attacker one datagram with a forged source address, and costs us a
//! slot for the whole session. Three rules keep the table useful under such a flood:
//!
//! 1. **Per source**: at most `per_source` sessions per [`Source`] (an IPv4 address or an IPv6
//!    /64 — an IPv6 host picks addresses from its /64 at will).
//! 2. **In total**: at most `total` sessions.
//! 3. **Room for newcomers**: when the table is full, a peer from a [`Network`] (IPv4 /24,
//!    IPv6 /48) that holds fewer sessions than the network holding the most takes the place of
//!    that network's oldest session. So a table filled from a few networks still admits every
//!    other network, and an attacker must spread over as many networks as it wants slots: with
//!    addresses in N networks it can hold at most about `total / (N + 1)` … `total` sessions
//!    only while no other network asks, and any newcomer network pushes it back evenly.
//!
//! Sessions are keyed by generation-tagged [`Slots`] keys, so a key (and a timer named by it)
//! of an ended or evicted session finds nothing, even when its slot is reused.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;

use crate::slots::Slots;
use crate::source::{Network, Source};

/// One live session and whom it is for.
#[derive(Debug, PartialEq, Eq)]
pub struct Session<T> {
    pub peer: SocketAddr,
    pub state: T,
}

/// The sessions of one network, oldest first. Keys of sessions that ended are dropped lazily
/// (when they reach the front, or when they outnumber the live ones).
#[derive(Default)]
struct NetworkSessions {
    live: usize,
    keys: VecDeque<usize>,
}

/// Why a peer got no session.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its source holds `per_source` sessions already.
    SourceFull,
    /// The table is full and the peer's network holds as many sessions as any other.
    TableFull,
}

/// The outcome of [`Sessions::admit`].
#[derive(Debug, PartialEq, Eq)]
pub enum Admission<T> {
    /// A new session under this key; `evicted` is the session that ended to make room.
    Admitted {
        key: usize,
        evicted: Option<Session<T>>,
    },
    Refused(Refusal),
}

/// Caps of a session table.
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    pub total: usize,
    pub per_source: usize,
}

pub struct Sessions<T> {
    slots: Slots<Session<T>>,
    by_peer: HashMap<SocketAddr, usize>,
    by_source: HashMap<Source, usize>,
    by_network: HashMap<Network, NetworkSessions>,
    /// Networks ordered by live sessions, to find the one holding the most in O(log n).
    largest: BTreeSet<(usize, Network)>,
}

impl<T> Default for Sessions<T> {
    fn default() -> Self {
        Sessions {
            slots: Slots::default(),
            by_peer: HashMap::new(),
            by_source: HashMap::new(),
            by_network: HashMap::new(),
            largest: BTreeSet::new(),
        }
    }
}

impl<T> Sessions<T> {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn has_peer(&self, peer: SocketAddr) -> bool {
        self.by_peer.contains_key(&peer)
    }

    pub fn contains(&self, key: usize) -> bool {
        self.slots.contains(key)
    }

    pub fn get(&self, key: usize) -> Option<&Session<T>> {
        self.slots.get(key)
    }

    pub fn get_mut(&mut self, key: usize) -> Option<&mut Session<T>> {
        self.slots.get_mut(key)
    }

    /// Every live key (a copy, so sessions may end while the caller walks it).
    pub fn keys(&self) -> Vec<usize> {
        self.slots.keys()
    }

    /// Opens a session for `peer` (which has none yet) if the caps allow, evicting the oldest
    /// session of the largest network if that is what makes room.
    pub fn admit(&mut self, peer: SocketAddr, state: T, caps: Caps) -> Admission<T> {
        let source = Source::of(peer.ip());
        if self.by_source.get(&source).copied().unwrap_or(0) >= caps.per_source {
            return Admission::Refused(Refusal::SourceFull);
        }
        let mut evicted = None;
        if self.len() >= caps.total {
            let network = Network::of(peer.ip());
            let own = self.by_network.get(&network).map_or(0, |n| n.live);
            match self.largest.last().copied() {
                Some((most, crowded)) if crowded != network && own + 1 < most => {
                    evicted = self.evict_oldest(crowded);
                }
                _ => return Admission::Refused(Refusal::TableFull),
            }
            if evicted.is_none() {
                return Admission::Refused(Refusal::TableFull);
            }
        }
        let Some(key) = self.slots.insert(Session { peer, state }) else {
            return Admission::Refused(Refusal::TableFull);
        };
        self.by_peer.insert(peer, key);
        *self.by_source.entry(source).or_insert(0) += 1;
        let network = Network::of(peer.ip());
        let sessions = self.by_network.entry(network).or_default();
        sessions.keys.push_back(key);
        Self::recount(&mut self.largest, network, sessions, 1);
        Admission::Admitted { key, evicted }
    }

    /// Ends session `key`; returns it if it was live.
    pub fn remove(&mut self, key: usize) -> Option<Session<T>> {
        let session = self.slots.remove(key)?;
        self.by_peer.remove(&session.peer);
        let source = Source::of(session.peer.ip());
        if let Some(count) = self.by_source.get_mut(&source) {
            *count -= 1;
            if *count == 0 {
                self.by_source.remove(&source);
            }
        }
        let network = Network::of(session.peer.ip());
        if let Some(sessions) = self.by_network.get_mut(&network) {
            Self::recount(&mut self.largest, network, sessions, -1);
            if sessions.live == 0 {
                self.by_network.remove(&network);
            } else {
                self.tidy(network);
            }
        }
        Some(session)
    }

    /// Ends the oldest live session of `network`; returns it.
    fn evict_oldest(&mut self, network: Network) -> Option<Session<T>> {
        let sessions = self.by_network.get_mut(&network)?;
        while let Some(key) = sessions.keys.pop_front() {
            if self.slots.contains(key) {
                return self.remove(key);
            }
        }
        None
    }

    /// Drops ended keys from the front of a network's queue, and compacts the queue when ended
    /// keys outnumber live ones, so its length stays within twice the live sessions.
    fn tidy(&mut self, network: Network) {
        let Some(sessions) = self.by_network.get_mut(&network) else {
            return;
        };
        while sessions
            .keys
            .front()
            .is_some_and(|&key| !self.slots.contains(key))
        {
            sessions.keys.pop_front();
        }
        if sessions.keys.len() > 2 * sessions.live + 16 {
            let slots = &self.slots;
            sessions.keys.retain(|&key| slots.contains(key));
        }
    }

    /// Moves `network` in the ordering after its live count changes by `delta`.
    fn recount(
        largest: &mut BTreeSet<(usize, Network)>,
        network: Network,
        sessions: &mut NetworkSessions,
        delta: isize,
    ) {
        largest.remove(&(sessions.live, network));
        sessions.live = sessions.live.saturating_add_signed(delta);
        if sessions.live > 0 {
            largest.insert((sessions.live, network));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn admitted<T: std::fmt::Debug>(admission: Admission<T>) -> (usize, Option<SocketAddr>) {
        match admission {
            Admission::Admitted { key, evicted } => (key, evicted.map(|session| session.peer)),
            refused => panic!("refused: {refused:?}"),
        }
    }

    #[test]
    fn each_source_has_its_cap_and_ipv6_counts_by_64() {
        let caps = Caps {
            total: 100,
            per_source: 2,
        };
        let mut table = Sessions::default();
        admitted(table.admit(peer("192.0.2.1:1"), (), caps));
        admitted(table.admit(peer("192.0.2.1:2"), (), caps));
        assert_eq!(
            table.admit(peer("192.0.2.1:3"), (), caps),
            Admission::Refused(Refusal::SourceFull)
        );
        admitted(table.admit(peer("[2001:db8:0:1::1]:1"), (), caps));
        admitted(table.admit(peer("[2001:db8:0:1::2]:1"), (), caps));
        assert_eq!(
            table.admit(peer("[2001:db8:0:1::3]:1"), (), caps),
            Admission::Refused(Refusal::SourceFull),
            "another address of the same /64"
        );
    }

    #[test]
    fn a_full_table_makes_room_for_a_new_network_at_the_expense_of_the_largest() {
        let caps = Caps {
            total: 6,
            per_source: 3,
        };
        let mut table = Sessions::default();
        // One /24 fills the table from two addresses.
        let mut flood = Vec::new();
        for (host, port) in [(10, 1), (10, 2), (10, 3), (11, 1), (11, 2), (11, 3)] {
            let p = peer(&format!("127.0.0.{host}:{port}"));
            flood.push(admitted(table.admit(p, (), caps)).0);
        }
        // More from the same network: refused, nothing evicted.
        assert_eq!(
            table.admit(peer("127.0.0.12:1"), (), caps),
            Admission::Refused(Refusal::TableFull)
        );
        // A newcomer from another network takes the place of the flood's oldest session.
        let (key, evicted) = admitted(table.admit(peer("127.0.1.1:1"), (), caps));
        assert_eq!(evicted, Some(peer("127.0.0.10:1")));
        assert!(!table.contains(flood[0]), "the evicted key is stale");
        assert!(table.contains(key));
        assert_eq!(table.len(), 6);
        // Until the networks are even, each newcomer network pushes the largest back.
        admitted(table.admit(peer("127.0.2.1:1"), (), caps));
        admitted(table.admit(peer("127.0.3.1:1"), (), caps));
        let counts: Vec<usize> = table.largest.iter().map(|(n, _)| *n).collect();
        assert_eq!(counts, vec![1, 1, 1, 3]);
        assert_eq!(table.len(), 6);
    }

    #[test]
    fn removing_sessions_keeps_every_index_consistent() {
        let caps = Caps {
            total: 1000,
            per_source: 1000,
        };
        let mut table = Sessions::default();
        let keys: Vec<usize> = (0..300)
            .map(|n| {
                let p = peer(&format!("198.51.{}.{}:{}", n % 3, n % 7, 1000 + n));
                admitted(table.admit(p, n, caps)).0
            })
            .collect();
        // End them out of order.
        for key in keys.iter().step_by(2).chain(keys.iter().skip(1).step_by(2)) {
            assert!(table.remove(*key).is_some());
            assert!(table.remove(*key).is_none(), "twice is a no-op");
        }
        assert!(table.is_empty());
        assert!(table.by_peer.is_empty() && table.by_source.is_empty());
        assert!(table.by_network.is_empty() && table.largest.is_empty());
    }
}
