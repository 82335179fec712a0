//! `ferrolb-lab bench-cluster-failover`: node deaths on the cluster lab, ferrolb installed from its
//! images with `kubectl apply -k deploy/`, the client's probe loop (a TCP request every 20 ms,
//! 100 ms timeout) against the sample application's `externalTrafficPolicy: Local` VIP, so that
//! every answered request went through the announcing node's own kube-proxy to its own pod.
//! Each trial cuts the owner's cable, waits until another node answers, plugs the cable back in
//! and lets the cluster settle before the next.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::bench_speaker::{Death, Outages};
use crate::cluster_lab::{ClusterLab, SAMPLE_APP, ferrolb_images};
use crate::cmd;
use crate::daemons::wait_ingress;
use crate::netns::Port;
use crate::observe::tcp_get;
use crate::probe::{longest_outage_ms, parse_records};
use crate::speakers::{index_of, start_probe, wait_announcer};

/// Figures of one run: node-death outages, and the resident memory of each ferrolb process.
#[derive(Debug)]
pub struct ClusterFigures {
    pub outages: Outages,
    /// (process name, node, resident KiB) of every ferrolb container process, after the trials.
    pub rss: Vec<(String, usize, u64)>,
}

pub fn run(trials: usize) -> anyhow::Result<ClusterFigures> {
    let images = ferrolb_images()?;
    let c = ClusterLab::start(3, &images)?;
    c.install_ferrolb()?;
    c.apply(SAMPLE_APP)?;
    c.env
        .kubectl(&["rollout", "status", "deployment/hello", "--timeout=50s"])?;
    let vip: IpAddr =
        wait_ingress(&c.env, "default", "hello-local", 1, Duration::from_secs(60))?[0].parse()?;
    let target = SocketAddr::new(vip, 80);
    let mut samples = Vec::new();
    for trial in 0..trials {
        let owner = wait_announcer(
            &c.env,
            "default",
            "hello-local",
            None,
            Duration::from_secs(30),
        )?;
        let owner_i = index_of(&owner);
        cmd::wait_for(
            "the owner to answer the client",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || (tcp_get(&c.lab, Port::Client, target).ok()?.node? == owner).then_some(()),
        )?;
        let mut probe = start_probe(&c.lab, target, 1500, 20, 100)?;
        std::thread::sleep(Duration::from_secs(1));
        c.set_link(owner_i, false)?;
        let answered = cmd::wait_for(
            "another node to answer",
            Duration::from_secs(20),
            Duration::from_millis(50),
            || {
                tcp_get(&c.lab, Port::Client, target)
                    .ok()?
                    .node
                    .filter(|n| n != &owner)
            },
        );
        std::thread::sleep(Duration::from_millis(500));
        let _ = probe.terminate(Duration::from_secs(3));
        c.set_link(owner_i, true)?;
        answered?;
        let records = parse_records(&probe.log_text());
        let outage = longest_outage_ms(&records).unwrap_or(0);
        eprintln!("trial {trial}: {owner} died, outage {outage} ms");
        samples.push(outage);
        // The returning node rejoins and settles (fail-back is make-before-break).
        std::thread::sleep(Duration::from_secs(4));
    }
    samples.sort_unstable();
    let rss = c.ferrolb_rss();
    Ok(ClusterFigures {
        outages: Outages {
            death: Death::Node,
            samples,
        },
        rss,
    })
}
