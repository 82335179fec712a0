//! The real kube-apiserver: it starts, serves our CRDs to the real kubectl and to kube-rs, and
//! enforces authentication and the schema.

use ferrolb_crds::IPAddressPool;
use ferrolb_lab::netns::API_V4;
use ferrolb_lab::{KubeEnv, Lab, LabConfig};
use kube::api::{Api, ListParams};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_applied_with_kubectl_is_listed_by_kube_rs_and_auth_is_real() {
    let lab = Lab::new(LabConfig {
        nodes: 0,
        backends: false,
    })
    .unwrap();
    let env = KubeEnv::start(&lab).unwrap();

    // The real kubectl applies deploy/ (namespace and generated CRDs) and an object of a CRD.
    let deploy = ferrolb_lab::workspace_root().join("deploy");
    let out = env
        .kubectl(&["apply", "-k", &deploy.to_string_lossy()])
        .unwrap();
    assert!(out.contains("namespace/ferrolb-system created"), "{out}");
    assert!(out.contains("ipaddresspools.ferrolb.io created"), "{out}");
    env.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/ipaddresspools.ferrolb.io",
    ])
    .unwrap();
    let pool = lab.dir().join("pool.yaml");
    std::fs::write(
        &pool,
        "apiVersion: ferrolb.io/v1alpha1\nkind: IPAddressPool\nmetadata:\n  name: lab\nspec:\n  addresses: [\"192.0.2.64/26\"]\n",
    )
    .unwrap();
    let out = env
        .kubectl(&["apply", "-f", &pool.to_string_lossy()])
        .unwrap();
    assert!(
        out.contains("ipaddresspool.ferrolb.io/lab created"),
        "{out}"
    );

    // kube-rs lists it back, with the schema's defaults filled in by the server.
    let client = env.client().await.unwrap();
    let pools: Api<IPAddressPool> = Api::all(client);
    let list = pools.list(&ListParams::default()).await.unwrap();
    let names: Vec<_> = list
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(names, vec!["lab".to_string()]);
    assert_eq!(
        list.items[0].spec.addresses,
        vec!["192.0.2.64/26".to_string()]
    );
    assert!(
        list.items[0].spec.auto_assign,
        "default autoAssign=true applied by the API server"
    );

    // The schema is enforced: an empty address list is rejected, naming the field.
    std::fs::write(
        &pool,
        "apiVersion: ferrolb.io/v1alpha1\nkind: IPAddressPool\nmetadata:\n  name: empty\nspec:\n  addresses: []\n",
    )
    .unwrap();
    let err = env
        .kubectl(&["apply", "-f", &pool.to_string_lossy()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("spec.addresses"), "{err}");

    // Authentication is real: no credentials is forbidden (anonymous has no RBAC rights), a wrong
    // token is unauthorized, and the admin token works.
    let url = env.local_url();
    let ca = env.ca_path();
    let ca = ca.to_string_lossy();
    let mut anon = kube::Config::new(url.parse().unwrap());
    anon.accept_invalid_certs = true;
    let anon = kube::Client::try_from(anon).unwrap();
    let err = Api::<IPAddressPool>::all(anon)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("forbidden") && msg.contains("system:anonymous"),
        "{msg}"
    );
    let wrong = ferrolb_lab::cmd::output_timeout(
        &[
            "kubectl",
            "--kubeconfig",
            "/dev/null",
            "--server",
            &url,
            "--certificate-authority",
            &ca,
            "--token",
            "not-the-token",
            "get",
            "namespaces",
        ],
        std::time::Duration::from_secs(30),
    )
    .unwrap();
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("Unauthorized"), "{stderr}");

    // TLS is real: the serving certificate verifies against the generated CA for the lab address.
    let kc = env.lab_kubeconfig();
    let text = std::fs::read_to_string(&kc).unwrap();
    assert!(text.contains(&format!("https://{API_V4}:6443")), "{text}");
    let namespaces = env.kubectl(&["get", "namespaces", "-o", "name"]).unwrap();
    assert!(namespaces.contains("namespace/kube-system"), "{namespaces}");

    // RBAC is enforced: a service account without bindings cannot list pools.
    env.kubectl(&["create", "serviceaccount", "nobody", "-n", "default"])
        .unwrap();
    let token = env
        .kubectl(&["create", "token", "nobody", "-n", "default"])
        .unwrap();
    let sa = ferrolb_lab::cmd::output_timeout(
        &[
            "kubectl",
            "--kubeconfig",
            "/dev/null",
            "--server",
            &url,
            "--certificate-authority",
            &ca,
            "--token",
            token.trim(),
            "get",
            "ipaddresspools",
        ],
        std::time::Duration::from_secs(30),
    )
    .unwrap();
    let stderr = String::from_utf8_lossy(&sa.stderr);
    assert!(
        !sa.status.success()
            && stderr.contains("system:serviceaccount:default:nobody")
            && stderr.contains("forbidden"),
        "{stderr}"
    );
}
