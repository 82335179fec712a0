//! Solicited-node multicast memberships, held through the kernel.
//!
//! A Neighbor Solicitation for an address goes to that address's solicited-node group (RFC 4861
//! §7.2.2, RFC 4291 §2.7.1). The kernel joins the groups of the addresses configured on an
//! interface, but a VIP is not configured there (the kernel must not answer for it), so the speaker
//! joins its group itself. Joining through a socket (not by programming the NIC's filter behind the
//! kernel's back) makes the kernel program the NIC's multicast filter *and* send MLD reports
//! (RFC 3810), so MLD-snooping switches forward the solicitations to this node.

use std::fmt;
use std::net::{Ipv6Addr, UdpSocket};

use nix::sys::socket::{AddressFamily, SockFlag, SockType};
use tracing::debug;

use crate::error::{NetError, multicast_hint};
use crate::frame::solicited_node;

/// A joined IPv6 multicast group. The membership lasts as long as this value: dropping it closes
/// the socket and the kernel leaves the group (sending an MLD Done) unless another socket still
/// holds it; the kernel counts members per interface and group.
pub struct MulticastMembership {
    group: Ipv6Addr,
    index: u32,
    /// Never bound: it only holds the membership and receives nothing.
    _socket: UdpSocket,
}

impl fmt::Debug for MulticastMembership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MulticastMembership")
            .field("group", &self.group)
            .field("index", &self.index)
            .finish()
    }
}

impl MulticastMembership {
    /// The joined group.
    pub fn group(&self) -> Ipv6Addr {
        self.group
    }

    /// Index of the interface it was joined on.
    pub fn interface_index(&self) -> u32 {
        self.index
    }
}

impl Drop for MulticastMembership {
    fn drop(&mut self) {
        debug!(group = %self.group, index = self.index, "leaving multicast group");
    }
}

/// Joins the solicited-node group of `ip` on interface `iface_index` in the calling thread's
/// network namespace.
pub fn join_solicited_node(
    iface_index: u32,
    ip: Ipv6Addr,
) -> Result<MulticastMembership, NetError> {
    join_group(iface_index, solicited_node(ip))
}

/// Joins the IPv6 multicast `group` on interface `iface_index` (IPV6_ADD_MEMBERSHIP on a UDP
/// socket that is never bound, so no port is opened).
pub fn join_group(iface_index: u32, group: Ipv6Addr) -> Result<MulticastMembership, NetError> {
    let error = |source: std::io::Error| NetError::Multicast {
        group,
        index: iface_index,
        hint: multicast_hint(iface_index, &source),
        source,
    };
    let fd = nix::sys::socket::socket(
        AddressFamily::Inet6,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|errno| error(errno.into()))?;
    let socket = UdpSocket::from(fd);
    socket
        .join_multicast_v6(&group, iface_index)
        .map_err(error)?;
    debug!(%group, index = iface_index, "joined multicast group");
    Ok(MulticastMembership {
        group,
        index: iface_index,
        _socket: socket,
    })
}
