//! The emulator as a real process: TLS AMQP endpoint, OpenAPI and admin API on loopback ports.

use std::{net::SocketAddr, path::PathBuf, process::Command, sync::Arc, time::Duration};

use iotsub_emulator::admin::{
    Endpoints, FaultReply, FaultRequest, GroupSnapshot, MessageShape, OpenApiCall, PublishReply, PublishRequest, Refusal, TrafficReply,
    TrafficRequest,
};
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
        Self::start_on(config, std::net::Ipv4Addr::LOCALHOST.into()).await
    }

    /// [`Emulator::start`] listening on `ip` (an address of this machine), which its certificate
    /// names besides localhost and 127.0.0.1: for clients in another network namespace.
    pub async fn start_on(config: &str, ip: std::net::IpAddr) -> anyhow::Result<Emulator> {
        let state_dir = tempfile::tempdir()?;
        let config_path = state_dir.path().join("emulator.toml");
        std::fs::write(&config_path, config)?;
        let mut command = Command::new(binary("iotsub-emulator"));
        command
            .arg("--config")
            .arg(&config_path)
            .arg("--amqp-addr")
            .arg(SocketAddr::new(ip, 0).to_string())
            .arg("--api-addr")
            .arg(SocketAddr::new(ip, 0).to_string())
            .args(if ip.is_loopback() { vec![] } else { vec!["--tls-san".to_owned(), ip.to_string()] })
            .arg("--state-dir")
            .arg(state_dir.path())
            .env("RUST_LOG", std::env::var("EMULATOR_LOG").unwrap_or_else(|_| "info".into()))
            .stderr(std::fs::File::create(state_dir.path().join("emulator.log"))?);
        let process = Process::spawn("iotsub-emulator", command)?;
        let endpoints_path = state_dir.path().join("endpoints.json");
        let endpoints: Endpoints = wait_until("the emulator's endpoints.json", Duration::from_secs(20), || async {
            let text = std::fs::read_to_string(&endpoints_path).ok()?;
            serde_json::from_str(&text).ok()
        })
        .await?;
        let ca_pem = state_dir.path().join("ca.pem");
        Ok(Emulator {
            amqp_addr: endpoints.amqp.parse()?,
            api_addr: endpoints.api.parse()?,
            http: trusting(&std::fs::read(&ca_pem)?)?,
            ca_pem,
            process,
            state_dir,
        })
    }

    /// `https://<api-addr><path>`: the OpenAPI and the admin API are served over TLS only.
    pub fn api_url(&self, path: &str) -> String {
        format!("https://{}{}", self.api_addr, path)
    }

    /// An HTTP client that trusts the emulator's CA (cheap to clone), for the API.
    pub fn http_client(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// What the emulator logged so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state_dir.path().join("emulator.log")).unwrap_or_default()
    }

    /// Publishes `count` messages as devices would; returns their messageIds.
    pub async fn publish(&self, group: &str, topic: &str, payload: &str, count: u32) -> anyhow::Result<Vec<String>> {
        let ids = self.publish_request(&PublishRequest::new(group, topic, payload, count)).await?;
        ids.into_iter().map(|id| id.ok_or_else(|| anyhow::anyhow!("a message of the platform's shape without an id"))).collect()
    }

    /// Publishes `count` messages of another shape (id and time types, body section, undecodable);
    /// returns their ids in canonical form (`None`: the message has no messageId).
    pub async fn publish_shaped(
        &self,
        group: &str,
        topic: &str,
        payload: &str,
        count: u32,
        shape: MessageShape,
    ) -> anyhow::Result<Vec<Option<String>>> {
        self.publish_request(&PublishRequest { shape, ..PublishRequest::new(group, topic, payload, count) }).await
    }

    /// `POST /admin/messages` with any request (e.g. `payloadSize` for oversized messages).
    pub async fn publish_request(&self, request: &PublishRequest) -> anyhow::Result<Vec<Option<String>>> {
        let reply: PublishReply = self.post_typed("/admin/messages", request).await?;
        Ok(reply.message_ids)
    }

    /// `POST /admin/traffic`: device traffic in the background; returns how many messages it publishes.
    pub async fn traffic(&self, group: &str, rate_per_second: u32, devices: u32, seconds: u32) -> anyhow::Result<u64> {
        let request = TrafficRequest { instance_id: String::new(), consumer_group_id: group.into(), rate_per_second, devices, seconds };
        let reply: TrafficReply = self.post_typed("/admin/traffic", &request).await?;
        Ok(reply.messages)
    }

    /// `GET /admin/consumer-groups/<group>` of the legacy instance: backlog, in flight, counters,
    /// connection attempts, connected clients.
    pub async fn group_snapshot(&self, group: &str) -> anyhow::Result<GroupSnapshot> {
        self.group_in("", group).await
    }

    /// `GET /admin/consumer-groups`: every group of every instance.
    pub async fn groups(&self) -> anyhow::Result<Vec<GroupSnapshot>> {
        self.get_json("/admin/consumer-groups").await
    }

    /// `GET /admin/consumer-groups/<group>?instanceId=<instance>`.
    pub async fn group_in(&self, instance: &str, group: &str) -> anyhow::Result<GroupSnapshot> {
        self.get_json(&format!("/admin/consumer-groups/{group}?instanceId={instance}")).await
    }

    /// `GET /admin/consumer-groups/<group>` as JSON; prefer the typed [`Emulator::group_snapshot`].
    pub async fn group(&self, group: &str) -> anyhow::Result<Value> {
        let response = self.http.get(self.api_url(&format!("/admin/consumer-groups/{group}?instanceId="))).send().await?;
        Ok(response.error_for_status()?.json().await?)
    }

    /// `GET /admin/openapi-calls`: every OpenAPI call answered, oldest first.
    pub async fn openapi_calls_typed(&self) -> anyhow::Result<Vec<OpenApiCall>> {
        self.get_json("/admin/openapi-calls").await
    }

    /// `GET /admin/openapi-calls` as JSON; prefer the typed [`Emulator::openapi_calls_typed`].
    pub async fn openapi_calls(&self) -> anyhow::Result<Vec<Value>> {
        self.get_json("/admin/openapi-calls").await
    }

    /// `GET /admin/refusals`: every refused connection, oldest first.
    pub async fn refusals_typed(&self) -> anyhow::Result<Vec<Refusal>> {
        self.get_json("/admin/refusals").await
    }

    /// `GET /admin/refusals` as JSON; prefer the typed [`Emulator::refusals_typed`].
    pub async fn refusals(&self) -> anyhow::Result<Vec<Value>> {
        self.get_json("/admin/refusals").await
    }

    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.http.get(self.api_url(path)).send().await?;
        Ok(response.error_for_status()?.json().await?)
    }

    /// `POST /admin/faults`: drop-connections, refuse-logins, pause-delivery, resume.
    pub async fn inject(&self, action: &str, group: &str) -> anyhow::Result<FaultReply> {
        let request = FaultRequest { action: action.into(), consumer_group_id: group.into(), instance_id: String::new() };
        self.post_typed("/admin/faults", &request).await
    }

    /// `POST /admin/faults` answered as JSON; prefer the typed [`Emulator::inject`].
    pub async fn fault(&self, action: &str, group: &str) -> anyhow::Result<Value> {
        self.post("/admin/faults", json!({"action": action, "consumerGroupId": group, "instanceId": ""})).await
    }

    /// A POST answered as JSON; prefer [`Emulator::post_typed`].
    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.post_typed(path, &body).await
    }

    /// A POST of `body`, its answer read as `R`; a non-2xx answer is an error carrying its text.
    pub async fn post_typed<B: serde::Serialize, R: serde::de::DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<R> {
        let response = self.http.post(self.api_url(path)).json(body).send().await?;
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

/// A reqwest client trusting `ca_pem` besides the default roots.
pub fn trusting(ca_pem: &[u8]) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(ca_pem)?).build()?)
}
