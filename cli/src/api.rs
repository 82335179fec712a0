//! The thin I/O: the client from kubectl's flags, the lists each command needs, the apply. Errors
//! name the object and what to do.

use anyhow::{Context, anyhow};
use ferrolb_crds::{IPAddressPool, L2Advertisement};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde::de::DeserializeOwned;

use crate::Global;
use crate::migrate::{Migration, Source, UNSUPPORTED_KINDS};
use crate::status::SPEAKER_POD_LABEL;

const CRDS_MISSING: &str = "the ferrolb CRDs are not installed in this cluster: kubectl apply -k deploy/ \
     (or kubectl apply -f deploy/crds/)";

/// A client as kubectl would make it: --kubeconfig, else $KUBECONFIG or ~/.kube/config, else the
/// in-cluster service account; --context picks the context.
pub async fn client(g: &Global) -> anyhow::Result<Client> {
    let options = KubeConfigOptions {
        context: g.context.clone(),
        ..Default::default()
    };
    let config = match &g.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .with_context(|| {
                    format!("using the kubeconfig {}{}", path.display(), context_hint(g))
                })?
        }
        None => match Config::from_kubeconfig(&options).await {
            Ok(c) => c,
            Err(e) if g.context.is_none() => Config::incluster().map_err(|_| {
                anyhow!(
                    "no usable kubeconfig ({e}) and not running in a cluster: pass --kubeconfig \
                     or set KUBECONFIG"
                )
            })?,
            Err(e) => {
                return Err(
                    anyhow!(e).context(format!("loading the kubeconfig{}", context_hint(g)))
                );
            }
        },
    };
    let url = config.cluster_url.to_string();
    Client::try_from(config).with_context(|| format!("creating a client for {url}"))
}

fn context_hint(g: &Global) -> String {
    g.context
        .as_deref()
        .map(|c| format!(" with context {c} (kubectl config get-contexts lists them)"))
        .unwrap_or_default()
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Lists `api`; `what` names the objects in errors.
async fn list<K>(api: &Api<K>, params: &ListParams, what: &str) -> anyhow::Result<Vec<K>>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.list(params).await {
        Ok(l) => Ok(l.items),
        Err(e) => Err(explain(e, what)),
    }
}

fn explain(e: kube::Error, what: &str) -> anyhow::Error {
    match status_code(&e) {
        Some(403) => anyhow!(
            "not allowed to list {what}: {e}. Use a kubeconfig whose user may read them \
             (kubectl auth can-i list {what})"
        ),
        Some(401) => {
            anyhow!("the API server refused the credentials: {e}; check --kubeconfig/--context")
        }
        _ => match e {
            kube::Error::HyperError(_) | kube::Error::Service(_) => anyhow!(
                "cannot reach the API server to list {what}: {e}; check --kubeconfig/--context"
            ),
            e => anyhow!("listing {what}: {e}"),
        },
    }
}

fn namespaced<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// What `status` reads.
#[derive(Debug)]
pub struct StatusInput {
    pub pools: Vec<IPAddressPool>,
    pub advertisements: Vec<L2Advertisement>,
    pub services: Vec<Service>,
    pub events: Vec<Event>,
    pub speaker_pods: Vec<Pod>,
    /// What could not be read and why (optional parts only).
    pub notes: Vec<String>,
}

async fn ferrolb_list<K>(client: &Client, what: &str) -> anyhow::Result<Vec<K>>
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::all(client.clone());
    match api.list(&ListParams::default()).await {
        Ok(l) => Ok(l.items),
        Err(e) if status_code(&e) == Some(404) => Err(anyhow!("{CRDS_MISSING} ({what}: {e})")),
        Err(e) => Err(explain(e, what)),
    }
}

pub async fn status_input(client: &Client, namespace: Option<&str>) -> anyhow::Result<StatusInput> {
    let pools = ferrolb_list::<IPAddressPool>(client, "ipaddresspools.ferrolb.io").await?;
    let advertisements =
        ferrolb_list::<L2Advertisement>(client, "l2advertisements.ferrolb.io").await?;
    let services = list(
        &namespaced::<Service>(client, namespace),
        &ListParams::default(),
        "services",
    )
    .await?;
    let mut notes = Vec::new();
    let events = match list(
        &namespaced::<Event>(client, namespace),
        &ListParams::default(),
        "events.events.k8s.io",
    )
    .await
    {
        Ok(e) => e,
        Err(e) => {
            notes.push(format!("Events not shown: {e:#}"));
            Vec::new()
        }
    };
    let speaker_pods = match list(
        &Api::<Pod>::all(client.clone()),
        &ListParams::default().labels(SPEAKER_POD_LABEL),
        "pods",
    )
    .await
    {
        Ok(p) => p,
        Err(e) => {
            notes.push(format!("speaker pods not shown: {e:#}"));
            Vec::new()
        }
    };
    Ok(StatusInput {
        pools,
        advertisements,
        services,
        events,
        speaker_pods,
        notes,
    })
}

pub async fn service_input(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<(Service, Vec<Event>)> {
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    let svc = match api.get(name).await {
        Ok(s) => s,
        Err(e) if status_code(&e) == Some(404) => {
            return Err(anyhow!(
                "service {namespace}/{name} not found: kubectl get services -n {namespace} lists them"
            ));
        }
        Err(e) => return Err(explain(e, &format!("service {namespace}/{name}"))),
    };
    let events = list(
        &Api::<Event>::namespaced(client.clone(), namespace),
        &ListParams::default().fields(&format!("regarding.name={name}")),
        "events.events.k8s.io",
    )
    .await?;
    Ok((svc, events))
}

/// What `migrate from-metallb` reads.
#[derive(Debug)]
pub struct MetallbInput {
    pub pools: Vec<Source>,
    pub advertisements: Vec<Source>,
    pub others: Vec<Source>,
}

fn resource(version: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("metallb.io", version, kind))
}

fn source(kind: &str, o: DynamicObject) -> Source {
    Source {
        kind: kind.to_string(),
        namespace: o.metadata.namespace.clone().unwrap_or_default(),
        name: o.metadata.name.clone().unwrap_or_default(),
        labels: o.metadata.labels.clone().unwrap_or_default(),
        spec: o.data.get("spec").cloned().unwrap_or_default(),
    }
}

/// MetalLB's objects of one kind; `None` when the cluster does not serve that kind.
async fn metallb_list(
    client: &Client,
    namespace: Option<&str>,
    version: &str,
    kind: &str,
) -> anyhow::Result<Option<Vec<Source>>> {
    let ar = resource(version, kind);
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    match api.list(&ListParams::default()).await {
        Ok(l) => Ok(Some(l.items.into_iter().map(|o| source(kind, o)).collect())),
        Err(e) if status_code(&e) == Some(404) => Ok(None),
        Err(e) => Err(explain(e, &format!("{}.metallb.io", ar.plural))),
    }
}

pub async fn metallb_input(
    client: &Client,
    namespace: Option<&str>,
) -> anyhow::Result<MetallbInput> {
    let pools = metallb_list(client, namespace, "v1beta1", "IPAddressPool").await?;
    let advertisements = metallb_list(client, namespace, "v1beta1", "L2Advertisement").await?;
    if pools.is_none() && advertisements.is_none() {
        return Err(anyhow!(
            "MetalLB's CRDs (ipaddresspools.metallb.io, l2advertisements.metallb.io, version \
             v1beta1) are not installed in this cluster: nothing to migrate. Point --kubeconfig/\
             --context at the cluster running MetalLB"
        ));
    }
    let mut others = Vec::new();
    for (kind, _) in UNSUPPORTED_KINDS {
        // BGPPeer moved to v1beta2; older MetalLB releases serve v1beta1 only.
        let versions: &[&str] = if *kind == "BGPPeer" {
            &["v1beta2", "v1beta1"]
        } else {
            &["v1beta1"]
        };
        for v in versions {
            if let Some(found) = metallb_list(client, namespace, v, kind).await? {
                others.extend(found);
                break;
            }
        }
    }
    Ok(MetallbInput {
        pools: pools.unwrap_or_default(),
        advertisements: advertisements.unwrap_or_default(),
        others,
    })
}

/// Server-side applies every object; returns one line per object, as `kubectl apply` prints.
pub async fn apply(client: &Client, m: &Migration, manager: &str) -> anyhow::Result<Vec<String>> {
    let params = PatchParams::apply(manager);
    let mut out = Vec::new();
    let pools: Api<IPAddressPool> = Api::all(client.clone());
    for p in &m.pools {
        let name = p.metadata.name.clone().unwrap_or_default();
        pools
            .patch(&name, &params, &Patch::Apply(p))
            .await
            .map_err(|e| apply_error(e, "ipaddresspool.ferrolb.io", &name))?;
        out.push(format!(
            "ipaddresspool.ferrolb.io/{name} serverside-applied"
        ));
    }
    let advs: Api<L2Advertisement> = Api::all(client.clone());
    for a in &m.advertisements {
        let name = a.metadata.name.clone().unwrap_or_default();
        advs.patch(&name, &params, &Patch::Apply(a))
            .await
            .map_err(|e| apply_error(e, "l2advertisement.ferrolb.io", &name))?;
        out.push(format!(
            "l2advertisement.ferrolb.io/{name} serverside-applied"
        ));
    }
    Ok(out)
}

fn apply_error(e: kube::Error, kind: &str, name: &str) -> anyhow::Error {
    match status_code(&e) {
        Some(404) => anyhow!("applying {kind}/{name}: {CRDS_MISSING}"),
        Some(409) => anyhow!(
            "applying {kind}/{name}: another field manager owns some of its fields ({e}); \
             edit it by hand or pass --field-manager with that manager's name"
        ),
        Some(422) => anyhow!("the API server rejected {kind}/{name}: {e}"),
        _ => anyhow!("applying {kind}/{name}: {e}"),
    }
}

/// The label that takes a node out of every load balancer's announcements (the standard one,
/// which ferrolb's speakers honour), and the value `drain` writes, so `undrain` removes only its own.
pub const DRAIN_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
pub const DRAIN_VALUE: &str = "ferrolb-drain";

/// Sets (drained) or removes (undrained) the drain label on Node `node`.
pub async fn set_drained(client: &Client, node: &str, drained: bool) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Api, Patch, PatchParams};
    let nodes: Api<Node> = Api::all(client.clone());
    let Some(current) = nodes
        .get_opt(node)
        .await
        .with_context(|| format!("reading node/{node}"))?
    else {
        anyhow::bail!("there is no Node named {node:?} (kubectl get nodes lists them)");
    };
    let value = current
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(DRAIN_LABEL))
        .cloned();
    let patch = match (drained, value.as_deref()) {
        (true, Some(_)) | (false, None) => return Ok(()),
        (true, None) => serde_json::json!({"metadata": {"labels": {DRAIN_LABEL: DRAIN_VALUE}}}),
        (false, Some(DRAIN_VALUE)) => {
            serde_json::json!({"metadata": {"labels": {DRAIN_LABEL: null}}})
        }
        (false, Some(other)) => anyhow::bail!(
            "node/{node} carries {DRAIN_LABEL}={other}, set by someone else than `kubectl ferrolb \
             drain`; it keeps the node out of every load balancer. Remove it yourself if that is \
             meant: kubectl label node {node} {DRAIN_LABEL}-"
        ),
    };
    nodes
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("labelling node/{node}"))?;
    Ok(())
}
