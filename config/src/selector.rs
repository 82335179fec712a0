//! Kubernetes label selectors as a validated domain type.
//!
//! The schema of `LabelSelector` accepts any operator string and any combination of values; the
//! API server's own rules (`metav1.LabelSelectorAsSelector`) are applied here so that a malformed
//! selector becomes a condition naming the field instead of matching nothing (or everything).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A validated label selector. The empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// Why a selector is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error(
        "matchExpressions[{index}]: unknown operator {operator:?} (expected In, NotIn, Exists or DoesNotExist)"
    )]
    UnknownOperator { index: usize, operator: String },
    #[error("matchExpressions[{index}]: operator {operator} needs at least one value")]
    MissingValues { index: usize, operator: String },
    #[error("matchExpressions[{index}]: operator {operator} takes no values")]
    UnexpectedValues { index: usize, operator: String },
    #[error("empty label key")]
    EmptyKey,
}

impl Selector {
    /// Validates a selector from the API.
    pub fn parse(s: &LabelSelector) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        for (k, v) in s.match_labels.iter().flatten() {
            if k.is_empty() {
                return Err(SelectorError::EmptyKey);
            }
            requirements.push(Requirement::In(k.clone(), vec![v.clone()]));
        }
        for (index, e) in s.match_expressions.iter().flatten().enumerate() {
            if e.key.is_empty() {
                return Err(SelectorError::EmptyKey);
            }
            let values = e.values.clone().unwrap_or_default();
            let operator = e.operator.clone();
            let req = match operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(SelectorError::MissingValues { index, operator });
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(SelectorError::UnexpectedValues { index, operator });
                }
                "In" => Requirement::In(e.key.clone(), values),
                "NotIn" => Requirement::NotIn(e.key.clone(), values),
                "Exists" => Requirement::Exists(e.key.clone()),
                "DoesNotExist" => Requirement::DoesNotExist(e.key.clone()),
                _ => return Err(SelectorError::UnknownOperator { index, operator }),
            };
            requirements.push(req);
        }
        Ok(Selector { requirements })
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: (!values.is_empty())
                    .then(|| values.iter().map(|v| v.to_string()).collect()),
            }]),
        }
    }

    #[test]
    fn matches_like_the_api_server() {
        let web = labels(&[("tier", "web")]);
        let none = labels(&[]);
        let empty = Selector::parse(&LabelSelector::default()).unwrap();
        assert!(empty.matches(&none) && empty.matches(&web));
        let ml = LabelSelector {
            match_labels: Some(labels(&[("tier", "web")])),
            match_expressions: None,
        };
        assert!(Selector::parse(&ml).unwrap().matches(&web));
        assert!(!Selector::parse(&ml).unwrap().matches(&none));
        let table = [
            (expr("tier", "In", &["web", "db"]), true, false),
            (expr("tier", "NotIn", &["db"]), true, true),
            (expr("tier", "Exists", &[]), true, false),
            (expr("tier", "DoesNotExist", &[]), false, true),
        ];
        for (sel, on_web, on_none) in table {
            let s = Selector::parse(&sel).unwrap();
            assert_eq!(
                (s.matches(&web), s.matches(&none)),
                (on_web, on_none),
                "{sel:?}"
            );
        }
    }

    #[test]
    fn malformed_selectors_name_the_problem() {
        let bad = [
            (expr("tier", "Equals", &["web"]), "unknown operator"),
            (expr("tier", "In", &[]), "needs at least one value"),
            (expr("tier", "Exists", &["x"]), "takes no values"),
            (expr("", "Exists", &[]), "empty label key"),
        ];
        for (sel, msg) in bad {
            let err = Selector::parse(&sel).unwrap_err().to_string();
            assert!(err.contains(msg), "{err}");
        }
    }
}
