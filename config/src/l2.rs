//! `L2Advertisement` objects into the model's validated [`Advertisement`]s.

use ferrolb_crds::L2Advertisement;
pub use ferrolb_model::l2::Advertisement;

use crate::pool::FieldError;
use crate::selector;

/// Validates one advertisement; every malformed field is reported with its path.
pub fn parse_advertisement(adv: &L2Advertisement) -> Result<Advertisement, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut selectors =
        |list: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector], field: &str| {
            let mut out = Vec::new();
            for (i, s) in list.iter().enumerate() {
                match selector::parse(s) {
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
    Ok(Advertisement::new(
        adv.metadata.name.clone().unwrap_or_default(),
        spec.ip_address_pools.iter().cloned().collect(),
        pool_selectors,
        node_selectors,
        service_selectors,
        spec.interfaces.clone(),
    ))
}

/// The entries of `spec.ipAddressPools` that name no pool (`exists` tells which names do), each
/// with its path. Not a reason to ignore the advertisement, which may name a pool created later
/// (and its other pools still count): a problem to show on it, as MetalLB shows none and the
/// addresses are then silently not announced.
pub fn unknown_pools(adv: &L2Advertisement, exists: impl Fn(&str) -> bool) -> Vec<FieldError> {
    adv.spec
        .ip_address_pools
        .iter()
        .enumerate()
        .filter(|(_, name)| !name.is_empty() && !exists(name))
        .map(|(i, name)| FieldError {
            field: format!("spec.ipAddressPools[{i}]"),
            message: format!("pool {name:?} does not exist"),
        })
        .collect()
}

/// Label keys and values of bad syntax in the advertisement's selectors, each with its path.
/// Not a reason to ignore the advertisement, which earlier versions applied (such a key matches
/// nothing): a problem to show on it.
pub fn label_syntax(adv: &L2Advertisement) -> Vec<FieldError> {
    let spec = &adv.spec;
    let lists = [
        ("ipAddressPoolSelectors", &spec.ip_address_pool_selectors),
        ("nodeSelectors", &spec.node_selectors),
        ("serviceSelectors", &spec.service_selectors),
    ];
    let mut out = Vec::new();
    for (field, list) in lists {
        for (i, s) in list.iter().enumerate() {
            if let Err(e) = selector::check_syntax(s) {
                out.push(FieldError {
                    field: format!("spec.{field}[{i}]"),
                    message: e.to_string(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

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

    #[test]
    fn pools_that_do_not_exist_are_named() {
        let a = adv(L2AdvertisementSpec {
            ip_address_pools: vec!["gold".into(), "nope".into(), "silver".into()],
            ..L2AdvertisementSpec::default()
        });
        let got: Vec<String> = unknown_pools(&a, |n| n == "gold")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            vec![
                "spec.ipAddressPools[1]: pool \"nope\" does not exist",
                "spec.ipAddressPools[2]: pool \"silver\" does not exist"
            ]
        );
        assert!(unknown_pools(&a, |_| true).is_empty());
        let all = adv(L2AdvertisementSpec::default());
        assert!(
            unknown_pools(&all, |_| false).is_empty(),
            "no names: every pool"
        );
    }

    #[test]
    fn bad_label_syntax_is_named() {
        let a = adv(L2AdvertisementSpec {
            node_selectors: vec![sel("a b", "x")],
            ip_address_pool_selectors: vec![sel("tier", "-gold")],
            ..L2AdvertisementSpec::default()
        });
        assert!(parse_advertisement(&a).is_ok(), "applied as before");
        let errs = label_syntax(&a);
        let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].starts_with("spec.ipAddressPoolSelectors[0]: matchLabels[tier]: label value \"-gold\" is invalid"),
            "{}",
            got[0]
        );
        assert!(
            got[1].starts_with("spec.nodeSelectors[0]: matchLabels: label key \"a b\" is invalid"),
            "{}",
            got[1]
        );
    }
}
