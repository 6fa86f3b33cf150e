use std::process::ExitCode;

use clap::Parser;
use iotsub_worker::config::{Args, Config, default_client_id};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let args = Args::parse();
    iotsub_common::telemetry::init();
    let config = match Config::from_args(args, default_client_id) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("building the tokio runtime");
    runtime.block_on(async {
        let stop = CancellationToken::new();
        if let Err(e) = iotsub_worker::shutdown::on_signals(stop.clone()) {
            tracing::error!(error = %e, "installing signal handlers");
            return ExitCode::FAILURE;
        }
        match iotsub_worker::run::run(config, stop).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, kind = e.kind(), "worker failed");
                ExitCode::FAILURE
            }
        }
    })
}
