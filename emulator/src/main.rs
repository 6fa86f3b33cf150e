//! `iotsub-emulator`: see the library for what it emulates.

use clap::Parser;

/// Every pushed message allocates in fe2o3-amqp's encoding and tasks; mimalloc's thread-local
/// free lists cost a fraction of glibc's malloc there (docs/benchmarks.md, the emulator section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    iotsub_common::telemetry::init();
    iotsub_emulator::run(iotsub_emulator::Args::parse()).await
}
