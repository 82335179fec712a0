//! Deterministic simulation of a cluster of speakers: the node state machines of
//! `ferrolb-speaker-core`, each with a fake dataplane, connected by a simulated membership layer on
//! a simulated clock, with message loss, delay, partitions, freezes and churn. The model is raft-rs's
//! `harness/src/network.rs` (in-process nodes, a network that drops and delays what passes between
//! them); here what passes are membership events, because that is all a speaker hears from the
//! others.
//!
//! The membership layer models memberlist as the speaker configures it:
//! - a member that stops hearing another reports it failed `DETECT_MIN` to
//!   `DETECT_MIN + DETECT_SPREAD` after the cut (probe, ack timeout, indirect probe, suspicion),
//!   the spread being below the core's `Config::detection_spread`;
//! - a lost message makes a member report a healthy one failed now and then; the report is
//!   refuted within `REFUTE_MAX`, well within the failure hold;
//! - members that can reach each other again merge their views: within `SKEW` after a thaw (the
//!   thawed speaker notices the pause and its runtime joins every peer at once; a freeze too short
//!   to notice is refuted as below), within `REPAIR_MAX` when the reports are younger than 2 s
//!   (memberlist gossips to the dead for 2 s, and the dead refute), else within `JOIN_MAX` (the
//!   runtime's joiner runs every 2 s); each member of the merged component hears of it up to
//!   `SKEW` apart (gossip is not instantaneous).
//!
//! Properties: never two speakers answering one address at one instant, except the make-before-
//! break overlap of a fail-back (bounded by the fail-back margin plus the skew); a partition fences
//! the minority before the majority takes over; churn moves only the departed node's addresses.

// A test crate: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ferrolb_model::Advertisement;
use ferrolb_model::IpRange;
use ferrolb_speaker_core::dataplane::{FakeDataplane, drive};
use ferrolb_speaker_core::interfaces::LinkInfo;
use ferrolb_speaker_core::node::{Config, Node};
use ferrolb_speaker_core::{NodeInfo, PoolInfo, ServiceInfo, World};
use proptest::prelude::*;

const STEP: Duration = Duration::from_millis(5);
const DETECT_MIN: Duration = Duration::from_millis(240);
const DETECT_SPREAD: Duration = Duration::from_millis(150);
const REFUTE_MAX: Duration = Duration::from_millis(80);
const REPAIR_MAX: Duration = Duration::from_millis(50);
const JOIN_MAX: Duration = Duration::from_millis(2000);
const SKEW: Duration = Duration::from_millis(10);
const SERVICES: u8 = 16;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn ip(n: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, 64 + n])
}

/// A small deterministic generator (xorshift64*), seeded by proptest.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, max]`, in steps of a millisecond.
    fn upto(&mut self, max: Duration) -> Duration {
        let m = u64::try_from(max.as_millis()).unwrap();
        ms(self.next() % (m + 1))
    }

    fn chance(&mut self, per_million: u64) -> bool {
        self.next() % 1_000_000 < per_million
    }
}

fn world(nodes: usize) -> World {
    let mut w = World::default();
    for i in 0..nodes {
        w.nodes.insert(
            name(i),
            NodeInfo {
                ready: Some(true),
                ..NodeInfo::default()
            },
        );
    }
    w.pools.insert(
        "default".into(),
        PoolInfo {
            labels: BTreeMap::new(),
            ranges: vec![IpRange::cidr(ip(0), 26).unwrap()],
        },
    );
    w.advertisements.push(Advertisement::everything("all"));
    for s in 0..SERVICES {
        w.services.push(ServiceInfo {
            key: format!("default/s{s}"),
            ips: vec![ip(s)],
            pool: Some("default".into()),
            ..ServiceInfo::default()
        });
    }
    w
}

fn name(i: usize) -> String {
    format!("n{i}")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ev {
    Alive(usize),
    Failed(usize),
    Left(usize),
}

/// One speaker process.
#[derive(Debug)]
struct Speaker {
    node: Node,
    dp: FakeDataplane,
    frozen: bool,
    /// The process is gone (killed, or left and done).
    gone: bool,
    inbox: Vec<(Instant, Ev)>,
}

/// The simulated cluster.
#[derive(Debug)]
struct Sim {
    rng: Rng,
    t0: Instant,
    now: Instant,
    speakers: Vec<Speaker>,
    /// Partition group of each node: nodes hear each other only within a group.
    group: Vec<u8>,
    /// What the membership layer of `i` last reported about `j`.
    seen_alive: Vec<Vec<bool>>,
    /// When `i` stopped hearing `j`, and after how long it reports it.
    lost: Vec<Vec<Option<(Instant, Duration)>>>,
    /// When `i` reported `j` failed.
    failed_at: Vec<Vec<Option<Instant>>>,
    /// When the next merge of stale views happens.
    merge_at: Option<Instant>,
    /// A thaw happened: the next merge is quick.
    thawed: bool,
    /// Per-million chance per step and pair of a spurious, refuted failure report.
    loss: u64,
    /// Per address, the nodes answering at the last step, and since when two answer.
    overlap_since: BTreeMap<IpAddr, Instant>,
    /// Longest overlap seen, and when it ended, per address.
    overlaps: Vec<(IpAddr, Duration, Duration)>,
    /// Every step: the time since t0, an address, and the nodes answering it.
    log: Vec<(Duration, IpAddr, Vec<usize>)>,
}

impl Sim {
    fn new(n: usize, seed: u64) -> Sim {
        let t0 = Instant::now();
        let mut speakers = Vec::new();
        for i in 0..n {
            let mut node = Node::new(&name(i), Config::default());
            node.set_world(world(n), BTreeMap::new());
            node.set_links(vec![LinkInfo {
                name: "eth0".into(),
                up: true,
                networks: vec!["192.0.2.1/24".parse().unwrap()],
            }]);
            for j in 0..n {
                node.alive(&name(j), t0);
            }
            speakers.push(Speaker {
                node,
                dp: FakeDataplane::default(),
                frozen: false,
                gone: false,
                inbox: Vec::new(),
            });
        }
        Sim {
            rng: Rng(seed | 1),
            t0,
            now: t0,
            speakers,
            group: vec![0; n],
            seen_alive: vec![vec![true; n]; n],
            lost: vec![vec![None; n]; n],
            failed_at: vec![vec![None; n]; n],
            merge_at: None,
            thawed: false,
            loss: 0,
            overlap_since: BTreeMap::new(),
            overlaps: Vec::new(),
            log: Vec::new(),
        }
    }

    fn n(&self) -> usize {
        self.speakers.len()
    }

    fn running(&self, i: usize) -> bool {
        !self.speakers[i].frozen && !self.speakers[i].gone
    }

    fn reach(&self, i: usize, j: usize) -> bool {
        self.running(i) && self.running(j) && self.group[i] == self.group[j]
    }

    fn send(&mut self, to: usize, at: Instant, ev: Ev) {
        self.speakers[to].inbox.push((at, ev));
    }

    /// The membership layer: detections, spurious reports, merges.
    fn membership(&mut self) {
        let n = self.n();
        let now = self.now;
        let mut stale = false;
        let mut recent = false;
        for i in 0..n {
            if !self.running(i) {
                continue;
            }
            for j in (0..n).filter(|j| *j != i) {
                if self.speakers[j].gone && !self.seen_alive[i][j] {
                    continue;
                }
                let reach = self.reach(i, j);
                if self.seen_alive[i][j] {
                    if reach {
                        self.lost[i][j] = None;
                        if self.rng.chance(self.loss) {
                            let back = now + ms(10) + self.rng.upto(REFUTE_MAX - ms(10));
                            self.send(i, now, Ev::Failed(j));
                            self.send(i, back, Ev::Alive(j));
                        }
                    } else {
                        let d = DETECT_MIN + self.rng.upto(DETECT_SPREAD);
                        let (since, d) = *self.lost[i][j].get_or_insert((now, d));
                        if now >= since + d {
                            self.seen_alive[i][j] = false;
                            self.lost[i][j] = None;
                            self.failed_at[i][j] = Some(now);
                            self.send(i, now, Ev::Failed(j));
                        }
                    }
                } else if reach {
                    stale = true;
                    recent |= self.failed_at[i][j].is_some_and(|t| now < t + ms(2000));
                }
            }
        }
        if !stale {
            self.merge_at = None;
            return;
        }
        if self.merge_at.is_none() {
            let max = if self.thawed {
                SKEW
            } else if recent {
                REPAIR_MAX
            } else {
                JOIN_MAX
            };
            self.merge_at = Some(now + self.rng.upto(max));
        }
        self.thawed = false;
        if self.merge_at.is_some_and(|t| now >= t) {
            self.merge_at = None;
            for i in 0..n {
                for j in 0..n {
                    if i != j && self.reach(i, j) && !self.seen_alive[i][j] {
                        self.seen_alive[i][j] = true;
                        let at = now + self.rng.upto(SKEW);
                        self.send(i, at, Ev::Alive(j));
                    }
                }
            }
        }
    }

    fn step(&mut self) {
        self.now += STEP;
        let now = self.now;
        self.membership();
        for i in 0..self.n() {
            if !self.running(i) {
                continue;
            }
            let seen = self.seen_alive[i].clone();
            let sp = &mut self.speakers[i];
            let (due, later): (Vec<_>, Vec<_>) = sp.inbox.drain(..).partition(|(t, _)| *t <= now);
            sp.inbox = later;
            for (_, ev) in due {
                match ev {
                    // The refutation of a spurious report that a real detection overtook.
                    Ev::Alive(j) if !seen[j] => {}
                    Ev::Alive(j) => sp.node.alive(&name(j), now),
                    Ev::Failed(j) => sp.node.failed(&name(j), now),
                    Ev::Left(j) => sp.node.left(&name(j), now),
                }
            }
            sp.node.tick(now);
            drive(&mut sp.node, &mut sp.dp, now);
            sp.node.idle(now);
            if sp.node.stopped() {
                sp.gone = true;
                sp.dp.answering.clear();
            }
        }
        self.check();
    }

    /// Who answers each address now (a frozen process answers nothing: its responder thread is
    /// frozen too).
    fn answering(&self) -> BTreeMap<IpAddr, Vec<usize>> {
        let mut out: BTreeMap<IpAddr, Vec<usize>> = BTreeMap::new();
        for (i, sp) in self.speakers.iter().enumerate() {
            if !self.running(i) {
                continue;
            }
            for ip in sp.dp.answering.keys() {
                out.entry(*ip).or_default().push(i);
            }
        }
        out
    }

    fn check(&mut self) {
        let now = self.now;
        let who = self.answering();
        for s in 0..SERVICES {
            let x = ip(s);
            let w = who.get(&x).cloned().unwrap_or_default();
            if w.len() > 1 {
                self.overlap_since.entry(x).or_insert(now);
            } else if let Some(since) = self.overlap_since.remove(&x) {
                self.overlaps.push((x, now - since, since - self.t0));
            }
            self.log.push((now - self.t0, x, w));
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    /// The owner of each address now (the single answering node), when every address has one.
    fn owners(&self) -> BTreeMap<IpAddr, usize> {
        self.answering()
            .into_iter()
            .filter(|(_, w)| w.len() == 1)
            .map(|(x, w)| (x, w[0]))
            .collect()
    }

    fn freeze(&mut self, i: usize) {
        self.speakers[i].frozen = true;
    }

    fn thaw(&mut self, i: usize) {
        self.speakers[i].frozen = false;
        self.thawed = true;
    }

    fn partition(&mut self, minority: &BTreeSet<usize>) {
        for i in 0..self.n() {
            self.group[i] = u8::from(minority.contains(&i));
        }
    }

    fn heal(&mut self) {
        self.group = vec![0; self.n()];
    }

    /// Overlaps (ongoing ones included) longer than what a fail-back may take: the margin, the
    /// join exchange and the gossip that spreads it, and the sampling.
    fn long_overlaps(&self) -> Vec<(IpAddr, Duration, Duration)> {
        let bound = Config::default().failback_margin + SKEW * 2 + STEP * 2;
        let ongoing = self
            .overlap_since
            .iter()
            .map(|(x, since)| (*x, self.now - *since, *since - self.t0));
        self.overlaps
            .iter()
            .cloned()
            .chain(ongoing)
            .filter(|(_, d, _)| *d > bound)
            .collect()
    }

    /// A settled cluster: every address has exactly one owner.
    fn settled(n: usize, seed: u64) -> Sim {
        let mut sim = Sim::new(n, seed);
        sim.run_for(ms(1500));
        assert_eq!(sim.owners().len(), usize::from(SERVICES), "settled");
        sim.overlaps.clear();
        sim
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// A partition that cuts off a minority (the owner of some addresses among it): the minority
    /// stops answering before the majority answers, at every instant at most one answers, and
    /// after the heal each address has one owner again with only the fail-back overlap.
    #[test]
    fn a_partition_never_has_two_sides_answering(
        seed in any::<u64>(),
        n in 3usize..=5,
        cut_off in 1usize..=2,
        lasts_ms in 100u64..4000,
        lossy in any::<bool>(),
    ) {
        let mut sim = Sim::settled(n, seed);
        sim.loss = if lossy { 500 } else { 0 };
        let minority: BTreeSet<usize> = (0..cut_off.min((n - 1) / 2)).collect();
        let before = sim.owners();
        let cut = sim.now;
        sim.partition(&minority);
        // The minority's addresses: when the minority stopped, when the majority started.
        let moving: Vec<IpAddr> = before
            .iter()
            .filter(|(_, o)| minority.contains(o))
            .map(|(x, _)| *x)
            .collect();
        sim.run_for(ms(lasts_ms));
        sim.heal();
        sim.loss = 0;
        sim.run_for(JOIN_MAX + ms(3000));
        prop_assert!(sim.long_overlaps().is_empty(), "overlaps: {:?}", sim.long_overlaps());
        // No overlap at all while the partition lasted.
        let during = cut - sim.t0 + ms(lasts_ms);
        prop_assert!(
            sim.overlaps.iter().all(|(_, _, since)| *since > during),
            "overlap during the partition: {:?}", sim.overlaps
        );
        for x in &moving {
            let last_minority = sim
                .log
                .iter()
                .filter(|(t, y, w)| y == x && *t <= during && w.iter().any(|i| minority.contains(i)))
                .map(|(t, _, _)| *t)
                .max();
            let first_majority = sim
                .log
                .iter()
                .filter(|(t, y, w)| y == x && *t <= during && w.iter().any(|i| !minority.contains(i)))
                .map(|(t, _, _)| *t)
                .min();
            if let (Some(stop), Some(start)) = (last_minority, first_majority) {
                prop_assert!(stop < start, "{x}: minority answered until {stop:?}, majority from {start:?}");
            }
        }
        prop_assert_eq!(sim.owners().len(), usize::from(SERVICES), "one owner each after the heal");
    }

    /// A frozen process (SIGSTOP, paused VM): it answers nothing while frozen, its addresses move,
    /// and once thawed it answers only after settling; at no instant do two answer beyond the
    /// fail-back overlap.
    #[test]
    fn a_freeze_never_has_two_answering(
        seed in any::<u64>(),
        n in 3usize..=5,
        victim in 0usize..5,
        frozen_ms in 50u64..5000,
    ) {
        let mut sim = Sim::settled(n, seed);
        let victim = victim % n;
        sim.freeze(victim);
        sim.run_for(ms(frozen_ms));
        sim.thaw(victim);
        sim.run_for(ms(3000));
        prop_assert!(sim.long_overlaps().is_empty(), "overlaps: {:?}", sim.long_overlaps());
        prop_assert_eq!(sim.owners().len(), usize::from(SERVICES));
    }

    /// Churn: a node leaves (gracefully or by dying); only the addresses it owned move, and the
    /// others are answered throughout by the same node.
    #[test]
    fn churn_moves_only_the_departed_nodes_addresses(
        seed in any::<u64>(),
        n in 3usize..=6,
        victim in 0usize..6,
        graceful in any::<bool>(),
    ) {
        let mut sim = Sim::settled(n, seed);
        let victim = victim % n;
        let before = sim.owners();
        let mark = sim.now - sim.t0;
        if graceful {
            let now = sim.now;
            sim.speakers[victim].node.leave(now);
            for j in (0..n).filter(|j| *j != victim) {
                let at = now + sim.rng.upto(SKEW);
                sim.send(j, at, Ev::Left(victim));
            }
        } else {
            sim.speakers[victim].gone = true;
            sim.speakers[victim].dp.answering.clear();
        }
        sim.run_for(ms(2000));
        let after = sim.owners();
        prop_assert_eq!(after.len(), usize::from(SERVICES));
        for (x, o) in &before {
            if *o == victim {
                prop_assert_ne!(after[x], victim);
            } else {
                prop_assert_eq!(after[x], *o, "{} moved", x);
                let steady = sim
                    .log
                    .iter()
                    .filter(|(t, y, _)| y == x && *t > mark)
                    .all(|(_, _, w)| w == &vec![*o]);
                prop_assert!(steady, "{} was not answered by its owner throughout", x);
            }
        }
    }
}

/// One fixed story through the simulation: the owner of 192.0.2.64 in a cluster of three is cut
/// off; the others take over after the fencing deadline and give the addresses back when it
/// returns, with someone answering at every instant after the takeover.
#[test]
fn story_partition_and_heal_in_a_cluster_of_three() {
    let mut sim = Sim::settled(3, 7);
    let owners = sim.owners();
    let victim = owners[&ip(0)];
    let cut = sim.now;
    sim.partition(&BTreeSet::from([victim]));
    sim.run_for(ms(2000));
    assert!(
        !sim.speakers[victim].node.quorum(),
        "the minority is fenced"
    );
    assert!(sim.speakers[victim].dp.answering.is_empty());
    let after = sim.owners();
    assert_eq!(
        after.len(),
        usize::from(SERVICES),
        "the majority answers for everything"
    );
    assert_ne!(after[&ip(0)], victim);
    // Failover: the majority took the address between the earliest detection plus the takeover
    // wait and the latest plus the wait.
    let wait = Config::default().takeover_wait();
    let start = sim
        .log
        .iter()
        .filter(|(t, y, w)| *y == ip(0) && *t > cut - sim.t0 && w.iter().any(|i| *i != victim))
        .map(|(t, _, _)| *t)
        .min()
        .unwrap();
    let took = start - (cut - sim.t0);
    assert!(
        took >= DETECT_MIN + wait && took <= DETECT_MIN + DETECT_SPREAD + wait + STEP * 2,
        "took over after {took:?}"
    );
    sim.heal();
    sim.run_for(JOIN_MAX + ms(2000));
    assert_eq!(sim.owners(), owners, "everything back where it was");
    assert!(sim.long_overlaps().is_empty(), "{:?}", sim.long_overlaps());
}
