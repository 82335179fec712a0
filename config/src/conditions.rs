//! The one condition builder of both daemons: `metav1.Condition`s as the Kubernetes API
//! conventions want them ("Typical status properties"): `lastTransitionTime` changes only when
//! the condition's status changes, not when its reason or message does, and one condition per
//! type.
//!
//! Here rather than in `ferrolb-daemon`, which both daemons also share: the builder must be pure
//! (the time comes in as `now`, as in the controller's decision core, which calls it), and
//! `ferrolb-daemon` carries the kube client and tokio. This crate is pure by Cargo and already
//! reads the API types.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// The status of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The condition holds.
    True,
    /// It does not.
    False,
    /// Whether it holds cannot be told.
    Unknown,
}

impl Status {
    /// As the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

impl From<bool> for Status {
    fn from(on: bool) -> Status {
        if on { Status::True } else { Status::False }
    }
}

/// Condition `type_` as it should be now, given the conditions the object shows (`existing`):
/// its `lastTransitionTime` is the existing one when the status is the same, else `now`.
pub fn condition(
    existing: &[Condition],
    type_: &str,
    status: Status,
    reason: &str,
    message: String,
    observed_generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = status.as_str();
    let last_transition_time = existing
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation,
        last_transition_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn cond(type_: &str, status: &str, reason: &str, t: i64) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: format!("{type_} {reason}"),
            observed_generation: Some(1),
            last_transition_time: Time(at(t)),
        }
    }

    #[test]
    fn condition_finds_the_time_of_its_own_type_only() {
        let existing = [cond("A", "True", "R", 0), cond("B", "False", "R", 1)];
        let c = condition(
            &existing,
            "B",
            Status::True,
            "R",
            String::new(),
            None,
            at(4),
        );
        assert_eq!(c.last_transition_time, Time(at(4)));
        let c = condition(
            &existing,
            "B",
            Status::False,
            "R",
            String::new(),
            None,
            at(4),
        );
        assert_eq!(c.last_transition_time, Time(at(1)));
    }
}
