//! Per address: which live node answers for it.
//!
//! Candidates for an address are the live members, restricted to the nodes that an
//! `L2Advertisement` covering the address's pool and Service selects, minus excluded nodes, and for
//! `externalTrafficPolicy: Local` to the nodes with a ready or serving endpoint. The owner is the
//! candidate with the highest rendezvous weight, so every speaker with the same view names the same
//! owner, and a node leaving moves only the addresses it owned.
//!
//! Addresses are elected in groups: the addresses of one Service (both families of a dual-stack
//! Service) and every Service sharing one of them form a group with one owner, keyed by its
//! smallest address. That keeps both families on one node and sharing Services together.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_model::Advertisement;
use ferrolb_model::IpRange;

use crate::hash;

/// Label that takes a node out of load-balancing (the Kubernetes well-known label, honoured by
/// cloud providers and by MetalLB).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// What the election needs to know about a Node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub labels: BTreeMap<String, String>,
    /// The `NetworkUnavailable` condition is `True`.
    pub network_unavailable: bool,
    /// The `Ready` condition: `Some(true)` when `True`, `None` when absent.
    pub ready: Option<bool>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
}

/// A pool as the speaker sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolInfo {
    pub labels: BTreeMap<String, String>,
    /// Ranges of a valid pool, to find the pool of an address whose Service lacks the annotation.
    pub ranges: Vec<IpRange>,
}

/// A LoadBalancer Service with addresses in its status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceInfo {
    /// `namespace/name`.
    pub key: String,
    pub labels: BTreeMap<String, String>,
    pub ips: Vec<IpAddr>,
    /// The pool named by the controller's annotation.
    pub pool: Option<String>,
    /// `externalTrafficPolicy: Local`.
    pub local: bool,
    /// Nodes with a ready or serving endpoint (only read when `local`).
    pub endpoint_nodes: BTreeSet<String>,
}

/// Everything the election reads from the API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct World {
    pub nodes: BTreeMap<String, NodeInfo>,
    pub pools: BTreeMap<String, PoolInfo>,
    pub advertisements: Vec<Advertisement>,
    pub services: Vec<ServiceInfo>,
}

/// Election options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Cordoned nodes do not announce.
    pub exclude_cordoned: bool,
    /// Nodes whose `Ready` condition is not `True` do not announce.
    pub exclude_not_ready: bool,
    /// The current owner keeps a group while it stays live and eligible.
    pub sticky: bool,
}

/// Why a group has no owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoOwner {
    /// No valid pool contains the address.
    UnknownPool,
    /// No `L2Advertisement` covers the pool and the Services.
    NotAdvertised,
    /// Advertisements cover it, but every node they select is excluded (or none exists).
    NoEligibleNode,
    /// `externalTrafficPolicy: Local` and no eligible node has a ready endpoint.
    NoEndpoints,
    /// Eligible nodes exist, but none of them runs a live speaker.
    NoLiveSpeaker,
}

impl std::fmt::Display for NoOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NoOwner::UnknownPool => "no valid IPAddressPool contains the address",
            NoOwner::NotAdvertised => {
                "no L2Advertisement covers the address's pool and this Service"
            }
            NoOwner::NoEligibleNode => {
                "every node selected by the L2Advertisements is excluded (label node.kubernetes.io/exclude-from-external-load-balancers, NetworkUnavailable, cordoned or NotReady)"
            }
            NoOwner::NoEndpoints => {
                "externalTrafficPolicy is Local and no eligible node has a ready endpoint"
            }
            NoOwner::NoLiveSpeaker => "no eligible node runs a live speaker",
        })
    }
}

/// The outcome for one group of addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The smallest address of the group: the key of its rendezvous hash.
    pub key: IpAddr,
    /// Sorted. (Vectors, not sets: a one-element B-tree set allocates a whole node, ~0.3 KiB, and
    /// a speaker keeps a decision per address group.)
    pub ips: Vec<IpAddr>,
    /// `namespace/name` of every Service using the group's addresses, sorted.
    pub services: Vec<String>,
    pub pool: Option<String>,
    /// Number of eligible nodes, live or not.
    pub eligible: usize,
    pub owner: Result<String, NoOwner>,
    /// Interfaces for the owner: the union of those named by the advertisements that select it,
    /// or `None` when one of them names none (then the interfaces are chosen by subnet).
    pub interfaces: Option<BTreeSet<String>>,
}

struct Group<'a> {
    ips: BTreeSet<IpAddr>,
    services: Vec<&'a ServiceInfo>,
}

/// Groups of addresses joined by Services (union of every Service's addresses, transitively).
fn groups(services: &[ServiceInfo]) -> Vec<Group<'_>> {
    let mut out: Vec<Group<'_>> = Vec::new();
    let mut index: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for svc in services {
        if svc.ips.is_empty() {
            continue;
        }
        // Every existing group this Service touches merges into the first one.
        let mut hits: Vec<usize> = svc
            .ips
            .iter()
            .filter_map(|ip| index.get(ip).copied())
            .collect();
        hits.sort_unstable();
        hits.dedup();
        let target = match hits.first() {
            Some(&t) => t,
            None => {
                out.push(Group {
                    ips: BTreeSet::new(),
                    services: Vec::new(),
                });
                out.len() - 1
            }
        };
        for &other in hits.iter().skip(1).rev() {
            let moved = std::mem::replace(
                &mut out[other],
                Group {
                    ips: BTreeSet::new(),
                    services: Vec::new(),
                },
            );
            for ip in &moved.ips {
                index.insert(*ip, target);
            }
            out[target].ips.extend(moved.ips);
            out[target].services.extend(moved.services);
        }
        for ip in &svc.ips {
            index.insert(*ip, target);
            out[target].ips.insert(*ip);
        }
        out[target].services.push(svc);
    }
    out.retain(|g| !g.ips.is_empty());
    out
}

fn contains(range: &IpRange, ip: IpAddr) -> bool {
    range.start() <= ip
        && ip <= range.end()
        && matches!(
            (range.start(), ip),
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_))
        )
}

impl World {
    /// The pool of an address: the Service's annotation when it names a known pool, else the
    /// first pool (by name) whose ranges contain it.
    fn pool_of(&self, svc: &ServiceInfo, ip: IpAddr) -> Option<&str> {
        if let Some(p) = &svc.pool
            && let Some((name, info)) = self.pools.get_key_value(p)
            && info.ranges.iter().any(|r| contains(r, ip))
        {
            return Some(name);
        }
        self.pools
            .iter()
            .find(|(_, info)| info.ranges.iter().any(|r| contains(r, ip)))
            .map(|(n, _)| n.as_str())
    }

    fn excluded(&self, node: &NodeInfo, opts: Options) -> bool {
        node.network_unavailable
            || node.labels.contains_key(EXCLUDE_LABEL)
            || (opts.exclude_cordoned && node.unschedulable)
            || (opts.exclude_not_ready && node.ready != Some(true))
    }
}

/// Nodes selected by a set of advertisements: all of them, and the live ones with their hash
/// states.
type Selected<'a> = (Vec<&'a str>, Vec<(&'a str, u64)>);

/// Elects an owner for every group of addresses.
///
/// `live` are the members with a live speaker, `previous` the current owner of each group key (read
/// back from the API) and only used in sticky mode.
pub fn elect(
    world: &World,
    live: &BTreeSet<String>,
    previous: &BTreeMap<IpAddr, String>,
    opts: Options,
) -> Vec<Decision> {
    let mut out = Vec::new();
    let mut cache: BTreeMap<Vec<usize>, Selected<'_>> = BTreeMap::new();
    for group in groups(&world.services) {
        let Some(&key) = group.ips.first() else {
            continue;
        };
        let mut services: Vec<String> = group.services.iter().map(|s| s.key.clone()).collect();
        services.sort_unstable();
        services.dedup();
        let mut decision = Decision {
            key,
            ips: group.ips.iter().copied().collect(),
            services,
            pool: None,
            eligible: 0,
            owner: Err(NoOwner::UnknownPool),
            interfaces: None,
        };
        // Every address of the group must be in a valid pool; the group's advertisement test uses
        // each (Service, address) pair: a node is eligible when, for every address, some
        // advertisement covering that address's pool and some Service on it selects the node.
        let mut per_ip: Vec<(IpAddr, &str)> = Vec::new();
        let mut unknown = false;
        for ip in &group.ips {
            let svc = group.services.iter().find(|s| s.ips.contains(ip));
            match svc.and_then(|s| world.pool_of(s, *ip)) {
                Some(p) => per_ip.push((*ip, p)),
                None => unknown = true,
            }
        }
        if unknown {
            out.push(decision);
            continue;
        }
        decision.pool = per_ip.first().map(|(_, p)| p.to_string());
        let advertising: Vec<usize> = world
            .advertisements
            .iter()
            .enumerate()
            .filter(|(_, adv)| {
                per_ip.iter().all(|(ip, pool)| {
                    let labels = world.pools.get(*pool).map(|p| &p.labels);
                    adv.covers_pool(pool, labels.unwrap_or(&BTreeMap::new()))
                        && group
                            .services
                            .iter()
                            .any(|s| s.ips.contains(ip) && adv.covers_service(&s.labels))
                })
            })
            .map(|(i, _)| i)
            .collect();
        if advertising.is_empty() {
            decision.owner = Err(NoOwner::NotAdvertised);
            out.push(decision);
            continue;
        }
        // Nodes selected by this set of advertisements and not excluded, split into all and live
        // ones; computed once per distinct set (most groups share one).
        let (selected, selected_live) = cache.entry(advertising.clone()).or_insert_with(|| {
            let sel: Vec<&str> = world
                .nodes
                .iter()
                .filter(|(_, n)| {
                    advertising
                        .iter()
                        .any(|a| world.advertisements[*a].covers_node(&n.labels))
                })
                .filter(|(_, n)| !world.excluded(n, opts))
                .map(|(name, _)| name.as_str())
                .collect();
            let live_sel = sel
                .iter()
                .copied()
                .filter(|n| live.contains(*n))
                .map(|n| (n, hash::node_state(n)))
                .collect();
            (sel, live_sel)
        });
        if selected.is_empty() {
            decision.owner = Err(NoOwner::NoEligibleNode);
            out.push(decision);
            continue;
        }
        // externalTrafficPolicy: Local — only nodes with an endpoint of every Local Service.
        let local: Vec<&ServiceInfo> = group.services.iter().copied().filter(|s| s.local).collect();
        let has_endpoints = |node: &str| local.iter().all(|s| s.endpoint_nodes.contains(node));
        decision.eligible = selected.iter().filter(|n| has_endpoints(n)).count();
        if decision.eligible == 0 {
            decision.owner = Err(NoOwner::NoEndpoints);
            out.push(decision);
            continue;
        }
        let candidates = selected_live
            .iter()
            .copied()
            .filter(|(n, _)| has_endpoints(n));
        let sticky_owner = previous.get(&key).filter(|p| {
            opts.sticky && live.contains(*p) && selected.contains(&p.as_str()) && has_endpoints(p)
        });
        let owner = match sticky_owner {
            Some(p) => Some(p.as_str()),
            None => hash::owner_of_states(candidates, key),
        };
        let Some(owner) = owner else {
            decision.owner = Err(NoOwner::NoLiveSpeaker);
            out.push(decision);
            continue;
        };
        let mut named = Some(BTreeSet::new());
        for adv in advertising.iter().map(|i| &world.advertisements[*i]) {
            let covers = world
                .nodes
                .get(owner)
                .is_some_and(|n| adv.covers_node(&n.labels));
            if !covers {
                continue;
            }
            if adv.interfaces.is_empty() {
                named = None;
            } else if let Some(set) = named.as_mut() {
                set.extend(adv.interfaces.iter().cloned());
            }
        }
        decision.interfaces = named;
        decision.owner = Ok(owner.to_string());
        out.push(decision);
    }
    out
}

#[cfg(test)]
mod tests;
