//! In-process simulation of many speakers with the pure election core: how many address groups move
//! when one node leaves or joins, and how long one election over the whole cluster takes.
//!
//! `cargo run --release -p ferrolb-speaker-core --example simulate -- [speakers] [addresses]`
//! (defaults: 1000 speakers, 10000 addresses). Every speaker with the same view computes the same
//! result, so one election stands for all of them; the figures compare two views.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

use ferrolb_model::Advertisement;
use ferrolb_model::IpRange;
use ferrolb_speaker_core::{NodeInfo, Options, PoolInfo, ServiceInfo, World, elect};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let speakers = args.first().copied().unwrap_or(1000);
    let addresses = args.get(1).copied().unwrap_or(10_000).min(65_536);
    let mut world = World::default();
    for i in 0..speakers {
        world.nodes.insert(format!("node-{i}"), NodeInfo::default());
    }
    let base = u128::from(
        "2001:db8::1:0"
            .parse::<Ipv6Addr>()
            .unwrap_or(Ipv6Addr::UNSPECIFIED),
    );
    let Ok(range) = IpRange::cidr(IpAddr::V6(Ipv6Addr::from(base)), 112) else {
        eprintln!("bad range");
        return;
    };
    world.pools.insert(
        "sim".into(),
        PoolInfo {
            labels: BTreeMap::new(),
            ranges: vec![range],
        },
    );
    world.advertisements.push(Advertisement::everything("all"));
    for i in 0..addresses {
        world.services.push(ServiceInfo {
            key: format!("ns/svc-{i}"),
            ips: vec![IpAddr::V6(Ipv6Addr::from(base + i as u128))],
            pool: Some("sim".into()),
            ..ServiceInfo::default()
        });
    }
    let all: BTreeSet<String> = world.nodes.keys().cloned().collect();
    let owners = |live: &BTreeSet<String>| -> (BTreeMap<IpAddr, String>, f64) {
        let t = Instant::now();
        let ds = elect(&world, live, &BTreeMap::new(), Options::default());
        let secs = t.elapsed().as_secs_f64();
        let map = ds
            .into_iter()
            .filter_map(|d| Some((d.key, d.owner.ok()?)))
            .collect();
        (map, secs)
    };
    let (before, secs) = owners(&all);
    println!(
        "speakers: {speakers}, addresses: {addresses}; one election over all: {:.1} ms",
        secs * 1e3
    );
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for o in before.values() {
        *per_node.entry(o.as_str()).or_default() += 1;
    }
    let max = per_node.values().max().copied().unwrap_or(0);
    let min = all
        .iter()
        .map(|n| per_node.get(n.as_str()).copied().unwrap_or(0))
        .min()
        .unwrap_or(0);
    println!(
        "balance: mean {:.1} addresses per speaker, min {min}, max {max}",
        addresses as f64 / speakers as f64
    );

    // Leave: one node goes away; count moved addresses and whether each was the departed node's.
    let departed = "node-7".to_string();
    let mut without = all.clone();
    without.remove(&departed);
    let (after, _) = owners(&without);
    let moved: Vec<&IpAddr> = before
        .iter()
        .filter(|(k, o)| after.get(*k) != Some(*o))
        .map(|(k, _)| k)
        .collect();
    let of_departed = before.values().filter(|o| **o == departed).count();
    let wrongly = moved.iter().filter(|k| before[**k] != departed).count();
    println!(
        "leave of {departed}: {} addresses moved, {of_departed} were its own, {wrongly} moved between two live speakers (target 0)",
        moved.len()
    );

    // Join: a new node appears; it should take about addresses / (speakers + 1).
    let mut with = all.clone();
    with.insert("node-new".into());
    let mut grown = world.clone();
    grown.nodes.insert("node-new".into(), NodeInfo::default());
    let joined: BTreeMap<IpAddr, String> =
        elect(&grown, &with, &BTreeMap::new(), Options::default())
            .into_iter()
            .filter_map(|d| Some((d.key, d.owner.ok()?)))
            .collect();
    let moved_join = before
        .iter()
        .filter(|(k, o)| joined.get(*k) != Some(*o))
        .count();
    let to_new = joined.values().filter(|o| *o == "node-new").count();
    println!(
        "join of node-new: {moved_join} addresses moved ({:.3} % of all; 1/N = {:.3} %), {to_new} of them to the new node",
        100.0 * moved_join as f64 / addresses as f64,
        100.0 / (speakers + 1) as f64
    );
}
