//! The vocabulary every part of ferrolb shares: address families and inclusive ranges (with the
//! mapping of addresses onto `u128` the allocator computes with), pool names and validated pool
//! specifications, label selectors, and layer-2 advertisements.
//!
//! Pure by Cargo: std and `thiserror` only. Kubernetes objects become these types in
//! `ferrolb-config`, one parser for both daemons; the allocator, the controller and the speaker's
//! election core take them from here. Nothing here mentions Kubernetes.

pub mod error;
pub mod l2;
pub mod range;
pub mod selector;
pub mod spec;

pub use error::SpecError;
pub use l2::Advertisement;
pub use range::{Family, IpRange, PerFamily};
pub use selector::{Selector, SelectorError};
pub use spec::{PoolName, PoolSpec};
