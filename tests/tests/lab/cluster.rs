//! The cluster lab (second layer): real kubelets, containerd, kube-proxy, kube-controller-manager
//! and kube-scheduler on the segment, running what users run.

use std::time::Duration;

use ferrolb_lab::cluster_lab::{ClusterLab, SAMPLE_APP};
use ferrolb_lab::{Port, cmd};

#[test]
fn real_kubelets_run_the_sample_application_and_kube_proxy_forwards_to_its_pods() {
    let c = ClusterLab::start(2, &[]).unwrap();
    let file = c.lab.dir().join("hello.yaml");
    std::fs::write(&file, SAMPLE_APP).unwrap();
    c.env
        .kubectl(&["apply", "-f", &file.to_string_lossy()])
        .unwrap();
    c.env
        .kubectl(&["rollout", "status", "deployment/hello", "--timeout=120s"])
        .unwrap();
    let ip = c
        .env
        .kubectl(&[
            "get",
            "service",
            "hello",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .unwrap();
    // From a node, through the real kube-proxy's cluster-IP rules, to a real pod.
    let answer = cmd::wait_for(
        "the sample application through its cluster IP",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let script = format!("exec 3<>/dev/tcp/{ip}/80; cat <&3");
            let out = c
                .lab
                .exec(Port::Node(1), &["timeout", "3", "bash", "-c", &script])
                .ok()?;
            let out = out.trim().to_string();
            out.starts_with("node-").then_some(out)
        },
    )
    .unwrap();
    assert!(answer == "node-1" || answer == "node-2", "{answer}");
}
