//! The lab's second layer: a real cluster on the same segment.
//!
//! ```text
//!   <prefix>-api:   kube-apiserver + etcd, kube-controller-manager, kube-scheduler
//!   <prefix>-n<i>:  containerd (own root, state, socket), kubelet, kube-proxy (nftables),
//!                   pods on the cni0 bridge (CNI bridge + host-local), pod CIDR 192.0.2.(128+16(i-1))/28
//!   <prefix>-client: the observers, as in the process lab
//! ```
//!
//! Every part is the real one: the Kubernetes binaries come from the same release's official Go
//! modules as the API server (`tests/scripts/build-kube-env.sh cluster`), containerd, runc and the
//! CNI plugins from Debian. Images are loaded into each node's containerd directly (`ctr images
//! import`), no registry; the pause image is the lab's own `labpod` (the lab cannot reach
//! registry.k8s.io), which is also the sample application.
//!
//! Addresses stay inside 192.0.2.0/24: nodes .11–.14, VIPs .64/26 (as in the process lab), pods
//! .128/26 (a /28 per node, routed between nodes over the segment), service cluster IPs .224/27.
//! The cluster lab is IPv4 only; dual-stack is proven in the process lab.
//!
//! Teardown is designed like the process lab's: every kubelet gets its own cgroup root named after
//! its namespace (`/ferrolb-<pid>-<seq>-n<i>`), so every container of a node is found and killed
//! through it, also for a crashed run (the stale sweep reads the owner pid from the name); pod
//! network namespaces live under containerd's state directory (`netns_mounts_under_state_dir`),
//! so unmounting the run directory removes them.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cmd;
use crate::kube_env::{KubeEnv, KubeEnvOptions, tail};
use crate::netns::{Lab, LabConfig, Port, node_name};
use crate::process::LabChild;

/// Most nodes a cluster lab may have: four /28 pod CIDRs fill 192.0.2.128/26.
pub const MAX_CLUSTER_NODES: usize = 4;
/// Service cluster IPs (the API server's `--service-cluster-ip-range`).
pub const SERVICE_CIDR: &str = "192.0.2.224/27";
/// The `kubernetes` Service's cluster IP: in-cluster clients (ferrolb's pods) connect to it, so
/// the API server's certificate carries it.
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 225);
/// Every pod CIDR (kube-proxy's `--cluster-cidr`).
pub const CLUSTER_CIDR: &str = "192.0.2.128/26";
/// The lab's own image: `labpod pause` (the sandbox) and `labpod serve` (the sample application).
pub const LABPOD_IMAGE: &str = "lab.ferrolb.io/labpod:1";
/// The sample application: a Deployment of `labpod serve` pods (each answers every TCP
/// connection with its node's name), one per node (topology spread), behind two LoadBalancer
/// Services on port 80: `hello` (externalTrafficPolicy Cluster) and `hello-local` (Local).
pub const SAMPLE_APP: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: hello, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      terminationGracePeriodSeconds: 2
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: DoNotSchedule
          labelSelector: {matchLabels: {app: hello}}
      containers:
        - name: hello
          image: lab.ferrolb.io/labpod:1
          imagePullPolicy: Never
          command: [/labpod, serve, --port, \"8080\"]
          env:
            - name: NODE_NAME
              valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
          ports: [{containerPort: 8080}]
          readinessProbe:
            tcpSocket: {port: 8080}
            periodSeconds: 1
          securityContext:
            runAsNonRoot: true
            allowPrivilegeEscalation: false
            capabilities: {drop: [ALL]}
---
apiVersion: v1
kind: Service
metadata: {name: hello, namespace: default}
spec:
  type: LoadBalancer
  selector: {app: hello}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: hello-local, namespace: default}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: hello}
  ports: [{port: 80, targetPort: 8080}]
";

/// containerd's namespace for images the kubelet sees (CRI).
const CRI_NAMESPACE: &str = "k8s.io";
/// How long nodes may take to register and report Ready on a loaded 2-core machine.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// ferrolb's images (OCI archives of `ghcr.io/ferrolb/ferrolb-{controller,speaker}:0.1.0`), built
/// by `tests/scripts/images.sh` when stale, as `make images` builds them. `FERROLB_IMAGES_DIR`
/// names a directory holding them instead (images built elsewhere).
pub fn ferrolb_images() -> anyhow::Result<Vec<PathBuf>> {
    // One build at a time: the cluster stories run side by side and would write the same
    // archives (a mutex between threads, flock between processes).
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = match std::env::var_os("FERROLB_IMAGES_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let out = crate::target_dir().join("images");
            std::fs::create_dir_all(&out)?;
            let lock = std::fs::File::create(out.join(".lock"))?;
            let _flock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, e)| e)
                .context("locking target/images")?;
            let script = crate::workspace_root().join("tests/scripts/images.sh");
            let mut build = std::process::Command::new(&script);
            // Not the test binary's CARGO_PKG_NAME, CARGO_MANIFEST_DIR, … (cargo sets them for
            // tests): build scripts watch them (ring's `rerun-if-env-changed`), so the release
            // build `make test` made before the tests would be rebuilt here, minutes each time.
            const SET_BY_CARGO: [&str; 9] = [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "CARGO_CFG_",
                "OUT_DIR",
            ];
            for (key, _) in std::env::vars_os() {
                let k = key.to_string_lossy();
                if SET_BY_CARGO.iter().any(|p| k.starts_with(p)) {
                    build.env_remove(&key);
                }
            }
            let status = build
                .env("CARGO_TARGET_DIR", crate::target_dir())
                .status()
                .with_context(|| format!("running {}", script.display()))?;
            if !status.success() {
                bail!("{} failed ({status})", script.display());
            }
            crate::target_dir().join("images")
        }
    };
    let images: Vec<PathBuf> = ["ferrolb-controller", "ferrolb-speaker"]
        .iter()
        .map(|n| dir.join(format!("{n}.oci.tar")))
        .collect();
    for i in &images {
        if !i.exists() {
            bail!("image archive {} is missing", i.display());
        }
    }
    Ok(images)
}

/// Pod CIDR of node `i` (1-based).
pub fn pod_cidr(i: usize) -> String {
    format!("192.0.2.{}/28", 128 + 16 * (i - 1))
}

/// The Kubernetes parts of one node.
#[derive(Debug)]
struct NodeAgents {
    i: usize,
    dir: PathBuf,
    /// cgroup root of the kubelet, `/<namespace name>`: every container of the node lives below.
    cgroup: String,
    containerd: Option<LabChild>,
    kubelet: Option<LabChild>,
    proxy: Option<LabChild>,
}

impl NodeAgents {
    fn socket(&self) -> PathBuf {
        self.dir.join("containerd/containerd.sock")
    }
}

/// A running cluster: the lab, the API server, the control plane's controllers and every node's
/// containerd, kubelet and kube-proxy. Dropping it stops everything and removes what it made,
/// also when a test panics.
#[derive(Debug)]
pub struct ClusterLab {
    nodes: Vec<NodeAgents>,
    control: Vec<LabChild>,
    pub env: KubeEnv,
    pub lab: Lab,
}

impl ClusterLab {
    /// Builds the parts (when stale), brings up `nodes` nodes and waits until every Node is Ready.
    /// `images` are OCI archives loaded into every node's containerd beside the lab's own image.
    pub fn start(nodes: usize, images: &[PathBuf]) -> anyhow::Result<ClusterLab> {
        if nodes == 0 || nodes > MAX_CLUSTER_NODES {
            bail!("a cluster lab has 1 to {MAX_CLUSTER_NODES} nodes, asked for {nodes}");
        }
        let t0 = Instant::now();
        let lap = |what: &str| {
            eprintln!(
                "cluster lab: {what} after {:.1} s",
                t0.elapsed().as_secs_f64()
            )
        };
        let bins = crate::kube_env::build_cluster()?;
        lap("binaries built");
        let lab = Lab::new(LabConfig {
            nodes,
            backends: false,
        })?;
        let env = KubeEnv::start_with(
            &lab,
            &KubeEnvOptions {
                service_cidr: Some(SERVICE_CIDR.into()),
                extra_sans: vec![KUBERNETES_SERVICE_IP.to_string()],
            },
        )?;
        lap("API server ready");
        let mut cluster = ClusterLab {
            nodes: Vec::new(),
            control: Vec::new(),
            env,
            lab,
        };
        cluster.start_control_plane(&bins)?;
        for i in 1..=nodes {
            cluster.prepare_node(i)?;
        }
        // containerd first on every node, then the images (the slow part), then the agents.
        for i in 1..=nodes {
            cluster.start_containerd(i)?;
        }
        let mut all_images = vec![bins.join("labpod.oci.tar")];
        all_images.extend(images.iter().cloned());
        for i in 1..=nodes {
            cluster.import_images(i, &all_images)?;
        }
        lap("containerd running, images loaded");
        for i in 1..=nodes {
            cluster.start_agents(i, &bins)?;
        }
        cluster.wait_nodes_ready()?;
        cluster.wait_default_service_accounts()?;
        lap("nodes Ready");
        Ok(cluster)
    }

    /// Applies a YAML document with the real kubectl; returns what it printed.
    pub fn apply(&self, yaml: &str) -> anyhow::Result<String> {
        crate::daemons::apply(&self.env, &self.lab, yaml)
    }

    /// Installs ferrolb as a user does: `kubectl apply -k deploy/` exactly as shipped, then the
    /// lab's pool and advertisement; waits until the speaker DaemonSet and the controller
    /// Deployment have rolled out (every pod Ready).
    pub fn install_ferrolb(&self) -> anyhow::Result<()> {
        crate::daemons::install(&self.env)?;
        self.apply(crate::speakers::POOL_AND_ADVERTISEMENT)?;
        self.rollout_status("daemonset/ferrolb-speaker")?;
        self.rollout_status("deployment/ferrolb-controller")?;
        Ok(())
    }

    /// `kubectl -n ferrolb-system rollout status WHAT` (3 minutes at most).
    pub fn rollout_status(&self, what: &str) -> anyhow::Result<String> {
        self.env
            .kubectl_timeout(
                &[
                    "-n",
                    "ferrolb-system",
                    "rollout",
                    "status",
                    what,
                    "--timeout=180s",
                ],
                Duration::from_secs(200),
            )
            .with_context(|| format!("{what} did not roll out; pods:\n{}", self.pods()))
    }

    /// `kubectl get pods -A -o wide`, for messages.
    pub fn pods(&self) -> String {
        self.env
            .kubectl(&["get", "pods", "-A", "-o", "wide"])
            .unwrap_or_else(|e| format!("{e:#}"))
    }

    /// The directory holding node `i`'s files (its "host" paths: kubelet, containerd, manifests).
    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.lab.dir().join(Port::Node(i).tag())
    }

    /// Puts a static-pod manifest into node `i`'s kubelet manifest directory (what
    /// /etc/kubernetes/manifests is on a kubeadm node); the kubelet starts the pod.
    pub fn add_static_pod(&self, i: usize, file: &str, yaml: &str) -> anyhow::Result<()> {
        let dir = self.node_dir(i).join("manifests");
        // Written beside and renamed, so the kubelet never reads half a file.
        let tmp = self.node_dir(i).join(format!(".{file}.tmp"));
        std::fs::write(&tmp, yaml)?;
        std::fs::rename(&tmp, dir.join(file))?;
        Ok(())
    }

    /// Resident memory of every ferrolb process in the cluster's containers: (name, node, KiB),
    /// found through each node's cgroup root.
    pub fn ferrolb_rss(&self) -> Vec<(String, usize, u64)> {
        let mut out = Vec::new();
        let Some(memory) = cgroup_mounts().into_iter().find(|m| m.ends_with("memory")) else {
            return out;
        };
        for n in &self.nodes {
            for pid in cgroup_pids(&memory.join(n.cgroup.trim_start_matches('/'))) {
                // argv[0], not comm: comm is cut at 15 bytes ("ferrolb-control").
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
                let argv0 = String::from_utf8_lossy(argv0);
                let comm = argv0.rsplit('/').next().unwrap_or_default();
                if !comm.starts_with("ferrolb-") {
                    continue;
                }
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let kib = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0);
                out.push((comm.to_string(), n.i, kib));
            }
        }
        out.sort();
        out
    }

    /// Cuts node `i` off the segment (its cable pulled) or plugs it back in: a node death as
    /// everyone else sees it.
    pub fn set_link(&self, i: usize, up: bool) -> anyhow::Result<()> {
        self.lab.set_link(Port::Node(i), up)
    }

    fn start_control_plane(&mut self, bins: &Path) -> anyhow::Result<()> {
        let kc = self.env.lab_kubeconfig().to_string_lossy().into_owned();
        let pki = self.env.ca_path();
        let pki = pki.parent().context("pki dir")?.to_path_buf();
        let dir = self.lab.dir().join("control-plane");
        std::fs::create_dir_all(&dir)?;
        let s = |p: PathBuf| p.to_string_lossy().into_owned();
        let kcm = s(bins.join("kube-controller-manager"));
        let sa_key = format!(
            "--service-account-private-key-file={}",
            s(pki.join("sa.key"))
        );
        let root_ca = format!("--root-ca-file={}", s(pki.join("ca.crt")));
        let kcm_certs = format!("--cert-dir={}", s(dir.join("kcm")));
        let kcf = format!("--kubeconfig={kc}");
        let authn = format!("--authentication-kubeconfig={kc}");
        let authz = format!("--authorization-kubeconfig={kc}");
        let child = self.lab.spawn(
            Port::Api,
            "kube-controller-manager",
            &[
                &kcm,
                &kcf,
                &authn,
                &authz,
                &sa_key,
                &root_ca,
                &kcm_certs,
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=10257",
                // Node lifecycle: the defaults (50 s grace, 300 s eviction) are a real cluster's;
                // ferrolb's failover never waits for them (memberlist decides in milliseconds).
                "--v=1",
            ],
        )?;
        self.control.push(child);
        let sched = s(bins.join("kube-scheduler"));
        let sched_certs = format!("--cert-dir={}", s(dir.join("scheduler")));
        let child = self.lab.spawn(
            Port::Api,
            "kube-scheduler",
            &[
                &sched,
                &kcf,
                &authn,
                &authz,
                &sched_certs,
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=10259",
                "--v=1",
            ],
        )?;
        self.control.push(child);
        Ok(())
    }

    /// Writes node `i`'s certificates, kubeconfigs and configuration files, and its pod routes.
    fn prepare_node(&mut self, i: usize) -> anyhow::Result<()> {
        let port = Port::Node(i);
        let name = node_name(i);
        let dir = self.lab.dir().join(port.tag());
        for d in [
            "containerd",
            "cni/net.d",
            "cni/ipam",
            "kubelet",
            "pod-logs",
            "certs",
            "manifests",
        ] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        let cgroup = format!("/{}", self.lab.netns(port));
        let node = NodeAgents {
            i,
            dir: dir.clone(),
            cgroup: cgroup.clone(),
            containerd: None,
            kubelet: None,
            proxy: None,
        };
        // Client certificates signed by the lab's CA: the kubelet as system:node:<name> (what
        // the Node authorizer expects), kube-proxy as system:kube-proxy (bound to
        // system:node-proxier by the default RBAC policy).
        self.sign(
            &format!("system:node:{name}"),
            "system:nodes",
            &dir.join("certs/kubelet"),
        )?;
        self.sign("system:kube-proxy", "", &dir.join("certs/kube-proxy"))?;
        self.write_cert_kubeconfig(&dir.join("kubelet.kubeconfig"), &dir.join("certs/kubelet"))?;
        self.write_cert_kubeconfig(
            &dir.join("kube-proxy.kubeconfig"),
            &dir.join("certs/kube-proxy"),
        )?;
        let d = |p: &str| dir.join(p).to_string_lossy().into_owned();
        let containerd_toml = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{LABPOD_IMAGE}"
  # Pod network namespaces under the state directory, not /var/run/netns: the lab's teardown
  # finds them by unmounting its run directory.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  enable_selinux = false
  # Sandboxes ask for oom_score_adj -998, and lowering it needs CAP_SYS_RESOURCE, which the CI
  # machines' root lacks (runc's init then dies: "can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"#,
            root = d("containerd/root"),
            state = d("containerd/state"),
            sock = node.socket().display(),
            opt = d("containerd/opt"),
            cni = d("cni/net.d"),
        );
        std::fs::write(dir.join("containerd.toml"), containerd_toml)?;
        let cni = format!(
            r#"{{
  "cniVersion": "1.0.0",
  "name": "ferrolb-lab",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {{
        "type": "host-local",
        "ranges": [[{{"subnet": "{cidr}"}}]],
        "routes": [{{"dst": "0.0.0.0/0"}}],
        "dataDir": "{ipam}"
      }}
    }},
    {{"type": "portmap", "capabilities": {{"portMappings": true}}}}
  ]
}}
"#,
            cidr = pod_cidr(i),
            ipam = d("cni/ipam"),
        );
        std::fs::write(dir.join("cni/net.d/10-ferrolb-lab.conflist"), cni)?;
        // No DNS in the lab: an empty resolv.conf keeps the host's out of the pods.
        std::fs::write(dir.join("resolv.conf"), "")?;
        let kubelet = format!(
            r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {ip}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {{enabled: true}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: "{ca}"}}
authorization: {{mode: AlwaysAllow}}
cgroupDriver: cgroupfs
cgroupRoot: "{cgroup}"
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
containerRuntimeEndpoint: "unix://{sock}"
imageServiceEndpoint: "unix://{sock}"
failSwapOn: false
resolvConf: "{resolv}"
podLogsDir: "{logs}"
# Thresholds a shared CI disk cannot trip: the lab's pods are tiny.
evictionHard: {{memory.available: "1Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
nodeStatusUpdateFrequency: 4s
localStorageCapacityIsolation: false
maxPods: 30
# Static pods (the control-plane speaker's manifest) from here, as /etc/kubernetes/manifests.
staticPodPath: "{manifests}"
fileCheckFrequency: 2s
"#,
            ip = port.v4(),
            ca = self.env.ca_path().display(),
            sock = node.socket().display(),
            resolv = d("resolv.conf"),
            logs = d("pod-logs"),
            manifests = d("manifests"),
        );
        std::fs::write(dir.join("kubelet.yaml"), kubelet)?;
        // The kube-proxy emulation's local VIP routes are the process lab's; here kube-proxy
        // is real and the kernel must not think the VIPs are local.
        self.lab.remove_vip_routes(port)?;
        // Pod CIDRs lie inside the segment's /24, so everyone else needs a more specific route to
        // node i's pods through node i (what a router of pod CIDRs does in a real network); without
        // it the API server would ARP for a pod's address when answering it.
        let via = port.v4().to_string();
        let mut others: Vec<Port> = vec![Port::Api, Port::Client];
        others.extend((1..=self.lab.nodes()).filter(|&j| j != i).map(Port::Node));
        for other in others {
            let ns = self.lab.netns(other);
            let cidr = pod_cidr(i);
            cmd::run(&[
                "ip", "-n", &ns, "route", "add", &cidr, "via", &via, "dev", "eth0",
            ])?;
        }
        self.nodes.push(node);
        Ok(())
    }

    fn node(&mut self, i: usize) -> anyhow::Result<&mut NodeAgents> {
        self.nodes
            .iter_mut()
            .find(|n| n.i == i)
            .with_context(|| format!("no node {i} in this cluster lab"))
    }

    fn start_containerd(&mut self, i: usize) -> anyhow::Result<()> {
        let port = Port::Node(i);
        let node = self.node(i)?;
        let config = node
            .dir
            .join("containerd.toml")
            .to_string_lossy()
            .into_owned();
        let sock = node.socket();
        let child = self.lab.spawn_network_only(
            port,
            &format!("containerd-{i}"),
            &["containerd", "--config", &config],
        )?;
        self.node(i)?.containerd = Some(child);
        let s = sock.to_string_lossy().into_owned();
        cmd::wait_for(
            &format!("containerd of node {i}"),
            Duration::from_secs(30),
            Duration::from_millis(100),
            || cmd::run(&["ctr", "-a", &s, "version"]).ok(),
        )?;
        Ok(())
    }

    fn import_images(&mut self, i: usize, images: &[PathBuf]) -> anyhow::Result<()> {
        let sock = self.node(i)?.socket().to_string_lossy().into_owned();
        for image in images {
            let file = image.to_string_lossy().into_owned();
            cmd::run_timeout(
                &[
                    "ctr",
                    "-a",
                    &sock,
                    "-n",
                    CRI_NAMESPACE,
                    "images",
                    "import",
                    "--no-unpack",
                    &file,
                ],
                Duration::from_secs(120),
            )
            .with_context(|| format!("loading {file} into node {i}'s containerd"))?;
        }
        Ok(())
    }

    fn start_agents(&mut self, i: usize, bins: &Path) -> anyhow::Result<()> {
        let port = Port::Node(i);
        let cgroup = self.node(i)?.cgroup.clone();
        create_cgroup(&cgroup)?;
        let name = node_name(i);
        let dir = self.node(i)?.dir.clone();
        let d = |p: &str| dir.join(p).to_string_lossy().into_owned();
        let kubelet = bins.join("kubelet").to_string_lossy().into_owned();
        let ip = port.v4().to_string();
        // The kubelet's device-plugin socket has one fixed path per machine (below); kubelets
        // starting side by side (several nodes, several labs) race on it. One start at a time.
        let start_lock = KubeletStartLock::take()?;
        let mut child = self.lab.spawn_network_only(
            port,
            &format!("kubelet-{i}"),
            &[
                &kubelet,
                &format!("--config={}", d("kubelet.yaml")),
                &format!("--kubeconfig={}", d("kubelet.kubeconfig")),
                &format!("--root-dir={}", d("kubelet")),
                &format!("--cert-dir={}", d("certs")),
                &format!("--hostname-override={name}"),
                &format!("--node-ip={ip}"),
                "--v=1",
            ],
        )?;
        start_lock.wait_listening(&mut child)?;
        self.node(i)?.kubelet = Some(child);
        let proxy = bins.join("kube-proxy").to_string_lossy().into_owned();
        let child = self.lab.spawn_network_only(
            port,
            &format!("kube-proxy-{i}"),
            &[
                &proxy,
                "--proxy-mode=nftables",
                &format!("--kubeconfig={}", d("kube-proxy.kubeconfig")),
                &format!("--hostname-override={name}"),
                &format!("--cluster-cidr={CLUSTER_CIDR}"),
                // Conntrack tables are the host's: a node namespace may not resize them.
                "--conntrack-max-per-core=0",
                "--conntrack-tcp-timeout-established=0",
                "--conntrack-tcp-timeout-close-wait=0",
                "--metrics-bind-address=127.0.0.1:10249",
                "--healthz-bind-address=127.0.0.1:10256",
                "--v=1",
            ],
        )?;
        self.node(i)?.proxy = Some(child);
        Ok(())
    }

    /// Waits until kube-controller-manager has made the `default` ServiceAccount of `default` and
    /// `kube-system`: until then the API server refuses pods there (the ServiceAccount admission),
    /// which a real cluster never shows a user.
    fn wait_default_service_accounts(&self) -> anyhow::Result<()> {
        for ns in ["default", "kube-system"] {
            cmd::wait_for(
                &format!("ServiceAccount {ns}/default"),
                Duration::from_secs(60),
                Duration::from_millis(250),
                || {
                    self.env
                        .kubectl(&["-n", ns, "get", "serviceaccount", "default", "-o", "name"])
                        .ok()
                        .filter(|o| !o.trim().is_empty())
                },
            )?;
        }
        Ok(())
    }

    fn wait_nodes_ready(&mut self) -> anyhow::Result<()> {
        let want = self.nodes.len();
        let start = Instant::now();
        loop {
            let out = self
                .env
                .kubectl(&[
                    "get",
                    "nodes",
                    "-o",
                    r#"jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
                ])
                .unwrap_or_default();
            let ready = out.lines().filter(|l| l.ends_with("=True")).count();
            if ready == want {
                return Ok(());
            }
            for n in &mut self.nodes {
                if let Some(k) = &mut n.kubelet
                    && let Some(status) = k.try_wait()?
                {
                    bail!(
                        "the kubelet of node {} exited ({status}); its log:\n{}",
                        n.i,
                        tail(&k.log_text(), 40)
                    );
                }
            }
            if start.elapsed() > READY_TIMEOUT {
                let logs: Vec<String> = self
                    .nodes
                    .iter()
                    .filter_map(|n| n.kubelet.as_ref())
                    .map(|k| format!("== {} ==\n{}", k.name(), tail(&k.log_text(), 30)))
                    .collect();
                bail!(
                    "{ready} of {want} nodes Ready after {READY_TIMEOUT:?}:\n{out}\n{}",
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Signs a client certificate with the lab's CA (`kube-env cert`).
    fn sign(&self, cn: &str, org: &str, out: &Path) -> anyhow::Result<()> {
        let bin = crate::kube_env::build()?.to_string_lossy().into_owned();
        let pki = self.env.ca_path();
        let pki = pki
            .parent()
            .context("pki dir")?
            .to_string_lossy()
            .into_owned();
        let out = out.to_string_lossy().into_owned();
        let mut argv = vec![
            bin.as_str(),
            "cert",
            "--pki",
            &pki,
            "--cn",
            cn,
            "--out",
            &out,
        ];
        if !org.is_empty() {
            argv.extend(["--org", org]);
        }
        cmd::run(&argv)?;
        Ok(())
    }

    fn write_cert_kubeconfig(&self, path: &Path, cert: &Path) -> anyhow::Result<()> {
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: https://{}:{}\n    certificate-authority: {}\nusers:\n- name: me\n  user:\n    client-certificate: {}.crt\n    client-key: {}.key\ncontexts:\n- name: lab\n  context: {{cluster: lab, user: me}}\ncurrent-context: lab\n",
            crate::netns::API_V4,
            crate::kube_env::API_PORT,
            self.env.ca_path().display(),
            cert.display(),
            cert.display(),
        );
        std::fs::write(path, yaml)?;
        Ok(())
    }

    /// Stops everything and removes what it made; every error is collected.
    fn teardown(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        for n in &mut self.nodes {
            n.kubelet.take();
            n.proxy.take();
        }
        for n in &self.nodes {
            kill_cgroup_tree(&n.cgroup);
        }
        for n in &mut self.nodes {
            n.containerd.take();
        }
        // The shims live in the node namespaces; they die with them when the lab goes. What the
        // containers mounted (root filesystems, pod network namespaces) is below the run
        // directory: the lab unmounts it before removing it.
        for n in &self.nodes {
            if let Err(e) = remove_cgroup_tree(&n.cgroup) {
                errors.push(format!("cgroup {}: {e:#}", n.cgroup));
            }
        }
        self.control.clear();
        remove_host_leftovers(self.lab.dir());
        errors
    }
}

/// The kubelet's device-plugin registration socket. Its path is a constant of the kubelet
/// (`pluginapi.KubeletSocket`), not below `--root-dir`: every kubelet on a machine binds it. A
/// starting kubelet removes the sockets in that directory and then listens, so two starting at
/// once can both remove, and the second to listen fails with "address already in use" and exits
/// (seen in CI with the two cluster stories side by side). Once a kubelet listens, a later one
/// removing the file only makes the earlier one unreachable by path, which nothing in the lab
/// uses (no device plugins); the earlier one keeps serving and stays healthy.
const DEVICE_PLUGIN_SOCKET: &str = "/var/lib/kubelet/device-plugins/kubelet.sock";

/// One kubelet start at a time on this machine (flock, so across test processes too), held until
/// the new kubelet listens on [`DEVICE_PLUGIN_SOCKET`].
struct KubeletStartLock {
    _flock: nix::fcntl::Flock<std::fs::File>,
}

impl KubeletStartLock {
    fn take() -> anyhow::Result<KubeletStartLock> {
        let dir = crate::netns::runs_dir();
        std::fs::create_dir_all(&dir)?;
        let file = std::fs::File::create(dir.join("kubelet-start.lock"))?;
        let flock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .context("locking the kubelet start")?;
        // A socket left by an earlier kubelet would look like the new one listening.
        match std::fs::remove_file(DEVICE_PLUGIN_SOCKET) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context(format!("removing {DEVICE_PLUGIN_SOCKET}")),
        }
        Ok(KubeletStartLock { _flock: flock })
    }

    /// Waits (bounded) until `kubelet` listens on the device-plugin socket; fails with its log
    /// if it exits first.
    fn wait_listening(self, kubelet: &mut LabChild) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if Path::new(DEVICE_PLUGIN_SOCKET).exists() {
                return Ok(());
            }
            if let Some(status) = kubelet.try_wait()? {
                bail!(
                    "{} exited ({status}) while starting; its log:\n{}",
                    kubelet.name(),
                    tail(&kubelet.log_text(), 40)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not listen on {DEVICE_PLUGIN_SOCKET} within 60 s; its log:\n{}",
                    kubelet.name(),
                    tail(&kubelet.log_text(), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// What containerd and the kubelet leave on the host outside the run directory: symlinks in
/// `/var/log/containers` to the pods' logs, and the shims' sockets in `/run/containerd/s`. Only
/// symlinks into `run_dir` and sockets nobody listens on any more are removed.
pub fn remove_host_leftovers(run_dir: &Path) {
    if let Ok(entries) = std::fs::read_dir("/var/log/containers") {
        for e in entries.flatten() {
            if std::fs::read_link(e.path()).is_ok_and(|t| t.starts_with(run_dir)) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/run/containerd/s") {
        for e in entries.flatten() {
            if std::os::unix::net::UnixStream::connect(e.path())
                .is_err_and(|err| err.kind() == std::io::ErrorKind::ConnectionRefused)
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl Drop for ClusterLab {
    fn drop(&mut self) {
        for e in self.teardown() {
            eprintln!("cluster lab teardown: {e}");
        }
    }
}

/// The cgroup v1 hierarchies (and the unified one) of this machine.
fn cgroup_mounts() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in entries.flatten() {
            let p = e.path();
            if p.join("cgroup.procs").exists() {
                v.push(p);
            }
        }
    }
    if Path::new("/sys/fs/cgroup/cgroup.procs").exists() {
        v.push(PathBuf::from("/sys/fs/cgroup"));
    }
    v
}

/// Creates cgroup `root` (`/name`) in every hierarchy: the kubelet wants its cgroup root to exist.
/// In cgroup v1's cpuset hierarchy a new cgroup starts with no CPUs and no memory nodes; it gets
/// its parent's.
fn create_cgroup(root: &str) -> anyhow::Result<()> {
    let rel = root.trim_start_matches('/');
    for m in cgroup_mounts() {
        let dir = m.join(rel);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if dir.join(f).exists() {
                let parent = std::fs::read_to_string(m.join(f))?;
                std::fs::write(dir.join(f), parent.trim())
                    .with_context(|| format!("writing {}", dir.join(f).display()))?;
            }
        }
    }
    Ok(())
}

/// PIDs in `dir` and every cgroup below it.
fn cgroup_pids(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(text) = std::fs::read_to_string(d.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        if let Ok(entries) = std::fs::read_dir(&d) {
            stack.extend(
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.path()),
            );
        }
    }
    pids
}

/// SIGKILLs every process below cgroup `root` (`/name`) in every hierarchy, until none is left
/// (bounded: 50 rounds of 100 ms).
pub fn kill_cgroup_tree(root: &str) {
    let rel = root.trim_start_matches('/');
    for _ in 0..50 {
        let mut any = false;
        for m in cgroup_mounts() {
            for pid in cgroup_pids(&m.join(rel)) {
                any = true;
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if !any {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Removes cgroup `root` and everything below it in every hierarchy (deepest first).
pub fn remove_cgroup_tree(root: &str) -> anyhow::Result<()> {
    let rel = root.trim_start_matches('/');
    let mut errors = Vec::new();
    for m in cgroup_mounts() {
        let top = m.join(rel);
        if !top.exists() {
            continue;
        }
        let mut dirs = Vec::new();
        let mut stack = vec![top];
        while let Some(d) = stack.pop() {
            if let Ok(entries) = std::fs::read_dir(&d) {
                stack.extend(
                    entries
                        .flatten()
                        .filter(|e| e.path().is_dir())
                        .map(|e| e.path()),
                );
            }
            dirs.push(d);
        }
        // Deepest first: a cgroup with children cannot be removed.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            if let Err(e) = std::fs::remove_dir(&d) {
                errors.push(format!("{}: {e}", d.display()));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        bail!("{}", errors.join("; "))
    }
}

/// Cgroups of cluster labs whose process is gone: killed and removed (the stale sweep).
pub fn sweep_stale_cgroups(is_stale: impl Fn(&str) -> bool) -> Vec<String> {
    let mut roots = std::collections::BTreeSet::new();
    for m in cgroup_mounts() {
        if let Ok(entries) = std::fs::read_dir(&m) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("{}-", crate::netns::PREFIX)) && is_stale(&name) {
                    roots.insert(name);
                }
            }
        }
    }
    let mut removed = Vec::new();
    for name in roots {
        let root = format!("/{name}");
        kill_cgroup_tree(&root);
        match remove_cgroup_tree(&root) {
            Ok(()) => removed.push(root),
            Err(e) => eprintln!("lab sweep: cgroup {root}: {e:#}"),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_cidrs_fill_the_cluster_cidr_and_stay_out_of_the_vips_and_services() {
        assert_eq!(pod_cidr(1), "192.0.2.128/28");
        assert_eq!(pod_cidr(MAX_CLUSTER_NODES), "192.0.2.176/28");
        // .176/28 ends at .191, the end of CLUSTER_CIDR; services start at .224.
        assert_eq!(CLUSTER_CIDR, "192.0.2.128/26");
        assert_eq!(KUBERNETES_SERVICE_IP, Ipv4Addr::new(192, 0, 2, 225));
    }
}
