//! `ferrolb-speaker control-plane`: its flags, their environment variables, and start-up errors
//! that say what to fix (checked on the real binary, before any network is touched).

// Test code: clippy does not count the helpers of an integration test as test code.
#![allow(clippy::unwrap_used)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ferrolb-speaker");

#[test]
fn help_lists_the_flags_and_their_variables() {
    let out = Command::new(BIN)
        .args(["control-plane", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--vip",
        "FERROLB_CP_VIP",
        "--interface",
        "--id",
        "--peers",
        "FERROLB_CP_PEERS",
        "--health-url",
        "--health-ca",
        "--health-insecure",
        "--data-dir",
        "--key-file",
        "--tick-ms",
        "--election-ticks",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

fn run(env: &[(&str, &str)]) -> String {
    let key = std::env::temp_dir().join(format!("ferrolb-cp-cli-key-{}", std::process::id()));
    std::fs::write(&key, "cd".repeat(32)).unwrap();
    let out = Command::new(BIN)
        .arg("control-plane")
        .env("FERROLB_CP_VIP", "192.0.2.60")
        .env("FERROLB_CP_INTERFACE", "lo")
        .env("FERROLB_CP_ID", "1")
        .env("FERROLB_CP_KEY_FILE", &key)
        .env("FERROLB_CP_HEALTH_INSECURE", "true")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn start_up_errors_come_from_flags_or_environment_and_say_what_to_fix() {
    let err = run(&[("FERROLB_CP_PEERS", "1=192.0.2.11:7480,1=192.0.2.12:7480")]);
    assert!(err.contains("names node 1 twice"), "{err}");
    let err = run(&[("FERROLB_CP_PEERS", "2=192.0.2.12:7480,3=192.0.2.13:7480")]);
    assert!(err.contains("does not name this node (--id 1)"), "{err}");
    let err = run(&[
        ("FERROLB_CP_PEERS", "1=192.0.2.11:7480"),
        ("FERROLB_CP_KEY_FILE", "/nonexistent/ferrolb.key"),
    ]);
    assert!(err.contains("openssl rand -hex 32"), "{err}");
    let err = run(&[
        ("FERROLB_CP_PEERS", "1=192.0.2.11:7480"),
        ("FERROLB_CP_INTERFACE", "no-such-if0"),
    ]);
    assert!(err.contains("no network interface named"), "{err}");
    let err = run(&[("FERROLB_CP_PEERS", "0=192.0.2.11:7480")]);
    assert!(err.contains("reserved by Raft"), "{err}");
}
