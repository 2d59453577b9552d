//! The static pod manifest that `vipd manifest` prints for one node, and the test that keeps it equal to the
//! checked-in `manifests/vipd.yaml`.
//!
//! The pod is built as a typed k8s-openapi `Pod` rather than as text, so a misspelled or misplaced field is a
//! compile error, not a pod the kubelet silently runs without its probe or its capability drop.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, HTTPGetAction, HostPathVolumeSource, Pod,
    PodSecurityContext, PodSpec, Probe, ResourceRequirements, SeccompProfile, SecurityContext,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Where the container always finds its config, whatever the host path: `args` never change per node.
pub const CONTAINER_CONFIG_PATH: &str = "/etc/vipd/vipd.yaml";
/// Where the container finds the cluster configuration (`vipd run --cluster-config`).
pub const CONTAINER_CLUSTER_CONFIG_PATH: &str = "/etc/vipd/cluster.yaml";

/// The capabilities vipd needs, in Kubernetes spelling (no `CAP_` prefix): NET_ADMIN for the VIP (netlink,
/// IP_FREEBIND, multicast membership), NET_RAW for the VRRP and ARP/NA sockets, NET_BIND_SERVICE for :443.
pub const CAPABILITIES: [&str; 3] = ["NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE"];

/// Grace beyond `proxy.drainTimeout`, so draining ends before the kubelet's SIGKILL (same margin as the
/// systemd unit's TimeoutStopSec).
const GRACE_MARGIN: Duration = Duration::from_secs(15);

/// `system-node-critical`'s value: the kubelet decides eviction and preemption for static pods on
/// `spec.priority`, since no admission plugin resolves the class name on the node (kubeadm sets it too).
const SYSTEM_NODE_CRITICAL: i32 = 2_000_001_000;

/// What differs between nodes. The CLI fills it from the node's config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestOptions {
    pub image: String,
    /// The file(s) the pod runs from, mounted read-only.
    pub source: ManifestSource,
    /// `admin.listen`: the probes target it; an unspecified address is probed on loopback.
    pub admin: SocketAddr,
    /// `metrics.listen`: declared as the container port `metrics`, which a PodMonitor or a pod scrape job
    /// selects by name (on the host network the container port is the node's port).
    pub metrics: Option<SocketAddr>,
    /// `proxy.drainTimeout`; the pod's grace period is this plus a margin.
    pub drain_timeout: Duration,
    /// Only informative: the kubelet sets `spec.nodeName` of a static pod to its own node anyway.
    pub node_name: Option<String>,
    /// The files the config names (`health.caFile`, `clientCert`, `clientKey`), mounted at the same path.
    pub tls_files: TlsFiles,
}

/// What `vipd run` in the pod reads, by host path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestSource {
    /// `run --config`: the file mounted at [`CONTAINER_CONFIG_PATH`].
    Config { host_path: String },
    /// `run --cluster-config ... --node ADDR [--config ...]`: the cluster configuration mounted at
    /// [`CONTAINER_CLUSTER_CONFIG_PATH`], the optional vipd config at [`CONTAINER_CONFIG_PATH`].
    Cluster {
        cluster_host_path: String,
        config_host_path: Option<String>,
        node: IpAddr,
    },
}

impl ManifestSource {
    /// The container's arguments.
    fn args(&self) -> Vec<String> {
        let mut a = vec!["run".to_owned()];
        match self {
            ManifestSource::Config { .. } => {
                a.extend(["--config".to_owned(), CONTAINER_CONFIG_PATH.to_owned()])
            }
            ManifestSource::Cluster {
                config_host_path,
                node,
                ..
            } => {
                a.extend(["--cluster-config", CONTAINER_CLUSTER_CONFIG_PATH].map(String::from));
                if config_host_path.is_some() {
                    a.extend(["--config", CONTAINER_CONFIG_PATH].map(String::from));
                }
                a.extend(["--node".to_owned(), node.to_string()]);
            }
        }
        a
    }

    /// (volume name, host path, container path) of each file.
    fn files(&self) -> Vec<(&'static str, String, &'static str)> {
        match self {
            ManifestSource::Config { host_path } => {
                vec![("config", host_path.clone(), CONTAINER_CONFIG_PATH)]
            }
            ManifestSource::Cluster {
                cluster_host_path,
                config_host_path,
                ..
            } => {
                let mut f = vec![(
                    "cluster-config",
                    cluster_host_path.clone(),
                    CONTAINER_CLUSTER_CONFIG_PATH,
                )];
                if let Some(c) = config_host_path {
                    f.push(("config", c.clone(), CONTAINER_CONFIG_PATH));
                }
                f
            }
        }
    }
}

/// Host files the health check reads; each is mounted read-only at its host path, since the config that
/// names it is the same file inside and outside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_file: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

impl Default for ManifestOptions {
    /// The defaults of the config file (issue 2): `admin.listen: 127.0.0.1:9440`, `drainTimeout: 30s`,
    /// `caFile: /etc/kubernetes/pki/ca.crt`.
    fn default() -> Self {
        ManifestOptions {
            image: default_image(),
            source: ManifestSource::Config {
                host_path: CONTAINER_CONFIG_PATH.to_owned(),
            },
            admin: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9440),
            metrics: None,
            drain_timeout: Duration::from_secs(30),
            node_name: None,
            tls_files: TlsFiles {
                ca_file: Some("/etc/kubernetes/pki/ca.crt".to_owned()),
                client_cert: None,
                client_key: None,
            },
        }
    }
}

/// The image tag follows the crate version so a release's manifest names the release's image. `localhost/`
/// is what `docker build -t` / `ctr images import` give a locally built image (docs/static-build.md).
pub fn default_image() -> String {
    format!("localhost/vipd:v{}", env!("CARGO_PKG_VERSION"))
}

/// The static pod for one node, as YAML text ready for `/etc/kubernetes/manifests/vipd.yaml`.
pub fn render(opts: &ManifestOptions) -> String {
    let yaml = serde_saphyr::to_string(&pod(opts))
        .expect("a Pod has only string keys and always serializes");
    let node = match &opts.node_name {
        Some(n) => format!(" for node {n}"),
        None => String::new(),
    };
    format!(
        "# vipd static pod{node}, printed by `vipd manifest`. Install as /etc/kubernetes/manifests/vipd.yaml.\n\
         # Runs as root with every capability dropped but {caps}: see manifests/vipd.yaml for why.\n{yaml}",
        caps = CAPABILITIES.join(", "),
    )
}

/// The typed pod behind [`render`].
pub fn pod(opts: &ManifestOptions) -> Pod {
    let (mounts, volumes) = file_mounts(opts);
    Pod {
        metadata: pod_metadata(),
        spec: Some(PodSpec {
            node_name: opts.node_name.clone(),
            host_network: Some(true),
            dns_policy: Some("ClusterFirstWithHostNet".to_owned()),
            priority_class_name: Some("system-node-critical".to_owned()),
            priority: Some(SYSTEM_NODE_CRITICAL),
            termination_grace_period_seconds: Some(grace_period_seconds(opts.drain_timeout)),
            security_context: Some(PodSecurityContext {
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            containers: vec![container(opts, mounts)],
            volumes: Some(volumes),
            ..Default::default()
        }),
        status: None,
    }
}

/// Name, namespace and the labels kubeadm's own static pods carry.
fn pod_metadata() -> ObjectMeta {
    ObjectMeta {
        name: Some("vipd".to_owned()),
        namespace: Some("kube-system".to_owned()),
        labels: Some(
            [
                ("component".to_owned(), "vipd".to_owned()),
                ("tier".to_owned(), "control-plane".to_owned()),
            ]
            .into(),
        ),
        ..Default::default()
    }
}

/// The one container: vipd's image and arguments, its privileges, requests, metrics port, probes and files.
fn container(opts: &ManifestOptions, mounts: Vec<VolumeMount>) -> Container {
    Container {
        name: "vipd".to_owned(),
        image: Some(opts.image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(opts.source.args()),
        security_context: Some(security_context()),
        resources: Some(ResourceRequirements {
            requests: Some(
                [
                    ("cpu".to_owned(), Quantity("100m".to_owned())),
                    ("memory".to_owned(), Quantity("64Mi".to_owned())),
                ]
                .into(),
            ),
            ..Default::default()
        }),
        ports: opts.metrics.map(|m| {
            vec![ContainerPort {
                name: Some("metrics".to_owned()),
                container_port: i32::from(m.port()),
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            }]
        }),
        liveness_probe: Some(admin_probe(opts.admin, "/healthz", 10, 3)),
        readiness_probe: Some(admin_probe(opts.admin, "/readyz", 5, 2)),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

/// Root, as the netlink and raw sockets need, but with every capability dropped except [`CAPABILITIES`], no
/// privilege escalation and a read-only root filesystem.
fn security_context() -> SecurityContext {
    let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    SecurityContext {
        run_as_user: Some(0),
        run_as_non_root: Some(false),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            add: Some(strings(&CAPABILITIES)),
            drop: Some(strings(&["ALL"])),
        }),
        ..Default::default()
    }
}

/// An HTTP probe of the admin endpoint's `path`; an unspecified admin address is probed on loopback.
fn admin_probe(admin: SocketAddr, path: &str, period: i32, failures: i32) -> Probe {
    let host = match admin.ip() {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Probe {
        http_get: Some(HTTPGetAction {
            host: Some(host.to_string()),
            port: IntOrString::Int(i32::from(admin.port())),
            path: Some(path.to_owned()),
            scheme: Some("HTTP".to_owned()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

/// The read-only mounts and their host-file volumes: the file(s) the pod runs from, then the TLS files the
/// config names (each at its host path).
fn file_mounts(opts: &ManifestOptions) -> (Vec<VolumeMount>, Vec<Volume>) {
    let tls = [
        ("ca-file", &opts.tls_files.ca_file),
        ("client-cert", &opts.tls_files.client_cert),
        ("client-key", &opts.tls_files.client_key),
    ];
    let tls_files = tls
        .into_iter()
        .filter_map(|(name, path)| Some((name, path.clone()?)))
        .map(|(name, path)| (name, path.clone(), path));
    let source_files = opts
        .source
        .files()
        .into_iter()
        .map(|(name, host, inside)| (name, host, inside.to_owned()));
    source_files
        .chain(tls_files)
        .map(|(name, host, inside)| {
            let mount = VolumeMount {
                name: name.to_owned(),
                mount_path: inside,
                read_only: Some(true),
                ..Default::default()
            };
            (mount, host_file_volume(name, &host))
        })
        .unzip()
}

/// Whole seconds, rounded up: a 30.5s drain must not be cut at 30s.
fn grace_period_seconds(drain: Duration) -> i64 {
    let total = drain.saturating_add(GRACE_MARGIN);
    let secs = total
        .as_secs()
        .saturating_add(u64::from(total.subsec_nanos() > 0));
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// `type: File` makes the kubelet refuse to start the pod when the file is missing, instead of creating an
/// empty directory in its place (the default) and letting vipd fail on a directory.
fn host_file_volume(name: &str, path: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        host_path: Some(HostPathVolumeSource {
            path: path.to_owned(),
            type_: Some("File".to_owned()),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECKED_IN: &str = include_str!("../manifests/vipd.yaml");

    fn parse(yaml: &str) -> Pod {
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("not a Pod: {e}\n{yaml}"))
    }

    fn container(pod: &Pod) -> &Container {
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.containers.len(), 1, "one container");
        &spec.containers[0]
    }

    #[test]
    fn checked_in_manifest_equals_rendered_default() {
        let file = parse(CHECKED_IN);
        let rendered = parse(&render(&ManifestOptions::default()));
        assert_eq!(
            file,
            rendered,
            "manifests/vipd.yaml and `vipd manifest` disagree; rendered:\n{}",
            render(&ManifestOptions::default())
        );
        // Parsing loses nothing the typed pod holds: what the kubelet reads is what pod() built.
        assert_eq!(rendered, pod(&ManifestOptions::default()));
    }

    /// Every requirement of the issue, checked on the parsed checked-in file (equal to the rendered one).
    #[test]
    fn checked_in_manifest_meets_security_and_operation_requirements() {
        let pod = parse(CHECKED_IN);
        assert_eq!(pod.metadata.namespace.as_deref(), Some("kube-system"));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.host_network, Some(true));
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
        assert_eq!(
            spec.priority_class_name.as_deref(),
            Some("system-node-critical")
        );
        assert_eq!(spec.priority, Some(SYSTEM_NODE_CRITICAL));
        assert!(
            spec.termination_grace_period_seconds.unwrap() > 30,
            "grace period must exceed drainTimeout"
        );
        assert_eq!(
            spec.security_context
                .as_ref()
                .unwrap()
                .seccomp_profile
                .as_ref()
                .unwrap()
                .type_,
            "RuntimeDefault"
        );
        assert!(
            spec.host_pid.is_none() && spec.host_ipc.is_none(),
            "only the network is shared with the host"
        );

        let c = container(&pod);
        assert_eq!(
            c.args.as_deref(),
            Some(&["run", "--config", CONTAINER_CONFIG_PATH].map(String::from)[..])
        );
        let sc = c
            .security_context
            .as_ref()
            .expect("container securityContext");
        let caps = sc.capabilities.as_ref().expect("capabilities");
        let mut added = caps.add.clone().unwrap();
        added.sort();
        assert_eq!(added, ["NET_ADMIN", "NET_BIND_SERVICE", "NET_RAW"]);
        assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_ne!(sc.privileged, Some(true));
        // Root on purpose (see the file's header): non-root would hold none of the added capabilities.
        assert_eq!(sc.run_as_user, Some(0));
        assert_eq!(sc.run_as_non_root, Some(false));

        let requests = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .expect("resource requests");
        assert!(requests.contains_key("cpu") && requests.contains_key("memory"));
        assert!(
            c.resources.as_ref().unwrap().limits.is_none(),
            "a CPU limit would throttle advertisements"
        );

        for (probe, path) in [
            (&c.liveness_probe, "/healthz"),
            (&c.readiness_probe, "/readyz"),
        ] {
            let get = probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .expect("httpGet probe");
            assert_eq!(get.path.as_deref(), Some(path));
            assert_eq!(get.host.as_deref(), Some("127.0.0.1"));
            assert_eq!(get.port, IntOrString::Int(9440));
        }

        let volumes = spec.volumes.as_ref().unwrap();
        let mounts = c.volume_mounts.as_ref().unwrap();
        assert!(
            mounts.iter().all(|m| m.read_only == Some(true)),
            "every host file is mounted read-only"
        );
        let config_mount = mounts
            .iter()
            .find(|m| m.mount_path == CONTAINER_CONFIG_PATH)
            .expect("config mount");
        let config_volume = volumes
            .iter()
            .find(|v| v.name == config_mount.name)
            .expect("config volume");
        let host = config_volume
            .host_path
            .as_ref()
            .expect("config from a hostPath");
        assert_eq!(host.path, "/etc/vipd/vipd.yaml");
        assert_eq!(host.type_.as_deref(), Some("File"));
        for m in mounts {
            let v = volumes
                .iter()
                .find(|v| v.name == m.name)
                .expect("every mount has its volume");
            assert_eq!(
                v.host_path.as_ref().and_then(|h| h.type_.as_deref()),
                Some("File")
            );
        }
    }

    #[test]
    fn options_reach_the_pod() {
        let opts = ManifestOptions {
            image: "registry.example/vipd@sha256:0123".to_owned(),
            source: ManifestSource::Config {
                host_path: "/srv/vipd/node-a.yaml".to_owned(),
            },
            admin: "[::1]:9555".parse().unwrap(),
            metrics: None,
            drain_timeout: Duration::from_millis(60_500),
            node_name: Some("cp-1".to_owned()),
            tls_files: TlsFiles {
                ca_file: Some("/etc/pki/ca.pem".to_owned()),
                client_cert: Some("/etc/vipd/client.crt".to_owned()),
                client_key: Some("/etc/vipd/client.key".to_owned()),
            },
        };
        let text = render(&opts);
        let pod = parse(&text);
        assert_eq!(pod, super::pod(&opts));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("cp-1"));
        assert_eq!(
            spec.termination_grace_period_seconds,
            Some(76),
            "60.5s + 15s, rounded up"
        );
        let c = container(&pod);
        assert_eq!(
            c.image.as_deref(),
            Some("registry.example/vipd@sha256:0123")
        );
        // The container path stays fixed; only the host side moves.
        assert_eq!(c.args.as_ref().unwrap()[2], CONTAINER_CONFIG_PATH);
        let get = c
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(
            (get.host.as_deref(), &get.port),
            (Some("::1"), &IntOrString::Int(9555))
        );
        let host_paths: Vec<_> = spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .map(|v| v.host_path.as_ref().unwrap().path.as_str())
            .collect();
        assert_eq!(
            host_paths,
            [
                "/srv/vipd/node-a.yaml",
                "/etc/pki/ca.pem",
                "/etc/vipd/client.crt",
                "/etc/vipd/client.key"
            ]
        );
        let mount_paths: Vec<_> = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(
            mount_paths,
            [
                CONTAINER_CONFIG_PATH,
                "/etc/pki/ca.pem",
                "/etc/vipd/client.crt",
                "/etc/vipd/client.key"
            ]
        );
        assert!(text.starts_with("# vipd static pod for node cp-1,"));
    }

    #[test]
    fn unspecified_admin_address_is_probed_on_loopback() {
        for (listen, host) in [("0.0.0.0:9440", "127.0.0.1"), ("[::]:9440", "::1")] {
            let opts = ManifestOptions {
                admin: listen.parse().unwrap(),
                ..Default::default()
            };
            let pod = pod(&opts);
            let get = container(&pod)
                .readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .clone()
                .unwrap();
            assert_eq!(get.host.as_deref(), Some(host), "{listen}");
        }
    }

    #[test]
    fn metrics_listener_is_the_named_container_port() {
        assert!(container(&pod(&ManifestOptions::default())).ports.is_none());
        let opts = ManifestOptions {
            metrics: Some("192.0.2.11:9441".parse().unwrap()),
            ..Default::default()
        };
        let pod = parse(&render(&opts));
        let ports = container(&pod).ports.clone().expect("ports");
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].name.as_deref(), Some("metrics"));
        assert_eq!(ports[0].container_port, 9441);
        assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
        // The probes stay on the admin endpoint.
        let get = container(&pod)
            .liveness_probe
            .clone()
            .unwrap()
            .http_get
            .unwrap();
        assert_eq!(get.port, IntOrString::Int(9440));
    }

    #[test]
    fn without_tls_files_only_the_config_is_mounted() {
        let opts = ManifestOptions {
            tls_files: TlsFiles {
                ca_file: None,
                client_cert: None,
                client_key: None,
            },
            ..Default::default()
        };
        let pod = parse(&render(&opts));
        assert_eq!(
            pod.spec.as_ref().unwrap().volumes.as_ref().unwrap().len(),
            1
        );
        assert_eq!(container(&pod).volume_mounts.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn grace_period_rounds_up_and_saturates() {
        assert_eq!(grace_period_seconds(Duration::ZERO), 15);
        assert_eq!(grace_period_seconds(Duration::from_secs(30)), 45);
        assert_eq!(
            grace_period_seconds(Duration::from_nanos(30_000_000_001)),
            46
        );
        assert_eq!(grace_period_seconds(Duration::MAX), i64::MAX);
    }
}
