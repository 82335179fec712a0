//! A validated layer-2 advertisement: which pools, nodes, Services and interfaces it covers. An
//! empty list means "all"; the pool names and the pool selectors add up (a pool is covered when it
//! is named or matches a selector), as in MetalLB. `ferrolb_config::l2` builds it from
//! `L2Advertisement` objects.

use std::collections::{BTreeMap, BTreeSet};

use crate::selector::Selector;

/// An advertisement that passed validation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Advertisement {
    pub name: String,
    pools: BTreeSet<String>,
    pool_selectors: Vec<Selector>,
    node_selectors: Vec<Selector>,
    service_selectors: Vec<Selector>,
    /// Interfaces named by the advertisement; empty: choose by subnet.
    pub interfaces: Vec<String>,
}

impl Advertisement {
    /// An advertisement covering everything (what an empty `spec: {}` means).
    pub fn everything(name: &str) -> Advertisement {
        Advertisement {
            name: name.to_string(),
            ..Advertisement::default()
        }
    }

    /// An advertisement from its validated parts.
    pub fn new(
        name: String,
        pools: BTreeSet<String>,
        pool_selectors: Vec<Selector>,
        node_selectors: Vec<Selector>,
        service_selectors: Vec<Selector>,
        interfaces: Vec<String>,
    ) -> Advertisement {
        Advertisement {
            name,
            pools,
            pool_selectors,
            node_selectors,
            service_selectors,
            interfaces,
        }
    }

    /// Whether the addresses of pool `name` (labels `labels`) are announced.
    pub fn covers_pool(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        (self.pools.is_empty() && self.pool_selectors.is_empty())
            || self.pools.contains(name)
            || self.pool_selectors.iter().any(|s| s.matches(labels))
    }

    /// Whether a node with these labels may announce.
    pub fn covers_node(&self, labels: &BTreeMap<String, String>) -> bool {
        self.node_selectors.is_empty() || self.node_selectors.iter().any(|s| s.matches(labels))
    }

    /// Whether a Service with these labels is announced.
    pub fn covers_service(&self, labels: &BTreeMap<String, String>) -> bool {
        self.service_selectors.is_empty()
            || self.service_selectors.iter().any(|s| s.matches(labels))
    }
}
