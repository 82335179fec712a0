//! A pool's status: counts and conditions, from the allocator and the pool's validation.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ferrolb_allocator::{Allocator, Family, FamilyStats, Holder, PoolName, PoolsReport};
use ferrolb_config::conditions;
use ferrolb_config::pool::FieldError;
use ferrolb_crds::{IPAddressPool, IPAddressPoolStatus};
use k8s_openapi::jiff::Timestamp;

use crate::model::Pools;

/// Size and use of one family of a valid pool, for the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolGauge {
    /// The pool.
    pub pool: String,
    /// The family.
    pub family: Family,
    /// Addresses the pool hands out (assigned + available).
    pub size: u128,
    /// Addresses assigned.
    pub in_use: u128,
}

/// What the pool's validation and the allocator say about one pool.
pub(crate) struct Facts<'a> {
    pub(crate) valid: &'a Pools,
    pub(crate) invalid: Option<&'a Vec<FieldError>>,
    pub(crate) allocator: &'a Allocator,
    pub(crate) report: &'a PoolsReport,
    /// The control-plane addresses, with where each was learnt.
    pub(crate) control_plane: &'a BTreeMap<IpAddr, &'static str>,
}

/// The status `obj` should have, and its gauges (none while the pool is not used). `wall` stamps
/// conditions whose status changed ([`conditions::condition`], shared with the speaker).
pub(crate) fn pool_status(
    obj: &IPAddressPool,
    facts: &Facts<'_>,
    wall: Timestamp,
) -> (IPAddressPoolStatus, Vec<PoolGauge>) {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let old = obj.status.clone().unwrap_or_default();
    let generation = obj.metadata.generation;
    let mut status = IPAddressPoolStatus {
        observed_generation: generation,
        ..Default::default()
    };
    let mut gauges = Vec::new();
    let mut conds = Vec::new();
    let pool = PoolName::new(name.clone());
    let errors = facts.invalid;
    if let Some(errors) = errors
        && !facts.valid.contains_key(&pool)
    {
        conds.push(("Invalid", true, "InvalidSpec", join(errors)));
        conds.push((
            "Ready",
            false,
            "InvalidSpec",
            "the pool is not used until its spec is fixed".to_string(),
        ));
    } else {
        let stats = facts.allocator.pool_stats(&pool).unwrap_or_default();
        for (family, fs) in [(Family::V4, stats.v4), (Family::V6, stats.v6)] {
            gauges.push(gauge(&name, family, fs));
        }
        status.assigned_ipv4 = Some(stats.v4.assigned.to_string());
        status.available_ipv4 = Some(stats.v4.available.to_string());
        status.assigned_ipv6 = Some(stats.v6.assigned.to_string());
        status.available_ipv6 = Some(stats.v6.available.to_string());
        status.assigned = Some(sum(stats.v4.assigned, stats.v6.assigned));
        status.available = Some(sum(stats.v4.available, stats.v6.available));
        match errors {
            Some(errors) => conds.push((
                "Invalid",
                true,
                "InvalidSpec",
                format!(
                    "{}; the pool keeps serving with its last valid spec until this is fixed",
                    join(errors)
                ),
            )),
            None => conds.push(("Invalid", false, "Valid", "the spec is valid".into())),
        }
        match facts.report.overlaps.get(&pool) {
            Some(o) if !o.is_empty() => {
                let what = o
                    .iter()
                    .map(|x| {
                        format!(
                            "{} (held by older pool {})",
                            range_text(x.range.start(), x.range.end()),
                            x.older
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                conds.push((
                    "Overlapping",
                    true,
                    "OverlapsOlderPool",
                    format!("not handed out from this pool: {what}"),
                ));
            }
            _ => conds.push((
                "Overlapping",
                false,
                "NoOverlap",
                "no address is also in an older pool".into(),
            )),
        }
        // Only when there is one, so that pools never near the control plane show nothing new.
        let control_plane: Vec<String> = facts
            .control_plane
            .iter()
            .filter(|&(&ip, _)| facts.allocator.pool_of(ip) == Some(&pool))
            .map(|(&ip, from)| {
                let holders: Vec<String> = facts
                    .allocator
                    .holders(ip)
                    .filter_map(|h| match h {
                        Holder::Service(s) => Some(s.to_string()),
                        Holder::Releasing { .. } => None,
                    })
                    .collect();
                let held = if holders.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (Service {} got it before and keeps it)",
                        holders.join(", ")
                    )
                };
                format!("{ip} is the control-plane endpoint ({from}){held}")
            })
            .collect();
        if !control_plane.is_empty() {
            let never = if control_plane.len() == 1 {
                "it is never assigned to a Service"
            } else {
                "they are never assigned to a Service"
            };
            conds.push((
                "ControlPlaneConflict",
                true,
                "ControlPlaneAddress",
                format!("{}; {never}", control_plane.join(", ")),
            ));
        }
        let total_free = stats.v4.available + stats.v6.available;
        let total = total_free + stats.v4.assigned + stats.v6.assigned;
        if total == 0 {
            conds.push((
                "Exhausted",
                true,
                "NoAddresses",
                "every address of this pool belongs to older pools".into(),
            ));
            conds.push((
                "Ready",
                false,
                "NoAddresses",
                "the pool has no address of its own".into(),
            ));
        } else {
            let out: Vec<String> = [(Family::V4, stats.v4), (Family::V6, stats.v6)]
                .into_iter()
                .filter(|(_, f)| f.available == 0 && f.assigned > 0)
                .map(|(fam, _)| fam.to_string())
                .collect();
            if out.is_empty() {
                conds.push((
                    "Exhausted",
                    false,
                    "AddressesFree",
                    "addresses are free".into(),
                ));
            } else {
                conds.push((
                    "Exhausted",
                    true,
                    "NoFreeAddresses",
                    format!("no free {} address left", out.join(" or ")),
                ));
            }
            conds.push((
                "Ready",
                true,
                "Ready",
                "the pool hands out addresses".into(),
            ));
        }
    }
    status.conditions = conds
        .into_iter()
        .map(|(type_, on, reason, message)| {
            conditions::condition(
                &old.conditions,
                type_,
                on.into(),
                reason,
                message,
                generation,
                wall,
            )
        })
        .collect();
    (status, gauges)
}

fn gauge(pool: &str, family: Family, stats: FamilyStats) -> PoolGauge {
    PoolGauge {
        pool: pool.to_string(),
        family,
        size: stats.assigned + stats.available,
        in_use: stats.assigned,
    }
}

fn sum(a: u128, b: u128) -> String {
    match a.checked_add(b) {
        Some(s) => s.to_string(),
        None => format!("{a} IPv4 + {b} IPv6"),
    }
}

fn range_text(a: IpAddr, b: IpAddr) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a}-{b}")
    }
}

/// The errors of an invalid pool, as one sentence.
pub(crate) fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
