//! Gossip key rotation through the Secret (docs/security.md): the new key goes in as
//! `secondaryKey`, becomes `key`, and the old one leaves; the speakers restart one at a time after
//! each step, and at no point does any speaker fail to rejoin all the others.

use std::time::Duration;

use ferrolb_lab::cmd;
use ferrolb_lab::speakers::Cluster;

/// 32 bytes, the AES-256 key length, as the literal the Secret's `stringData` takes.
const NEW_KEY: &str = "ferrolb-rotation-test-key-32byte";

fn patch_secret(c: &Cluster, kind: &str, patch: &str) {
    c.env
        .kubectl(&[
            "-n",
            "ferrolb-system",
            "patch",
            "secret",
            "ferrolb-memberlist",
            "--type",
            kind,
            "-p",
            patch,
        ])
        .unwrap();
}

fn secret_data(c: &Cluster, field: &str) -> String {
    c.env
        .kubectl(&[
            "-n",
            "ferrolb-system",
            "get",
            "secret",
            "ferrolb-memberlist",
            "-o",
            &format!("jsonpath={{.data.{field}}}"),
        ])
        .unwrap()
}

/// Restarts every speaker in turn, each time waiting until every speaker sees all three.
fn rolling_restart(c: &mut Cluster, step: &str) {
    for i in 1..=3 {
        c.stop_speaker(i).unwrap();
        c.restart_speaker(i, &[]).unwrap();
        for j in 1..=3 {
            c.wait_members(j, 3)
                .unwrap_or_else(|e| panic!("{step}: after restarting speaker {i}: {e:#}"));
        }
    }
}

#[test]
fn the_gossip_key_rotates_through_the_secret_without_a_partition() {
    let mut c = Cluster::start(3, &[]).unwrap();
    let old_b64 = secret_data(&c, "key");
    assert!(!old_b64.is_empty());

    // 1. The new key as the secondary: every speaker decrypts it, all still encrypt with the old.
    patch_secret(
        &c,
        "merge",
        &format!(r#"{{"stringData":{{"secondaryKey":"{NEW_KEY}"}}}}"#),
    );
    rolling_restart(&mut c, "new key added as secondaryKey");
    // 2. Swapped: the new key encrypts, the old one still decrypts.
    patch_secret(
        &c,
        "merge",
        &format!(r#"{{"stringData":{{"key":"{NEW_KEY}"}},"data":{{"secondaryKey":"{old_b64}"}}}}"#),
    );
    rolling_restart(&mut c, "keys swapped");
    // 3. The old key removed.
    patch_secret(
        &c,
        "json",
        r#"[{"op":"remove","path":"/data/secondaryKey"}]"#,
    );
    rolling_restart(&mut c, "old key removed");
    assert_eq!(secret_data(&c, "secondaryKey"), "");

    // The rotation happened: a speaker holding only the old key is refused by the others.
    let old_hex = cmd::run(&[
        "bash",
        "-c",
        &format!("printf %s '{old_b64}' | base64 -d | od -An -v -tx1 | tr -d ' \\n'"),
    ])
    .unwrap();
    assert_eq!(old_hex.len(), 64, "{old_hex}");
    let file = c.lab.dir().join("old.key");
    std::fs::write(&file, format!("{old_hex}\n")).unwrap();
    c.stop_speaker(3).unwrap();
    c.restart_speaker(3, &["--gossip-key-file", &file.to_string_lossy()])
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        c.metric(3, "ferrolb_speaker_members").unwrap(),
        1.0,
        "{}",
        c.logs()
    );
    assert_eq!(
        c.metric(1, "ferrolb_speaker_members").unwrap(),
        2.0,
        "{}",
        c.logs()
    );
}
