//! The cluster lab (second layer): real kubelets, containerd, kube-proxy, kube-controller-manager
//! and kube-scheduler on the segment, running ferrolb's images from `deploy/` as shipped. One
//! story, because bringing a cluster up is the expensive part.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ferrolb_lab::cluster_lab::{ClusterLab, SAMPLE_APP, ferrolb_images};
use ferrolb_lab::daemons::wait_ingress;
use ferrolb_lab::observe::tcp_get;
use ferrolb_lab::probe::{longest_outage_ms, parse_records};
use ferrolb_lab::speakers::{answering, start_probe, wait_announcer};
use ferrolb_lab::{LabChild, Port, cmd};

fn jsonpath(c: &ClusterLab, args: &[&str], path: &str) -> String {
    c.env.jsonpath(args, path).unwrap_or_default()
}

/// Stops a probe loop and returns its records.
fn finish_probe(mut probe: LabChild) -> Vec<ferrolb_lab::probe::ProbeRecord> {
    let _ = probe.terminate(Duration::from_secs(3));
    parse_records(&probe.log_text())
}

/// The node that answered the client through `vip`.
fn answered_by(c: &ClusterLab, vip: IpAddr) -> Option<String> {
    tcp_get(&c.lab, Port::Client, SocketAddr::new(vip, 80))
        .ok()?
        .node
}

#[test]
fn installed_with_kubectl_apply_k_it_serves_real_pods_follows_them_fails_over_rolls_and_uninstalls()
{
    let images = ferrolb_images().unwrap();
    let c = ClusterLab::start(3, &images).unwrap();

    // `kubectl apply -k deploy/` as shipped: one Ready speaker per node, both controller replicas
    // Ready (the standby too), the Deployment Available.
    c.install_ferrolb().unwrap();
    let ns = ["-n", "ferrolb-system"];
    let ds = [&ns[..], &["get", "daemonset", "ferrolb-speaker"]].concat();
    assert_eq!(
        jsonpath(&c, &ds, "{.status.numberReady}"),
        "3",
        "{}",
        c.pods()
    );
    let dep = [&ns[..], &["get", "deployment", "ferrolb-controller"]].concat();
    assert_eq!(
        jsonpath(&c, &dep, "{.status.readyReplicas}"),
        "2",
        "{}",
        c.pods()
    );
    assert_eq!(
        jsonpath(
            &c,
            &dep,
            r#"{.status.conditions[?(@.type=="Available")].status}"#
        ),
        "True"
    );

    // The sample application, real pods behind real Services; the client reaches it through the
    // VIP and the real kube-proxy.
    c.apply(SAMPLE_APP).unwrap();
    c.env
        .kubectl(&["rollout", "status", "deployment/hello", "--timeout=50s"])
        .unwrap();
    let vip: IpAddr = wait_ingress(&c.env, "default", "hello", 1, Duration::from_secs(60)).unwrap()
        [0]
    .parse()
    .unwrap();
    let vip_local: IpAddr =
        wait_ingress(&c.env, "default", "hello-local", 1, Duration::from_secs(60)).unwrap()[0]
            .parse()
            .unwrap();
    for v in [vip, vip_local] {
        let node = cmd::wait_for(
            &format!("the client to reach the sample application at {v}"),
            Duration::from_secs(30),
            Duration::from_millis(200),
            || answered_by(&c, v),
        )
        .unwrap();
        assert!(node.starts_with("node-"), "{node}");
        assert_eq!(
            answering(&c.lab, v).unwrap().len(),
            1,
            "one node answers ARP for {v}"
        );
    }

    // `kubectl ferrolb status` on a real cluster: each node's speaker pod, Running and ready,
    // and the Services' announcing nodes.
    let plugin = ferrolb_lab::daemons::binary("kubectl-ferrolb").unwrap();
    let kc = c.env.kubeconfig().to_string_lossy().into_owned();
    let json = cmd::run(&[
        &plugin.to_string_lossy(),
        "--kubeconfig",
        &kc,
        "status",
        "-o",
        "json",
    ])
    .unwrap();
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let speakers = report["speakers"].as_array().cloned().unwrap_or_default();
    assert_eq!(speakers.len(), 3, "{json}");
    for sp in &speakers {
        assert!(
            sp["pod"]
                .as_str()
                .is_some_and(|p| p.starts_with("ferrolb-system/ferrolb-speaker-")),
            "{sp}"
        );
        assert!(
            sp["podState"]
                .as_str()
                .is_some_and(|s| s.starts_with("Running")),
            "{sp}"
        );
    }
    let announced: usize = speakers
        .iter()
        .filter_map(|s| s["announcing"].as_u64())
        .sum::<u64>() as usize;
    assert_eq!(
        announced, 2,
        "hello and hello-local, one announcing node each: {json}"
    );

    // externalTrafficPolicy: Local follows the pods: with one replica left, the node running it
    // announces, and the client lands on it.
    c.env
        .kubectl(&["scale", "deployment/hello", "--replicas=1"])
        .unwrap();
    let pod_node = cmd::wait_for(
        "one hello pod left",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            let out = jsonpath(
                &c,
                &["get", "pods", "-l", "app=hello"],
                "{.items[*].spec.nodeName}",
            );
            let nodes: Vec<&str> = out.split_whitespace().collect();
            (nodes.len() == 1).then(|| nodes[0].to_string())
        },
    )
    .unwrap();
    let announcer = cmd::wait_for(
        "hello-local to be announced by the node of its only pod",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            let a = wait_announcer(
                &c.env,
                "default",
                "hello-local",
                None,
                Duration::from_secs(1),
            )
            .ok()?;
            (a == pod_node).then_some(a)
        },
    )
    .unwrap();
    assert_eq!(
        answered_by(&c, vip_local).as_deref(),
        Some(announcer.as_str())
    );
    c.env
        .kubectl(&["scale", "deployment/hello", "--replicas=3"])
        .unwrap();
    c.env
        .kubectl(&["rollout", "status", "deployment/hello", "--timeout=50s"])
        .unwrap();

    // `kubectl rollout restart daemonset/ferrolb-speaker` loses no request of the probe loop.
    let target = SocketAddr::new(vip_local, 80);
    std::thread::sleep(Duration::from_secs(3)); // endpoints of the new pods reach every speaker
    let probe = start_probe(&c.lab, target, 15_000, 20, 1000).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    c.env
        .kubectl(&[
            "-n",
            "ferrolb-system",
            "rollout",
            "restart",
            "daemonset/ferrolb-speaker",
        ])
        .unwrap();
    c.rollout_status("daemonset/ferrolb-speaker").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let records = finish_probe(probe);
    let failed: Vec<_> = records.iter().filter(|r| !r.ok()).collect();
    eprintln!(
        "cluster lab: speaker rollout restart: {} of {} requests failed",
        failed.len(),
        records.len()
    );
    assert!(
        records.len() > 100,
        "the probe loop ran: {} records",
        records.len()
    );
    assert!(
        failed.is_empty(),
        "requests failed during the speakers' rolling restart: {failed:?}"
    );

    // `kubectl rollout restart deployment/ferrolb-controller` completes and changes no address.
    let before = jsonpath(
        &c,
        &["get", "services"],
        "{.items[*].status.loadBalancer.ingress[*].ip}",
    );
    c.env
        .kubectl(&[
            "-n",
            "ferrolb-system",
            "rollout",
            "restart",
            "deployment/ferrolb-controller",
        ])
        .unwrap();
    c.rollout_status("deployment/ferrolb-controller").unwrap();
    let after = jsonpath(
        &c,
        &["get", "services"],
        "{.items[*].status.loadBalancer.ingress[*].ip}",
    );
    assert_eq!(before, after);

    // Requests and limits against what the processes use: every ferrolb process's resident memory
    // stays under its container's limit (figures in BENCHMARKS.md, `bench-cluster-failover`).
    for (component, limit_path) in [
        ("ferrolb-speaker", ["daemonset", "ferrolb-speaker"]),
        ("ferrolb-controller", ["deployment", "ferrolb-controller"]),
    ] {
        let args = [&ns[..], &["get", limit_path[0], limit_path[1]]].concat();
        let limit = jsonpath(
            &c,
            &args,
            "{.spec.template.spec.containers[0].resources.limits.memory}",
        );
        let limit_mib: u64 = limit
            .trim_end_matches("Mi")
            .parse()
            .unwrap_or_else(|_| panic!("{limit}"));
        let rss: Vec<_> = c
            .ferrolb_rss()
            .into_iter()
            .filter(|(n, _, _)| n == component)
            .collect();
        assert!(!rss.is_empty(), "no {component} process found");
        for (name, node, kib) in rss {
            eprintln!(
                "cluster lab: {name} on node-{node}: RSS {:.1} MiB (limit {limit})",
                kib as f64 / 1024.0
            );
            assert!(
                kib / 1024 < limit_mib,
                "{name} on node-{node} uses {kib} KiB, over its {limit} limit"
            );
        }
    }

    // A node death (its cable pulled): another node answers for the VIP, within the failover
    // figures of BENCHMARKS.md (printed here; measured by `ferrolb-lab bench-cluster-failover`).
    let owner = wait_announcer(
        &c.env,
        "default",
        "hello-local",
        None,
        Duration::from_secs(30),
    )
    .unwrap();
    let owner_i = ferrolb_lab::speakers::index_of(&owner);
    let probe = start_probe(&c.lab, target, 1500, 20, 1000).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    c.set_link(owner_i, false).unwrap();
    let successor = cmd::wait_for(
        "another node to answer after the owner's death",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || answered_by(&c, vip_local).filter(|n| n != &owner),
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let records = finish_probe(probe);
    let outage = longest_outage_ms(&records);
    eprintln!(
        "cluster lab: node death of {owner}: {successor} answers; longest outage {outage:?} ms"
    );
    c.set_link(owner_i, true).unwrap();
    assert!(
        records
            .iter()
            .any(|r| r.node.as_deref() == Some(successor.as_str()))
    );

    // `kubectl delete -k deploy/` removes everything and leaves no address announced.
    let deploy = ferrolb_lab::workspace_root().join("deploy");
    c.env
        .kubectl_timeout(
            &["delete", "-k", &deploy.to_string_lossy(), "--timeout=150s"],
            Duration::from_secs(180),
        )
        .unwrap();
    let crds = c.env.kubectl(&["get", "crd", "-o", "name"]).unwrap();
    assert!(!crds.contains("ferrolb.io"), "{crds}");
    cmd::wait_for(
        "no node to answer for the VIPs",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            (answering(&c.lab, vip).ok()?.is_empty()
                && answering(&c.lab, vip_local).ok()?.is_empty())
            .then_some(())
        },
    )
    .unwrap();
}

/// The control-plane VIP (outside the service pool 192.0.2.64/26).
const CP_VIP: &str = "192.0.2.60";

#[test]
fn the_control_plane_speaker_runs_as_static_pods_from_its_own_manifest_and_one_node_holds_the_vip()
{
    let images = ferrolb_images().unwrap();
    let c = ClusterLab::start(3, &images).unwrap();
    let bin = ferrolb_lab::daemons::binary("ferrolb-speaker").unwrap();
    let bin = bin.to_string_lossy().into_owned();
    let key = c.lab.dir().join("control-plane.key");
    std::fs::write(&key, "5f".repeat(32) + "\n").unwrap();
    let key = key.to_string_lossy().into_owned();
    let ca = c.env.ca_path().to_string_lossy().into_owned();
    let peers = "1=192.0.2.11:7480,2=192.0.2.12:7480,3=192.0.2.13:7480";
    for i in 1..=3 {
        let data = c.node_dir(i).join("ferrolb-control-plane");
        let id = i.to_string();
        // What an operator runs on each control-plane node (kubeadm: before `kubeadm init`).
        let yaml = cmd::run(&[
            &bin,
            "manifest",
            "control-plane",
            "--vip",
            CP_VIP,
            "--interface",
            "eth0",
            "--id",
            &id,
            "--peers",
            peers,
            "--key-file",
            &key,
            "--data-dir",
            &data.to_string_lossy(),
            "--health-url",
            "https://192.0.2.2:6443/readyz",
            "--health-ca",
            &ca,
        ])
        .unwrap();
        if i == 1 {
            // The real API server takes the manifest as it is (the kubelet's mirror pod).
            let file = c.lab.dir().join("cp-manifest.yaml");
            std::fs::write(&file, &yaml).unwrap();
            let out = c
                .env
                .kubectl(&["apply", "--dry-run=server", "-f", &file.to_string_lossy()])
                .unwrap();
            assert!(
                out.contains("pod/ferrolb-control-plane created (server dry run)"),
                "{out}"
            );
        }
        c.add_static_pod(i, "ferrolb-control-plane.yaml", &yaml)
            .unwrap();
    }
    // Every kubelet runs its static pod; their mirror pods show in kube-system.
    cmd::wait_for(
        "three running control-plane speaker pods",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || {
            let phases = jsonpath(
                &c,
                &[
                    "-n",
                    "kube-system",
                    "get",
                    "pods",
                    "-l",
                    "app.kubernetes.io/component=control-plane",
                ],
                "{.items[*].status.phase}",
            );
            (phases == "Running Running Running").then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", c.pods()));
    let vip: IpAddr = CP_VIP.parse().unwrap();
    let holds = |i: usize| {
        c.lab
            .exec(Port::Node(i), &["ip", "-o", "addr", "show", "dev", "eth0"])
            .unwrap_or_default()
            .contains(&format!(" {CP_VIP}/32 "))
    };
    // One leader holds the VIP on its interface and is the only one answering ARP for it.
    let holder = cmd::wait_for(
        "one node to hold and announce the control-plane VIP",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            let answering = answering(&c.lab, vip).ok()?;
            let holding: Vec<usize> = (1..=3).filter(|&i| holds(i)).collect();
            (answering.len() == 1 && holding == answering).then(|| answering[0])
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", c.pods()));
    // Its node dies: another one takes the VIP; the isolated one has dropped it.
    c.set_link(holder, false).unwrap();
    let successor = cmd::wait_for(
        "another node to take the control-plane VIP",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let a = answering(&c.lab, vip).ok()?;
            (a.len() == 1 && a[0] != holder).then(|| a[0])
        },
    )
    .unwrap();
    assert!(holds(successor));
    cmd::wait_for(
        "the isolated old leader to drop the VIP",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || (!holds(holder)).then_some(()),
    )
    .unwrap();
    c.set_link(holder, true).unwrap();
}
