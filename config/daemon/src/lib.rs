//! What both daemons need at run time and must do the same way: signals registered before anything
//! else, the Kubernetes client from a kubeconfig or the in-cluster account, and the `/healthz`,
//! `/readyz`, `/metrics` endpoints, the logging flags and set-up. (The pure part they share,
//! parsing custom resources and annotations, is `ferrolb-config`.)

pub mod logging;
pub mod service;
pub mod version;

pub use logging::{LogArgs, LogFormat, LoggingError};
pub use version::require_supported_kubernetes;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::registry::Registry;

/// SIGTERM (what the kubelet sends) and SIGINT (Ctrl-C), registered before anything else so that
/// a signal arriving during start-up is not lost.
pub struct Shutdown {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shutdown")
    }
}

impl Shutdown {
    pub fn register() -> anyhow::Result<Shutdown> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Shutdown {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for either signal and names the one that came.
    pub async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// The Kubernetes client: from `kubeconfig` when given, else inferred (in-cluster service account,
/// `$KUBECONFIG`, `~/.kube/config`).
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading --kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?
        }
        None => kube::Config::infer()
            .await
            .context("no Kubernetes configuration (in-cluster or kubeconfig)")?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// A daemon's metrics registry and readiness.
#[derive(Debug)]
pub struct Health {
    registry: Registry,
    ready: AtomicBool,
    /// A JSON document served on `/status` (the control-plane speaker's view), if the daemon
    /// publishes one.
    status: std::sync::RwLock<Option<String>>,
}

impl Health {
    /// Takes the registry once every metric is registered.
    pub fn new(registry: Registry) -> Health {
        Health {
            registry,
            ready: AtomicBool::new(false),
            status: std::sync::RwLock::new(None),
        }
    }

    /// Replaces the JSON document served on `/status`.
    pub fn set_status(&self, json: String) {
        if let Ok(mut s) = self.status.write() {
            *s = Some(json);
        }
    }

    /// Marks the process ready (`/readyz` answers 200).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Serves `/healthz`, `/readyz`, `/metrics` and (where the daemon publishes one) `/status` on
/// `addr` until the process ends.
pub async fn serve(addr: SocketAddr, health: Arc<Health>) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(export))
        .route("/status", get(status))
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint to {addr}"))?;
    axum::serve(listener, app)
        .await
        .with_context(|| format!("serving metrics on {addr}"))
}

async fn readyz(State(h): State<Arc<Health>>) -> (StatusCode, &'static str) {
    if h.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn status(
    State(h): State<Arc<Health>>,
) -> (
    StatusCode,
    [(axum::http::HeaderName, &'static str); 1],
    String,
) {
    let doc = h.status.read().ok().and_then(|s| s.clone());
    let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
    match doc {
        Some(body) => (StatusCode::OK, json, body),
        None => (
            StatusCode::NOT_FOUND,
            json,
            r#"{"error":"this daemon publishes no status"}"#.into(),
        ),
    }
}

async fn export(State(h): State<Arc<Health>>) -> (StatusCode, String) {
    match h.encode() {
        Ok(body) => (StatusCode::OK, body),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Publishes Events without keeping them.
///
/// kube-runtime's `Recorder` keeps every Event it published for six minutes, to turn repeats into
/// a series. ferrolb's Events mark changes (an address allocated, a node announcing), which do not
/// repeat, so the cache only held memory: ~3 KiB per Event, 3 MiB in a speaker that had just
/// gained 1,000 addresses (heaptrack, see BENCHMARKS.md). A recorder per Event drops it at once.
#[derive(Clone)]
pub struct Events {
    client: kube::Client,
    reporter: kube::runtime::events::Reporter,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("reporter", &self.reporter)
            .finish_non_exhaustive()
    }
}

impl Events {
    /// `controller` is the reporting component (`ferrolb-controller`), `instance` this replica or
    /// node.
    pub fn new(client: kube::Client, controller: &str, instance: Option<String>) -> Events {
        Events {
            client,
            reporter: kube::runtime::events::Reporter {
                controller: controller.into(),
                instance,
            },
        }
    }

    pub async fn publish(
        &self,
        ev: &kube::runtime::events::Event,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
    ) -> Result<(), kube::Error> {
        kube::runtime::events::Recorder::new(self.client.clone(), self.reporter.clone())
            .publish(ev, reference)
            .await
    }
}
