//! Stories of the control-plane VIP core: each test walks one transition and asserts the exact
//! actions. `ms(n)` is `n` milliseconds after the start of the story.

use super::*;

const ET: Duration = Duration::from_millis(300);
const MARGIN: Duration = Duration::from_millis(60);

fn timing() -> Timing {
    Timing {
        election_timeout: ET,
        fence_margin: MARGIN,
        health_stale_after: Duration::from_secs(2),
        transfer_retry: ET,
        announce: schedule::Timing {
            burst: [0, 100, 300].map(Duration::from_millis).to_vec(),
            refresh: Duration::from_secs(3),
        },
    }
}

fn vip() -> IpAddr {
    "192.0.2.60".parse().unwrap()
}

struct Story {
    t0: Instant,
}

impl Story {
    fn new() -> Story {
        Story { t0: Instant::now() }
    }
    fn ms(&self, n: u64) -> Instant {
        self.t0 + Duration::from_millis(n)
    }
}

fn node(id: u64) -> ControlPlane {
    ControlPlane::new(id, [1, 2, 3], vip(), timing())
}

fn leader(term: u64, id: u64) -> RaftView {
    RaftView {
        role: Role::Leader,
        term,
        leader: Some(id),
    }
}

fn follower(term: u64, leader: Option<u64>) -> RaftView {
    RaftView {
        role: Role::Follower,
        term,
        leader,
    }
}

/// The actions other than announcements (for stories about something else).
fn quiet(actions: Vec<Action>) -> Vec<Action> {
    actions
        .into_iter()
        .filter(|a| *a != Action::Announce)
        .collect()
}

/// A healthy node 1 that won term 2 at `ms(0)` and has waited out the fence.
fn holding_leader(s: &Story) -> ControlPlane {
    let mut n = node(1);
    n.observe_health(s.ms(0), Health::Healthy);
    n.observe_raft(s.ms(0), leader(2, 1));
    n.quorum_ack(s.ms(200));
    let at = s.ms(360);
    n.quorum_ack(at);
    assert_eq!(n.poll(at), vec![Action::AddVip, Action::Announce]);
    n
}

#[test]
fn a_follower_never_holds_and_campaigns_only_while_healthy() {
    let s = Story::new();
    let mut n = node(2);
    // Unknown health at start (no check finished): no campaign.
    assert!(!n.may_campaign(s.ms(0)));
    n.observe_raft(s.ms(0), follower(1, Some(1)));
    assert_eq!(n.poll(s.ms(0)), vec![]);
    n.observe_health(s.ms(10), Health::Healthy);
    assert!(n.may_campaign(s.ms(10)));
    assert_eq!(n.poll(s.ms(10)), vec![]);
    assert_eq!(n.waiting(s.ms(10)), Some(Waiting::NotLeader));
    n.observe_health(s.ms(20), Health::Unhealthy);
    assert!(!n.may_campaign(s.ms(20)));
    // Candidates (§5.2) and pre-candidates (thesis §9.6) hold nothing either.
    for role in [Role::PreCandidate, Role::Candidate] {
        n.observe_health(s.ms(30), Health::Healthy);
        n.observe_raft(
            s.ms(30),
            RaftView {
                role,
                term: 2,
                leader: None,
            },
        );
        assert_eq!(n.poll(s.ms(30)), vec![]);
    }
}

/// Fencing: a new leader (elected by a majority, Raft §5.2) waits one election timeout, the old
/// leader's check-quorum window (thesis §6.2), plus the margin before it adds the VIP.
#[test]
fn a_new_leader_waits_out_the_old_leaders_quorum_window() {
    let s = Story::new();
    let mut n = node(1);
    n.observe_health(s.ms(0), Health::Healthy);
    n.observe_raft(s.ms(5), leader(2, 1));
    for t in [5, 100, 200, 300, 364] {
        n.quorum_ack(s.ms(t));
        assert_eq!(n.poll(s.ms(t)), vec![], "at {t} ms");
    }
    assert_eq!(
        n.waiting(s.ms(364)),
        Some(Waiting::Fence {
            until: s.ms(5 + 300 + 60)
        })
    );
    // 5 ms (election) + 300 ms (election timeout) + 60 ms (margin).
    n.quorum_ack(s.ms(365));
    assert_eq!(n.poll(s.ms(365)), vec![Action::AddVip, Action::Announce]);
    assert!(n.holding());
    assert_eq!(n.poll(s.ms(366)), vec![]);
}

#[test]
fn the_announcement_burst_then_the_refresh() {
    let s = Story::new();
    let mut n = holding_leader(&s); // added and first announcement at 360 ms
    let mut announced = Vec::new();
    for t in (361..=3_700).step_by(10) {
        n.quorum_ack(s.ms(t));
        n.observe_health(s.ms(t), Health::Healthy);
        for a in n.poll(s.ms(t)) {
            assert_eq!(a, Action::Announce, "at {t} ms");
            announced.push(t);
        }
    }
    // Burst at +100 and +300 ms (polled every 10 ms), then the refresh about 3 s later.
    assert_eq!(&announced[..2], &[461, 661]);
    assert_eq!(announced.len(), 3, "{announced:?}");
    assert!((3_661..=4_700).contains(&announced[2]), "{announced:?}");
}

#[test]
fn losing_leadership_removes_the_vip_at_once() {
    let s = Story::new();
    let mut n = holding_leader(&s);
    // A higher term seen (another node won, §5.1): follower at once.
    n.observe_raft(s.ms(400), follower(3, Some(2)));
    assert_eq!(
        n.poll(s.ms(400)),
        vec![Action::RemoveVip(RemoveReason::LostLeadership)]
    );
    assert!(!n.holding());
    assert_eq!(n.poll(s.ms(401)), vec![]);
}

#[test]
fn an_unhealthy_leader_removes_the_vip_and_hands_over_to_a_healthy_peer() {
    let s = Story::new();
    let mut n = holding_leader(&s);
    n.observe_peer_health(s.ms(380), 2, Health::Unhealthy);
    n.observe_peer_health(s.ms(390), 3, Health::Healthy);
    n.observe_health(s.ms(400), Health::Unhealthy);
    n.quorum_ack(s.ms(400));
    assert_eq!(
        n.poll(s.ms(400)),
        vec![
            Action::RemoveVip(RemoveReason::Unhealthy),
            Action::TransferLeader { to: 3 }
        ]
    );
    // raft-rs abandons a transfer after an election timeout; asked again only then.
    n.quorum_ack(s.ms(650));
    assert_eq!(n.poll(s.ms(650)), vec![]);
    n.quorum_ack(s.ms(700));
    assert_eq!(n.poll(s.ms(700)), vec![Action::TransferLeader { to: 3 }]);
    // The transfer completes: node 3 leads term 3.
    n.observe_raft(s.ms(720), follower(3, Some(3)));
    assert_eq!(n.poll(s.ms(720)), vec![]);
}

#[test]
fn an_unhealthy_leader_without_a_healthy_peer_holds_nothing_and_keeps_leading() {
    let s = Story::new();
    let mut n = holding_leader(&s);
    n.observe_peer_health(s.ms(380), 2, Health::Unhealthy);
    n.observe_health(s.ms(400), Health::Unhealthy);
    assert_eq!(
        n.poll(s.ms(400)),
        vec![Action::RemoveVip(RemoveReason::Unhealthy)]
    );
    assert_eq!(n.transfer_target(s.ms(400)), None);
    // Its API server comes back: it holds the VIP again at once (same term, fence long passed).
    n.observe_health(s.ms(500), Health::Healthy);
    n.quorum_ack(s.ms(500));
    assert_eq!(n.poll(s.ms(500)), vec![Action::AddVip, Action::Announce]);
}

#[test]
fn a_stale_health_result_counts_as_unhealthy() {
    let s = Story::new();
    let mut n = holding_leader(&s); // last check at 0 ms, trusted for 2 s
    for t in (400..=2_000).step_by(100) {
        n.quorum_ack(s.ms(t));
        assert_eq!(quiet(n.poll(s.ms(t))), vec![], "at {t} ms");
    }
    n.quorum_ack(s.ms(2_001));
    assert_eq!(n.health(s.ms(2_001)), Health::Unknown);
    assert_eq!(
        n.poll(s.ms(2_001)),
        vec![Action::RemoveVip(RemoveReason::Unhealthy)]
    );
    assert!(!n.may_campaign(s.ms(2_001)));
}

/// Check-quorum (thesis §6.2): a leader that has not heard from a quorum for an election timeout
/// may have been replaced; this core drops the VIP then, without waiting for Raft to step down.
#[test]
fn losing_the_quorum_removes_the_vip_and_regaining_it_restarts_the_fence() {
    let s = Story::new();
    let mut n = holding_leader(&s); // last quorum ack at 360 ms
    assert_eq!(quiet(n.poll(s.ms(659))), vec![]);
    assert_eq!(
        n.poll(s.ms(660)),
        vec![Action::RemoveVip(RemoveReason::LostQuorum)]
    );
    // The partition heals in the same term: another leader may have held the VIP meanwhile, so
    // the fence starts again from the regained acknowledgement.
    n.quorum_ack(s.ms(900));
    assert_eq!(n.poll(s.ms(900)), vec![]);
    assert_eq!(
        n.waiting(s.ms(900)),
        Some(Waiting::Fence {
            until: s.ms(900 + 360)
        })
    );
    n.quorum_ack(s.ms(1_100));
    n.quorum_ack(s.ms(1_260));
    assert_eq!(n.poll(s.ms(1_260)), vec![Action::AddVip, Action::Announce]);
}

/// Two nodes across a partition: the old leader's last quorum acknowledgement comes at most the
/// margin after the new leader's election (the voter in both majorities stopped acknowledging
/// when it voted, §5.2); the old leader removes the VIP before the new one adds it.
#[test]
fn old_and_new_leader_never_hold_at_once() {
    let s = Story::new();
    let elected = 1_000;
    // The old leader's last quorum acknowledgement: well before the election, at it, and just
    // inside the margin after it.
    for last_ack in [700u64, 1_000, 1_059] {
        let mut old = holding_leader(&s); // holds from 360 ms
        let mut new = node(2);
        let (mut old_at, mut new_at) = (None, None);
        for t in 361..elected + 2_000 {
            if t <= last_ack {
                old.quorum_ack(s.ms(t));
            }
            if t == elected {
                new.observe_raft(s.ms(t), leader(3, 2));
            }
            if t > elected {
                new.quorum_ack(s.ms(t));
            }
            new.observe_health(s.ms(t), Health::Healthy);
            old.observe_health(s.ms(t), Health::Healthy);
            for a in old.poll(s.ms(t)) {
                if let Action::RemoveVip(r) = a {
                    assert_eq!(r, RemoveReason::LostQuorum);
                    old_at = Some(t);
                }
            }
            if new.poll(s.ms(t)).contains(&Action::AddVip) {
                new_at = Some(t);
            }
            assert!(!(old.holding() && new.holding()), "both hold at {t} ms");
        }
        let (old_at, new_at) = (old_at.unwrap(), new_at.unwrap());
        assert_eq!(old_at, last_ack + 300);
        assert_eq!(new_at, elected + 360);
        assert!(old_at < new_at, "last ack {last_ack}: {old_at} >= {new_at}");
    }
}

#[test]
fn a_one_node_group_holds_as_soon_as_it_leads_healthy() {
    let s = Story::new();
    let mut n = ControlPlane::new(1, [1], vip(), timing());
    n.observe_health(s.ms(0), Health::Healthy);
    n.observe_raft(s.ms(10), leader(2, 1));
    // No peer could hold the VIP: nothing to fence, and no quorum acknowledgement to wait for.
    assert_eq!(n.poll(s.ms(10)), vec![Action::AddVip, Action::Announce]);
    assert_eq!(
        n.poll(s.ms(5_000)),
        vec![Action::RemoveVip(RemoveReason::Unhealthy)]
    );
    // Unhealthy with no peer to hand over to: no transfer.
    n.observe_health(s.ms(5_001), Health::Unhealthy);
    assert_eq!(n.poll(s.ms(5_001)), vec![]);
}

#[test]
fn shutdown_removes_the_vip_and_hands_leadership_over() {
    let s = Story::new();
    let mut n = holding_leader(&s);
    n.observe_peer_health(s.ms(370), 2, Health::Healthy);
    n.observe_peer_health(s.ms(380), 3, Health::Healthy);
    n.shutdown();
    assert!(!n.may_campaign(s.ms(390)));
    assert_eq!(
        n.poll(s.ms(390)),
        vec![
            Action::RemoveVip(RemoveReason::Shutdown),
            // The most recent healthy report wins.
            Action::TransferLeader { to: 3 }
        ]
    );
    // A stopping follower only stops campaigning.
    let mut f = node(2);
    f.observe_health(s.ms(0), Health::Healthy);
    f.shutdown();
    assert_eq!(f.poll(s.ms(1)), vec![]);
    assert!(!f.may_campaign(s.ms(1)));
}

#[test]
fn peer_reports_are_trusted_only_while_fresh_and_only_from_members() {
    let s = Story::new();
    let mut n = node(1);
    n.observe_peer_health(s.ms(0), 2, Health::Healthy);
    n.observe_peer_health(s.ms(0), 9, Health::Healthy); // not in the group
    n.observe_peer_health(s.ms(0), 1, Health::Healthy); // itself
    assert_eq!(n.transfer_target(s.ms(100)), Some(2));
    assert_eq!(n.transfer_target(s.ms(2_001)), None);
    n.observe_peer_health(s.ms(2_000), 3, Health::Healthy);
    n.observe_peer_health(s.ms(2_000), 2, Health::Healthy);
    // Same time: the lowest id.
    assert_eq!(n.transfer_target(s.ms(2_001)), Some(2));
}

#[test]
fn stale_acknowledgements_change_nothing() {
    let s = Story::new();
    let mut n = holding_leader(&s); // acked at 360 ms
    n.quorum_ack(s.ms(100));
    assert_eq!(quiet(n.poll(s.ms(659))), vec![]);
    // A follower's acknowledgement is ignored.
    let mut f = node(2);
    f.quorum_ack(s.ms(1));
    assert_eq!(f.waiting(s.ms(1)), Some(Waiting::NotLeader));
}
