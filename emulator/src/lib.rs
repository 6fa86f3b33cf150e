//! `iotsub-emulator`: the Alibaba Cloud IoT Platform's server-side subscription on one machine.
//!
//! The binary is [`run`] with its [`Args`]; the admin API's types are public ([`admin`]) so tests
//! read its answers typed.

pub mod admin;
mod amqp_server;
mod batched_write;
mod config;
mod groups;
mod http_api;
mod https;
mod message;
mod open_frame;
mod platform;
mod publish;
mod rate;
mod rpc;
mod sasl;
mod sts;
mod tls;
mod traffic;
mod wire_clock;

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;

/// Emulates the IoT Platform's AMQP endpoint (TLS, SASL PLAIN, the connection rules, delivery,
/// acknowledgement and redelivery) and its OpenAPI, plus an admin API to publish and inject faults.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Args {
    /// TOML file with limits, accounts and instances (see the README); defaults when absent.
    #[arg(long, env = "IOTSUB_EMULATOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// AMQP over TLS. Port 0 picks a free port; `<state-dir>/endpoints.json` tells which.
    #[arg(long, env = "IOTSUB_EMULATOR_AMQP_ADDR", default_value = "127.0.0.1:5671")]
    pub amqp_addr: SocketAddr,
    /// OpenAPI and admin API over HTTPS (the same certificate as AMQP; clients trust ca.pem).
    #[arg(long, env = "IOTSUB_EMULATOR_API_ADDR", default_value = "127.0.0.1:8080")]
    pub api_addr: SocketAddr,
    /// Where ca.pem, ca-key.pem and endpoints.json go.
    #[arg(long, env = "IOTSUB_EMULATOR_STATE_DIR", default_value = "target/emulator")]
    pub state_dir: PathBuf,
    /// Server certificate chain (PEM); with --tls-key, replaces the generated one.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Names in the generated server certificate, besides localhost and 127.0.0.1.
    #[arg(long = "tls-san")]
    pub tls_sans: Vec<String>,
}

/// Serves until SIGINT or SIGTERM; `<state-dir>/endpoints.json` exists while it listens.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => config::Config::load(path)?,
        None => config::Config::default(),
    };

    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => tls::load(cert, key)?,
        _ => {
            let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
            names.extend(args.tls_sans.iter().cloned());
            tls::generate(&args.state_dir, &names)?
        }
    };
    let platform = platform::Platform::new(&config);
    for group in platform.groups() {
        tokio::spawn(group.clone().run_dispatcher());
    }

    let amqp = TcpListener::bind(args.amqp_addr).await.with_context(|| format!("binding AMQP to {}", args.amqp_addr))?;
    let api = TcpListener::bind(args.api_addr).await.with_context(|| format!("binding the API to {}", args.api_addr))?;
    let endpoints = admin::Endpoints { amqp: amqp.local_addr()?.to_string(), api: api.local_addr()?.to_string() };
    // Written atomically, after both ports listen: its presence means "ready".
    let endpoints_path = args.state_dir.join("endpoints.json");
    let tmp = args.state_dir.join(".endpoints.json.tmp");
    std::fs::create_dir_all(&args.state_dir)?;
    std::fs::write(&tmp, serde_json::to_string(&endpoints)?)?;
    std::fs::rename(&tmp, &endpoints_path)?;
    tracing::info!(
        amqp = %amqp.local_addr()?, api = %api.local_addr()?, ca = %args.state_dir.join("ca.pem").display(),
        groups = platform.groups().count(), "emulator listening"
    );

    let tls = Arc::new(tls);
    let amqp_task = tokio::spawn(amqp_server::serve(amqp, tokio_rustls::TlsAcceptor::from(tls.clone()), platform.clone()));
    let api_task = tokio::spawn(https::serve(api, tls, http_api::router(platform)));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; exiting"),
        _ = terminate.recv() => tracing::info!("terminated; exiting"),
        r = amqp_task => anyhow::bail!("AMQP server stopped: {r:?}"),
        r = api_task => anyhow::bail!("API server stopped: {r:?}"),
    }
    let _ = std::fs::remove_file(endpoints_path);
    Ok(())
}
