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

/// `existing` with condition `type_` set as [`condition`] builds it: replaced where it is (the
/// other conditions keep their order) or appended. Any duplicate of the type is dropped.
pub fn set(
    existing: &[Condition],
    type_: &str,
    status: Status,
    reason: &str,
    message: String,
    observed_generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let new = condition(
        existing,
        type_,
        status,
        reason,
        message,
        observed_generation,
        now,
    );
    let mut new = Some(new);
    let mut out = Vec::with_capacity(existing.len() + 1);
    for c in existing {
        if c.type_ != type_ {
            out.push(c.clone());
        } else if let Some(n) = new.take() {
            out.push(n);
        }
    }
    out.extend(new);
    out
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

    /// (type, status, reason, lastTransitionTime) of each condition, in order.
    fn short(cs: &[Condition]) -> Vec<(String, String, String, i64)> {
        cs.iter()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.last_transition_time.0.as_second() - 1_800_000_000,
                )
            })
            .collect()
    }

    fn row(t: &str, s: &str, r: &str, at: i64) -> (String, String, String, i64) {
        (t.into(), s.into(), r.into(), at)
    }

    #[test]
    fn the_transition_time_moves_only_when_the_status_changes() {
        let existing = [
            cond("Invalid", "False", "Valid", 0),
            cond("Ready", "True", "Ready", 5),
            cond("Exhausted", "False", "AddressesFree", 7),
        ];
        // Same status, new reason and message: the time stays, the rest follows.
        let out = set(
            &existing,
            "Ready",
            Status::True,
            "StillReady",
            "new words".into(),
            Some(2),
            at(100),
        );
        assert_eq!(
            short(&out),
            [
                row("Invalid", "False", "Valid", 0),
                row("Ready", "True", "StillReady", 5),
                row("Exhausted", "False", "AddressesFree", 7),
            ],
            "kept in place, others in their order"
        );
        assert_eq!(out[1].message, "new words");
        assert_eq!(out[1].observed_generation, Some(2));
        assert_eq!(out[0], existing[0], "the others untouched");

        // A changed status: now.
        let out = set(
            &existing,
            "Exhausted",
            Status::True,
            "NoFreeAddresses",
            "full".into(),
            Some(1),
            at(100),
        );
        assert_eq!(
            short(&out)[2],
            row("Exhausted", "True", "NoFreeAddresses", 100)
        );

        // Unknown is a status of its own.
        let out = set(
            &existing,
            "Ready",
            Status::Unknown,
            "Unknown",
            String::new(),
            None,
            at(100),
        );
        assert_eq!(short(&out)[1], row("Ready", "Unknown", "Unknown", 100));
    }

    #[test]
    fn a_new_type_is_appended_and_a_duplicate_dropped() {
        let existing = [
            cond("A", "True", "R", 0),
            cond("B", "True", "R", 1),
            cond("A", "False", "R", 2),
        ];
        let out = set(
            &existing,
            "C",
            Status::False,
            "R",
            String::new(),
            None,
            at(9),
        );
        assert_eq!(
            short(&out),
            [
                row("A", "True", "R", 0),
                row("B", "True", "R", 1),
                row("A", "False", "R", 2),
                row("C", "False", "R", 9),
            ],
            "a new type goes last; nothing else changes"
        );
        // Setting A keeps the first A's place and time (same status) and drops the second.
        let out = set(&existing, "A", true.into(), "S", String::new(), None, at(9));
        assert_eq!(
            short(&out),
            [row("A", "True", "S", 0), row("B", "True", "R", 1)]
        );
        // From nothing.
        let out = set(&[], "A", Status::True, "R", String::new(), None, at(3));
        assert_eq!(short(&out), [row("A", "True", "R", 3)]);
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
