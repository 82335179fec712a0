use super::*;
use ferrolb_crds::{L2Advertisement, L2AdvertisementSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use proptest::prelude::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn adv(spec: L2AdvertisementSpec) -> Advertisement {
    ferrolb_config::l2::parse_advertisement(&L2Advertisement::new("a", spec)).unwrap()
}

fn world(nodes: usize) -> World {
    let mut w = World::default();
    for i in 1..=nodes {
        w.nodes.insert(format!("node-{i}"), NodeInfo::default());
    }
    w.pools.insert(
        "default".into(),
        PoolInfo {
            labels: labels(&[("tier", "gold")]),
            ranges: vec![
                IpRange::cidr(ip("192.0.2.64"), 26).unwrap(),
                IpRange::cidr(ip("2001:db8::1:0"), 112).unwrap(),
            ],
        },
    );
    w.advertisements.push(Advertisement::everything("all"));
    w
}

fn svc(key: &str, ips: &[&str]) -> ServiceInfo {
    ServiceInfo {
        key: key.into(),
        ips: ips.iter().map(|s| ip(s)).collect(),
        pool: Some("default".into()),
        ..ServiceInfo::default()
    }
}

fn live(w: &World) -> BTreeSet<String> {
    w.nodes.keys().cloned().collect()
}

fn owner_of(ds: &[Decision], key: &str) -> Result<String, NoOwner> {
    ds.iter()
        .find(|d| d.key == ip(key))
        .map(|d| d.owner.clone())
        .unwrap()
}

const NONE: Options = Options {
    exclude_cordoned: false,
    exclude_not_ready: false,
    sticky: false,
};

#[test]
fn owner_is_the_highest_weight_live_candidate() {
    let mut w = world(3);
    w.services.push(svc("default/web", &["192.0.2.65"]));
    let all = live(&w);
    let ds = elect(&w, &all, &BTreeMap::new(), NONE);
    let expected = hash::owner(all.iter().map(String::as_str), ip("192.0.2.65")).unwrap();
    assert_eq!(owner_of(&ds, "192.0.2.65"), Ok(expected.to_string()));
    assert_eq!(ds[0].interfaces, None, "advertisement names no interface");
    // Without that node alive, another one.
    let mut fewer = all.clone();
    fewer.remove(expected);
    let again = elect(&w, &fewer, &BTreeMap::new(), NONE);
    let second = owner_of(&again, "192.0.2.65").unwrap();
    assert_ne!(second, expected);
    assert!(fewer.contains(&second));
}

#[test]
fn dual_stack_and_sharing_services_have_one_owner() {
    let mut w = world(5);
    w.services
        .push(svc("default/a", &["192.0.2.65", "2001:db8::1:9"]));
    w.services.push(svc("default/b", &["192.0.2.70"]));
    w.services
        .push(svc("other/c", &["192.0.2.70", "2001:db8::1:3"]));
    let ds = elect(&w, &live(&w), &BTreeMap::new(), NONE);
    assert_eq!(ds.len(), 2);
    let dual = ds
        .iter()
        .find(|d| d.ips.contains(&ip("2001:db8::1:9")))
        .unwrap();
    assert_eq!(dual.key, ip("192.0.2.65"));
    assert_eq!(dual.ips.len(), 2);
    let shared = ds
        .iter()
        .find(|d| d.ips.contains(&ip("192.0.2.70")))
        .unwrap();
    assert_eq!(
        shared.services,
        vec!["default/b".to_string(), "other/c".to_string()]
    );
    assert_eq!(shared.ips.len(), 2);
}

#[test]
fn groups_merge_transitively() {
    // a joins X and Y only through b, which comes last.
    let mut w = world(2);
    w.services.push(svc("n/a", &["192.0.2.65"]));
    w.services.push(svc("n/c", &["192.0.2.66"]));
    w.services
        .push(svc("n/b", &["192.0.2.65", "2001:db8::1:1"]));
    w.services
        .push(svc("n/d", &["2001:db8::1:1", "192.0.2.66"]));
    let ds = elect(&w, &live(&w), &BTreeMap::new(), NONE);
    assert_eq!(ds.len(), 1, "{ds:#?}");
    assert_eq!(ds[0].services.len(), 4);
}

#[test]
fn excluded_nodes_never_own() {
    let mut w = world(3);
    w.services.push(svc("default/web", &["192.0.2.65"]));
    let n1 = w.nodes.get_mut("node-1").unwrap();
    n1.labels.insert(EXCLUDE_LABEL.into(), String::new());
    w.nodes.get_mut("node-2").unwrap().network_unavailable = true;
    let n3 = w.nodes.get_mut("node-3").unwrap();
    n3.unschedulable = true;
    n3.ready = Some(false);
    let ds = elect(&w, &live(&w), &BTreeMap::new(), NONE);
    assert_eq!(owner_of(&ds, "192.0.2.65"), Ok("node-3".into()));
    let strict = Options {
        exclude_cordoned: true,
        ..NONE
    };
    let ds = elect(&w, &live(&w), &BTreeMap::new(), strict);
    assert_eq!(owner_of(&ds, "192.0.2.65"), Err(NoOwner::NoEligibleNode));
    w.nodes.get_mut("node-3").unwrap().unschedulable = false;
    let not_ready = Options {
        exclude_not_ready: true,
        ..NONE
    };
    let ds = elect(&w, &live(&w), &BTreeMap::new(), not_ready);
    assert_eq!(owner_of(&ds, "192.0.2.65"), Err(NoOwner::NoEligibleNode));
}

#[test]
fn advertisements_select_pools_nodes_services_and_interfaces() {
    let mut w = world(3);
    w.advertisements = vec![adv(L2AdvertisementSpec {
        ip_address_pools: vec!["other".into()],
        ..L2AdvertisementSpec::default()
    })];
    w.services.push(svc("default/web", &["192.0.2.65"]));
    let ds = elect(&w, &live(&w), &BTreeMap::new(), NONE);
    assert_eq!(owner_of(&ds, "192.0.2.65"), Err(NoOwner::NotAdvertised));

    w.nodes.get_mut("node-2").unwrap().labels = labels(&[("edge", "yes")]);
    w.advertisements = vec![adv(L2AdvertisementSpec {
        ip_address_pool_selectors: vec![LabelSelector {
            match_labels: Some(labels(&[("tier", "gold")])),
            match_expressions: None,
        }],
        node_selectors: vec![LabelSelector {
            match_labels: Some(labels(&[("edge", "yes")])),
            match_expressions: None,
        }],
        interfaces: vec!["eth1".into()],
        ..L2AdvertisementSpec::default()
    })];
    let ds = elect(&w, &live(&w), &BTreeMap::new(), NONE);
    assert_eq!(owner_of(&ds, "192.0.2.65"), Ok("node-2".into()));
    assert_eq!(ds[0].interfaces, Some(BTreeSet::from(["eth1".to_string()])));
    let only_1_3 = BTreeSet::from(["node-1".to_string(), "node-3".to_string()]);
    let ds = elect(&w, &only_1_3, &BTreeMap::new(), NONE);
    assert_eq!(owner_of(&ds, "192.0.2.65"), Err(NoOwner::NoLiveSpeaker));

    // A Service selector that does not match.
    w.advertisements = vec![adv(L2AdvertisementSpec {
        service_selectors: vec![LabelSelector {
            match_labels: Some(labels(&[("app", "db")])),
            match_expressions: None,
        }],
        ..L2AdvertisementSpec::default()
    })];
    let ds = elect(&w, &live(&w), &BTreeMap::new(), NONE);
    assert_eq!(owner_of(&ds, "192.0.2.65"), Err(NoOwner::NotAdvertised));
}

#[test]
fn addresses_outside_every_pool_have_no_owner() {
    let mut w = world(2);
    w.services.push(ServiceInfo {
        pool: None,
        ..svc("default/x", &["192.0.2.5"])
    });
    // Without the annotation the pool is found by range.
    w.services.push(ServiceInfo {
        pool: None,
        ..svc("default/y", &["192.0.2.66"])
    });
    let ds = elect(&w, &live(&w), &BTreeMap::new(), NONE);
    assert_eq!(owner_of(&ds, "192.0.2.5"), Err(NoOwner::UnknownPool));
    assert!(owner_of(&ds, "192.0.2.66").is_ok());
}

#[test]
fn local_traffic_policy_follows_endpoints() {
    let mut w = world(4);
    w.services.push(ServiceInfo {
        local: true,
        endpoint_nodes: BTreeSet::from(["node-3".to_string()]),
        ..svc("default/web", &["192.0.2.65"])
    });
    let ds = elect(&w, &live(&w), &BTreeMap::new(), NONE);
    assert_eq!(owner_of(&ds, "192.0.2.65"), Ok("node-3".into()));
    w.services[0].endpoint_nodes = BTreeSet::from(["node-1".to_string()]);
    let ds = elect(&w, &live(&w), &BTreeMap::new(), NONE);
    assert_eq!(owner_of(&ds, "192.0.2.65"), Ok("node-1".into()));
    w.services[0].endpoint_nodes.clear();
    let ds = elect(&w, &live(&w), &BTreeMap::new(), NONE);
    assert_eq!(owner_of(&ds, "192.0.2.65"), Err(NoOwner::NoEndpoints));
}

#[test]
fn sticky_keeps_the_current_owner_while_it_is_live_and_eligible() {
    let mut w = world(3);
    w.services.push(svc("default/web", &["192.0.2.65"]));
    let all = live(&w);
    let best = owner_of(&elect(&w, &all, &BTreeMap::new(), NONE), "192.0.2.65").unwrap();
    let other = all.iter().find(|n| **n != best).unwrap().clone();
    let previous = BTreeMap::from([(ip("192.0.2.65"), other.clone())]);
    let sticky = Options {
        sticky: true,
        ..NONE
    };
    assert_eq!(
        owner_of(&elect(&w, &all, &previous, sticky), "192.0.2.65"),
        Ok(other.clone())
    );
    // Not sticky: the hash decides.
    assert_eq!(
        owner_of(&elect(&w, &all, &previous, NONE), "192.0.2.65"),
        Ok(best.clone())
    );
    // The previous owner died: the hash decides among the live.
    let mut without = all.clone();
    without.remove(&other);
    let o = owner_of(&elect(&w, &without, &previous, sticky), "192.0.2.65").unwrap();
    assert_ne!(o, other);
}

fn many(nodes: usize, addresses: u32) -> World {
    let mut w = world(nodes);
    for i in 0..addresses {
        let a = std::net::Ipv4Addr::from(0xc000_0240u32 + (i % 64));
        let b =
            std::net::Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0001_0000u128 + u128::from(i));
        // Half dual-stack, half IPv6 only: addresses beyond 64 use v6.
        let ips: Vec<IpAddr> = if i < 64 {
            vec![a.into(), b.into()]
        } else {
            vec![b.into()]
        };
        w.services.push(ServiceInfo {
            key: format!("ns/s{i}"),
            ips,
            pool: Some("default".into()),
            ..ServiceInfo::default()
        });
    }
    w
}

fn owners(ds: &[Decision]) -> BTreeMap<IpAddr, String> {
    ds.iter()
        .map(|d| (d.key, d.owner.clone().unwrap()))
        .collect()
}

proptest! {
    /// A node leaving moves exactly the groups it owned; a node joining takes only groups, never
    /// moves one between two others.
    #[test]
    fn leaving_moves_only_the_departed_nodes_addresses(nodes in 2usize..12, addrs in 1u32..200, gone in 0usize..12) {
        let w = many(nodes, addrs);
        let all = live(&w);
        let before = owners(&elect(&w, &all, &BTreeMap::new(), NONE));
        let departed = format!("node-{}", gone % nodes + 1);
        let mut rest = all.clone();
        rest.remove(&departed);
        let after = owners(&elect(&w, &rest, &BTreeMap::new(), NONE));
        for (key, o) in &before {
            if *o == departed {
                prop_assert_ne!(&after[key], &departed);
            } else {
                prop_assert_eq!(&after[key], o);
            }
        }
    }

    /// Same view, same answer, whatever order the inputs come in.
    #[test]
    fn same_view_same_owner(nodes in 1usize..8, addrs in 1u32..100, seed in any::<u64>()) {
        let w = many(nodes, addrs);
        let mut shuffled = w.clone();
        // Deterministic shuffle of the Service order.
        let n = shuffled.services.len();
        let mut s = seed;
        for i in (1..n).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.services.swap(i, (s >> 33) as usize % (i + 1));
        }
        let all = live(&w);
        prop_assert_eq!(
            owners(&elect(&w, &all, &BTreeMap::new(), NONE)),
            owners(&elect(&shuffled, &all, &BTreeMap::new(), NONE))
        );
    }
}
