//! Pool specifications, from ferrolb-model: what the caller derives from IPAddressPool objects.

pub use ferrolb_model::{PoolName, PoolSpec};
