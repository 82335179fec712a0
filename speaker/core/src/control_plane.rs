//! The control-plane VIP's decisions, free of I/O: given what Raft says about this node (role,
//! term, leader), what the local API server's health check said and when a quorum last
//! acknowledged this node as leader, decide whether this node holds the VIP, when it announces it,
//! whether it hands leadership to a peer and whether it may campaign.
//!
//! The runtime (`ferrolb-speaker control-plane`) feeds observations in after every Raft `Ready`,
//! every health check and every tick, calls [`ControlPlane::poll`] and carries out the returned
//! [`Action`]s. Time only comes in as arguments.
//!
//! # Rules
//! - Only the leader, only while its API server is healthy and only while a quorum keeps
//!   acknowledging it, holds the VIP. Losing any of the three removes it at once.
//! - An unhealthy leader transfers leadership to a healthy peer (Raft thesis §3.10, leadership
//!   transfer). A node whose API server is not healthy does not campaign: the runtime drops its
//!   outgoing (pre-)vote requests, so it never wins an election it should not (it still votes).
//! - **Fencing.** A new leader adds the VIP only after the old leader must have dropped it. With
//!   check-quorum (Raft thesis §6.2) a leader that has not heard from a quorum within one election
//!   timeout is no longer a leader; this core is stricter and drops the VIP as soon as the last
//!   quorum acknowledgement is one election timeout old ([`Timing::election_timeout`]). Any
//!   majority that elected the new leader (§5.2) shares a node with any majority that
//!   acknowledged the old one, and that node stopped acknowledging the old leader when it voted
//!   (the vote carries the higher term, §5.1), so the old leader's last quorum acknowledgement is
//!   no later than the election plus the delivery time of that acknowledgement. The new leader
//!   waits one election timeout plus [`Timing::fence_margin`] from its election before it adds
//!   the VIP: the old one has dropped it by then.
//!
//!   This rests on two assumptions, written down in the docs: clocks on the nodes run at the same
//!   rate within a small error over one election timeout (no synchronised wall clocks are needed:
//!   only each node's monotonic clock is used), and an acknowledgement is delivered within the
//!   margin (a message older than that is from a network this design does not cover).
//!
//! Pre-vote (Ongaro's thesis §9.6) keeps a node that was partitioned away from disturbing the
//! leader when it comes back, so healing a partition does not move the VIP.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::schedule::{self, Schedule};

/// The Raft role of this node, as seen after a `Ready`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    /// Pre-vote phase (thesis §9.6): asking whether it could win before raising the term.
    PreCandidate,
    Candidate,
    Leader,
}

/// What Raft says about this node after a `Ready`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftView {
    pub role: Role,
    pub term: u64,
    /// The leader this node knows of in `term`, if any.
    pub leader: Option<u64>,
}

/// The outcome of one health check of an API server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Unhealthy,
    /// No check has finished yet, or the last result is too old to trust.
    Unknown,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
            Health::Unknown => "unknown",
        })
    }
}

/// Timings of the decisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Raft's election timeout (election ticks × tick interval): the check-quorum window.
    pub election_timeout: Duration,
    /// Extra wait of a new leader beyond the election timeout: covers the delivery time of the
    /// old leader's last acknowledgement, tick granularity and clock-rate error.
    pub fence_margin: Duration,
    /// A health result older than this counts as [`Health::Unknown`] (a stuck checker must not
    /// keep a node looking healthy).
    pub health_stale_after: Duration,
    /// How long an unhealthy leader waits for a leadership transfer before it tries again
    /// (raft-rs abandons a transfer after one election timeout).
    pub transfer_retry: Duration,
    /// Announcement burst and refresh.
    pub announce: schedule::Timing,
}

impl Timing {
    /// Timings for an election timeout, with a margin of a fifth of it (at least 50 ms) and a
    /// health result trusted for 3 election timeouts (at least 2 s).
    pub fn for_election_timeout(election_timeout: Duration) -> Timing {
        Timing {
            election_timeout,
            fence_margin: (election_timeout / 5).max(Duration::from_millis(50)),
            health_stale_after: (election_timeout * 3).max(Duration::from_secs(2)),
            transfer_retry: election_timeout,
            announce: schedule::Timing {
                burst: [0, 100, 300, 700].map(Duration::from_millis).to_vec(),
                refresh: Duration::from_secs(3),
            },
        }
    }
}

/// Why the VIP left this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoveReason {
    /// Another node leads (or nobody does).
    LostLeadership,
    /// The local API server's check failed, timed out or is stale.
    Unhealthy,
    /// No quorum acknowledged this leader within one election timeout.
    LostQuorum,
    /// The speaker is stopping.
    Shutdown,
}

impl fmt::Display for RemoveReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RemoveReason::LostLeadership => "this node is no longer the Raft leader",
            RemoveReason::Unhealthy => "the local API server is not healthy",
            RemoveReason::LostQuorum => {
                "no quorum acknowledged this leader within the election timeout"
            }
            RemoveReason::Shutdown => "the speaker is stopping",
        })
    }
}

/// What the runtime must do, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Add the VIP to the interface (netlink).
    AddVip,
    /// Remove the VIP from the interface.
    RemoveVip(RemoveReason),
    /// Send a gratuitous ARP / unsolicited NA for the VIP (one of the burst or a refresh).
    Announce,
    /// Hand Raft leadership to peer `to` (raft-rs `transfer_leader`).
    TransferLeader { to: u64 },
}

/// Why a leader does not hold the VIP (for logs and status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// Not the leader.
    NotLeader,
    /// Leader, waiting out the old leader's check-quorum window until this instant.
    Fence {
        until: Instant,
    },
    Unhealthy,
    LostQuorum,
    ShuttingDown,
}

/// The control-plane VIP's state machine for one node.
#[derive(Debug)]
pub struct ControlPlane {
    id: u64,
    vip: IpAddr,
    /// Voters other than this node.
    peers: BTreeSet<u64>,
    timing: Timing,
    raft: RaftView,
    /// When this node was seen to become leader of the current term.
    leader_since: Option<Instant>,
    /// The last time a quorum acknowledged this node as leader.
    last_quorum_ack: Option<Instant>,
    health: Option<(Health, Instant)>,
    peer_health: BTreeMap<u64, (Health, Instant)>,
    holding: bool,
    schedule: Schedule,
    /// The last transfer asked for: (term, target, when).
    transfer: Option<(u64, u64, Instant)>,
    shutting_down: bool,
}

impl ControlPlane {
    /// A node `id` of a group whose other voters are `peers`, for `vip`. Starts as a follower that
    /// holds nothing, with unknown health.
    pub fn new(id: u64, peers: impl IntoIterator<Item = u64>, vip: IpAddr, timing: Timing) -> Self {
        let announce = timing.announce.clone();
        ControlPlane {
            id,
            vip,
            peers: peers.into_iter().filter(|p| *p != id).collect(),
            timing,
            raft: RaftView {
                role: Role::Follower,
                term: 0,
                leader: None,
            },
            leader_since: None,
            last_quorum_ack: None,
            health: None,
            peer_health: BTreeMap::new(),
            holding: false,
            schedule: Schedule::new(announce),
            transfer: None,
            shutting_down: false,
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the runtime has been told to hold the VIP (the last `AddVip` not yet undone).
    pub fn holding(&self) -> bool {
        self.holding
    }

    pub fn raft(&self) -> RaftView {
        self.raft
    }

    /// Raft's view after a `Ready`. Winning leadership (a new term as leader) starts the fence
    /// and counts as a quorum acknowledgement: the votes that elected this node came from one.
    pub fn observe_raft(&mut self, now: Instant, view: RaftView) {
        let became_leader = view.role == Role::Leader
            && (self.raft.role != Role::Leader || self.raft.term != view.term);
        if became_leader {
            self.leader_since = Some(now);
            self.last_quorum_ack = Some(now);
            self.transfer = None;
        }
        if view.role != Role::Leader {
            self.leader_since = None;
            self.last_quorum_ack = None;
            self.transfer = None;
        }
        self.raft = view;
    }

    /// A quorum acknowledged this leader at `at` (the runtime computes it from the peers'
    /// responses: the majority-th most recent). Older values than the one known are ignored.
    ///
    /// A quorum regained after a lapse of a whole election timeout restarts the fence: during the
    /// lapse another node may have been elected and hold the VIP until it, too, lost its quorum.
    pub fn quorum_ack(&mut self, at: Instant) {
        if self.raft.role != Role::Leader {
            return;
        }
        match self.last_quorum_ack {
            Some(t) if at <= t => {}
            Some(t) => {
                if at.saturating_duration_since(t) >= self.timing.election_timeout {
                    self.leader_since = Some(at);
                }
                self.last_quorum_ack = Some(at);
            }
            None => self.last_quorum_ack = Some(at),
        }
    }

    /// The result of a health check of the local API server, finished at `now`.
    pub fn observe_health(&mut self, now: Instant, health: Health) {
        self.health = Some((health, now));
    }

    /// What peer `peer` last said about its own API server, received at `now`.
    pub fn observe_peer_health(&mut self, now: Instant, peer: u64, health: Health) {
        if self.peers.contains(&peer) {
            self.peer_health.insert(peer, (health, now));
        }
    }

    /// What peer `peer` last said about its own API server (for the status report; the decisions
    /// use it with its age).
    pub fn peer_health(&self, peer: u64) -> Option<Health> {
        self.peer_health.get(&peer).map(|(h, _)| *h)
    }

    /// The speaker is stopping: give everything up (the next [`ControlPlane::poll`] says how).
    pub fn shutdown(&mut self) {
        self.shutting_down = true;
    }

    /// The local API server's health, [`Health::Unknown`] when never checked or stale.
    pub fn health(&self, now: Instant) -> Health {
        fresh(self.health, now, self.timing.health_stale_after)
    }

    /// Whether this node may campaign: only while its API server is healthy and it is not
    /// stopping. The runtime drops this node's outgoing vote and pre-vote requests otherwise.
    pub fn may_campaign(&self, now: Instant) -> bool {
        !self.shutting_down && self.health(now) == Health::Healthy
    }

    /// Why this node does not hold the VIP now, or `None` when it should hold it.
    pub fn waiting(&self, now: Instant) -> Option<Waiting> {
        if self.shutting_down {
            return Some(Waiting::ShuttingDown);
        }
        let Some(since) = self.leader_since.filter(|_| self.raft.role == Role::Leader) else {
            return Some(Waiting::NotLeader);
        };
        if self.health(now) != Health::Healthy {
            return Some(Waiting::Unhealthy);
        }
        if self.peers.is_empty() {
            // A group of one: no other node can hold the VIP, nothing to fence.
            return None;
        }
        let fresh_quorum = self
            .last_quorum_ack
            .is_some_and(|t| now.saturating_duration_since(t) < self.timing.election_timeout);
        if !fresh_quorum {
            return Some(Waiting::LostQuorum);
        }
        let until = since + self.timing.election_timeout + self.timing.fence_margin;
        if now < until {
            return Some(Waiting::Fence { until });
        }
        None
    }

    /// The healthy peer to hand leadership to: the one whose healthy report is the most recent
    /// (ties to the lowest id), among reports that are still fresh.
    pub fn transfer_target(&self, now: Instant) -> Option<u64> {
        self.peer_health
            .iter()
            .filter(|(_, r)| {
                fresh(Some(**r), now, self.timing.health_stale_after) == Health::Healthy
            })
            .max_by(|(a_id, (_, a_at)), (b_id, (_, b_at))| a_at.cmp(b_at).then(b_id.cmp(a_id)))
            .map(|(id, _)| *id)
    }

    /// Decides what to do at `now`.
    pub fn poll(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let waiting = self.waiting(now);
        match (self.holding, waiting) {
            (true, Some(w)) => {
                let reason = match w {
                    Waiting::ShuttingDown => RemoveReason::Shutdown,
                    Waiting::Unhealthy => RemoveReason::Unhealthy,
                    Waiting::LostQuorum => RemoveReason::LostQuorum,
                    Waiting::NotLeader => RemoveReason::LostLeadership,
                    // A holding leader meets a fence again only after its quorum lapsed (between
                    // two polls) and came back: the lapse is the reason.
                    Waiting::Fence { .. } => RemoveReason::LostQuorum,
                };
                self.holding = false;
                self.schedule.lose(self.vip);
                actions.push(Action::RemoveVip(reason));
            }
            (false, None) => {
                self.holding = true;
                self.schedule.gain(self.vip, now);
                actions.push(Action::AddVip);
            }
            _ => {}
        }
        if self.holding && !self.schedule.due(now).is_empty() {
            actions.push(Action::Announce);
        }
        // An unhealthy or stopping leader hands over to a healthy peer, once per retry period.
        let hand_over = self.shutting_down || self.health(now) != Health::Healthy;
        if self.raft.role == Role::Leader && hand_over {
            let recent = self.transfer.is_some_and(|(term, _, at)| {
                term == self.raft.term
                    && now.saturating_duration_since(at) < self.timing.transfer_retry
            });
            if !recent && let Some(to) = self.transfer_target(now) {
                self.transfer = Some((self.raft.term, to, now));
                actions.push(Action::TransferLeader { to });
            }
        }
        actions
    }
}

fn fresh(report: Option<(Health, Instant)>, now: Instant, stale_after: Duration) -> Health {
    match report {
        Some((h, at)) if now.saturating_duration_since(at) <= stale_after => h,
        _ => Health::Unknown,
    }
}

#[cfg(test)]
#[path = "control_plane_tests.rs"]
mod tests;
