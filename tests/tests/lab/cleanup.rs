//! The harness removes everything it created: when a test body panics, and (through the sweep at
//! the next start) when the process that made a lab was killed outright.

use std::time::Duration;

use ferrolb_lab::cmd;
use ferrolb_lab::netns::{lab_namespaces, runs_dir};
use ferrolb_lab::{Lab, LabConfig, Port};

#[test]
fn a_panicking_test_body_leaves_nothing_behind() {
    let mut prefix = String::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = Lab::new(LabConfig {
            nodes: 2,
            backends: true,
        })
        .unwrap();
        prefix = lab.prefix().to_string();
        let _extra = lab
            .spawn(Port::Node(1), "sleeper", &["sleep", "600"])
            .unwrap();
        assert!(
            lab_namespaces()
                .iter()
                .filter(|n| n.starts_with(&prefix))
                .count()
                == 5
        );
        panic!("test body fails on purpose");
    }));
    assert!(result.is_err(), "the body must have panicked");
    assert!(!prefix.is_empty());
    let left: Vec<_> = lab_namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(
        !runs_dir().join(&prefix).exists(),
        "run directory left behind"
    );
    let procs = cmd::run(&["pgrep", "-f", "sleep 600"]).unwrap_or_default();
    assert!(procs.trim().is_empty(), "processes left behind: {procs}");
}

#[test]
fn leftovers_of_a_killed_run_are_swept_by_the_next_lab() {
    // A separate process builds a lab and is killed with SIGKILL: no destructor runs.
    let bin = ferrolb_lab::lab_binary();
    let mut child = std::process::Command::new(&bin)
        .args(["up", "--nodes", "1", "--no-api"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mine = format!("ferrolb-{pid}-");
    cmd::wait_for(
        "the other run's lab",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            (lab_namespaces()
                .iter()
                .filter(|n| n.starts_with(&mine))
                .count()
                == 4)
                .then_some(())
        },
    )
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        lab_namespaces()
            .iter()
            .filter(|n| n.starts_with(&mine))
            .count(),
        4,
        "leftovers exist"
    );

    // Its backend died with it (parent-death signal), even though nothing cleaned up.
    cmd::wait_for(
        "backend of the killed run to die",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || {
            let ns = format!("{mine}0-n1");
            ferrolb_lab::netns::netns_pids(&ns)
                .ok()
                .filter(Vec::is_empty)
        },
    )
    .unwrap();

    let lab = Lab::new(LabConfig {
        nodes: 0,
        backends: false,
    })
    .unwrap();
    let left: Vec<_> = lab_namespaces()
        .into_iter()
        .filter(|n| n.starts_with(&mine))
        .collect();
    assert!(left.is_empty(), "sweep left {left:?}");
    drop(lab);
}
