//! The controller on the real API server: allocation, release, Events, pool status, and every kind
//! of bad input reported where the user looks while nothing else changes.

use std::time::Duration;

use ferrolb_lab::daemons::{
    ControllerOptions, apply, http_get, installed_cluster, service_yaml, start_controller,
    wait_event, wait_ingress,
};
use ferrolb_lab::{KubeEnv, Port};

const T: Duration = Duration::from_secs(30);

fn jsonpath(env: &KubeEnv, args: &[&str], path: &str) -> String {
    env.jsonpath(args, path).unwrap()
}

fn wait_jsonpath(env: &KubeEnv, args: &[&str], path: &str, want: &str) {
    env.wait_jsonpath(args, path, want, T)
        .unwrap_or_else(|e| panic!("{e:#}"));
}

const POOL: &str = "apiVersion: ferrolb.io/v1alpha1\nkind: IPAddressPool\nmetadata:\n  name: lab\nspec:\n  addresses: [\"192.0.2.64/28\", \"2001:db8::1:0/112\"]\n";

#[test]
fn allocates_reports_and_refuses_bad_input_without_side_effects() {
    let (lab, env) = installed_cluster().unwrap();
    let opts = ControllerOptions {
        extra_args: vec!["--metrics-bind-address".into(), "127.0.0.1:7472".into()],
        ..Default::default()
    };
    let _controller = start_controller(&lab, &env, &opts).unwrap();
    apply(&env, &lab, POOL).unwrap();

    // A Service gets the lowest address, the pool annotation and an Event.
    apply(&env, &lab, &service_yaml("web", &[], "", 80)).unwrap();
    assert_eq!(
        wait_ingress(&env, "default", "web", 1, T).unwrap(),
        vec!["192.0.2.64"]
    );
    assert_eq!(
        jsonpath(
            &env,
            &["-n", "default", "get", "svc", "web"],
            "{.metadata.annotations.ferrolb\\.io/ip-allocated-from-pool}"
        ),
        "lab"
    );
    wait_event(
        &env,
        "default",
        "web",
        "IPAllocated: assigned 192.0.2.64 from pool lab",
        T,
    )
    .unwrap();

    // Dual-stack and a requested address.
    let dual = "  ipFamilyPolicy: RequireDualStack\n  ipFamilies: [IPv4, IPv6]\n";
    apply(&env, &lab, &service_yaml("dual", &[], dual, 80)).unwrap();
    assert_eq!(
        wait_ingress(&env, "default", "dual", 2, T).unwrap(),
        vec!["192.0.2.65", "2001:db8::1:0"]
    );
    apply(
        &env,
        &lab,
        &service_yaml(
            "fixed",
            &[("ferrolb.io/loadBalancerIPs", "192.0.2.70")],
            "",
            80,
        ),
    )
    .unwrap();
    assert_eq!(
        wait_ingress(&env, "default", "fixed", 1, T).unwrap(),
        vec!["192.0.2.70"]
    );
    // Sharing: same key, other port, same address; MetalLB's annotation form works too.
    apply(
        &env,
        &lab,
        &service_yaml(
            "share-a",
            &[
                ("ferrolb.io/allow-shared-ip", "k"),
                ("ferrolb.io/loadBalancerIPs", "192.0.2.75"),
            ],
            "",
            80,
        ),
    )
    .unwrap();
    apply(
        &env,
        &lab,
        &service_yaml(
            "share-b",
            &[
                ("metallb.universe.tf/allow-shared-ip", "k"),
                ("metallb.io/loadBalancerIPs", "192.0.2.75"),
            ],
            "",
            443,
        ),
    )
    .unwrap();
    assert_eq!(
        wait_ingress(&env, "default", "share-b", 1, T).unwrap(),
        vec!["192.0.2.75"]
    );

    // Pool status: exact counts per family and Ready.
    wait_jsonpath(
        &env,
        &["get", "ipp", "lab"],
        "{.status.assignedIPv4}/{.status.availableIPv4}/{.status.assignedIPv6}/{.status.availableIPv6}",
        "4/12/1/65535",
    );
    wait_jsonpath(
        &env,
        &["get", "ipp", "lab"],
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        "True",
    );

    // Bad input: each gets an AllocationFailed Event naming the problem and no address.
    let v4only = "apiVersion: ferrolb.io/v1alpha1\nkind: IPAddressPool\nmetadata:\n  name: v4only\nspec:\n  addresses: [\"192.0.2.90/32\"]\n  autoAssign: false\n";
    apply(&env, &lab, v4only).unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "outside",
            service_yaml(
                "outside",
                &[("ferrolb.io/loadBalancerIPs", "192.0.2.200")],
                "",
                80,
            ),
            "192.0.2.200 is not in any address pool",
        ),
        (
            "nopool",
            service_yaml("nopool", &[("ferrolb.io/address-pool", "missing")], "", 80),
            "address pool \"missing\" does not exist",
        ),
        (
            "twov4",
            service_yaml(
                "twov4",
                &[("ferrolb.io/loadBalancerIPs", "192.0.2.71,192.0.2.72")],
                "",
                80,
            ),
            "at most one per family",
        ),
        (
            "both",
            service_yaml(
                "both",
                &[("ferrolb.io/loadBalancerIPs", "192.0.2.71")],
                "  loadBalancerIP: 192.0.2.71\n",
                80,
            ),
            "both spec.loadBalancerIP and annotation ferrolb.io/loadBalancerIPs",
        ),
        (
            "taken",
            service_yaml(
                "taken",
                &[("ferrolb.io/loadBalancerIPs", "192.0.2.70")],
                "",
                80,
            ),
            "192.0.2.70 is already used by service default/fixed",
        ),
        (
            "portclash",
            service_yaml(
                "portclash",
                &[
                    ("ferrolb.io/allow-shared-ip", "k"),
                    ("ferrolb.io/loadBalancerIPs", "192.0.2.75"),
                ],
                "",
                80,
            ),
            "both services use TCP/80",
        ),
        (
            "nodual",
            service_yaml("nodual", &[("ferrolb.io/address-pool", "v4only")], dual, 80),
            "pool \"v4only\" has no IPv6 addresses",
        ),
    ];
    for (name, yaml, _) in &cases {
        apply(&env, &lab, yaml).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
    for (name, _, text) in &cases {
        let ev =
            wait_event(&env, "default", name, text, T).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert!(ev.starts_with("AllocationFailed"), "{name}: {ev}");
        let ips = jsonpath(
            &env,
            &["-n", "default", "get", "svc", name],
            "{.status.loadBalancer.ingress[*].ip}",
        );
        assert!(ips.trim().is_empty(), "{name} got {ips}");
    }
    // An exhausted pool: the only address of v4only is taken by one Service, the next one fails.
    apply(
        &env,
        &lab,
        &service_yaml("tiny-a", &[("ferrolb.io/address-pool", "v4only")], "", 80),
    )
    .unwrap();
    assert_eq!(
        wait_ingress(&env, "default", "tiny-a", 1, T).unwrap(),
        vec!["192.0.2.90"]
    );
    apply(
        &env,
        &lab,
        &service_yaml("tiny-b", &[("ferrolb.io/address-pool", "v4only")], "", 80),
    )
    .unwrap();
    wait_event(
        &env,
        "default",
        "tiny-b",
        "pool \"v4only\" has no free IPv4 address left",
        T,
    )
    .unwrap();
    wait_jsonpath(
        &env,
        &["get", "ipp", "v4only"],
        "{.status.conditions[?(@.type==\"Exhausted\")].status}",
        "True",
    );

    // Invalid pools the schema lets through get an Invalid condition naming the field; an
    // overlapping newer pool gets Overlapping and hands out nothing of the older pool's.
    let reversed = "apiVersion: ferrolb.io/v1alpha1\nkind: IPAddressPool\nmetadata:\n  name: reversed\nspec:\n  addresses: [\"192.0.2.120-192.0.2.110\"]\n";
    let badsel = "apiVersion: ferrolb.io/v1alpha1\nkind: IPAddressPool\nmetadata:\n  name: badsel\nspec:\n  addresses: [\"192.0.2.121/32\"]\n  serviceAllocation:\n    serviceSelectors:\n    - matchExpressions: [{key: tier, operator: Near}]\n";
    let overlap = "apiVersion: ferrolb.io/v1alpha1\nkind: IPAddressPool\nmetadata:\n  name: overlap\nspec:\n  addresses: [\"192.0.2.76-192.0.2.95\"]\n";
    for y in [reversed, badsel, overlap] {
        apply(&env, &lab, y).unwrap();
    }
    wait_jsonpath(
        &env,
        &["get", "ipp", "reversed"],
        "{.status.conditions[?(@.type==\"Invalid\")].message}",
        "spec.addresses[0]: \"192.0.2.120-192.0.2.110\": range start 192.0.2.120 is above its end 192.0.2.110",
    );
    let msg = {
        wait_jsonpath(
            &env,
            &["get", "ipp", "badsel"],
            "{.status.conditions[?(@.type==\"Invalid\")].status}",
            "True",
        );
        jsonpath(
            &env,
            &["get", "ipp", "badsel"],
            "{.status.conditions[?(@.type==\"Invalid\")].message}",
        )
    };
    assert!(
        msg.contains("spec.serviceAllocation.serviceSelectors[0]") && msg.contains("Near"),
        "{msg}"
    );
    wait_jsonpath(
        &env,
        &["get", "ipp", "overlap"],
        "{.status.conditions[?(@.type==\"Overlapping\")].status}",
        "True",
    );
    let msg = jsonpath(
        &env,
        &["get", "ipp", "overlap"],
        "{.status.conditions[?(@.type==\"Overlapping\")].message}",
    );
    assert!(
        msg.contains("192.0.2.76-192.0.2.79") && msg.contains("lab") && msg.contains("v4only"),
        "{msg}"
    );

    // Breaking a pool that Services use (a reversed range added by mistake) reports Invalid and
    // keeps serving with the last valid spec: nobody loses an address.
    let broken = POOL.replace(
        "[\"192.0.2.64/28\", ",
        "[\"192.0.2.64/28\", \"192.0.2.99-192.0.2.98\", ",
    );
    assert_ne!(broken, POOL);
    apply(&env, &lab, &broken).unwrap();
    wait_jsonpath(
        &env,
        &["get", "ipp", "lab"],
        "{.status.conditions[?(@.type==\"Invalid\")].status}",
        "True",
    );
    let msg = jsonpath(
        &env,
        &["get", "ipp", "lab"],
        "{.status.conditions[?(@.type==\"Invalid\")].message}",
    );
    assert!(
        msg.contains("spec.addresses[1]") && msg.contains("last valid spec"),
        "{msg}"
    );
    std::thread::sleep(Duration::from_secs(2));

    // None of that moved anything.
    for (name, want) in [
        ("web", "192.0.2.64"),
        ("dual", "192.0.2.65 2001:db8::1:0"),
        ("fixed", "192.0.2.70"),
        ("share-a", "192.0.2.75"),
        ("tiny-a", "192.0.2.90"),
    ] {
        assert_eq!(
            jsonpath(
                &env,
                &["-n", "default", "get", "svc", name],
                "{.status.loadBalancer.ingress[*].ip}"
            ),
            want,
            "{name}"
        );
    }

    // Health, readiness and metrics: per-pool totals and use per family, latency, errors.
    let health = http_get(&lab, Port::Api, "127.0.0.1:7472", "/healthz").unwrap();
    assert!(
        health.starts_with("HTTP/1.0 200") && health.ends_with("ok"),
        "{health}"
    );
    let ready = http_get(&lab, Port::Api, "127.0.0.1:7472", "/readyz").unwrap();
    assert!(ready.starts_with("HTTP/1.0 200"), "{ready}");
    let metrics = http_get(&lab, Port::Api, "127.0.0.1:7472", "/metrics").unwrap();
    for line in [
        "ferrolb_controller_pool_addresses{pool=\"lab\",family=\"IPv4\"} 16.0",
        "ferrolb_controller_pool_addresses_in_use{pool=\"v4only\",family=\"IPv4\"} 1.0",
        "ferrolb_controller_leader 1",
        "ferrolb_controller_allocation_errors_total{reason=\"Exhausted\"}",
        "ferrolb_controller_allocation_seconds_count",
    ] {
        assert!(metrics.contains(line), "/metrics lacks {line}:\n{metrics}");
    }

    // The pool is fixed again.
    apply(&env, &lab, POOL).unwrap();
    wait_jsonpath(
        &env,
        &["get", "ipp", "lab"],
        "{.status.conditions[?(@.type==\"Invalid\")].status}",
        "False",
    );
    // A Service waiting for an exhausted pool gets the address as soon as it is freed, without
    // anything else touching it.
    env.kubectl(&["-n", "default", "delete", "svc", "tiny-a"])
        .unwrap();
    assert_eq!(
        wait_ingress(&env, "default", "tiny-b", 1, T).unwrap(),
        vec!["192.0.2.90"]
    );

    // Fixing a bad Service gives it an address; deleting one frees its address for the next.
    apply(&env, &lab, &service_yaml("outside", &[], "", 80)).unwrap();
    assert_eq!(
        wait_ingress(&env, "default", "outside", 1, T).unwrap(),
        vec!["192.0.2.66"]
    );
    env.kubectl(&["-n", "default", "delete", "svc", "web"])
        .unwrap();
    wait_jsonpath(&env, &["get", "ipp", "lab"], "{.status.assignedIPv4}", "4");
    apply(&env, &lab, &service_yaml("next", &[], "", 80)).unwrap();
    assert_eq!(
        wait_ingress(&env, "default", "next", 1, T).unwrap(),
        vec!["192.0.2.64"]
    );

    // Turning a Service into ClusterIP releases its address and clears its status.
    env.kubectl(&[
        "-n",
        "default",
        "patch",
        "svc",
        "next",
        "-p",
        "{\"spec\":{\"type\":\"ClusterIP\"}}",
    ])
    .unwrap();
    wait_event(&env, "default", "next", "IPReleased", T).unwrap();
    wait_jsonpath(
        &env,
        &["-n", "default", "get", "svc", "next"],
        "{.status.loadBalancer.ingress[*].ip}",
        "",
    );
    // Another load-balancer class is not ours.
    apply(
        &env,
        &lab,
        &service_yaml("other", &[], "  loadBalancerClass: example.com/other\n", 80),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        jsonpath(
            &env,
            &["-n", "default", "get", "svc", "other"],
            "{.status.loadBalancer.ingress[*].ip}"
        ),
        ""
    );
}

#[test]
fn pools_serve_the_namespaces_they_select_and_prefer_dual_stack_gets_both() {
    let (lab, env) = installed_cluster().unwrap();
    let _controller = start_controller(&lab, &env, &ControllerOptions::default()).unwrap();
    apply(
        &env,
        &lab,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n  labels: {team: a}\n",
    )
    .unwrap();
    apply(
        &env,
        &lab,
        "apiVersion: ferrolb.io/v1alpha1\nkind: IPAddressPool\nmetadata:\n  name: general\nspec:\n  addresses: [\"192.0.2.64/29\", \"2001:db8::1:0/120\"]\n---\n\
         apiVersion: ferrolb.io/v1alpha1\nkind: IPAddressPool\nmetadata:\n  name: team\nspec:\n  addresses: [\"192.0.2.96/29\"]\n  serviceAllocation:\n    priority: 1\n    namespaceSelectors: [{matchLabels: {team: a}}]\n",
    )
    .unwrap();
    // The preferred pool serves only namespaces labelled team=a.
    let team_svc =
        service_yaml("api", &[], "", 80).replace("namespace: default", "namespace: team-a");
    apply(&env, &lab, &team_svc).unwrap();
    apply(&env, &lab, &service_yaml("web", &[], "", 80)).unwrap();
    assert_eq!(
        wait_ingress(&env, "team-a", "api", 1, T).unwrap(),
        vec!["192.0.2.96"]
    );
    assert_eq!(
        wait_ingress(&env, "default", "web", 1, T).unwrap(),
        vec!["192.0.2.64"]
    );
    // PreferDualStack takes both families where a pool has them.
    let prefer = "  ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv4, IPv6]\n";
    apply(&env, &lab, &service_yaml("dual", &[], prefer, 80)).unwrap();
    assert_eq!(
        wait_ingress(&env, "default", "dual", 2, T).unwrap(),
        vec!["192.0.2.65", "2001:db8::1:0"]
    );
    // The namespace loses its label: its Service is re-homed to a pool that still serves it, and
    // an Event says why.
    env.kubectl(&["label", "namespace", "team-a", "team-"])
        .unwrap();
    let ev = wait_event(&env, "team-a", "api", "IPReassigned", T).unwrap();
    assert!(ev.contains("192.0.2.96") && ev.contains("general"), "{ev}");
    assert_eq!(
        wait_ingress(&env, "team-a", "api", 1, T).unwrap(),
        vec!["192.0.2.66"]
    );
    assert_eq!(
        jsonpath(
            &env,
            &["-n", "default", "get", "svc", "web"],
            "{.status.loadBalancer.ingress[*].ip}"
        ),
        "192.0.2.64"
    );
}

#[test]
fn local_traffic_policy_services_share_only_with_the_same_selector() {
    let (lab, env) = installed_cluster().unwrap();
    let _controller = start_controller(&lab, &env, &ControllerOptions::default()).unwrap();
    apply(&env, &lab, POOL).unwrap();
    let local = "  externalTrafficPolicy: Local\n";
    let share = [
        ("ferrolb.io/allow-shared-ip", "k"),
        ("ferrolb.io/loadBalancerIPs", "192.0.2.72"),
    ];
    let same_pods = |name: &str, port: u16| {
        service_yaml(name, &share, local, port).replace(&format!("app: {name}"), "app: shared")
    };
    apply(&env, &lab, &same_pods("l1", 80)).unwrap();
    apply(&env, &lab, &same_pods("l2", 443)).unwrap();
    assert_eq!(
        wait_ingress(&env, "default", "l1", 1, T).unwrap(),
        vec!["192.0.2.72"]
    );
    assert_eq!(
        wait_ingress(&env, "default", "l2", 1, T).unwrap(),
        vec!["192.0.2.72"]
    );
    // Other pods: announced from other nodes, so no sharing even with the same key.
    apply(&env, &lab, &service_yaml("l3", &share, local, 8080)).unwrap();
    let ev = wait_event(&env, "default", "l3", "AllocationFailed", T).unwrap();
    assert!(ev.contains("192.0.2.72") && ev.contains("backend"), "{ev}");
    // A Cluster-policy Service with the same key does not share with Local ones either.
    apply(&env, &lab, &service_yaml("c1", &share, "", 8081)).unwrap();
    wait_event(&env, "default", "c1", "AllocationFailed", T).unwrap();
    for name in ["l3", "c1"] {
        assert_eq!(
            jsonpath(
                &env,
                &["-n", "default", "get", "svc", name],
                "{.status.loadBalancer.ingress[*].ip}"
            ),
            "",
            "{name}"
        );
    }
}

/// Issue 10: the control-plane VIP inside a service pool. kubeadm's `kube-public/cluster-info`
/// names it (read as the controller's service account, through the Role in deploy/): the pool
/// says so in a condition, its counts leave it out, and the pool fills up without handing it to
/// any Service; the ConfigMap removed, the condition goes and the waiting Service gets it.
#[test]
fn the_control_plane_address_in_a_pool_is_never_assigned() {
    let (lab, env) = installed_cluster().unwrap();
    let _controller = start_controller(&lab, &env, &ControllerOptions::default()).unwrap();
    apply(
        &env,
        &lab,
        "apiVersion: ferrolb.io/v1alpha1\nkind: IPAddressPool\nmetadata:\n  name: cp\nspec:\n  addresses: [\"192.0.2.64/29\"]\n",
    )
    .unwrap();
    // What kubeadm writes (its CA data shortened: the controller reads only the server).
    let kubeconfig = "apiVersion: v1\n    kind: Config\n    clusters:\n    - name: \"\"\n      cluster:\n        certificate-authority-data: AAAA\n        server: https://192.0.2.66:6443\n    contexts: []\n    users: []\n";
    apply(
        &env,
        &lab,
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cluster-info\n  namespace: kube-public\ndata:\n  kubeconfig: |\n    {kubeconfig}"
        ),
    )
    .unwrap();
    let pool = ["get", "ipaddresspool", "cp"];
    let cond = "{.status.conditions[?(@.type==\"ControlPlaneConflict\")]";
    wait_jsonpath(
        &env,
        &pool,
        &format!("{cond}.reason}}"),
        "ControlPlaneAddress",
    );
    assert_eq!(
        jsonpath(&env, &pool, &format!("{cond}.status}} {cond}.message}}")),
        "True 192.0.2.66 is the control-plane endpoint (kube-public/cluster-info); it is never assigned to a Service"
    );
    wait_jsonpath(&env, &pool, "{.status.available}", "7");

    // Eight Services for the seven addresses left: seven get one, none gets .66.
    let names: Vec<String> = (0..8).map(|i| format!("s{i}")).collect();
    let yaml: String = names.iter().map(|n| service_yaml(n, &[], "", 80)).collect();
    apply(&env, &lab, &yaml).unwrap();
    let mut got = Vec::new();
    for n in &names[..7] {
        got.extend(wait_ingress(&env, "default", n, 1, T).unwrap());
    }
    got.sort();
    assert_eq!(
        got,
        [
            "192.0.2.64",
            "192.0.2.65",
            "192.0.2.67",
            "192.0.2.68",
            "192.0.2.69",
            "192.0.2.70",
            "192.0.2.71"
        ]
    );
    wait_event(&env, "default", "s7", "AllocationFailed", T).unwrap();
    assert_eq!(
        jsonpath(
            &env,
            &["-n", "default", "get", "svc", "s7"],
            "{.status.loadBalancer.ingress[*].ip}"
        ),
        ""
    );
    wait_jsonpath(&env, &pool, "{.status.assigned} {.status.available}", "7 0");

    // The ConfigMap goes: so do the condition and the reservation.
    env.kubectl(&["-n", "kube-public", "delete", "configmap", "cluster-info"])
        .unwrap();
    wait_jsonpath(&env, &pool, &format!("{cond}.reason}}"), "");
    assert_eq!(
        wait_ingress(&env, "default", "s7", 1, T).unwrap(),
        vec!["192.0.2.66"]
    );
    wait_jsonpath(&env, &pool, "{.status.assigned} {.status.available}", "8 0");
}

/// Without the Role on cluster-info (a 403), the controller carries on: it says so once, and the
/// control-plane address given by flag is reserved all the same.
#[test]
fn without_cluster_info_access_the_flag_still_reserves_the_control_plane_address() {
    let (lab, env) = installed_cluster().unwrap();
    env.kubectl(&[
        "-n",
        "kube-public",
        "delete",
        "rolebinding",
        "ferrolb-controller-cluster-info",
    ])
    .unwrap();
    let opts = ControllerOptions {
        extra_args: vec!["--control-plane-address".into(), "192.0.2.64".into()],
        ..Default::default()
    };
    let controller = start_controller(&lab, &env, &opts).unwrap();
    apply(
        &env,
        &lab,
        "apiVersion: ferrolb.io/v1alpha1\nkind: IPAddressPool\nmetadata:\n  name: cp\nspec:\n  addresses: [\"192.0.2.64/30\"]\n",
    )
    .unwrap();
    apply(&env, &lab, &service_yaml("web", &[], "", 80)).unwrap();
    assert_eq!(
        wait_ingress(&env, "default", "web", 1, T).unwrap(),
        vec!["192.0.2.65"]
    );
    let pool = ["get", "ipaddresspool", "cp"];
    wait_jsonpath(
        &env,
        &pool,
        "{.status.conditions[?(@.type==\"ControlPlaneConflict\")].message}",
        "192.0.2.64 is the control-plane endpoint (--control-plane-address); it is never assigned to a Service",
    );
    let log = controller.log_text();
    assert_eq!(
        log.matches("cannot read kube-public/cluster-info").count(),
        1,
        "{log}"
    );
}
