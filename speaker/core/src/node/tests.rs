//! Story tests of the node state machine: one or a few nodes driven by hand through a sequence of
//! membership events and ticks on a simulated clock, executed by the fake dataplane.

use super::*;
use crate::dataplane::{FakeDataplane, drive};
use crate::election::{NodeInfo, PoolInfo, ServiceInfo};
use ferrolb_model::Advertisement;
use ferrolb_model::IpRange;

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(crate) fn ip(n: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, 64 + n])
}

/// Nodes `n1..=nodes`, all Ready; `services` Services with one address each; one advertisement
/// covering everything.
pub(crate) fn world(nodes: usize, services: u8) -> World {
    let mut w = World::default();
    for i in 1..=nodes {
        w.nodes.insert(
            format!("n{i}"),
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
    for s in 0..services {
        w.services.push(ServiceInfo {
            key: format!("default/s{s}"),
            ips: vec![ip(s)],
            pool: Some("default".into()),
            ..ServiceInfo::default()
        });
    }
    w
}

pub(crate) fn links() -> Vec<LinkInfo> {
    vec![LinkInfo {
        name: "eth0".into(),
        up: true,
        networks: vec!["192.0.2.1/24".parse().unwrap()],
    }]
}

/// A node of a cluster of `nodes` that knows every member alive.
pub(crate) fn node(me: &str, nodes: usize, services: u8, t: Instant) -> Node {
    let mut n = Node::new(me, Config::default());
    n.set_world(world(nodes, services), BTreeMap::new());
    n.set_links(links());
    for i in 1..=nodes {
        n.alive(&format!("n{i}"), t);
    }
    n
}

/// One step of a node: tick, then carry the actions out, then sleep (as the runtime's loop).
fn step(n: &mut Node, dp: &mut FakeDataplane, now: Instant) {
    n.tick(now);
    drive(n, dp, now);
    n.idle(now);
}

/// Steps a node every 10 ms from `from` (exclusive) to `to` (inclusive), as a runtime that wakes
/// at every heartbeat.
fn run(n: &mut Node, dp: &mut FakeDataplane, from: Instant, to: Instant) {
    let mut t = from;
    while t < to {
        t = (t + ms(10)).min(to);
        step(n, dp, t);
    }
}

/// A three-node cluster, settled: every node answers for what it owns.
struct Cluster {
    t0: Instant,
    now: Instant,
    nodes: Vec<(Node, FakeDataplane)>,
}

impl Cluster {
    fn new(services: u8) -> Cluster {
        let t0 = Instant::now();
        let nodes: Vec<(Node, FakeDataplane)> = (1..=3)
            .map(|i| {
                (
                    node(&format!("n{i}"), 3, services, t0),
                    FakeDataplane::default(),
                )
            })
            .collect();
        let mut c = Cluster { t0, now: t0, nodes };
        for (n, dp) in &mut c.nodes {
            step(n, dp, t0);
        }
        c.step(c.at(1000));
        for (n, _) in &c.nodes {
            assert!(n.answering());
        }
        c
    }

    fn at(&self, after_ms: u64) -> Instant {
        self.t0 + ms(after_ms)
    }

    /// Every node steps every 5 ms up to `to`.
    fn step(&mut self, to: Instant) {
        while self.now < to {
            self.now = (self.now + ms(5)).min(to);
            for (n, dp) in &mut self.nodes {
                step(n, dp, self.now);
            }
        }
    }

    /// Indices of the nodes answering for `ip`.
    fn answering(&self, ip: IpAddr) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].1.answering.contains_key(&ip))
            .collect()
    }
}

#[test]
fn settle_then_answer_exactly_what_the_election_gives() {
    let mut c = Cluster::new(12);
    c.step(c.at(1000));
    for s in 0..12 {
        assert_eq!(c.answering(ip(s)).len(), 1, "{} has one owner", ip(s));
    }
    // Placement and plan agree when everything started, and every address was announced.
    for (n, dp) in &c.nodes {
        assert_eq!(n.placement(), n.plan());
        for placed in n.placement().keys() {
            assert!(dp.announced.contains(placed));
        }
    }
}

/// The placement shows only what runs: a responder that fails to start is not placed (so the
/// `Announced` condition cannot name it), it is retried, and the burst starts when it runs.
#[test]
fn a_failed_start_is_retried_and_announced_when_it_runs() {
    let t0 = Instant::now();
    let mut n = node("n1", 1, 1, t0);
    let mut dp = FakeDataplane::default();
    dp.broken.insert("eth0".into());
    step(&mut n, &mut dp, t0);
    assert!(!n.answering(), "settling");
    let t1 = t0 + ms(1000);
    run(&mut n, &mut dp, t0, t1);
    assert!(n.answering());
    assert_eq!(n.plan().get(&ip(0)), Some(&vec!["eth0".to_string()]));
    assert!(n.placement().is_empty(), "nothing runs, nothing is placed");
    assert!(
        dp.announced.is_empty(),
        "no announcement for what does not answer"
    );
    assert_eq!(n.next_deadline(), Some(t1 + ms(1000)), "retry");
    // Still broken at the first retry.
    run(&mut n, &mut dp, t1, t1 + ms(1500));
    assert!(n.placement().is_empty());
    assert!(dp.announced.is_empty());
    // The interface works again: the next retry places it and the burst follows at once.
    dp.broken.clear();
    let t2 = t1 + ms(2000);
    run(&mut n, &mut dp, t1 + ms(1500), t2);
    assert_eq!(n.placement().get(&ip(0)), Some(&vec!["eth0".to_string()]));
    assert_eq!(dp.answering.get(&ip(0)), Some(&vec!["eth0".to_string()]));
    assert_eq!(dp.announced, vec![ip(0)]);
    // The rest of the burst (100, 300, 700 ms) follows the start, not the plan.
    run(&mut n, &mut dp, t2, t2 + ms(700));
    assert_eq!(dp.announced.len(), 4);
    assert_eq!(n.next_deadline().map(|d| d > t2 + ms(5000)), Some(true));
}

/// Two interfaces planned, one fails: the placement names only the one that runs, and the other
/// joins it (with a fresh burst) when it starts.
#[test]
fn a_partial_placement_names_only_what_runs() {
    let t0 = Instant::now();
    let mut n = node("n1", 1, 1, t0);
    let mut l = links();
    l.push(LinkInfo {
        name: "eth1".into(),
        up: true,
        networks: vec!["192.0.2.2/24".parse().unwrap()],
    });
    n.set_links(l);
    let mut dp = FakeDataplane::default();
    dp.broken.insert("eth1".into());
    step(&mut n, &mut dp, t0);
    run(&mut n, &mut dp, t0, t0 + ms(1000));
    let both = vec!["eth0".to_string(), "eth1".to_string()];
    assert_eq!(n.plan().get(&ip(0)), Some(&both));
    assert_eq!(n.placement().get(&ip(0)), Some(&vec!["eth0".to_string()]));
    assert_eq!(dp.announced, vec![ip(0)]);
    dp.broken.clear();
    run(&mut n, &mut dp, t0 + ms(1000), t0 + ms(2000));
    assert_eq!(n.placement().get(&ip(0)), Some(&both));
    assert_eq!(
        dp.announced.len(),
        5,
        "four of the first burst, one of the second"
    );
}

/// A partition cuts the owner off from the other two. Its reports of the others come up to the
/// detection spread later than theirs of it; it stops answering at its reports, and its
/// successor answers only after the takeover wait, later still. (The lab saw both answer for
/// 50 ms when both sides waited the same hold.)
#[test]
fn an_isolated_owner_stops_before_its_successor_answers() {
    let mut c = Cluster::new(12);
    c.step(c.at(1000));
    let cfg = Config::default();
    let x = ip(0);
    let owner = c.answering(x)[0];
    let names: Vec<String> = (1..=3).map(|i| format!("n{i}")).collect();
    let cut = c.at(2000);
    c.step(cut);
    // The majority reports the owner failed at once; the owner reports the others late by the
    // whole detection spread.
    for i in 0..3 {
        if i != owner {
            c.nodes[i].0.failed(&names[owner], cut);
        }
    }
    let owner_reports = cut + cfg.detection_spread;
    let mut stopped = None;
    let mut taken = None;
    let mut t = cut;
    while t <= cut + ms(2000) {
        if t == owner_reports {
            for (i, n) in names.iter().enumerate() {
                if i != owner {
                    c.nodes[owner].0.failed(n, t);
                }
            }
        }
        c.step(t);
        let who = c.answering(x);
        assert!(who.len() <= 1, "two answer for {x} at {:?}", t - cut);
        if stopped.is_none() && !who.contains(&owner) {
            stopped = Some(t - cut);
        }
        if taken.is_none() && who.iter().any(|i| *i != owner) {
            taken = Some(t - cut);
        }
        t += ms(5);
    }
    assert_eq!(stopped, Some(cfg.detection_spread));
    assert_eq!(taken, Some(cfg.takeover_wait()));
    assert!(!c.nodes[owner].0.quorum(), "confirmed fence after the wait");
    assert!(c.nodes[owner].0.placement().is_empty());
}

/// A failure refuted within the hold (a member returning from a short isolation gossips the deaths
/// it concluded alone) moves nothing.
#[test]
fn a_refuted_failure_moves_nothing() {
    let mut c = Cluster::new(12);
    let before: Vec<Vec<usize>> = (0..12).map(|s| c.answering(ip(s))).collect();
    let t = c.at(2000);
    c.step(t);
    c.nodes[0].0.failed("n2", t);
    c.step(t + ms(60));
    c.nodes[0].0.alive("n2", t + ms(60));
    c.step(t + ms(1000));
    let after: Vec<Vec<usize>> = (0..12).map(|s| c.answering(ip(s))).collect();
    assert_eq!(before, after, "nothing moved, nobody stopped");
}

/// A speaker that sees a majority reported failed stops at once; even when the reports are
/// refuted soon after, it settles before answering again: the others may have taken its
/// addresses meanwhile.
#[test]
fn a_short_fence_is_followed_by_a_settle() {
    let mut c = Cluster::new(12);
    let t = c.at(2000);
    c.step(t);
    let mine = c.nodes[0].1.answering.len();
    assert!(mine > 0);
    c.nodes[0].0.failed("n2", t);
    c.nodes[0].0.failed("n3", t);
    c.step(t + ms(5));
    assert!(
        c.nodes[0].1.answering.is_empty(),
        "n1 sees a minority: fenced at once"
    );
    assert!(!c.nodes[0].0.quorum());
    c.step(t + ms(60));
    c.nodes[0].0.alive("n2", t + ms(60));
    c.nodes[0].0.alive("n3", t + ms(60));
    // Quorum again at the next tick (t + 65 ms), answering a settle later.
    c.step(t + ms(1060));
    assert!(c.nodes[0].1.answering.is_empty(), "settling");
    c.step(t + ms(1065));
    assert_eq!(c.nodes[0].1.answering.len(), mine);
}

/// Fail-back is make-before-break: the interim owner keeps an address moving back to a returning
/// node until that node's settle is over (plus the margin); at every instant someone answers, and
/// two answer at most for the margin. (The lab saw a second with nobody answering when the
/// interim owner let go at the join.)
#[test]
fn a_returning_owner_takes_its_addresses_back_make_before_break() {
    let mut c = Cluster::new(12);
    let cfg = Config::default();
    let death = c.at(2000);
    c.step(death);
    // n1 dies: n2 and n3 take its addresses after the takeover wait.
    let mine: Vec<IpAddr> = c.nodes[0].0.placement().keys().copied().collect();
    assert!(!mine.is_empty(), "n1 owns something of 12");
    for i in 1..3 {
        c.nodes[i].0.failed("n1", death);
    }
    let (_, mut n1_dp) = c.nodes.remove(0);
    n1_dp.answering.clear();
    n1_dp.announced.clear();
    c.step(death + ms(500));
    for x in &mine {
        assert_eq!(c.answering(*x).len(), 1, "{x} has an interim owner");
    }
    // n1 starts again and joins: it and the others see each other in one exchange.
    let back = c.at(3000);
    c.step(back);
    let mut n1 = Node::new("n1", Config::default());
    n1.set_world(world(3, 12), BTreeMap::new());
    n1.set_links(links());
    for name in ["n1", "n2", "n3"] {
        n1.alive(name, back);
    }
    step(&mut n1, &mut n1_dp, back);
    for (n, _) in &mut c.nodes {
        n.alive("n1", back);
    }
    c.nodes.insert(0, (n1, n1_dp));
    let mut t = back;
    let mut overlap = Duration::ZERO;
    while t < back + ms(2000) {
        t += ms(5);
        c.step(t);
        for x in &mine {
            let who = c.answering(*x);
            assert!(
                !who.is_empty(),
                "nobody answers {x} at {:?} after the return",
                t - back
            );
            if who.len() > 1 {
                overlap += ms(5);
            }
        }
    }
    for x in &mine {
        assert_eq!(c.answering(*x), vec![0], "{x} is back on n1");
        assert!(c.nodes[0].1.announced.contains(x), "n1 announced {x}");
    }
    // Each moving address overlaps for the margin (sampled every 5 ms).
    let per = overlap / u32::try_from(mine.len()).unwrap();
    assert!(per <= cfg.failback_margin + ms(5), "overlap {per:?}");
}

/// A process that did not run (SIGSTOP, paused VM) notices the clock jump at its next tick, stops
/// answering and answers again only after a settle.
#[test]
fn a_pause_stops_answering_until_the_view_settles_again() {
    let t0 = Instant::now();
    let mut n = node("n1", 1, 3, t0);
    let mut dp = FakeDataplane::default();
    step(&mut n, &mut dp, t0);
    run(&mut n, &mut dp, t0, t0 + ms(1200));
    assert_eq!(dp.answering.len(), 3);
    // Frozen for 4 s from the moment it went to sleep.
    let thaw = t0 + ms(1200) + ms(4000);
    n.tick(thaw);
    let actions = n.take_actions(thaw);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Notice(Notice::Paused { .. })))
    );
    let stops = actions
        .iter()
        .filter(|a| matches!(a, Action::StopAnswering { .. }))
        .count();
    assert_eq!(stops, 3, "stops every address before anything else");
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Announce { .. })),
        "no stale announcement"
    );
    n.out = actions;
    drive(&mut n, &mut dp, thaw);
    n.idle(thaw);
    assert!(dp.answering.is_empty());
    run(&mut n, &mut dp, thaw, thaw + ms(990));
    assert!(dp.answering.is_empty(), "settling");
    run(&mut n, &mut dp, thaw + ms(990), thaw + ms(1000));
    assert_eq!(dp.answering.len(), 3, "answering again after the settle");
    // A wake-up late by less than the pause threshold is not a pause.
    let t = thaw + ms(1000);
    let late = n.next_deadline().unwrap().min(t + ms(100)).max(t) + ms(200);
    step(&mut n, &mut dp, late);
    assert_eq!(dp.answering.len(), 3);
}

/// SIGTERM: the successors take over at once on the graceful leave, the leaving node keeps
/// answering for the grace period, then stops.
#[test]
fn a_leaving_node_answers_through_its_grace() {
    let mut c = Cluster::new(12);
    c.step(c.at(1000));
    let mine: Vec<IpAddr> = c.nodes[0].0.placement().keys().copied().collect();
    let t = c.at(2000);
    c.step(t);
    c.nodes[0].0.leave(t);
    for i in 1..3 {
        c.nodes[i].0.left("n1", t);
    }
    c.step(t + ms(5));
    for x in &mine {
        assert_eq!(
            c.answering(*x).len(),
            2,
            "{x}: both answer during the grace"
        );
    }
    c.step(t + ms(999));
    assert!(!c.nodes[0].1.answering.is_empty());
    c.step(t + ms(1000));
    assert!(c.nodes[0].1.answering.is_empty());
    assert!(c.nodes[0].0.stopped());
    for x in &mine {
        assert_eq!(c.answering(*x).len(), 1);
    }
}

#[test]
fn two_speakers_cannot_form_a_majority() {
    let t0 = Instant::now();
    let mut n = node("n1", 2, 1, t0);
    n.tick(t0);
    assert!(!n.quorum_possible());
    n.alive("n3", t0);
    n.tick(t0);
    assert!(n.quorum_possible());
}

/// A speaker alone in the membership while the API lists other Ready nodes answers nothing.
#[test]
fn alone_while_others_are_ready_answers_nothing() {
    let t0 = Instant::now();
    let mut n = Node::new("n1", Config::default());
    n.set_world(world(3, 3), BTreeMap::new());
    n.set_links(links());
    let mut dp = FakeDataplane::default();
    step(&mut n, &mut dp, t0);
    run(&mut n, &mut dp, t0, t0 + ms(2000));
    assert!(!n.quorum());
    assert!(dp.answering.is_empty());
    n.alive("n2", t0 + ms(2000));
    step(&mut n, &mut dp, t0 + ms(2000));
    run(&mut n, &mut dp, t0 + ms(2000), t0 + ms(3000));
    assert!(n.answering());
    assert!(!dp.answering.is_empty(), "n1 answers for its share");
}
