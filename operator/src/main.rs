//! `iotsub-operator`: reconciles ConsumerGroupSubscriptions into worker Deployments.

use clap::Parser;
use iotsub_operator::{cli::Args, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // A workspace build may link both of rustls's providers (feature unification): name one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    iotsub_common::telemetry::init();
    run(args).await
}
