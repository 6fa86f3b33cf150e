//! `iotsub-emulator`: see the library for what it emulates.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    iotsub_common::telemetry::init();
    iotsub_emulator::run(iotsub_emulator::Args::parse()).await
}
