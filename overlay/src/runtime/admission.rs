//! Connections that are not established yet — TLS handshakes on a listener, logins on
//! the local client port — bounded per source address and in all, without letting
//! idle or slow ones keep newcomers out (hardening issue, defects 4 and 5).
//!
//! A newcomer is always admitted. If its address already has `per_address`
//! connections pending, one of *those* is closed (an address only ever pushes out its
//! own); if the table is full, one pending connection is closed. The one closed is the
//! oldest that has not sent a byte yet, else the oldest: a real peer speaks at once
//! (a TLS ClientHello, a stream header), so sockets held open in silence go first and
//! handshakes in progress are left alone. An attacker holding sockets open therefore
//! delays nobody, and one that trickles bytes needs ever more addresses.
//!
//! The table is plain state; the caller keeps the tasks and closes what it is told.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// What to do for a new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The new connection's id; report its end with [`PendingTable::done`].
    pub id: u64,
    /// Pending connections to close to make room.
    pub evict: Vec<u64>,
}

/// Pending connections by arrival order.
#[derive(Debug)]
pub struct PendingTable {
    max: usize,
    per_address: usize,
    /// Source address, and whether it has spoken yet.
    order: BTreeMap<u64, (IpAddr, bool)>,
    per_ip: HashMap<IpAddr, usize>,
    next: u64,
}

impl PendingTable {
    /// At most `max` pending connections, `per_address` from one address.
    pub fn new(max: usize, per_address: usize) -> PendingTable {
        PendingTable {
            max: max.max(1),
            per_address: per_address.max(1),
            order: BTreeMap::new(),
            per_ip: HashMap::new(),
            next: 0,
        }
    }

    /// A connection from `ip` arrived.
    pub fn arrive(&mut self, ip: IpAddr) -> Admitted {
        self.next += 1;
        let id = self.next;
        let mut evict = Vec::new();
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= self.per_address
            && let Some(old) = self.victim(|a| a == ip)
        {
            self.done(old);
            evict.push(old);
        }
        if self.order.len() >= self.max
            && let Some(old) = self.victim(|_| true)
        {
            self.done(old);
            evict.push(old);
        }
        self.order.insert(id, (ip, false));
        *self.per_ip.entry(ip).or_default() += 1;
        Admitted { id, evict }
    }

    /// The connection to close among those whose address passes `from`: the oldest
    /// silent one, else the oldest.
    fn victim(&self, from: impl Fn(IpAddr) -> bool) -> Option<u64> {
        let mut oldest = None;
        for (id, (ip, spoke)) in &self.order {
            if !from(*ip) {
                continue;
            }
            if !spoke {
                return Some(*id);
            }
            oldest.get_or_insert(*id);
        }
        oldest
    }

    /// Connection `id` has sent its first bytes.
    pub fn spoke(&mut self, id: u64) {
        if let Some((_, spoke)) = self.order.get_mut(&id) {
            *spoke = true;
        }
    }

    /// Connection `id` is established, refused or closed; whether it was pending
    /// (`false` once it has been evicted).
    pub fn done(&mut self, id: u64) -> bool {
        let Some((ip, _)) = self.order.remove(&id) else {
            return false;
        };
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
        true
    }

    /// Pending connections.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether none is pending.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Pending connections from `ip`.
    pub fn from(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn an_address_over_its_share_pushes_out_only_its_own_oldest() {
        let mut t = PendingTable::new(64, 4);
        let victim = t.arrive(ip(9)).id;
        let first: Vec<u64> = (0..4).map(|_| t.arrive(ip(1)).id).collect();
        for i in 0..100 {
            let a = t.arrive(ip(1));
            assert_eq!(a.evict.len(), 1, "round {i}");
            assert_ne!(a.evict[0], victim);
            assert!(t.from(ip(1)) <= 4);
        }
        assert!(
            first.iter().all(|id| !t.done(*id)),
            "the oldest were evicted"
        );
        assert!(t.done(victim), "another address is untouched");
    }

    #[test]
    fn silent_connections_go_before_handshakes_in_progress() {
        let mut t = PendingTable::new(4, 4);
        let talking: Vec<u64> = (0..2).map(|_| t.arrive(ip(1)).id).collect();
        for id in &talking {
            t.spoke(*id);
        }
        let silent = t.arrive(ip(1)).id;
        let _ = t.arrive(ip(1));
        // Full: a newcomer closes the oldest silent one, not a handshake under way.
        assert_eq!(t.arrive(ip(2)).evict, vec![silent]);
        assert!(t.done(talking[0]) && t.done(talking[1]));
    }

    #[test]
    fn a_full_table_admits_a_newcomer_by_closing_the_oldest() {
        let mut t = PendingTable::new(8, 2);
        let ids: Vec<u64> = (0..8).map(|i| t.arrive(ip(i)).id).collect();
        let a = t.arrive(ip(100));
        assert_eq!(a.evict, vec![ids[0]]);
        assert_eq!(t.len(), 8);
        assert!(t.done(a.id));
        assert!(!t.done(a.id), "done once");
        assert_eq!(t.len(), 7);
    }
}
