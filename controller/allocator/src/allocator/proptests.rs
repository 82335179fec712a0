//! Property tests: random sequences of `set_pools`, `assign`, `release` and `restore` over small
//! pools, checked against a naive model that enumerates addresses (possible only because the
//! pools are small) and knows nothing of runs, indexes or counters.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::collection::{btree_set, vec};
use proptest::prelude::*;

use super::tests::check_invariants;
use super::*;
use crate::range::IpRange;
use crate::request::Protocol;

const NAMES: [&str; 4] = ["a", "b", "c", "d"];
const SERVICES: usize = 10;

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

fn v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last))
}

fn service(index: usize) -> ServiceKey {
    ServiceKey::new("ns", &format!("s{index}"))
}

/// IPv4 last octets near both ends of 192.0.2.0/24, so pools include .0 and .255.
fn v4_octet() -> impl Strategy<Value = u8> {
    prop_oneof![0u8..24, 248u8..=255]
}

fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![v4_octet().prop_map(v4), (0u16..32).prop_map(v6)]
}

fn v4_range() -> impl Strategy<Value = IpRange> {
    (v4_octet(), 0u8..6)
        .prop_map(|(start, len)| IpRange::new(v4(start), v4(start.saturating_add(len))).unwrap())
}

fn v6_range() -> impl Strategy<Value = IpRange> {
    (0u16..28, 0u16..6).prop_map(|(start, len)| IpRange::new(v6(start), v6(start + len)).unwrap())
}

/// One or two ranges, usually one of each family.
fn ranges() -> impl Strategy<Value = Vec<IpRange>> {
    (v4_range(), v6_range(), 0..4).prop_map(|(four, six, kind)| match kind {
        0 => vec![four],
        1 => vec![six],
        _ => vec![four, six],
    })
}

fn pool_spec() -> impl Strategy<Value = PoolSpec> {
    (
        0..NAMES.len(),
        ranges(),
        prop::bool::weighted(0.8),
        any::<bool>(),
        prop::option::of(0i32..3),
        0u64..4,
    )
        .prop_map(|(name, ranges, auto_assign, avoid, priority, rank)| {
            PoolSpec::new(NAMES[name].into(), ranges)
                .unwrap()
                .with_auto_assign(auto_assign)
                .with_avoid_buggy_ips(avoid)
                .with_priority(priority)
                .with_rank(rank)
        })
}

fn sharing() -> impl Strategy<Value = Option<Sharing>> {
    let port = prop_oneof![
        Just((Protocol::Tcp, 80)),
        Just((Protocol::Tcp, 443)),
        Just((Protocol::Udp, 53)),
    ];
    prop::option::weighted(
        0.6,
        (
            prop_oneof![Just("k"), Just("j")],
            btree_set(port, 0..3),
            prop_oneof![3 => Just(""), 1 => Just("app=x")],
        )
            .prop_map(|(key, ports, backend)| Sharing::new(key, ports, backend).unwrap()),
    )
}

fn policy() -> impl Strategy<Value = FamilyPolicy> {
    let family = prop_oneof![Just(Family::V4), Just(Family::V6)];
    (family, 0..3).prop_map(|(primary, kind)| match kind {
        0 => FamilyPolicy::SingleStack(primary),
        1 => FamilyPolicy::PreferDualStack { primary },
        _ => FamilyPolicy::RequireDualStack { primary },
    })
}

fn pool_choice() -> impl Strategy<Value = PoolChoice> {
    prop_oneof![
        3 => Just(PoolChoice::Auto { eligible: None }),
        1 => btree_set(prop::sample::select(NAMES.to_vec()), 0..3).prop_map(|names| {
            PoolChoice::Auto {
                eligible: Some(names.into_iter().map(PoolName::from).collect()),
            }
        }),
        // "z" names no pool.
        1 => prop::sample::select(vec!["a", "b", "c", "z"]).prop_map(|name| PoolChoice::Named(name.into())),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (
        0..SERVICES,
        policy(),
        prop_oneof![4 => Just(vec![]), 2 => vec(addr(), 1..2), 1 => vec(addr(), 2..3)],
        pool_choice(),
        sharing(),
    )
        .prop_map(|(index, policy, requested, pool, sharing)| Request {
            service: service(index),
            policy,
            requested,
            pool,
            sharing,
        })
}

#[derive(Debug, Clone)]
enum Op {
    SetPools(Vec<PoolSpec>),
    Assign(Request),
    Release(usize),
    Restore(usize, Vec<IpAddr>, Option<Sharing>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => vec(pool_spec(), 0..4).prop_map(Op::SetPools),
        8 => request().prop_map(Op::Assign),
        2 => (0..SERVICES).prop_map(Op::Release),
        1 => (0..SERVICES, vec(addr(), 0..3), sharing()).prop_map(|(i, a, s)| Op::Restore(i, a, s)),
    ]
}

/// Up to `max` operations, after pools are first set.
fn ops(max: usize) -> impl Strategy<Value = Vec<Op>> {
    (vec(pool_spec(), 2..5), vec(op(), 0..max)).prop_map(|(pools, mut ops)| {
        ops.insert(0, Op::SetPools(pools));
        ops
    })
}

/// The outcome of one operation, compared between runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Pools(PoolsReport),
    Assigned(Result<Allocation, AllocError>),
    Released(Vec<IpAddr>),
}

/// The naive model: pool specs as given and who holds what, learnt from the allocator's answers.
#[derive(Debug, Default)]
struct Model {
    /// Kept pools, oldest first (duplicates of a name dropped).
    pools: Vec<PoolSpec>,
    holdings: BTreeMap<ServiceKey, (Vec<IpAddr>, Option<Sharing>)>,
}

impl Model {
    fn set_pools(&mut self, mut specs: Vec<PoolSpec>) {
        specs.sort_by(|a, b| (a.rank(), a.name()).cmp(&(b.rank(), b.name())));
        let mut seen = BTreeSet::new();
        specs.retain(|spec| seen.insert(spec.name().clone()));
        self.pools = specs;
    }

    /// The pool that owns `ip` (the oldest containing it), and whether it hands it out.
    fn owner(&self, ip: IpAddr) -> Option<(&PoolSpec, bool)> {
        let pool = self.pools.iter().find(|spec| {
            spec.ranges().iter().any(|range| {
                range.family() == Family::of(ip) && range.start() <= ip && ip <= range.end()
            })
        })?;
        let buggy = matches!(ip, IpAddr::V4(v4) if matches!(v4.octets()[3], 0 | 255));
        Some((pool, !(pool.avoid_buggy_ips() && buggy)))
    }

    /// Every address `pool` hands out, of `family`.
    fn usable(&self, pool: &PoolSpec, family: Family) -> BTreeSet<IpAddr> {
        pool.ranges()
            .iter()
            .filter(|range| range.family() == family)
            .flat_map(|range| {
                let (start, end) = range.numbers();
                (start..=end).map(move |n| family.addr(n))
            })
            .filter(|&ip| {
                self.owner(ip)
                    .is_some_and(|(owner, usable)| owner.name() == pool.name() && usable)
            })
            .collect()
    }

    fn held(&self) -> BTreeMap<IpAddr, BTreeSet<ServiceKey>> {
        let mut held: BTreeMap<IpAddr, BTreeSet<ServiceKey>> = BTreeMap::new();
        for (service, (ips, _)) in &self.holdings {
            for &ip in ips {
                held.entry(ip).or_default().insert(service.clone());
            }
        }
        held
    }

    /// Pools by preference: priority (none last), then name.
    fn by_preference(&self) -> Vec<&PoolSpec> {
        let mut pools: Vec<&PoolSpec> = self.pools.iter().collect();
        pools.sort_by_key(|spec| {
            (
                spec.priority().is_none(),
                spec.priority(),
                spec.name().clone(),
            )
        });
        pools
    }

    /// What a fresh SingleStack request without sharing or requested address must get.
    fn expected_fresh(&self, req: &Request, family: Family) -> Result<IpAddr, AllocError> {
        let named = match &req.pool {
            PoolChoice::Named(name) => Some(name.clone()),
            PoolChoice::Auto { .. } => None,
        };
        if let Some(name) = &named
            && !self.pools.iter().any(|spec| spec.name() == name)
        {
            return Err(AllocError::NoSuchPool(name.clone()));
        }
        let held = self.held();
        let mut has_family = false;
        for pool in self.by_preference() {
            if !req.may_use(pool.name(), pool.auto_assign(), false) {
                continue;
            }
            let usable = self.usable(pool, family);
            has_family |= !usable.is_empty();
            if let Some(&ip) = usable.iter().find(|ip| !held.contains_key(ip)) {
                return Ok(ip);
            }
        }
        Err(if has_family {
            AllocError::Exhausted {
                pool: named,
                family,
            }
        } else {
            AllocError::NoPoolForFamily {
                pool: named,
                family,
            }
        })
    }

    /// Checks the allocator against the model.
    fn check(&self, a: &Allocator) -> Result<(), TestCaseError> {
        for index in 0..SERVICES {
            let key = service(index);
            let got = a
                .allocation(&key)
                .map(|al| (al.ips().collect::<Vec<_>>(), al.sharing.clone()));
            prop_assert_eq!(got.as_ref(), self.holdings.get(&key), "holding of {}", key);
        }
        let held = self.held();
        for (&ip, holders) in &held {
            let got: BTreeSet<ServiceKey> = a.holders(ip).map(|h| h.service().clone()).collect();
            prop_assert_eq!(&got, holders, "holders of {}", ip);
            // Never two services on one address unless both share it compatibly.
            let sharings: Vec<Option<&Sharing>> = holders
                .iter()
                .map(|h| self.holdings[h].1.as_ref())
                .collect();
            if sharings.len() > 1 {
                for (i, first) in sharings.iter().enumerate() {
                    let first = first.ok_or_else(|| {
                        TestCaseError::fail(format!("{ip} shared by a non-sharing service"))
                    })?;
                    for second in &sharings[i + 1..] {
                        let second = second.ok_or_else(|| {
                            TestCaseError::fail(format!("{ip} shared by a non-sharing service"))
                        })?;
                        prop_assert_eq!(first.key(), second.key());
                        prop_assert_eq!(first.backend(), second.backend());
                        prop_assert!(first.ports().is_disjoint(second.ports()));
                    }
                }
            }
        }
        for pool in &self.pools {
            let stats = a
                .pool_stats(pool.name())
                .ok_or_else(|| TestCaseError::fail("pool missing"))?;
            for family in Family::ALL {
                let usable = self.usable(pool, family);
                let assigned = usable.iter().filter(|ip| held.contains_key(ip)).count() as u128;
                let got = match family {
                    Family::V4 => stats.v4,
                    Family::V6 => stats.v6,
                };
                prop_assert_eq!(
                    got.assigned,
                    assigned,
                    "{} {} assigned",
                    pool.name(),
                    family
                );
                prop_assert_eq!(
                    got.available,
                    usable.len() as u128 - assigned,
                    "{} {} available",
                    pool.name(),
                    family
                );
            }
        }
        check_invariants(a);
        Ok(())
    }

    /// Checks a successful assignment of `req` against the model as it was before it.
    fn check_assigned(&self, req: &Request, got: &Allocation) -> Result<(), TestCaseError> {
        for family in Family::ALL {
            let present = got.get(family).is_some();
            match req.policy.need(family) {
                Need::Required => prop_assert!(present, "{} missing", family),
                Need::Excluded => prop_assert!(!present, "{} not wanted", family),
                Need::Optional => {}
            }
        }
        for ip in &req.requested {
            prop_assert!(
                got.ips().any(|held| held == *ip),
                "requested {} not honoured",
                ip
            );
        }
        prop_assert_eq!(&got.sharing, &req.sharing);
        for family in Family::ALL {
            let Some(assigned) = got.get(family) else {
                continue;
            };
            // Inside an effective pool the request may use, at allocation time.
            let (pool, usable) = self.owner(assigned.ip).ok_or_else(|| {
                TestCaseError::fail(format!("{} outside every pool", assigned.ip))
            })?;
            prop_assert!(usable, "{} is avoided", assigned.ip);
            prop_assert_eq!(assigned.pool.as_ref(), Some(pool.name()));
            let requested = req.requested.contains(&assigned.ip);
            prop_assert!(
                req.may_use(pool.name(), pool.auto_assign(), requested),
                "{} from pool {} not allowed",
                assigned.ip,
                pool.name()
            );
        }
        Ok(())
    }
}

/// Runs `ops` on a fresh allocator, checking every step against the model.
fn run(ops: &[Op]) -> Result<(Allocator, Vec<Outcome>), TestCaseError> {
    let mut a = Allocator::new();
    let mut model = Model::default();
    let mut outcomes = Vec::new();
    for op in ops {
        let before = a.clone();
        match op {
            Op::SetPools(specs) => {
                outcomes.push(Outcome::Pools(a.set_pools(specs.clone())));
                model.set_pools(specs.clone());
            }
            Op::Assign(req) => {
                let result = a.assign(req);
                let fresh = !model.holdings.contains_key(&req.service)
                    && req.requested.is_empty()
                    && req.sharing.is_none();
                if let (true, FamilyPolicy::SingleStack(family)) = (fresh, req.policy) {
                    let want = model.expected_fresh(req, family);
                    let got = result.clone().map(|al| al.ips().collect::<Vec<_>>());
                    prop_assert_eq!(got, want.map(|ip| vec![ip]), "fresh {:?}", req);
                }
                match &result {
                    Ok(got) => {
                        model.check_assigned(req, got)?;
                        model.holdings.insert(
                            req.service.clone(),
                            (got.ips().collect(), got.sharing.clone()),
                        );
                    }
                    Err(_) => prop_assert_eq!(&a, &before, "error changed state"),
                }
                outcomes.push(Outcome::Assigned(result));
            }
            Op::Release(index) => {
                let key = service(*index);
                let released = a.release(&key);
                let want = model
                    .holdings
                    .remove(&key)
                    .map(|(ips, _)| ips)
                    .unwrap_or_default();
                prop_assert_eq!(&released, &want);
                outcomes.push(Outcome::Released(released));
            }
            Op::Restore(index, addrs, sharing) => {
                let key = service(*index);
                let result = a.restore(key.clone(), addrs.clone(), sharing.clone());
                match &result {
                    Ok(got) => {
                        model
                            .holdings
                            .insert(key, (got.ips().collect(), got.sharing.clone()));
                    }
                    Err(_) => prop_assert_eq!(&a, &before, "error changed state"),
                }
                outcomes.push(Outcome::Assigned(result));
            }
        }
        model.check(&a)?;
    }
    Ok((a, outcomes))
}

proptest! {
    /// Every step agrees with the model: holders, sharing rules, effective pools, stats, and the
    /// lowest free address of the best pool for fresh requests.
    #[test]
    fn operations_agree_with_the_model(ops in ops(40)) {
        run(&ops)?;
    }

    /// The same operations give the same results and the same state.
    #[test]
    fn deterministic(ops in ops(40)) {
        let (first, first_outcomes) = run(&ops)?;
        let (second, second_outcomes) = run(&ops)?;
        prop_assert_eq!(first_outcomes, second_outcomes);
        prop_assert_eq!(first, second);
    }

    /// Assigning a new service then releasing it restores the exact state, stats included.
    #[test]
    fn assign_then_release_restores_state(ops in ops(30), req in request()) {
        let (mut a, _) = run(&ops)?;
        let req = Request { service: ServiceKey::new("ns", "fresh"), ..req };
        let before = a.clone();
        let stats: Vec<Option<PoolStats>> = NAMES.iter().map(|n| a.pool_stats(&(*n).into())).collect();
        if a.assign(&req).is_ok() {
            a.release(&req.service);
        }
        let after: Vec<Option<PoolStats>> = NAMES.iter().map(|n| a.pool_stats(&(*n).into())).collect();
        prop_assert_eq!(stats, after);
        prop_assert_eq!(a, before);
    }

    /// A release hold keeps what a service released from every service that could not have
    /// shared it with that service, and freeing the hold restores the exact state of the release.
    #[test]
    fn a_release_hold_keeps_its_addresses_until_freed(
        ops in ops(30),
        index in 0..SERVICES,
        req in request(),
    ) {
        let (mut a, _) = run(&ops)?;
        let key = service(index);
        let sharing = a.allocation(&key).and_then(|held| held.sharing.clone());
        let released = a.release(&key);
        let after_release = a.clone();
        for &ip in &released {
            // Whoever holds it shared it with this service: the hold is never refused.
            prop_assert_eq!(a.hold_release(&key, ip, sharing.clone()), Ok(()));
        }
        check_invariants(&a);
        prop_assert_eq!(a.releases(&key).collect::<BTreeSet<_>>(), released.iter().copied().collect());
        let other = Request { service: ServiceKey::new("ns", "fresh"), ..req };
        if let Ok(got) = a.assign(&other) {
            for ip in got.ips().filter(|ip| released.contains(ip)) {
                prop_assert_eq!(
                    sharing_conflict(other.sharing.as_ref(), sharing.as_ref()),
                    None,
                    "{} got {}, held for {}", other.service, ip, key
                );
            }
            a.release(&other.service);
        }
        prop_assert_eq!(a.free_releases(&key).len(), released.len());
        prop_assert_eq!(a, after_release);
    }
}
