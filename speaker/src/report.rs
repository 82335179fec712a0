//! Tells users who announces what: a `ferrolb.io/Announced` condition on each Service, Events on
//! ownership changes, and each node's entry in its L2Advertisements' status.
//!
//! Writes are level-triggered: the wanted condition is compared with the one in the cache, and only
//! a difference is written. The owning speaker writes `True`; when a group has no owner, one speaker
//! chosen by the same rendezvous hash among live members (the "reporter") writes `False` with the
//! reason, so exactly one speaker reports each fact. All speakers share one field manager, so an
//! apply by the new owner replaces what the old one wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use ferrolb_config::conditions;
use ferrolb_crds::L2Advertisement;
use ferrolb_daemon::Events;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Client, Resource};
use serde_json::json;
use tracing::{debug, warn};

use crate::watch::{ANNOUNCED, CachedService};

/// Field manager of the Service conditions, shared by every speaker.
pub const MANAGER: &str = "ferrolb-speaker";

/// The condition a Service should carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub status: bool,
    pub reason: String,
    pub message: String,
}

/// Writes conditions, advertisement status and Events; at most one write per object in flight.
#[derive(Clone)]
pub struct Writer {
    client: Client,
    events: Events,
    node: String,
    in_flight: Arc<Mutex<BTreeSet<String>>>,
    /// Bounds the writes and Events in flight: a speaker gaining a thousand addresses at once must
    /// not open a thousand requests to the API server (the controller keeps 32 in flight).
    permits: Arc<Semaphore>,
}

/// Writes and Events in flight at most, per speaker.
const IN_FLIGHT: usize = 16;

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// The message of a `True` condition; [`announcer_in`] reads the node back.
pub fn announced_message(node: &str, interfaces: &[String], ips: &str) -> String {
    format!("announced by {node} on {} ({ips})", interfaces.join(", "))
}

/// The node named by a message of [`announced_message`].
pub fn announcer_in(message: &str) -> Option<&str> {
    message
        .strip_prefix("announced by ")?
        .split_whitespace()
        .next()
}

impl Writer {
    pub fn new(client: Client, node: &str) -> Writer {
        Writer {
            events: Events::new(client.clone(), MANAGER, Some(node.into())),
            client,
            node: node.into(),
            in_flight: Arc::new(Mutex::new(BTreeSet::new())),
            permits: Arc::new(Semaphore::new(IN_FLIGHT)),
        }
    }

    /// Whether the Service's cached condition already says `want`.
    pub fn up_to_date(svc: &CachedService, want: &Wanted) -> bool {
        crate::watch::announced(svc).is_some_and(|c| {
            (c.status == "True") == want.status
                && c.reason == want.reason
                && c.message == want.message
        })
    }

    /// Writes the Service's condition in the background (skipped when a write to it is running).
    pub fn condition(&self, svc: &CachedService, want: Wanted) {
        let (Some(ns), Some(name)) = (svc.metadata.namespace.clone(), svc.metadata.name.clone())
        else {
            return;
        };
        let key = format!("svc/{ns}/{name}");
        if !self.begin(&key) {
            return;
        }
        // The cached resourceVersion is a precondition: a write decided on an old view (issued
        // while this node was cut off, say) fails with a conflict instead of overwriting what the
        // current owner wrote since.
        let version = svc.metadata.resource_version.clone();
        // lastTransitionTime moves only when the status does (API conventions).
        let existing = svc.status.as_ref().and_then(|s| s.conditions.as_deref());
        let cond = conditions::condition(
            existing.unwrap_or_default(),
            ANNOUNCED,
            want.status.into(),
            &want.reason,
            want.message.clone(),
            None,
            k8s_openapi::jiff::Timestamp::now(),
        );
        let this = self.clone();
        let permits = self.permits.clone();
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            // The reply is read as a CachedService too: only the cached fields are allocated.
            let api: Api<CachedService> = Api::namespaced(this.client.clone(), &ns);
            let body = json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": ns, "resourceVersion": version},
                "status": {"conditions": [cond]},
            });
            match api
                .patch_status(
                    &name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(body),
                )
                .await
            {
                Ok(_) => {
                    debug!(service = %format!("{ns}/{name}"), reason = %want.reason, "condition written")
                }
                Err(e) => {
                    warn!(service = %format!("{ns}/{name}"), error = %e, "could not write the Announced condition; will retry")
                }
            }
            this.end(&key);
        });
    }

    /// Writes this node's entry in an advertisement's status (its own field manager, so each node
    /// owns exactly its entry of the list).
    pub fn advertisement_entry(&self, adv: &L2Advertisement, entry: ferrolb_crds::L2NodeStatus) {
        let Some(name) = adv.metadata.name.clone() else {
            return;
        };
        let key = format!("l2adv/{name}");
        if !self.begin(&key) {
            return;
        }
        let this = self.clone();
        let permits = self.permits.clone();
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let api: Api<L2Advertisement> = Api::all(this.client.clone());
            let body = json!({
                "apiVersion": "ferrolb.io/v1alpha1", "kind": "L2Advertisement",
                "metadata": {"name": name},
                "status": {"nodes": [entry]},
            });
            let manager = format!("{MANAGER}-{}", this.node);
            if let Err(e) = api
                .patch_status(
                    &name,
                    &PatchParams::apply(&manager).force(),
                    &Patch::Apply(body),
                )
                .await
            {
                warn!(advertisement = %name, error = %e, "could not write the advertisement status; will retry");
            }
            this.end(&key);
        });
    }

    /// Writes the cluster-wide summary of an advertisement (the reporter does this).
    pub fn advertisement_summary(
        &self,
        adv: &L2Advertisement,
        node_count: i32,
        problems: Option<String>,
        valid: Result<(), String>,
    ) {
        let Some(name) = adv.metadata.name.clone() else {
            return;
        };
        let key = format!("l2adv-summary/{name}");
        if !self.begin(&key) {
            return;
        }
        let this = self.clone();
        let (status, reason, message) = match valid {
            Ok(()) => (true, "Valid", "the spec is valid".to_string()),
            Err(m) => (false, "Invalid", m),
        };
        let existing = adv.status.as_ref().map(|s| s.conditions.as_slice());
        let cond = conditions::condition(
            existing.unwrap_or_default(),
            "Valid",
            status.into(),
            reason,
            message,
            adv.metadata.generation,
            k8s_openapi::jiff::Timestamp::now(),
        );
        let permits = self.permits.clone();
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let api: Api<L2Advertisement> = Api::all(this.client.clone());
            let body = json!({
                "apiVersion": "ferrolb.io/v1alpha1", "kind": "L2Advertisement",
                "metadata": {"name": name},
                "status": {"nodeCount": node_count, "problems": problems, "conditions": [cond]},
            });
            if let Err(e) = api
                .patch_status(
                    &name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(body),
                )
                .await
            {
                warn!(advertisement = %name, error = %e, "could not write the advertisement summary; will retry");
            }
            this.end(&key);
        });
    }

    /// Publishes an Event in the background; failures are logged (Events are best effort).
    pub fn event<K>(&self, obj: &K, type_: EventType, reason: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let reference: ObjectReference = obj.object_ref(&());
        let events = self.events.clone();
        let reason = reason.to_string();
        let permits = self.permits.clone();
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let ev = Event {
                type_,
                reason: reason.clone(),
                note: Some(note),
                action: reason.clone(),
                secondary: None,
            };
            if let Err(e) = events.publish(&ev, &reference).await {
                warn!(%reason, error = %e, "could not publish event");
            }
        });
    }

    fn begin(&self, key: &str) -> bool {
        match self.in_flight.lock() {
            Ok(mut set) => set.insert(key.to_string()),
            Err(_) => false,
        }
    }

    fn end(&self, key: &str) {
        if let Ok(mut set) = self.in_flight.lock() {
            set.remove(key);
        }
    }
}

/// Summary text of the problems of an advertisement: those found in its spec that do not stop
/// it from applying (`notes`, with their paths: a pool that does not exist, bad label syntax)
/// and those in its node entries, e.g.
/// `spec.ipAddressPools[1]: pool "nope" does not exist; spec.interfaces: eth9 missing on node-1, node-2`.
pub fn problems_summary(
    entries: &[ferrolb_crds::L2NodeStatus],
    notes: &[ferrolb_config::pool::FieldError],
) -> Option<String> {
    let mut missing: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in entries {
        for i in &e.missing_interfaces {
            missing.entry(i.as_str()).or_default().push(e.node.as_str());
        }
    }
    let lines: Vec<String> = notes
        .iter()
        .map(ToString::to_string)
        .chain(
            missing
                .iter()
                .map(|(i, nodes)| format!("spec.interfaces: {i} missing on {}", nodes.join(", "))),
        )
        .collect();
    (!lines.is_empty()).then(|| lines.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announcer_is_read_back_from_the_message() {
        let m = announced_message("node-2", &["eth0".into(), "eth1".into()], "192.0.2.64");
        assert_eq!(m, "announced by node-2 on eth0, eth1 (192.0.2.64)");
        assert_eq!(announcer_in(&m), Some("node-2"));
        assert_eq!(
            announcer_in("node-2 owns 192.0.2.64 but has no interface"),
            None
        );
    }

    #[test]
    fn problems_name_unknown_pools_then_missing_interfaces() {
        let entry = |node: &str, missing: &[&str]| ferrolb_crds::L2NodeStatus {
            node: node.into(),
            missing_interfaces: missing.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let unknown = vec![ferrolb_config::pool::FieldError {
            field: "spec.ipAddressPools[1]".into(),
            message: "pool \"nope\" does not exist".into(),
        }];
        assert_eq!(problems_summary(&[entry("node-1", &[])], &[]), None);
        assert_eq!(
            problems_summary(&[entry("node-1", &[])], &unknown).as_deref(),
            Some("spec.ipAddressPools[1]: pool \"nope\" does not exist")
        );
        assert_eq!(
            problems_summary(
                &[entry("node-1", &["eth9"]), entry("node-2", &["eth9"])],
                &unknown
            )
            .as_deref(),
            Some(
                "spec.ipAddressPools[1]: pool \"nope\" does not exist; spec.interfaces: eth9 missing on node-1, node-2"
            )
        );
    }
}
