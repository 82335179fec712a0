//! A real kube-apiserver with a real etcd, running in the lab's `api` namespace.
//!
//! The binary comes from `tests/kube-env` (official Go modules, see its go.mod) and is built once
//! into `target/kube-env/kube-env`, again whenever its Go sources are newer than the binary.

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};

use crate::cmd;
use crate::forward::Forwarder;
use crate::netns::{API_V4, API_V6, Lab, Port};
use crate::process::LabChild;

/// Secure port of the API server inside the lab.
pub const API_PORT: u16 = 6443;
/// How long a cold start (etcd + apiserver bootstrap) may take on a loaded 2-core machine.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How to start the API server beyond the defaults.
#[derive(Clone, Debug, Default)]
pub struct KubeEnvOptions {
    /// `--service-cluster-ip-range` (default: kube-env's, 192.0.2.128/25 and 2001:db8:ffff::/108).
    pub service_cidr: Option<String>,
    /// More IP addresses or names in the serving certificate.
    pub extra_sans: Vec<String>,
}

/// A running kube-apiserver + etcd. Stopped when dropped (before the lab it lives in).
#[derive(Debug)]
pub struct KubeEnv {
    child: Option<LabChild>,
    /// How the API server was started, to start it again after [`KubeEnv::stop`].
    argv: Vec<String>,
    forwarder: Forwarder,
    dir: PathBuf,
    token: String,
}

impl KubeEnv {
    /// Builds (if needed) and starts the API server in `lab`'s `api` namespace, waits until
    /// `/readyz` answers, and writes the kubeconfigs.
    pub fn start(lab: &Lab) -> anyhow::Result<KubeEnv> {
        KubeEnv::start_with(lab, &KubeEnvOptions::default())
    }

    /// [`KubeEnv::start`] with another service CIDR or more names in the serving certificate
    /// (the cluster lab's `kubernetes` Service IP).
    pub fn start_with(lab: &Lab, options: &KubeEnvOptions) -> anyhow::Result<KubeEnv> {
        let bin = build()?;
        let dir = lab.dir().join("kube");
        std::fs::create_dir_all(&dir)?;
        let token = random_token()?;
        let bin = bin.to_string_lossy().into_owned();
        let data = dir.to_string_lossy().into_owned();
        let bind = API_V4.to_string();
        let mut sans = vec![API_V6.to_string()];
        sans.extend(options.extra_sans.iter().cloned());
        let san = sans.join(",");
        let port = API_PORT.to_string();
        let mut argv: Vec<String> = [
            &bin,
            "--data-dir",
            &data,
            "--bind",
            &bind,
            "--port",
            &port,
            "--san",
            &san,
            "--token",
            &token,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(cidr) = &options.service_cidr {
            argv.extend(["--service-cidr".to_string(), cidr.clone()]);
        }
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let child = lab.spawn(Port::Api, "kube-apiserver", &refs)?;
        let forwarder = Forwarder::start(
            &lab.netns(Port::Api),
            SocketAddr::new(API_V4.into(), API_PORT),
        )?;
        let mut env = KubeEnv {
            child: Some(child),
            argv,
            forwarder,
            dir,
            token,
        };
        env.wait_ready()?;
        let local = format!("https://{}", env.forwarder.local_addr());
        let lab_url = format!("https://{API_V4}:{API_PORT}");
        env.write_kubeconfig(&env.kubeconfig(), &local)?;
        env.write_kubeconfig(&env.lab_kubeconfig(), &lab_url)?;
        Ok(env)
    }

    /// Admin kubeconfig for the test process and the root namespace (through the forwarder).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// Admin kubeconfig for processes inside the lab (server `https://192.0.2.2:6443`).
    pub fn lab_kubeconfig(&self) -> PathBuf {
        self.dir.join("admin-lab.kubeconfig")
    }

    /// A kubeconfig for processes inside the lab that authenticates as service account
    /// `namespace/name` (a token from the TokenRequest API): what a pod of that account gets, so
    /// the RBAC in `deploy/` is what limits it.
    pub fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<PathBuf> {
        let token = self.kubectl(&[
            "-n",
            namespace,
            "create",
            "token",
            name,
            "--duration",
            "24h",
        ])?;
        let path = self.dir.join(format!("{namespace}-{name}.kubeconfig"));
        self.write_kubeconfig_as(&path, &format!("https://{API_V4}:{API_PORT}"), token.trim())?;
        Ok(path)
    }

    /// The cluster CA certificate (PEM).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("pki").join("ca.crt")
    }

    /// URL of the API server as seen from the root namespace.
    pub fn local_url(&self) -> String {
        format!("https://{}", self.forwarder.local_addr())
    }

    /// The admin bearer token (group `system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.token
    }

    /// A kube-rs client with admin rights. Must be called inside a tokio runtime.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig())?;
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// Runs the machine's real `kubectl` with the admin kubeconfig; returns stdout.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        self.kubectl_timeout(args, Duration::from_secs(60))
    }

    /// [`KubeEnv::kubectl`] with another time limit (rollouts, deletions that wait).
    pub fn kubectl_timeout(&self, args: &[&str], timeout: Duration) -> anyhow::Result<String> {
        let kc = self.kubeconfig().to_string_lossy().into_owned();
        let mut argv = vec!["kubectl", "--kubeconfig", &kc];
        argv.extend_from_slice(args);
        cmd::run_timeout(&argv, timeout)
    }

    /// `kubectl ARGS -o jsonpath=PATH`.
    pub fn jsonpath(&self, args: &[&str], path: &str) -> anyhow::Result<String> {
        let mut a = args.to_vec();
        let p = format!("jsonpath={path}");
        a.extend(["-o", &p]);
        self.kubectl(&a)
    }

    /// Polls [`KubeEnv::jsonpath`] (every 200 ms, at most `timeout`) until it reads `want`.
    pub fn wait_jsonpath(
        &self,
        args: &[&str],
        path: &str,
        want: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        cmd::wait_for(
            &format!("{args:?} {path} == {want:?}"),
            timeout,
            Duration::from_millis(200),
            || (self.jsonpath(args, path).ok()?.trim() == want).then_some(()),
        )
        .with_context(|| format!("last value {:?}", self.jsonpath(args, path)))
    }

    /// The API server's log so far.
    pub fn log_text(&self) -> String {
        self.child
            .as_ref()
            .map(LabChild::log_text)
            .unwrap_or_default()
    }

    /// Stops the API server (SIGTERM, then SIGKILL after 10 s): an API-server outage.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.terminate(Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Starts the API server again on the same data (etcd, certificates, keys) after
    /// [`KubeEnv::stop`], and waits until it is ready.
    pub fn restart(&mut self, lab: &Lab) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("the API server is running");
        }
        let refs: Vec<&str> = self.argv.iter().map(String::as_str).collect();
        self.child = Some(lab.spawn(Port::Api, "kube-apiserver", &refs)?);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let start = Instant::now();
        let url = self.local_url();
        loop {
            let out = cmd::output_timeout(
                &[
                    "kubectl",
                    "--server",
                    &url,
                    "--token",
                    &self.token,
                    "--insecure-skip-tls-verify",
                    "get",
                    "--raw",
                    "/readyz",
                ],
                Duration::from_secs(10),
            );
            if let Ok(o) = &out
                && o.status.success()
                && String::from_utf8_lossy(&o.stdout).trim() == "ok"
            {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "kube-apiserver exited ({status}) before it was ready; its log:\n{}",
                    tail(&child.log_text(), 60)
                );
            }
            if start.elapsed() > READY_TIMEOUT {
                bail!(
                    "kube-apiserver not ready after {READY_TIMEOUT:?}; its log:\n{}",
                    tail(&self.log_text(), 60)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Starts one more kube-apiserver of this cluster in `port`'s namespace, as on a control-plane
    /// node of an HA cluster: the same etcd (this one's, reached over the segment), CA,
    /// service-account keys and admin token; its own serving certificate for the node's address,
    /// 127.0.0.1 and `sans` (the control-plane VIP). It listens on `API_PORT` of every address of
    /// the namespace, so a VIP added there reaches it. Waits until its `/readyz` says ok.
    pub fn start_member(&self, lab: &Lab, port: Port, sans: &[String]) -> anyhow::Result<LabChild> {
        let Port::Node(i) = port else {
            bail!("API server members run on nodes, not in {port:?}");
        };
        let dir = self.dir.join(format!("member-{i}"));
        let pki = dir.join("pki");
        std::fs::create_dir_all(&pki)?;
        for f in ["ca.crt", "ca.key", "sa.key", "sa.pub"] {
            std::fs::copy(self.dir.join("pki").join(f), pki.join(f))
                .with_context(|| format!("copying {f} for API server member {i}"))?;
        }
        let bin = self.argv[0].clone();
        let data = dir.to_string_lossy().into_owned();
        let advertise = port.v4().to_string();
        let port_s = API_PORT.to_string();
        let san = sans.join(",");
        let etcd = format!("http://{API_V4}:2379");
        let mut argv: Vec<String> = [
            bin.as_str(),
            "--data-dir",
            &data,
            "--bind",
            "0.0.0.0",
            "--advertise",
            &advertise,
            "--port",
            &port_s,
            "--san",
            &san,
            "--token",
            &self.token,
            "--etcd-servers",
            &etcd,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Every API server of a cluster serves the same service range.
        if let Some(at) = self.argv.iter().position(|a| a == "--service-cidr") {
            argv.extend(self.argv[at..at + 2].iter().cloned());
        }
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut child = lab.spawn(port, &format!("kube-apiserver-{i}"), &refs)?;
        let ca = self.ca_path().to_string_lossy().into_owned();
        let start = Instant::now();
        loop {
            let out = lab.exec(
                port,
                &[
                    "curl",
                    "-sf",
                    "--max-time",
                    "5",
                    "--cacert",
                    &ca,
                    &format!("https://127.0.0.1:{API_PORT}/readyz"),
                ],
            );
            if out.is_ok_and(|o| o.trim() == "ok") {
                return Ok(child);
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "kube-apiserver member {i} exited ({status}) before it was ready; its log:\n{}",
                    tail(&child.log_text(), 60)
                );
            }
            if start.elapsed() > READY_TIMEOUT {
                bail!(
                    "kube-apiserver member {i} not ready after {READY_TIMEOUT:?}; its log:\n{}",
                    tail(&child.log_text(), 60)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Writes an admin kubeconfig for processes inside the lab whose server is `host:6443` (a
    /// control-plane VIP); returns its path.
    pub fn kubeconfig_for(&self, host: IpAddr) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(format!("admin-{host}.kubeconfig"));
        let server = format!("https://{}", SocketAddr::new(host, API_PORT));
        self.write_kubeconfig(&path, &server)?;
        Ok(path)
    }

    fn write_kubeconfig(&self, path: &Path, server: &str) -> anyhow::Result<()> {
        self.write_kubeconfig_as(path, server, &self.token)
    }

    fn write_kubeconfig_as(&self, path: &Path, server: &str, token: &str) -> anyhow::Result<()> {
        let ca = self.ca_path();
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: ferrolb-lab\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n- name: admin\n  user:\n    token: {}\ncontexts:\n- name: ferrolb-lab\n  context:\n    cluster: ferrolb-lab\n    user: admin\ncurrent-context: ferrolb-lab\n",
            ca.display(),
            token
        );
        std::fs::write(path, yaml)?;
        Ok(())
    }
}

impl Drop for KubeEnv {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Serialises builds between threads of one process; `flock` does it between processes.
static BUILD: Mutex<()> = Mutex::new(());

/// Builds the kube-env binary when it is missing or older than its Go sources (through
/// `tests/scripts/build-kube-env.sh`, the one build recipe); returns its path.
pub fn build() -> anyhow::Result<PathBuf> {
    run_build_script("kube-env")?;
    Ok(crate::target_dir().join("kube-env").join("kube-env"))
}

/// Builds the cluster lab's parts (kubelet, kube-proxy, kube-controller-manager, kube-scheduler,
/// labpod and its image) when stale, and kube-env itself; returns the directory holding them.
pub fn build_cluster() -> anyhow::Result<PathBuf> {
    build()?;
    run_build_script("cluster")?;
    Ok(crate::target_dir().join("kube-env"))
}

fn run_build_script(what: &str) -> anyhow::Result<()> {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let out_dir = crate::target_dir().join("kube-env");
    std::fs::create_dir_all(&out_dir)?;
    let lock = File::create(out_dir.join(".lock"))?;
    let _flock = Flock::lock(lock, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .context("locking target/kube-env")?;
    let script = crate::workspace_root().join("tests/scripts/build-kube-env.sh");
    let status = std::process::Command::new(&script)
        .arg(what)
        .env("CARGO_TARGET_DIR", crate::target_dir())
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        bail!("building tests/kube-env ({what}) failed ({status}); is Go installed?");
    }
    Ok(())
}

fn random_token() -> anyhow::Result<String> {
    let mut buf = [0u8; 16];
    use std::io::Read;
    File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
