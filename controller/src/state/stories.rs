//! Stories: the decision core driven through sequences of watch events and write outcomes, with
//! the exact writes and Events asserted. No cluster, no runtime: a [`Sim`] plays the API server
//! (it keeps the objects, applies the writes that land and echoes them as watch events), as
//! MetalLB's `controller_test.go` drives `service.go` through its three-method interface.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ferrolb_config::service::ASSIGNED_POOL;
use ferrolb_crds::{IPAddressPool, IPAddressPoolSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::{Value, json};

use super::mirror::Object;
use super::*;

/// The time of day that stamps changed conditions.
const WALL: &str = "2026-12-01T00:00:00Z";

/// The decision core with a stand-in API server.
struct Sim {
    core: Core,
    t0: Instant,
    /// Seconds since `t0` of the next input.
    now: u64,
    /// The Services as the API server has them, by `namespace/name`.
    services: BTreeMap<String, Service>,
    /// The pools as the API server has them, by name.
    pools: BTreeMap<String, IPAddressPool>,
    /// The error reasons counted so far.
    errors: Vec<&'static str>,
}

/// What one action asks for, without the reference and `since` (asserted separately).
type Summary = (String, Option<StatusWrite>, Option<Event>);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| ip(s)).collect()
}

/// A LoadBalancer Service `ns/name` with extra `spec` fields, annotations and the addresses
/// its status shows.
fn service(key: &str, spec: Value, annotations: Value, shown: &[&str]) -> Service {
    let (ns, name) = key.split_once('/').unwrap();
    let mut s = json!({"type": "LoadBalancer", "ports": [{"port": 80}]});
    s.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    let ingress: Vec<Value> = shown.iter().map(|ip| json!({"ip": ip})).collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"),
                     "annotations": annotations},
        "spec": s,
        "status": {"loadBalancer": {"ingress": ingress}},
    }))
    .unwrap()
}

/// A plain LoadBalancer Service `ns/name` whose status shows nothing.
fn fresh(key: &str) -> Service {
    service(key, json!({}), json!({}), &[])
}

fn pool(name: &str, addresses: &[&str], created: &str) -> IPAddressPool {
    let mut p = IPAddressPool::new(
        name,
        IPAddressPoolSpec {
            addresses: addresses.iter().map(|s| s.to_string()).collect(),
            auto_assign: true,
            avoid_buggy_ips: false,
            service_allocation: None,
        },
    );
    p.metadata.uid = Some(format!("uid-{name}"));
    p.metadata.generation = Some(1);
    p.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
    p
}

fn namespace(name: &str) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

fn write(list: &[&str], pool: Option<&str>, annotation_changed: bool) -> Option<StatusWrite> {
    Some(StatusWrite {
        ips: ips(list),
        pool: pool.map(str::to_string),
        annotation_changed,
    })
}

fn normal(reason: &'static str, note: &str) -> Option<Event> {
    Some(Event {
        type_: EventType::Normal,
        reason,
        note: note.into(),
    })
}

fn warning(reason: &'static str, note: &str) -> Option<Event> {
    Some(Event {
        type_: EventType::Warning,
        reason,
        note: note.into(),
    })
}

/// The actions that write the status or publish an Event; those that only change the
/// `ferrolb.io/Allocated` condition are asserted with [`allocated`].
fn summary(actions: &[Action]) -> Vec<Summary> {
    actions
        .iter()
        .filter(|a| a.write.is_some() || a.event.is_some())
        .map(|a| (a.key.to_string(), a.write.clone(), a.event.clone()))
        .collect()
}

/// The `ferrolb.io/Allocated` condition changes of `actions`, as `(service, status, reason,
/// message)`; `("ns/a", "-", "", "")` for a removal.
fn allocated(actions: &[Action]) -> Vec<(String, String, String, String)> {
    actions
        .iter()
        .filter_map(|a| {
            let c = a.condition.as_ref()?;
            Some(match c {
                ConditionWrite::Set(c) => (
                    a.key.to_string(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                ),
                ConditionWrite::Remove => (a.key.to_string(), "-".into(), "".into(), "".into()),
            })
        })
        .collect()
}

/// The conditions of a pool status as `(type, status, reason, message)`.
fn conditions(status: &IPAddressPoolStatus) -> Vec<(&str, &str, &str, &str)> {
    status
        .conditions
        .iter()
        .map(|c: &Condition| {
            (
                c.type_.as_str(),
                c.status.as_str(),
                c.reason.as_str(),
                c.message.as_str(),
            )
        })
        .collect()
}

impl Sim {
    /// A controller starting against these objects: every watch lists, then the core restores.
    fn start(services: Vec<Service>, pools: Vec<IPAddressPool>, namespaces: &[&str]) -> Sim {
        Sim::start_with(services, pools, namespaces, None, &[])
    }

    /// [`Sim::start`] where the cluster-info ConfigMap names `cluster_info` (absent: `None`).
    fn start_with(
        services: Vec<Service>,
        pools: Vec<IPAddressPool>,
        namespaces: &[&str],
        cluster_info: Option<&[&str]>,
        flagged: &[&str],
    ) -> Sim {
        let mut sim = Sim {
            core: Core::new(None).with_control_plane(ips(flagged)),
            t0: Instant::now(),
            now: 0,
            services: BTreeMap::new(),
            pools: BTreeMap::new(),
            errors: Vec::new(),
        };
        let now = sim.t0;
        sim.core.input(Input::Service(Watch::Init), now);
        for s in services {
            sim.services.insert(s.key().to_string(), s.clone());
            sim.core.input(Input::Service(Watch::InitApply(s)), now);
        }
        sim.core.input(Input::Service(Watch::InitDone), now);
        assert!(
            !sim.core.synced(),
            "nothing is decided before every kind is listed"
        );
        sim.core.input(Input::Pool(Watch::Init), now);
        for p in pools {
            sim.pools.insert(p.key(), p.clone());
            sim.core.input(Input::Pool(Watch::InitApply(p)), now);
        }
        sim.core.input(Input::Pool(Watch::InitDone), now);
        sim.core.input(Input::Namespace(Watch::Init), now);
        for ns in namespaces {
            sim.core
                .input(Input::Namespace(Watch::InitApply(namespace(ns))), now);
        }
        sim.core.input(Input::Namespace(Watch::InitDone), now);
        assert!(
            !sim.core.synced(),
            "nothing is decided before cluster-info is listed (or found unreadable)"
        );
        sim.core.input(Input::ClusterInfo(Watch::Init), now);
        if let Some(addresses) = cluster_info {
            let info = ClusterInfo {
                addresses: ips(addresses),
            };
            sim.core
                .input(Input::ClusterInfo(Watch::InitApply(info)), now);
        }
        sim.core.input(Input::ClusterInfo(Watch::InitDone), now);
        assert!(sim.core.synced() && !sim.core.restored());
        sim.core.restore(now);
        assert!(sim.core.restored());
        sim
    }

    fn at(&self) -> Instant {
        self.t0 + Duration::from_secs(self.now)
    }

    /// One second later.
    fn tick(&mut self) {
        self.now += 1;
    }

    /// A Service is created or changed.
    /// As an update through the API, which cannot change the status subresource's conditions:
    /// they are kept when `svc` carries none (the stories build Services afresh).
    fn apply(&mut self, mut svc: Service) {
        let kept = self
            .services
            .get(&svc.key().to_string())
            .and_then(|s| s.status.as_ref()?.conditions.clone());
        let status = svc.status.get_or_insert_default();
        if status.conditions.is_none() {
            status.conditions = kept;
        }
        self.services.insert(svc.key().to_string(), svc.clone());
        self.core
            .input(Input::Service(Watch::Apply(svc)), self.at());
    }

    /// A Service is deleted.
    fn delete(&mut self, key: &str) {
        let svc = self.services.remove(key).unwrap();
        self.core
            .input(Input::Service(Watch::Delete(svc)), self.at());
    }

    /// A pool is created or its spec changed.
    fn apply_pool(&mut self, p: IPAddressPool) {
        self.pools.insert(p.key(), p.clone());
        self.core.input(Input::Pool(Watch::Apply(p)), self.at());
    }

    /// A pass: the decisions, summarised.
    fn decide(&mut self) -> Vec<Action> {
        let d = self.core.decide(WALL.parse().unwrap());
        self.errors.extend(d.errors);
        d.actions
    }

    /// Every write lands: the API server applies it and the watch echoes the Service.
    fn land(&mut self, actions: &[Action]) {
        for a in actions {
            let mut svc = self.services[&a.key.to_string()].clone();
            if let Some(c) = &a.condition {
                let status = svc.status.get_or_insert_default();
                let conds = status.conditions.get_or_insert_default();
                conds.retain(|x| x.type_ != ALLOCATED);
                if let ConditionWrite::Set(c) = c {
                    conds.push(c.clone());
                }
            }
            let Some(w) = &a.write else {
                self.core.service_done(&a.key, a.since, Outcome::NoWrite);
                if a.condition.is_some() {
                    self.apply(svc);
                }
                continue;
            };
            self.core.service_done(&a.key, a.since, Outcome::Written);
            let ingress = w
                .ips
                .iter()
                .map(|ip| json!({"ip": ip.to_string(), "ipMode": "VIP"}))
                .collect::<Vec<_>>();
            svc.status.get_or_insert_default().load_balancer =
                serde_json::from_value(json!({"ingress": ingress})).unwrap();
            let annotations = svc.metadata.annotations.get_or_insert_default();
            match &w.pool {
                Some(p) => annotations.insert(ASSIGNED_POOL.into(), p.clone()),
                None => annotations.remove(ASSIGNED_POOL),
            };
            self.apply(svc);
        }
    }

    /// Every write of `actions` fails.
    fn fail(&mut self, actions: &[Action]) {
        for a in actions {
            let outcome = if a.write.is_some() || a.condition.is_some() {
                Outcome::Failed
            } else {
                Outcome::NoWrite
            };
            self.core.service_done(&a.key, a.since, outcome);
        }
    }

    /// Ends the pass; the pool writes land.
    fn finish(&mut self) -> Option<PoolWrites> {
        self.finish_at(WALL)
    }

    /// Ends the pass at time of day `wall`; the pool writes land.
    fn finish_at(&mut self, wall: &str) -> Option<PoolWrites> {
        let out = self.core.finish(self.at(), wall.parse().unwrap())?;
        for (name, status) in &out.writes {
            let p = self.pools.get_mut(name).unwrap();
            p.status = Some(status.clone());
            let p = p.clone();
            self.core.input(Input::Pool(Watch::Apply(p)), self.at());
        }
        Some(out)
    }

    /// A whole pass whose writes all land; returns its decisions.
    fn pass(&mut self) -> Vec<Summary> {
        let actions = self.decide();
        self.land(&actions);
        self.finish();
        summary(&actions)
    }
}

/// A first address, the pool's status, then quiet: nothing is written twice.
#[test]
fn a_new_service_gets_the_lowest_free_address_once() {
    let mut sim = Sim::start(
        vec![],
        vec![pool("p", &["192.0.2.0/30"], "2026-01-01T00:00:00Z")],
        &["ns"],
    );
    assert_eq!(sim.decide(), vec![]);
    let pools = sim.finish().unwrap();
    assert_eq!(pools.writes.len(), 1);
    sim.tick();
    sim.apply(fresh("ns/a"));
    let actions = sim.decide();
    assert_eq!(
        summary(&actions),
        vec![(
            "ns/a".into(),
            write(&["192.0.2.0"], Some("p"), true),
            normal("IPAllocated", "assigned 192.0.2.0 from pool p"),
        )]
    );
    // The Event names the Service as kube would, and latency runs from when it was seen.
    assert_eq!(actions[0].reference, object_ref(&sim.services["ns/a"]));
    assert_eq!(actions[0].since, sim.t0 + Duration::from_secs(1));
    sim.land(&actions);
    let pools = sim.finish().unwrap();
    assert_eq!(
        pools.gauges,
        vec![
            PoolGauge {
                pool: "p".into(),
                family: ferrolb_allocator::Family::V4,
                size: 4,
                in_use: 1
            },
            PoolGauge {
                pool: "p".into(),
                family: ferrolb_allocator::Family::V6,
                size: 0,
                in_use: 0
            },
        ]
    );
    let [(name, status)] = &pools.writes[..] else {
        panic!("{:?}", pools.writes)
    };
    assert_eq!(name, "p");
    assert_eq!(
        (
            status.assigned.as_deref(),
            status.available.as_deref(),
            status.assigned_ipv4.as_deref(),
            status.available_ipv4.as_deref(),
            status.observed_generation,
        ),
        (Some("1"), Some("3"), Some("1"), Some("3"), Some(1))
    );
    assert_eq!(
        conditions(status),
        vec![
            ("Invalid", "False", "Valid", "the spec is valid"),
            (
                "Overlapping",
                "False",
                "NoOverlap",
                "no address is also in an older pool"
            ),
            ("Exhausted", "False", "AddressesFree", "addresses are free"),
            ("Ready", "True", "Ready", "the pool hands out addresses"),
        ]
    );
    // The echo of the write and of the pool status change nothing.
    assert_eq!(sim.pass(), vec![]);
    assert_eq!(sim.finish(), None);
    assert!(!sim.core.pending());
    assert_eq!(sim.errors, Vec::<&str>::new());
}

/// A restarted controller adopts what the statuses show: nothing moves, a status without the
/// pool annotation only gets the annotation, and new Services get what nobody shows.
#[test]
fn restart_adopts_the_addresses_statuses_show() {
    let p = json!({ASSIGNED_POOL: "p"});
    let mut sim = Sim::start(
        vec![
            service("ns/a", json!({}), p.clone(), &["192.0.2.2"]),
            service("ns/b", json!({}), json!({}), &["192.0.2.0"]),
            fresh("ns/c"),
        ],
        vec![pool("p", &["192.0.2.0/30"], "2026-01-01T00:00:00Z")],
        &["ns"],
    );
    assert_eq!(
        sim.pass(),
        vec![
            ("ns/b".into(), write(&["192.0.2.0"], Some("p"), true), None),
            (
                "ns/c".into(),
                write(&["192.0.2.1"], Some("p"), true),
                normal("IPAllocated", "assigned 192.0.2.1 from pool p"),
            ),
        ]
    );
    assert_eq!(sim.pass(), vec![]);
}

/// A write that fails is retried after RETRY with the same decision and its Event again (the
/// first Event was never published), and latency still runs from the first sight.
#[test]
fn a_failed_write_is_retried_with_its_event() {
    let mut sim = Sim::start(
        vec![fresh("ns/a")],
        vec![pool("p", &["192.0.2.0/30"], "2026-01-01T00:00:00Z")],
        &["ns"],
    );
    let first = sim.decide();
    assert_eq!(
        summary(&first),
        vec![(
            "ns/a".into(),
            write(&["192.0.2.0"], Some("p"), true),
            normal("IPAllocated", "assigned 192.0.2.0 from pool p"),
        )]
    );
    sim.fail(&first);
    sim.finish();
    assert!(sim.core.pending(), "the runtime must come back after RETRY");
    sim.tick();
    // The retry pass (no watch event).
    let again = sim.decide();
    assert_eq!(again, first);
    sim.land(&again);
    sim.finish();
    assert_eq!(sim.pass(), vec![]);
    assert!(!sim.core.pending());
}

/// A pool shrinks under a Service: its address leaves every pool and nothing replaces it, so
/// it is released and held until the status stops showing it. The clearing write fails; the
/// pool grows back meanwhile: a new Service does not get the held address, and the Service
/// keeps it (what it is releasing itself is free to it), with nothing written.
#[test]
fn pool_shrink_holds_the_released_address_until_the_status_drops_it() {
    let p = json!({ASSIGNED_POOL: "p"});
    let mut sim = Sim::start(
        vec![
            service("ns/a", json!({}), p.clone(), &["192.0.2.0"]),
            service("ns/b", json!({}), p.clone(), &["192.0.2.1"]),
        ],
        vec![pool("p", &["192.0.2.0/30"], "2026-01-01T00:00:00Z")],
        &["ns"],
    );
    assert_eq!(sim.pass(), vec![]);
    sim.tick();
    sim.apply_pool(pool("p", &["192.0.2.0/32"], "2026-01-01T00:00:00Z"));
    let shrink = sim.decide();
    assert_eq!(
        summary(&shrink),
        vec![(
            "ns/b".into(),
            write(&[], None, true),
            warning(
                "IPReleased",
                "released 192.0.2.1: it left every address pool and no other address is \
                 available (every pool this service may use is out of IPv4 addresses)"
            ),
        )]
    );
    assert_eq!(sim.errors, vec!["Exhausted"]);
    sim.fail(&shrink);
    sim.finish();
    sim.tick();
    sim.apply_pool(pool("p", &["192.0.2.0/30"], "2026-01-01T00:00:00Z"));
    sim.apply(fresh("ns/c"));
    assert_eq!(
        sim.pass(),
        vec![(
            "ns/c".into(),
            write(&["192.0.2.2"], Some("p"), true),
            normal("IPAllocated", "assigned 192.0.2.2 from pool p"),
        )]
    );
    assert_eq!(sim.pass(), vec![]);
    assert!(!sim.core.pending());
}

/// The same shrink when the clearing write lands: the hold ends with it, and the address goes to
/// the next Service that needs one.
#[test]
fn a_landed_clearing_write_frees_the_held_address() {
    let p = json!({ASSIGNED_POOL: "p"});
    let mut sim = Sim::start(
        vec![
            service("ns/a", json!({}), p.clone(), &["192.0.2.0"]),
            service("ns/b", json!({}), p.clone(), &["192.0.2.1"]),
        ],
        vec![pool("p", &["192.0.2.0/30"], "2026-01-01T00:00:00Z")],
        &["ns"],
    );
    sim.apply_pool(pool("p", &["192.0.2.0/32"], "2026-01-01T00:00:00Z"));
    assert_eq!(sim.pass().len(), 1);
    // b waits; its status shows nothing now.
    assert!(sim.services["ns/b"].ips().is_empty());
    sim.apply_pool(pool("p", &["192.0.2.0/31"], "2026-01-01T00:00:00Z"));
    assert_eq!(
        sim.pass(),
        vec![(
            "ns/b".into(),
            write(&["192.0.2.1"], Some("p"), true),
            normal("IPAllocated", "assigned 192.0.2.1 from pool p"),
        )]
    );
}

/// A Service leaving the class releases its address, which is held while its status still
/// shows it: a Service decided in the same pass gets another one; the failed clearing write is
/// retried with its Event; once it lands, the address is free again.
#[test]
fn a_service_leaving_the_class_releases_through_a_hold() {
    let p = json!({ASSIGNED_POOL: "p"});
    let mut sim = Sim::start(
        vec![service("ns/a", json!({}), p.clone(), &["192.0.2.0"])],
        vec![pool("p", &["192.0.2.0/30"], "2026-01-01T00:00:00Z")],
        &["ns"],
    );
    assert_eq!(sim.pass(), vec![]);
    sim.tick();
    sim.apply(service(
        "ns/a",
        json!({"type": "ClusterIP"}),
        p.clone(),
        &["192.0.2.0"],
    ));
    sim.apply(fresh("ns/b"));
    let released = (
        "ns/a".to_string(),
        write(&[], None, true),
        normal(
            "IPReleased",
            "released 192.0.2.0 (no longer a LoadBalancer Service of this class)",
        ),
    );
    let actions = sim.decide();
    assert_eq!(
        summary(&actions),
        vec![
            released.clone(),
            (
                "ns/b".into(),
                write(&["192.0.2.1"], Some("p"), true),
                normal("IPAllocated", "assigned 192.0.2.1 from pool p"),
            ),
        ]
    );
    // a's write fails, b's lands.
    sim.fail(&actions[..1]);
    sim.land(&actions[1..]);
    sim.finish();
    sim.tick();
    sim.apply(fresh("ns/c"));
    let actions = sim.decide();
    assert_eq!(
        summary(&actions),
        vec![
            released,
            (
                "ns/c".into(),
                write(&["192.0.2.2"], Some("p"), true),
                normal("IPAllocated", "assigned 192.0.2.2 from pool p"),
            ),
        ]
    );
    sim.land(&actions);
    sim.finish();
    sim.apply(fresh("ns/d"));
    assert_eq!(
        sim.pass(),
        vec![(
            "ns/d".into(),
            write(&["192.0.2.0"], Some("p"), true),
            normal("IPAllocated", "assigned 192.0.2.0 from pool p"),
        )]
    );
}

/// A Service asks for another address: it moves, and one asking for its old address in the same
/// pass is told who still shows it, in the words users have always seen.
#[test]
fn a_moved_address_is_held_and_named_in_the_refusal() {
    let p = json!({ASSIGNED_POOL: "p"});
    let mut sim = Sim::start(
        vec![service("ns/a", json!({}), p.clone(), &["192.0.2.0"])],
        vec![pool("p", &["192.0.2.0/30"], "2026-01-01T00:00:00Z")],
        &["ns"],
    );
    sim.apply(service(
        "ns/a",
        json!({"loadBalancerIP": "192.0.2.2"}),
        p.clone(),
        &["192.0.2.0"],
    ));
    sim.apply(service(
        "ns/b",
        json!({"loadBalancerIP": "192.0.2.0"}),
        json!({}),
        &[],
    ));
    let actions = sim.decide();
    assert_eq!(
        summary(&actions),
        vec![
            (
                "ns/a".into(),
                write(&["192.0.2.2"], Some("p"), false),
                warning(
                    "IPReassigned",
                    "now 192.0.2.2 from pool p: released 192.0.2.0: the service now requests \
                     192.0.2.2"
                ),
            ),
            (
                "ns/b".into(),
                None,
                warning(
                    "AllocationFailed",
                    "address 192.0.2.0 is already used by service ns/a (which released \
                     192.0.2.0; its status still shows it); choose another address, or give \
                     both services the same sharing key"
                ),
            ),
        ]
    );
    assert_eq!(sim.errors, vec!["AddressInUse"]);
    // a's write lands: the hold ends and b, waiting, gets the address in the next pass.
    sim.land(&actions);
    sim.finish();
    assert!(sim.core.pending());
    assert_eq!(
        sim.pass(),
        vec![(
            "ns/b".into(),
            write(&["192.0.2.0"], Some("p"), true),
            normal("IPAllocated", "assigned 192.0.2.0 from pool p"),
        )]
    );
}

/// Services waiting for a free address get one when another Service is deleted; the refusal
/// is published once, not at every pass.
#[test]
fn a_waiting_service_gets_the_address_of_a_deleted_one() {
    let p = json!({ASSIGNED_POOL: "p"});
    let mut sim = Sim::start(
        vec![service("ns/a", json!({}), p.clone(), &["192.0.2.7"])],
        vec![pool("p", &["192.0.2.7/32"], "2026-01-01T00:00:00Z")],
        &["ns"],
    );
    assert_eq!(sim.pass(), vec![]);
    sim.apply(fresh("ns/b"));
    let refused = vec![(
        "ns/b".to_string(),
        None,
        warning(
            "AllocationFailed",
            "every pool this service may use is out of IPv4 addresses",
        ),
    )];
    assert_eq!(sim.pass(), refused);
    // Changed but still refused: no second Event.
    sim.apply(service(
        "ns/b",
        json!({"ports": [{"port": 81}]}),
        json!({}),
        &[],
    ));
    assert_eq!(sim.pass(), vec![]);
    assert_eq!(sim.errors, vec!["Exhausted", "Exhausted"]);
    sim.delete("ns/a");
    assert_eq!(sim.pass(), vec![], "the deletion frees the address");
    assert!(sim.core.pending());
    assert_eq!(
        sim.pass(),
        vec![(
            "ns/b".into(),
            write(&["192.0.2.7"], Some("p"), true),
            normal("IPAllocated", "assigned 192.0.2.7 from pool p"),
        )]
    );
}

/// Services with one sharing key on disjoint ports share an address; one on a port in use
/// gets its own; the shared address outlives one sharer and counts once in the pool.
#[test]
fn sharing_services_share_one_address() {
    let shared = json!({"ferrolb.io/allow-shared-ip": "k"});
    let mut sim = Sim::start(
        vec![],
        vec![pool("p", &["192.0.2.0/30"], "2026-01-01T00:00:00Z")],
        &["ns"],
    );
    sim.pass();
    sim.apply(service(
        "ns/dns",
        json!({"ports": [{"port": 53, "protocol": "UDP"}]}),
        shared.clone(),
        &[],
    ));
    sim.apply(service(
        "ns/web",
        json!({"ports": [{"port": 80}]}),
        shared.clone(),
        &[],
    ));
    sim.apply(service(
        "ns/www",
        json!({"ports": [{"port": 80}]}),
        shared.clone(),
        &[],
    ));
    let actions = sim.decide();
    assert_eq!(
        summary(&actions),
        vec![
            (
                "ns/dns".into(),
                write(&["192.0.2.0"], Some("p"), true),
                normal("IPAllocated", "assigned 192.0.2.0 from pool p"),
            ),
            (
                "ns/web".into(),
                write(&["192.0.2.0"], Some("p"), true),
                normal("IPAllocated", "assigned 192.0.2.0 from pool p"),
            ),
            (
                "ns/www".into(),
                write(&["192.0.2.1"], Some("p"), true),
                normal("IPAllocated", "assigned 192.0.2.1 from pool p"),
            ),
        ]
    );
    sim.land(&actions);
    let pools = sim.finish().unwrap();
    assert_eq!(pools.writes[0].1.assigned.as_deref(), Some("2"));
    sim.delete("ns/dns");
    assert_eq!(sim.pass(), vec![]);
    sim.apply(fresh("ns/alone"));
    assert_eq!(
        sim.pass(),
        vec![(
            "ns/alone".into(),
            write(&["192.0.2.2"], Some("p"), true),
            normal("IPAllocated", "assigned 192.0.2.2 from pool p"),
        )]
    );
}

/// A RequireDualStack Service gets both families; when its IPv6 range leaves the pool and no
/// other IPv6 address exists, it keeps its IPv4 address and waits for an IPv6 one.
#[test]
fn require_dual_stack_keeps_its_other_family() {
    let mut sim = Sim::start(
        vec![],
        vec![pool(
            "p",
            &["192.0.2.0/30", "2001:db8::/126"],
            "2026-01-01T00:00:00Z",
        )],
        &["ns"],
    );
    sim.pass();
    sim.apply(service(
        "ns/d",
        json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"]}),
        json!({}),
        &[],
    ));
    assert_eq!(
        sim.pass(),
        vec![(
            "ns/d".into(),
            write(&["192.0.2.0", "2001:db8::"], Some("p"), true),
            normal("IPAllocated", "assigned 192.0.2.0, 2001:db8:: from pool p"),
        )]
    );
    sim.apply_pool(pool("p", &["192.0.2.0/30"], "2026-01-01T00:00:00Z"));
    assert_eq!(
        sim.pass(),
        vec![(
            "ns/d".into(),
            write(&["192.0.2.0"], Some("p"), false),
            warning(
                "IPReleased",
                "released 2001:db8::: it left every address pool and no other address is \
                 available (RequireDualStack needs an IPv6 address, but no pool this service \
                 may use has IPv6 addresses); keeps 192.0.2.0"
            ),
        )]
    );
    assert_eq!(sim.errors, vec!["NoPoolForFamily"]);
    // The IPv6 range comes back: the missing family is added, the IPv4 address stays.
    sim.apply_pool(pool(
        "p",
        &["192.0.2.0/30", "2001:db8::/126"],
        "2026-01-01T00:00:00Z",
    ));
    assert_eq!(
        sim.pass(),
        vec![(
            "ns/d".into(),
            write(&["192.0.2.0", "2001:db8::"], Some("p"), false),
            normal("IPAllocated", "assigned 192.0.2.0, 2001:db8:: from pool p"),
        )]
    );
}

/// An invalid pool gets the Invalid condition and is not used; a valid pool that becomes
/// invalid keeps serving with its last valid spec and says so.
#[test]
fn an_invalid_pool_gets_the_invalid_condition() {
    let mut sim = Sim::start(
        vec![fresh("ns/a")],
        vec![
            pool("bad", &["192.0.2.9-192.0.2.1"], "2026-01-01T00:00:00Z"),
            pool("good", &["192.0.2.16/30"], "2026-01-02T00:00:00Z"),
        ],
        &["ns"],
    );
    let actions = sim.decide();
    assert_eq!(
        summary(&actions),
        vec![(
            "ns/a".into(),
            write(&["192.0.2.16"], Some("good"), true),
            normal("IPAllocated", "assigned 192.0.2.16 from pool good"),
        )]
    );
    sim.land(&actions);
    let pools = sim.finish().unwrap();
    let bad_message = "spec.addresses[0]: \"192.0.2.9-192.0.2.1\": range start 192.0.2.9 is above its end \
         192.0.2.1";
    let (name, status) = &pools.writes[0];
    assert_eq!(name, "bad");
    assert_eq!(
        conditions(status),
        vec![
            ("Invalid", "True", "InvalidSpec", bad_message),
            (
                "Ready",
                "False",
                "InvalidSpec",
                "the pool is not used until its spec is fixed"
            ),
        ]
    );
    assert_eq!(
        (status.assigned.as_ref(), status.available.as_ref()),
        (None, None)
    );
    let stamp: Timestamp = WALL.parse().unwrap();
    assert!(
        status
            .conditions
            .iter()
            .all(|c| c.last_transition_time.0 == stamp)
    );
    // No gauges for a pool that is not used.
    assert!(pools.gauges.iter().all(|g| g.pool == "good"));
    // "good" breaks: it keeps serving, and a keeps its address.
    sim.apply_pool(pool(
        "good",
        &["192.0.2.16-192.0.2.1"],
        "2026-01-02T00:00:00Z",
    ));
    assert_eq!(sim.decide(), vec![]);
    let pools = sim.finish().unwrap();
    let good = &pools.writes.iter().find(|(n, _)| n == "good").unwrap().1;
    assert_eq!(
        conditions(good)[0],
        (
            "Invalid",
            "True",
            "InvalidSpec",
            "spec.addresses[0]: \"192.0.2.16-192.0.2.1\": range start 192.0.2.16 is above \
             its end 192.0.2.1; the pool keeps serving with its last valid spec until this is \
             fixed"
        )
    );
    assert_eq!(good.assigned.as_deref(), Some("1"));
}

/// A pool's conditions follow the API conventions: a condition's lastTransitionTime moves only
/// when its status changes, not when its message does or another condition changes.
#[test]
fn a_pool_condition_keeps_its_transition_time_while_its_status_holds() {
    let mut sim = Sim::start(
        vec![fresh("ns/a")],
        vec![pool("p", &["192.0.2.0/31"], "2026-01-01T00:00:00Z")],
        &["ns"],
    );
    sim.pass();
    let later = "2026-12-01T01:00:00Z";
    sim.tick();
    sim.apply(fresh("ns/b"));
    let actions = sim.decide();
    sim.land(&actions);
    let pools = sim.finish_at(later).unwrap();
    let (_, status) = &pools.writes[0];
    let stamps: Vec<(&str, &str, String)> = status
        .conditions
        .iter()
        .map(|c| {
            (
                c.type_.as_str(),
                c.status.as_str(),
                c.last_transition_time.0.to_string(),
            )
        })
        .collect();
    assert_eq!(
        stamps,
        vec![
            ("Invalid", "False", WALL.into()),
            ("Overlapping", "False", WALL.into()),
            ("Exhausted", "True", later.into()),
            ("Ready", "True", WALL.into()),
        ]
    );
}

/// A Service seen before its Namespace waits for it (the Namespace's labels may decide the
/// pool), and is retried meanwhile.
#[test]
fn a_service_waits_for_its_namespace() {
    let mut sim = Sim::start(
        vec![fresh("late/a")],
        vec![pool("p", &["192.0.2.0/30"], "2026-01-01T00:00:00Z")],
        &["ns"],
    );
    assert_eq!(sim.pass(), vec![]);
    assert!(sim.core.pending());
    assert_eq!(sim.pass(), vec![]);
    sim.core
        .input(Input::Namespace(Watch::Apply(namespace("late"))), sim.at());
    assert_eq!(
        sim.pass(),
        vec![(
            "late/a".into(),
            write(&["192.0.2.0"], Some("p"), true),
            normal("IPAllocated", "assigned 192.0.2.0 from pool p"),
        )]
    );
}

/// Two statuses claim one address at a restart (say, restored from a backup): the older
/// Service keeps it, the younger gets another one, and nothing else moves.
#[test]
fn restart_gives_a_doubly_claimed_address_to_the_older_service() {
    let p = json!({ASSIGNED_POOL: "p"});
    let created = |mut s: Service, at: &str| {
        s.metadata.creation_timestamp = Some(Time(at.parse().unwrap()));
        s
    };
    let mut sim = Sim::start(
        vec![
            // Listed first, but younger.
            created(
                service("ns/a", json!({}), p.clone(), &["192.0.2.0"]),
                "2026-03-01T00:00:00Z",
            ),
            created(
                service("ns/b", json!({}), p.clone(), &["192.0.2.0"]),
                "2026-02-01T00:00:00Z",
            ),
            created(
                service("ns/c", json!({}), p.clone(), &["192.0.2.1"]),
                "2026-04-01T00:00:00Z",
            ),
        ],
        vec![pool("p", &["192.0.2.0/30"], "2026-01-01T00:00:00Z")],
        &["ns"],
    );
    assert_eq!(
        sim.pass(),
        vec![(
            "ns/a".into(),
            write(&["192.0.2.2"], Some("p"), false),
            normal("IPAllocated", "assigned 192.0.2.2 from pool p"),
        )]
    );
    assert_eq!(sim.pass(), vec![]);
}

/// A valid pool edited so that its entries overlap is refused like any invalid edit: the
/// Invalid condition names the entry, and the pool keeps serving with its last valid spec, so
/// no Service loses or moves its address. A pool that overlaps itself from the start is not
/// used at all.
#[test]
fn a_pool_whose_entries_overlap_is_invalid_and_moves_nothing() {
    let mut sim = Sim::start(
        vec![fresh("ns/a")],
        vec![pool("p", &["192.0.2.64/26"], "2026-01-01T00:00:00Z")],
        &["ns"],
    );
    assert_eq!(
        sim.pass(),
        vec![(
            "ns/a".into(),
            write(&["192.0.2.64"], Some("p"), true),
            normal("IPAllocated", "assigned 192.0.2.64 from pool p"),
        )]
    );
    sim.tick();
    sim.apply_pool(pool(
        "p",
        &["192.0.2.64/26", "192.0.2.70-192.0.2.80"],
        "2026-01-01T00:00:00Z",
    ));
    assert_eq!(sim.decide(), vec![]);
    let pools = sim.finish().unwrap();
    let (_, status) = &pools.writes[0];
    assert_eq!(
        conditions(status)[0],
        (
            "Invalid",
            "True",
            "InvalidSpec",
            "spec.addresses[1]: \"192.0.2.70-192.0.2.80\" overlaps spec.addresses[0] \
             (\"192.0.2.64/26\"); list each address once; the pool keeps serving with its last \
             valid spec until this is fixed"
        )
    );
    assert_eq!(status.assigned.as_deref(), Some("1"));
    // A new Service still gets an address from the last valid spec.
    sim.apply(fresh("ns/b"));
    assert_eq!(
        sim.pass(),
        vec![(
            "ns/b".into(),
            write(&["192.0.2.65"], Some("p"), true),
            normal("IPAllocated", "assigned 192.0.2.65 from pool p"),
        )]
    );
    // The same CIDR twice in a new pool: not used.
    sim.apply_pool(pool(
        "twice",
        &["192.0.2.0/28", "192.0.2.0/28"],
        "2026-01-02T00:00:00Z",
    ));
    assert_eq!(sim.decide(), vec![]);
    let pools = sim.finish().unwrap();
    let twice = &pools.writes.iter().find(|(n, _)| n == "twice").unwrap().1;
    assert_eq!(
        conditions(twice)[0],
        (
            "Invalid",
            "True",
            "InvalidSpec",
            "spec.addresses[1]: \"192.0.2.0/28\" overlaps spec.addresses[0] (\"192.0.2.0/28\"); \
             list each address once"
        )
    );
}

/// Upgrading the controller while a pool's entries overlap (earlier versions merged them): at
/// start there is no last valid spec, so the pool is served as before and reported Invalid, and
/// its Services keep their addresses.
#[test]
fn an_upgrade_keeps_a_pool_whose_entries_overlap_serving() {
    let p = json!({ASSIGNED_POOL: "p"});
    let mut sim = Sim::start(
        vec![
            service("ns/a", json!({}), p.clone(), &["192.0.2.70"]),
            service("ns/b", json!({}), p, &["192.0.2.130"]),
        ],
        vec![pool(
            "p",
            &["192.0.2.64/26", "192.0.2.70-192.0.2.80", "192.0.2.128/30"],
            "2026-01-01T00:00:00Z",
        )],
        &["ns"],
    );
    assert_eq!(sim.pass(), vec![]);
    sim.apply(fresh("ns/c"));
    assert_eq!(
        sim.pass(),
        vec![(
            "ns/c".into(),
            write(&["192.0.2.64"], Some("p"), true),
            normal("IPAllocated", "assigned 192.0.2.64 from pool p"),
        )]
    );
    let status = sim.pools["p"].status.clone().unwrap();
    assert_eq!(
        conditions(&status)[0],
        (
            "Invalid",
            "True",
            "InvalidSpec",
            "spec.addresses[1]: \"192.0.2.70-192.0.2.80\" overlaps spec.addresses[0] \
             (\"192.0.2.64/26\"); list each address once; the pool keeps serving with its last \
             valid spec until this is fixed"
        )
    );
    assert_eq!(status.assigned.as_deref(), Some("3"));
}

/// kube-vip's `kube-vip.io/loadbalancerIPs` asks for an address as ferrolb's own annotation
/// does; the two disagreeing is refused with an Event naming both, and the Service keeps what
/// it holds.
#[test]
fn kube_vips_annotation_requests_an_address() {
    let kv = |ip: &str| json!({"kube-vip.io/loadbalancerIPs": ip});
    let mut sim = Sim::start(
        vec![service("ns/a", json!({}), kv("192.0.2.70"), &[])],
        vec![pool("p", &["192.0.2.64/26"], "2026-01-01T00:00:00Z")],
        &["ns"],
    );
    assert_eq!(
        sim.pass(),
        vec![(
            "ns/a".into(),
            write(&["192.0.2.70"], Some("p"), true),
            normal("IPAllocated", "assigned 192.0.2.70 from pool p"),
        )]
    );
    sim.tick();
    let mut svc = sim.services["ns/a"].clone();
    svc.metadata
        .annotations
        .get_or_insert_default()
        .insert("ferrolb.io/loadBalancerIPs".into(), "192.0.2.71".into());
    sim.apply(svc);
    assert_eq!(
        sim.pass(),
        vec![(
            "ns/a".into(),
            None,
            warning(
                "AllocationFailed",
                "annotations ferrolb.io/loadBalancerIPs and kube-vip.io/loadbalancerIPs disagree \
                 (\"192.0.2.71\" vs \"192.0.2.70\"); keep one"
            ),
        )]
    );
    assert_eq!(sim.services["ns/a"].ips(), ips(&["192.0.2.70"]));
}

/// Taking over from MetalLB: Services whose status holds an address MetalLB assigned, with the
/// annotations exactly as MetalLB writes them (`metallb.universe.tf/` before v0.15,
/// `metallb.io/` since), keep exactly that address when it lies in a ferrolb pool, whatever the
/// MetalLB pool was called; only ferrolb's pool annotation is added, no Event. MetalLB's
/// requested-address annotations keep being honoured.
#[test]
fn metallb_addresses_are_adopted_at_take_over() {
    let dual = json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"]});
    let mut sim = Sim::start(
        vec![
            service(
                "ns/old",
                json!({}),
                json!({"metallb.universe.tf/ip-allocated-from-pool": "metallb-pool"}),
                &["192.0.2.90"],
            ),
            service(
                "ns/new",
                json!({}),
                json!({"metallb.io/ip-allocated-from-pool": "metallb-pool"}),
                &["192.0.2.64"],
            ),
            service(
                "ns/asked",
                json!({}),
                json!({"metallb.universe.tf/ip-allocated-from-pool": "metallb-pool",
                       "metallb.universe.tf/loadBalancerIPs": "192.0.2.100"}),
                &["192.0.2.100"],
            ),
            service(
                "ns/asked-new",
                dual,
                json!({"metallb.io/ip-allocated-from-pool": "metallb-pool",
                       "metallb.io/loadBalancerIPs": "192.0.2.101,2001:db8::1:65"}),
                &["192.0.2.101", "2001:db8::1:65"],
            ),
        ],
        vec![pool(
            "lab",
            &["192.0.2.64/26", "2001:db8::1:0/112"],
            "2026-01-01T00:00:00Z",
        )],
        &["ns"],
    );
    // Keys in order: asked, asked-new, new, old.
    assert_eq!(
        sim.pass(),
        vec![
            (
                "ns/asked".into(),
                write(&["192.0.2.100"], Some("lab"), true),
                None
            ),
            (
                "ns/asked-new".into(),
                write(&["192.0.2.101", "2001:db8::1:65"], Some("lab"), true),
                None
            ),
            (
                "ns/new".into(),
                write(&["192.0.2.64"], Some("lab"), true),
                None
            ),
            (
                "ns/old".into(),
                write(&["192.0.2.90"], Some("lab"), true),
                None
            ),
        ]
    );
    assert_eq!(sim.pass(), vec![]);
    // A new Service gets none of the adopted addresses.
    sim.apply(fresh("ns/next"));
    assert_eq!(
        sim.pass(),
        vec![(
            "ns/next".into(),
            write(&["192.0.2.65"], Some("lab"), true),
            normal("IPAllocated", "assigned 192.0.2.65 from pool lab"),
        )]
    );
}

/// Every Service ferrolb handles carries a `ferrolb.io/Allocated` condition, since Events
/// expire: True with its addresses and pool, False with the Event's reason and why (and what
/// it keeps meanwhile). It is written with the status when that changes, alone otherwise (a
/// Service restored from an earlier version), only when it changes, and removed when the
/// Service is no longer ferrolb's. The Events stay as they were.
#[test]
fn each_service_shows_its_allocation_as_a_condition() {
    let p = json!({ASSIGNED_POOL: "p"});
    let mut sim = Sim::start(
        vec![service("ns/old", json!({}), p, &["192.0.2.0"])],
        vec![pool("p", &["192.0.2.0/31"], "2026-01-01T00:00:00Z")],
        &["ns"],
    );
    // Restored from an earlier version: the condition alone.
    let actions = sim.decide();
    assert_eq!(summary(&actions), vec![]);
    assert_eq!(
        allocated(&actions),
        vec![(
            "ns/old".into(),
            "True".into(),
            "IPAllocated".into(),
            "192.0.2.0 from pool p".into()
        )]
    );
    let ConditionWrite::Set(c) = actions[0].condition.clone().unwrap() else {
        panic!()
    };
    assert_eq!(c.type_, ALLOCATED);
    assert_eq!(c.last_transition_time.0, WALL.parse::<Timestamp>().unwrap());
    sim.land(&actions);
    sim.finish();
    assert_eq!(sim.pass(), vec![]);
    assert_eq!(allocated(&sim.decide()), vec![], "written once");

    // A new Service: the condition goes with the status write, the Event stays.
    sim.tick();
    sim.apply(fresh("ns/a"));
    let actions = sim.decide();
    assert_eq!(
        summary(&actions),
        vec![(
            "ns/a".into(),
            write(&["192.0.2.1"], Some("p"), true),
            normal("IPAllocated", "assigned 192.0.2.1 from pool p"),
        )]
    );
    assert_eq!(
        allocated(&actions),
        vec![(
            "ns/a".into(),
            "True".into(),
            "IPAllocated".into(),
            "192.0.2.1 from pool p".into()
        )]
    );
    sim.land(&actions);
    sim.finish();

    // No address left: False with the Event's reason and note.
    sim.tick();
    sim.apply(fresh("ns/b"));
    let actions = sim.decide();
    let why = "every pool this service may use is out of IPv4 addresses";
    assert_eq!(
        summary(&actions),
        vec![("ns/b".into(), None, warning("AllocationFailed", why))]
    );
    assert_eq!(
        allocated(&actions),
        vec![(
            "ns/b".into(),
            "False".into(),
            "AllocationFailed".into(),
            why.into()
        )]
    );
    sim.land(&actions);
    sim.finish();
    assert_eq!(allocated(&sim.decide()), vec![]);

    // An invalid request of a Service holding an address: False, and it keeps the address.
    sim.tick();
    sim.apply(service(
        "ns/a",
        json!({}),
        json!({ASSIGNED_POOL: "p", "ferrolb.io/loadBalancerIPs": "nope"}),
        &["192.0.2.1"],
    ));
    let actions = sim.decide();
    let bad = "annotation ferrolb.io/loadBalancerIPs: \"nope\" is not an IP address";
    assert_eq!(
        summary(&actions),
        vec![("ns/a".into(), None, warning("AllocationFailed", bad))]
    );
    assert_eq!(
        allocated(&actions),
        vec![(
            "ns/a".into(),
            "False".into(),
            "AllocationFailed".into(),
            format!("{bad}; keeps 192.0.2.1")
        )]
    );
    sim.land(&actions);
    sim.finish();

    // ns/old stops being a LoadBalancer: its address goes to ns/b, its condition is removed.
    sim.tick();
    sim.apply(service(
        "ns/old",
        json!({"type": "ClusterIP"}),
        json!({ASSIGNED_POOL: "p"}),
        &["192.0.2.0"],
    ));
    let actions = sim.decide();
    assert_eq!(
        allocated(&actions),
        vec![("ns/old".into(), "-".into(), "".into(), "".into())]
    );
    sim.land(&actions);
    sim.finish();
    let actions = sim.decide();
    assert_eq!(
        summary(&actions),
        vec![(
            "ns/b".into(),
            write(&["192.0.2.0"], Some("p"), true),
            normal("IPAllocated", "assigned 192.0.2.0 from pool p"),
        )]
    );
    let ConditionWrite::Set(c) = actions[0].condition.clone().unwrap() else {
        panic!()
    };
    assert_eq!(
        (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
        ("True", "IPAllocated", "192.0.2.0 from pool p")
    );
}

/// Issue 10: the control-plane VIP inside a service pool. The pool says so in a condition, the
/// address is never assigned (the pool fills up around it and its counts leave it out), a
/// Service that held it before it was known keeps it with a Warning and a condition saying the
/// conflict, and the ConfigMap going away ends all of it.
#[test]
fn the_control_plane_address_is_never_assigned_and_the_pool_says_so() {
    let p = json!({ASSIGNED_POOL: "p"});
    let mut sim = Sim::start_with(
        vec![
            service("ns/old", json!({}), p.clone(), &["192.0.2.2"]),
            fresh("ns/a"),
            fresh("ns/b"),
            fresh("ns/c"),
        ],
        vec![pool("p", &["192.0.2.0/29"], "2026-01-01T00:00:00Z")],
        &["ns"],
        Some(&["192.0.2.1", "192.0.2.2"]),
        &[],
    );
    let conflict = "192.0.2.2 is the control-plane endpoint (kube-public/cluster-info): the API \
                    servers answer for it too; delete and re-create the Service (or request another \
                    address) to move it";
    let actions = sim.decide();
    assert_eq!(
        summary(&actions),
        vec![
            (
                "ns/a".into(),
                write(&["192.0.2.0"], Some("p"), true),
                normal("IPAllocated", "assigned 192.0.2.0 from pool p"),
            ),
            (
                "ns/b".into(),
                write(&["192.0.2.3"], Some("p"), true),
                normal("IPAllocated", "assigned 192.0.2.3 from pool p"),
            ),
            (
                "ns/c".into(),
                write(&["192.0.2.4"], Some("p"), true),
                normal("IPAllocated", "assigned 192.0.2.4 from pool p"),
            ),
            (
                "ns/old".into(),
                None,
                warning(CONTROL_PLANE_CONFLICT, conflict)
            ),
        ]
    );
    assert_eq!(
        allocated(&actions)[3],
        (
            "ns/old".into(),
            "True".into(),
            CONTROL_PLANE_CONFLICT.into(),
            format!("192.0.2.2 from pool p; {conflict}")
        )
    );
    sim.land(&actions);
    let pools = sim.finish().unwrap();
    let status = &sim.pools["p"].status.clone().unwrap();
    assert_eq!(pools.writes.len(), 1);
    // 8 addresses: 4 assigned (old's among them), 1 reserved and free of holders, 3 available.
    assert_eq!(
        (status.assigned.as_deref(), status.available.as_deref()),
        (Some("4"), Some("3"))
    );
    assert_eq!(
        conditions(status)[2],
        (
            "ControlPlaneConflict",
            "True",
            "ControlPlaneAddress",
            "192.0.2.1 is the control-plane endpoint (kube-public/cluster-info), 192.0.2.2 is the \
             control-plane endpoint (kube-public/cluster-info) (Service ns/old got it before and \
             keeps it); they are never assigned to a Service"
        )
    );
    // Quiet: the Warning is not repeated.
    assert_eq!(sim.pass(), vec![]);

    // The pool fills up around the reserved address; asking for it by value is refused.
    for name in ["ns/d", "ns/e", "ns/f"] {
        sim.apply(fresh(name));
    }
    sim.apply(service(
        "ns/asks",
        json!({"loadBalancerIP": "192.0.2.1"}),
        json!({}),
        &[],
    ));
    sim.apply(fresh("ns/g"));
    let got: Vec<Summary> = sim.pass();
    assert_eq!(
        got.iter()
            .map(|(k, w, _)| (k.as_str(), w.as_ref().map(|w| list(&w.ips))))
            .collect::<Vec<_>>(),
        vec![
            ("ns/asks", None),
            ("ns/d", Some("192.0.2.5".into())),
            ("ns/e", Some("192.0.2.6".into())),
            ("ns/f", Some("192.0.2.7".into())),
            ("ns/g", None),
        ]
    );
    assert_eq!(
        got[0].2,
        warning(
            "AllocationFailed",
            "requested address 192.0.2.1 is reserved for something other than a service and \
             never assigned; request another address"
        )
    );
    sim.finish();
    let status = sim.pools["p"].status.clone().unwrap();
    assert_eq!(
        (status.assigned.as_deref(), status.available.as_deref()),
        (Some("7"), Some("0"))
    );

    // The ConfigMap goes: the condition goes, old's condition is plain again, and the address
    // that nobody holds goes to the Service that asked for it (waiting Services are retried
    // every pass).
    sim.core.input(
        Input::ClusterInfo(Watch::Delete(ClusterInfo {
            addresses: ips(&["192.0.2.1", "192.0.2.2"]),
        })),
        sim.at(),
    );
    let actions = sim.decide();
    assert_eq!(
        allocated(&actions),
        vec![
            (
                "ns/asks".into(),
                "True".into(),
                "IPAllocated".into(),
                "192.0.2.1 from pool p".into()
            ),
            (
                "ns/old".into(),
                "True".into(),
                "IPAllocated".into(),
                "192.0.2.2 from pool p".into()
            ),
        ]
    );
    assert_eq!(
        summary(&actions),
        vec![(
            "ns/asks".into(),
            write(&["192.0.2.1"], Some("p"), true),
            normal("IPAllocated", "assigned 192.0.2.1 from pool p"),
        )]
    );
    sim.land(&actions);
    sim.finish();
    let status = sim.pools["p"].status.clone().unwrap();
    assert_eq!(
        conditions(&status).iter().map(|c| c.0).collect::<Vec<_>>(),
        ["Invalid", "Overlapping", "Exhausted", "Ready"]
    );
    assert_eq!(
        (status.assigned.as_deref(), status.available.as_deref()),
        (Some("8"), Some("0"))
    );
}

/// The flag names the control plane where cluster-info does not (or cannot be read).
#[test]
fn the_flag_reserves_the_control_plane_address_too() {
    let mut sim = Sim::start_with(
        vec![],
        vec![pool("p", &["192.0.2.0/30"], "2026-01-01T00:00:00Z")],
        &["ns"],
        None,
        &["192.0.2.0"],
    );
    sim.apply(fresh("ns/a"));
    assert_eq!(
        sim.pass(),
        vec![(
            "ns/a".into(),
            write(&["192.0.2.1"], Some("p"), true),
            normal("IPAllocated", "assigned 192.0.2.1 from pool p"),
        )]
    );
    let status = sim.pools["p"].status.clone().unwrap();
    assert_eq!(status.available.as_deref(), Some("2"));
    assert_eq!(
        conditions(&status)[2],
        (
            "ControlPlaneConflict",
            "True",
            "ControlPlaneAddress",
            "192.0.2.0 is the control-plane endpoint (--control-plane-address); it is never \
             assigned to a Service"
        )
    );
}
