//! Carries out the announcer's half of a decision: one responder per interface answering for the
//! addresses owned on it, solicited-node multicast memberships for owned IPv6 addresses, and the
//! announcements the schedule asks for.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_net::{MulticastMembership, Responder, join_solicited_node};
use ferrolb_speaker_core::interfaces::LinkInfo;
use tracing::{info, warn};

/// The interfaces each owned address is placed on, sorted. (Vectors, not sets: a one-element
/// B-tree set allocates a whole node, ~0.3 KiB per address.)
pub type Placement = BTreeMap<IpAddr, Vec<String>>;

/// Responders and memberships, by interface.
#[derive(Default)]
pub struct Dataplane {
    responders: BTreeMap<String, Responder>,
    groups: BTreeMap<(String, IpAddr), MulticastMembership>,
    placement: Placement,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("placement", &self.placement)
            .finish_non_exhaustive()
    }
}

/// The node's links, for the interface choice.
pub fn links() -> Vec<LinkInfo> {
    ferrolb_net::interfaces()
        .into_iter()
        .map(|i| LinkInfo {
            up: i.up,
            networks: i
                .addresses
                .iter()
                .filter_map(|a| ipnetwork::IpNetwork::new(a.ip, a.prefix).ok())
                .collect(),
            name: i.name,
        })
        .collect()
}

impl Dataplane {
    /// What is placed now.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// Makes the responders answer exactly for `want`. Returns the addresses whose set of
    /// interfaces grew (they need a fresh announcement burst) and those no longer owned at all.
    pub fn apply(&mut self, want: Placement) -> (Vec<IpAddr>, Vec<IpAddr>) {
        let mut by_iface: BTreeMap<&str, Vec<IpAddr>> = BTreeMap::new();
        for (ip, ifaces) in &want {
            for i in ifaces {
                by_iface.entry(i.as_str()).or_default().push(*ip);
            }
        }
        // Start responders for new interfaces; stop those no longer needed.
        for name in by_iface.keys() {
            if !self.responders.contains_key(*name) {
                match ferrolb_net::interface(name).and_then(|i| Responder::start(&i)) {
                    Ok(r) => {
                        info!(iface = %name, "responder started");
                        self.responders.insert(name.to_string(), r);
                    }
                    Err(e) => warn!(iface = %name, error = %e, "cannot answer on this interface"),
                }
            }
        }
        let gone: Vec<String> = self
            .responders
            .keys()
            .filter(|n| !by_iface.contains_key(n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Some(r) = self.responders.get(&name) {
                r.set_owned(std::iter::empty());
            }
            if let Some(r) = self.responders.remove(&name)
                && let Err(e) = r.stop()
            {
                warn!(iface = %name, error = %e, "responder stop");
            }
        }
        for (name, r) in &self.responders {
            r.set_owned(by_iface.get(name.as_str()).cloned().unwrap_or_default());
        }
        // Solicited-node groups (RFC 4861 §7.2.1: a node joins the solicited-node group of each
        // address it answers for, so MLD-snooping switches forward the solicitations to it).
        let mut wanted_groups = BTreeSet::new();
        for (ip, ifaces) in &want {
            if let IpAddr::V6(v6) = ip {
                for i in ifaces {
                    wanted_groups.insert((i.clone(), *ip));
                    if self.groups.contains_key(&(i.clone(), *ip)) {
                        continue;
                    }
                    let Some(r) = self.responders.get(i) else {
                        continue;
                    };
                    match join_solicited_node(r.interface().index, *v6) {
                        Ok(m) => {
                            self.groups.insert((i.clone(), *ip), m);
                        }
                        Err(e) => warn!(%ip, iface = %i, error = %e, "solicited-node group"),
                    }
                }
            }
        }
        self.groups.retain(|k, _| wanted_groups.contains(k));
        let grown = want
            .iter()
            .filter(|(ip, ifaces)| {
                self.placement
                    .get(ip)
                    .is_none_or(|old| !ifaces.iter().all(|i| old.contains(i)))
            })
            .map(|(ip, _)| *ip)
            .collect();
        let lost = self
            .placement
            .keys()
            .filter(|ip| !want.contains_key(ip))
            .copied()
            .collect();
        self.placement = want;
        (grown, lost)
    }

    /// Sends the announcement of `ip` on each interface it is placed on.
    pub fn announce(&self, ip: IpAddr) {
        for name in self.placement.get(&ip).into_iter().flatten() {
            if let Some(r) = self.responders.get(name)
                && let Err(e) = r.announce(ip)
            {
                warn!(%ip, iface = %name, error = %e, "announcement not sent");
            }
        }
    }

    /// Counters of each responder, by interface.
    pub fn counters(&self) -> Vec<(String, ferrolb_net::Counters)> {
        self.responders
            .iter()
            .map(|(n, r)| (n.clone(), r.counters()))
            .collect()
    }

    /// Stops answering everywhere and leaves every group.
    pub fn stop(&mut self) {
        self.apply(Placement::new());
    }
}
