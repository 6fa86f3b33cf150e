//! A real helm (`target/tools/bin/helm`, from `make kube-tools`) and the chart `charts/iotsub`:
//! lint, render, install into the local control plane, uninstall.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

use crate::workspace_root;

/// `target/tools/bin/helm` (`make kube-tools`), else the one on PATH.
pub fn helm() -> PathBuf {
    let local = workspace_root().join("target/tools/bin/helm");
    if local.exists() { local } else { PathBuf::from("helm") }
}

pub fn chart_dir() -> PathBuf {
    workspace_root().join("charts/iotsub")
}

/// What a helm command did.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs helm with `args`; with `kubeconfig`, against that cluster.
pub fn run(args: &[&str], kubeconfig: Option<&Path>) -> anyhow::Result<Output> {
    let mut command = Command::new(helm());
    command.args(args);
    match kubeconfig {
        Some(path) => command.env("KUBECONFIG", path),
        // Rendering must not depend on whatever cluster the environment points at.
        None => command.env("KUBECONFIG", "/dev/null"),
    };
    let output = command.output().map_err(|e| anyhow::anyhow!("running {}: {e} (run `make kube-tools`)", helm().display()))?;
    Ok(Output {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// `helm template <release> charts/iotsub -n <namespace> <extra…>`; the error carries helm's stderr.
pub fn render(release: &str, namespace: &str, extra: &[&str]) -> anyhow::Result<String> {
    let chart = chart_dir();
    let mut args = vec!["template", release, chart.to_str().expect("utf-8 path"), "--namespace", namespace];
    args.extend_from_slice(extra);
    let output = run(&args, None)?;
    anyhow::ensure!(output.success, "helm template {extra:?} failed:\n{}", output.stderr);
    Ok(output.stdout)
}

/// The objects `helm template` renders, as JSON values (empty documents dropped).
pub fn template(release: &str, namespace: &str, extra: &[&str]) -> anyhow::Result<Vec<Value>> {
    parse_documents(&render(release, namespace, extra)?)
}

/// `helm template` that must fail: its stderr.
pub fn template_error(release: &str, namespace: &str, extra: &[&str]) -> anyhow::Result<String> {
    let chart = chart_dir();
    let mut args = vec!["template", release, chart.to_str().expect("utf-8 path"), "--namespace", namespace];
    args.extend_from_slice(extra);
    let output = run(&args, None)?;
    anyhow::ensure!(!output.success, "helm template {extra:?} succeeded but should have failed:\n{}", output.stdout);
    Ok(output.stderr)
}

pub fn parse_documents(text: &str) -> anyhow::Result<Vec<Value>> {
    let mut objects = Vec::new();
    let mut document = String::new();
    for line in text.lines().chain(std::iter::once("---")) {
        if line.trim_end() == "---" {
            let value: serde_yaml::Value = serde_yaml::from_str(&document)?;
            if !value.is_null() {
                objects.push(serde_json::to_value(value)?);
            }
            document.clear();
        } else {
            document.push_str(line);
            document.push('\n');
        }
    }
    Ok(objects)
}

/// The rendered objects of one kind.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// A release installed into the local control plane, uninstalled (without waiting) when dropped
/// if the test did not uninstall it.
pub struct Release {
    pub name: String,
    pub namespace: String,
    kubeconfig: PathBuf,
    installed: bool,
}

impl Release {
    /// `helm install <name> charts/iotsub -n <namespace> --wait <extra…>`, off the async runtime.
    pub async fn install(kubeconfig: &Path, name: &str, namespace: &str, extra: &[&str]) -> anyhow::Result<Release> {
        let chart = chart_dir().to_str().expect("utf-8 path").to_owned();
        let mut args: Vec<String> =
            ["install", name, &chart, "--namespace", namespace, "--wait", "--timeout", "120s"].iter().map(|s| (*s).to_owned()).collect();
        // The images imported into the node; `extra` may override them.
        for set in [format!("image.registry={}", crate::reach::IMAGE_REGISTRY), format!("image.tag={}", crate::reach::IMAGE_TAG)] {
            args.extend(["--set".to_owned(), set]);
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let kubeconfig_path = kubeconfig.to_path_buf();
        let output = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&args, Some(&kubeconfig_path))
        })
        .await??;
        let release = Release { name: name.into(), namespace: namespace.into(), kubeconfig: kubeconfig.to_path_buf(), installed: true };
        anyhow::ensure!(output.success, "helm install {name} failed:\n{}", output.stderr);
        Ok(release)
    }

    /// `helm uninstall --wait`.
    pub async fn uninstall(mut self) -> anyhow::Result<Output> {
        let (name, namespace, kubeconfig) = (self.name.clone(), self.namespace.clone(), self.kubeconfig.clone());
        self.installed = false;
        let output = tokio::task::spawn_blocking(move || {
            run(&["uninstall", &name, "--namespace", &namespace, "--wait", "--timeout", "60s"], Some(&kubeconfig))
        })
        .await??;
        anyhow::ensure!(output.success, "helm uninstall failed:\n{}", output.stderr);
        Ok(output)
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.installed {
            let _ = run(
                &["uninstall", &self.name, "--namespace", &self.namespace, "--wait=false", "--ignore-not-found"],
                Some(&self.kubeconfig),
            );
        }
    }
}
