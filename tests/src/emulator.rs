//! The emulator as a real process: TLS AMQP endpoint, OpenAPI and admin API on loopback ports.

use std::{net::SocketAddr, path::PathBuf, process::Command, sync::Arc, time::Duration};

use serde_json::{Value, json};

use crate::{Process, binary, wait_until};

pub struct Emulator {
    pub process: Process,
    pub amqp_addr: SocketAddr,
    pub api_addr: SocketAddr,
    /// The CA that signed the emulator's server certificate (`<state-dir>/ca.pem`).
    pub ca_pem: PathBuf,
    pub state_dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Emulator {
    /// Starts `iotsub-emulator` with `config` (TOML; empty for the defaults) on ephemeral ports.
    pub async fn start(config: &str) -> anyhow::Result<Emulator> {
        let state_dir = tempfile::tempdir()?;
        let config_path = state_dir.path().join("emulator.toml");
        std::fs::write(&config_path, config)?;
        let mut command = Command::new(binary("iotsub-emulator"));
        command
            .arg("--config")
            .arg(&config_path)
            .args(["--amqp-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0", "--state-dir"])
            .arg(state_dir.path())
            .env("RUST_LOG", std::env::var("EMULATOR_LOG").unwrap_or_else(|_| "info".into()))
            .stderr(std::fs::File::create(state_dir.path().join("emulator.log"))?);
        let process = Process::spawn("iotsub-emulator", command)?;
        let endpoints_path = state_dir.path().join("endpoints.json");
        let endpoints: Value = wait_until("the emulator's endpoints.json", Duration::from_secs(20), || async {
            let text = std::fs::read_to_string(&endpoints_path).ok()?;
            serde_json::from_str(&text).ok()
        })
        .await?;
        let addr = |key: &str| -> anyhow::Result<SocketAddr> {
            Ok(endpoints[key].as_str().ok_or_else(|| anyhow::anyhow!("endpoints.json lacks {key}"))?.parse()?)
        };
        Ok(Emulator {
            amqp_addr: addr("amqp")?,
            api_addr: addr("api")?,
            ca_pem: state_dir.path().join("ca.pem"),
            process,
            state_dir,
            http: reqwest::Client::new(),
        })
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}{}", self.api_addr, path)
    }

    /// What the emulator logged so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state_dir.path().join("emulator.log")).unwrap_or_default()
    }

    /// Publishes `count` messages as devices would; returns their messageIds.
    pub async fn publish(&self, group: &str, topic: &str, payload: &str, count: u32) -> anyhow::Result<Vec<String>> {
        let body = json!({"instanceId": "", "consumerGroupId": group, "topic": topic, "payload": payload, "count": count});
        let reply: Value = self.post("/admin/messages", body).await?;
        Ok(serde_json::from_value(reply["messageIds"].clone())?)
    }

    /// `GET /admin/consumer-groups/<group>`: backlog, in flight, counters, connected clients.
    pub async fn group(&self, group: &str) -> anyhow::Result<Value> {
        let response = self.http.get(self.api_url(&format!("/admin/consumer-groups/{group}?instanceId="))).send().await?;
        Ok(response.error_for_status()?.json().await?)
    }

    /// `GET /admin/openapi-calls`: every OpenAPI call answered, oldest first (`atMs`,
    /// `accessKeyId`, `action`, `code`).
    pub async fn openapi_calls(&self) -> anyhow::Result<Vec<Value>> {
        self.get_json("/admin/openapi-calls").await
    }

    /// `GET /admin/refusals`: every refused connection, oldest first (`stage`, `condition`, `reason`).
    pub async fn refusals(&self) -> anyhow::Result<Vec<Value>> {
        self.get_json("/admin/refusals").await
    }

    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.http.get(self.api_url(path)).send().await?;
        Ok(response.error_for_status()?.json().await?)
    }

    /// `POST /admin/faults`: drop-connections, refuse-logins, pause-delivery, resume.
    pub async fn fault(&self, action: &str, group: &str) -> anyhow::Result<Value> {
        self.post("/admin/faults", json!({"action": action, "consumerGroupId": group, "instanceId": ""})).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let response = self.http.post(self.api_url(path)).json(&body).send().await?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(status.is_success(), "POST {path} answered {status}: {text}");
        Ok(serde_json::from_str(&text)?)
    }

    /// A rustls client config trusting only the emulator's CA.
    pub fn client_tls(&self) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let pem = std::fs::read(&self.ca_pem)?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert?)?;
        }
        // Both aws-lc-rs and ring are linked into the tests (reqwest brings ring): name the provider.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Ok(Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth(),
        ))
    }
}
