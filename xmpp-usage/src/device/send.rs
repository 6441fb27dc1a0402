//! Sending a stanza (XEP-0415 "Sending a stanza"): look the recipient up (or use
//! the routes looked up at most `resolve_cache` ago), connect to each of its devices
//! in parallel ("It is RECOMMENDED to perform connection attempts in parallel"),
//! wait at most [`FIRST_CONTACT`] for them, and fan the stanza out to the devices
//! that are connected, with `sent` carbons to this user's other devices (which are
//! connected first, so they get them). To a bare JID the stanza goes as soon as one
//! of the recipient's devices is connected: the others get their copies, in order,
//! when their streams come up (and none if they never do). To a full JID it goes as
//! soon as that device is connected. If none of the remembered devices answers,
//! the recipient is looked up again at once and the stanza tried once more.

use std::collections::VecDeque;

use minidom::Element;
use xor_overlay::node::RequestError;
use xor_overlay::time::Instant;
use xor_overlay::wire::StoredData;

use super::streams::Reach;
use super::{ConnectError, Device, FIRST_CONTACT, Output, ROUTES_MAX, Write};
use crate::jid::Jid;
use crate::resolve::{ResolveError, Resolver, Route, Step};
use crate::stanza;

/// Why a stanza was not sent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    /// The stanza has no (valid) `to`.
    #[error("the stanza has no valid 'to'")]
    NoRecipient,
    /// The recipient is not registered, or the lookup failed.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// None of the recipient's devices could be reached.
    #[error("none of {jid}'s devices could be reached: {}", list(why))]
    Unreachable {
        /// The recipient.
        jid: String,
        /// What went wrong with each device tried.
        why: Vec<ConnectError>,
    },
    /// The device is shutting down.
    #[error("the node has stopped")]
    Stopped,
}

/// `a; b; c` for an error list.
pub(crate) fn list(errors: &[ConnectError]) -> String {
    let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    all.join("; ")
}

/// A send that failed, with its stanza.
#[derive(Debug, Clone, PartialEq)]
pub struct SendFailure {
    /// Why.
    pub error: SendError,
    /// The stanza, unsent.
    pub stanza: Element,
}

/// A lookup in flight.
#[derive(Debug)]
pub(super) struct Resolving {
    resolver: Resolver,
}

/// A stanza waiting in its recipient's queue.
#[derive(Debug)]
pub(super) struct Pending {
    token: u64,
    stanza: Element,
    /// Looked up afresh after the remembered devices all failed.
    retried: bool,
    stage: Stage,
}

#[derive(Debug)]
enum Stage {
    New,
    /// Waiting for a lookup (so the routes it gets are fresh).
    Looking,
    Connecting(Connecting),
}

#[derive(Debug)]
struct Connecting {
    deadline: Instant,
    /// The recipient's routes, each with why it failed at once (held back, wrong user).
    routes: Vec<(Route, Option<ConnectError>)>,
    /// This user's other devices (carbons go to them).
    own: Vec<Route>,
    /// The users whose devices get the stanza (the recipient and its forwards).
    users: Vec<Jid>,
    /// The routes were looked up for this stanza, not remembered.
    fresh: bool,
}

impl Pending {
    /// When this send stops waiting for first contact.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match &self.stage {
            Stage::Connecting(c) => Some(c.deadline),
            _ => None,
        }
    }
}

/// A recipient's routes, for a send.
enum Lookup {
    Ready(Vec<Route>),
    Wait,
    Failed(ResolveError),
}

impl Device {
    /// Sends `stanza` (see the module docs); the outcome comes as
    /// [`Output::Dispatch`] or [`Output::Failed`] with `token`.
    pub fn send(&mut self, token: u64, stanza: Element, now: Instant) {
        let Some(to) = stanza::to(&stanza) else {
            self.failed(token, SendError::NoRecipient, stanza);
            return;
        };
        let recipient = to.bare();
        self.queues
            .entry(recipient.clone())
            .or_default()
            .push_back(Pending {
                token,
                stanza,
                retried: false,
                stage: Stage::New,
            });
        self.advance(&recipient, now);
    }

    /// A dispatched stanza none of whose streams took it (they closed meanwhile):
    /// looked up again and tried once more, ahead of what was queued after it.
    pub fn send_again(&mut self, token: u64, stanza: Element, now: Instant) {
        let Some(recipient) = stanza::to(&stanza).map(|t| t.bare()) else {
            self.failed(token, SendError::NoRecipient, stanza);
            return;
        };
        self.routes.remove(&recipient);
        self.queues
            .entry(recipient.clone())
            .or_default()
            .push_front(Pending {
                token,
                stanza,
                retried: true,
                stage: Stage::New,
            });
        self.advance(&recipient, now);
    }

    /// The answer to [`Output::Fetch`] `id`.
    pub fn fetched(
        &mut self,
        id: u64,
        answer: Result<Vec<StoredData>, RequestError>,
        now: Instant,
    ) {
        let Some((target, fetched)) = self.fetches.remove(&id) else {
            return;
        };
        if let Some(r) = self.resolving.get_mut(&target) {
            match answer {
                Ok(values) => r.resolver.on_values(&fetched, &values),
                Err(e) => r.resolver.on_error(&fetched, e),
            }
        }
        self.pump(&target, now);
        self.advance_all(now);
    }

    pub(super) fn start_lookup(&mut self, jid: &Jid, now: Instant) {
        let resolver = Resolver::new(jid, self.cfg.max_forwards);
        self.resolving.insert(jid.clone(), Resolving { resolver });
        self.pump(jid, now);
    }

    /// Runs a lookup until it waits for fetches or ends.
    fn pump(&mut self, jid: &Jid, now: Instant) {
        loop {
            let Some(r) = self.resolving.get_mut(jid) else {
                return;
            };
            match r.resolver.step() {
                Step::Fetch(fetched, resource) => {
                    let id = self.fresh_id();
                    self.fetches.insert(id, (jid.clone(), fetched));
                    self.out.push_back(Output::Fetch { id, resource });
                }
                Step::Wait => return,
                Step::Done(result) => {
                    self.resolving.remove(jid);
                    // The upkeep's look at this user's devices is not kept for sends:
                    // at start it runs before devices starting at the same moment are
                    // registered, and a send would then skip their carbons for the
                    // whole cache time. A send looks for itself (before, the runtime
                    // looked outside the core: same behaviour).
                    if *jid == self.cfg.me.bare() && self.own_resolved(&result, now) {
                        return;
                    }
                    match result {
                        Ok(routes) => self.remember(jid, routes, now),
                        // This user's own devices are only needed for carbons: none
                        // found counts as none for as long as a lookup is reused.
                        Err(_) if *jid == self.cfg.me.bare() => {
                            self.remember(jid, Vec::new(), now);
                        }
                        Err(e) => {
                            self.routes.remove(jid);
                            self.failed_lookups.insert(jid.clone(), e);
                        }
                    }
                    return;
                }
            }
        }
    }

    fn remember(&mut self, jid: &Jid, routes: Vec<Route>, now: Instant) {
        if self.routes.len() >= ROUTES_MAX && !self.routes.contains_key(jid) {
            let oldest = self
                .routes
                .iter()
                .min_by_key(|(j, (_, at))| (*at, j.to_string()))
                .map(|(j, _)| j.clone());
            if let Some(j) = oldest {
                self.routes.remove(&j);
            }
        }
        self.routes.insert(jid.clone(), (routes, now));
    }

    fn lookup(&mut self, jid: &Jid, now: Instant) -> Lookup {
        if let Some((routes, at)) = self.routes.get(jid)
            && now.saturating_duration_since(*at) < self.cfg.resolve_cache
        {
            return Lookup::Ready(routes.clone());
        }
        if let Some(e) = self.failed_lookups.get(jid) {
            return Lookup::Failed(e.clone());
        }
        if !self.resolving.contains_key(jid) {
            self.start_lookup(jid, now);
        }
        Lookup::Wait
    }

    /// Works on the head of every queue (in a fixed order, for replay).
    pub(super) fn advance_all(&mut self, now: Instant) {
        let mut recipients: Vec<Jid> = self.queues.keys().cloned().collect();
        recipients.sort_by_key(ToString::to_string);
        for r in recipients {
            self.advance(&r, now);
        }
        self.failed_lookups.clear();
        self.failed_connects.clear();
    }

    /// Works on `recipient`'s queue until its head has to wait.
    fn advance(&mut self, recipient: &Jid, now: Instant) {
        loop {
            let Some(head) = self.queues.get_mut(recipient).and_then(VecDeque::pop_front) else {
                self.queues.remove(recipient);
                return;
            };
            if let Some(waiting) = self.work(head, recipient, now) {
                if let Some(q) = self.queues.get_mut(recipient) {
                    q.push_front(waiting);
                }
                return;
            }
        }
    }

    /// One step of a send; the send back if it has to wait.
    fn work(&mut self, mut p: Pending, recipient: &Jid, now: Instant) -> Option<Pending> {
        loop {
            match p.stage {
                Stage::New | Stage::Looking => {
                    let fresh = matches!(p.stage, Stage::Looking);
                    let me = self.cfg.me.bare();
                    let own = if p.stanza.name() == "message" {
                        match self.lookup(&me, now) {
                            Lookup::Ready(r) => Some(r),
                            Lookup::Wait => None,
                            // Carbons are best effort: a failed lookup of our own
                            // devices does not stop the stanza.
                            Lookup::Failed(_) => Some(Vec::new()),
                        }
                    } else {
                        Some(Vec::new())
                    };
                    let theirs = if *recipient == me {
                        Lookup::Ready(Vec::new())
                    } else {
                        self.lookup(recipient, now)
                    };
                    let (own, routes) = match (own, theirs) {
                        (_, Lookup::Failed(e)) => {
                            self.failed(p.token, SendError::Resolve(e), p.stanza);
                            return None;
                        }
                        (Some(own), Lookup::Ready(routes)) => (own, routes),
                        _ => {
                            p.stage = Stage::Looking;
                            return Some(p);
                        }
                    };
                    p.stage = Stage::Connecting(self.connect(recipient, own, routes, fresh, now));
                }
                Stage::Connecting(ref c) => {
                    let trying = |d: &Device, r: &Route| {
                        d.stream_to(r.node).is_none() && d.expected.contains_key(&r.node)
                    };
                    let own_waiting = c.own.iter().any(|r| trying(self, r));
                    let waiting = own_waiting || c.routes.iter().any(|(r, _)| trying(self, r));
                    // To a bare JID, the devices still connecting get their copies when
                    // they come up: once one of them is connected the stanza goes. To a
                    // full JID, once that device is connected.
                    let to = stanza::to(&p.stanza);
                    let bare = to.as_ref().is_none_or(Jid::is_bare);
                    let one_up = c.routes.iter().any(|(r, _)| {
                        self.stream_to(r.node).is_some_and(|e| {
                            e.device.jid.bare() == r.jid.bare()
                                && (bare || to.as_ref() == Some(&e.device.jid))
                        })
                    });
                    // ... while each of those can keep one more copy (then the send
                    // waits for them: back-pressure, not loss).
                    let late_room = !bare
                        || c.routes
                            .iter()
                            .filter(|(r, _)| trying(self, r))
                            .all(|(r, _)| {
                                self.late.get(&r.node).map_or(0, Vec::len) < super::LATE_MAX
                            });
                    if waiting && now < c.deadline && (own_waiting || !one_up || !late_room) {
                        return Some(p);
                    }
                    let Stage::Connecting(c) = std::mem::replace(&mut p.stage, Stage::New) else {
                        return None;
                    };
                    match self.finish(p.token, p.stanza, recipient, c, p.retried, now) {
                        Ok(()) => return None,
                        Err(stanza) => {
                            // Every remembered device failed: look them up again.
                            self.routes.remove(recipient);
                            p = Pending {
                                token: p.token,
                                stanza,
                                retried: true,
                                stage: Stage::New,
                            };
                        }
                    }
                }
            }
        }
    }

    /// Starts connecting to every device a send needs.
    fn connect(
        &mut self,
        recipient: &Jid,
        own: Vec<Route>,
        routes: Vec<Route>,
        fresh: bool,
        now: Instant,
    ) -> Connecting {
        let me = self.cfg.me.bare();
        let own: Vec<Route> = own
            .into_iter()
            .filter(|r| r.node != self.cfg.node && r.jid == me)
            .collect();
        for r in &own {
            self.reach(r, now);
        }
        let mut users = vec![recipient.clone()];
        let mut tried = Vec::new();
        for r in routes {
            // A forward (XEP-0415 `xmpp_location_address`) names other users: their
            // devices are recipients too.
            if !users.contains(&r.jid) {
                users.push(r.jid.clone());
            }
            let failed = match self.reach(&r, now) {
                Reach::Failed(e) => Some(e),
                Reach::Connected | Reach::Trying => None,
            };
            tried.push((r, failed));
        }
        Connecting {
            deadline: now + FIRST_CONTACT,
            routes: tried,
            own,
            users,
            fresh,
        }
    }

    /// Fans the stanza out to the connected devices; the stanza back when none of
    /// the remembered devices could be reached and they may be looked up again.
    fn finish(
        &mut self,
        token: u64,
        stanza: Element,
        recipient: &Jid,
        c: Connecting,
        retried: bool,
        now: Instant,
    ) -> Result<(), Element> {
        let me = self.cfg.me.clone();
        let mut why = Vec::new();
        for (r, failed) in &c.routes {
            if let Some(e) = failed {
                why.push(e.clone());
            } else if self.stream_to(r.node).is_some() {
                continue;
            } else if self.expected.contains_key(&r.node) {
                why.push(ConnectError::NoAnswerYet {
                    node: r.node,
                    waited: FIRST_CONTACT,
                });
            } else {
                let e = self
                    .failed_connects
                    .get(&r.node)
                    .or_else(|| self.unreachable.get(&r.node).map(|(_, e)| e))
                    .cloned()
                    .unwrap_or(ConnectError::TimedOut);
                why.push(e);
            }
        }
        let recipients: Vec<_> = self
            .devices()
            .into_iter()
            .filter(|d| c.users.contains(&d.jid.bare()))
            .collect();
        let to = stanza::to(&stanza);
        let addressed = recipients
            .iter()
            .any(|d| d.jid != me && to.as_ref().is_none_or(|t| t.is_bare() || *t == d.jid));
        let to_self = *recipient == me.bare();
        if !to_self && (why.len() >= c.routes.len() || !addressed) {
            if !retried && !c.fresh {
                return Err(stanza);
            }
            let jid = recipient.to_string();
            self.failed(token, SendError::Unreachable { jid, why }, stanza);
            return Ok(());
        }
        let own = self.own();
        let node = self.cfg.node;
        let rng = &mut self.rng;
        let plan = self
            .router
            .outgoing(stanza, &recipients, &own, || Device::origin_id(node, rng));
        // A device of the recipient that is still connecting gets its copy when its
        // stream comes up (it was online when looked up; only the send stopped
        // waiting for it).
        let slow: Vec<_> = c
            .routes
            .iter()
            .filter(|(r, failed)| {
                failed.is_none()
                    && self.stream_to(r.node).is_none()
                    && self.expected.contains_key(&r.node)
            })
            .map(|(r, _)| r.node)
            .collect();
        let mut connecting = Vec::new();
        if to.as_ref().is_none_or(Jid::is_bare)
            && let Some((_, copy)) = plan
                .send
                .iter()
                .find(|(n, _)| recipients.iter().any(|d| d.node == *n))
        {
            for node in slow {
                connecting.push(node);
                let q = self.late.entry(node).or_default();
                if q.len() < super::LATE_MAX {
                    q.push(copy.clone());
                }
            }
        }
        let mut writes = Vec::new();
        for (n, stanza) in plan.send {
            let Some(e) = self.stream_to(n) else { continue };
            writes.push(Write {
                stream: e.id,
                device: e.device.clone(),
                carbon: !recipients.iter().any(|d| d.node == n),
                stanza,
            });
        }
        for w in &writes {
            self.touch(w.device.node, now);
        }
        self.out.push_back(Output::Dispatch {
            token,
            writes,
            connecting,
        });
        Ok(())
    }

    fn failed(&mut self, token: u64, error: SendError, stanza: Element) {
        self.out.push_back(Output::Failed {
            token,
            failure: SendFailure { error, stanza },
        });
    }

    /// Every queued stanza fails with [`SendError::Stopped`].
    pub(super) fn fail_all_queued(&mut self) {
        let mut recipients: Vec<Jid> = self.queues.keys().cloned().collect();
        recipients.sort_by_key(ToString::to_string);
        for r in recipients {
            for p in self.queues.remove(&r).unwrap_or_default() {
                self.failed(p.token, SendError::Stopped, p.stanza);
            }
        }
    }
}
