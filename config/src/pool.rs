//! `IPAddressPool` objects into validated pools: the allocator's [`PoolSpec`] plus the rules of
//! which Services may use the pool. Every problem is reported with the field it is in; a pool with
//! any problem is not used at all (its addresses are neither handed out nor taken away).

use std::collections::{BTreeMap, BTreeSet};

use ferrolb_crds::IPAddressPool;
use ferrolb_model::{PoolName, PoolSpec};

use crate::addresses::parse_range;
use crate::selector::{self, Selector};

/// A problem in one field of a pool.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// JSON path of the field, e.g. `spec.addresses[1]`.
    pub field: String,
    pub message: String,
}

/// Which Services may take addresses from a pool (`spec.serviceAllocation`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    namespaces: BTreeSet<String>,
    namespace_selectors: Vec<Selector>,
    service_selectors: Vec<Selector>,
}

impl Selection {
    /// Whether a Service in `namespace` (whose labels are `namespace_labels`) with labels
    /// `service_labels` may use the pool. Namespace rules (names or selectors) and Service
    /// selectors must both allow it when present, as in MetalLB.
    pub fn allows(
        &self,
        namespace: &str,
        namespace_labels: &BTreeMap<String, String>,
        service_labels: &BTreeMap<String, String>,
    ) -> bool {
        let ns_rules = !self.namespaces.is_empty() || !self.namespace_selectors.is_empty();
        let ns_ok = !ns_rules
            || self.namespaces.contains(namespace)
            || self
                .namespace_selectors
                .iter()
                .any(|s| s.matches(namespace_labels));
        let svc_ok = self.service_selectors.is_empty()
            || self
                .service_selectors
                .iter()
                .any(|s| s.matches(service_labels));
        ns_ok && svc_ok
    }

    /// Whether the pool restricts Services at all.
    pub fn is_restricted(&self) -> bool {
        !self.namespaces.is_empty()
            || !self.namespace_selectors.is_empty()
            || !self.service_selectors.is_empty()
    }
}

/// A pool that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidPool {
    pub spec: PoolSpec,
    pub selection: Selection,
}

/// Validates one pool. `rank` orders pools by age (see [`ranks`]).
pub fn parse_pool(pool: &IPAddressPool, rank: u64) -> Result<ValidPool, Vec<FieldError>> {
    match check_pool(pool, rank) {
        Checked {
            pool: Some(p),
            errors,
        } if errors.is_empty() => Ok(p),
        Checked { errors, .. } => Err(errors),
    }
}

/// A pool's problems, and the pool as versions of ferrolb before 0.2 built it: those accepted
/// entries that overlap (merging them) and label keys and values of any syntax (a key no object
/// can carry matches nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// The pool as earlier versions built it; `None` when they refused it too.
    pub pool: Option<ValidPool>,
    /// Every problem, with its field.
    pub errors: Vec<FieldError>,
}

/// Validates one pool and says which of its problems earlier versions accepted: a daemon that
/// was using such a pool may keep using it as it was while it reports them, so that upgrading
/// ferrolb moves no Service and silences no address (see `Core::load_pools` and the speaker's
/// `watch::world`).
pub fn check_pool(pool: &IPAddressPool, rank: u64) -> Checked {
    let name = PoolName::new(pool.metadata.name.clone().unwrap_or_default());
    let mut errors = Vec::new();
    // Problems that earlier versions accepted.
    let mut tolerated = Vec::new();
    let mut ranges = Vec::new();
    if pool.spec.addresses.is_empty() {
        errors.push(FieldError {
            field: "spec.addresses".into(),
            message: "at least one address range is required".into(),
        });
    }
    // Entries that repeat or overlap an earlier one are refused, as MetalLB refuses overlapping
    // CIDRs in one pool: it is almost always a typo (a range meant to be elsewhere), and the
    // addresses would be counted twice by anyone reading the spec. Like any invalid edit, it
    // changes nothing else: the controller keeps serving the pool's last valid spec, so no
    // Service loses or moves its address (`Core::load_pools`). It is a condition, not a CEL rule:
    // CEL would have to compare every pair of the up to 64 entries, and a `start-end` range is no
    // CIDR its library parses (splitting the text and comparing `ip()`s per pair is costly at
    // admission and hard to read).
    let mut parsed: Vec<(usize, ferrolb_model::IpRange)> = Vec::new();
    for (i, text) in pool.spec.addresses.iter().enumerate() {
        match parse_range(text) {
            Ok(r) => {
                if let Some((j, _)) = parsed.iter().find(|(_, earlier)| earlier.overlaps(&r)) {
                    tolerated.push(FieldError {
                        field: format!("spec.addresses[{i}]"),
                        message: format!(
                            "{text:?} overlaps spec.addresses[{j}] ({:?}); list each address once",
                            pool.spec.addresses[*j]
                        ),
                    });
                }
                parsed.push((i, r));
                ranges.push(r);
            }
            Err(e) => errors.push(FieldError {
                field: format!("spec.addresses[{i}]"),
                message: format!("{text:?}: {e}"),
            }),
        }
    }
    let mut selection = Selection::default();
    let mut priority = None;
    if let Some(sa) = &pool.spec.service_allocation {
        priority = sa.priority;
        selection.namespaces = sa.namespaces.iter().cloned().collect();
        let lists = [
            (
                "namespaceSelectors",
                &sa.namespace_selectors,
                &mut selection.namespace_selectors,
            ),
            (
                "serviceSelectors",
                &sa.service_selectors,
                &mut selection.service_selectors,
            ),
        ];
        for (field, given, built) in lists {
            for (i, s) in given.iter().enumerate() {
                let field = format!("spec.serviceAllocation.{field}[{i}]");
                match selector::parse(s) {
                    Ok(s) => built.push(s),
                    Err(e) => errors.push(FieldError {
                        field: field.clone(),
                        message: e.to_string(),
                    }),
                }
                if let Err(e) = selector::check_syntax(s) {
                    tolerated.push(FieldError {
                        field,
                        message: e.to_string(),
                    });
                }
            }
        }
    }
    let pool = if errors.is_empty() {
        match PoolSpec::new(name, ranges) {
            Ok(spec) => Some(ValidPool {
                spec: spec
                    .with_auto_assign(pool.spec.auto_assign)
                    .with_avoid_buggy_ips(pool.spec.avoid_buggy_ips)
                    .with_priority(priority)
                    .with_rank(rank),
                selection,
            }),
            Err(e) => {
                errors.push(FieldError {
                    field: "spec.addresses".into(),
                    message: e.to_string(),
                });
                None
            }
        }
    } else {
        None
    };
    errors.extend(tolerated);
    // In the order of the fields.
    errors.sort_by_key(|e| field_order(&e.field));
    Checked { pool, errors }
}

/// Sort key of a field path: its parts, with list indices compared as numbers.
fn field_order(field: &str) -> Vec<(String, usize)> {
    field
        .split('.')
        .map(|part| match part.split_once('[') {
            Some((name, index)) => (
                name.to_string(),
                index.trim_end_matches(']').parse().unwrap_or(0),
            ),
            None => (part.to_string(), 0),
        })
        .collect()
}

/// Age ranks of pools: older (by creation time, then name) first. The older pool keeps addresses
/// that two pools both list.
pub fn ranks<'a>(pools: impl IntoIterator<Item = &'a IPAddressPool>) -> BTreeMap<String, u64> {
    let mut order: Vec<(Option<k8s_openapi::jiff::Timestamp>, String)> = pools
        .into_iter()
        .map(|p| {
            (
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                p.metadata.name.clone().unwrap_or_default(),
            )
        })
        .collect();
    order.sort();
    order
        .into_iter()
        .enumerate()
        .map(|(i, (_, n))| (n, i as u64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrolb_crds::{IPAddressPoolSpec, pool::ServiceAllocation};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    fn pool(name: &str, addresses: &[&str], sa: Option<ServiceAllocation>) -> IPAddressPool {
        IPAddressPool::new(
            name,
            IPAddressPoolSpec {
                addresses: addresses.iter().map(|s| s.to_string()).collect(),
                auto_assign: true,
                avoid_buggy_ips: false,
                service_allocation: sa,
            },
        )
    }

    #[test]
    fn valid_pool_becomes_a_spec() {
        let p = parse_pool(&pool("a", &["192.0.2.64/26", "2001:db8::1:0/112"], None), 3).unwrap();
        assert_eq!(p.spec.name().as_str(), "a");
        assert_eq!(p.spec.ranges().len(), 2);
        assert_eq!(p.spec.rank(), 3);
        assert!(!p.selection.is_restricted());
    }

    #[test]
    fn every_bad_field_is_named() {
        let bad_sel = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "k".into(),
                operator: "Near".into(),
                values: None,
            }]),
        };
        let sa = ServiceAllocation {
            service_selectors: vec![bad_sel],
            ..Default::default()
        };
        let errs = parse_pool(
            &pool(
                "b",
                &["192.0.2.9-192.0.2.1", "192.0.2.64/26", "x"],
                Some(sa),
            ),
            0,
        )
        .unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "spec.addresses[0]",
                "spec.addresses[2]",
                "spec.serviceAllocation.serviceSelectors[0]"
            ]
        );
        assert!(
            errs[0]
                .to_string()
                .contains("start 192.0.2.9 is above its end"),
            "{}",
            errs[0]
        );
        assert!(parse_pool(&pool("c", &[], None), 0).unwrap_err()[0].field == "spec.addresses");
    }

    #[test]
    fn repeated_or_overlapping_entries_are_named() {
        /// The entries, and the errors wanted: (field, start of the message).
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);
        let table: [Case; 5] = [
            (
                &["192.0.2.64/26", "192.0.2.70-192.0.2.80"],
                &[(
                    "spec.addresses[1]",
                    "\"192.0.2.70-192.0.2.80\" overlaps spec.addresses[0] (\"192.0.2.64/26\"); list each address once",
                )],
            ),
            (
                &["192.0.2.64/26", "2001:db8::/120", "192.0.2.64/26"],
                &[(
                    "spec.addresses[2]",
                    "\"192.0.2.64/26\" overlaps spec.addresses[0] (\"192.0.2.64/26\"); list each address once",
                )],
            ),
            (
                &["2001:db8::/120", "2001:db8::5"],
                &[(
                    "spec.addresses[1]",
                    "\"2001:db8::5\" overlaps spec.addresses[0] (\"2001:db8::/120\"); list each address once",
                )],
            ),
            // Adjacent is fine, and so is the same number in the other family.
            (
                &["192.0.2.0-192.0.2.9", "192.0.2.10/31", "::c000:200/120"],
                &[],
            ),
            (
                &["192.0.2.0/24", "192.0.2.0/24"],
                &[("spec.addresses[1]", "")],
            ),
        ];
        for (addresses, want) in table {
            let got = match parse_pool(&pool("o", addresses, None), 0) {
                Ok(_) => vec![],
                Err(errs) => errs,
            };
            let got: Vec<(&str, &str)> = got
                .iter()
                .map(|e| (e.field.as_str(), e.message.as_str()))
                .collect();
            assert_eq!(got.len(), want.len(), "{addresses:?}: {got:?}");
            for (g, w) in got.iter().zip(want) {
                assert_eq!(g.0, w.0, "{addresses:?}");
                assert!(g.1.starts_with(w.1), "{addresses:?}: {}", g.1);
            }
        }
    }

    /// Overlaps and label syntax are problems earlier versions accepted: the pool they built
    /// comes with the errors; any other problem leaves none.
    #[test]
    fn check_pool_keeps_what_earlier_versions_built() {
        let c = check_pool(&pool("o", &["192.0.2.64/26", "192.0.2.64/28"], None), 0);
        assert_eq!(c.errors.len(), 1);
        let p = c.pool.unwrap();
        assert_eq!(p.spec.ranges().len(), 2);
        let c = check_pool(
            &pool("o", &["192.0.2.64/26", "192.0.2.64/28", "x"], None),
            0,
        );
        assert_eq!(c.errors.len(), 2);
        assert_eq!(c.pool, None);
        let c = check_pool(&pool("o", &["192.0.2.64/26"], None), 0);
        assert!(c.errors.is_empty() && c.pool.is_some());
    }

    #[test]
    fn bad_label_syntax_in_a_selector_is_named() {
        let sa = ServiceAllocation {
            namespace_selectors: vec![LabelSelector {
                match_labels: Some([("app name".to_string(), "x".to_string())].into()),
                match_expressions: None,
            }],
            service_selectors: vec![LabelSelector {
                match_labels: Some([("tier".to_string(), "a b".to_string())].into()),
                match_expressions: None,
            }],
            ..Default::default()
        };
        let c = check_pool(&pool("l", &["192.0.2.64/26"], Some(sa)), 0);
        assert!(c.pool.is_some(), "earlier versions built it");
        let errs = c.errors;
        let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].starts_with(
                "spec.serviceAllocation.namespaceSelectors[0]: matchLabels: label key \"app name\" is invalid"
            ),
            "{}",
            got[0]
        );
        assert!(
            got[1].starts_with(
                "spec.serviceAllocation.serviceSelectors[0]: matchLabels[tier]: label value \"a b\" is invalid"
            ),
            "{}",
            got[1]
        );
    }

    #[test]
    fn selection_follows_metallb_semantics() {
        let web: BTreeMap<String, String> = [("tier".to_string(), "web".to_string())].into();
        let none = BTreeMap::new();
        let sa = ServiceAllocation {
            namespaces: vec!["team-a".into()],
            service_selectors: vec![LabelSelector {
                match_labels: Some(web.clone()),
                match_expressions: None,
            }],
            ..Default::default()
        };
        let p = parse_pool(&pool("d", &["192.0.2.64/26"], Some(sa)), 0).unwrap();
        assert!(p.selection.allows("team-a", &none, &web));
        assert!(
            !p.selection.allows("team-b", &none, &web),
            "wrong namespace"
        );
        assert!(
            !p.selection.allows("team-a", &none, &none),
            "service labels do not match"
        );
    }
}
