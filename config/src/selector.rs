//! Kubernetes `LabelSelector`s into the model's validated [`Selector`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use ferrolb_model::selector::Expression;
pub use ferrolb_model::selector::{Selector, SelectorError};

/// Validates a selector from the API.
pub fn parse(s: &LabelSelector) -> Result<Selector, SelectorError> {
    Selector::new(
        s.match_labels.iter().flatten(),
        s.match_expressions.iter().flatten().map(|e| Expression {
            key: &e.key,
            operator: &e.operator,
            values: e.values.as_deref().unwrap_or_default(),
        }),
    )
}

/// The first label key or value of the selector that is not valid Kubernetes syntax (see
/// [`Selector::check_syntax`]).
pub fn check_syntax(s: &LabelSelector) -> Result<(), SelectorError> {
    Selector::check_syntax(
        s.match_labels.iter().flatten(),
        s.match_expressions.iter().flatten().map(|e| Expression {
            key: &e.key,
            operator: &e.operator,
            values: e.values.as_deref().unwrap_or_default(),
        }),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

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
        let empty = parse(&LabelSelector::default()).unwrap();
        assert!(empty.matches(&none) && empty.matches(&web));
        let ml = LabelSelector {
            match_labels: Some(labels(&[("tier", "web")])),
            match_expressions: None,
        };
        assert!(parse(&ml).unwrap().matches(&web));
        assert!(!parse(&ml).unwrap().matches(&none));
        let table = [
            (expr("tier", "In", &["web", "db"]), true, false),
            (expr("tier", "NotIn", &["db"]), true, true),
            (expr("tier", "Exists", &[]), true, false),
            (expr("tier", "DoesNotExist", &[]), false, true),
        ];
        for (sel, on_web, on_none) in table {
            let s = parse(&sel).unwrap();
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
            let err = parse(&sel).unwrap_err().to_string();
            assert!(err.contains(msg), "{err}");
        }
    }
}
