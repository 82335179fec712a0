//! `kubectl ferrolb`: the operator's view of ferrolb, and the migration from MetalLB.
//!
//! Installed as `kubectl-ferrolb` anywhere on PATH, kubectl runs it as `kubectl ferrolb …`. The
//! logic is in pure modules (`status`, `migrate`, `table`); this file parses flags, talks to the
//! API server (`api`) and prints.

mod api;
mod migrate;
mod status;
mod table;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "kubectl ferrolb",
    bin_name = "kubectl ferrolb",
    version,
    about = "Operate ferrolb: pools, Services and speakers at a glance, and the migration from MetalLB",
    after_help = "Examples:\n  \
        kubectl ferrolb status\n  \
        kubectl ferrolb status -n team-a -o json\n  \
        kubectl ferrolb status service default/web\n  \
        kubectl ferrolb migrate from-metallb > ferrolb.yaml\n  \
        kubectl ferrolb migrate from-metallb --apply"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Flags every command takes, as kubectl names them.
#[derive(clap::Args, Debug, Clone)]
pub struct Global {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Limit to this namespace (default: all namespaces).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Never colour the output (colour is used only on a terminal; NO_COLOR also turns it off).
    #[arg(long, global = true)]
    pub no_color: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Pools with used/free addresses per family, LoadBalancer Services with address, pool and
    /// announcing node (or why not), and the speakers per node.
    #[command(after_help = "Examples:\n  \
        kubectl ferrolb status                      # every namespace, as tables\n  \
        kubectl ferrolb status -n team-a            # Services of one namespace\n  \
        kubectl ferrolb status -o json | jq '.services[] | select(.state != \"announced\")'\n  \
        kubectl ferrolb status service default/web  # the whole story of one Service\n\n\
        Gossip membership and quorum are not in the API (speakers publish them on :7473/metrics).")]
    Status {
        #[command(subcommand)]
        target: Option<StatusTarget>,
    },
    /// Move every address off NODE: its speaker stops answering and the others take its
    /// addresses over. Declarative: it labels the Node
    /// `node.kubernetes.io/exclude-from-external-load-balancers=ferrolb-drain` (the label every
    /// speaker honours), so it survives speaker restarts and shows on the Node.
    #[command(after_help = "Examples:\n  \
        kubectl ferrolb drain node-2     # before maintenance\n  \
        kubectl ferrolb undrain node-2   # afterwards")]
    Drain {
        /// The Node's name.
        node: String,
    },
    /// Let NODE announce again: removes the label `drain` set (a label with another value, set by
    /// someone else, is left alone with an error).
    Undrain {
        /// The Node's name.
        node: String,
    },
    /// Convert another load balancer's configuration to ferrolb's.
    Migrate {
        #[command(subcommand)]
        from: MigrateFrom,
    },
}

#[derive(Subcommand, Debug)]
enum StatusTarget {
    /// The whole story of one Service: what it asks for, its allocation, who announces it,
    /// its conditions and ferrolb's latest Events about it.
    #[command(after_help = "Examples:\n  \
        kubectl ferrolb status service default/web\n  \
        kubectl ferrolb status service web -n default -o yaml")]
    Service {
        /// NAMESPACE/NAME, or NAME with -n (default namespace: default).
        service: String,
    },
}

#[derive(Subcommand, Debug)]
enum MigrateFrom {
    /// Read MetalLB's IPAddressPools and L2Advertisements (metallb.io/v1beta1) and print the
    /// equivalent ferrolb objects as YAML, or create them with --apply.
    #[command(
        after_help = "What does not map (BGPPeer, BGPAdvertisement, Community and BFDProfile \
        objects, fields ferrolb has no equivalent for, names that collide because ferrolb's objects \
        are cluster-scoped) is listed on stderr, never dropped silently. The exit status is \
        non-zero only on errors (the API server unreachable, MetalLB's CRDs missing, an apply \
        refused), not because something did not map.\n\n\
        -n limits the MetalLB namespace read (default: all namespaces; MetalLB's is usually \
        metallb-system).\n\n\
        Examples:\n  \
        kubectl ferrolb migrate from-metallb                   # print the YAML\n  \
        kubectl ferrolb migrate from-metallb > ferrolb.yaml && kubectl apply -f ferrolb.yaml\n  \
        kubectl ferrolb migrate from-metallb --apply           # server-side apply\n  \
        kubectl ferrolb migrate from-metallb -n metallb-system -o json"
    )]
    FromMetallb {
        /// Create the objects with server-side apply instead of printing them.
        #[arg(long)]
        apply: bool,
        /// The field manager of the apply.
        #[arg(long, default_value = "kubectl-ferrolb", value_name = "NAME")]
        field_manager: String,
    },
}

/// Splits `ns/name`, or takes `name` in `namespace`.
fn service_key(arg: &str, namespace: Option<&str>) -> anyhow::Result<(String, String)> {
    match arg.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            if namespace.is_some_and(|n| n != ns) {
                anyhow::bail!(
                    "{arg} names namespace {ns} but -n says {}; give one of them",
                    namespace.unwrap_or_default()
                );
            }
            Ok((ns.to_string(), name.to_string()))
        }
        None if !arg.is_empty() => Ok((namespace.unwrap_or("default").to_string(), arg.into())),
        _ => anyhow::bail!("{arg:?} is not a Service: give NAMESPACE/NAME or NAME with -n"),
    }
}

fn print_machine<T: serde::Serialize>(value: &T, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
        _ => print!("{}", serde_saphyr::to_string(value)?),
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    let style = table::Style::decide(
        std::io::stdout().is_terminal(),
        g.no_color,
        std::env::var("NO_COLOR").ok().as_deref(),
    );
    let client = api::client(g).await?;
    match cli.command {
        Command::Status { target: None } => {
            let input = api::status_input(&client, g.namespace.as_deref()).await?;
            let mut report = status::report(
                &input.pools,
                &input.services,
                &input.events,
                &input.advertisements,
                &input.speaker_pods,
                g.namespace.as_deref(),
            );
            report.notes.extend(input.notes);
            match g.output {
                Output::Table => print!("{}", status::render_report(&report, style)),
                o => print_machine(&report, o)?,
            }
        }
        Command::Drain { node } => {
            api::set_drained(&client, &node, true).await?;
            println!(
                "node/{node} drained: labelled {}={}; its addresses move to other nodes",
                api::DRAIN_LABEL,
                api::DRAIN_VALUE
            );
        }
        Command::Undrain { node } => {
            api::set_drained(&client, &node, false).await?;
            println!("node/{node} undrained: label {} removed", api::DRAIN_LABEL);
        }
        Command::Status {
            target: Some(StatusTarget::Service { service }),
        } => {
            let (ns, name) = service_key(&service, g.namespace.as_deref())?;
            let (svc, events) = api::service_input(&client, &ns, &name).await?;
            let story = status::service_story(&svc, &events);
            match g.output {
                Output::Table => print!(
                    "{}",
                    status::render_story(&story, k8s_openapi::jiff::Timestamp::now(), style)
                ),
                o => print_machine(&story, o)?,
            }
        }
        Command::Migrate {
            from:
                MigrateFrom::FromMetallb {
                    apply,
                    field_manager,
                },
        } => {
            let input = api::metallb_input(&client, g.namespace.as_deref()).await?;
            let m = migrate::migrate(&input.pools, &input.advertisements, &input.others);
            if !m.unmapped.is_empty() {
                eprintln!(
                    "not migrated ({}): ferrolb cannot express these; review them by hand",
                    m.unmapped.len()
                );
                for u in &m.unmapped {
                    eprintln!("  - {u}");
                }
            }
            if !m.differences.is_empty() {
                eprintln!(
                    "migrated, but read differently by ferrolb ({}):",
                    m.differences.len()
                );
                for d in &m.differences {
                    eprintln!("  - {d}");
                }
            }
            if m.pools.is_empty() && m.advertisements.is_empty() {
                eprintln!(
                    "no MetalLB IPAddressPool or L2Advertisement found{}",
                    g.namespace
                        .as_deref()
                        .map(|n| format!(" in namespace {n}"))
                        .unwrap_or_default()
                );
            }
            if apply {
                for line in api::apply(&client, &m, &field_manager).await? {
                    println!("{line}");
                }
            } else {
                match g.output {
                    Output::Json => {
                        let mut items: Vec<serde_json::Value> = Vec::new();
                        for p in &m.pools {
                            items.push(serde_json::to_value(p)?);
                        }
                        for a in &m.advertisements {
                            items.push(serde_json::to_value(a)?);
                        }
                        let list =
                            serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
                        println!("{}", serde_json::to_string_pretty(&list)?);
                    }
                    _ => print!("{}", migrate::to_yaml(&m)?),
                }
            }
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn service_keys() {
        assert_eq!(
            service_key("default/web", None).unwrap(),
            ("default".into(), "web".into())
        );
        assert_eq!(
            service_key("web", Some("team-a")).unwrap(),
            ("team-a".into(), "web".into())
        );
        assert_eq!(
            service_key("web", None).unwrap(),
            ("default".into(), "web".into())
        );
        assert!(service_key("a/web", Some("b")).is_err());
        assert!(service_key("a/b/c", None).is_err());
        assert!(service_key("/web", None).is_err());
    }

    #[test]
    fn kubectl_style_flags_parse_anywhere() {
        let cli = Cli::try_parse_from([
            "kubectl-ferrolb",
            "status",
            "--kubeconfig",
            "/tmp/k",
            "-o",
            "json",
            "--context",
            "lab",
        ])
        .unwrap();
        assert_eq!(cli.global.output, Output::Json);
        assert_eq!(cli.global.context.as_deref(), Some("lab"));
        let cli = Cli::try_parse_from([
            "kubectl-ferrolb",
            "migrate",
            "from-metallb",
            "--apply",
            "-n",
            "metallb-system",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Migrate {
                from: MigrateFrom::FromMetallb { apply: true, .. }
            }
        ));
    }
}
