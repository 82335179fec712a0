//! Restart safety and leader changes on the real API server: a leader killed in the middle of a
//! burst of 500 Service creations, the standby taking over, and a fresh replica after that, never
//! change an assigned address and never hand one out twice. A shrunk pool re-homes exactly the
//! Services outside it, and a release whose status write the API server refuses is retried until
//! the status shows it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ferrolb_lab::daemons::{
    ControllerOptions, apply, http_get, installed_cluster, lease_holder, service_yaml,
    start_controller, wait_event, wait_ingress, wait_leader,
};
use ferrolb_lab::netns::Port;
use ferrolb_lab::{KubeEnv, cmd};

fn assignments(env: &KubeEnv) -> BTreeMap<String, String> {
    let out = env
        .kubectl(&["-n", "default", "get", "svc", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.loadBalancer.ingress[*].ip}{\"\\n\"}{end}"])
        .unwrap();
    out.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(n, _)| n.starts_with("burst-"))
        .map(|(n, ip)| (n.to_string(), ip.to_string()))
        .collect()
}

fn burst(range: std::ops::Range<usize>) -> String {
    let v6 = "  ipFamilyPolicy: SingleStack\n  ipFamilies: [IPv6]\n";
    range
        .map(|i| service_yaml(&format!("burst-{i:03}"), &[], v6, 80))
        .collect()
}

/// Waits until `GET path` on the controller whose metrics are served at `addr` answers with a
/// status line starting `status` and a body with a line equal to `line` (any line when empty).
fn wait_http(lab: &ferrolb_lab::Lab, addr: &str, path: &str, status: &str, line: &str) {
    cmd::wait_for(
        &format!("GET {addr}{path}: {status} with line {line:?}"),
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let got = http_get(lab, Port::Api, addr, path).ok()?;
            (got.starts_with(status) && (line.is_empty() || got.lines().any(|l| l.trim() == line)))
                .then_some(())
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e:#}; last answer:\n{}",
            http_get(lab, Port::Api, addr, path).unwrap_or_else(|e| format!("{e:#}"))
        )
    });
}

/// Issue 11: Ready means healthy, not leading. A 2-replica Deployment becomes Available only when
/// both replicas are Ready, and a rolling update waits for it; the standby must be Ready too.
/// Leadership shows in the `ferrolb_controller_leader` gauge. When the leader goes, the standby
/// takes over and stays Ready.
#[test]
fn leader_and_standby_are_both_ready_and_the_leader_metric_tells_them_apart() {
    let (lab, env) = installed_cluster().unwrap();
    let (a_addr, b_addr) = ("127.0.0.1:7472", "127.0.0.1:7473");
    let opts = |identity: &str, addr: &str| ControllerOptions {
        identity: identity.into(),
        extra_args: vec!["--metrics-bind-address".into(), addr.into()],
        ..Default::default()
    };
    let mut a = start_controller(&lab, &env, &opts("controller-a", a_addr)).unwrap();
    wait_leader(&env, Some("controller-a")).unwrap();
    let b = start_controller(&lab, &env, &opts("controller-b", b_addr)).unwrap();

    for addr in [a_addr, b_addr] {
        wait_http(&lab, addr, "/readyz", "HTTP/1.0 200", "ok");
    }
    wait_http(
        &lab,
        a_addr,
        "/metrics",
        "HTTP/1.0 200",
        "ferrolb_controller_leader 1",
    );
    wait_http(
        &lab,
        b_addr,
        "/metrics",
        "HTTP/1.0 200",
        "ferrolb_controller_leader 0",
    );
    assert_eq!(lease_holder(&env), "controller-a");
    assert!(b.log_text().contains("standing by"), "{}", b.log_text());

    // The leader hands over on SIGTERM: the standby leads, and is ready once its watches synced.
    let status = a.terminate(Duration::from_secs(5)).unwrap();
    assert!(status.success(), "{status}");
    wait_leader(&env, Some("controller-b")).unwrap();
    wait_http(
        &lab,
        b_addr,
        "/metrics",
        "HTTP/1.0 200",
        "ferrolb_controller_leader 1",
    );
    wait_http(&lab, b_addr, "/readyz", "HTTP/1.0 200", "ok");
    assert!(b.log_text().contains("became leader"), "{}", b.log_text());
}

#[test]
fn leader_killed_mid_burst_and_restarts_never_change_an_address() {
    let (lab, env) = installed_cluster().unwrap();
    apply(&env, &lab, "apiVersion: ferrolb.io/v1alpha1\nkind: IPAddressPool\nmetadata:\n  name: big\nspec:\n  addresses: [\"2001:db8:2::/64\"]\n").unwrap();
    let mut a = start_controller(
        &lab,
        &env,
        &ControllerOptions {
            identity: "controller-a".into(),
            ..Default::default()
        },
    )
    .unwrap();
    wait_leader(&env, Some("controller-a")).unwrap();
    let mut b = start_controller(
        &lab,
        &env,
        &ControllerOptions {
            identity: "controller-b".into(),
            ..Default::default()
        },
    )
    .unwrap();

    apply(&env, &lab, &burst(0..250)).unwrap();
    a.kill().unwrap(); // SIGKILL: no goodbye, the lease must expire.
    apply(&env, &lab, &burst(250..500)).unwrap();

    let all = cmd::wait_for(
        "500 Services with an address",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || {
            let m = assignments(&env);
            (m.len() == 500 && m.values().all(|ip| !ip.is_empty() && !ip.contains(' ')))
                .then_some(m)
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n--- controller-b log ---\n{}", b.log_text()));
    assert_eq!(lease_holder(&env), "controller-b");
    let unique: BTreeSet<&String> = all.values().collect();
    assert_eq!(unique.len(), 500, "an address was handed out twice");
    assert!(
        all.values().all(|ip| ip.starts_with("2001:db8:2::")),
        "{all:?}"
    );

    // The standby-turned-leader stops; a new replica takes over and changes nothing.
    // SIGTERM: the leader hands its lease over instead of letting it expire.
    let status = b.terminate(Duration::from_secs(5)).unwrap();
    assert!(status.success(), "{status}");
    assert!(
        b.log_text().contains("leader lease released"),
        "{}",
        b.log_text()
    );
    assert_eq!(lease_holder(&env), "");
    let _c = start_controller(
        &lab,
        &env,
        &ControllerOptions {
            identity: "controller-c".into(),
            ..Default::default()
        },
    )
    .unwrap();
    apply(&env, &lab, &burst(500..501)).unwrap();
    let ip = wait_ingress(&env, "default", "burst-500", 1, Duration::from_secs(60)).unwrap();
    assert!(!unique.contains(&ip[0]), "{} was already assigned", ip[0]);
    let after = assignments(&env);
    for (name, ip) in &all {
        assert_eq!(after.get(name), Some(ip), "{name} changed");
    }
    assert_eq!(lease_holder(&env), "controller-c");
    let assigned = env
        .kubectl(&[
            "get",
            "ipp",
            "big",
            "-o",
            "jsonpath={.status.assignedIPv6}/{.status.availableIPv6}",
        ])
        .unwrap();
    assert_eq!(assigned, format!("501/{}", (1u128 << 64) - 501));
}

#[test]
fn a_shrunk_pool_rehomes_exactly_the_services_outside_it() {
    let (lab, env) = installed_cluster().unwrap();
    let pool = |addrs: &str| {
        format!(
            "apiVersion: ferrolb.io/v1alpha1\nkind: IPAddressPool\nmetadata:\n  name: main\nspec:\n  addresses: [{addrs}]\n"
        )
    };
    apply(&env, &lab, &pool("\"192.0.2.64/29\"")).unwrap();
    let c = start_controller(&lab, &env, &ControllerOptions::default()).unwrap();
    for i in 0..6 {
        apply(&env, &lab, &service_yaml(&format!("s{i}"), &[], "", 80)).unwrap();
        assert_eq!(
            wait_ingress(
                &env,
                "default",
                &format!("s{i}"),
                1,
                Duration::from_secs(30)
            )
            .unwrap(),
            vec![format!("192.0.2.{}", 64 + i)]
        );
    }
    // A spare pool appears and the main pool shrinks to .64-.66: s3..s5 move to the spare pool,
    // with an Event saying why; s0..s2 keep their addresses.
    apply(&env, &lab, "apiVersion: ferrolb.io/v1alpha1\nkind: IPAddressPool\nmetadata:\n  name: spare\nspec:\n  addresses: [\"192.0.2.96/29\"]\n").unwrap();
    apply(&env, &lab, &pool("\"192.0.2.64-192.0.2.66\"")).unwrap();
    for i in 3..6 {
        let ev = wait_event(
            &env,
            "default",
            &format!("s{i}"),
            "IPReassigned",
            Duration::from_secs(30),
        )
        .unwrap();
        assert!(
            ev.contains(&format!("192.0.2.{}", 64 + i)) && ev.contains("spare"),
            "{ev}"
        );
    }
    for i in 0..6 {
        let ip = ingress(&env, &format!("s{i}"));
        let want = if i < 3 {
            format!("192.0.2.{}", 64 + i)
        } else {
            format!("192.0.2.{}", 96 + i - 3)
        };
        assert_eq!(ip, want, "s{i}");
        let events = ferrolb_lab::daemons::events_for(&env, "default", &format!("s{i}")).unwrap();
        assert_eq!(
            events.iter().any(|e| e.starts_with("IPReassigned")),
            i >= 3,
            "s{i}: {events:?}"
        );
    }

    // RequireDualStack: its IPv6 address leaves every pool and no pool has another one. Only the
    // stranded address goes (an address leaves a Service only when it left every pool); the IPv4
    // address stays, and the IPv6 one comes back when a pool serves IPv6 again.
    let ds = |addrs: &str| {
        format!(
            "apiVersion: ferrolb.io/v1alpha1\nkind: IPAddressPool\nmetadata:\n  name: ds\nspec:\n  addresses: [{addrs}]\n"
        )
    };
    apply(&env, &lab, &ds("\"192.0.2.112/30\", \"2001:db8:5::/126\"")).unwrap();
    let dual = "  ipFamilyPolicy: RequireDualStack\n  ipFamilies: [IPv4, IPv6]\n";
    apply(&env, &lab, &service_yaml("d", &[], dual, 80)).unwrap();
    assert_eq!(
        wait_ingress(&env, "default", "d", 2, Duration::from_secs(30)).unwrap(),
        vec!["192.0.2.112", "2001:db8:5::"]
    );
    apply(&env, &lab, &ds("\"192.0.2.112/30\"")).unwrap();
    let ev = wait_event(&env, "default", "d", "IPReleased", Duration::from_secs(30)).unwrap();
    assert!(
        ev.contains("released 2001:db8:5::") && ev.contains("keeps 192.0.2.112"),
        "{ev}"
    );
    wait_ingress_exactly(&env, "d", "192.0.2.112");
    apply(&env, &lab, &ds("\"192.0.2.112/30\", \"2001:db8:5::/126\"")).unwrap();
    assert_eq!(
        wait_ingress(&env, "default", "d", 2, Duration::from_secs(30)).unwrap(),
        vec!["192.0.2.112", "2001:db8:5::"]
    );

    // The same release while the API server refuses d's status writes (a ValidatingAdmissionPolicy
    // of the real API server): the status keeps showing the released address until a write
    // succeeds, and the controller retries until it does.
    freeze(&env, &lab, "d");
    apply(&env, &lab, &ds("\"192.0.2.112/30\"")).unwrap();
    wait_refused(&c, "default/d");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ingress(&env, "d"), "192.0.2.112 2001:db8:5::");
    thaw(&env, "d");
    wait_ingress_exactly(&env, "d", "192.0.2.112");
    let ev = wait_event(
        &env,
        "default",
        "d",
        "no longer held",
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(
        ev.starts_with("IPReleased")
            && ev.contains("released 2001:db8:5::")
            && ev.contains("keeps 192.0.2.112"),
        "{ev}"
    );

    // A move while the API server refuses the moving Service's status writes: the address it
    // leaves is handed to no other Service while its status still shows it, even when a pool
    // offers it again, and is free once the status moved.
    let mv = |addrs: &str| {
        format!(
            "apiVersion: ferrolb.io/v1alpha1\nkind: IPAddressPool\nmetadata:\n  name: mv\nspec:\n  addresses: [{addrs}]\n"
        )
    };
    let in_mv = [("ferrolb.io/address-pool", "mv")];
    // What pool mv reports assigned / available, as the API server shows it.
    let counts = |want: &'static str| {
        cmd::wait_for(
            &format!("pool mv assigned/available {want}"),
            Duration::from_secs(30),
            Duration::from_millis(200),
            || {
                let got = env
                    .kubectl(&[
                        "get",
                        "ipaddresspool",
                        "mv",
                        "-o",
                        "jsonpath={.status.assignedIPv4}/{.status.availableIPv4}",
                    ])
                    .ok()?;
                (got == want).then_some(())
            },
        )
        .unwrap();
    };
    apply(&env, &lab, &mv("\"192.0.2.120/30\"")).unwrap();
    apply(&env, &lab, &service_yaml("m", &in_mv, "", 80)).unwrap();
    wait_ingress_exactly(&env, "m", "192.0.2.120");
    freeze(&env, &lab, "m");
    apply(&env, &lab, &mv("\"192.0.2.121-192.0.2.123\"")).unwrap();
    wait_refused(&c, "default/m");
    // .120 is back in the pool, still held for m (assigned: .121 for m, .120 until m's status
    // moves; available: .122 and .123).
    apply(&env, &lab, &mv("\"192.0.2.120/30\"")).unwrap();
    counts("2/2");
    apply(&env, &lab, &service_yaml("second", &in_mv, "", 80)).unwrap();
    wait_ingress_exactly(&env, "second", "192.0.2.122");
    assert_eq!(ingress(&env, "m"), "192.0.2.120", "m's status is refused");
    thaw(&env, "m");
    wait_ingress_exactly(&env, "m", "192.0.2.121");
    let ev = wait_event(
        &env,
        "default",
        "m",
        "IPReassigned",
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(ev.contains("now 192.0.2.121"), "{ev}");
    // m's status moved: .120 is free again.
    apply(&env, &lab, &service_yaml("third", &in_mv, "", 80)).unwrap();
    wait_ingress_exactly(&env, "third", "192.0.2.120");

    // A Service may get back the address it is releasing: m asks for .123 while its writes are
    // refused (it holds .123, its status still shows .121, which is held for it), then asks for
    // .121 again and has it back, with nothing left to write; .123 is free again.
    freeze(&env, &lab, "m");
    let m_asking =
        |ip: &str| service_yaml("m", &[in_mv[0], ("ferrolb.io/loadBalancerIPs", ip)], "", 80);
    apply(&env, &lab, &m_asking("192.0.2.123")).unwrap();
    counts("4/0");
    apply(&env, &lab, &m_asking("192.0.2.121")).unwrap();
    counts("3/1");
    thaw(&env, "m");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ingress(&env, "m"), "192.0.2.121");
}

/// Makes the API server refuse every write to the status of Service `name` in `default` (a
/// ValidatingAdmissionPolicy), and waits until it does.
fn freeze(env: &KubeEnv, lab: &ferrolb_lab::Lab, name: &str) {
    apply(env, lab, &FREEZE.replace("NAME", name)).unwrap();
    cmd::wait_for(
        &format!("the policy refusing {name}'s status writes"),
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            env.kubectl(&[
                "-n",
                "default",
                "patch",
                "svc",
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"loadBalancer":{"ingress":[]}}}"#,
                "--dry-run=server",
            ])
            .is_err()
            .then_some(())
        },
    )
    .unwrap();
}

/// Lets the API server take `name`'s status writes again.
fn thaw(env: &KubeEnv, name: &str) {
    env.kubectl(&[
        "delete",
        "validatingadmissionpolicybinding,validatingadmissionpolicy",
        &format!("freeze-{name}"),
    ])
    .unwrap();
}

/// Waits until the controller's log shows a refused status write of `service` (`ns/name`).
fn wait_refused(c: &ferrolb_lab::LabChild, service: &str) {
    cmd::wait_for(
        &format!("a refused status write of {service} in the controller's log"),
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            c.log_text()
                .lines()
                .any(|l| l.contains("writing the Service status failed") && l.contains(service))
                .then_some(())
        },
    )
    .unwrap();
}

const FREEZE: &str = "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: freeze-NAME
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [\"\"]
      apiVersions: [v1]
      operations: [UPDATE]
      resources: [services/status]
  validations:
  - expression: \"object.metadata.name != 'NAME'\"
    message: status of NAME frozen by the test
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: freeze-NAME
spec:
  policyName: freeze-NAME
  validationActions: [Deny]
";

/// The ingress addresses Service `name` in `default` shows, space-separated.
fn ingress(env: &KubeEnv, name: &str) -> String {
    env.kubectl(&[
        "-n",
        "default",
        "get",
        "svc",
        name,
        "-o",
        "jsonpath={.status.loadBalancer.ingress[*].ip}",
    ])
    .unwrap()
}

/// Waits (at most 30 s) until Service `name` in `default` shows exactly `want` as its ingress.
fn wait_ingress_exactly(env: &KubeEnv, name: &str, want: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = ingress(env, name);
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name}: ingress {got:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_api_server_outage_changes_no_address() {
    let (lab, mut env) = installed_cluster().unwrap();
    apply(&env, &lab, "apiVersion: ferrolb.io/v1alpha1\nkind: IPAddressPool\nmetadata:\n  name: p\nspec:\n  addresses: [\"192.0.2.64/28\"]\n").unwrap();
    let mut c = start_controller(&lab, &env, &ControllerOptions::default()).unwrap();
    let mut before = BTreeMap::new();
    for i in 0..4 {
        let name = format!("o{i}");
        apply(&env, &lab, &service_yaml(&name, &[], "", 80)).unwrap();
        before.insert(
            name.clone(),
            wait_ingress(&env, "default", &name, 1, Duration::from_secs(30)).unwrap(),
        );
    }
    // A Service deleted just before the outage frees an address the others must not take over.
    env.kubectl(&["-n", "default", "delete", "svc", "o1"])
        .unwrap();
    before.remove("o1");
    std::thread::sleep(Duration::from_secs(1));

    env.stop().unwrap();
    // Without the API server the leader cannot renew its lease: after the renew deadline (3 s) it
    // stops writing and exits, as a pod would be restarted by its Deployment.
    let status = c
        .wait_timeout(Duration::from_secs(20))
        .unwrap()
        .expect("the controller should stop once its lease cannot be renewed");
    assert!(!status.success());
    assert!(
        c.log_text().contains("lost the leader lease"),
        "{}",
        c.log_text()
    );

    env.restart(&lab).unwrap();
    let _c2 = start_controller(
        &lab,
        &env,
        &ControllerOptions {
            identity: "controller-b".into(),
            ..Default::default()
        },
    )
    .unwrap();
    apply(&env, &lab, &service_yaml("after", &[], "", 80)).unwrap();
    let after = wait_ingress(&env, "default", "after", 1, Duration::from_secs(60)).unwrap();
    // The freed address (lowest free: o1's) is reused; nothing that was assigned moved.
    assert_eq!(after, vec!["192.0.2.65".to_string()]);
    for (name, ips) in &before {
        let now = ingress(&env, name);
        assert_eq!(&now, &ips.join(" "), "{name} changed across the outage");
    }
}
