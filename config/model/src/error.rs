//! Invalid domain values, rejected when they are built (parse at the edge).

use std::net::IpAddr;

use thiserror::Error;

use crate::spec::PoolName;

/// An invalid domain value, rejected when it is built (parse at the edge).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    /// A range whose ends are of different families.
    #[error("address range {start}-{end} mixes IPv4 and IPv6; use one range per family")]
    MixedFamilies {
        /// First address given.
        start: IpAddr,
        /// Last address given.
        end: IpAddr,
    },
    /// A range whose start is after its end.
    #[error("address range {start}-{end} ends before it starts; swap the two addresses")]
    Reversed {
        /// First address given.
        start: IpAddr,
        /// Last address given.
        end: IpAddr,
    },
    /// A CIDR prefix longer than the address.
    #[error("prefix length /{prefix_len} is too long for {base}")]
    PrefixTooLong {
        /// Network address given.
        base: IpAddr,
        /// Prefix length given.
        prefix_len: u8,
    },
    /// A CIDR whose base address has host bits set.
    #[error("{base}/{prefix_len} has host bits set; write the network address of the prefix")]
    HostBitsSet {
        /// Network address given.
        base: IpAddr,
        /// Prefix length given.
        prefix_len: u8,
    },
    /// A pool without any range.
    #[error("pool \"{0}\" has no address ranges; give it at least one")]
    NoRanges(PoolName),
    /// A pool covering all 2^128 IPv6 addresses: its size does not fit the `u128` counters, and
    /// handing out every IPv6 address (loopback, multicast...) is never intended.
    #[error("pool \"{0}\" covers the whole IPv6 address space; give it a real prefix")]
    CoversAllIpv6(PoolName),
    /// A sharing key that is empty.
    #[error("the address-sharing key is empty; give a non-empty key or no sharing at all")]
    EmptySharingKey,
}
