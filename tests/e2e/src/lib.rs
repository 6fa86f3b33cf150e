//! Harness of the cluster tests: the local control plane's client, per-test namespaces, the
//! operator as a local process, subscriptions pointing at a local emulator, the [`Bed`] most tests
//! start from, and [`holds_for`].

pub mod bed;
pub mod cluster;
pub mod helm;
pub mod operator;
pub mod reach;
pub mod soak;
pub mod subscription;
pub mod wait;

pub use bed::Bed;
pub use cluster::{Cluster, TestNamespace};
pub use operator::Operator;
pub use wait::holds_for;

/// The workspace root (tests run from `tests/e2e`).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}
