//! The local control plane (`make cluster-up`): a client, the CRD, and namespaces that go away.

use std::{path::PathBuf, time::Duration};

use iotsub_crds::ConsumerGroupSubscription;
use k8s_openapi::{
    ByteString,
    api::core::v1::{Namespace, Pod, Secret},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Config, CustomResourceExt,
    api::{DeleteParams, LogParams, ObjectMeta, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};

use iotsub_operator_core::names::CREDENTIALS_LABEL;

use crate::workspace_root;

pub struct Cluster {
    pub client: Client,
    pub kubeconfig: PathBuf,
}

impl Cluster {
    /// Connects with `target/localkube/kubeconfig` (or `$LOCALKUBE_KUBECONFIG`) and installs the CRD
    /// from `crds/` (the committed YAML, which a unit test keeps equal to the types).
    pub async fn connect() -> anyhow::Result<Cluster> {
        // ring (kube, reqwest) and aws-lc-rs (the harness's AMQP client) are both linked: choose one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kubeconfig = kubeconfig_path();
        anyhow::ensure!(kubeconfig.exists(), "{} is missing: run `make cluster-up`", kubeconfig.display());
        let config = Config::from_custom_kubeconfig(Kubeconfig::read_from(&kubeconfig)?, &KubeConfigOptions::default()).await?;
        let client = Client::try_from(config)?;
        let cluster = Cluster { client, kubeconfig };
        cluster.install_crd().await?;
        Ok(cluster)
    }

    async fn install_crd(&self) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(workspace_root().join(iotsub_crds::CRD_FILE))?;
        let crd: CustomResourceDefinition = serde_yaml::from_str(&text)?;
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let name = ConsumerGroupSubscription::crd_name();
        api.patch(name, &PatchParams::apply("iotsub-e2e").force(), &Patch::Apply(&crd)).await?;
        iotsub_tests::wait_until("the CRD to be established", Duration::from_secs(30), || async {
            let crd = api.get(name).await.ok()?;
            let established = crd.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        })
        .await
    }

    pub async fn namespace(&self, prefix: &str) -> anyhow::Result<TestNamespace> {
        let name = format!("{prefix}-{}", std::process::id() % 100_000 * 10 + rand_digit());
        let api: Api<Namespace> = Api::all(self.client.clone());
        api.create(
            &PostParams::default(),
            &Namespace { metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() }, ..Default::default() },
        )
        .await?;
        Ok(TestNamespace { name, client: self.client.clone(), kubeconfig: self.kubeconfig.clone() })
    }
}

/// `target/localkube/kubeconfig`, or `$LOCALKUBE_KUBECONFIG`.
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os("LOCALKUBE_KUBECONFIG").map_or_else(|| workspace_root().join("target/localkube/kubeconfig"), PathBuf::from)
}

fn rand_digit() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed) % 10
}

/// A namespace deleted (with everything in it) when dropped.
pub struct TestNamespace {
    pub name: String,
    client: Client,
    kubeconfig: PathBuf,
}

impl TestNamespace {
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// The log of `container` in `pod` as `kubectl logs` shows it (the node's kubelet API); empty
    /// when there is none yet.
    pub async fn container_log(&self, pod: &str, container: &str) -> String {
        let pods: Api<Pod> = self.api();
        pods.logs(pod, &LogParams { container: Some(container.into()), ..Default::default() }).await.unwrap_or_default()
    }

    /// Creates or replaces a Secret with string data, labelled `iotsub.dev/credentials: "true"` as
    /// the operator requires of every Secret a subscription references.
    pub async fn put_secret(&self, name: &str, data: &[(&str, &str)]) -> anyhow::Result<()> {
        self.put_secret_labelled(name, data, &[(CREDENTIALS_LABEL, "true")]).await
    }

    /// Creates or replaces a Secret with string data and exactly `labels`.
    pub async fn put_secret_labelled(&self, name: &str, data: &[(&str, &str)], labels: &[(&str, &str)]) -> anyhow::Result<()> {
        let labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let secret = Secret {
            metadata: ObjectMeta { name: Some(name.into()), labels: Some(labels), ..Default::default() },
            data: Some(data.iter().map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec()))).collect()),
            ..Default::default()
        };
        let api: Api<Secret> = self.api();
        // No field manager may keep a key we drop: replace the whole object.
        match api.get_opt(name).await? {
            Some(existing) => {
                let mut secret = secret;
                secret.metadata.resource_version = existing.metadata.resource_version;
                api.replace(name, &PostParams::default(), &secret).await?;
            }
            None => {
                api.create(&PostParams::default(), &secret).await?;
            }
        }
        Ok(())
    }

    pub async fn delete_secret(&self, name: &str) -> anyhow::Result<()> {
        let api: Api<Secret> = self.api();
        api.delete(name, &DeleteParams::default()).await?;
        Ok(())
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Drop can't await (and the test's runtime may be single-threaded): ask kubectl, don't wait.
        let _ = std::process::Command::new(kubectl())
            .args(["delete", "namespace", &self.name, "--wait=false", "--ignore-not-found"])
            .env("KUBECONFIG", &self.kubeconfig)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// `target/tools/bin/kubectl` (`make kube-tools`), else the one on PATH.
pub fn kubectl() -> PathBuf {
    let local = workspace_root().join("target/tools/bin/kubectl");
    if local.exists() { local } else { PathBuf::from("kubectl") }
}
