//! `kubectl ferrolb` (cli/) against the real API server with the real controller and speakers:
//! what `status` says must be what the daemons wrote, and `migrate from-metallb` must produce
//! objects the controller accepts.

use std::process::Output;
use std::time::Duration;

use ferrolb_lab::daemons::{
    ControllerOptions, apply, binary, installed_cluster, service_yaml, start_controller,
    wait_event, wait_ingress,
};
use ferrolb_lab::netns::BACKEND_PORT;
use ferrolb_lab::speakers::Cluster;
use ferrolb_lab::{KubeEnv, cmd};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// Runs `kubectl-ferrolb --kubeconfig <admin> ARGS`.
fn ferrolb(env: &KubeEnv, args: &[&str]) -> Output {
    let bin = binary("kubectl-ferrolb").unwrap();
    let kc = env.kubeconfig().to_string_lossy().into_owned();
    let mut argv = vec![bin.to_str().unwrap(), "--kubeconfig", &kc];
    argv.extend_from_slice(args);
    cmd::output_timeout(&argv, Duration::from_secs(60)).unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs it and returns stdout, failing the test on a non-zero exit.
fn ok(env: &KubeEnv, args: &[&str]) -> String {
    let o = ferrolb(env, args);
    assert!(o.status.success(), "{args:?} failed:\n{}", stderr(&o));
    stdout(&o)
}

fn service<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no service {name} in {report:#}"))
}

#[test]
fn status_shows_allocation_announcement_and_why_not() {
    let c = Cluster::start(3, &[]).unwrap();
    let env = &c.env;
    apply(env, &c.lab, &service_yaml("web", &[], "", BACKEND_PORT)).unwrap();
    // Outside every pool: never allocated.
    apply(
        env,
        &c.lab,
        &service_yaml(
            "stray",
            &[("ferrolb.io/loadBalancerIPs", "198.51.100.7")],
            "",
            BACKEND_PORT,
        ),
    )
    .unwrap();
    // Local traffic policy without endpoints: allocated, announced by nobody.
    apply(
        env,
        &c.lab,
        &service_yaml(
            "local",
            &[],
            "  externalTrafficPolicy: Local\n",
            BACKEND_PORT,
        ),
    )
    .unwrap();
    let vip = wait_ingress(env, "default", "web", 1, WAIT).unwrap()[0].clone();
    let node = c.announcer("web", WAIT).unwrap();
    let local_vip = wait_ingress(env, "default", "local", 1, WAIT).unwrap()[0].clone();
    wait_event(env, "default", "stray", "AllocationFailed", WAIT).unwrap();
    c.wait_kubectl(
        "local's NoEndpoints condition",
        &[
            "get",
            "service",
            "local",
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="ferrolb.io/Announced")].reason}"#,
        ],
        WAIT,
        |r| (r == "NoEndpoints").then_some(()),
    )
    .unwrap();

    // The table: one line per Service with address, pool, node and interface, or the reason.
    let table = ok(env, &["status", "--no-color"]);
    eprintln!("{table}");
    assert!(!table.contains('\x1b'), "colour with --no-color:\n{table}");
    let web_line = table
        .lines()
        .find(|l| l.starts_with("default/web "))
        .unwrap_or_else(|| panic!("no web line:\n{table}"));
    let cells: Vec<&str> = web_line.split_whitespace().collect();
    assert_eq!(
        cells[..6],
        [
            "default/web",
            "Announced",
            vip.as_str(),
            "lab",
            node.as_str(),
            "eth0"
        ],
        "{table}"
    );
    let stray_line = table
        .lines()
        .find(|l| l.starts_with("default/stray "))
        .unwrap();
    assert!(
        stray_line.contains("NotAllocated") && stray_line.contains("AllocationFailed"),
        "{table}"
    );
    let local_line = table
        .lines()
        .find(|l| l.starts_with("default/local "))
        .unwrap();
    assert!(
        local_line.contains("NotAnnounced") && local_line.contains("NoEndpoints"),
        "{table}"
    );
    // Pools with their use per family, and the speakers per node.
    let pool_line = table.lines().find(|l| l.starts_with("lab ")).unwrap();
    assert!(pool_line.contains("Ready"), "{table}");
    for i in 1..=3 {
        assert!(
            table.lines().any(|l| l.starts_with(&format!("node-{i} "))),
            "{table}"
        );
    }

    // The same facts for scripts.
    // (The pool's counts follow the controller's status write: wait for them.)
    let report: Value = cmd::wait_for(
        "the lab pool to count 2 addresses in use",
        WAIT,
        Duration::from_millis(200),
        || {
            let r: Value = serde_json::from_str(&ok(env, &["status", "-o", "json"])).ok()?;
            (r["pools"][0]["ipv4"]["used"] == "2").then_some(r)
        },
    )
    .unwrap();
    let web = service(&report, "web");
    assert_eq!(web["state"], "announced");
    assert_eq!(web["addresses"][0], vip.as_str());
    assert_eq!(web["pool"], "lab");
    assert_eq!(web["node"], node.as_str());
    assert_eq!(web["interfaces"][0], "eth0");
    let stray = service(&report, "stray");
    assert_eq!(stray["state"], "notAllocated");
    assert!(
        stray["reason"].as_str().unwrap().contains("198.51.100.7"),
        "{stray:#}"
    );
    let local = service(&report, "local");
    assert_eq!(local["state"], "notAnnounced");
    assert_eq!(local["addresses"][0], local_vip.as_str());
    let lab_pool = &report["pools"][0];
    assert_eq!(lab_pool["name"], "lab");
    assert_eq!(lab_pool["ipv4"]["used"], "2", "{lab_pool:#}");
    assert_eq!(lab_pool["ipv4"]["free"], "62", "{lab_pool:#}");
    let adv = &report["advertisements"][0];
    assert_eq!(adv["name"], "default", "{report:#}");
    assert_eq!(adv["nodeCount"], 3, "{report:#}");
    let speakers = report["speakers"].as_array().unwrap();
    assert_eq!(speakers.len(), 3, "{report:#}");
    let owner = speakers
        .iter()
        .find(|s| s["node"] == node.as_str())
        .unwrap();
    assert_eq!(owner["announcing"], 1);
    assert_eq!(owner["advertisements"][0], "default");
    // -n limits the Services; YAML carries the same struct.
    let other: Value =
        serde_json::from_str(&ok(env, &["status", "-n", "kube-system", "-o", "json"])).unwrap();
    assert!(other["services"].as_array().unwrap().is_empty());
    let yaml = ok(env, &["status", "-o", "yaml"]);
    assert!(yaml.contains("state: announced"), "{yaml}");

    // The story of one Service.
    let story = ok(env, &["status", "service", "default/web", "--no-color"]);
    eprintln!("{story}");
    for want in [
        format!("Node:                 {node}"),
        format!("Addresses:            {vip}"),
        "Pool:                 lab".to_string(),
        "Announced:            yes".to_string(),
        "ferrolb.io/Announced".to_string(),
        "IPAllocated".to_string(),
        "Announcing".to_string(),
    ] {
        assert!(story.contains(&want), "no {want:?} in:\n{story}");
    }
    let story: Value = serde_json::from_str(&ok(
        env,
        &["status", "service", "stray", "-n", "default", "-o", "json"],
    ))
    .unwrap();
    assert_eq!(story["state"], "notAllocated");
    assert_eq!(story["request"]["addresses"][0], "198.51.100.7");
    assert!(
        story["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"] == "AllocationFailed"),
        "{story:#}"
    );

    // Errors name the object and what to do, with a non-zero exit.
    let missing = ferrolb(env, &["status", "service", "default/nope"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("service default/nope not found"),
        "{}",
        stderr(&missing)
    );
}

/// MetalLB's CRDs, reduced to what the API server needs to serve the objects (the real ones have
/// schemas; the mapping reads the fields by name either way).
fn metallb_crd(kind: &str, plural: &str, version: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: {plural}.metallb.io}}
spec:
  group: metallb.io
  scope: Namespaced
  names: {{kind: {kind}, plural: {plural}, singular: {singular}, listKind: {kind}List}}
  versions:
  - name: {version}
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
---
",
        singular = plural.trim_end_matches('s'),
    )
}

const METALLB_OBJECTS: &str = "apiVersion: v1
kind: Namespace
metadata: {name: metallb-system}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: mlb, namespace: metallb-system, labels: {tier: web}}
spec:
  addresses: [192.0.2.96/28]
  autoAssign: true
  avoidBuggyIPs: true
  serviceAllocation: {priority: 5, namespaces: [default]}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: mlb-l2, namespace: metallb-system}
spec:
  ipAddressPoolSelectors: [{matchLabels: {tier: web}}]
  interfaces: [eth0]
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: router, namespace: metallb-system}
spec: {myASN: 64500, peerASN: 64501, peerAddress: 192.0.2.1}
---
";

#[test]
fn migrate_from_metallb_prints_reports_and_applies() {
    let (lab, env) = installed_cluster().unwrap();
    let _controller = start_controller(&lab, &env, &ControllerOptions::default()).unwrap();

    // Without MetalLB: an error that says so.
    let none = ferrolb(&env, &["migrate", "from-metallb"]);
    assert!(!none.status.success());
    assert!(
        stderr(&none).contains("MetalLB's CRDs"),
        "{}",
        stderr(&none)
    );

    let crds = [
        metallb_crd("IPAddressPool", "ipaddresspools", "v1beta1"),
        metallb_crd("L2Advertisement", "l2advertisements", "v1beta1"),
        metallb_crd("BGPPeer", "bgppeers", "v1beta2"),
    ]
    .concat();
    apply(&env, &lab, &crds).unwrap();
    cmd::wait_for(
        "MetalLB's CRDs served",
        WAIT,
        Duration::from_millis(200),
        || env.kubectl(&["get", "bgppeers.metallb.io", "-A"]).ok(),
    )
    .unwrap();
    apply(&env, &lab, METALLB_OBJECTS).unwrap();

    // Printed: ferrolb objects, the unmapped BGPPeer on stderr, exit 0.
    let printed = ferrolb(&env, &["migrate", "from-metallb"]);
    let yaml = stdout(&printed);
    let err = stderr(&printed);
    eprintln!("{yaml}\n{err}");
    assert!(printed.status.success(), "{err}");
    for want in [
        "apiVersion: ferrolb.io/v1alpha1\nkind: IPAddressPool\n",
        "name: mlb\n",
        "- 192.0.2.96/28\n",
        "avoidBuggyIPs: true\n",
        "priority: 5\n",
        "kind: L2Advertisement\n",
        "name: mlb-l2\n",
        "tier: web\n",
        "- eth0\n",
    ] {
        assert!(yaml.contains(want), "no {want:?} in:\n{yaml}");
    }
    assert!(!yaml.contains("namespace:"), "{yaml}");
    assert!(
        err.contains("BGPPeer metallb-system/router: BGP mode is not supported"),
        "{err}"
    );
    // The printed YAML is what kubectl accepts (a dry run on the server checks the schema).
    let file = lab.dir().join("migrated.yaml");
    std::fs::write(&file, &yaml).unwrap();
    env.kubectl(&["apply", "--dry-run=server", "-f", &file.to_string_lossy()])
        .unwrap();

    // Applied: the objects exist and the controller takes the pool.
    let applied = ferrolb(&env, &["migrate", "from-metallb", "--apply"]);
    assert!(applied.status.success(), "{}", stderr(&applied));
    assert!(
        stdout(&applied).contains("ipaddresspool.ferrolb.io/mlb serverside-applied"),
        "{}",
        stdout(&applied)
    );
    env.kubectl(&["get", "l2advertisements.ferrolb.io", "mlb-l2"])
        .unwrap();
    cmd::wait_for("pool mlb Ready", WAIT, Duration::from_millis(200), || {
        let r = env
            .kubectl(&[
                "get",
                "ipaddresspools.ferrolb.io",
                "mlb",
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
            ])
            .ok()?;
        (r == "True").then_some(())
    })
    .unwrap();
    apply(&env, &lab, &service_yaml("migrated", &[], "", 80)).unwrap();
    let addr = wait_ingress(&env, "default", "migrated", 1, WAIT).unwrap()[0].clone();
    let last: u8 = addr.rsplit('.').next().unwrap().parse().unwrap();
    assert!(
        addr.starts_with("192.0.2.") && (96..112).contains(&last),
        "{addr} is not from the migrated pool"
    );
    // The field manager owns what it applied: applying again changes nothing and succeeds.
    let again = ferrolb(&env, &["migrate", "from-metallb", "--apply"]);
    assert!(again.status.success(), "{}", stderr(&again));

    // As a plugin: the real kubectl finds kubectl-ferrolb on PATH; KUBECONFIG is honoured.
    let bin = binary("kubectl-ferrolb").unwrap();
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let plugin = std::process::Command::new("kubectl")
        .args(["ferrolb", "status", "-o", "json"])
        .env("PATH", &path)
        .env("KUBECONFIG", env.kubeconfig())
        .output()
        .unwrap();
    assert!(plugin.status.success(), "{}", stderr(&plugin));
    let report: Value = serde_json::from_slice(&plugin.stdout).unwrap();
    assert!(
        report["pools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "mlb"),
        "{report:#}"
    );
    // A context that does not exist is an error naming it.
    let bad = ferrolb(&env, &["status", "--context", "nope"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("nope"), "{}", stderr(&bad));

    // Without ferrolb's CRDs: an error that says how to install them.
    env.kubectl(&[
        "delete",
        "crd",
        "ipaddresspools.ferrolb.io",
        "l2advertisements.ferrolb.io",
    ])
    .unwrap();
    let err = cmd::wait_for(
        "status to fail for want of the CRDs",
        WAIT,
        Duration::from_millis(200),
        || {
            let o = ferrolb(&env, &["status"]);
            (!o.status.success()).then(|| stderr(&o))
        },
    )
    .unwrap();
    assert!(
        err.contains(
            "the ferrolb CRDs are not installed in this cluster: kubectl apply -k deploy/"
        ),
        "{err}"
    );
}

#[test]
fn drain_moves_every_address_off_a_node_without_a_failed_request_and_undrain_lets_it_back() {
    use ferrolb_lab::probe::{longest_outage_ms, parse_records};
    use ferrolb_lab::speakers::{index_of, start_probe};
    let c = Cluster::start(3, &[]).unwrap();
    let env = &c.env;
    apply(env, &c.lab, &service_yaml("web", &[], "", BACKEND_PORT)).unwrap();
    let vip =
        ferrolb_lab::daemons::wait_ingress(env, "default", "web", 1, WAIT).unwrap()[0].clone();
    let owner = c.announcer("web", WAIT).unwrap();
    let target = std::net::SocketAddr::new(vip.parse().unwrap(), BACKEND_PORT);
    let mut probe = start_probe(&c.lab, target, 1000, 20, 1000).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let out = ok(env, &["drain", &owner]);
    assert!(out.contains(&format!("node/{owner} drained")), "{out}");
    let label = env
        .kubectl(&[
            "get",
            "node",
            &owner,
            "-o",
            r#"jsonpath={.metadata.labels.node\.kubernetes\.io/exclude-from-external-load-balancers}"#,
        ])
        .unwrap();
    assert_eq!(label, "ferrolb-drain");
    let successor = c.wait_announcer("web", Some(&owner), WAIT).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let _ = probe.terminate(Duration::from_secs(3));
    let records = parse_records(&probe.log_text());
    let failed: Vec<_> = records.iter().filter(|r| !r.ok()).collect();
    eprintln!(
        "drain of {owner}: {} of {} requests failed, longest outage {:?} ms; {successor} answers",
        failed.len(),
        records.len(),
        longest_outage_ms(&records)
    );
    assert!(records.len() > 100, "{} records", records.len());
    assert!(
        failed.is_empty(),
        "requests failed during the drain: {failed:?}\n{}",
        c.logs()
    );
    assert!(
        records
            .iter()
            .any(|r| r.node.as_deref() == Some(successor.as_str())),
        "the successor's backend answered"
    );
    // The drained node answers ARP for nothing.
    let answering = ferrolb_lab::speakers::answering(&c.lab, target.ip()).unwrap();
    assert_eq!(answering, vec![index_of(&successor)]);

    // Someone else's label is left alone, with an error saying so.
    let other = if index_of(&owner) == 1 {
        "node-2"
    } else {
        "node-1"
    };
    env.kubectl(&[
        "label",
        "node",
        other,
        "node.kubernetes.io/exclude-from-external-load-balancers=maintenance",
    ])
    .unwrap();
    let refused = ferrolb(env, &["undrain", other]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("set by someone else"),
        "{}",
        stderr(&refused)
    );

    let out = ok(env, &["undrain", &owner]);
    assert!(out.contains("undrained"), "{out}");
    let labels = env
        .kubectl(&["get", "node", &owner, "-o", "jsonpath={.metadata.labels}"])
        .unwrap();
    assert!(
        !labels.contains("exclude-from-external-load-balancers"),
        "{labels}"
    );
    let missing = ferrolb(env, &["drain", "node-9"]);
    assert!(
        stderr(&missing).contains("there is no Node named \"node-9\""),
        "{}",
        stderr(&missing)
    );
}
