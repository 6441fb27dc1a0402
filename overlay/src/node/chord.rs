//! CHORD-RELOAD maintenance (§10.5 – §10.9) and the topology requests (§6.4.2).

use rand::Rng;

use super::transactions::Purpose;
use super::{Event, JoinFailure, JoinState, Node, RequestError, Timer};
use crate::chord::table::{finger_start, finger_valid};
use crate::id::{NodeId, ResourceId};
use crate::identity::VerifiedSigner;
use crate::time::Instant;
use crate::wire::*;

/// The width of finger `i`'s interval (§10.7.4.2).
fn finger_span(i: u8) -> u128 {
    1u128 << (128 - u32::from(i))
}

/// Least time between two corrective Updates to the same peer.
const CORRECTION_HOLD: std::time::Duration = std::time::Duration::from_secs(5);

impl Node {
    /// Dispatches a verified request. `Ok(None)` means no answer is sent now.
    pub(crate) fn handle_request(
        &mut self,
        message: &Message,
        body: Body,
        signer: &VerifiedSigner,
        prev: NodeId,
        now: Instant,
    ) -> Result<Option<super::storage::Reply>, ErrorResponse> {
        let from = signer.node_id;
        let direct = message.header.via_list.is_empty() && prev == from;
        let answer = match body {
            Body::PingReq(_) => Body::PingAns(PingAns {
                response_id: self.rng.next_u64(),
                time: self.unix_ms(now),
            }),
            Body::ProbeReq(req) => Body::ProbeAns(self.probe(&req, now)),
            Body::RouteQueryReq(req) => Body::RouteQueryAns(self.route_query(from, &req, now)),
            Body::AttachReq(req) => self.on_attach_req(from, req, now)?,
            Body::UpdateReq(update) => {
                self.on_update(from, update, now);
                Body::UpdateAns
            }
            Body::JoinReq(req) => self.on_join(from, direct, &req)?,
            Body::LeaveReq(req) => self.on_leave(from, direct, req, now)?,
            Body::AppAttachReq(req) => match self.on_app_attach(from, req, message, prev, now)? {
                Some(answer) => answer,
                None => return Ok(None), // waits for ICE gathering
            },
            Body::StoreReq(req) => return self.on_store(message, req, signer, now).map(Some),
            body @ (Body::FetchReq(_) | Body::StatReq(_) | Body::FindReq(_)) => {
                return self.on_read(body, now).map(Some);
            }
            Body::ConfigUpdateReq(req) => self.on_config_update(req, now)?,
            other => {
                return Err(ErrorResponse::new(
                    ErrorCode::InvalidMessage,
                    format!("unknown request {:?}", other.code()),
                ));
            }
        };
        Ok(Some(answer.into()))
    }

    fn probe(&self, req: &ProbeReq, now: Instant) -> ProbeAns {
        // Requested order; unknown types are left out (§6.4.2.5.2).
        let probe_info = req
            .requested_info
            .iter()
            .filter_map(|t| match *t {
                topology::probe_type::RESPONSIBLE_SET => Some(ProbeInformation::ResponsibleSet(
                    self.table.responsible_ppb(),
                )),
                topology::probe_type::NUM_RESOURCES => {
                    Some(ProbeInformation::NumResources(self.stored_resources()))
                }
                topology::probe_type::UPTIME => Some(ProbeInformation::Uptime(self.uptime(now))),
                _ => None,
            })
            .collect();
        ProbeAns { probe_info }
    }

    /// Number of distinct Resource-IDs stored here.
    pub(crate) fn stored_resources(&self) -> u32 {
        self.storage.resources().len() as u32
    }

    fn route_query(&mut self, from: NodeId, req: &RouteQueryReq, now: Instant) -> RouteQueryAns {
        let k = match &req.destination {
            Destination::Node(n) => n.0,
            Destination::Resource(r) => r.0,
            _ => self.me.0,
        };
        let next_peer = match self.table.next_hop(k) {
            crate::chord::NextHop::Peer(p) if !self.responsible(k) => p,
            _ => self.me,
        };
        if req.send_update {
            // §10.8: "the responder SHOULD initiate an Update immediately".
            self.send_update_to(from, true, now);
        }
        RouteQueryAns { next_peer }
    }

    /// Sends an Update to `peer`: `full` when asked for one (Attach or RouteQuery with
    /// send_update), otherwise `neighbors` (§10.7). A node that has not joined only says
    /// nothing of itself: it sends no Update (§10.5).
    pub(crate) fn send_update_to(&mut self, peer: NodeId, full: bool, now: Instant) {
        if self.state != JoinState::Joined {
            return;
        }
        let predecessors = self.table.predecessors().to_vec();
        let successors = self.table.successors().to_vec();
        let kind = if full {
            ChordUpdateKind::Full {
                predecessors,
                successors,
                fingers: self.table.fingers(),
            }
        } else {
            ChordUpdateKind::Neighbors {
                predecessors,
                successors,
            }
        };
        let update = ChordUpdate {
            uptime: self.uptime(now),
            kind,
        };
        self.originate(
            vec![Destination::Node(peer)],
            Body::UpdateReq(update),
            Purpose::Update(peer),
            now,
        );
    }

    /// Updates to every neighbour (reactive recovery and periodic stabilisation).
    pub(crate) fn update_neighbors(&mut self, now: Instant) {
        for peer in self.table.neighbors() {
            self.send_update_to(peer, false, now);
        }
    }

    /// An Update from `from` (§10.7.3).
    fn on_update(&mut self, from: NodeId, update: ChordUpdate, now: Instant) {
        if self.cfg.client && !self.state.in_overlay()
            || matches!(self.state, JoinState::Client { .. })
        {
            // A client routes through its peer and learns no neighbours (§4.2.1).
            if let Some(link) = self.link_to(from)
                && let Some(conn) = self.links.get_mut(&link)
            {
                conn.ready = true;
            }
            return;
        }
        if let Some(link) = self.link_to(from)
            && let Some(conn) = self.links.get_mut(&link)
        {
            conn.ready = true;
            // A suspect peer comes back when its acknowledgements do (§6.6.3).
            if !conn.suspect {
                if self.table.add(from) {
                    self.neighbors_dirty = true;
                }
                self.prefer_nearer_finger(from);
            }
        }
        let peer_ready = matches!(update.kind, ChordUpdateKind::PeerReady);
        let (preds, succs, fingers) = match update.kind {
            ChordUpdateKind::PeerReady => (vec![], vec![], vec![]),
            ChordUpdateKind::Neighbors {
                predecessors,
                successors,
            } => (predecessors, successors, vec![]),
            ChordUpdateKind::Full {
                predecessors,
                successors,
                fingers,
            } => (predecessors, successors, fingers),
        };
        if matches!(
            self.state,
            JoinState::Bootstrapping | JoinState::Attaching { .. }
        ) {
            // §10.5 step 3: the Updates during the join say who will precede us.
            let seen = &mut self.attaches.join_seen;
            for p in preds.iter().chain(&succs).chain(std::iter::once(&from)) {
                if seen.len() < 256 {
                    seen.insert(*p);
                }
            }
        }
        // §10.6: attach to a new neighbour through the peer that named it (linked to
        // us or not: it has a link to the peer it names).
        if !peer_ready
            && self.knows_better_neighbors_for(from, &preds, &succs)
            && self.may_correct(from, now)
        {
            // The sender's neighbour lists miss peers we know (or us): tell it, so a node
            // that joined next to a stale view finds its true neighbours (§10.7.3).
            self.send_update_to(from, true, now);
        }
        let mut learnt: Vec<NodeId> = preds.into_iter().chain(succs).collect();
        learnt.sort();
        learnt.dedup();
        for peer in learnt {
            if peer == self.me || self.attaching(peer) || !self.table.would_be_neighbor(peer) {
                continue;
            }
            if matches!(
                self.state,
                JoinState::Bootstrapping | JoinState::Attaching { .. }
            ) {
                self.join_waiting.insert(peer);
            }
            self.attach_neighbor(peer, Some(from), now);
        }
        for peer in fingers {
            if peer != self.me
                && !self.attaching(peer)
                && crate::chord::table::finger_index(self.me, peer)
                    .is_some_and(|i| i <= self.table.finger_count())
                && !self.table.contains(peer)
            {
                let useful = self
                    .table
                    .invalid_fingers()
                    .iter()
                    .any(|i| finger_valid(self.me, *i, peer));
                if useful {
                    self.attach(
                        vec![Destination::Node(peer)],
                        Purpose::Attach {
                            neighbor: false,
                            target: None,
                        },
                        now,
                    );
                }
            }
        }
        self.maybe_send_join(now);
    }

    /// Whether a corrective Update may go to `peer` now: at most one per
    /// [`CORRECTION_HOLD`]. Two peers that cannot attach to each other (one at its
    /// connection limit, say) would otherwise answer each other's Updates with
    /// corrections at the speed of the network, for ever.
    fn may_correct(&mut self, peer: NodeId, now: Instant) -> bool {
        if self
            .corrected
            .get(&peer)
            .is_some_and(|at| now.saturating_duration_since(*at) < CORRECTION_HOLD)
        {
            return false;
        }
        if self.corrected.len() >= 1024 {
            self.corrected
                .retain(|_, at| now.saturating_duration_since(*at) < CORRECTION_HOLD);
        }
        self.corrected.insert(peer, now);
        true
    }

    /// Whether a peer with these lists would put one of our peers (or us) among its
    /// neighbours.
    fn knows_better_neighbors_for(&self, peer: NodeId, preds: &[NodeId], succs: &[NodeId]) -> bool {
        let k = self.cfg.neighbors.max(3);
        let closer = |list: &[NodeId], q: NodeId, d: &dyn Fn(NodeId) -> u128| {
            !list.contains(&q)
                && (list.len() < k || list.last().is_some_and(|last| d(q) < d(*last)))
        };
        let mine = std::iter::once(self.me).chain(self.table.neighbors());
        mine.filter(|q| *q != peer).any(|q| {
            closer(succs, q, &|x| crate::id::distance(peer.0, x.0))
                || closer(preds, q, &|x| crate::id::distance(x.0, peer.0))
        })
    }

    /// §10.5 step 5, once every neighbour attach has finished.
    pub(crate) fn maybe_send_join(&mut self, now: Instant) {
        if let JoinState::Attaching { admitting } = self.state
            && self.join_waiting.is_empty()
            && self
                .link_to(admitting)
                .and_then(|l| self.links.get(&l))
                .is_some_and(|c| c.ready)
        {
            self.send_join(now);
        }
    }

    /// Sends the JoinReq to the admitting peer.
    pub(crate) fn send_join(&mut self, now: Instant) {
        let JoinState::Attaching { admitting } = self.state else {
            return;
        };
        self.timers.cancel(&Timer::JoinAttachDeadline);
        self.join_waiting.clear();
        // Never take a place next to a neighbour this node has no link to: the two
        // would each believe they own the same arc.
        let me = self.me.0;
        let predecessor = std::mem::take(&mut self.attaches.join_seen)
            .into_iter()
            .filter(|p| *p != self.me)
            .min_by_key(|p| crate::id::distance(p.0, me));
        let unlinked = [Some(admitting), predecessor]
            .into_iter()
            .flatten()
            .find(|p| self.link_to(*p).is_none());
        if let Some(p) = unlinked {
            let role = if p == admitting {
                "the admitting peer (the next node on the ring)"
            } else {
                "the node that would precede this one on the ring"
            };
            let why = format!("could not link to {p}, {role}: {}", self.dial_failure(p));
            return self.retry_join(JoinFailure::Unlinkable(why), now);
        }
        self.state = JoinState::Joining { admitting };
        let req = JoinReq {
            joining_peer_id: self.me,
            overlay_specific_data: Default::default(),
        };
        self.originate(
            vec![Destination::Node(admitting)],
            Body::JoinReq(req),
            Purpose::Join,
            now,
        );
    }

    /// JoinAns: the node is on the ring (§10.5 step 9: Updates to every neighbour).
    pub(crate) fn join_answered(&mut self, now: Instant) {
        if let JoinState::Joining { admitting } = self.state {
            if let Some(conn) = self.link_to(admitting).and_then(|l| self.links.get_mut(&l)) {
                conn.ready = true;
            }
            self.table.add(admitting);
            self.become_joined(now);
        }
    }

    pub(crate) fn join_failed(&mut self, error: RequestError, now: Instant) {
        if matches!(self.state, JoinState::Joining { .. }) {
            let why = JoinFailure::Refused(format!("the admitting peer refused the join: {error}"));
            self.retry_join(why, now);
        }
    }

    /// The node is on the ring: announce it and start stabilising.
    pub(crate) fn become_joined(&mut self, now: Instant) {
        self.state = JoinState::Joined;
        self.attaches.bootstrap_failures = 0;
        self.events.push_back(Event::Joined);
        self.update_neighbors(now);
        self.attach_fingers(now);
        self.store_own_certificate(now);
        let jitter = |rng: &mut rand_chacha::ChaCha12Rng, d: std::time::Duration| {
            d.mul_f64(0.5 + (rng.next_u32() as f64 / u32::MAX as f64) * 0.5)
        };
        let update_in = jitter(&mut self.rng, self.cfg.chord_update_interval);
        let ping_in = jitter(&mut self.rng, self.cfg.chord_ping_interval);
        let check_in = jitter(&mut self.rng, self.cfg.partition_check_interval);
        self.timers.set(Timer::Stabilize, now + update_in);
        self.timers.set(Timer::FingerRefresh, now + ping_in);
        self.timers.set(Timer::PartitionCheck, now + check_in);
        self.start_proximity(now);
    }

    /// §10.5: "In order to set up its i'th Finger Table entry, JN MUST send an Attach to
    /// peer n+2^(128-i)."
    fn attach_fingers(&mut self, now: Instant) {
        let mut targets: Vec<u8> = self.table.invalid_fingers();
        targets.truncate(self.table.finger_count() as usize);
        for i in targets {
            let target = ResourceId(finger_start(self.me, i));
            if self.responsible(target.0) || self.table.successors_cover(target.0) {
                // We are the closest node after that point, or one of our successors
                // is (and those are attached as neighbours).
                continue;
            }
            self.attach(
                vec![Destination::Resource(target)],
                Purpose::Attach {
                    neighbor: false,
                    target: None,
                },
                now,
            );
        }
    }

    /// A JoinReq from `from` (§6.4.2.1, §10.5 steps 5–8).
    fn on_join(
        &mut self,
        from: NodeId,
        direct: bool,
        req: &JoinReq,
    ) -> Result<Body, ErrorResponse> {
        if req.joining_peer_id != from {
            return Err(ErrorResponse::new(
                ErrorCode::Forbidden,
                "joining_peer_id is not the signer's Node-ID",
            ));
        }
        if !direct || !self.link_of.contains_key(&from) {
            return Err(ErrorResponse::new(
                ErrorCode::Forbidden,
                "JoinReq must arrive on a link bound to the joining node",
            ));
        }
        if self.state != JoinState::Joined {
            return Err(ErrorResponse::new(
                ErrorCode::Forbidden,
                "this node is not on the ring",
            ));
        }
        if let Some(conn) = self.link_to(from).and_then(|l| self.links.get_mut(&l)) {
            conn.ready = true;
        }
        // Steps 7–8: the table change makes `flush` send Updates to the joining node
        // (now our predecessor) and every other neighbour.
        self.table.add(from);
        self.neighbors_dirty = true;
        Ok(Body::JoinAns(JoinAns::default()))
    }

    /// A LeaveReq from `from` (§6.4.2.2, §10.9).
    fn on_leave(
        &mut self,
        from: NodeId,
        direct: bool,
        req: LeaveReq,
        now: Instant,
    ) -> Result<Body, ErrorResponse> {
        if req.leaving_peer_id != from {
            return Err(ErrorResponse::new(
                ErrorCode::Forbidden,
                "leaving_peer_id is not the signer's Node-ID",
            ));
        }
        if !direct {
            return Err(ErrorResponse::new(
                ErrorCode::Forbidden,
                "LeaveReq must arrive on a link bound to the leaving node",
            ));
        }
        let hints = match req.data {
            ChordLeaveData::FromSucc(list) | ChordLeaveData::FromPred(list) => list,
        };
        // Treat it as a failure (§10.9) but keep the link until the leaver closes it, so
        // this answer can reach it.
        self.peer_lost(from, now);
        for peer in hints {
            if peer != self.me && !self.attaching(peer) && self.table.would_be_neighbor(peer) {
                self.attach_neighbor(peer, None, now);
            }
        }
        Ok(Body::LeaveAns)
    }

    /// A peer stopped answering or left: drop it and repair (§10.7.1, §10.7.2).
    pub(crate) fn peer_failed(&mut self, peer: NodeId, now: Instant) {
        if let Some(link) = self.link_of.remove(&peer) {
            self.links.remove(&link);
            self.events.push_back(Event::CloseLink(link));
        }
        self.peer_lost(peer, now);
    }

    /// Removes a peer whose link is gone and refills the neighbour table.
    pub(crate) fn peer_lost(&mut self, peer: NodeId, now: Instant) {
        self.attaches.awaiting.remove(&peer);
        self.timers.cancel(&Timer::AwaitLink(peer));
        self.client_peer_lost(peer, now);
        if !self.table.remove(peer) {
            return;
        }
        self.neighbors_dirty = true;
        self.neighbor_lost_check(now);
        self.refill_from_healthy_links();
        if self.state == JoinState::Joined
            && self.table.successors().is_empty()
            && !self.links.is_empty()
        {
            // §10.7.1: lost every successor: behave as if joining.
            tracing::info!(node = %self.me, "lost all successors; re-joining");
            self.state = JoinState::Bootstrapping;
            self.bootstrap(now);
        }
    }

    /// Refills the routing table from the links that are ready and not suspect, nearest
    /// first: an empty finger takes the nearest peer in its interval (proximity
    /// neighbour selection; and no decision on hash-map order, so seeded runs replay).
    pub(crate) fn refill_from_healthy_links(&mut self) {
        let mut healthy: Vec<(std::time::Duration, NodeId)> = self
            .links
            .values()
            .filter(|c| c.ready && !c.suspect)
            .map(|c| (c.rtt.unwrap_or(std::time::Duration::MAX), c.peer))
            .collect();
        healthy.sort();
        self.table.refill_from(healthy.into_iter().map(|(_, p)| p));
    }

    /// Periodic stabilisation (§10.7.4.1).
    pub(crate) fn stabilize(&mut self, now: Instant) {
        if self.state != JoinState::Joined {
            return;
        }
        self.update_neighbors(now);
        self.drop_foreign_data();
        self.sync_replicas(now);
        self.timers
            .set(Timer::Stabilize, now + self.cfg.chord_update_interval);
    }

    /// Periodic finger search, alternative 1 of §10.7.4.2: walk the invalid entries
    /// from i = 1 and ping a random Node-ID in each one's range with probability ½.
    pub(crate) fn refresh_fingers(&mut self, now: Instant) {
        if self.state != JoinState::Joined {
            return;
        }
        for i in self.table.invalid_fingers() {
            if self
                .table
                .successors_cover(finger_start(self.me, i).wrapping_add(finger_span(i) - 1))
            {
                continue; // the successors show no peer lies in this finger's range
            }
            if self.rng.next_u32() & 1 == 0 {
                continue;
            }
            let target = ResourceId(self.random_point_of_finger(i));
            if self.responsible(target.0) {
                continue;
            }
            self.originate(
                vec![Destination::Resource(target)],
                Body::PingReq(PingReq::default()),
                Purpose::FingerPing(i),
                now,
            );
            break;
        }
        self.timers
            .set(Timer::FingerRefresh, now + self.cfg.chord_ping_interval);
    }

    /// A random Node-ID in finger `i`'s interval.
    pub(crate) fn random_point_of_finger(&mut self, i: u8) -> u128 {
        let offset =
            ((self.rng.next_u64() as u128) << 64 | self.rng.next_u64() as u128) % finger_span(i);
        finger_start(self.me, i).wrapping_add(offset)
    }

    /// A finger search found `peer`.
    pub(crate) fn finger_found(&mut self, i: u8, peer: NodeId, now: Instant) {
        if peer != self.me && !self.attaching(peer) && finger_valid(self.me, i, peer) {
            self.attach(
                vec![Destination::Node(peer)],
                Purpose::Attach {
                    neighbor: false,
                    target: None,
                },
                now,
            );
        }
    }

    /// Leaves the overlay: LeaveReq to every neighbour (§10.9). [`Event::Left`] follows
    /// when they have answered or timed out.
    pub fn leave(&mut self, now: Instant) {
        if self.state != JoinState::Joined {
            self.state = JoinState::Left;
            self.abandon_all(now);
            self.events.push_back(Event::Left);
            return;
        }
        self.hand_over_on_leave(now);
        self.state = JoinState::Leaving;
        let preds = self.table.predecessors().to_vec();
        let succs = self.table.successors().to_vec();
        // LeaveReq goes over the direct link (the receiver checks it, §6.4.2.2); a
        // neighbour without one is already gone. Answers are awaited for one
        // reliability interval at most.
        let linked: Vec<NodeId> = self
            .table
            .neighbors()
            .into_iter()
            .filter(|p| self.link_of.contains_key(p))
            .collect();
        self.timers
            .set(Timer::LeaveDeadline, now + self.cfg.reliability_timer);
        for peer in linked {
            // To a predecessor we are a successor, and the other way round.
            let data = if preds.contains(&peer) {
                ChordLeaveData::FromSucc(succs.clone())
            } else {
                ChordLeaveData::FromPred(preds.clone())
            };
            let req = LeaveReq {
                leaving_peer_id: self.me,
                data,
            };
            self.originate(
                vec![Destination::Node(peer)],
                Body::LeaveReq(req),
                Purpose::Leave,
                now,
            );
        }
        self.leave_progress(now);
        self.flush(now);
    }

    /// Finishes leaving once no LeaveReq is outstanding.
    pub(crate) fn leave_progress(&mut self, now: Instant) {
        self.finish_leave(false, now);
    }

    /// Finishes leaving when no LeaveReq is outstanding, or at once if `force`d.
    pub(crate) fn finish_leave(&mut self, force: bool, now: Instant) {
        let waiting = !self
            .txns
            .ids_with(|p| p.purpose == Purpose::Leave)
            .is_empty();
        if self.state == JoinState::Leaving && (force || !waiting) {
            self.timers.cancel(&Timer::LeaveDeadline);
            self.state = JoinState::Left;
            self.abandon_all(now);
            for link in self.links.keys().copied().collect::<Vec<_>>() {
                self.events.push_back(Event::CloseLink(link));
            }
            self.events.push_back(Event::Left);
        }
    }
}
