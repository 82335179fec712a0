//! Running the system tools the lab is made of (`ip`, `nft`, `kubectl`…) with a time limit and
//! errors that say which command failed and what it printed.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Default limit for one tool invocation; every lab command is bounded in time.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `argv` and returns its stdout; fails when it exits non-zero or runs past `timeout`.
pub fn run_timeout(argv: &[&str], timeout: Duration) -> anyhow::Result<String> {
    let out = output_timeout(argv, timeout)?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// [`run_timeout`] with [`DEFAULT_TIMEOUT`].
pub fn run(argv: &[&str]) -> anyhow::Result<String> {
    run_timeout(argv, DEFAULT_TIMEOUT)
}

/// Runs `argv` and returns its full output whatever the exit status (for observers such as
/// `arping`, whose exit status says "no answer"). Killed after `timeout`.
pub fn output_timeout(argv: &[&str], timeout: Duration) -> anyhow::Result<Output> {
    let (prog, args) = argv.split_first().context("empty command")?;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{}` (is it installed?)", argv.join(" ")))?;
    // Drain both pipes on threads so a chatty tool cannot block on a full pipe.
    let mut so = child.stdout.take().context("stdout")?;
    let mut se = child.stderr.take().context("stderr")?;
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`{}` did not finish within {:?}", argv.join(" "), timeout);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Polls `f` every `interval` until it returns `Some`, at most until `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(interval);
    }
}
