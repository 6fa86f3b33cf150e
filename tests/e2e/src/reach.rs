//! Where pods reach the machine the tests run on, and the images the pods run.
//!
//! On the kubelet node (tests/cluster/node.sh) pods live in a network of their own and cannot reach
//! this machine's 127.0.0.1: what a test starts for pods (the emulator, a sink) listens on the
//! host's address that the API server listens on, the one the kubeconfig names. On lk-agent that
//! is 127.0.0.1 itself. The workers and the chart's operator run the images `make cluster-up`
//! imported from the debug binaries (lk-agent maps the same names to the binaries).

use std::net::{IpAddr, Ipv4Addr};

use iotsub_tests::{Emulator, http_receiver::HttpReceiver};
use kube::config::Kubeconfig;

use crate::cluster::kubeconfig_path;

/// The registry part and tag of the images imported into the node (tests/cluster/node.sh).
pub const IMAGE_REGISTRY: &str = "localhost";
pub const IMAGE_TAG: &str = "localkube";

/// The worker image by another name, as a subscription's spec.worker.image names it.
pub const CUSTOM_WORKER_IMAGE: &str = "localhost/team/iotsub-worker:custom";

/// `localhost/iotsub-<name>:localkube`.
pub fn image(name: &str) -> String {
    format!("{IMAGE_REGISTRY}/iotsub-{name}:{IMAGE_TAG}")
}

/// The host's address as pods see it: the API server's, from the kubeconfig.
pub fn host_ip() -> IpAddr {
    let server = Kubeconfig::read_from(kubeconfig_path())
        .ok()
        .and_then(|k| k.clusters.into_iter().next())
        .and_then(|c| c.cluster)
        .and_then(|c| c.server)
        .unwrap_or_default();
    let host = server.strip_prefix("https://").and_then(|rest| rest.rsplit_once(':')).map(|(host, _)| host);
    host.and_then(|h| h.parse().ok()).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The emulator, reachable from pods.
pub async fn emulator(config: &str) -> anyhow::Result<Emulator> {
    Emulator::start_on(config, host_ip()).await
}

/// An HTTP sink, reachable from pods.
pub async fn http_receiver() -> anyhow::Result<HttpReceiver> {
    HttpReceiver::start_on(host_ip()).await
}
