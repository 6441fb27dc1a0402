//! JID → destination lists (XEP-0415 "Resolving an XMPP Address"), as a sans-IO state
//! machine: it says which bare JIDs to fetch, is fed the XMPP-LOCATION values, follows
//! address forwards up to a depth limit without looping, removes duplicate destination
//! lists and orders the routes by priority (lowest first).

use std::collections::{HashSet, VecDeque};

use xor_overlay::id::{NodeId, ResourceId};
use xor_overlay::node::RequestError;
use xor_overlay::wire::{Decode, Destination, StoredData, StoredDataValue};

use crate::jid::Jid;
use crate::kind::resource_of;
use crate::location::XmppLocation;

/// One way to reach one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The user whose record named the device (the target, or a forward's target).
    pub jid: Jid,
    /// The device (the destination list's last entry).
    pub node: NodeId,
    /// The destination list to AppAttach through.
    pub destinations: Vec<Destination>,
    /// Lower first.
    pub priority: u8,
}

/// Why a JID did not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No device of the user (or of any address it forwards to) is registered.
    #[error("{0} is not registered in the overlay")]
    NotFound(String),
    /// Fetching failed (no route, timeout, ...).
    #[error("lookup of {jid} failed: {why}")]
    Fetch {
        /// The JID fetched.
        jid: String,
        /// What went wrong.
        why: RequestError,
    },
}

/// What the resolver needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Fetch every XMPP-LOCATION entry at this resource (no dictionary keys: all of
    /// them) and call [`Resolver::on_values`] or [`Resolver::on_error`].
    Fetch(Jid, ResourceId),
    /// Waiting for fetches in flight.
    Wait,
    /// Finished.
    Done(Result<Vec<Route>, ResolveError>),
}

/// Resolution of one JID.
#[derive(Debug, Clone)]
pub struct Resolver {
    target: Jid,
    queue: VecDeque<(Jid, usize)>,
    seen: HashSet<String>,
    routes: Vec<Route>,
    in_flight: usize,
    max_depth: usize,
    error: Option<ResolveError>,
    depths: Vec<(String, usize)>,
}

impl Resolver {
    /// Resolves `jid` (its bare form), following at most `max_depth` forwards.
    pub fn new(jid: &Jid, max_depth: usize) -> Resolver {
        let bare = jid.bare();
        let mut seen = HashSet::new();
        seen.insert(bare.bare_str());
        Resolver {
            target: bare.clone(),
            queue: VecDeque::from([(bare, 0)]),
            seen,
            routes: Vec::new(),
            in_flight: 0,
            max_depth,
            error: None,
            depths: Vec::new(),
        }
    }

    /// The next thing to do.
    pub fn step(&mut self) -> Step {
        if let Some((jid, depth)) = self.queue.pop_front() {
            self.in_flight += 1;
            let r = resource_of(&jid);
            self.depths.push((jid.bare_str(), depth));
            return Step::Fetch(jid, r);
        }
        if self.in_flight > 0 {
            return Step::Wait;
        }
        let mut routes = self.routes.clone();
        routes.sort_by_key(|r| (r.priority, r.node));
        if routes.is_empty() {
            return Step::Done(Err(self
                .error
                .clone()
                .unwrap_or_else(|| ResolveError::NotFound(self.target.bare_str()))));
        }
        Step::Done(Ok(routes))
    }

    /// The XMPP-LOCATION values fetched for `jid`.
    pub fn on_values(&mut self, jid: &Jid, values: &[StoredData]) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let depth = self.depth_of(jid);
        for v in values {
            let StoredDataValue::Dictionary { value, .. } = &v.value else {
                continue;
            };
            if !value.exists {
                continue;
            }
            match XmppLocation::decode(&value.value) {
                Ok(XmppLocation::Route {
                    priority,
                    destinations,
                }) => {
                    let Some(node) = destinations.last().and_then(Destination::node) else {
                        continue;
                    };
                    if !self.routes.iter().any(|r| r.destinations == destinations) {
                        self.routes.push(Route {
                            jid: jid.bare(),
                            node,
                            destinations,
                            priority,
                        });
                    }
                }
                Ok(XmppLocation::Address(to)) => {
                    // The stored address is prepared by its storer; prepare it again so a
                    // sloppy record cannot make us loop under two spellings.
                    let Ok(to) = Jid::parse(&to) else { continue };
                    let to = to.bare();
                    if depth < self.max_depth && self.seen.insert(to.bare_str()) {
                        self.queue.push_back((to, depth + 1));
                    }
                }
                Ok(XmppLocation::Unknown { .. }) | Err(_) => {}
            }
        }
    }

    /// Fetching `jid` failed.
    pub fn on_error(&mut self, jid: &Jid, why: RequestError) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.error.get_or_insert(ResolveError::Fetch {
            jid: jid.bare_str(),
            why,
        });
    }

    fn depth_of(&self, jid: &Jid) -> usize {
        let name = jid.bare_str();
        self.depths
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, d)| *d)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use xor_overlay::wire::{DataValue, Encode, Signature};

    use super::*;

    fn value(node: u128, loc: XmppLocation) -> StoredData {
        StoredData {
            storage_time: 1,
            lifetime: 60,
            value: StoredDataValue::Dictionary {
                key: Bytes::copy_from_slice(&NodeId(node).to_be_bytes()),
                value: DataValue::new(loc.to_bytes().unwrap()),
            },
            signature: Signature::anonymous(),
        }
    }

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    fn fetch(r: &mut Resolver) -> Jid {
        match r.step() {
            Step::Fetch(j, res) => {
                assert_eq!(res, resource_of(&j));
                j
            }
            other => panic!("expected a fetch, got {other:?}"),
        }
    }

    #[test]
    fn routes_are_deduplicated_and_ordered_by_priority() {
        let mut r = Resolver::new(&jid("juliet@capulet.lit/balcony"), 4);
        let j = fetch(&mut r);
        assert_eq!(j.to_string(), "juliet@capulet.lit");
        r.on_values(
            &j,
            &[
                value(2, XmppLocation::device(NodeId(2), 9)),
                value(1, XmppLocation::device(NodeId(1), 3)),
                value(3, XmppLocation::device(NodeId(2), 9)),
            ],
        );
        let Step::Done(Ok(routes)) = r.step() else {
            panic!()
        };
        assert_eq!(
            routes
                .iter()
                .map(|r| (r.node, r.priority))
                .collect::<Vec<_>>(),
            vec![(NodeId(1), 3), (NodeId(2), 9)]
        );
    }

    #[test]
    fn forwards_are_followed_without_looping() {
        let mut r = Resolver::new(&jid("juliet@capulet.lit"), 4);
        let j = fetch(&mut r);
        r.on_values(
            &j,
            &[value(1, XmppLocation::Address("Romeo@Montague.lit".into()))],
        );
        let romeo = fetch(&mut r);
        assert_eq!(romeo.to_string(), "romeo@montague.lit");
        // Romeo forwards back to Juliet: not fetched again.
        r.on_values(
            &romeo,
            &[
                value(5, XmppLocation::device(NodeId(5), 0)),
                value(6, XmppLocation::Address("juliet@capulet.lit".into())),
            ],
        );
        let Step::Done(Ok(routes)) = r.step() else {
            panic!()
        };
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].jid.to_string(), "romeo@montague.lit");
    }

    #[test]
    fn forward_depth_is_limited() {
        let mut r = Resolver::new(&jid("a@x.lit"), 1);
        let a = fetch(&mut r);
        r.on_values(&a, &[value(1, XmppLocation::Address("b@x.lit".into()))]);
        let b = fetch(&mut r);
        r.on_values(&b, &[value(2, XmppLocation::Address("c@x.lit".into()))]);
        assert_eq!(
            r.step(),
            Step::Done(Err(ResolveError::NotFound("a@x.lit".into())))
        );
    }

    #[test]
    fn nobody_registered_is_not_found_and_removed_entries_are_skipped() {
        let mut r = Resolver::new(&jid("ghost@x.lit"), 4);
        let g = fetch(&mut r);
        let mut removed = value(1, XmppLocation::device(NodeId(1), 0));
        if let StoredDataValue::Dictionary { value, .. } = &mut removed.value {
            value.exists = false;
        }
        r.on_values(&g, &[removed]);
        assert_eq!(
            r.step(),
            Step::Done(Err(ResolveError::NotFound("ghost@x.lit".into())))
        );
    }
}
