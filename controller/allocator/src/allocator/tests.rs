//! Unit tables for the allocator, and the invariant check shared with the property tests.

use std::collections::BTreeMap;

use super::*;
use crate::pools::{FamilyStats, Overlap};
use crate::range::{IpRange, split};
use crate::request::Protocol;

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A range from `"a-b"` or `"base/len"`.
pub(super) fn range(s: &str) -> IpRange {
    if let Some((base, len)) = s.split_once('/') {
        IpRange::cidr(ip(base), len.parse().unwrap()).unwrap()
    } else {
        let (a, b) = s.split_once('-').unwrap();
        IpRange::new(ip(a), ip(b)).unwrap()
    }
}

pub(super) fn pool(name: &str, ranges: &[&str]) -> PoolSpec {
    PoolSpec::new(name.into(), ranges.iter().map(|r| range(r)).collect()).unwrap()
}

pub(super) fn svc(name: &str) -> ServiceKey {
    ServiceKey::new("ns", name)
}

/// A SingleStack IPv4 request from any auto-assign pool, without sharing.
fn req(name: &str) -> Request {
    Request {
        service: svc(name),
        policy: FamilyPolicy::SingleStack(Family::V4),
        requested: vec![],
        pool: PoolChoice::Auto { eligible: None },
        sharing: None,
    }
}

fn with_policy(policy: FamilyPolicy, r: Request) -> Request {
    Request { policy, ..r }
}

fn asking(addrs: &[&str], r: Request) -> Request {
    Request {
        requested: addrs.iter().map(|a| ip(a)).collect(),
        ..r
    }
}

fn from_pool(name: &str, r: Request) -> Request {
    Request {
        pool: PoolChoice::Named(name.into()),
        ..r
    }
}

fn sharing(key: &str, ports: &[u16], backend: &str) -> Sharing {
    Sharing::new(
        key,
        ports.iter().map(|&p| (Protocol::Tcp, p)).collect(),
        backend,
    )
    .unwrap()
}

fn sharing_as(s: Sharing, r: Request) -> Request {
    Request {
        sharing: Some(s),
        ..r
    }
}

fn alloc(pools: Vec<PoolSpec>) -> Allocator {
    let mut a = Allocator::new();
    a.set_pools(pools);
    a
}

fn ips(allocation: &Allocation) -> Vec<IpAddr> {
    allocation.ips().collect()
}

const V4: FamilyPolicy = FamilyPolicy::SingleStack(Family::V4);
const V6: FamilyPolicy = FamilyPolicy::SingleStack(Family::V6);
const PREFER_V4: FamilyPolicy = FamilyPolicy::PreferDualStack {
    primary: Family::V4,
};
const REQUIRE_V4: FamilyPolicy = FamilyPolicy::RequireDualStack {
    primary: Family::V4,
};
const REQUIRE_V6: FamilyPolicy = FamilyPolicy::RequireDualStack {
    primary: Family::V6,
};

/// Checks every internal invariant of `a`: counters against free sets, holders against services,
/// sharing rules, the sharing index, and pool labels.
pub(super) fn check_invariants(a: &Allocator) {
    let mut held_per_pool: BTreeMap<(PoolName, Family), u128> = BTreeMap::new();
    for (&ip, holders) in &a.holders {
        assert!(!holders.is_empty(), "{ip} has an empty holder set");
        let (family, value) = split(ip);
        if let Location::Pool(pool) = a.pools.locate(ip) {
            *held_per_pool
                .entry((pool.name().clone(), family))
                .or_default() += 1;
            assert!(
                !pool.space[family].free.clone().take(value),
                "held {ip} is free in {}",
                pool.name()
            );
        }
        let list: Vec<&Holder> = holders.iter().collect();
        for holder in &list {
            match holder {
                Holder::Service(service) => assert!(
                    a.services[service].ips().any(|held| held == ip),
                    "{service} is a holder of {ip} without holding it"
                ),
                Holder::Releasing { service, ip: held } => assert!(
                    *held == ip && a.releasing[service].contains_key(held),
                    "{holder} is a holder of {ip} without holding it"
                ),
            }
        }
        for (i, first) in list.iter().enumerate() {
            for second in &list[i + 1..] {
                let s1 = a.sharing_of(first);
                let s2 = a.sharing_of(second);
                assert_eq!(
                    sharing_conflict(s1, s2),
                    None,
                    "{first} and {second} share {ip}"
                );
            }
        }
    }
    for pool in a.pools.pools() {
        for family in Family::ALL {
            let space = &pool.space[family];
            let held = held_per_pool
                .get(&(pool.name().clone(), family))
                .copied()
                .unwrap_or(0);
            assert_eq!(space.assigned, held, "{} {family} assigned", pool.name());
            let reserved = a
                .reserved
                .iter()
                .filter(|&&ip| {
                    Family::of(ip) == family
                        && !a.holders.contains_key(&ip)
                        && a.pools.usable_in(ip) == Some(pool.name())
                })
                .count() as u128;
            assert_eq!(
                space.reserved,
                reserved,
                "{} {family} reserved",
                pool.name()
            );
            assert_eq!(
                space.free.count(),
                space.usable - space.assigned - space.reserved,
                "{} {family} free",
                pool.name()
            );
        }
    }
    let mut entries = 0;
    for (service, allocation) in &a.services {
        assert_eq!(&allocation.service, service);
        assert_eq!(allocation.moved, None);
        for family in Family::ALL {
            if let Some(assigned) = allocation.get(family) {
                assert_eq!(Family::of(assigned.ip), family);
                assert_eq!(
                    assigned.pool.as_ref(),
                    a.pools.locate(assigned.ip).pool().map(|p| p.name()),
                    "label of {}",
                    assigned.ip
                );
            }
        }
        for ip in allocation.ips() {
            entries += 1;
            assert!(
                a.holders[&ip].contains(&Holder::Service(service.clone())),
                "{service} not holder of {ip}"
            );
            if let Some(s) = &allocation.sharing {
                assert!(a.shared[s.key()].contains(&ip), "{ip} not indexed");
            }
        }
    }
    for (service, held) in &a.releasing {
        assert!(!held.is_empty(), "{service} has an empty release map");
        for (&ip, sharing) in held {
            entries += 1;
            let holder = Holder::Releasing {
                service: service.clone(),
                ip,
            };
            assert!(
                a.holders[&ip].contains(&holder),
                "{holder} not holder of {ip}"
            );
            if let Some(s) = sharing {
                assert!(a.shared[s.key()].contains(&ip), "{ip} not indexed");
            }
        }
    }
    assert_eq!(
        entries,
        a.holders.values().map(BTreeSet::len).sum::<usize>()
    );
    for (key, addrs) in &a.shared {
        assert!(!addrs.is_empty());
        for ip in addrs {
            assert!(
                a.holders(*ip)
                    .any(|h| a.sharing_of(h).is_some_and(|s| s.key() == key)),
                "{ip} indexed under {key} without such holder"
            );
        }
    }
}

#[test]
fn errors_and_bad_input_changes_nothing() {
    let mut a = alloc(vec![
        pool("web", &["192.0.2.0/28"]).with_avoid_buggy_ips(true),
        pool("manual", &["192.0.2.16/28"]).with_auto_assign(false),
        pool("tiny", &["192.0.2.32/32"]).with_priority(Some(0)),
        pool("six", &["2001:db8::/126"]).with_auto_assign(false),
    ]);
    // Holders: "holder" on 192.0.2.32 (tiny, preferred) without sharing; "sharer" on
    // 192.0.2.17 sharing key k on port 80.
    a.assign(&req("holder")).unwrap();
    a.assign(&sharing_as(
        sharing("k", &[80], ""),
        asking(&["192.0.2.17"], req("sharer")),
    ))
    .unwrap();
    // "victim" holds an address too, so errors are seen not to move it.
    let held = a.assign(&req("victim")).unwrap();
    assert_eq!(ips(&held), [ip("192.0.2.1")]);

    let victim = |r: Request| Request {
        service: svc("victim"),
        ..r
    };
    let cases: Vec<(Request, AllocError)> = vec![
        (
            from_pool("nope", req("victim")),
            AllocError::NoSuchPool("nope".into()),
        ),
        (
            asking(&["192.0.2.200"], req("victim")),
            AllocError::RequestedOutsidePools(ip("192.0.2.200")),
        ),
        (
            asking(&["192.0.2.0"], req("victim")),
            AllocError::RequestedAvoidedAddress {
                ip: ip("192.0.2.0"),
                pool: "web".into(),
            },
        ),
        (
            from_pool("web", asking(&["192.0.2.18"], req("victim"))),
            AllocError::RequestedPoolNotAllowed {
                ip: ip("192.0.2.18"),
                pool: "manual".into(),
            },
        ),
        (
            Request {
                pool: PoolChoice::Auto {
                    eligible: Some(["web".into()].into()),
                },
                ..asking(&["192.0.2.18"], req("victim"))
            },
            AllocError::RequestedPoolNotAllowed {
                ip: ip("192.0.2.18"),
                pool: "manual".into(),
            },
        ),
        (
            asking(&["192.0.2.32"], req("victim")),
            AllocError::RequestedInUse {
                ip: ip("192.0.2.32"),
                holder: Holder::Service(svc("holder")),
            },
        ),
        (
            sharing_as(
                sharing("k", &[80, 443], ""),
                asking(&["192.0.2.17"], req("victim")),
            ),
            AllocError::SharingConflict {
                ip: ip("192.0.2.17"),
                holder: Holder::Service(svc("sharer")),
                reason: SharingConflict::PortsOverlap {
                    protocol: Protocol::Tcp,
                    port: 80,
                },
            },
        ),
        (
            sharing_as(
                sharing("k", &[443], ""),
                asking(&["192.0.2.32"], req("victim")),
            ),
            AllocError::SharingConflict {
                ip: ip("192.0.2.32"),
                holder: Holder::Service(svc("holder")),
                reason: SharingConflict::HolderNotSharing,
            },
        ),
        (
            from_pool("tiny", req("victim")),
            AllocError::Exhausted {
                pool: Some("tiny".into()),
                family: Family::V4,
            },
        ),
        (
            from_pool("web", with_policy(V6, req("victim"))),
            AllocError::NoPoolForFamily {
                pool: Some("web".into()),
                family: Family::V6,
            },
        ),
        (
            with_policy(V6, req("victim")),
            AllocError::NoPoolForFamily {
                pool: None,
                family: Family::V6,
            },
        ),
        (
            asking(&["192.0.2.5", "192.0.2.6"], req("victim")),
            AllocError::TwoAddressesOfOneFamily {
                family: Family::V4,
                first: ip("192.0.2.5"),
                second: ip("192.0.2.6"),
            },
        ),
        (
            with_policy(REQUIRE_V4, req("victim")),
            AllocError::RequireDualStackUnsatisfiable {
                missing: Family::V6,
                source: Box::new(AllocError::NoPoolForFamily {
                    pool: None,
                    family: Family::V6,
                }),
            },
        ),
        (
            asking(&["2001:db8::1"], req("victim")),
            AllocError::RequestedFamilyNotInPolicy {
                ip: ip("2001:db8::1"),
                policy: V4,
            },
        ),
    ];
    for (request, want) in cases {
        let before = a.clone();
        let request = victim(request);
        assert_eq!(a.assign(&request), Err(want.clone()), "{request:?}");
        assert_eq!(a, before, "state changed by {want}");
        // Messages name what they are about.
        let message = want.to_string();
        assert!(!message.is_empty());
    }

    // Exhausted without a named pool: fill every auto-assign IPv4 pool.
    let mut full = alloc(vec![pool("one", &["192.0.2.1/32"])]);
    full.assign(&req("a")).unwrap();
    assert_eq!(
        full.assign(&req("b")),
        Err(AllocError::Exhausted {
            pool: None,
            family: Family::V4
        })
    );
    assert_eq!(
        full.restore(svc("b"), vec![], None),
        Err(AllocError::NothingToRestore(svc("b")))
    );
}

#[test]
fn error_messages_are_actionable() {
    let cases = [
        (
            AllocError::Exhausted {
                pool: None,
                family: Family::V4,
            },
            "every pool this service may use is out of IPv4 addresses",
        ),
        (
            AllocError::Exhausted {
                pool: Some("web".into()),
                family: Family::V6,
            },
            "pool \"web\" has no free IPv6 address left",
        ),
        (
            AllocError::RequireDualStackUnsatisfiable {
                missing: Family::V6,
                source: Box::new(AllocError::NoPoolForFamily {
                    pool: None,
                    family: Family::V6,
                }),
            },
            "RequireDualStack needs an IPv6 address, but no pool this service may use has IPv6 addresses",
        ),
        (
            AllocError::RequestedFamilyNotInPolicy {
                ip: ip("2001:db8::1"),
                policy: V4,
            },
            "requested address 2001:db8::1 is IPv6, which IP family policy SingleStack IPv4 excludes",
        ),
        (
            AllocError::SharingConflict {
                ip: ip("192.0.2.1"),
                holder: Holder::Service(svc("a")),
                reason: SharingConflict::PortsOverlap {
                    protocol: Protocol::Udp,
                    port: 53,
                },
            },
            "address 192.0.2.1 cannot be shared with service ns/a: both services use UDP/53",
        ),
    ];
    for (err, want) in cases {
        assert_eq!(err.to_string(), want);
    }
    let moved = Moved {
        released: vec![
            (ip("192.0.2.1"), MoveReason::LeftPools),
            (
                ip("2001:db8::1"),
                MoveReason::PoolNotEligible { pool: "six".into() },
            ),
        ],
    };
    assert_eq!(
        moved.to_string(),
        "released 192.0.2.1: the address left every pool; \
         released 2001:db8::1: pool \"six\" is no longer one this service may use"
    );
}

#[test]
fn avoid_buggy_ips() {
    let mut a = alloc(vec![
        pool("buggy", &["192.0.2.0/24"]).with_avoid_buggy_ips(true),
        pool("six", &["2001:db8::/126"]).with_avoid_buggy_ips(true),
    ]);
    let stats = a.pool_stats(&"buggy".into()).unwrap();
    assert_eq!((stats.v4.assigned, stats.v4.available), (0, 254));
    // IPv6 has no buggy addresses: all four count, and the first is handed out.
    assert_eq!(a.pool_stats(&"six".into()).unwrap().v6.available, 4);
    let first = a.assign(&with_policy(V6, req("v6"))).unwrap();
    assert_eq!(ips(&first), [ip("2001:db8::")]);

    let mut got = Vec::new();
    for i in 0..254 {
        let allocation = a.assign(&req(&format!("s{i}"))).unwrap();
        got.extend(allocation.ips());
    }
    let want: Vec<IpAddr> = (1..=254).map(|i| ip(&format!("192.0.2.{i}"))).collect();
    assert_eq!(got, want);
    assert_eq!(
        a.assign(&req("one-more")),
        Err(AllocError::Exhausted {
            pool: None,
            family: Family::V4
        })
    );
    let stats = a.pool_stats(&"buggy".into()).unwrap();
    assert_eq!((stats.v4.assigned, stats.v4.available), (254, 0));
    check_invariants(&a);

    // Turning avoidance on moves a service holding .0 (restored from an old status).
    let mut b = alloc(vec![pool("p", &["192.0.2.0/30"])]);
    b.restore(svc("zero"), vec![ip("192.0.2.0")], None).unwrap();
    b.set_pools(vec![
        pool("p", &["192.0.2.0/30"]).with_avoid_buggy_ips(true),
    ]);
    assert_eq!(
        b.allocation(&svc("zero"))
            .unwrap()
            .v4
            .as_ref()
            .unwrap()
            .pool,
        None
    );
    assert_eq!(b.pool_stats(&"p".into()).unwrap().v4.available, 3);
    let moved = b.assign(&req("zero")).unwrap();
    assert_eq!(ips(&moved), [ip("192.0.2.1")]);
    assert_eq!(
        moved.moved.unwrap().released,
        [(
            ip("192.0.2.0"),
            MoveReason::AvoidedByPool { pool: "p".into() }
        )]
    );
    check_invariants(&b);
}

#[test]
fn overlaps_go_to_the_older_pool() {
    // "new" is preferred and listed first, but "old" has the lower rank.
    let specs = vec![
        pool("new", &["192.0.2.0/28", "2001:db8::/120"])
            .with_rank(5)
            .with_priority(Some(0)),
        pool("old", &["192.0.2.8/29", "2001:db8::80/121"]).with_rank(1),
        // Same rank as "new": the name decides ("newer" > "new"), so "newer" is younger still.
        pool("newer", &["192.0.2.4-192.0.2.9"]).with_rank(5),
    ];
    let mut a = Allocator::new();
    let report = a.set_pools(specs);
    assert_eq!(
        report.overlaps,
        BTreeMap::from([
            (
                "new".into(),
                vec![
                    Overlap {
                        older: "old".into(),
                        range: range("192.0.2.8-192.0.2.15")
                    },
                    Overlap {
                        older: "old".into(),
                        range: range("2001:db8::80-2001:db8::ff")
                    },
                ]
            ),
            (
                "newer".into(),
                vec![
                    Overlap {
                        older: "old".into(),
                        range: range("192.0.2.8-192.0.2.9")
                    },
                    Overlap {
                        older: "new".into(),
                        range: range("192.0.2.4-192.0.2.9")
                    },
                ]
            ),
        ])
    );
    let count = |a: &Allocator, name: &str| {
        let stats = a.pool_stats(&name.into()).unwrap();
        (stats.v4.available, stats.v6.available)
    };
    assert_eq!(count(&a, "old"), (8, 128));
    assert_eq!(count(&a, "new"), (8, 128));
    assert_eq!(count(&a, "newer"), (0, 0));
    // "new" hands out only its effective addresses, .0 to .7.
    for i in 0..8 {
        let got = a.assign(&from_pool("new", req(&format!("s{i}")))).unwrap();
        assert_eq!(ips(&got), [ip(&format!("192.0.2.{i}"))]);
    }
    assert_eq!(
        a.assign(&from_pool("new", req("s8"))),
        Err(AllocError::Exhausted {
            pool: Some("new".into()),
            family: Family::V4
        })
    );
    // A requested address in the overlap belongs to "old".
    assert_eq!(
        a.assign(&from_pool("new", asking(&["192.0.2.9"], req("s9")))),
        Err(AllocError::RequestedPoolNotAllowed {
            ip: ip("192.0.2.9"),
            pool: "old".into()
        })
    );
    check_invariants(&a);

    // Duplicate names: the oldest is kept.
    let report = a.set_pools(vec![
        pool("dup", &["192.0.2.64/30"]).with_rank(2),
        pool("dup", &["192.0.2.128/30"]).with_rank(1),
    ]);
    assert_eq!(report.duplicates, BTreeSet::from(["dup".into()]));
    assert_eq!(
        a.assign(&from_pool("dup", req("d")))
            .unwrap()
            .v4
            .unwrap()
            .ip,
        ip("192.0.2.128")
    );
}

#[test]
fn priority_then_name() {
    let mut a = alloc(vec![
        pool("b", &["192.0.2.1/32"]).with_priority(Some(1)),
        pool("a", &["192.0.2.2/32"]),
        pool("c", &["192.0.2.3/32"]).with_priority(Some(1)),
        pool("d", &["192.0.2.4/32"]).with_priority(Some(-3)),
        pool("e", &["192.0.2.5/32"]),
    ]);
    let order: Vec<String> = (0..5)
        .map(|i| {
            let got = a.assign(&req(&format!("s{i}"))).unwrap();
            got.v4.unwrap().pool.unwrap().to_string()
        })
        .collect();
    assert_eq!(order, ["d", "b", "c", "a", "e"]);
}

#[test]
fn pool_choice_and_auto_assign() {
    let mut a = alloc(vec![
        pool("manual", &["192.0.2.16/30"]).with_auto_assign(false),
        pool("auto", &["192.0.2.32/30"]).with_priority(Some(9)),
        pool("other", &["192.0.2.48/30"]),
    ]);
    // Auto skips "manual"; Named takes it; a requested address may come from it.
    assert_eq!(ips(&a.assign(&req("s1")).unwrap()), [ip("192.0.2.32")]);
    assert_eq!(
        ips(&a.assign(&from_pool("manual", req("s2"))).unwrap()),
        [ip("192.0.2.16")]
    );
    assert_eq!(
        ips(&a.assign(&asking(&["192.0.2.18"], req("s3"))).unwrap()),
        [ip("192.0.2.18")]
    );
    // Eligibility restricts Auto.
    let only_other = Request {
        pool: PoolChoice::Auto {
            eligible: Some(["other".into(), "manual".into()].into()),
        },
        ..req("s4")
    };
    assert_eq!(ips(&a.assign(&only_other).unwrap()), [ip("192.0.2.48")]);
    // Losing eligibility moves the service.
    let moved = a
        .assign(&Request {
            pool: PoolChoice::Auto {
                eligible: Some(["auto".into()].into()),
            },
            ..only_other
        })
        .unwrap();
    assert_eq!(ips(&moved), [ip("192.0.2.33")]);
    assert_eq!(
        moved.moved.unwrap().released,
        [(
            ip("192.0.2.48"),
            MoveReason::PoolNotEligible {
                pool: "other".into()
            }
        )]
    );
    // Dropping a request for an address of a manual pool moves the service to an auto pool.
    let moved = a.assign(&req("s3")).unwrap();
    assert_eq!(ips(&moved), [ip("192.0.2.34")]);
    // Changing the requested address moves it.
    let moved = a.assign(&asking(&["192.0.2.50"], req("s3"))).unwrap();
    assert_eq!(
        moved.moved.unwrap().released,
        [(
            ip("192.0.2.34"),
            MoveReason::RequestedAddressChanged {
                requested: ip("192.0.2.50")
            }
        )]
    );
    check_invariants(&a);
}

#[test]
fn dual_stack_policies() {
    let both = || pool("both", &["192.0.2.0/30", "2001:db8::/126"]);
    // The best pool has both families: both come from it.
    let mut a = alloc(vec![
        both().with_priority(Some(0)),
        pool("six", &["2001:db8:1::/126"]),
    ]);
    let got = a.assign(&with_policy(REQUIRE_V6, req("d"))).unwrap();
    assert_eq!(ips(&got), [ip("192.0.2.0"), ip("2001:db8::")]);
    assert_eq!(got.v4.as_ref().unwrap().pool, Some("both".into()));

    // Families from different pools when needed; the second family prefers the first's pool over
    // a better one ("six-first" is preferred for IPv6, but the IPv4 address came from "both").
    let mut a = alloc(vec![
        pool("six-first", &["2001:db8:1::/126"]).with_priority(Some(0)),
        both().with_priority(Some(1)),
    ]);
    let got = a.assign(&with_policy(REQUIRE_V4, req("d"))).unwrap();
    assert_eq!(ips(&got), [ip("192.0.2.0"), ip("2001:db8::")]);
    // IPv6 first: it comes from "six-first", and IPv4 from the only pool that has it.
    let got = a.assign(&with_policy(REQUIRE_V6, req("e"))).unwrap();
    assert_eq!(ips(&got), [ip("192.0.2.1"), ip("2001:db8:1::")]);
    // SingleStack takes one family.
    let got = a.assign(&with_policy(V6, req("f"))).unwrap();
    assert_eq!(ips(&got), [ip("2001:db8:1::1")]);

    // Without IPv6: PreferDualStack settles for IPv4, RequireDualStack fails and changes nothing.
    let mut a = alloc(vec![pool("four", &["192.0.2.0/30"])]);
    let got = a.assign(&with_policy(PREFER_V4, req("p"))).unwrap();
    assert_eq!(ips(&got), [ip("192.0.2.0")]);
    assert_eq!(got.moved, None);
    let before = a.clone();
    assert!(matches!(
        a.assign(&with_policy(REQUIRE_V4, req("p"))),
        Err(AllocError::RequireDualStackUnsatisfiable {
            missing: Family::V6,
            ..
        })
    ));
    assert_eq!(a, before);
    // Once IPv6 exists, PreferDualStack adds it without moving the IPv4 address.
    a.set_pools(vec![pool("four", &["192.0.2.0/30", "2001:db8::/126"])]);
    let got = a.assign(&with_policy(PREFER_V4, req("p"))).unwrap();
    assert_eq!(ips(&got), [ip("192.0.2.0"), ip("2001:db8::")]);
    assert_eq!(got.moved, None);
    // Back to SingleStack IPv4: the IPv6 address is dropped, and said so.
    let got = a.assign(&with_policy(V4, req("p"))).unwrap();
    assert_eq!(ips(&got), [ip("192.0.2.0")]);
    assert_eq!(
        got.moved.unwrap().released,
        [(
            ip("2001:db8::"),
            MoveReason::FamilyNotInPolicy { policy: V4 }
        )]
    );
    // Requested addresses decide their family's address; the other family is allocated.
    let got = a
        .assign(&with_policy(REQUIRE_V4, asking(&["2001:db8::3"], req("q"))))
        .unwrap();
    assert_eq!(ips(&got), [ip("192.0.2.1"), ip("2001:db8::3")]);
    check_invariants(&a);
}

#[test]
fn assign_is_idempotent() {
    let mut a = alloc(vec![pool("p", &["192.0.2.0/28", "2001:db8::/120"])]);
    for request in [
        req("a"),
        with_policy(REQUIRE_V6, req("b")),
        sharing_as(sharing("k", &[80], ""), req("c")),
        sharing_as(sharing("k", &[443], ""), req("d")),
        asking(&["192.0.2.9"], req("e")),
    ] {
        let first = a.assign(&request).unwrap();
        assert_eq!(first.moved, None);
        let state = a.clone();
        let again = a.assign(&request).unwrap();
        assert_eq!(again, first);
        assert_eq!(a, state);
        assert_eq!(a.allocation(&request.service), Some(&first));
    }
    check_invariants(&a);
}

#[test]
fn pool_shrink_keeps_what_still_fits() {
    let mut a = alloc(vec![pool("p", &["192.0.2.0/28"])]);
    assert_eq!(ips(&a.assign(&req("gone")).unwrap()), [ip("192.0.2.0")]);
    assert_eq!(ips(&a.assign(&req("stays")).unwrap()), [ip("192.0.2.1")]);
    a.set_pools(vec![pool("p", &["192.0.2.1-192.0.2.15"])]);
    // Nothing is dropped by set_pools; the label shows the address left every pool.
    let gone = a.allocation(&svc("gone")).unwrap();
    assert_eq!(gone.v4.as_ref().unwrap().pool, None);
    let stats = a.pool_stats(&"p".into()).unwrap();
    assert_eq!((stats.v4.assigned, stats.v4.available), (1, 14));
    check_invariants(&a);

    let stays = a.assign(&req("stays")).unwrap();
    assert_eq!((ips(&stays), stays.moved), (vec![ip("192.0.2.1")], None));
    let gone = a.assign(&req("gone")).unwrap();
    assert_eq!(ips(&gone), [ip("192.0.2.2")]);
    assert_eq!(
        gone.moved.unwrap().released,
        [(ip("192.0.2.0"), MoveReason::LeftPools)]
    );
    let stats = a.pool_stats(&"p".into()).unwrap();
    assert_eq!((stats.v4.assigned, stats.v4.available), (2, 13));
    check_invariants(&a);
}

#[test]
fn addresses_held_outside_pools_are_never_handed_out_twice() {
    let mut a = alloc(vec![pool("p", &["192.0.2.0/30"])]);
    // Restored before the pool covering it exists.
    let restored = a
        .restore(svc("old"), vec![ip("192.0.2.9"), ip("2001:db8::9")], None)
        .unwrap();
    assert_eq!(restored.v4.as_ref().unwrap().pool, None);
    assert_eq!(restored.v6.as_ref().unwrap().pool, None);
    a.set_pools(vec![pool("p", &["192.0.2.8/30"])]);
    assert_eq!(
        a.allocation(&svc("old")).unwrap().v4.as_ref().unwrap().pool,
        Some("p".into())
    );
    let got: Vec<IpAddr> = (0..3)
        .flat_map(|i| ips(&a.assign(&req(&format!("n{i}"))).unwrap()))
        .collect();
    assert_eq!(got, [ip("192.0.2.8"), ip("192.0.2.10"), ip("192.0.2.11")]);
    // A conflicting restore records nothing.
    let before = a.clone();
    assert_eq!(
        a.restore(svc("dup"), vec![ip("192.0.2.9")], None),
        Err(AllocError::RequestedInUse {
            ip: ip("192.0.2.9"),
            holder: Holder::Service(svc("old"))
        })
    );
    assert_eq!(a, before);
    // RequireDualStack cannot replace the IPv6 address outside every pool: nothing changes.
    let before = a.clone();
    assert_eq!(
        a.assign(&with_policy(REQUIRE_V4, req("old"))),
        Err(AllocError::RequireDualStackUnsatisfiable {
            missing: Family::V6,
            source: Box::new(AllocError::NoPoolForFamily {
                pool: None,
                family: Family::V6
            })
        })
    );
    assert_eq!(a, before);
    // A restored address that suits the request is kept.
    let kept = a.assign(&req("old")).unwrap();
    assert_eq!(ips(&kept), [ip("192.0.2.9")]);
    assert_eq!(
        kept.moved.unwrap().released,
        [(
            ip("2001:db8::9"),
            MoveReason::FamilyNotInPolicy { policy: V4 }
        )]
    );
    check_invariants(&a);
}

#[test]
fn sharing_by_key() {
    let mut a = alloc(vec![pool("p", &["192.0.2.0/29"])]);
    let web = a
        .assign(&sharing_as(sharing("k", &[80], ""), req("web")))
        .unwrap();
    assert_eq!(ips(&web), [ip("192.0.2.0")]);
    // Same key, disjoint ports: shares without asking for the address.
    let tls = a
        .assign(&sharing_as(sharing("k", &[443], ""), req("tls")))
        .unwrap();
    assert_eq!(ips(&tls), [ip("192.0.2.0")]);
    // Overlapping ports, other backend, other key, or no sharing: a new address each.
    for (name, s) in [
        ("overlap", Some(sharing("k", &[80], ""))),
        ("local", Some(sharing("k", &[8080], "app=x"))),
        ("other-key", Some(sharing("j", &[8081], ""))),
        ("alone", None),
    ] {
        let r = Request {
            sharing: s,
            ..req(name)
        };
        assert_ne!(ips(&a.assign(&r).unwrap()), [ip("192.0.2.0")], "{name}");
    }
    assert_eq!(
        a.holders(ip("192.0.2.0")).collect::<Vec<_>>(),
        [&Holder::Service(svc("tls")), &Holder::Service(svc("web"))]
    );
    let stats = a.pool_stats(&"p".into()).unwrap();
    assert_eq!((stats.v4.assigned, stats.v4.available), (5, 3));
    check_invariants(&a);

    // A holder changing its ports to collide moves away from the shared address.
    let moved = a
        .assign(&sharing_as(sharing("k", &[80, 443], ""), req("tls")))
        .unwrap();
    assert_eq!(
        moved.moved.unwrap().released,
        [(
            ip("192.0.2.0"),
            MoveReason::SharingConflict {
                holder: Holder::Service(svc("web")),
                reason: SharingConflict::PortsOverlap {
                    protocol: Protocol::Tcp,
                    port: 80
                }
            }
        )]
    );
    // Reference counting: the address stays taken until its last holder goes.
    let tls = a
        .assign(&sharing_as(sharing("k", &[443], ""), req("tls")))
        .unwrap();
    assert_eq!(a.holders(ip("192.0.2.0")).count(), 1);
    assert_ne!(ips(&tls), [ip("192.0.2.0")]);
    a.assign(&sharing_as(
        sharing("k", &[22], ""),
        asking(&["192.0.2.0"], req("ssh")),
    ))
    .unwrap();
    assert_eq!(a.release(&svc("web")), [ip("192.0.2.0")]);
    assert_eq!(
        a.holders(ip("192.0.2.0")).collect::<Vec<_>>(),
        [&Holder::Service(svc("ssh"))]
    );
    let before = a.pool_stats(&"p".into()).unwrap().v4;
    assert_eq!(a.release(&svc("ssh")), [ip("192.0.2.0")]);
    let after = a.pool_stats(&"p".into()).unwrap().v4;
    assert_eq!(after.available, before.available + 1);
    assert_eq!(a.release(&svc("ssh")), Vec::<IpAddr>::new());
    check_invariants(&a);
}

#[test]
fn stats_are_exact_for_a_slash_64() {
    let mut a = alloc(vec![pool("big", &["2001:db8:1::/64"])]);
    let start = a.pool_stats(&"big".into()).unwrap();
    assert_eq!(
        start.v6,
        FamilyStats {
            assigned: 0,
            available: 1 << 64
        }
    );
    assert_eq!(start.v4, FamilyStats::default());
    for i in 0..3 {
        a.assign(&with_policy(V6, req(&format!("s{i}")))).unwrap();
    }
    a.assign(&with_policy(
        V6,
        asking(&["2001:db8:1::ffff:ffff:ffff:ffff"], req("top")),
    ))
    .unwrap();
    let stats = a.pool_stats(&"big".into()).unwrap().v6;
    assert_eq!(
        stats,
        FamilyStats {
            assigned: 4,
            available: (1 << 64) - 4
        }
    );
    for name in ["s0", "s1", "s2", "top"] {
        a.release(&svc(name));
    }
    assert_eq!(a.pool_stats(&"big".into()).unwrap(), start);
    assert_eq!(a.pool_stats(&"missing".into()), None);
    check_invariants(&a);
}

#[test]
fn release_stranded_keeps_what_is_still_in_a_pool() {
    let mut a = alloc(vec![pool("dual", &["192.0.2.0/30", "2001:db8::/126"])]);
    let both = a.assign(&with_policy(REQUIRE_V4, req("s"))).unwrap();
    assert_eq!(ips(&both), [ip("192.0.2.0"), ip("2001:db8::")]);
    // The IPv6 range leaves the pool and no other pool has IPv6 addresses.
    a.set_pools(vec![pool("dual", &["192.0.2.0/30"])]);
    let before = a.clone();
    assert!(matches!(
        a.assign(&with_policy(REQUIRE_V4, req("s"))),
        Err(AllocError::RequireDualStackUnsatisfiable {
            missing: Family::V6,
            ..
        })
    ));
    assert_eq!(a, before, "a failed assign changes nothing");
    assert_eq!(a.release_stranded(&svc("s")), [ip("2001:db8::")]);
    let kept = a.allocation(&svc("s")).unwrap();
    assert_eq!(ips(kept), [ip("192.0.2.0")], "the IPv4 address stays");
    assert_eq!(kept.v4.as_ref().unwrap().pool, Some("dual".into()));
    check_invariants(&a);
    // Nothing stranded: nothing released.
    assert_eq!(a.release_stranded(&svc("s")), Vec::<IpAddr>::new());
    assert_eq!(ips(a.allocation(&svc("s")).unwrap()), [ip("192.0.2.0")]);
    // The IPv6 address is free again: a pool that brings it back hands it to whoever asks.
    a.set_pools(vec![pool("dual", &["192.0.2.0/30", "2001:db8::/126"])]);
    let again = a.assign(&with_policy(REQUIRE_V4, req("s"))).unwrap();
    assert_eq!(ips(&again), [ip("192.0.2.0"), ip("2001:db8::")]);
    // All stranded: the service holds nothing.
    a.set_pools(vec![]);
    assert_eq!(
        a.release_stranded(&svc("s")),
        [ip("192.0.2.0"), ip("2001:db8::")]
    );
    assert!(a.allocation(&svc("s")).is_none());
    check_invariants(&a);
}

#[test]
fn a_release_hold_keeps_the_address_from_others_until_freed() {
    let mut a = alloc(vec![pool("p", &["192.0.2.0/30"])]);
    assert_eq!(ips(&a.assign(&req("s")).unwrap()), [ip("192.0.2.0")]);
    // The caller released it from "s" and keeps it until s's status stops showing it.
    let released = a.release(&svc("s"));
    a.hold_release(&svc("s"), released[0], None).unwrap();
    check_invariants(&a);
    assert_eq!(a.pool_stats(&"p".into()).unwrap().v4.assigned, 1);
    assert_eq!(a.releases(&svc("s")).collect::<Vec<_>>(), [ip("192.0.2.0")]);
    let hold = Holder::Releasing {
        service: svc("s"),
        ip: ip("192.0.2.0"),
    };
    assert_eq!(a.holders(ip("192.0.2.0")).collect::<Vec<_>>(), [&hold]);
    // Another service gets the next address; one that asks for it is told who has it, in the
    // words users have always seen.
    assert_eq!(ips(&a.assign(&req("t")).unwrap()), [ip("192.0.2.1")]);
    let err = a.assign(&asking(&["192.0.2.0"], req("u"))).unwrap_err();
    assert_eq!(
        err,
        AllocError::RequestedInUse {
            ip: ip("192.0.2.0"),
            holder: hold.clone(),
        }
    );
    assert_eq!(
        err.to_string(),
        "address 192.0.2.0 is already used by service ns/s (which released 192.0.2.0; its status \
         still shows it); choose another address, or give both services the same sharing key"
    );
    // Holding it again is idempotent.
    a.hold_release(&svc("s"), ip("192.0.2.0"), None).unwrap();
    check_invariants(&a);
    assert_eq!(a.pool_stats(&"p".into()).unwrap().v4.assigned, 2);
    // Freed: free for whoever asks, and nothing is left to free.
    assert_eq!(a.free_releases(&svc("s")), [ip("192.0.2.0")]);
    assert_eq!(a.free_releases(&svc("s")), Vec::<IpAddr>::new());
    assert_eq!(a.releases(&svc("s")).count(), 0);
    assert_eq!(ips(&a.assign(&req("u")).unwrap()), [ip("192.0.2.0")]);
    check_invariants(&a);
}

#[test]
fn a_release_hold_of_a_shared_address_shares_it_as_the_service_did() {
    let mut a = alloc(vec![pool("p", &["192.0.2.0/30"])]);
    let web_sharing = sharing("k", &[80], "");
    let web = a
        .assign(&sharing_as(web_sharing.clone(), req("web")))
        .unwrap();
    let tls = a
        .assign(&sharing_as(sharing("k", &[443], ""), req("tls")))
        .unwrap();
    assert_eq!(ips(&web), ips(&tls));
    let shared = ip("192.0.2.0");
    // "web" gives the address up; the caller holds it with web's consent to share, beside "tls".
    let stored = a.allocation(&svc("web")).unwrap().sharing.clone();
    assert_eq!(stored, Some(web_sharing));
    a.release(&svc("web"));
    a.hold_release(&svc("web"), shared, stored).unwrap();
    check_invariants(&a);
    let hold = Holder::Releasing {
        service: svc("web"),
        ip: shared,
    };
    // "tls" leaves: the address stays held for web's status all the same.
    a.release(&svc("tls"));
    assert_eq!(a.holders(shared).collect::<Vec<_>>(), [&hold]);
    assert_ne!(ips(&a.assign(&req("alone")).unwrap()), [shared]);
    // A Service that could have shared with web may still share; one on web's port may not.
    assert_eq!(
        ips(&a
            .assign(&sharing_as(sharing("k", &[8443], ""), req("more")))
            .unwrap()),
        [shared]
    );
    assert_ne!(
        ips(&a
            .assign(&sharing_as(sharing("k", &[80], ""), req("clash")))
            .unwrap()),
        [shared]
    );
    check_invariants(&a);
    // A hold is refused when a holder cannot share with it, and then records nothing.
    let before = a.clone();
    assert_eq!(
        a.hold_release(&svc("x"), shared, None),
        Err(AllocError::RequestedInUse {
            ip: shared,
            holder: Holder::Service(svc("more")),
        })
    );
    assert_eq!(a, before);
}

#[test]
fn a_service_may_get_back_what_it_is_releasing_itself() {
    let mut a = alloc(vec![pool("p", &["192.0.2.0/30"])]);
    assert_eq!(ips(&a.assign(&req("s")).unwrap()), [ip("192.0.2.0")]);
    a.release(&svc("s"));
    a.hold_release(&svc("s"), ip("192.0.2.0"), None).unwrap();
    // Others may not have it ...
    assert_eq!(ips(&a.assign(&req("t")).unwrap()), [ip("192.0.2.1")]);
    // ... "s" may: its own hold is free to it, and ends as it gets the address back.
    assert_eq!(
        ips(&a.assign(&asking(&["192.0.2.0"], req("s"))).unwrap()),
        [ip("192.0.2.0")]
    );
    assert_eq!(a.releases(&svc("s")).count(), 0);
    assert_eq!(
        a.holders(ip("192.0.2.0")).collect::<Vec<_>>(),
        [&Holder::Service(svc("s"))]
    );
    check_invariants(&a);
    // What it does not get back stays held: "s" moves to another requested address.
    a.release(&svc("s"));
    a.hold_release(&svc("s"), ip("192.0.2.0"), None).unwrap();
    assert_eq!(
        ips(&a.assign(&asking(&["192.0.2.2"], req("s"))).unwrap()),
        [ip("192.0.2.2")]
    );
    assert_eq!(a.releases(&svc("s")).collect::<Vec<_>>(), [ip("192.0.2.0")]);
    check_invariants(&a);
    // A refused request changes nothing, the hold included.
    let before = a.clone();
    assert!(a.assign(&asking(&["192.0.2.1"], req("s"))).is_err());
    assert_eq!(a, before);
    // Holders are ordered by service, each before its release holds, as their texts sort.
    let mut order = [
        Holder::Service(svc("s-b")),
        Holder::Releasing {
            service: svc("s"),
            ip: ip("192.0.2.9"),
        },
        Holder::Service(svc("s")),
    ];
    order.sort();
    let texts: Vec<String> = order.iter().map(ToString::to_string).collect();
    let mut sorted = texts.clone();
    sorted.sort();
    assert_eq!(texts, sorted);
    assert_eq!(order[0], Holder::Service(svc("s")));
}

/// A reserved address (the controller reserves the control-plane endpoint) is never handed out,
/// by lowest-free, by request or by sharing, and is neither available nor assigned; a service
/// that held it before keeps it, and once that service lets it go it stays reserved.
#[test]
fn reserved_addresses_are_never_handed_out_and_holders_keep_them() {
    let mut a = alloc(vec![pool("p", &["192.0.2.0/30"])]);
    let shared = sharing("k", &[80], "");
    a.restore(svc("old"), vec![ip("192.0.2.2")], Some(shared.clone()))
        .unwrap();
    a.set_reserved([ip("192.0.2.0"), ip("192.0.2.2")].into());
    check_invariants(&a);
    let stats = a.pool_stats(&"p".into()).unwrap();
    assert_eq!((stats.v4.assigned, stats.v4.available), (1, 2));

    // Kept by its holder, as is.
    let kept = a.assign(&sharing_as(shared.clone(), req("old"))).unwrap();
    assert_eq!((ips(&kept), kept.moved), (vec![ip("192.0.2.2")], None));
    // Not shared under its key, not had by asking, not picked.
    let other = sharing_as(sharing("k", &[443], ""), req("other"));
    assert_eq!(ips(&a.assign(&other).unwrap()), [ip("192.0.2.1")]);
    assert_eq!(
        a.assign(&asking(&["192.0.2.0"], req("asks"))),
        Err(AllocError::RequestedReserved {
            ip: ip("192.0.2.0")
        })
    );
    assert_eq!(ips(&a.assign(&req("c")).unwrap()), [ip("192.0.2.3")]);
    assert_eq!(
        a.assign(&req("d")),
        Err(AllocError::Exhausted {
            pool: None,
            family: Family::V4
        })
    );
    check_invariants(&a);

    // Released by its holder, it stays reserved.
    a.release(&svc("old"));
    check_invariants(&a);
    let stats = a.pool_stats(&"p".into()).unwrap();
    assert_eq!((stats.v4.assigned, stats.v4.available), (2, 0));
    assert!(a.assign(&req("d")).is_err());

    // Unreserved, both come back; pools replaced keep the reservations.
    a.set_reserved([ip("192.0.2.0")].into());
    a.set_pools(vec![pool("p", &["192.0.2.0/29"])]);
    check_invariants(&a);
    let stats = a.pool_stats(&"p".into()).unwrap();
    assert_eq!((stats.v4.assigned, stats.v4.available), (2, 5));
    assert_eq!(ips(&a.assign(&req("d")).unwrap()), [ip("192.0.2.2")]);
    a.set_reserved(BTreeSet::new());
    check_invariants(&a);
    assert_eq!(a.pool_stats(&"p".into()).unwrap().v4.available, 5);
}
