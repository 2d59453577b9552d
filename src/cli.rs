//! The `vipd` command line: argument parsing (clap derive) and each subcommand's output and exit code.
//!
//! Exit codes: 0 success; 1 invalid input, or a daemon that answered wrongly; 2 usage errors; 3 (`status`)
//! no daemon answers.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::admin::{self, FetchError};
use crate::caps;
use crate::cluster::merge::{self, ClusterSources, Interface};
use crate::cluster::{self, ClusterOptions};
use crate::config::{Config, ConfigError};
use crate::localnet::{self, Cidr};
use crate::logging::{self, LogFormat};
use crate::manifest;
use crate::supervisor::{self, ConfigSource};

/// Control-plane VIP (VRRPv3) and TCP load balancer for bare-metal Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "vipd", version, about, propagate_version = true)]
pub struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `vipd=debug,info` (default: RUST_LOG, else info).
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a vipd config, or derive and check one from a cluster config; prints every error at once.
    Validate(ValidateArgs),
    /// Run the daemon: hold and move the VIP with VRRP, health-check the apiservers and proxy to them.
    Run(RunArgs),
    /// Print this node's static pod manifest (install it as /etc/kubernetes/manifests/vipd.yaml).
    Manifest(ManifestArgs),
    /// Show the running daemon's VRRP state, VIP, proxy and backends (from its admin endpoint).
    Status(StatusArgs),
    /// As root: a failover demo in network namespaces (3 vipd nodes, 3 fake apiservers, a client, a master
    /// killed and restarted), everything removed afterwards.
    Demo(crate::demo::DemoArgs),
    /// Turn a node's keepalived.conf and haproxy.cfg into a vipd config (stdout); every setting that does
    /// not carry over is named on stderr with its line.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The node's keepalived.conf.
    #[arg(long, value_name = "FILE")]
    pub keepalived: PathBuf,
    /// The node's haproxy.cfg (its server lines become the backends; without it, Keepalived's LVS
    /// virtual_server for the VIP gives them).
    #[arg(long, value_name = "FILE")]
    pub haproxy: Option<PathBuf>,
    /// The vrrp_instance to import, when the file has several.
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
    /// The HAProxy frontend (or listen section) to import, when the file has several.
    #[arg(long, value_name = "NAME")]
    pub frontend: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).multiple(true).args(["config", "cluster_config"])))]
pub struct RunArgs {
    /// The vipd config file (re-read on SIGHUP). With --cluster-config: optional, and gives what a cluster
    /// configuration does not carry (health, VRRP timing, priority, VRID, proxy, admin).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A cluster configuration (kind: Cluster) to derive this node's config from (re-read on SIGHUP).
    #[arg(long, value_name = "FILE")]
    pub cluster_config: Option<PathBuf>,
    /// The load-balancer node this is (default: the one whose address is on a local interface).
    #[arg(long, value_name = "ADDR", requires = "cluster_config")]
    pub node: Option<IpAddr>,
}

impl RunArgs {
    pub fn source(&self) -> ConfigSource {
        match (&self.cluster_config, &self.config) {
            (Some(cluster), config) => ConfigSource::Cluster(ClusterSources {
                cluster: cluster.clone(),
                config: config.clone(),
                node: self.node,
                subnet: None,
            }),
            (None, Some(config)) => ConfigSource::File(config.clone()),
            (None, None) => unreachable!("clap requires --config or --cluster-config"),
        }
    }
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).multiple(true).args(["config", "cluster_config"])))]
pub struct ManifestArgs {
    /// The vipd config file, as it lies on the node (mounted into the pod from that path). With
    /// --cluster-config: optional, mounted too.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A cluster configuration: the pod runs `vipd run --cluster-config` for one load-balancer node.
    #[arg(long, value_name = "FILE")]
    pub cluster_config: Option<PathBuf>,
    /// The load-balancer node the pod is for (with --cluster-config, unless --all).
    #[arg(
        long,
        value_name = "ADDR",
        requires = "cluster_config",
        conflicts_with = "all"
    )]
    pub node: Option<IpAddr>,
    /// One manifest per load-balancer node, written to --out DIR as vipd-<address>.yaml.
    #[arg(long, requires = "cluster_config", requires = "out")]
    pub all: bool,
    /// The directory --all writes to.
    #[arg(long, value_name = "DIR", requires = "all")]
    pub out: Option<PathBuf>,
    /// Container image [default: localhost/vipd:v<version>].
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The daemon's admin endpoint (its `admin.listen`).
    #[arg(long, value_name = "URL", default_value_t = admin::default_admin_url())]
    pub admin: String,
    /// Print the raw JSON status document instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// How long `vipd status` waits for the daemon.
const STATUS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).multiple(true).args(["config", "cluster_config"])))]
pub struct ValidateArgs {
    /// The vipd config file. With --cluster-config: the optional file that gives what a cluster configuration
    /// does not carry, checked together with it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A cluster configuration (kind: Cluster) to derive this node's config from.
    #[arg(long, value_name = "FILE")]
    pub cluster_config: Option<PathBuf>,
    /// The load-balancer node to check for (default: the one whose address is on this machine).
    #[arg(long, value_name = "ADDR", requires = "cluster_config")]
    pub node: Option<IpAddr>,
    /// The load-balancer nodes' L2 subnet (default: from the local interface holding the node's address).
    #[arg(long, value_name = "CIDR", requires = "cluster_config", value_parser = parse_cidr)]
    pub subnet: Option<Cidr>,
    /// Print the derived vipd config as YAML (on stdout; the report goes to stderr), as `validate --config`
    /// reads it.
    #[arg(long, requires = "cluster_config")]
    pub print: bool,
}

/// `--subnet`: a network written with its host bits clear, since `192.0.2.5/24` is more likely a node's
/// address than the subnet meant. clap prints "invalid value '192.0.2.5/24' for '--subnet <CIDR>': " first.
fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let c: Cidr = s.parse()?;
    if c.has_host_bits() {
        return Err(format!(
            "host bits are set (a subnet is written with its network address); did you mean {}/{}?",
            c.network(),
            c.prefix
        ));
    }
    Ok(c)
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(cli.log_format, cli.log_level.as_deref()) {
        eprintln!("vipd: {e:#}");
        return ExitCode::from(2);
    }
    // Not locked: `run` keeps these for its whole life while its threads log to stderr.
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    match cli.command {
        Command::Validate(args) => validate(&args, &mut out, &mut err),
        Command::Run(args) => run(&args, &mut err),
        Command::Manifest(args) => manifest(&args, &mut out, &mut err),
        Command::Demo(args) => crate::demo::main(&args),
        Command::Import(args) => import(&args, &mut out, &mut err),
        Command::Status(args) => {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = writeln!(err, "vipd: cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            rt.block_on(status(&args, &mut out, &mut err))
        }
    }
}

/// `vipd import`: the config to `out`, one line per setting not carried over to `err`; exit 1 and only the
/// reason when something needed is missing or ambiguous.
pub fn import(args: &ImportArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let opts = crate::import::ImportOptions {
        keepalived: args.keepalived.clone(),
        haproxy: args.haproxy.clone(),
        instance: args.instance.clone(),
        frontend: args.frontend.clone(),
    };
    match crate::import::import(&opts) {
        Ok(imported) => {
            for w in &imported.warnings {
                let _ = writeln!(err, "{w}");
            }
            let _ = out.write_all(imported.yaml.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(err, "vipd import: {e}");
            ExitCode::from(1)
        }
    }
}

/// `vipd status`: the table (or, with `--json`, the document as served) to `out`; failures to `err`.
pub async fn status(args: &StatusArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    match admin::fetch_status(&args.admin, STATUS_TIMEOUT).await {
        Ok((doc, raw)) => {
            let text = if args.json {
                raw
            } else {
                admin::render_status(&doc)
            };
            let _ = out.write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(err, "vipd status: {e}");
            ExitCode::from(match e {
                FetchError::BadUrl(_) => 2,
                FetchError::NoDaemon { .. } => 3,
                FetchError::BadResponse { .. } => 1,
            })
        }
    }
}

/// `vipd run`: the same checks as `validate`, then the capabilities, then the daemon until SIGTERM.
/// Nothing touches the network before the config and the capabilities are known to be good.
pub fn run(args: &RunArgs, err: &mut dyn Write) -> ExitCode {
    let source = args.source();
    let cfg = match source.load() {
        Ok((c, warnings)) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
            c
        }
        Err(lines) => {
            let _ = writeln!(err, "vipd run: refusing to start with an invalid config");
            for line in lines {
                let _ = writeln!(err, "{line}");
            }
            return ExitCode::from(1);
        }
    };
    let needs_bind_service =
        caps::needs_bind_service(&[cfg.control_plane_lb_port, cfg.admin.listen.port()]);
    if let Err(e) = caps::check(needs_bind_service) {
        let _ = writeln!(err, "vipd run: {e}");
        return ExitCode::from(1);
    }
    // Capabilities are per thread: drop them while this is the only thread, before the runtime starts.
    if let Err(e) = caps::drop_to_required(needs_bind_service) {
        let _ = writeln!(err, "vipd run: cannot drop capabilities: {e}");
        return ExitCode::from(1);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("vipd")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "vipd run: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(supervisor::run(source, cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("vipd run: {e:#}");
            let _ = writeln!(err, "vipd run: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn local_addrs_or_warn(err: &mut dyn Write) -> Vec<localnet::LocalAddr> {
    localnet::local_addrs().unwrap_or_else(|e| {
        let _ = writeln!(err, "warning: cannot list this machine's addresses: {e}");
        Vec::new()
    })
}

fn absolute(p: &Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

/// What a node's manifest needs from its config (the file(s) it runs from are in `source`).
fn manifest_options(
    cfg: &Config,
    source: manifest::ManifestSource,
    image: &Option<String>,
) -> manifest::ManifestOptions {
    let https = cfg.health.kind == crate::config::HealthKind::Https;
    let shown = |p: &Path| p.display().to_string();
    manifest::ManifestOptions {
        image: image.clone().unwrap_or_else(manifest::default_image),
        source,
        admin: cfg.admin.listen,
        metrics: cfg.metrics.listen,
        drain_timeout: cfg.proxy.drain_timeout,
        node_name: None,
        tls_files: manifest::TlsFiles {
            ca_file: (https && !cfg.health.insecure_skip_verify)
                .then(|| shown(&cfg.health.ca_file)),
            client_cert: cfg.health.client_auth.as_ref().map(|c| shown(&c.cert)),
            client_key: cfg.health.client_auth.as_ref().map(|c| shown(&c.key)),
        },
    }
}

/// `vipd manifest`: the static pod for this node's config, or with `--cluster-config` for one load-balancer
/// node (`--node`) or every one (`--all --out DIR`).
pub fn manifest(args: &ManifestArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let Some(cluster) = &args.cluster_config else {
        let path = args.config.as_deref().expect("clap requires an input");
        let cfg = match Config::load(path) {
            Ok(c) => c,
            Err(e) => return report_load_error(path, &e, err),
        };
        let source = manifest::ManifestSource::Config {
            host_path: absolute(path),
        };
        let _ = out
            .write_all(manifest::render(&manifest_options(&cfg, source, &args.image)).as_bytes());
        return ExitCode::SUCCESS;
    };
    let local = local_addrs_or_warn(err);
    let nodes = match (&args.node, args.all) {
        (Some(n), _) => vec![*n],
        (None, true) => match cluster_nodes(cluster, &local, err) {
            Some(n) => n,
            None => return ExitCode::from(1),
        },
        (None, false) => {
            let _ = writeln!(
                err,
                "vipd manifest: with --cluster-config, give --node ADDR or --all --out DIR"
            );
            return ExitCode::from(2);
        }
    };
    for node in nodes {
        let src = ClusterSources {
            cluster: cluster.clone(),
            config: args.config.clone(),
            node: Some(node),
            subnet: None,
        };
        let resolved = match merge::resolve_for(&src, local.clone(), Interface::FoundOnTheNode) {
            Ok(r) => r,
            Err(refused) => {
                for line in refused.0 {
                    let _ = writeln!(err, "{line}");
                }
                return ExitCode::from(1);
            }
        };
        let source = manifest::ManifestSource::Cluster {
            cluster_host_path: absolute(cluster),
            config_host_path: args.config.as_deref().map(absolute),
            node,
        };
        let text = manifest::render(&manifest_options(&resolved.config, source, &args.image));
        if let Err(code) = emit_manifest(args.out.as_deref(), node, &text, out, err) {
            return code;
        }
    }
    ExitCode::SUCCESS
}

/// Every load-balancer node of the cluster configuration, or the errors printed.
fn cluster_nodes(
    cluster: &Path,
    local: &[localnet::LocalAddr],
    err: &mut dyn Write,
) -> Option<Vec<IpAddr>> {
    let opts = ClusterOptions {
        local_addrs: local.to_vec(),
        ..ClusterOptions::default()
    };
    match cluster::check_file(cluster, &opts) {
        Err(e) => {
            report_load_error(cluster, &e, err);
            None
        }
        Ok(r) if !r.errors.is_empty() => {
            let _ = err.write_all(cluster::render(&cluster.display().to_string(), &r).as_bytes());
            None
        }
        Ok(r) => Some(r.lb_nodes.iter().map(|n| n.address).collect()),
    }
}

/// To stdout, or to `dir/vipd-<node>.yaml` (and its name to stdout).
fn emit_manifest(
    dir: Option<&Path>,
    node: IpAddr,
    text: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), ExitCode> {
    let Some(dir) = dir else {
        let _ = out.write_all(text.as_bytes());
        return Ok(());
    };
    let file = dir.join(format!("vipd-{node}.yaml"));
    match std::fs::write(&file, text) {
        Ok(()) => {
            let _ = writeln!(out, "{}", file.display());
            Ok(())
        }
        Err(e) => {
            let _ = writeln!(err, "vipd manifest: cannot write {}: {e}", file.display());
            Err(ExitCode::from(1))
        }
    }
}

/// `vipd validate`: errors to `err`, one line each, then a count; the one-line summary to `out` when valid.
/// With `--print`, the derived config goes to `out` and the report to `err`.
pub fn validate(args: &ValidateArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let Some(path) = &args.cluster_config else {
        let path = args.config.as_deref().expect("clap requires an input");
        return validate_config(path, out, err);
    };
    let local_addrs = local_addrs_or_warn(err);
    if args.config.is_some() || args.print {
        return validate_merged(args, path, local_addrs, out, err);
    }
    let opts = ClusterOptions {
        node: args.node,
        subnet: args.subnet,
        local_addrs,
    };
    match cluster::check_file(path, &opts) {
        Err(e) => report_load_error(path, &e, err),
        Ok(report) => {
            let text = cluster::render(&path.display().to_string(), &report);
            if report.errors.is_empty() {
                let _ = out.write_all(text.as_bytes());
                ExitCode::SUCCESS
            } else {
                let _ = err.write_all(text.as_bytes());
                ExitCode::from(1)
            }
        }
    }
}

/// `validate --cluster-config FILE --config FILE` and/or `--print`: the config the node would run.
fn validate_merged(
    args: &ValidateArgs,
    cluster_path: &Path,
    local_addrs: Vec<localnet::LocalAddr>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitCode {
    let src = ClusterSources {
        cluster: cluster_path.to_path_buf(),
        config: args.config.clone(),
        node: args.node,
        subnet: args.subnet,
    };
    // Checking from another machine skips the interface (and says so); printing needs it, since the printed
    // config must be one `validate --config` accepts.
    let interface = if args.print {
        Interface::Required
    } else {
        Interface::FoundOnTheNode
    };
    match merge::resolve_for(&src, local_addrs, interface) {
        Err(refused) => {
            for line in refused.0 {
                let _ = writeln!(err, "{line}");
            }
            ExitCode::from(1)
        }
        Ok(r) => {
            let report = cluster::render(&cluster_path.display().to_string(), &r.report);
            if args.print {
                let _ = out.write_all(crate::config::print::to_yaml(&r.config).as_bytes());
                let _ = err.write_all(report.as_bytes());
            } else {
                let _ = out.write_all(report.as_bytes());
            }
            ExitCode::SUCCESS
        }
    }
}

fn validate_config(path: &Path, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    match Config::load(path) {
        Ok(c) => {
            let _ = writeln!(out, "{}", c.summary(&path.display().to_string()));
            ExitCode::SUCCESS
        }
        Err(e) => report_load_error(path, &e, err),
    }
}

fn report_load_error(path: &Path, e: &ConfigError, err: &mut dyn Write) -> ExitCode {
    for line in e.lines(path) {
        let _ = writeln!(err, "{line}");
    }
    ExitCode::from(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(admin: String, json: bool) -> StatusArgs {
        StatusArgs { admin, json }
    }

    #[tokio::test]
    async fn status_prints_the_table_or_the_json() {
        let s = crate::admin::tests::start().await;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = status(
            &args(format!("http://{}", s.addr), false),
            &mut out,
            &mut err,
        )
        .await;
        assert_eq!(code, ExitCode::SUCCESS);
        assert!(err.is_empty());
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            admin::render_status(&crate::admin::tests::sample_doc())
        );

        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = status(&args(s.addr.to_string(), true), &mut out, &mut err).await;
        assert_eq!(code, ExitCode::SUCCESS);
        let doc: admin::StatusDoc = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc, crate::admin::tests::sample_doc());
        s.stop.cancel();
        s.task.await.unwrap();
    }

    #[tokio::test]
    async fn status_without_a_daemon_says_so() {
        let s = crate::admin::tests::start().await;
        s.stop.cancel();
        s.task.await.unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = status(&args(s.addr.to_string(), false), &mut out, &mut err).await;
        assert_eq!(code, ExitCode::from(3));
        assert!(out.is_empty());
        let msg = String::from_utf8(err).unwrap();
        assert!(
            msg.starts_with(&format!(
                "vipd status: no vipd answers at http://{}/status: ",
                s.addr
            )),
            "{msg}"
        );

        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = status(&args("ftp://x".to_string(), false), &mut out, &mut err).await;
        assert_eq!(code, ExitCode::from(2));
    }

    #[test]
    fn default_admin_url_is_the_default_listen() {
        assert_eq!(admin::default_admin_url(), "http://127.0.0.1:9440");
        let cli = Cli::try_parse_from(["vipd", "status"]).unwrap();
        match cli.command {
            Command::Status(a) => {
                assert_eq!((a.admin.as_str(), a.json), ("http://127.0.0.1:9440", false))
            }
            other => panic!("{other:?}"),
        }
    }
}
