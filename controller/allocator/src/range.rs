//! The address vocabulary the allocator computes with, from ferrolb-model: every address is a
//! `(Family, u128)` pair.

pub(crate) use ferrolb_model::range::{PerFamily, split};
pub use ferrolb_model::{Family, IpRange};
