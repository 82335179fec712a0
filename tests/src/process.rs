//! Processes that run inside a lab namespace and die with the test.
//!
//! Children are started as `ip netns exec NS setpriv --pdeathsig KILL -- PROG…` from one long-lived
//! spawner thread owned by the lab: the kernel's parent-death signal follows the thread that forked
//! the child, so when the test process dies (even by SIGKILL) or the lab is dropped, every child is
//! killed. Output goes to a log file in the lab's directory, printed when a test fails.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

type Job = (Command, mpsc::Sender<std::io::Result<Child>>);

/// How a child enters its network namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enter {
    /// `ip netns exec`: a private mount namespace whose `/sys` shows the namespace's interfaces.
    IpNetnsExec,
    /// `nsenter --net`: the network namespace only, the host's mounts unchanged. For the cluster
    /// lab's containerd and kubelet, which need the host's `/sys/fs/cgroup` (that `ip netns
    /// exec` hides under a fresh sysfs) and must see the mounts each other make.
    NetworkOnly,
}

/// The thread every lab child is forked from (see the module documentation).
#[derive(Debug)]
pub struct Spawner {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Spawner {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("lab-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawning the lab-spawner thread");
        Spawner {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// Starts `argv` inside network namespace `netns`, output appended to `log`.
    pub fn spawn(
        &self,
        name: &str,
        netns: &str,
        argv: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> anyhow::Result<LabChild> {
        self.spawn_with(name, netns, Enter::IpNetnsExec, argv, env, log)
    }

    /// [`Spawner::spawn`], entering the namespace as `enter` says.
    pub fn spawn_with(
        &self,
        name: &str,
        netns: &str,
        enter: Enter,
        argv: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> anyhow::Result<LabChild> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut cmd = match enter {
            Enter::IpNetnsExec => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", netns]);
                c
            }
            Enter::NetworkOnly => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{netns}"));
                c
            }
        };
        cmd.args(["setpriv", "--pdeathsig", "KILL", "--"])
            .args(argv)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let (reply_tx, reply_rx) = mpsc::channel();
        self.tx
            .as_ref()
            .context("spawner stopped")?
            .send((cmd, reply_tx))
            .map_err(|_| anyhow!("spawner thread is gone"))?;
        let child = reply_rx
            .recv()
            .context("spawner thread is gone")?
            .with_context(|| format!("starting {name}: {}", argv.join(" ")))?;
        Ok(LabChild {
            name: name.to_string(),
            netns: netns.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }
}

impl Default for Spawner {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A process running inside a lab namespace. Killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct LabChild {
    name: String,
    netns: String,
    child: Child,
    log: PathBuf,
}

impl LabChild {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn netns(&self) -> &str {
        &self.netns
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process has written so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: Signal) -> anyhow::Result<()> {
        kill(self.pid(), sig).with_context(|| format!("sending {sig} to {}", self.name))
    }

    /// Stops the process in place (SIGSTOP): it holds its sockets but does nothing, like a hung node.
    pub fn freeze(&self) -> anyhow::Result<()> {
        self.signal(Signal::SIGSTOP)
    }

    /// Resumes a frozen process (SIGCONT).
    pub fn thaw(&self) -> anyhow::Result<()> {
        self.signal(Signal::SIGCONT)
    }

    /// Returns the exit status if the process has ended.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Waits at most `timeout` for the process to end.
    pub fn wait_timeout(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(Some(s));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then SIGKILL if it has not ended within `grace`. Returns the exit status.
    pub fn terminate(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(s) = self.child.try_wait()? {
            return Ok(s);
        }
        self.signal(Signal::SIGTERM)?;
        if let Some(s) = self.wait_timeout(grace)? {
            return Ok(s);
        }
        self.kill()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        if let Some(s) = self.child.try_wait()? {
            return Ok(s);
        }
        // A frozen process still dies on SIGKILL.
        let _ = self.child.kill();
        Ok(self.child.wait()?)
    }
}

impl Drop for LabChild {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
