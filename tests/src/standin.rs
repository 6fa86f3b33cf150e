//! The business-server stand-in (`iotsub-standin`) as a real process on a loopback port.

use std::{path::PathBuf, process::Command, time::Duration};

use serde::Deserialize;

use crate::{Process, binary, wait_until};

/// `GET /admin/stats`, the fields tests read.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StandinStats {
    pub requests: u64,
    pub answered_ok: u64,
    pub events_taken: u64,
    pub ids_flushed: u64,
    pub faulted: u64,
    pub bad_requests: u64,
    pub waiting: u64,
    pub in_service: u64,
}

pub struct Standin {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub ids_file: PathBuf,
    pub process: Process,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Standin {
    /// Starts `iotsub-standin` with these extra flags on a free port, recording ids in a temporary file.
    pub async fn start(args: &[&str]) -> anyhow::Result<Standin> {
        let dir = tempfile::tempdir()?;
        let addr_file = dir.path().join("addr");
        let ids_file = dir.path().join("ids.txt");
        let mut command = Command::new(binary("iotsub-standin"));
        command
            .args(["--listen", "127.0.0.1:0", "--addr-file"])
            .arg(&addr_file)
            .arg("--ids-file")
            .arg(&ids_file)
            .args(args)
            .stderr(std::fs::File::create(dir.path().join("standin.log"))?);
        let process = Process::spawn("iotsub-standin", command)?;
        let addr =
            wait_until("the stand-in's address file", Duration::from_secs(20), || async { std::fs::read_to_string(&addr_file).ok() })
                .await?;
        Ok(Standin { url: format!("http://{addr}"), ids_file, process, dir, http: reqwest::Client::new() })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub async fn stats(&self) -> anyhow::Result<StandinStats> {
        Ok(self.http.get(self.url("/admin/stats")).send().await?.error_for_status()?.json().await?)
    }

    /// The ids in the file once `count` of them were flushed.
    pub async fn recorded_ids(&self, count: u64) -> anyhow::Result<Vec<String>> {
        wait_until(&format!("{count} ids flushed to the ids file"), Duration::from_secs(10), || async {
            (self.stats().await.ok()?.ids_flushed >= count).then_some(())
        })
        .await?;
        Ok(std::fs::read_to_string(&self.ids_file)?.lines().map(str::to_owned).collect())
    }

    /// What the stand-in logged (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("standin.log")).unwrap_or_default()
    }
}
