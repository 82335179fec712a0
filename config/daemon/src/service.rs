//! A Service as both daemons cache it: deserialised straight from the API server's JSON into only
//! the fields ferrolb reads (serde skips the others), instead of k8s-openapi's whole `Service`.
//!
//! Measured: in the speaker, k8s-openapi's `Service`, even with its unread fields emptied, cost
//! ~2 KiB of heap per Service (heaptrack, 1,000 Services: 2.2 MiB of 4.9 MiB live); the
//! controller caches every Service of the cluster (BENCHMARKS.md: its memory at 10,000).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ferrolb_config::service::{handles, ingress_ips};
use k8s_openapi::api::core::v1::ServiceStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

/// A core/v1 Service, as cached.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct CachedService {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: CachedSpec,
    pub status: Option<ServiceStatus>,
    /// The pool the controller assigned, for a cache that moves the annotation
    /// (`ferrolb.io/ip-allocated-from-pool`) out of the annotations (the speaker's, which reads
    /// no other annotation); `None` otherwise.
    #[serde(skip)]
    pub pool: Option<String>,
}

/// The fields of a Service's spec that ferrolb reads.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedSpec {
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub load_balancer_class: Option<String>,
    #[serde(rename = "loadBalancerIP")]
    pub load_balancer_ip: Option<String>,
    pub external_traffic_policy: Option<String>,
    pub ip_families: Option<Vec<String>>,
    pub ip_family_policy: Option<String>,
    pub selector: Option<BTreeMap<String, String>>,
    pub ports: Option<Vec<CachedPort>>,
}

/// A Service port: what sharing an address compares.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct CachedPort {
    pub port: i32,
    pub protocol: Option<String>,
}

impl CachedService {
    /// Whether ferrolb handles it (see [`ferrolb_config::service::handles`]).
    pub fn is_ours(&self, class: Option<&str>) -> bool {
        handles(
            self.spec.type_.as_deref(),
            self.spec.load_balancer_class.as_deref(),
            class,
        )
    }

    /// The addresses its status shows.
    pub fn ips(&self) -> Vec<IpAddr> {
        ingress_ips(self.status.as_ref())
    }
}

impl Resource for CachedService {
    type DynamicType = ();
    type Scope = kube::core::NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        "Service".into()
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        "services".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_ferrolb_uses_and_skips_the_rest() {
        let svc: CachedService = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "annotations": {"a": "b"}},
            "spec": {
                "type": "LoadBalancer", "loadBalancerIP": "192.0.2.9", "clusterIP": "10.0.0.1",
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                "externalTrafficPolicy": "Local", "selector": {"app": "web"},
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 30080}],
                "sessionAffinity": "None"
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.9", "ipMode": "VIP"}]}}
        }))
        .unwrap();
        assert!(svc.is_ours(None));
        assert_eq!(svc.ips(), vec!["192.0.2.9".parse::<IpAddr>().unwrap()]);
        assert_eq!(svc.spec.load_balancer_ip.as_deref(), Some("192.0.2.9"));
        assert_eq!(svc.spec.ports.as_ref().unwrap()[0].port, 80);
        assert_eq!(svc.spec.external_traffic_policy.as_deref(), Some("Local"));
        assert_eq!(svc.object_ref(&()).kind.as_deref(), Some("Service"));
        assert_eq!(svc.object_ref(&()).api_version.as_deref(), Some("v1"));
    }
}
