//! On which interfaces an owned address is announced.
//!
//! An advertisement that names interfaces gets exactly those (a missing one is reported, never
//! replaced by a guess). One that names none gets every interface with an address in the subnet of
//! the VIP, minus the excluded patterns: interfaces of containers, bridges of CNIs and the dummy
//! interface of kube-proxy's IPVS mode carry node addresses too, but answering there would leak the
//! VIP into places it does not belong (MetalLB keeps a similar list).

use std::net::IpAddr;

use ipnetwork::IpNetwork;

/// Interfaces never chosen by subnet unless named (a trailing `*` matches any suffix).
pub const DEFAULT_EXCLUDES: &[&str] = &[
    "lo",
    "docker*",
    "veth*",
    "cni*",
    "flannel*",
    "cali*",
    "cilium_*",
    "lxc*",
    "vxlan*",
    "kube-ipvs*",
    "nodelocaldns",
    "tunl*",
    "weave*",
    "genev_sys_*",
];

/// An interface of the node, as the runtime reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub name: String,
    pub up: bool,
    pub networks: Vec<IpNetwork>,
}

/// The interfaces chosen for an address, and those named but missing or down.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Choice {
    pub chosen: Vec<String>,
    pub missing: Vec<String>,
    pub down: Vec<String>,
}

/// Whether `name` matches one of the exclusion `patterns`.
pub fn excluded(name: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == p,
    })
}

/// Chooses interfaces for `ip`: the `named` ones when given, else by subnet.
pub fn choose(
    ip: IpAddr,
    named: Option<&std::collections::BTreeSet<String>>,
    links: &[LinkInfo],
    excludes: &[String],
) -> Choice {
    let mut choice = Choice::default();
    match named {
        Some(names) => {
            for name in names {
                match links.iter().find(|l| &l.name == name) {
                    None => choice.missing.push(name.clone()),
                    Some(l) if !l.up => choice.down.push(name.clone()),
                    Some(_) => choice.chosen.push(name.clone()),
                }
            }
        }
        None => {
            for l in links {
                if l.up
                    && !excluded(&l.name, excludes)
                    && l.networks.iter().any(|n| n.contains(ip) && n.ip() != ip)
                {
                    choice.chosen.push(l.name.clone());
                }
            }
        }
    }
    choice
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn link(name: &str, up: bool, nets: &[&str]) -> LinkInfo {
        LinkInfo {
            name: name.into(),
            up,
            networks: nets.iter().map(|n| n.parse().unwrap()).collect(),
        }
    }

    fn defaults() -> Vec<String> {
        DEFAULT_EXCLUDES.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn by_subnet_minus_excluded() {
        let links = [
            link("lo", true, &["127.0.0.1/8"]),
            link("eth0", true, &["192.0.2.11/24", "2001:db8::11/64"]),
            link("eth1", true, &["198.51.100.1/24"]),
            link("docker0", true, &["192.0.2.200/24"]),
            link("eth2", false, &["192.0.2.12/24"]),
        ];
        let v4: IpAddr = "192.0.2.65".parse().unwrap();
        let v6: IpAddr = "2001:db8::1:7".parse().unwrap();
        assert_eq!(choose(v4, None, &links, &defaults()).chosen, vec!["eth0"]);
        assert_eq!(choose(v6, None, &links, &defaults()).chosen, vec!["eth0"]);
        // Without exclusions docker0 qualifies too.
        assert_eq!(
            choose(v4, None, &links, &[]).chosen,
            vec!["eth0", "docker0"]
        );
        let none: IpAddr = "203.0.113.1".parse().unwrap();
        assert!(choose(none, None, &links, &defaults()).chosen.is_empty());
    }

    #[test]
    fn named_interfaces_are_taken_as_given_and_missing_ones_reported() {
        let links = [link("eth0", true, &[]), link("eth2", false, &[])];
        let names: BTreeSet<String> = ["eth0", "eth2", "eth9"].map(String::from).into();
        let c = choose(
            "192.0.2.65".parse().unwrap(),
            Some(&names),
            &links,
            &defaults(),
        );
        assert_eq!(c.chosen, vec!["eth0"]);
        assert_eq!(c.down, vec!["eth2"]);
        assert_eq!(c.missing, vec!["eth9"]);
    }

    #[test]
    fn patterns() {
        let p: Vec<String> = vec!["veth*".into(), "lo".into()];
        assert!(excluded("veth12ab", &p));
        assert!(excluded("lo", &p));
        assert!(!excluded("lo0", &p));
        assert!(!excluded("eth0", &p));
    }
}
