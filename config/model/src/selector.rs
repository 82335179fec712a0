//! Label selectors as a validated domain type.
//!
//! The schema of Kubernetes' `LabelSelector` accepts any operator string and any combination of
//! values; the API server's own rules (`metav1.LabelSelectorAsSelector`) are applied here so that
//! a malformed selector becomes a condition naming the field instead of matching nothing (or
//! everything). `ferrolb_config::selector::parse` feeds the API type's fields in.

use std::collections::BTreeMap;

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

/// One `matchExpressions` entry as given.
#[derive(Clone, Copy, Debug)]
pub struct Expression<'a> {
    /// The label key.
    pub key: &'a str,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: &'a str,
    /// The values (absent is empty).
    pub values: &'a [String],
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
    /// Validates a selector given as its `matchLabels` and its `matchExpressions` (key,
    /// operator, values), in the API's order.
    pub fn new<'a>(
        match_labels: impl IntoIterator<Item = (&'a String, &'a String)>,
        match_expressions: impl IntoIterator<Item = Expression<'a>>,
    ) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        for (k, v) in match_labels {
            if k.is_empty() {
                return Err(SelectorError::EmptyKey);
            }
            requirements.push(Requirement::In(k.clone(), vec![v.clone()]));
        }
        for (index, e) in match_expressions.into_iter().enumerate() {
            if e.key.is_empty() {
                return Err(SelectorError::EmptyKey);
            }
            let values = e.values.to_vec();
            let operator = e.operator.to_string();
            let req = match operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(SelectorError::MissingValues { index, operator });
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(SelectorError::UnexpectedValues { index, operator });
                }
                "In" => Requirement::In(e.key.to_string(), values),
                "NotIn" => Requirement::NotIn(e.key.to_string(), values),
                "Exists" => Requirement::Exists(e.key.to_string()),
                "DoesNotExist" => Requirement::DoesNotExist(e.key.to_string()),
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
