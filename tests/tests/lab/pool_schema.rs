//! The IPAddressPool schema on the real API server: what CEL and OpenAPI can reject, `kubectl apply`
//! rejects with a message naming the field; valid pools are accepted unchanged.

use ferrolb_lab::{KubeEnv, Lab, LabConfig};

fn pool(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: ferrolb.io/v1alpha1\nkind: IPAddressPool\nmetadata:\n  name: {name}\nspec:\n{spec}"
    )
}

#[test]
fn kubectl_rejects_invalid_pools_naming_the_field_and_accepts_valid_ones() {
    let lab = Lab::new(LabConfig {
        nodes: 0,
        backends: false,
    })
    .unwrap();
    let env = KubeEnv::start(&lab).unwrap();
    let deploy = ferrolb_lab::workspace_root().join("deploy");
    env.kubectl(&["apply", "-k", &deploy.to_string_lossy()])
        .unwrap();
    env.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/ipaddresspools.ferrolb.io",
    ])
    .unwrap();
    let file = lab.dir().join("pool.yaml");
    let apply = |yaml: &str| {
        std::fs::write(&file, yaml).unwrap();
        env.kubectl(&["apply", "-f", &file.to_string_lossy()])
    };

    let valid = [
        ("v4-cidr", "  addresses: [\"192.0.2.64/26\"]\n"),
        (
            "v4-range",
            "  addresses: [\"192.0.2.70-192.0.2.80\"]\n  avoidBuggyIPs: true\n",
        ),
        (
            "v6",
            "  addresses: [\"2001:db8::1:0/112\", \"2001:db8::2:1 - 2001:db8::2:9\"]\n  autoAssign: false\n",
        ),
        (
            "selective",
            "  addresses: [\"2001:db8:1::/64\"]\n  serviceAllocation:\n    priority: 10\n    namespaces: [team-a]\n    serviceSelectors:\n    - matchLabels: {tier: web}\n",
        ),
    ];
    for (name, spec) in valid {
        let out = apply(&pool(name, spec)).unwrap_or_else(|e| panic!("{name} rejected: {e:#}"));
        assert!(out.contains("created"), "{name}: {out}");
    }

    let invalid = [
        ("empty", "  addresses: []\n", "spec.addresses"),
        ("missing", "  autoAssign: true\n", "spec.addresses"),
        (
            "bad-cidr",
            "  addresses: [\"192.0.2.0/33\"]\n",
            "spec.addresses",
        ),
        (
            "garbage",
            "  addresses: [\"not-an-address\"]\n",
            "spec.addresses",
        ),
        (
            "mixed-range",
            "  addresses: [\"192.0.2.10-2001:db8::10\"]\n",
            "spec.addresses",
        ),
        (
            "three-part",
            "  addresses: [\"192.0.2.1-192.0.2.2-192.0.2.3\"]\n",
            "spec.addresses",
        ),
        (
            "negative-priority",
            "  addresses: [\"192.0.2.64/26\"]\n  serviceAllocation:\n    priority: -1\n",
            "spec.serviceAllocation.priority",
        ),
        (
            "wrong-type",
            "  addresses: [\"192.0.2.64/26\"]\n  autoAssign: sometimes\n",
            "spec.autoAssign",
        ),
    ];
    for (name, spec, field) in invalid {
        let err = apply(&pool(name, spec)).expect_err(name).to_string();
        assert!(
            err.contains(field),
            "{name}: the rejection does not name {field}: {err}"
        );
    }
    // Rejected objects were not stored; the valid ones are untouched.
    let names = env
        .kubectl(&["get", "ipaddresspools", "-o", "name"])
        .unwrap();
    let mut got: Vec<&str> = names.lines().collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            "ipaddresspool.ferrolb.io/selective",
            "ipaddresspool.ferrolb.io/v4-cidr",
            "ipaddresspool.ferrolb.io/v4-range",
            "ipaddresspool.ferrolb.io/v6"
        ]
    );
    // The short name and printer columns work.
    let table = env.kubectl(&["get", "ipp"]).unwrap();
    for col in [
        "ADDRESSES",
        "AUTO-ASSIGN",
        "ASSIGNED",
        "AVAILABLE",
        "READY",
        "AGE",
    ] {
        assert!(table.contains(col), "{table}");
    }
}
