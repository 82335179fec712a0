//! The address allocator of ferrolb: pools and requests in, allocations or typed errors out.
//!
//! Pure and synchronous: no Kubernetes, no async runtime, no clock, and Cargo.toml keeps it that
//! way. The controller converts IPAddressPools into [`PoolSpec`]s and Services into [`Request`]s
//! at its edge, and turns [`AllocError`]s and [`Moved`] into Events.
//!
//! # Design
//!
//! - **Numbers, not addresses.** An address is its family and a `u128` ([`Family`] keeps IPv4 and
//!   IPv6 on separate number lines). Pools, overlaps and free space are runs of numbers, so a /64
//!   costs what a /30 costs and no range is ever materialised.
//! - **Overlaps resolved by age.** [`Allocator::set_pools`] walks pools oldest first (the caller's
//!   rank: creation time, then name); each keeps only what no older pool claimed, and the newer
//!   pool is reported with the older one and the range in common. Effective sets are thus
//!   disjoint: an address belongs to at most one pool, found in O(log runs).
//! - **Free space as interval sets.** Each pool and family keeps its free addresses as a
//!   `BTreeMap` of runs: the lowest free address is the first run's start, and taking or giving
//!   back an address is O(log runs). An allocation costs O(pools + log runs); nothing scans a
//!   pool. Pools that avoid buggy IPv4 addresses (.0 and .255) keep run ends off them, so the
//!   lowest free address is still the first run's start, and count them per /24 arithmetically.
//! - **Shared addresses are reference-counted** by their set of holders; a sharing-key index
//!   finds the addresses a new service may share without looking at any other.
//! - **Plan, then commit.** [`Allocator::assign`] and [`Allocator::restore`] decide everything
//!   against unchanged state and only then apply it, so a refused request changes nothing.
//! - **Deterministic.** All state is in `BTreeMap`s and `BTreeSet`s and nothing reads the clock or
//!   a random source: the same calls in the same order give the same results.

mod allocator;
mod error;
mod intervals;
mod pools;
mod range;
mod request;
mod spec;

pub use allocator::{Allocation, Allocator, Assigned, MoveReason, Moved};
pub use error::{AllocError, SharingConflict, SpecError};
pub use pools::{FamilyStats, Overlap, PoolStats, PoolsReport};
pub use range::{Family, IpRange};
pub use request::{FamilyPolicy, Holder, PoolChoice, Protocol, Request, ServiceKey, Sharing};
pub use spec::{PoolName, PoolSpec};
