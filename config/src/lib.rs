//! The edge where outside input becomes typed: custom resources into the validated domain model
//! (arrives with the pool and advertisement issues), and the command-line flags and logging set-up
//! that `ferrolb-controller` and `ferrolb-speaker` share.

pub mod addresses;
pub mod logging;
pub mod selector;
pub mod service;

pub use logging::{LogArgs, LogFormat, LoggingError};
