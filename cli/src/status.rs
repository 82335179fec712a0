//! `kubectl ferrolb status`: API objects in, a stable report out (serialised for `-o json|yaml`,
//! rendered as tables otherwise). Pure: the caller fetches the objects and passes `now`.
//!
//! Where each fact comes from:
//! - pools: `IPAddressPool.status` (written by the controller: per-family assigned/available and
//!   the `Ready`, `Invalid`, `Overlapping`, `Exhausted`, `ControlPlaneConflict` conditions);
//! - Services: `status.loadBalancer.ingress` and the annotation `ferrolb.io/ip-allocated-from-pool`
//!   (controller), the condition `ferrolb.io/Announced` (speakers: "announced by NODE on IFACES
//!   (ADDRS)" or the reason nobody announces), and the Events reported by `ferrolb-*` components;
//! - speakers: each node's entry in `L2Advertisement.status.nodes` (selected, interfaces, missing
//!   interfaces) and the speaker pods. Gossip membership and quorum are NOT published in the API
//!   (only on each speaker's `/metrics`: `ferrolb_speaker_members`, `ferrolb_speaker_quorum`), so
//!   this report does not show them.

use std::collections::{BTreeMap, BTreeSet};

use ferrolb_config::service::{ASSIGNED_POOL, ingress_ips, parse_intent};
use ferrolb_crds::{IPAddressPool, L2Advertisement};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::table::{Cell, Style, Tone, render};

/// The Service condition the speakers write.
pub const ANNOUNCED: &str = "ferrolb.io/Announced";
/// The Service condition the controller writes (True with addresses and pool, False with why).
pub const ALLOCATED: &str = "ferrolb.io/Allocated";
/// Events by these reporting controllers are ferrolb's.
pub const REPORTER_PREFIX: &str = "ferrolb-";
/// What the report says about membership, which the speakers do not publish in the API.
pub const MEMBERSHIP_NOTE: &str = "gossip membership and quorum are not published in the API: \
     read them on each speaker's :7473/metrics (ferrolb_speaker_members, ferrolb_speaker_quorum)";

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub pools: Vec<PoolRow>,
    pub services: Vec<ServiceRow>,
    pub advertisements: Vec<AdvertisementRow>,
    pub speakers: Vec<SpeakerRow>,
    pub notes: Vec<String>,
}

/// Used and free addresses of one family.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyUse {
    pub used: Option<String>,
    pub free: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionRow {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolRow {
    pub name: String,
    pub addresses: Vec<String>,
    pub auto_assign: bool,
    pub ipv4: FamilyUse,
    pub ipv6: FamilyUse,
    pub conditions: Vec<ConditionRow>,
}

/// Where a Service stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum State {
    /// Has addresses and a node announces them.
    Announced,
    /// Has addresses; no node announces them (see the reason).
    NotAnnounced,
    /// Has no address (see the reason).
    NotAllocated,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRow {
    pub namespace: String,
    pub name: String,
    pub state: State,
    pub addresses: Vec<String>,
    pub pool: Option<String>,
    pub node: Option<String>,
    pub interfaces: Vec<String>,
    /// Why it is not announced or not allocated (a condition's or an Event's reason and message).
    pub reason: Option<String>,
}

/// An L2Advertisement and what the speakers report on it (its status).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdvertisementRow {
    pub name: String,
    /// Pools named in the spec (empty with selectors or for every pool).
    pub pools: Vec<String>,
    /// How many pool selectors the spec has.
    pub pool_selectors: usize,
    /// Interfaces named in the spec (empty: those with an address in the VIP's subnet).
    pub interfaces: Vec<String>,
    /// Nodes applying it, as the speakers count them.
    pub node_count: Option<i32>,
    /// Problems the speakers found (a missing interface, say).
    pub problems: Option<String>,
    pub conditions: Vec<ConditionRow>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpeakerRow {
    pub node: String,
    /// The speaker pod on the node, if one runs as a pod (`namespace/name`).
    pub pod: Option<String>,
    /// The pod's phase and readiness (`Running, ready`).
    pub pod_state: Option<String>,
    /// Advertisements that select this node.
    pub advertisements: Vec<String>,
    pub interfaces: Vec<String>,
    pub missing_interfaces: Vec<String>,
    /// Services whose Announced condition names this node.
    pub announcing: usize,
}

/// The announcement read from a `True` Announced condition's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    pub node: String,
    pub interfaces: Vec<String>,
    pub addresses: Vec<String>,
}

/// Parses "announced by NODE on IFACE, IFACE (ADDR, ADDR)" (speaker/src/report.rs writes it).
pub fn parse_announced(message: &str) -> Option<Announcement> {
    let rest = message.strip_prefix("announced by ")?;
    let (node, rest) = rest.split_once(" on ")?;
    let (ifaces, addrs) = match rest.split_once(" (") {
        Some((i, a)) => (i, a.trim_end_matches(')')),
        None => (rest, ""),
    };
    let list = |s: &str| -> Vec<String> {
        s.split([',', ' '])
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()
    };
    Some(Announcement {
        node: node.to_string(),
        interfaces: list(ifaces),
        addresses: list(addrs),
    })
}

fn condition_row(c: &Condition) -> ConditionRow {
    ConditionRow {
        type_: c.type_.clone(),
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        last_transition_time: Some(c.last_transition_time.0.to_string()),
    }
}

/// The time of an Event: its series' last observation, its event time, or its creation.
pub fn event_time(e: &Event) -> Option<Timestamp> {
    e.series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or(e.event_time.as_ref().map(|t| t.0))
        .or(e.deprecated_last_timestamp.as_ref().map(|t| t.0))
        .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// ferrolb's Events about one Service, oldest first.
pub fn service_events<'a>(events: &'a [Event], namespace: &str, name: &str) -> Vec<&'a Event> {
    let mut out: Vec<&Event> = events
        .iter()
        .filter(|e| {
            e.reporting_controller
                .as_deref()
                .is_some_and(|r| r.starts_with(REPORTER_PREFIX))
        })
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("Service")
                    && r.namespace.as_deref() == Some(namespace)
                    && r.name.as_deref() == Some(name)
            })
        })
        .collect();
    out.sort_by_key(|e| event_time(e));
    out
}

fn is_load_balancer(s: &Service) -> bool {
    s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
}

fn key(s: &Service) -> (String, String) {
    (
        s.metadata.namespace.clone().unwrap_or_default(),
        s.metadata.name.clone().unwrap_or_default(),
    )
}

fn condition_of<'a>(s: &'a Service, type_: &str) -> Option<&'a Condition> {
    s.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn announced_condition(s: &Service) -> Option<&Condition> {
    condition_of(s, ANNOUNCED)
}

/// The controller's `ferrolb.io/Allocated` condition when it is False, as "reason: message".
fn allocation_failure(s: &Service) -> Option<String> {
    condition_of(s, ALLOCATED)
        .filter(|c| c.status == "False")
        .map(|c| format!("{}: {}", c.reason, c.message))
}

/// Why a Service has no address: not ferrolb's to serve, the controller's Allocated condition
/// (it outlives Events), or the latest ferrolb Event about it.
fn unallocated_reason(s: &Service, last_event: Option<String>) -> String {
    let spec = s.spec.as_ref();
    let type_ = spec.and_then(|s| s.type_.as_deref()).unwrap_or("ClusterIP");
    if type_ != "LoadBalancer" {
        return format!("type {type_}: ferrolb serves only Services of type LoadBalancer");
    }
    if let Some(c) = allocation_failure(s) {
        return c;
    }
    if let Some(e) = last_event {
        return e;
    }
    match spec.and_then(|s| s.load_balancer_class.as_deref()) {
        Some(class) => format!(
            "spec.loadBalancerClass is {class}: ferrolb serves it only when its controller runs \
             with --load-balancer-class {class}"
        ),
        None => "waiting for the controller (no ferrolb Event about it yet)".to_string(),
    }
}

fn service_row(s: &Service, events: &[Event]) -> ServiceRow {
    let (namespace, name) = key(s);
    let addresses: Vec<String> = ingress_ips(s.status.as_ref())
        .iter()
        .map(ToString::to_string)
        .collect();
    let pool = s
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ASSIGNED_POOL))
        .cloned();
    let cond = announced_condition(s);
    let announcement = cond
        .filter(|c| c.status == "True")
        .and_then(|c| parse_announced(&c.message));
    let last_event = service_events(events, &namespace, &name).last().map(|e| {
        format!(
            "{}: {}",
            e.reason.as_deref().unwrap_or(""),
            e.note.as_deref().unwrap_or("")
        )
    });
    let (state, reason) = if addresses.is_empty() {
        (State::NotAllocated, Some(unallocated_reason(s, last_event)))
    } else if announcement.is_some() {
        // Announced, but what it asked for failed (it keeps what it had): say so.
        (State::Announced, allocation_failure(s))
    } else {
        let reason = match cond {
            Some(c) => format!("{}: {}", c.reason, c.message),
            None => "no speaker has reported on it yet (no ferrolb.io/Announced condition)".into(),
        };
        (State::NotAnnounced, Some(reason))
    };
    let (node, interfaces) = match announcement {
        Some(a) => (Some(a.node), a.interfaces),
        None => (None, Vec::new()),
    };
    ServiceRow {
        namespace,
        name,
        state,
        addresses,
        pool,
        node,
        interfaces,
        reason,
    }
}

fn pool_row(p: &IPAddressPool) -> PoolRow {
    let st = p.status.clone().unwrap_or_default();
    let mut conditions: Vec<ConditionRow> = st.conditions.iter().map(condition_row).collect();
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    PoolRow {
        name: p.metadata.name.clone().unwrap_or_default(),
        addresses: p.spec.addresses.clone(),
        auto_assign: p.spec.auto_assign,
        ipv4: FamilyUse {
            used: st.assigned_ipv4,
            free: st.available_ipv4,
        },
        ipv6: FamilyUse {
            used: st.assigned_ipv6,
            free: st.available_ipv6,
        },
        conditions,
    }
}

/// The speaker pods: those labelled `app.kubernetes.io/component=speaker` by deploy/speaker.yaml.
pub const SPEAKER_POD_LABEL: &str = "app.kubernetes.io/component=speaker";

fn pod_state(p: &Pod) -> String {
    let status = p.status.as_ref();
    let phase = status
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Unknown".into());
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    format!("{phase}, {}", if ready { "ready" } else { "not ready" })
}

fn speaker_rows(
    advertisements: &[L2Advertisement],
    pods: &[Pod],
    services: &[ServiceRow],
) -> Vec<SpeakerRow> {
    let mut rows: BTreeMap<String, SpeakerRow> = BTreeMap::new();
    let blank = |node: &str| SpeakerRow {
        node: node.to_string(),
        pod: None,
        pod_state: None,
        advertisements: Vec::new(),
        interfaces: Vec::new(),
        missing_interfaces: Vec::new(),
        announcing: 0,
    };
    for adv in advertisements {
        let adv_name = adv.metadata.name.clone().unwrap_or_default();
        for n in adv.status.iter().flat_map(|s| &s.nodes) {
            let row = rows.entry(n.node.clone()).or_insert_with(|| blank(&n.node));
            if n.selected {
                row.advertisements.push(adv_name.clone());
            }
            let mut ifaces: BTreeSet<String> = row.interfaces.drain(..).collect();
            ifaces.extend(n.interfaces.iter().cloned());
            row.interfaces = ifaces.into_iter().collect();
            let mut missing: BTreeSet<String> = row.missing_interfaces.drain(..).collect();
            missing.extend(n.missing_interfaces.iter().cloned());
            row.missing_interfaces = missing.into_iter().collect();
        }
    }
    for p in pods {
        let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        let row = rows.entry(node.clone()).or_insert_with(|| blank(&node));
        row.pod = Some(format!(
            "{}/{}",
            p.metadata.namespace.as_deref().unwrap_or(""),
            p.metadata.name.as_deref().unwrap_or("")
        ));
        row.pod_state = Some(pod_state(p));
    }
    for s in services {
        if let Some(node) = &s.node {
            rows.entry(node.clone())
                .or_insert_with(|| blank(node))
                .announcing += 1;
        }
    }
    rows.into_values().collect()
}

/// Builds the report. `namespace` limits the Services (all namespaces with `None`).
pub fn report(
    pools: &[IPAddressPool],
    services: &[Service],
    events: &[Event],
    advertisements: &[L2Advertisement],
    speaker_pods: &[Pod],
    namespace: Option<&str>,
) -> Report {
    let mut pools: Vec<PoolRow> = pools.iter().map(pool_row).collect();
    pools.sort_by(|a, b| a.name.cmp(&b.name));
    let mut services: Vec<ServiceRow> = services
        .iter()
        .filter(|s| is_load_balancer(s))
        .filter(|s| namespace.is_none_or(|ns| s.metadata.namespace.as_deref() == Some(ns)))
        .map(|s| service_row(s, events))
        .collect();
    services.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let speakers = speaker_rows(advertisements, speaker_pods, &services);
    let mut advertisements: Vec<AdvertisementRow> = advertisements
        .iter()
        .map(|a| {
            let st = a.status.clone().unwrap_or_default();
            AdvertisementRow {
                name: a.metadata.name.clone().unwrap_or_default(),
                pools: a.spec.ip_address_pools.clone(),
                pool_selectors: a.spec.ip_address_pool_selectors.len(),
                interfaces: a.spec.interfaces.clone(),
                node_count: st.node_count,
                problems: st.problems,
                conditions: st.conditions.iter().map(condition_row).collect(),
            }
        })
        .collect();
    advertisements.sort_by(|a, b| a.name.cmp(&b.name));
    let mut notes = vec![MEMBERSHIP_NOTE.to_string()];
    if speaker_pods.is_empty() {
        notes.push(format!(
            "no speaker pods found (label {SPEAKER_POD_LABEL}); speakers running outside pods \
             show up through their L2Advertisement status only"
        ));
    }
    Report {
        pools,
        services,
        advertisements,
        speakers,
        notes,
    }
}

/// "5s", "3m", "2h", "4d", as kubectl prints ages.
pub fn age(then: Option<&str>, now: Timestamp) -> String {
    let Some(t) = then.and_then(|t| t.parse::<Timestamp>().ok()) else {
        return "-".into();
    };
    let secs = now.duration_since(t).as_secs().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn dash(v: Option<&str>) -> String {
    v.filter(|v| !v.is_empty()).unwrap_or("-").to_string()
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

/// A pool's conditions in one cell: the ones that are `True`, with `Ready=False` when it is not.
fn pool_conditions(p: &PoolRow) -> Cell {
    let ready = p.conditions.iter().find(|c| c.type_ == "Ready");
    let problems: Vec<&str> = p
        .conditions
        .iter()
        .filter(|c| c.type_ != "Ready" && c.status == "True")
        .map(|c| c.type_.as_str())
        .collect();
    let mut parts = Vec::new();
    match ready {
        Some(c) if c.status == "True" => parts.push("Ready".to_string()),
        Some(c) => parts.push(format!("NotReady({})", c.reason)),
        None => parts.push("NoStatus".to_string()),
    }
    parts.extend(problems.iter().map(|p| p.to_string()));
    let tone = match (ready.map(|c| c.status.as_str()), problems.is_empty()) {
        (Some("True"), true) => Tone::Good,
        (Some("True"), false) => Tone::Warn,
        _ => Tone::Bad,
    };
    Cell::tone(parts.join(","), tone)
}

fn state_cell(s: State) -> Cell {
    match s {
        State::Announced => Cell::tone("Announced", Tone::Good),
        State::NotAnnounced => Cell::tone("NotAnnounced", Tone::Warn),
        State::NotAllocated => Cell::tone("NotAllocated", Tone::Bad),
    }
}

/// The report as three tables and its notes.
pub fn render_report(r: &Report, style: Style) -> String {
    let mut out = String::from("POOLS\n");
    let rows: Vec<Vec<Cell>> = r
        .pools
        .iter()
        .map(|p| {
            let used_free =
                |f: &FamilyUse| format!("{}/{}", dash(f.used.as_deref()), dash(f.free.as_deref()));
            vec![
                Cell::plain(&p.name),
                Cell::plain(used_free(&p.ipv4)),
                Cell::plain(used_free(&p.ipv6)),
                Cell::plain(if p.auto_assign { "yes" } else { "no" }),
                pool_conditions(p),
                Cell::plain(list(&p.addresses)),
            ]
        })
        .collect();
    out.push_str(&render(
        &[
            "NAME",
            "IPV4 USED/FREE",
            "IPV6 USED/FREE",
            "AUTO",
            "CONDITIONS",
            "ADDRESSES",
        ],
        &rows,
        style,
    ));
    out.push_str("\nSERVICES\n");
    let rows: Vec<Vec<Cell>> = r
        .services
        .iter()
        .map(|s| {
            vec![
                Cell::plain(format!("{}/{}", s.namespace, s.name)),
                state_cell(s.state),
                Cell::plain(list(&s.addresses)),
                Cell::plain(dash(s.pool.as_deref())),
                Cell::plain(dash(s.node.as_deref())),
                Cell::plain(list(&s.interfaces)),
                Cell::plain(dash(s.reason.as_deref())),
            ]
        })
        .collect();
    out.push_str(&render(
        &[
            "SERVICE",
            "STATE",
            "ADDRESSES",
            "POOL",
            "NODE",
            "INTERFACES",
            "REASON",
        ],
        &rows,
        style,
    ));
    out.push_str("\nL2ADVERTISEMENTS\n");
    let rows: Vec<Vec<Cell>> = r
        .advertisements
        .iter()
        .map(|a| {
            let valid = a.conditions.iter().find(|c| c.type_ == "Valid");
            let valid = match valid {
                Some(c) if c.status == "True" => Cell::tone("Valid", Tone::Good),
                Some(c) => Cell::tone(format!("Invalid: {}", c.message), Tone::Bad),
                None => Cell::plain("-"),
            };
            let problems = match a.problems.as_deref().filter(|p| !p.is_empty()) {
                Some(p) => Cell::tone(p, Tone::Bad),
                None => Cell::plain("-"),
            };
            vec![
                Cell::plain(&a.name),
                Cell::plain(match (a.pools.is_empty(), a.pool_selectors) {
                    (true, 0) => "(all)".to_string(),
                    (true, _) => "(by selector)".to_string(),
                    (false, 0) => list(&a.pools),
                    (false, _) => format!("{},(by selector)", list(&a.pools)),
                }),
                Cell::plain(if a.interfaces.is_empty() {
                    "(auto)".to_string()
                } else {
                    list(&a.interfaces)
                }),
                Cell::plain(a.node_count.map_or("-".into(), |n| n.to_string())),
                valid,
                problems,
            ]
        })
        .collect();
    out.push_str(&render(
        &["NAME", "POOLS", "INTERFACES", "NODES", "SPEC", "PROBLEMS"],
        &rows,
        style,
    ));
    out.push_str("\nSPEAKERS\n");
    let rows: Vec<Vec<Cell>> = r
        .speakers
        .iter()
        .map(|s| {
            let missing = if s.missing_interfaces.is_empty() {
                Cell::plain("-")
            } else {
                Cell::tone(list(&s.missing_interfaces), Tone::Bad)
            };
            vec![
                Cell::plain(&s.node),
                Cell::plain(dash(s.pod.as_deref())),
                Cell::plain(dash(s.pod_state.as_deref())),
                Cell::plain(list(&s.advertisements)),
                // A selected node with no named interface uses those in the VIP's subnet.
                Cell::plain(if s.interfaces.is_empty() && !s.advertisements.is_empty() {
                    "(auto)".to_string()
                } else {
                    list(&s.interfaces)
                }),
                missing,
                Cell::plain(s.announcing.to_string()),
            ]
        })
        .collect();
    out.push_str(&render(
        &[
            "NODE",
            "POD",
            "POD STATE",
            "ADVERTISEMENTS",
            "INTERFACES",
            "MISSING",
            "ANNOUNCING",
        ],
        &rows,
        style,
    ));
    for n in &r.notes {
        out.push_str(&format!("\nnote: {n}"));
    }
    out.push('\n');
    out
}

/// The whole story of one Service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStory {
    pub namespace: String,
    pub name: String,
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub load_balancer_class: Option<String>,
    pub external_traffic_policy: Option<String>,
    pub request: Request,
    pub allocation: Allocation,
    pub announcement: AnnouncementStory,
    pub state: State,
    pub reason: Option<String>,
    pub conditions: Vec<ConditionRow>,
    pub events: Vec<EventRow>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// ferrolb's and MetalLB's annotations on the Service.
    pub annotations: BTreeMap<String, String>,
    pub addresses: Vec<String>,
    pub pool: Option<String>,
    pub sharing_key: Option<String>,
    pub ip_families: Vec<String>,
    pub ip_family_policy: Option<String>,
    /// Why the request is invalid, naming the annotation or field.
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub addresses: Vec<String>,
    pub pool: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnouncementStory {
    pub announced: bool,
    pub node: Option<String>,
    pub interfaces: Vec<String>,
    pub addresses: Vec<String>,
    pub reason: Option<String>,
    pub message: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRow {
    pub time: Option<String>,
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub reason: Option<String>,
    pub note: Option<String>,
    pub reporter: Option<String>,
    pub count: Option<i32>,
}

/// How many of the latest Events `status service` shows.
pub const EVENTS_SHOWN: usize = 20;

/// The story of `s` from its own fields and ferrolb's Events about it.
pub fn service_story(s: &Service, events: &[Event]) -> ServiceStory {
    let (namespace, name) = key(s);
    let row = service_row(s, events);
    let spec = s.spec.clone().unwrap_or_default();
    let annotations = s.metadata.annotations.clone().unwrap_or_default();
    let ours: BTreeMap<String, String> = annotations
        .iter()
        .filter(|(k, _)| {
            k.as_str() != ASSIGNED_POOL
                && ferrolb_config::service::PREFIXES
                    .iter()
                    .any(|p| k.starts_with(p))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut request = Request {
        annotations: ours,
        ip_families: spec.ip_families.clone().unwrap_or_default(),
        ip_family_policy: spec.ip_family_policy.clone(),
        ..Default::default()
    };
    match parse_intent(&annotations, spec.load_balancer_ip.as_deref()) {
        Ok(i) => {
            request.addresses = i.requested.iter().map(ToString::to_string).collect();
            request.pool = i.pool;
            request.sharing_key = i.sharing_key;
        }
        Err(e) => request.error = Some(e.to_string()),
    }
    let cond = announced_condition(s);
    let parsed = cond
        .filter(|c| c.status == "True")
        .and_then(|c| parse_announced(&c.message));
    let announcement = AnnouncementStory {
        announced: parsed.is_some(),
        node: parsed.as_ref().map(|a| a.node.clone()),
        interfaces: parsed
            .as_ref()
            .map(|a| a.interfaces.clone())
            .unwrap_or_default(),
        addresses: parsed.map(|a| a.addresses).unwrap_or_default(),
        reason: cond.map(|c| c.reason.clone()),
        message: cond.map(|c| c.message.clone()),
    };
    let conditions = s
        .status
        .as_ref()
        .and_then(|st| st.conditions.as_ref())
        .map(|c| c.iter().map(condition_row).collect())
        .unwrap_or_default();
    let all = service_events(events, &namespace, &name);
    let skip = all.len().saturating_sub(EVENTS_SHOWN);
    let events = all
        .into_iter()
        .skip(skip)
        .map(|e| EventRow {
            time: event_time(e).map(|t| t.to_string()),
            type_: e.type_.clone(),
            reason: e.reason.clone(),
            note: e.note.clone(),
            reporter: e.reporting_controller.clone(),
            count: e.series.as_ref().map(|s| s.count),
        })
        .collect();
    ServiceStory {
        namespace,
        name,
        type_: spec.type_.clone(),
        load_balancer_class: spec.load_balancer_class.clone(),
        external_traffic_policy: spec.external_traffic_policy.clone(),
        request,
        allocation: Allocation {
            addresses: row.addresses,
            pool: row.pool,
        },
        announcement,
        state: row.state,
        reason: row.reason,
        conditions,
        events,
    }
}

/// The story as text, `kubectl describe` style.
pub fn render_story(s: &ServiceStory, now: Timestamp, style: Style) -> String {
    let mut out = String::new();
    let line = |out: &mut String, k: &str, v: String| out.push_str(&format!("{k:<24}{v}\n"));
    line(&mut out, "Service:", format!("{}/{}", s.namespace, s.name));
    line(&mut out, "Type:", dash(s.type_.as_deref()));
    if let Some(c) = &s.load_balancer_class {
        line(&mut out, "LoadBalancerClass:", c.clone());
    }
    line(
        &mut out,
        "ExternalTrafficPolicy:",
        dash(s.external_traffic_policy.as_deref()),
    );
    let state = state_cell(s.state);
    out.push_str(&format!(
        "{:<24}{}\n",
        "State:",
        render(&["X"], &[vec![state]], style)
            .lines()
            .nth(1)
            .unwrap_or("")
    ));
    if let Some(r) = &s.reason {
        line(&mut out, "Reason:", r.clone());
    }
    out.push_str("Request:\n");
    line(&mut out, "  Addresses:", list(&s.request.addresses));
    line(&mut out, "  Pool:", dash(s.request.pool.as_deref()));
    line(
        &mut out,
        "  Sharing key:",
        dash(s.request.sharing_key.as_deref()),
    );
    line(&mut out, "  IP families:", list(&s.request.ip_families));
    line(
        &mut out,
        "  IP family policy:",
        dash(s.request.ip_family_policy.as_deref()),
    );
    for (k, v) in &s.request.annotations {
        line(&mut out, "  Annotation:", format!("{k}={v}"));
    }
    if let Some(e) = &s.request.error {
        line(&mut out, "  Invalid:", e.clone());
    }
    out.push_str("Allocation:\n");
    line(&mut out, "  Addresses:", list(&s.allocation.addresses));
    line(&mut out, "  Pool:", dash(s.allocation.pool.as_deref()));
    out.push_str("Announcement:\n");
    line(
        &mut out,
        "  Announced:",
        if s.announcement.announced {
            "yes"
        } else {
            "no"
        }
        .into(),
    );
    line(&mut out, "  Node:", dash(s.announcement.node.as_deref()));
    line(&mut out, "  Interfaces:", list(&s.announcement.interfaces));
    line(
        &mut out,
        "  Reason:",
        dash(s.announcement.reason.as_deref()),
    );
    line(
        &mut out,
        "  Message:",
        dash(s.announcement.message.as_deref()),
    );
    out.push_str("Conditions:\n");
    let rows: Vec<Vec<Cell>> = s
        .conditions
        .iter()
        .map(|c| {
            let tone = if c.status == "True" {
                Tone::Good
            } else {
                Tone::Bad
            };
            vec![
                Cell::plain(&c.type_),
                Cell::tone(&c.status, tone),
                Cell::plain(&c.reason),
                Cell::plain(age(c.last_transition_time.as_deref(), now)),
                Cell::plain(&c.message),
            ]
        })
        .collect();
    for l in render(
        &["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"],
        &rows,
        style,
    )
    .lines()
    {
        out.push_str(&format!("  {l}\n"));
    }
    out.push_str("Events (ferrolb):\n");
    if s.events.is_empty() {
        out.push_str("  none\n");
    } else {
        let rows: Vec<Vec<Cell>> = s
            .events
            .iter()
            .map(|e| {
                let tone = if e.type_.as_deref() == Some("Warning") {
                    Tone::Warn
                } else {
                    Tone::Plain
                };
                vec![
                    Cell::plain(age(e.time.as_deref(), now)),
                    Cell::tone(dash(e.type_.as_deref()), tone),
                    Cell::plain(dash(e.reason.as_deref())),
                    Cell::plain(dash(e.reporter.as_deref())),
                    Cell::plain(dash(e.note.as_deref())),
                ]
            })
            .collect();
        for l in render(&["AGE", "TYPE", "REASON", "FROM", "NOTE"], &rows, style).lines() {
            out.push_str(&format!("  {l}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn announced_web() -> Service {
        service(json!({
            "metadata": {"name": "web", "namespace": "default",
                "annotations": {"ferrolb.io/ip-allocated-from-pool": "lab",
                                "ferrolb.io/address-pool": "lab"}},
            "spec": {"type": "LoadBalancer", "ipFamilies": ["IPv4"]},
            "status": {
                "loadBalancer": {"ingress": [{"ip": "192.0.2.64"}]},
                "conditions": [{"type": "ferrolb.io/Announced", "status": "True",
                    "reason": "Announced", "message": "announced by node-2 on eth0 (192.0.2.64)",
                    "lastTransitionTime": "2026-01-01T00:00:00Z"}]
            }
        }))
    }

    fn event(name: &str, reason: &str, note: &str, by: &str, at: &str) -> Event {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{name}.{reason}"), "namespace": "default"},
            "eventTime": at,
            "reason": reason, "note": note, "type": "Normal",
            "reportingController": by, "reportingInstance": "x", "action": "x",
            "regarding": {"kind": "Service", "namespace": "default", "name": name}
        }))
        .unwrap()
    }

    #[test]
    fn unallocated_services_say_why() {
        let svc = |spec: serde_json::Value| {
            service(json!({"metadata": {"name": "s", "namespace": "default"}, "spec": spec}))
        };
        let failed = event(
            "s",
            "AllocationFailed",
            "no available address",
            "ferrolb-controller",
            "2026-01-01T00:00:00Z",
        );
        for (spec, events, want) in [
            (
                json!({"type": "NodePort"}),
                vec![],
                "type NodePort: ferrolb serves only Services of type LoadBalancer",
            ),
            (
                json!({"type": "LoadBalancer"}),
                vec![failed.clone()],
                "AllocationFailed: no available address",
            ),
            (
                json!({"type": "LoadBalancer", "loadBalancerClass": "other.io/lb"}),
                vec![],
                "spec.loadBalancerClass is other.io/lb: ferrolb serves it only when its controller runs with --load-balancer-class other.io/lb",
            ),
            (
                json!({"type": "LoadBalancer"}),
                vec![],
                "waiting for the controller (no ferrolb Event about it yet)",
            ),
        ] {
            let story = service_story(&svc(spec.clone()), &events);
            assert_eq!(story.state, State::NotAllocated);
            assert_eq!(story.reason.as_deref(), Some(want), "{spec}");
        }
        // The controller's Allocated condition outlives Events and comes first.
        let with_condition = service(json!({
            "metadata": {"name": "s", "namespace": "default"},
            "spec": {"type": "LoadBalancer"},
            "status": {"conditions": [{"type": "ferrolb.io/Allocated", "status": "False",
                "reason": "AllocationFailed", "message": "pool lab is exhausted",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        }));
        let story = service_story(&with_condition, std::slice::from_ref(&failed));
        assert_eq!(
            story.reason.as_deref(),
            Some("AllocationFailed: pool lab is exhausted")
        );
    }

    #[test]
    fn announced_messages_parse() {
        for (msg, node, ifaces, addrs) in [
            (
                "announced by node-2 on eth0 (192.0.2.64)",
                "node-2",
                vec!["eth0"],
                vec!["192.0.2.64"],
            ),
            (
                "announced by node-2 on eth0, eth1 (192.0.2.64, 2001:db8::1:40)",
                "node-2",
                vec!["eth0", "eth1"],
                vec!["192.0.2.64", "2001:db8::1:40"],
            ),
        ] {
            let a = parse_announced(msg).unwrap();
            assert_eq!(a.node, node);
            assert_eq!(a.interfaces, ifaces);
            assert_eq!(a.addresses, addrs);
        }
        assert_eq!(parse_announced("no eligible node"), None);
    }

    #[test]
    fn services_get_their_state_and_reason() {
        let pending = service(json!({
            "metadata": {"name": "full", "namespace": "default"},
            "spec": {"type": "LoadBalancer"}
        }));
        let unannounced = service(json!({
            "metadata": {"name": "nobody", "namespace": "team-a"},
            "spec": {"type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.65"}]},
                "conditions": [{"type": "ferrolb.io/Announced", "status": "False",
                    "reason": "NotAdvertised", "message": "no L2Advertisement covers pool lab",
                    "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        }));
        let cluster_ip = service(json!({
            "metadata": {"name": "internal", "namespace": "default"},
            "spec": {"type": "ClusterIP"}
        }));
        let events = vec![
            event(
                "full",
                "IPAllocated",
                "old",
                "ferrolb-controller",
                "2026-01-01T00:00:00Z",
            ),
            event(
                "full",
                "AllocationFailed",
                "no available address in pool lab",
                "ferrolb-controller",
                "2026-01-01T00:01:00Z",
            ),
            // Not ferrolb's: ignored.
            event(
                "full",
                "Other",
                "x",
                "kube-apiserver",
                "2026-01-01T00:02:00Z",
            ),
        ];
        let r = report(
            &[],
            &[announced_web(), pending, unannounced, cluster_ip],
            &events,
            &[],
            &[],
            None,
        );
        let got: Vec<(&str, State, Option<&str>, Option<&str>)> = r
            .services
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.state,
                    s.node.as_deref(),
                    s.reason.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "full",
                    State::NotAllocated,
                    None,
                    Some("AllocationFailed: no available address in pool lab")
                ),
                ("web", State::Announced, Some("node-2"), None),
                (
                    "nobody",
                    State::NotAnnounced,
                    None,
                    Some("NotAdvertised: no L2Advertisement covers pool lab")
                ),
            ]
        );
        assert_eq!(r.services[1].pool.as_deref(), Some("lab"));
        assert_eq!(r.services[1].interfaces, vec!["eth0"]);
        // The node announcing is counted among the speakers.
        assert_eq!(r.speakers.len(), 1);
        assert_eq!(r.speakers[0].announcing, 1);
        // -n limits the Services.
        let only = report(&[], &[announced_web()], &[], &[], &[], Some("team-a"));
        assert!(only.services.is_empty());
    }

    #[test]
    fn pools_show_use_per_family_and_conditions() {
        let pool: IPAddressPool = serde_json::from_value(json!({
            "apiVersion": "ferrolb.io/v1alpha1", "kind": "IPAddressPool",
            "metadata": {"name": "lab"},
            "spec": {"addresses": ["192.0.2.64/26"]},
            "status": {"assignedIPv4": "1", "availableIPv4": "63",
                "assignedIPv6": "0", "availableIPv6": "0",
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "Valid", "message": "",
                     "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    {"type": "Exhausted", "status": "False", "reason": "Available", "message": "",
                     "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        }))
        .unwrap();
        let r = report(&[pool], &[announced_web()], &[], &[], &[], None);
        assert_eq!(r.pools[0].ipv4.used.as_deref(), Some("1"));
        assert_eq!(r.pools[0].ipv4.free.as_deref(), Some("63"));
        let text = render_report(&r, Style { color: false });
        assert!(
            text.contains(
                "lab    1/63             0/0              yes    Ready        192.0.2.64/26"
            ),
            "{text}"
        );
        assert!(
            text.contains("default/web   Announced   192.0.2.64   lab    node-2   eth0"),
            "{text}"
        );
        // Stable machine output: the JSON round-trips.
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), r);
    }

    #[test]
    fn speakers_and_advertisements_come_from_the_advertisement_status_and_pods() {
        let adv: L2Advertisement = serde_json::from_value(json!({
            "apiVersion": "ferrolb.io/v1alpha1", "kind": "L2Advertisement",
            "metadata": {"name": "edge"},
            "spec": {"ipAddressPools": ["lab"], "interfaces": ["eth1"]},
            "status": {"nodeCount": 2, "problems": "node-2: no interface eth1",
                "nodes": [
                    {"node": "node-1", "selected": true, "interfaces": ["eth1"]},
                    {"node": "node-2", "selected": true, "missingInterfaces": ["eth1"]},
                    {"node": "node-3", "selected": false}],
                "conditions": [{"type": "Valid", "status": "True", "reason": "Valid",
                    "message": "the spec is valid", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        }))
        .unwrap();
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "ferrolb-speaker-abcde", "namespace": "ferrolb-system"},
            "spec": {"nodeName": "node-1", "containers": []},
            "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        let r = report(&[], &[announced_web()], &[], &[adv], &[pod], None);
        type Row<'a> = (&'a str, Option<&'a str>, Vec<&'a str>, Vec<&'a str>, usize);
        let got: Vec<Row> = r
            .speakers
            .iter()
            .map(|s| {
                (
                    s.node.as_str(),
                    s.pod_state.as_deref(),
                    s.advertisements.iter().map(String::as_str).collect(),
                    s.missing_interfaces.iter().map(String::as_str).collect(),
                    s.announcing,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("node-1", Some("Running, ready"), vec!["edge"], vec![], 0),
                ("node-2", None, vec!["edge"], vec!["eth1"], 1),
                ("node-3", None, vec![], vec![], 0),
            ]
        );
        assert_eq!(r.advertisements[0].node_count, Some(2));
        let text = render_report(&r, Style { color: false });
        assert!(
            text.contains("edge   lab     eth1         2       Valid   node-2: no interface eth1"),
            "{text}"
        );
        // With pods, no note about missing pods; the membership note is always there.
        assert_eq!(r.notes, vec![MEMBERSHIP_NOTE.to_string()]);
    }

    #[test]
    fn the_story_tells_request_allocation_announcement_and_events() {
        let events = vec![event(
            "web",
            "IPAllocated",
            "assigned 192.0.2.64 from pool lab",
            "ferrolb-controller",
            "2026-01-01T00:00:00Z",
        )];
        let s = service_story(&announced_web(), &events);
        assert_eq!(s.request.pool.as_deref(), Some("lab"));
        // The controller's own annotation is the allocation, not the request.
        assert_eq!(s.request.annotations.len(), 1);
        assert_eq!(s.allocation.addresses, vec!["192.0.2.64"]);
        assert_eq!(s.announcement.node.as_deref(), Some("node-2"));
        assert_eq!(s.events.len(), 1);
        let now: Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        let text = render_story(&s, now, Style { color: false });
        assert!(text.contains("  Node:                 node-2\n"), "{text}");
        assert!(text.contains("5m    Normal   IPAllocated"), "{text}");
    }

    #[test]
    fn ages_read_like_kubectl() {
        let now: Timestamp = "2026-01-03T00:00:00Z".parse().unwrap();
        for (then, want) in [
            ("2026-01-02T23:59:30Z", "30s"),
            ("2026-01-02T23:30:00Z", "30m"),
            ("2026-01-02T20:00:00Z", "4h"),
            ("2025-12-30T00:00:00Z", "4d"),
        ] {
            assert_eq!(age(Some(then), now), want);
        }
        assert_eq!(age(None, now), "-");
    }
}
