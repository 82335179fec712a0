//! The speaker binary's entry point: documented flags, env fallbacks, log formats, clean exit.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ferrolb-speaker");

#[test]
fn help_explains_every_flag_and_its_variable() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--node-name",
        "NODE_NAME",
        "--log-format",
        "FERROLB_LOG_FORMAT",
        "--log-level",
        "FERROLB_LOG_LEVEL",
        "json",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

#[test]
fn bad_log_level_is_refused_naming_the_flag() {
    let out = Command::new(BIN)
        .env("NODE_NAME", "node-1")
        .env("FERROLB_LOG_LEVEL", "info,x=loud")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--log-level") && err.contains("x=loud"),
        "{err}"
    );
}

#[test]
fn json_logs_and_clean_exit_on_sigterm() {
    // An API server that is not there: the speaker keeps trying to read its gossip key until told
    // to stop.
    let kubeconfig = std::env::temp_dir().join(format!(
        "ferrolb-speaker-cli-test-{}.kubeconfig",
        std::process::id()
    ));
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:9\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n",
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args([
            "--log-format",
            "json",
            "--metrics-bind-address",
            "127.0.0.1:0",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env("NODE_NAME", "node-1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["level"], "INFO", "{first}");
    assert!(
        v["message"].as_str().unwrap().contains("starting"),
        "{first}"
    );

    let t0 = Instant::now();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no exit within 5 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let _ = std::fs::remove_file(&kubeconfig);
    assert!(rest.iter().any(|l| l.contains("SIGTERM")), "{rest:?}");
}

#[test]
fn node_name_is_required() {
    let out = Command::new(BIN).env_remove("NODE_NAME").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--node-name"), "{err}");
}
