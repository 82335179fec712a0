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
    /// A key that is not a Kubernetes qualified name (`metav1.ValidateLabelSelector` refuses it).
    #[error("{place}: label key {key:?} is invalid: {reason}")]
    InvalidKey {
        /// Where it is, e.g. `matchLabels` or `matchExpressions[0]`.
        place: String,
        key: String,
        reason: LabelError,
    },
    /// A value that is not a Kubernetes label value.
    #[error("{place}: label value {value:?} is invalid: {reason}")]
    InvalidValue {
        /// Where it is, e.g. `matchLabels[app]` or `matchExpressions[0].values[1]`.
        place: String,
        value: String,
        reason: LabelError,
    },
}

/// Why a label key or value is not valid Kubernetes syntax (apimachinery's
/// `validation.IsQualifiedName` and `IsValidLabelValue`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("the name part is empty")]
    EmptyName,
    #[error("the name part is longer than 63 characters")]
    NameTooLong,
    #[error(
        "the name part may hold only letters, digits, '-', '_' and '.', and must start and end with a letter or digit"
    )]
    BadName,
    #[error("the prefix before '/' is empty")]
    EmptyPrefix,
    #[error("the prefix before '/' is longer than 253 characters")]
    PrefixTooLong,
    #[error(
        "the prefix before '/' must be a DNS subdomain: lower-case letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit"
    )]
    BadPrefix,
    #[error("a key holds at most one '/'")]
    TwoSlashes,
    #[error("longer than 63 characters")]
    ValueTooLong,
    #[error(
        "a value may hold only letters, digits, '-', '_' and '.', and must start and end with a letter or digit"
    )]
    BadValue,
}

/// Checks a label key: an optional DNS-subdomain prefix (at most 253 characters) and `/`, then a
/// name of at most 63 characters of `[A-Za-z0-9-_.]` starting and ending with a letter or digit
/// (apimachinery's `IsQualifiedName`, what the API server applies to labels and selectors).
pub fn validate_key(key: &str) -> Result<(), LabelError> {
    let mut parts = key.split('/');
    let (prefix, name) = match (parts.next(), parts.next(), parts.next()) {
        (Some(name), None, _) => (None, name),
        (Some(prefix), Some(name), None) => (Some(prefix), name),
        _ => return Err(LabelError::TwoSlashes),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err(LabelError::EmptyPrefix);
        }
        if prefix.len() > 253 {
            return Err(LabelError::PrefixTooLong);
        }
        let label_ok = |l: &str| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
        };
        if !prefix.split('.').all(label_ok) {
            return Err(LabelError::BadPrefix);
        }
    }
    if name.is_empty() {
        return Err(LabelError::EmptyName);
    }
    if name.len() > 63 {
        return Err(LabelError::NameTooLong);
    }
    if !name_syntax(name) {
        return Err(LabelError::BadName);
    }
    Ok(())
}

/// Checks a label value: empty, or at most 63 characters of `[A-Za-z0-9-_.]` starting and ending
/// with a letter or digit (apimachinery's `IsValidLabelValue`).
pub fn validate_value(value: &str) -> Result<(), LabelError> {
    if value.len() > 63 {
        return Err(LabelError::ValueTooLong);
    }
    if !value.is_empty() && !name_syntax(value) {
        return Err(LabelError::BadValue);
    }
    Ok(())
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, for a non-empty `s`.
fn name_syntax(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn check_key(place: &str, key: &str) -> Result<(), SelectorError> {
    if key.is_empty() {
        return Err(SelectorError::EmptyKey);
    }
    validate_key(key).map_err(|reason| SelectorError::InvalidKey {
        place: place.to_string(),
        key: key.to_string(),
        reason,
    })
}

fn check_value(place: String, value: &str) -> Result<(), SelectorError> {
    validate_value(value).map_err(|reason| SelectorError::InvalidValue {
        place,
        value: value.to_string(),
        reason,
    })
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

    /// The first label key or value of a selector (as [`Selector::new`] takes it) that is not
    /// valid Kubernetes syntax. Separate from [`Selector::new`]: earlier versions of ferrolb built
    /// such selectors (a key no object can carry matches nothing), and a caller may need to keep
    /// using what it built then while it reports the syntax.
    pub fn check_syntax<'a>(
        match_labels: impl IntoIterator<Item = (&'a String, &'a String)>,
        match_expressions: impl IntoIterator<Item = Expression<'a>>,
    ) -> Result<(), SelectorError> {
        for (k, v) in match_labels {
            check_key("matchLabels", k)?;
            check_value(format!("matchLabels[{k}]"), v)?;
        }
        for (index, e) in match_expressions.into_iter().enumerate() {
            check_key(&format!("matchExpressions[{index}]"), e.key)?;
            for (i, v) in e.values.iter().enumerate() {
                check_value(format!("matchExpressions[{index}].values[{i}]"), v)?;
            }
        }
        Ok(())
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

    #[test]
    fn label_keys_as_the_api_server_checks_them() {
        let long_name = "a".repeat(64);
        let max_name = "a".repeat(63);
        let long_prefix = format!("{}/x", "a".repeat(254));
        let max_prefix = format!(
            "{}/x",
            [
                "a".repeat(63),
                "b".repeat(63),
                "c".repeat(63),
                "d".repeat(61)
            ]
            .join(".")
        );
        let cases: Vec<(&str, Result<(), LabelError>)> = vec![
            ("app", Ok(())),
            ("App_Name-1.x", Ok(())),
            ("a", Ok(())),
            ("9", Ok(())),
            ("node-role.kubernetes.io/edge", Ok(())),
            ("example.com/Tier_2", Ok(())),
            (&max_name, Ok(())),
            (&max_prefix, Ok(())),
            ("app name", Err(LabelError::BadName)),
            ("-bad", Err(LabelError::BadName)),
            ("bad-", Err(LabelError::BadName)),
            ("_x", Err(LabelError::BadName)),
            ("a:b", Err(LabelError::BadName)),
            (&long_name, Err(LabelError::NameTooLong)),
            ("example.com/", Err(LabelError::EmptyName)),
            ("/name", Err(LabelError::EmptyPrefix)),
            ("Example.com/name", Err(LabelError::BadPrefix)),
            ("example_com/name", Err(LabelError::BadPrefix)),
            ("-example.com/name", Err(LabelError::BadPrefix)),
            ("example..com/name", Err(LabelError::BadPrefix)),
            (&long_prefix, Err(LabelError::PrefixTooLong)),
            ("a/b/c", Err(LabelError::TwoSlashes)),
        ];
        for (key, want) in cases {
            assert_eq!(validate_key(key), want, "{key:?}");
        }
    }

    #[test]
    fn label_values_as_the_api_server_checks_them() {
        let long = "v".repeat(64);
        let max = "v".repeat(63);
        let cases: Vec<(&str, Result<(), LabelError>)> = vec![
            ("", Ok(())),
            ("web", Ok(())),
            ("Web_1.2-x", Ok(())),
            (&max, Ok(())),
            ("a b", Err(LabelError::BadValue)),
            ("-bad", Err(LabelError::BadValue)),
            ("bad.", Err(LabelError::BadValue)),
            ("a/b", Err(LabelError::BadValue)),
            (&long, Err(LabelError::ValueTooLong)),
        ];
        for (value, want) in cases {
            assert_eq!(validate_value(value), want, "{value:?}");
        }
    }

    #[test]
    fn bad_syntax_names_where() {
        let labels: BTreeMap<String, String> = [("app name".to_string(), "x".to_string())].into();
        assert!(Selector::new(&labels, []).is_ok(), "built as before");
        let err = Selector::check_syntax(&labels, []).unwrap_err().to_string();
        assert_eq!(
            err,
            "matchLabels: label key \"app name\" is invalid: the name part may hold only letters, digits, '-', '_' and '.', and must start and end with a letter or digit"
        );
        let labels: BTreeMap<String, String> = [("app".to_string(), "a b".to_string())].into();
        let err = Selector::check_syntax(&labels, []).unwrap_err().to_string();
        assert!(
            err.starts_with("matchLabels[app]: label value \"a b\" is invalid"),
            "{err}"
        );
        let values = vec!["ok".to_string(), "-bad".to_string()];
        let expr = Expression {
            key: "tier",
            operator: "In",
            values: &values,
        };
        let err = Selector::check_syntax(&BTreeMap::new(), [expr])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("matchExpressions[0].values[1]: label value \"-bad\""),
            "{err}"
        );
        let expr = Expression {
            key: "-bad",
            operator: "Exists",
            values: &[],
        };
        let err = Selector::check_syntax(&BTreeMap::new(), [expr])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("matchExpressions[0]: label key \"-bad\""),
            "{err}"
        );
    }
}
