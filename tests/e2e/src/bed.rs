//! A test's bed: the cluster, an emulator, a fresh namespace with the emulator's Secrets, and an
//! operator process watching only that namespace — the setup most cluster tests start from.

use std::time::Duration;

use iotsub_crds::ConsumerGroupSubscriptionStatus;
use iotsub_tests::Emulator;

use crate::{
    Cluster, Operator, TestNamespace,
    subscription::{self, all_connected, wait_status},
};

pub struct Bed {
    pub cluster: Cluster,
    pub emulator: Emulator,
    pub ns: TestNamespace,
    pub operator: Operator,
}

impl Bed {
    /// An emulator configured by `emulator_toml`, a namespace `<prefix>-…` holding its CA and the
    /// `demo` account's keys, and an operator without leader election.
    pub async fn start(prefix: &str, emulator_toml: &str) -> anyhow::Result<Bed> {
        let bed = Bed::without_credentials(prefix, emulator_toml).await?;
        subscription::put_secrets(&bed.ns, &bed.emulator).await?;
        Ok(bed)
    }

    /// [`Bed::start`] with only the emulator's CA in the namespace, no credentials Secret.
    pub async fn without_credentials(prefix: &str, emulator_toml: &str) -> anyhow::Result<Bed> {
        let cluster = Cluster::connect().await?;
        let emulator = crate::reach::emulator(emulator_toml).await?;
        let ns = cluster.namespace(prefix).await?;
        let ca = std::fs::read_to_string(&emulator.ca_pem)?;
        ns.put_secret(subscription::CA_SECRET, &[("ca.pem", &ca)]).await?;
        let operator = Operator::start(&cluster.kubeconfig, &operator_args(&ns)).await?;
        Ok(Bed { cluster, emulator, ns, operator })
    }

    /// Applies the subscription `name` with `replicas` and waits until every worker is connected.
    pub async fn subscribe(&self, name: &str, replicas: usize) -> anyhow::Result<ConsumerGroupSubscriptionStatus> {
        let replicas_i32 = i32::try_from(replicas)?;
        subscription::apply(&self.ns, &subscription::manifest(name, &self.emulator, replicas_i32)).await?;
        let what = format!("{replicas} workers of {name} connected");
        wait_status(&self.ns, name, &what, Duration::from_secs(90), all_connected(replicas)).await
    }

    /// Runs `kubectl -n <namespace> <args>` and fails with its stderr.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<()> {
        let output = std::process::Command::new(crate::cluster::kubectl())
            .args(["-n", &self.ns.name])
            .args(args)
            .env("KUBECONFIG", &self.cluster.kubeconfig)
            .output()?;
        anyhow::ensure!(output.status.success(), "kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
        Ok(())
    }

    /// Kills the operator with SIGKILL (no goodbye) and waits until it is gone.
    pub async fn kill_operator(&mut self) -> anyhow::Result<()> {
        self.operator.process.signal(nix::sys::signal::Signal::SIGKILL)?;
        self.operator.process.wait_exit(Duration::from_secs(10)).await.map(|_| ())
    }

    /// Starts a new operator in place of the killed one.
    pub async fn restart_operator(&mut self) -> anyhow::Result<()> {
        self.operator = Operator::start(&self.cluster.kubeconfig, &operator_args(&self.ns)).await?;
        Ok(())
    }
}

/// An emulator configuration: the `demo` account, a `rotated` one to switch to, the legacy
/// instance with `DEFAULT_GROUP`, after `limits` (a TOML `[limits]` table, or nothing).
pub fn emulator_config(limits: &str) -> String {
    emulator_config_with_groups(limits, &["DEFAULT_GROUP"])
}

/// [`emulator_config`] with these consumer groups in the legacy instance.
pub fn emulator_config_with_groups(limits: &str, groups: &[&str]) -> String {
    let groups = groups.iter().map(|g| format!("{g:?}")).collect::<Vec<_>>().join(", ");
    format!(
        r#"{limits}
[[accounts]]
access_key_id = "demo"
access_key_secret = "demo-secret"

[[accounts]]
access_key_id = "rotated"
access_key_secret = "rotated-secret"

[[instances]]
id = ""
consumer_groups = [{groups}]
"#
    )
}

/// The arguments of an operator that watches only `ns`, without leader election.
pub fn operator_args(ns: &TestNamespace) -> [&str; 4] {
    ["--watch-namespace", &ns.name, "--leader-election", "false"]
}
