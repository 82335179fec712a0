//! The speaker node's state machine: which addresses this speaker answers for, and when.
//!
//! Sans-I/O in the manner of raft-rs's `RawNode`: inputs are method calls (membership events
//! [`Node::alive`], [`Node::failed`], [`Node::left`]; the API-derived [`Node::set_world`]; the node's
//! links [`Node::set_links`]; the signal [`Node::leave`]; the clock [`Node::tick`]), outputs are
//! [`Action`]s taken with [`Node::take_actions`] and the instant of the next [`Node::tick`]
//! ([`Node::next_deadline`]). The node never reads the clock. The runtime carries the actions out
//! through a [`crate::dataplane::Dataplane`] ([`crate::dataplane::drive`]) and reports back what
//! actually runs ([`Node::placed`]).
//!
//! The rules, each with its reason:
//!
//! - **Fencing** ([`crate::membership`]): a speaker that sees fewer than a majority of the speakers
//!   it knows answers nothing. It counts a member as gone as soon as the failure is *reported*, so
//!   an isolated owner stops at the first moment it can know it is in a minority.
//! - **Takeover after the fencing deadline.** A member reported failed is treated as gone (its
//!   addresses move) only [`Config::takeover_wait`] after the report, which is at least the
//!   failure hold and at least the detection spread. Both sides of a partition learn about the cut
//!   from the same failure detector; the isolated owner's reports can come later than the
//!   majority's by at most the spread (the time its probes need to reach enough members to notice
//!   it lost the majority). Waiting the spread after our own report means the isolated owner has
//!   stopped before a successor answers, as a lease holder stops before its lease can be taken.
//! - **Failure hold**: the same wait means that a healthy member reported failed by a member that
//!   comes back from a short isolation (it gossips the deaths it concluded while alone), and that
//!   refutes the report within tens of milliseconds (seen in the lab: 60 ms), moves nothing.
//! - **Settle**: coming out of a minority (or starting, or after a pause), this speaker's views are
//!   the least complete of all, so it answers nothing for [`Config::settle`].
//! - **Make-before-break fail-back**: a member that (re)joins while this speaker answers is
//!   itself settling, so this speaker keeps the addresses that move to it until its settle is over
//!   ([`Config::settle`] after we saw it join, plus [`Config::failback_margin`]).
//! - **Handover**: on [`Node::leave`] the runtime leaves the membership first (the others elect
//!   successors at once, a graceful leave needs no wait) and this speaker keeps answering for
//!   [`Config::handover_grace`], so no request finds nobody.
//! - **Pause**: a tick far later than the deadline this node asked for means the process did not
//!   run (SIGSTOP, a paused VM); the others may have taken its addresses meanwhile. It stops
//!   answering and settles again before it answers.
//! - **Placement**: on which interfaces each owned address is answered
//!   ([`crate::interfaces::choose`]). What the dataplane reports running is the placement; a
//!   failed start is retried every [`Config::retry`] and its burst starts when it runs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::election::{Decision, Options, World, elect};
use crate::interfaces::{LinkInfo, choose};
use crate::membership::Membership;
use crate::schedule::{self, Schedule};

/// The interfaces each address is answered on, sorted. (Vectors, not sets: a one-element B-tree
/// set allocates a whole node, ~0.3 KiB per address.)
pub type Placement = BTreeMap<IpAddr, Vec<String>>;

/// Timing and options of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// How long a reported failure is held before it is acted on (`--failure-hold-ms`).
    pub failure_hold: Duration,
    /// How much later than this speaker an isolated member can conclude that it lost the
    /// majority: see [`detection_spread`].
    pub detection_spread: Duration,
    /// Added to the spread: the isolated owner's own wake-up and responder update after its
    /// report (a loop pass, well under a millisecond when idle).
    pub fence_margin: Duration,
    /// How long a speaker answers nothing after (re)gaining quorum (`--settle-ms`).
    pub settle: Duration,
    /// How much longer than the returning member's settle this speaker keeps the addresses moving
    /// back to it.
    pub failback_margin: Duration,
    /// How long a leaving speaker keeps answering (`--handover-grace-ms`).
    pub handover_grace: Duration,
    /// How soon an address that failed to start answering somewhere is tried again.
    pub retry: Duration,
    /// The longest the runtime sleeps between ticks: how soon after a pause the node can notice.
    pub heartbeat: Duration,
    /// A tick this much later than the deadline asked for means the process was paused.
    pub pause: Duration,
    pub options: Options,
    /// Interface patterns never chosen by subnet.
    pub excludes: Vec<String>,
    pub announce: schedule::Timing,
}

/// The membership's detection spread for SWIM failure detection (memberlist with
/// `suspicion_max_timeout_mult = 1` and awareness off, so that every member's suspicion timeout
/// is the same and none shrinks with confirmations): a member's detection of a failure starts
/// when its probe of the failed member goes unanswered, and ends a fixed time later (ack timeout,
/// indirect probe, suspicion timeout) on every member alike. What differs is when the probe goes
/// out: a member probes the others round-robin, one per `probe_interval`. In a cluster of three
/// an isolated member must probe both others before it knows it lost the majority, up to two
/// intervals after the cut, while a member of the majority may probe the isolated one at once
/// (and gossips the suspicion to the rest). Default: 2 × 80 ms = 160 ms. Larger clusters fence a
/// minority through the same reports; a minority of one in a larger cluster needs a longer round
/// (the README says so).
pub fn detection_spread(probe_interval: Duration) -> Duration {
    probe_interval * 2
}

impl Default for Config {
    fn default() -> Config {
        Config {
            failure_hold: Duration::from_millis(100),
            detection_spread: detection_spread(Duration::from_millis(80)),
            fence_margin: Duration::from_millis(20),
            settle: Duration::from_secs(1),
            // The returning member and this one see the join in one gossip exchange (the
            // push-pull of memberlist's join), about a round trip apart on a LAN; the margin
            // covers that and the returning speaker's wake-up, so nobody is without an owner.
            failback_margin: Duration::from_millis(10),
            handover_grace: Duration::from_secs(1),
            // A responder that cannot start (interface missing, socket refused) rarely succeeds
            // a millisecond later; once a second costs nothing and bounds the outage.
            retry: Duration::from_secs(1),
            // A wake-up costs microseconds; ten a second is nothing beside memberlist's probes.
            heartbeat: Duration::from_millis(100),
            // The others move a silent member's addresses at the earliest after a missed probe
            // (40 ms ack timeout, the rest of the 80 ms interval for the indirect probe), the
            // 160 ms suspicion timeout and the takeover wait (180 ms): about 420 ms. A pause
            // noticed within heartbeat + pause = 350 ms is noticed before anyone can have taken
            // over. Late is measured from the moment the runtime went to sleep (Node::idle), so
            // a long election or report pass does not count.
            pause: Duration::from_millis(250),
            options: Options::default(),
            excludes: Vec::new(),
            announce: schedule::Timing::default(),
        }
    }
}

impl Config {
    /// How long after a failure report the member's addresses move: at least the failure hold,
    /// and at least the detection spread plus the fence margin (the fencing deadline, see the
    /// module documentation). Defaults: max(100, 160 + 20) = 180 ms.
    pub fn takeover_wait(&self) -> Duration {
        self.failure_hold
            .max(self.detection_spread + self.fence_margin)
    }
}

/// Something for the runtime to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Answer ARP/NDP for `ip` on exactly `ifaces` (it may answer elsewhere today).
    Answer { ip: IpAddr, ifaces: Vec<String> },
    /// Answer for `ip` nowhere.
    StopAnswering { ip: IpAddr },
    /// Send one announcement (gratuitous ARP / unsolicited NA) for `ip` where it is answered.
    Announce { ip: IpAddr },
    /// A state change worth a log line.
    Notice(Notice),
}

/// State changes of the node, for the runtime's logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    MemberJoined {
        node: String,
    },
    /// A member reported failed was alive again within the hold: nothing moved.
    MemberRefuted {
        node: String,
    },
    MemberFailed {
        node: String,
    },
    MemberLeft {
        node: String,
    },
    /// Quorum (re)gained: answering once the views settle.
    Settling {
        live: usize,
        known: usize,
    },
    QuorumLost {
        live: usize,
        known: usize,
    },
    /// No other speaker joined although the API lists other Ready nodes.
    Isolated,
    /// The clock jumped: the process did not run for `late` beyond its deadline.
    Paused {
        late: Duration,
    },
    /// The handover grace is over: answering nothing from now on.
    Stopped,
}

/// The node state machine of one speaker.
#[derive(Debug)]
pub struct Node {
    me: String,
    cfg: Config,
    membership: Membership,
    /// Members reported failed and not yet treated as gone: when reported.
    pending: BTreeMap<String, Instant>,
    /// Members that (re)joined while this speaker answered: when seen. Their addresses stay here
    /// until their settle is over.
    joining: BTreeMap<String, Instant>,
    world: World,
    previous: BTreeMap<IpAddr, String>,
    links: Vec<LinkInfo>,
    decisions: Vec<Decision>,
    live: BTreeSet<String>,
    /// What the election gives this speaker, whether or not it may answer.
    mine: Placement,
    /// What the dataplane is asked to run.
    plan: Placement,
    /// What the dataplane reports running.
    placed: Placement,
    schedule: Schedule,
    /// The last view, reported failures counted, had no quorum (regaining it starts a settle).
    fenced: bool,
    settle_until: Option<Instant>,
    leaving_since: Option<Instant>,
    stopped: bool,
    retry_at: Option<Instant>,
    /// The deadline handed out by the last tick, to notice a pause.
    expected: Option<Instant>,
    /// Whether the last plan let this speaker answer.
    answering: bool,
    /// Inputs changed since the last election.
    dirty: bool,
    out: Vec<Action>,
}

impl Node {
    pub fn new(me: &str, cfg: Config) -> Node {
        Node {
            me: me.to_string(),
            schedule: Schedule::new(cfg.announce.clone()),
            cfg,
            membership: Membership::new(me),
            pending: BTreeMap::new(),
            joining: BTreeMap::new(),
            world: World::default(),
            previous: BTreeMap::new(),
            links: Vec::new(),
            decisions: Vec::new(),
            live: BTreeSet::new(),
            mine: Placement::new(),
            plan: Placement::new(),
            placed: Placement::new(),
            fenced: true,
            settle_until: None,
            leaving_since: None,
            stopped: false,
            retry_at: None,
            expected: None,
            answering: false,
            dirty: true,
            out: Vec::new(),
        }
    }

    // ---- inputs ----

    /// A member joined or was seen alive again.
    pub fn alive(&mut self, node: &str, now: Instant) {
        if node == self.me {
            return;
        }
        if self.pending.remove(node).is_some() {
            self.notice(Notice::MemberRefuted {
                node: node.to_string(),
            });
            return;
        }
        let was_live = self.membership.state(node) == Some(crate::membership::State::Alive);
        self.membership.alive(node);
        if !was_live {
            self.notice(Notice::MemberJoined {
                node: node.to_string(),
            });
            // A member joining while we answer settles first: keep what moves to it until then.
            if self.answering {
                self.joining.insert(node.to_string(), now);
            }
            self.dirty = true;
        }
    }

    /// A member stopped answering probes. It counts against the quorum at once (fencing is
    /// never late) and is treated as gone after [`Config::takeover_wait`].
    pub fn failed(&mut self, node: &str, now: Instant) {
        if node == self.me {
            return;
        }
        self.joining.remove(node);
        if self.membership.state(node) == Some(crate::membership::State::Alive) {
            self.pending.entry(node.to_string()).or_insert(now);
        }
    }

    /// A member left gracefully: its addresses move at once (it keeps answering for its grace).
    pub fn left(&mut self, node: &str, _now: Instant) {
        if node == self.me {
            return;
        }
        self.pending.remove(node);
        self.joining.remove(node);
        self.membership.left(node);
        self.notice(Notice::MemberLeft {
            node: node.to_string(),
        });
        self.dirty = true;
    }

    /// What the API says: nodes, pools, advertisements, Services; and, for sticky mode, the
    /// current owner of each address group as the Services' status shows it.
    pub fn set_world(&mut self, world: World, previous: BTreeMap<IpAddr, String>) {
        self.world = world;
        self.previous = previous;
        self.dirty = true;
    }

    /// The node's interfaces.
    pub fn set_links(&mut self, links: Vec<LinkInfo>) {
        if links != self.links {
            self.links = links;
            self.dirty = true;
        }
    }

    /// SIGTERM: the runtime leaves the membership; this speaker keeps answering for the grace.
    pub fn leave(&mut self, now: Instant) {
        self.leaving_since.get_or_insert(now);
    }

    /// The dataplane answers for `ip` on `ifaces` (feedback of an [`Action::Answer`]). An
    /// interface where it started answering gets the announcement burst; one that failed is
    /// retried.
    pub fn placed(&mut self, ip: IpAddr, ifaces: Vec<String>, now: Instant) {
        let grew = {
            let before = self.placed.get(&ip);
            ifaces.iter().any(|i| before.is_none_or(|b| !b.contains(i)))
        };
        let short = self.plan.get(&ip).is_some_and(|want| *want != ifaces);
        if short {
            let at = now + self.cfg.retry;
            self.retry_at = Some(self.retry_at.map_or(at, |t| t.min(at)));
        }
        if ifaces.is_empty() {
            self.placed.remove(&ip);
            self.schedule.lose(ip);
        } else {
            if grew {
                self.schedule.restart(ip, now);
            }
            self.placed.insert(ip, ifaces);
        }
    }

    /// Advances the clock to `now`: failures due are acted on, settles and fail-back windows
    /// end, the election runs when an input changed, and the actions are queued. Returns whether
    /// the plan was made again (an election ran or the right to answer changed).
    pub fn tick(&mut self, now: Instant) -> bool {
        // (Not while leaving: the runtime's goodbye to the membership blocks its loop for up to
        // two seconds by design, and the addresses are being handed over anyway.)
        if let Some(expected) = self.expected
            && now > expected + self.cfg.pause
            && self.leaving_since.is_none()
        {
            // Nothing ran while the clock moved: the others may have declared this speaker
            // failed and taken its addresses. Answer nothing until the views settle again.
            self.notice(Notice::Paused {
                late: now - expected,
            });
            self.settle_until = Some(now + self.cfg.settle);
            self.joining.clear();
            self.dirty = true;
        }
        let wait = self.cfg.takeover_wait();
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, t)| **t + wait <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for n in due {
            self.pending.remove(&n);
            self.membership.failed(&n);
            self.notice(Notice::MemberFailed { node: n });
            self.dirty = true;
        }
        let window = self.cfg.settle + self.cfg.failback_margin;
        let before = self.joining.len();
        self.joining.retain(|_, t| *t + window > now);
        if self.joining.len() != before {
            self.dirty = true;
        }
        if self
            .leaving_since
            .is_some_and(|t| now >= t + self.cfg.handover_grace)
            && !self.stopped
        {
            self.stopped = true;
            self.notice(Notice::Stopped);
        }
        if self.dirty {
            self.elect(now);
        }
        // Fencing counts every reported failure, held or not: the owner side of the fencing
        // deadline. Regaining quorum starts a settle, also after a short fence: the others may
        // have moved this speaker's addresses meanwhile (they may report it failed up to the
        // detection spread before it reports them, and take over the fence margin after that).
        let quorum = self.quorum_counting_reports() && !self.isolated();
        if quorum == self.fenced {
            self.fenced = !quorum;
            let (live, known) = (self.membership.live().len(), self.membership.known());
            if quorum {
                self.settle_until = Some(now + self.cfg.settle);
                self.notice(Notice::Settling { live, known });
            } else if self.isolated() {
                self.notice(Notice::Isolated);
            } else {
                let live = live.saturating_sub(self.pending.len());
                self.notice(Notice::QuorumLost { live, known });
            }
        }
        if self.settle_until.is_some_and(|t| now >= t) {
            self.settle_until = None;
        }
        let answering = !self.stopped && !self.fenced && self.settle_until.is_none();
        let replanned = self.dirty || answering != self.answering;
        if replanned {
            self.dirty = false;
            self.answering = answering;
            let plan = if answering {
                self.mine.clone()
            } else {
                Placement::new()
            };
            self.set_plan(plan);
        }
        if self.retry_at.is_some_and(|t| now >= t) {
            self.retry_at = None;
            for (ip, want) in &self.plan {
                if self.placed.get(ip) != Some(want) {
                    self.out.push(Action::Answer {
                        ip: *ip,
                        ifaces: want.clone(),
                    });
                }
            }
        }
        replanned
    }

    /// The runtime is about to sleep; returns when it must tick next: the next deadline, or
    /// [`Config::heartbeat`] from now if that is sooner. A tick much later than that means the
    /// process was not running.
    pub fn idle(&mut self, now: Instant) -> Instant {
        let next = self.next_deadline().unwrap_or(now + self.cfg.heartbeat);
        let wake = next.min(now + self.cfg.heartbeat).max(now);
        self.expected = Some(wake);
        wake
    }

    // ---- outputs ----

    /// The actions to carry out now, announcements due included.
    pub fn take_actions(&mut self, now: Instant) -> Vec<Action> {
        let mut out = std::mem::take(&mut self.out);
        out.extend(
            self.schedule
                .due(now)
                .into_iter()
                .map(|ip| Action::Announce { ip }),
        );
        out
    }

    /// When [`Node::tick`] must run next (the runtime ticks at least every
    /// [`Config::heartbeat`], see [`Node::idle`]).
    pub fn next_deadline(&self) -> Option<Instant> {
        let wait = self.cfg.takeover_wait();
        let window = self.cfg.settle + self.cfg.failback_margin;
        self.schedule
            .next_deadline()
            .into_iter()
            .chain(self.pending.values().map(|t| *t + wait))
            .chain(self.joining.values().map(|t| *t + window))
            .chain(self.settle_until)
            .chain(self.retry_at)
            .chain(
                self.leaving_since
                    .filter(|_| !self.stopped)
                    .map(|t| t + self.cfg.handover_grace),
            )
            .min()
    }

    /// What the dataplane reports running.
    pub fn placement(&self) -> &Placement {
        &self.placed
    }

    /// What this speaker wants running.
    pub fn plan(&self) -> &Placement {
        &self.plan
    }

    /// The last election's decisions.
    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    /// The live members of the last election (joining members included).
    pub fn live(&self) -> &BTreeSet<String> {
        &self.live
    }

    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// Whether this speaker may answer (quorum, settled, not leaving, not paused).
    pub fn answering(&self) -> bool {
        self.answering
    }

    /// Whether this speaker sees a majority (reported failures counted).
    pub fn quorum(&self) -> bool {
        !self.fenced
    }

    /// Whether a majority can exist at all: with fewer than three known speakers fencing is off,
    /// and both sides of a partition answer (as MetalLB does).
    pub fn quorum_possible(&self) -> bool {
        self.membership.known() >= 3
    }

    /// Whether the handover grace is over.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    // ---- internals ----

    fn notice(&mut self, n: Notice) {
        self.out.push(Action::Notice(n));
    }

    /// Alone in the membership while the API lists other Ready nodes: not joined yet (start-up)
    /// or cannot join (wrong key, gossip port blocked). Alone it would elect itself owner of
    /// everything.
    fn isolated(&self) -> bool {
        self.membership.known() == 1
            && self
                .world
                .nodes
                .iter()
                .any(|(n, info)| *n != self.me && info.ready == Some(true))
    }

    /// Quorum with every reported failure counted, held or not: the owner side of the fencing
    /// deadline.
    fn quorum_counting_reports(&self) -> bool {
        let known = self.membership.known();
        let live = self
            .membership
            .live()
            .iter()
            .filter(|n| !self.pending.contains_key(*n))
            .count();
        known <= 2 || 2 * live > known
    }

    fn elect(&mut self, _now: Instant) {
        // The API server's word that a failed member's node is gone or not Ready lets it leave
        // the quorum's denominator (see crate::membership).
        for n in self.membership.names() {
            let gone = self
                .world
                .nodes
                .get(&n)
                .is_none_or(|node| node.ready != Some(true));
            if gone {
                self.membership.forget_if_failed(&n);
            }
        }
        self.live = self.membership.live();
        let electorate: BTreeSet<String> = self
            .live
            .iter()
            .filter(|n| !self.joining.contains_key(*n))
            .cloned()
            .collect();
        self.decisions = elect(&self.world, &electorate, &self.previous, self.cfg.options);
        let mut mine = Placement::new();
        for d in &self.decisions {
            if d.owner.as_deref() != Ok(self.me.as_str()) {
                continue;
            }
            for ip in &d.ips {
                let c = choose(*ip, d.interfaces.as_ref(), &self.links, &self.cfg.excludes);
                if c.chosen.is_empty() {
                    continue;
                }
                let mut chosen = c.chosen;
                chosen.sort_unstable();
                chosen.dedup();
                mine.insert(*ip, chosen);
            }
        }
        self.mine = mine;
    }

    fn set_plan(&mut self, plan: Placement) {
        for (ip, ifaces) in &plan {
            if self.plan.get(ip) != Some(ifaces) {
                self.out.push(Action::Answer {
                    ip: *ip,
                    ifaces: ifaces.clone(),
                });
            }
        }
        for ip in self.plan.keys() {
            if !plan.contains_key(ip) {
                // No announcement of an address being given up, even before the dataplane
                // confirms it stopped.
                self.schedule.lose(*ip);
                self.out.push(Action::StopAnswering { ip: *ip });
            }
        }
        self.plan = plan;
    }
}

#[cfg(test)]
mod tests;
