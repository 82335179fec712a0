//! A floating address (the control-plane VIP) added to and removed from an interface with netlink.
//!
//! How the address is added, so that the node never uses it as a source address (connections the
//! node opens keep its own address, and keep working when the VIP moves away):
//! - **IPv4**: a /32, scope global. A /32 makes no prefix route, so no connected route ever
//!   names it as its preferred source; the node's own address stays the primary of its subnet
//!   and is what `inet_select_addr` returns for routes without a preferred source (the kernel
//!   clears a user-set `IFA_F_SECONDARY`, so "secondary" cannot be asked for on a /32).
//! - **IPv6**: a /128 with `nodad` (duplicate-address detection would keep it tentative, unusable,
//!   for a second at every failover; the Raft fencing is what keeps it unique) and a preferred
//!   lifetime of 0: a deprecated address still receives traffic, but source-address selection
//!   (RFC 6724 §5, rule 3) never picks it while the node has a preferred one.
//!
//! Everything acts in the calling thread's network namespace (the netlink socket is opened there).

use std::future::Future;
use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope, CacheInfo,
};

/// What went wrong with an address.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error(
        "opening a netlink socket failed ({0}); the speaker needs CAP_NET_ADMIN to manage addresses"
    )]
    Connect(#[source] std::io::Error),

    #[error("{op} {ip} on interface index {index}: {hint}")]
    Kernel {
        op: &'static str,
        ip: IpAddr,
        index: u32,
        hint: String,
    },
}

/// The netlink handle that adds and removes the VIP.
#[derive(Clone, Debug)]
pub struct Addresses {
    handle: rtnetlink::Handle,
}

/// What an add found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    New,
    /// The address was there already (left by an earlier run, or added by hand).
    AlreadyThere,
}

impl Addresses {
    /// Opens the netlink socket in the calling thread's network namespace. The returned future
    /// carries the socket's traffic: the caller spawns it on its runtime and keeps it running.
    pub fn connect() -> Result<(Addresses, impl Future<Output = ()> + Send), AddressError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(AddressError::Connect)?;
        Ok((Addresses { handle }, conn))
    }

    /// Adds `ip` (as a /32 or /128, see the module documentation) to interface `index`.
    pub async fn add(&self, index: u32, ip: IpAddr) -> Result<Added, AddressError> {
        let mut req = self.handle.address().add(index, ip, host_prefix(ip));
        let msg = req.message_mut();
        msg.header.scope = AddressScope::Universe;
        if ip.is_ipv6() {
            msg.header.flags = AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
            // Preferred lifetime 0 (deprecated), valid forever (INFINITY_LIFE_TIME).
            let mut lifetimes = CacheInfo::default();
            lifetimes.ifa_preferred = 0;
            lifetimes.ifa_valid = u32::MAX;
            msg.attributes.push(AddressAttribute::CacheInfo(lifetimes));
        }
        match req.execute().await {
            Ok(()) => Ok(Added::New),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(Added::AlreadyThere),
            Err(e) => Err(kernel("adding", ip, index, &e)),
        }
    }

    /// Removes `ip` from interface `index`; `false` when it was not there.
    pub async fn remove(&self, index: u32, ip: IpAddr) -> Result<bool, AddressError> {
        let mut msg = AddressMessage::default();
        msg.header.family = match ip {
            IpAddr::V4(_) => netlink_packet_route::AddressFamily::Inet,
            IpAddr::V6(_) => netlink_packet_route::AddressFamily::Inet6,
        };
        msg.header.prefix_len = host_prefix(ip);
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(ip));
        msg.attributes.push(AddressAttribute::Address(ip));
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(true),
            Err(e) if matches!(errno(&e), Some(libc::EADDRNOTAVAIL) | Some(libc::ENOENT)) => {
                Ok(false)
            }
            Err(e) => Err(kernel("removing", ip, index, &e)),
        }
    }

    /// Whether `ip` is on interface `index` (with any prefix length).
    pub async fn has(&self, index: u32, ip: IpAddr) -> Result<bool, AddressError> {
        let mut found = false;
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(ip)
            .execute();
        while let Some(msg) = stream
            .try_next()
            .await
            .map_err(|e| kernel("listing", ip, index, &e))?
        {
            found |= msg.attributes.iter().any(|a| {
                matches!(a, AddressAttribute::Address(x) | AddressAttribute::Local(x) if *x == ip)
            });
        }
        Ok(found)
    }
}

/// /32 or /128.
pub fn host_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

fn kernel(op: &'static str, ip: IpAddr, index: u32, e: &rtnetlink::Error) -> AddressError {
    let hint = match errno(e) {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "the kernel refused it: the speaker needs CAP_NET_ADMIN (securityContext.capabilities.add: [NET_ADMIN])".to_string()
        }
        Some(libc::ENODEV) => "the interface does not exist (any more) in this network namespace".into(),
        Some(libc::EADDRNOTAVAIL) if ip.is_ipv6() => {
            "IPv6 is disabled on the interface (net.ipv6.conf.<iface>.disable_ipv6=1?)".into()
        }
        Some(libc::EAFNOSUPPORT) => "this address family is disabled in the kernel".into(),
        _ => format!("{e}"),
    };
    AddressError::Kernel {
        op,
        ip,
        index,
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_prefixes() {
        assert_eq!(host_prefix("192.0.2.60".parse().unwrap()), 32);
        assert_eq!(host_prefix("2001:db8::60".parse().unwrap()), 128);
    }
}
