//! Writes the controller's facts to the API: the Service's `status.loadBalancer.ingress`, the
//! annotation naming the pool, Events, and the pools' status, all under one field manager. The
//! pool status is a server-side apply; the Service writes, the hot path, are merge patches (see
//! [`Writer::service`]).

use ferrolb_config::service::ASSIGNED_POOL;
use ferrolb_crds::IPAddressPool;
use ferrolb_daemon::Events;
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use serde_json::json;
use tracing::warn;

use crate::state::{ALLOCATED, ConditionWrite, StatusWrite};

/// Field manager of every write.
pub const MANAGER: &str = "ferrolb-controller";

/// The controller's writer. Only the leader holds one.
#[derive(Clone)]
pub struct Writer {
    client: Client,
    events: Events,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    pub fn new(client: Client, identity: &str) -> Self {
        Writer {
            events: Events::new(client.clone(), MANAGER, Some(identity.into())),
            client,
        }
    }

    /// Sets `status.loadBalancer.ingress` to exactly `write.ips` (empty clears it) and the pool
    /// annotation to `write.pool` (`None` removes it), if `write` is given; sets or removes the
    /// Service's `ferrolb.io/Allocated` condition as `condition` says, if given.
    ///
    /// These are strategic merge patches, not server-side apply: this is the controller's hot path
    /// (10,000 Services), SSA costs the API server a managed-fields computation per write, and
    /// these fields have exactly one writer anyway. Strategic rather than JSON merge: the
    /// conditions list is merged by `type` (the speaker keeps its own `ferrolb.io/Announced`
    /// there), while `ingress` (an atomic list) is replaced as a whole, as before. The field
    /// manager is still recorded.
    ///
    /// Everything goes in one request to the status subresource: the Service status strategy
    /// resets only `spec` on a status write and keeps metadata changes (checked on
    /// kube-apiserver 1.34 in the lab; the controller tests read the annotation back). Should a
    /// server drop the annotation anyway, the reply shows it and a second patch on the object
    /// itself sets it.
    pub async fn service(
        &self,
        namespace: &str,
        name: &str,
        write: Option<&StatusWrite>,
        condition: Option<&ConditionWrite>,
    ) -> Result<(), kube::Error> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        let params = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        let mut body = json!({"status": {}});
        if let Some(write) = write {
            let ingress: Vec<_> = write
                .ips
                .iter()
                .map(|ip| json!({"ip": ip.to_string(), "ipMode": "VIP"}))
                .collect();
            body["status"]["loadBalancer"] = json!({"ingress": ingress});
            if write.annotation_changed {
                body["metadata"] = json!({"annotations": { ASSIGNED_POOL: write.pool }});
            }
        }
        match condition {
            Some(ConditionWrite::Set(c)) => body["status"]["conditions"] = json!([c]),
            Some(ConditionWrite::Remove) => {
                body["status"]["conditions"] = json!([{"type": ALLOCATED, "$patch": "delete"}]);
            }
            None => {}
        }
        let reply = api
            .patch_status(name, &params, &Patch::Strategic(body))
            .await?;
        let Some(write) = write.filter(|w| w.annotation_changed) else {
            return Ok(());
        };
        let pool = write.pool.as_deref();
        let written = reply
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ASSIGNED_POOL))
            .map(String::as_str);
        if written != pool {
            let meta = json!({"metadata": {"annotations": { ASSIGNED_POOL: pool }}});
            api.patch(name, &params, &Patch::Merge(meta)).await?;
        }
        Ok(())
    }

    /// Replaces a pool's status.
    pub async fn pool(
        &self,
        name: &str,
        status: &ferrolb_crds::IPAddressPoolStatus,
    ) -> Result<(), kube::Error> {
        let api: Api<IPAddressPool> = Api::all(self.client.clone());
        let body = json!({
            "apiVersion": "ferrolb.io/v1alpha1", "kind": "IPAddressPool",
            "metadata": {"name": name},
            "status": status,
        });
        api.patch_status(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(body),
        )
        .await?;
        Ok(())
    }

    /// Publishes an Event about the object `reference` names; a failure is logged, never fatal
    /// (Events are best effort).
    pub async fn event(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.events.publish(&ev, reference).await {
            warn!(reason, error = %e, "could not publish event");
        }
    }
}
