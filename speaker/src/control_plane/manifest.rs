//! `ferrolb-speaker manifest control-plane …`: prints the static-pod manifest that runs the
//! control-plane speaker on a control-plane node (the file to put in `/etc/kubernetes/manifests`),
//! as kube-vip's `manifest pod` does. It takes exactly the flags of `control-plane`, parsed by the
//! same definition (so a flag the daemon would refuse is refused here, before a kubelet ever runs
//! it), plus `--image`.
//!
//! The pod: host network (the VIP goes on the node's interface); uid 0 with every capability
//! dropped but NET_ADMIN (netlink: add and remove the VIP) and NET_RAW (gratuitous ARP, unsolicited
//! NA and the responder), no privilege escalation, a read-only root file system; the data
//! directory, the key file and the health CA mounted from the host at the paths the flags name;
//! liveness on /healthz; priority `system-node-critical`. No service account and no API
//! credentials: the mode never talks to the Kubernetes API.

use std::collections::BTreeMap;
use std::net::IpAddr;

use clap::Parser;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, HTTPGetAction, HostPathVolumeSource, Pod, PodSpec, Probe,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Args;

/// Prints the static-pod manifest of the control-plane speaker for this node, for
/// /etc/kubernetes/manifests (every control-plane node gets its own: --id differs).
///
/// Every flag of `ferrolb-speaker control-plane` is accepted and written into the pod's
/// arguments; the data directory, the key file and --health-ca are mounted from the host at the
/// same paths.
#[derive(Parser, Debug)]
#[command(
    name = "ferrolb-speaker manifest control-plane",
    version,
    about,
    long_about
)]
pub struct ManifestArgs {
    /// Image of the pod.
    #[arg(long, default_value = concat!("ghcr.io/ferrolb/ferrolb-speaker:", env!("CARGO_PKG_VERSION")))]
    pub image: String,

    #[command(flatten)]
    pub args: Args,
}

/// `ferrolb-speaker manifest control-plane …` (argv with `manifest control-plane` at 1 and 2).
pub fn main(mut argv: Vec<std::ffi::OsString>) -> anyhow::Result<()> {
    argv.drain(1..3.min(argv.len()));
    let m = ManifestArgs::parse_from(argv);
    super::check_args(&m.args)?;
    print!("{}", manifest(&m)?);
    Ok(())
}

/// The manifest as YAML.
pub fn manifest(m: &ManifestArgs) -> anyhow::Result<String> {
    Ok(serde_saphyr::to_string(&pod(m))?)
}

/// The daemon's arguments that reproduce `a` (every flag written out, defaults included, so the
/// manifest says what runs).
pub fn daemon_args(a: &Args) -> Vec<String> {
    let peers: Vec<String> = a
        .peers
        .iter()
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect();
    let mut v: Vec<String> = vec![
        "control-plane".into(),
        format!("--vip={}", a.vip),
        format!("--interface={}", a.interface),
        format!("--id={}", a.id),
        format!("--peers={}", peers.join(",")),
        format!("--health-url={}", a.health_url),
    ];
    if let Some(ca) = &a.health_ca {
        v.push(format!("--health-ca={}", ca.display()));
    }
    if a.health_insecure {
        v.push("--health-insecure".into());
    }
    v.extend([
        format!("--health-interval-ms={}", a.health_interval_ms),
        format!("--health-timeout-ms={}", a.health_timeout_ms),
        format!("--data-dir={}", a.data_dir.display()),
        format!("--key-file={}", a.key_file.display()),
        format!("--tick-ms={}", a.tick_ms),
        format!("--heartbeat-ticks={}", a.heartbeat_ticks),
        format!("--election-ticks={}", a.election_ticks),
        format!("--metrics-bind-address={}", a.metrics_bind_address),
        format!(
            "--log-format={}",
            match a.log.log_format {
                ferrolb_daemon::LogFormat::Text => "text",
                ferrolb_daemon::LogFormat::Json => "json",
            }
        ),
        format!("--log-level={}", a.log.log_level),
    ]);
    v
}

fn host_path(
    name: &str,
    path: &std::path::Path,
    kind: &str,
    read_only: bool,
) -> (Volume, VolumeMount) {
    let p = path.display().to_string();
    (
        Volume {
            name: name.into(),
            host_path: Some(HostPathVolumeSource {
                path: p.clone(),
                type_: Some(kind.into()),
            }),
            ..Volume::default()
        },
        VolumeMount {
            name: name.into(),
            mount_path: p,
            read_only: Some(read_only),
            ..VolumeMount::default()
        },
    )
}

fn pod(m: &ManifestArgs) -> Pod {
    let a = &m.args;
    let mut mounts = vec![
        host_path("data", &a.data_dir, "DirectoryOrCreate", false),
        host_path("key", &a.key_file, "File", true),
    ];
    if let Some(ca) = &a.health_ca {
        mounts.push(host_path("health-ca", ca, "File", true));
    }
    let (volumes, volume_mounts): (Vec<Volume>, Vec<VolumeMount>) = mounts.into_iter().unzip();
    // The probe reaches the metrics listener where it listens: on the host network, 127.0.0.1
    // unless it is bound to one address.
    let probe_host = match a.metrics_bind_address.ip() {
        ip if ip.is_unspecified() => match ip {
            IpAddr::V4(_) => "127.0.0.1".to_string(),
            IpAddr::V6(_) => "::1".to_string(),
        },
        ip => ip.to_string(),
    };
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "ferrolb".to_string()),
        (
            "app.kubernetes.io/component".to_string(),
            "control-plane".to_string(),
        ),
    ]);
    Pod {
        metadata: ObjectMeta {
            name: Some("ferrolb-control-plane".into()),
            namespace: Some("kube-system".into()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            host_network: Some(true),
            priority_class_name: Some("system-node-critical".into()),
            // The successor needs the VIP gone first: a leader that stops removes it (SIGTERM).
            termination_grace_period_seconds: Some(10),
            containers: vec![Container {
                name: "control-plane".into(),
                image: Some(m.image.clone()),
                image_pull_policy: Some("IfNotPresent".into()),
                args: Some(daemon_args(a)),
                security_context: Some(SecurityContext {
                    // uid 0 because a capability added for another uid is not effective
                    // (containerd sets no ambient capabilities); everything else dropped.
                    run_as_user: Some(0),
                    run_as_group: Some(0),
                    allow_privilege_escalation: Some(false),
                    read_only_root_filesystem: Some(true),
                    capabilities: Some(Capabilities {
                        drop: Some(vec!["ALL".into()]),
                        add: Some(vec!["NET_ADMIN".into(), "NET_RAW".into()]),
                    }),
                    ..SecurityContext::default()
                }),
                liveness_probe: Some(Probe {
                    http_get: Some(HTTPGetAction {
                        host: Some(probe_host),
                        path: Some("/healthz".into()),
                        port: IntOrString::Int(i32::from(a.metrics_bind_address.port())),
                        ..HTTPGetAction::default()
                    }),
                    period_seconds: Some(5),
                    failure_threshold: Some(3),
                    ..Probe::default()
                }),
                volume_mounts: Some(volume_mounts),
                ..Container::default()
            }],
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> ManifestArgs {
        let mut argv = vec![
            "ferrolb-speaker",
            "--vip",
            "192.0.2.100",
            "--interface",
            "eth0",
            "--id",
            "2",
            "--peers",
            "1=192.0.2.11:7480,2=192.0.2.12:7480,3=192.0.2.13:7480",
            "--key-file",
            "/etc/kubernetes/ferrolb/key",
        ];
        argv.extend_from_slice(extra);
        ManifestArgs::try_parse_from(argv).unwrap()
    }

    #[test]
    fn the_pod_runs_exactly_the_flags_given_with_the_host_paths_mounted() {
        let m = parse(&["--health-ca", "/etc/kubernetes/pki/ca.crt"]);
        let pod = pod(&m);
        let spec = pod.spec.unwrap();
        assert_eq!(spec.host_network, Some(true));
        let c = &spec.containers[0];
        assert_eq!(
            c.image.as_deref(),
            Some("ghcr.io/ferrolb/ferrolb-speaker:0.1.0")
        );
        let args = c.args.clone().unwrap();
        assert_eq!(
            args,
            vec![
                "control-plane",
                "--vip=192.0.2.100",
                "--interface=eth0",
                "--id=2",
                "--peers=1=192.0.2.11:7480,2=192.0.2.12:7480,3=192.0.2.13:7480",
                "--health-url=https://127.0.0.1:6443/readyz",
                "--health-ca=/etc/kubernetes/pki/ca.crt",
                "--health-interval-ms=250",
                "--health-timeout-ms=500",
                "--data-dir=/var/lib/ferrolb/control-plane",
                "--key-file=/etc/kubernetes/ferrolb/key",
                "--tick-ms=25",
                "--heartbeat-ticks=2",
                "--election-ticks=10",
                "--metrics-bind-address=127.0.0.1:7474",
                "--log-format=text",
                "--log-level=info",
            ]
        );
        // The arguments parse back into the same daemon configuration.
        let mut argv = vec!["ferrolb-speaker".to_string()];
        argv.extend(args.into_iter().skip(1));
        let again = Args::try_parse_from(argv).unwrap();
        assert_eq!(daemon_args(&again), daemon_args(&m.args));
        let mounts: Vec<(String, bool)> = c
            .volume_mounts
            .clone()
            .unwrap()
            .into_iter()
            .map(|v| (v.mount_path, v.read_only.unwrap_or(false)))
            .collect();
        assert_eq!(
            mounts,
            vec![
                ("/var/lib/ferrolb/control-plane".to_string(), false),
                ("/etc/kubernetes/ferrolb/key".to_string(), true),
                ("/etc/kubernetes/pki/ca.crt".to_string(), true),
            ]
        );
        let caps = c.security_context.clone().unwrap().capabilities.unwrap();
        assert_eq!(caps.add.unwrap(), vec!["NET_ADMIN", "NET_RAW"]);
        assert_eq!(caps.drop.unwrap(), vec!["ALL"]);
        let probe = c.liveness_probe.clone().unwrap().http_get.unwrap();
        assert_eq!(probe.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(probe.port, IntOrString::Int(7474));
    }

    #[test]
    fn the_manifest_is_yaml_of_a_kube_system_pod() {
        let text = manifest(&parse(&[
            "--health-insecure",
            "--image",
            "registry.example/fl:1",
        ]))
        .unwrap();
        assert!(text.contains("kind: Pod"), "{text}");
        assert!(text.contains("namespace: kube-system"), "{text}");
        assert!(text.contains("registry.example/fl:1"), "{text}");
        assert!(text.contains("--health-insecure"), "{text}");
        let back: Pod = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(back.metadata.name.as_deref(), Some("ferrolb-control-plane"));
    }

    #[test]
    fn flags_the_daemon_refuses_are_refused_here() {
        let bad = ManifestArgs::try_parse_from([
            "ferrolb-speaker",
            "--vip",
            "not-an-ip",
            "--interface",
            "eth0",
            "--id",
            "1",
            "--peers",
            "1=192.0.2.11:7480",
            "--key-file",
            "/k",
        ]);
        let e = bad.unwrap_err().to_string();
        assert!(e.contains("--vip"), "{e}");
    }
}
