//! The real [`Dataplane`]: one responder per interface answering for the addresses placed on it,
//! solicited-node multicast memberships for placed IPv6 addresses, and the announcements.
//!
//! It reports back only what runs: an address is placed on an interface once that interface's
//! responder is running. A responder that cannot start is reported, and the node state machine
//! retries it (`ferrolb_speaker_core::node`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_net::{MulticastMembership, Responder, join_solicited_node};
use ferrolb_speaker_core::Dataplane;
use ferrolb_speaker_core::interfaces::LinkInfo;
use tracing::{info, warn};

/// Responders and memberships, by interface.
#[derive(Default)]
pub struct Wire {
    responders: BTreeMap<String, Responder>,
    groups: BTreeMap<(String, IpAddr), MulticastMembership>,
    /// Addresses answered on each interface.
    owned: BTreeMap<String, BTreeSet<IpAddr>>,
    /// Interfaces whose responder has not been handed its set since it changed.
    dirty: BTreeSet<String>,
    /// Where each address is answered.
    placed: BTreeMap<IpAddr, Vec<String>>,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wire")
            .field("placed", &self.placed)
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

impl Wire {
    /// Whether a responder runs on `name`, starting it if needed.
    fn running(&mut self, name: &str) -> bool {
        if self.responders.contains_key(name) {
            return true;
        }
        match ferrolb_net::interface(name).and_then(|i| Responder::start(&i)) {
            Ok(r) => {
                info!(iface = %name, "responder started");
                self.responders.insert(name.to_string(), r);
                true
            }
            Err(e) => {
                warn!(iface = %name, error = %e, "cannot answer on this interface; retrying");
                false
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
}

impl Dataplane for Wire {
    fn answer(&mut self, ip: IpAddr, ifaces: &[String]) -> Vec<String> {
        let old = self.placed.remove(&ip).unwrap_or_default();
        let got: Vec<String> = ifaces.iter().filter(|i| self.running(i)).cloned().collect();
        for i in old.iter().filter(|i| !got.contains(i)) {
            if let Some(set) = self.owned.get_mut(i) {
                set.remove(&ip);
            }
            self.groups.remove(&(i.clone(), ip));
            self.dirty.insert(i.clone());
        }
        for i in got.iter().filter(|i| !old.contains(i)) {
            self.owned.entry(i.clone()).or_default().insert(ip);
            self.dirty.insert(i.clone());
            // Solicited-node group (RFC 4861 §7.2.1: a node joins the solicited-node group of
            // each address it answers for, so MLD-snooping switches forward the solicitations).
            if let IpAddr::V6(v6) = ip
                && let Some(r) = self.responders.get(i)
            {
                match join_solicited_node(r.interface().index, v6) {
                    Ok(m) => {
                        self.groups.insert((i.clone(), ip), m);
                    }
                    Err(e) => warn!(%ip, iface = %i, error = %e, "solicited-node group"),
                }
            }
        }
        if !got.is_empty() {
            self.placed.insert(ip, got.clone());
        }
        got
    }

    fn commit(&mut self) {
        for name in std::mem::take(&mut self.dirty) {
            let empty = self.owned.get(&name).is_none_or(BTreeSet::is_empty);
            if empty {
                self.owned.remove(&name);
                if let Some(r) = self.responders.remove(&name) {
                    r.set_owned(std::iter::empty());
                    if let Err(e) = r.stop() {
                        warn!(iface = %name, error = %e, "responder stop");
                    }
                }
            } else if let (Some(r), Some(set)) = (self.responders.get(&name), self.owned.get(&name))
            {
                r.set_owned(set.iter().copied());
            }
        }
    }

    /// Sends the announcement of `ip` on each interface it is placed on.
    fn announce(&mut self, ip: IpAddr) {
        for name in self.placed.get(&ip).into_iter().flatten() {
            if let Some(r) = self.responders.get(name)
                && let Err(e) = r.announce(ip)
            {
                warn!(%ip, iface = %name, error = %e, "announcement not sent");
            }
        }
    }
}
