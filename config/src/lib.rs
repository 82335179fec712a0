//! The edge where outside input becomes typed: custom resources and Service annotations into the
//! validated domain model (pools, selectors, requests), and the command-line flags and logging
//! set-up that `ferrolb-controller` and `ferrolb-speaker` share. One parser for both daemons.

pub mod addresses;
pub mod l2;
pub mod logging;
pub mod pool;
pub mod selector;
pub mod service;

pub use logging::{LogArgs, LogFormat, LoggingError};
