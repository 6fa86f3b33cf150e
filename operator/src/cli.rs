//! Flags; each also reads `IOTSUB_OPERATOR_<FLAG>`.

use std::net::SocketAddr;

use clap::Parser;
use iotsub_operator_core::Guard;

#[derive(Parser, Debug, Clone)]
#[command(name = "iotsub-operator", version, about = "Runs ConsumerGroupSubscriptions as Deployments of iotsub-worker")]
pub struct Args {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "IOTSUB_OPERATOR_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// The worker image when a subscription's spec.worker.image is empty; always allowed.
    #[arg(long, env = "IOTSUB_OPERATOR_WORKER_IMAGE", default_value = "iotsub-worker")]
    pub worker_image: String,
    /// Pull Secrets of the worker pods (comma-separated names, in each subscription's namespace),
    /// for a --worker-image in a private registry.
    #[arg(long, env = "IOTSUB_OPERATOR_WORKER_IMAGE_PULL_SECRETS", value_delimiter = ',')]
    pub worker_image_pull_secrets: Vec<String>,
    /// Other images a subscription's spec.worker.image may name: comma-separated globs over the
    /// whole reference (`*` stops at `/`, `**` crosses it). Default: none, only --worker-image.
    /// Such an image runs with the namespace's credentials: allow only images you trust.
    #[arg(long, env = "IOTSUB_OPERATOR_ALLOWED_WORKER_IMAGES", value_delimiter = ',', default_value = "")]
    pub allowed_worker_images: Vec<String>,
    /// Use only Secrets labelled `iotsub.dev/credentials: "true"` (credentials, CA, sink headers).
    #[arg(long, env = "IOTSUB_OPERATOR_REQUIRE_SECRET_LABEL", default_value_t = true, action = clap::ArgAction::Set)]
    pub require_secret_label: bool,
    /// Let subscriptions set spec.worker.nodeSelector and tolerations.
    #[arg(long, env = "IOTSUB_OPERATOR_ALLOW_WORKER_PLACEMENT", default_value_t = true, action = clap::ArgAction::Set)]
    pub allow_worker_placement: bool,
    /// Let subscriptions set spec.worker.podAnnotations.
    #[arg(long, env = "IOTSUB_OPERATOR_ALLOW_WORKER_POD_ANNOTATIONS", default_value_t = true, action = clap::ArgAction::Set)]
    pub allow_worker_pod_annotations: bool,
    /// `/metrics` and `/healthz`.
    #[arg(long, env = "IOTSUB_OPERATOR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Run only while holding the Lease `iotsub-operator`, so replicas stand by.
    #[arg(long, env = "IOTSUB_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Where the Lease lives (default: the watch namespace, else $POD_NAMESPACE, else `default`).
    #[arg(long, env = "IOTSUB_OPERATOR_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Lease duration in seconds: how long a stopped leader blocks a standby.
    #[arg(long, env = "IOTSUB_OPERATOR_LEASE_SECONDS", default_value_t = 15)]
    pub lease_seconds: u64,
}

impl Args {
    /// The guard rails these flags set; an allowed-image pattern that is no glob is an error.
    pub fn guard(&self) -> Result<Guard, iotsub_operator_core::guard::PatternError> {
        Guard::new(
            &self.worker_image,
            &self.allowed_worker_images,
            self.require_secret_label,
            self.allow_worker_placement,
            self.allow_worker_pod_annotations,
        )
        .map(|guard| guard.with_pull_secrets(&self.worker_image_pull_secrets))
    }

    pub fn lease_namespace(&self) -> String {
        self.lease_namespace
            .clone()
            .or_else(|| self.watch_namespace.clone())
            .or_else(|| std::env::var("POD_NAMESPACE").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "default".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_rails_default_to_the_operators_image_and_labelled_secrets() {
        let args = Args::parse_from(["iotsub-operator"]);
        assert!(args.allowed_worker_images.iter().all(String::is_empty), "{:?}", args.allowed_worker_images);
        let guard = args.guard().expect("a guard");
        assert!(guard.image_allowed("iotsub-worker"));
        assert!(!guard.image_allowed("iotsub-worker:other"));
        assert!((guard.require_secret_label, guard.allow_worker_placement, guard.allow_pod_annotations) == (true, true, true));
    }

    #[test]
    fn allowed_images_are_comma_separated_globs_and_the_rules_can_be_lifted() {
        let args = Args::parse_from([
            "iotsub-operator",
            "--allowed-worker-images",
            "registry.example/iotsub/*,mirror.example/**",
            "--require-secret-label=false",
            "--allow-worker-placement",
            "false",
            "--allow-worker-pod-annotations=false",
        ]);
        let guard = args.guard().expect("a guard");
        assert!(guard.image_allowed("registry.example/iotsub/worker:1") && guard.image_allowed("mirror.example/a/b:c"));
        assert!(!guard.image_allowed("registry.example/other/worker:1"));
        assert!((guard.require_secret_label, guard.allow_worker_placement, guard.allow_pod_annotations) == (false, false, false));
        let bad = Args::parse_from(["iotsub-operator", "--allowed-worker-images", "a/[b"]).guard().expect_err("no glob");
        assert!(bad.to_string().contains("`a/[b`"), "{bad}");
    }
}
