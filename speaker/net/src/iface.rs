//! The Ethernet interfaces of the calling thread's network namespace.

use std::fmt;
use std::net::IpAddr;

use pnet_base::MacAddr;

use crate::error::NetError;

/// An Ethernet interface: what the responder binds to and puts in its frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    /// Kernel interface index (`ip link` shows it first).
    pub index: u32,
    pub mac: MacAddr,
    /// Administratively up and operationally running (IFF_UP and IFF_RUNNING: carrier present,
    /// `ip link` shows `state UP`), when it was read.
    pub up: bool,
    /// The interface's own addresses (not the VIPs a speaker answers for).
    pub addresses: Vec<IfAddr>,
}

/// An address configured on an interface, with its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IfAddr {
    pub ip: IpAddr,
    pub prefix: u8,
}

impl fmt::Display for IfAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

impl Interface {
    /// Whether `ip` lies in one of the interface's subnets (on-link: reachable by ARP/NDP).
    pub fn is_on_link(&self, ip: IpAddr) -> bool {
        self.addresses
            .iter()
            .any(|a| same_prefix(a.ip, ip, a.prefix))
    }
}

/// The interface called `name` in the calling thread's network namespace.
pub fn interface(name: &str) -> Result<Interface, NetError> {
    let all = pnet_datalink::interfaces();
    let Some(found) = all.iter().find(|i| i.name == name) else {
        let mut names: Vec<&str> = all.iter().map(|i| i.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        return Err(NetError::InterfaceNotFound {
            name: name.to_string(),
            available: if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            },
        });
    };
    convert(found).ok_or_else(|| NetError::NoMac {
        name: name.to_string(),
    })
}

/// Every Ethernet interface (one with a non-zero MAC; loopback and layer-3 devices are left out)
/// of the calling thread's network namespace, with its addresses.
pub fn interfaces() -> Vec<Interface> {
    let mut v: Vec<Interface> = pnet_datalink::interfaces()
        .iter()
        .filter_map(convert)
        .collect();
    v.sort_by_key(|i| i.index);
    v
}

fn convert(i: &pnet_datalink::NetworkInterface) -> Option<Interface> {
    let mac = i.mac.filter(|m| !m.is_zero())?;
    if i.is_loopback() {
        return None;
    }
    Some(Interface {
        name: i.name.clone(),
        index: i.index,
        mac,
        up: i.is_up() && i.is_running(),
        addresses: i
            .ips
            .iter()
            .map(|n| IfAddr {
                ip: n.ip(),
                prefix: n.prefix(),
            })
            .collect(),
    })
}

fn same_prefix(a: IpAddr, b: IpAddr, prefix: u8) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_link_follows_the_prefix() {
        let i = Interface {
            name: "eth0".into(),
            index: 2,
            mac: MacAddr::new(2, 0, 0, 0, 0, 1),
            up: true,
            addresses: vec![
                IfAddr {
                    ip: "192.0.2.11".parse().unwrap(),
                    prefix: 24,
                },
                IfAddr {
                    ip: "2001:db8::11".parse().unwrap(),
                    prefix: 64,
                },
            ],
        };
        assert!(i.is_on_link("192.0.2.70".parse().unwrap()));
        assert!(!i.is_on_link("198.51.100.1".parse().unwrap()));
        assert!(i.is_on_link("2001:db8::1:70".parse().unwrap()));
        assert!(!i.is_on_link("2001:db8:1::1".parse().unwrap()));
        assert!(same_prefix(
            "10.0.0.1".parse().unwrap(),
            "11.0.0.1".parse().unwrap(),
            0
        ));
    }

    #[test]
    fn loopback_is_not_an_ethernet_interface() {
        // Every namespace has `lo`; it has no MAC, so it is refused with the reason.
        match interface("lo") {
            Err(NetError::NoMac { name }) => assert_eq!(name, "lo"),
            other => panic!("lo: {other:?}"),
        }
        assert!(interfaces().iter().all(|i| i.name != "lo"));
        match interface("no-such-interface0") {
            Err(e @ NetError::InterfaceNotFound { .. }) => {
                assert!(e.to_string().contains("lo"), "{e}")
            }
            other => panic!("{other:?}"),
        }
    }
}
