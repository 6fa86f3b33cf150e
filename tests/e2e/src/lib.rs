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

/// The first ```yaml block after `heading` in README.md, as a user copies it.
pub fn readme_block(heading: &str) -> anyhow::Result<String> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md"))?;
    let section = &readme[readme.find(heading).ok_or_else(|| anyhow::anyhow!("README.md has no {heading:?}"))?..];
    let start = section.find("```yaml\n").ok_or_else(|| anyhow::anyhow!("no yaml block under {heading:?}"))? + "```yaml\n".len();
    let end = section[start..].find("```").ok_or_else(|| anyhow::anyhow!("unterminated yaml block"))?;
    Ok(section[start..start + end].to_owned())
}
