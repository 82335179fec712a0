//! The edge where outside input becomes typed: custom resources and Service annotations into the
//! validated domain model of `ferrolb-model` (pools, selectors, advertisements, requests). One
//! parser for both daemons. Pure by Cargo: the API types come from `ferrolb-crds` (serde structs
//! derived with kube's `derive` feature only), never a client or a runtime.

pub mod addresses;
pub mod conditions;
pub mod l2;
pub mod pool;
pub mod selector;
pub mod service;
pub mod version;
