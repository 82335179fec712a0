//! Writes every ferrolb CRD as YAML into the directory given (default `deploy/crds`).
//! CI runs it into a temporary directory and fails when the result differs from what is committed.

use std::path::PathBuf;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("deploy/crds"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = Vec::new();
    for crd in ferrolb_crds::all() {
        let name = ferrolb_crds::file_name(&crd);
        let path = dir.join(&name);
        files.push(name);
        let yaml = ferrolb_crds::render(&crd)?;
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    // A kustomization listing them, so `deploy/kustomization.yaml` can include the directory.
    let path = dir.join("kustomization.yaml");
    std::fs::write(&path, ferrolb_crds::kustomization(&files))
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
