//! `iotsub-operator`: reconciles ConsumerGroupSubscriptions into worker Deployments.

use clap::Parser;
use iotsub_operator::{cli::Args, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    iotsub_operator::telemetry::init();
    run(args).await
}
