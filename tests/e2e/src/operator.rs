//! `target/debug/iotsub-operator` as a local process against the local control plane.

use std::{net::SocketAddr, path::PathBuf, process::Command, time::Duration};

use iotsub_tests::{Process, binary, wait_until};

pub struct Operator {
    pub process: Process,
    pub http_addr: SocketAddr,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Operator {
    /// Starts the operator with `args` (besides `--http-addr 127.0.0.1:0`) and waits for its HTTP
    /// address in its log.
    pub async fn start(kubeconfig: &std::path::Path, args: &[&str]) -> anyhow::Result<Operator> {
        let filter = std::env::var("OPERATOR_LOG").unwrap_or_else(|_| "info".into());
        Self::start_logging(kubeconfig, args, &filter).await
    }

    /// [`Operator::start`] with the log filter `RUST_LOG` (e.g. `info,kube_runtime=debug`).
    pub async fn start_logging(kubeconfig: &std::path::Path, args: &[&str], filter: &str) -> anyhow::Result<Operator> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("operator.log");
        let mut command = Command::new(binary("iotsub-operator"));
        command
            .args(["--http-addr", "127.0.0.1:0"])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            // The image imported into the node (a flag in `args` takes precedence).
            .env("IOTSUB_OPERATOR_WORKER_IMAGE", crate::reach::image("worker"))
            .env("RUST_LOG", filter)
            .env_remove("POD_NAME")
            .stdout(std::fs::File::create(dir.path().join("stdout.log"))?)
            .stderr(std::fs::File::create(&log)?);
        let process = Process::spawn("iotsub-operator", command)?;
        let log_path = log.clone();
        let http_addr = wait_until("the operator's HTTP address in its log", Duration::from_secs(30), || async {
            let text = std::fs::read_to_string(&log_path).ok()?;
            text.lines().find_map(|line| {
                let json: serde_json::Value = serde_json::from_str(line).ok()?;
                json["fields"]["addr"].as_str()?.parse().ok()
            })
        })
        .await
        .map_err(|e| e.context(std::fs::read_to_string(&log).unwrap_or_default()))?;
        Ok(Operator { process, http_addr, log, _dir: dir })
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let response = reqwest::get(format!("http://{}{}", self.http_addr, path)).await?;
        Ok((response.status().as_u16(), response.text().await?))
    }

    /// The value of a metric sample with no labels, e.g. `iotsub_operator_leader`.
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let (_, text) = self.get("/metrics").await?;
        text.lines()
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
            .ok_or_else(|| anyhow::anyhow!("no sample {name} in /metrics"))
    }
}
