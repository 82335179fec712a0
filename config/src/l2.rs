//! `L2Advertisement` objects into validated advertisements: which pools, nodes, Services and
//! interfaces one advertisement covers. An empty list means "all"; the pool names and the pool
//! selectors add up (a pool is covered when it is named or matches a selector), as in MetalLB.

use std::collections::{BTreeMap, BTreeSet};

use ferrolb_crds::L2Advertisement;

use crate::pool::FieldError;
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

/// Validates one advertisement; every malformed field is reported with its path.
pub fn parse_advertisement(adv: &L2Advertisement) -> Result<Advertisement, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut selectors =
        |list: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector], field: &str| {
            let mut out = Vec::new();
            for (i, s) in list.iter().enumerate() {
                match Selector::parse(s) {
                    Ok(s) => out.push(s),
                    Err(e) => errors.push(FieldError {
                        field: format!("spec.{field}[{i}]"),
                        message: e.to_string(),
                    }),
                }
            }
            out
        };
    let spec = &adv.spec;
    let pool_selectors = selectors(&spec.ip_address_pool_selectors, "ipAddressPoolSelectors");
    let node_selectors = selectors(&spec.node_selectors, "nodeSelectors");
    let service_selectors = selectors(&spec.service_selectors, "serviceSelectors");
    for (i, name) in spec.interfaces.iter().enumerate() {
        // IFNAMSIZ is 16 with the terminating NUL (linux/if.h); '/' and whitespace are refused by
        // the kernel's dev_valid_name().
        if name.is_empty()
            || name.len() > 15
            || name == "."
            || name == ".."
            || name
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace())
        {
            errors.push(FieldError {
                field: format!("spec.interfaces[{i}]"),
                message: format!("{name:?} is not a valid interface name"),
            });
        }
    }
    for (i, name) in spec.ip_address_pools.iter().enumerate() {
        if name.is_empty() {
            errors.push(FieldError {
                field: format!("spec.ipAddressPools[{i}]"),
                message: "empty pool name".into(),
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Advertisement {
        name: adv.metadata.name.clone().unwrap_or_default(),
        pools: spec.ip_address_pools.iter().cloned().collect(),
        pool_selectors,
        node_selectors,
        service_selectors,
        interfaces: spec.interfaces.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrolb_crds::L2AdvertisementSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn adv(spec: L2AdvertisementSpec) -> L2Advertisement {
        L2Advertisement::new("a", spec)
    }

    fn sel(k: &str, v: &str) -> LabelSelector {
        LabelSelector {
            match_labels: Some(labels(&[(k, v)])),
            match_expressions: None,
        }
    }

    #[test]
    fn empty_covers_everything() {
        let a = parse_advertisement(&adv(L2AdvertisementSpec::default())).unwrap();
        assert!(a.covers_pool("any", &labels(&[])));
        assert!(a.covers_node(&labels(&[("x", "y")])));
        assert!(a.covers_service(&labels(&[])));
        assert!(a.interfaces.is_empty());
    }

    #[test]
    fn names_and_selectors_add_up() {
        let a = parse_advertisement(&adv(L2AdvertisementSpec {
            ip_address_pools: vec!["gold".into()],
            ip_address_pool_selectors: vec![sel("tier", "silver")],
            node_selectors: vec![sel("edge", "true")],
            service_selectors: vec![sel("app", "web")],
            interfaces: vec!["eth0".into()],
        }))
        .unwrap();
        assert!(a.covers_pool("gold", &labels(&[])));
        assert!(a.covers_pool("other", &labels(&[("tier", "silver")])));
        assert!(!a.covers_pool("other", &labels(&[("tier", "bronze")])));
        assert!(a.covers_node(&labels(&[("edge", "true")])));
        assert!(!a.covers_node(&labels(&[])));
        assert!(a.covers_service(&labels(&[("app", "web")])));
        assert!(!a.covers_service(&labels(&[("app", "db")])));
        assert_eq!(a.interfaces, vec!["eth0".to_string()]);
    }

    #[test]
    fn every_bad_field_is_named() {
        let bad = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "k".into(),
                operator: "Near".into(),
                values: None,
            }]),
        };
        let errs = parse_advertisement(&adv(L2AdvertisementSpec {
            node_selectors: vec![sel("a", "b"), bad.clone()],
            service_selectors: vec![bad],
            interfaces: vec!["eth0".into(), "a/b".into(), "waytoolonginterface".into()],
            ..L2AdvertisementSpec::default()
        }))
        .unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "spec.nodeSelectors[1]",
                "spec.serviceSelectors[0]",
                "spec.interfaces[1]",
                "spec.interfaces[2]"
            ]
        );
        assert!(errs[0].message.contains("unknown operator"), "{}", errs[0]);
    }
}
