//! `ferrolb-lab bench-controller`: the controller against the real API server at scale. Creates N
//! Services (IPv6 single-stack, from a /64 pool) and measures, with a watch of its own, the time
//! from each Service's creation to its address being visible, plus the controller's memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;

use crate::KubeEnv;
use crate::daemons::{ControllerOptions, apply, start_controller};

/// Where the benchmark's controller serves /metrics (in the lab's API namespace).
const METRICS: &str = "127.0.0.1:7472";

/// Figures of one run.
#[derive(Debug)]
pub struct Figures {
    pub services: usize,
    pub rate: Option<u32>,
    pub create_seconds: f64,
    pub all_assigned_seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub controller_rss_kib: u64,
    pub controller_peak_rss_kib: u64,
    /// The controller's own share of the latency, from its `allocation_seconds` histogram (a
    /// Service change seen to its status written): the upper bounds, in ms, of the buckets that
    /// hold the median and the 99th percentile.
    pub controller_p50_le_ms: f64,
    pub controller_p99_le_ms: f64,
}

/// The bucket upper bounds (ms) holding the median and the 99th percentile of a Prometheus
/// histogram `name` in `text`.
fn histogram_quantiles(text: &str, name: &str) -> Option<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|l| {
            let (le, rest) = l.split_once("\"}")?;
            let count: f64 = rest.trim().parse().ok()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le * 1000.0, count))
        })
        .collect();
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    let at = |q: f64| {
        buckets
            .iter()
            .find(|(_, c)| *c >= total * q)
            .map(|(le, _)| *le)
    };
    Some((at(0.5)?, at(0.99)?))
}

/// What runs while the Services are created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The controller runs while the Services are created: latency from creation to address.
    Live,
    /// No controller: the figures are those of the API server alone accepting the creations (the
    /// floor under any controller's "all assigned" time).
    ApiOnly,
    /// The Services are created first, with no controller running; then the controller starts and
    /// the figure is the time from its start until every Service has an address: the
    /// controller's own throughput, without the API server's cost of creating Services (which
    /// grows with their number: kube-apiserver 1.34 lists every IPAddress object to update its
    /// allocator metrics on each ClusterIP allocation).
    Backlog,
}

/// Runs the benchmark: `services` creations at `rate` per second (`None`: as fast as 32
/// concurrent requests go).
pub fn run(services: usize, rate: Option<u32>, mode: Mode) -> anyhow::Result<Figures> {
    let (lab, env) = crate::daemons::installed_cluster()?;
    env.kubectl(&["create", "namespace", "bench"])?;
    apply(
        &env,
        &lab,
        "apiVersion: ferrolb.io/v1alpha1\nkind: IPAddressPool\nmetadata:\n  name: bench\nspec:\n  addresses: [\"2001:db8:3::/64\"]\n",
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let backlog = match mode {
        Mode::ApiOnly => return rt.block_on(measure(&env, services, rate, false)),
        Mode::Backlog => Some(rt.block_on(measure(&env, services, rate, false))?),
        Mode::Live => None,
    };
    let started = Instant::now();
    let controller = start_controller(
        &lab,
        &env,
        &ControllerOptions {
            extra_args: vec![
                "--log-level".into(),
                std::env::var("FERROLB_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
                "--metrics-bind-address".into(),
                METRICS.into(),
            ],
            ..Default::default()
        },
    )?;
    let mut figures = match backlog {
        Some(created) => {
            let all = rt.block_on(wait_all_assigned(&env, services))?;
            Figures {
                all_assigned_seconds: all.duration_since(started).as_secs_f64(),
                ..created
            }
        }
        None => {
            crate::daemons::wait_leader(&env, None)?;
            rt.block_on(measure(&env, services, rate, true))?
        }
    };
    let status = std::fs::read_to_string(format!("/proc/{}/status", controller.pid()))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    figures.controller_rss_kib = field("VmRSS:");
    figures.controller_peak_rss_kib = field("VmHWM:");
    let metrics = crate::daemons::http_get(&lab, crate::Port::Api, METRICS, "/metrics")?;
    (figures.controller_p50_le_ms, figures.controller_p99_le_ms) =
        histogram_quantiles(&metrics, "ferrolb_controller_allocation_seconds")
            .unwrap_or((f64::NAN, f64::NAN));
    Ok(figures)
}

/// Waits (at most 600 s) until `services` Services in namespace `bench` have an address; returns
/// when the last one was seen.
async fn wait_all_assigned(env: &KubeEnv, services: usize) -> anyhow::Result<Instant> {
    let client = env.client().await?;
    let api: Api<Service> = Api::namespaced(client, "bench");
    let mut assigned = std::collections::BTreeSet::new();
    let stream = watcher::watcher(api, watcher::Config::default());
    futures::pin_mut!(stream);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while assigned.len() < services {
        let ev = tokio::time::timeout_at(deadline, stream.try_next())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "only {} of {services} Services got an address within 600 s",
                    assigned.len()
                )
            })??;
        if let Some(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) = ev
            && s.status
                .and_then(|st| st.load_balancer)
                .and_then(|lb| lb.ingress)
                .is_some_and(|i| !i.is_empty())
            && let Some(name) = s.metadata.name
        {
            assigned.insert(name);
        }
    }
    Ok(Instant::now())
}

async fn measure(
    env: &KubeEnv,
    services: usize,
    rate: Option<u32>,
    wait_assigned: bool,
) -> anyhow::Result<Figures> {
    let client = env.client().await?;
    let api: Api<Service> = Api::namespaced(client, "bench");
    let assigned: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::default();
    let seen = assigned.clone();
    let watch = tokio::spawn(
        watcher::watcher(api.clone(), watcher::Config::default()).try_for_each(move |ev| {
            let seen = seen.clone();
            async move {
                if let watcher::Event::Apply(s) | watcher::Event::InitApply(s) = ev {
                    let has_ip = s
                        .status
                        .and_then(|st| st.load_balancer)
                        .and_then(|lb| lb.ingress)
                        .is_some_and(|i| !i.is_empty());
                    if has_ip && let Some(name) = s.metadata.name {
                        seen.lock()
                            .map(|mut m| m.entry(name).or_insert_with(Instant::now).to_owned())
                            .ok();
                    }
                }
                Ok(())
            }
        }),
    );
    // Let the watch establish before the first creation.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let created: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::default();
    let start = Instant::now();
    let interval = rate.map(|r| Duration::from_secs_f64(1.0 / f64::from(r.max(1))));
    let jobs = futures::stream::iter(0..services).map(|i| {
        let api = api.clone();
        let created = created.clone();
        async move {
            if let Some(iv) = interval {
                let due = start + iv * i as u32;
                tokio::time::sleep_until(due.into()).await;
            }
            let name = format!("svc-{i:05}");
            let svc: Service = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "spec": {"type": "LoadBalancer", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"], "allocateLoadBalancerNodePorts": false,
                         "selector": {"app": "bench"}, "ports": [{"port": 80, "protocol": "TCP"}]}
            }))?;
            api.create(&PostParams::default(), &svc).await?;
            if let Ok(mut m) = created.lock() {
                m.insert(name, Instant::now());
            }
            anyhow::Ok(())
        }
    });
    let results: Vec<anyhow::Result<()>> = jobs
        .buffer_unordered(if rate.is_some() { 64 } else { 32 })
        .collect()
        .await;
    for r in results {
        r?;
    }
    let create_seconds = start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(600);
    if wait_assigned {
        loop {
            let n = assigned.lock().map(|m| m.len()).unwrap_or(0);
            if n >= services {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!("only {n} of {services} Services got an address within 600 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    watch.abort();
    let created = created.lock().map(|m| m.clone()).unwrap_or_default();
    let assigned = assigned.lock().map(|m| m.clone()).unwrap_or_default();
    let all_assigned_seconds = assigned
        .values()
        .max()
        .map(|t| t.duration_since(start).as_secs_f64())
        .unwrap_or(0.0);
    let mut lat: Vec<f64> = created
        .iter()
        .filter_map(|(n, c)| {
            assigned
                .get(n)
                .map(|a| a.saturating_duration_since(*c).as_secs_f64() * 1000.0)
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0.0)
    };
    Ok(Figures {
        services,
        rate,
        create_seconds,
        all_assigned_seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: lat.last().copied().unwrap_or(0.0),
        controller_rss_kib: 0,
        controller_peak_rss_kib: 0,
        controller_p50_le_ms: f64::NAN,
        controller_p99_le_ms: f64::NAN,
    })
}

#[cfg(test)]
mod tests {
    use super::histogram_quantiles;

    #[test]
    fn quantiles_are_the_bounds_of_the_buckets_holding_them() {
        let text = "x_bucket{le=\"0.001\"} 10\nx_bucket{le=\"0.002\"} 60\nx_bucket{le=\"0.004\"} 99\nx_bucket{le=\"+Inf\"} 100\nx_sum 1\nx_count 100\n";
        assert_eq!(histogram_quantiles(text, "x"), Some((2.0, 4.0)));
        assert_eq!(histogram_quantiles("x_count 0\n", "x"), None);
    }
}
