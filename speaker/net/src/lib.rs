//! The dataplane seam of the speaker: ARP and NDP frames, the responder that answers and announces
//! them on a raw socket, and solicited-node multicast memberships. The only crate where `unsafe`
//! is allowed.
//!
//! - [`frame`]: pure builders and a parser for ARP (RFC 826, RFC 5227) and Neighbor Discovery
//!   (RFC 4861) frames. No I/O; the parser never panics.
//! - [`Responder`]: one per interface; answers ARP requests and Neighbor Solicitations for the
//!   owned addresses and sends gratuitous ARP / unsolicited Neighbor Advertisements on demand.
//! - [`join_solicited_node`]: makes the kernel listen to (and report, through MLD) a VIP's
//!   solicited-node group, so solicitations for it reach the node.
//! - [`Addresses`]: adds and removes a floating address (the control-plane VIP) with netlink.
//! - [`release_free_memory`]: hands the heap freed after a burst back to the kernel.
//!
//! Everything that touches the network acts in the calling thread's network namespace, and the
//! sockets stay in that namespace whichever thread uses them afterwards.

pub mod address;
pub mod error;
pub mod frame;
pub mod iface;
pub mod memory;
pub mod multicast;
pub mod responder;

pub use address::{Added, AddressError, Addresses};
pub use error::NetError;
pub use frame::{ParseError, Request};
pub use iface::{IfAddr, Interface, interface, interfaces};
pub use memory::release_free_memory;
pub use multicast::{MulticastMembership, join_group, join_solicited_node};
pub use pnet_base::MacAddr;
pub use responder::{Counters, Responder, check_raw_sockets};
