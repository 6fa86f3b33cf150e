//! `make soak`: the whole system under load and faults (tests/e2e/src/soak, docs/reliability.md).
//!
//! SOAK_MINUTES (default 10) of load; SOAK_SEED replays a run's plan of faults; SOAK_DIR (default
//! target/soak) gets the stand-in's ids file and the run's record, `soak.json`. Exits 1 when an
//! invariant broke, after printing which.

use std::time::Duration;

use iotsub_e2e::{
    soak::{self, Settings, schedule},
    workspace_root,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let minutes: f64 = match std::env::var("SOAK_MINUTES") {
        Ok(text) => text.parse().map_err(|_| anyhow::anyhow!("SOAK_MINUTES={text:?} is not a number of minutes"))?,
        Err(_) => 10.0,
    };
    anyhow::ensure!((1.0..=600.0).contains(&minutes), "SOAK_MINUTES={minutes} must be between 1 and 600");
    let seed = match std::env::var("SOAK_SEED") {
        Ok(text) => text.parse().map_err(|_| anyhow::anyhow!("SOAK_SEED={text:?} is not an unsigned 64-bit number"))?,
        Err(_) => schedule::fresh_seed(),
    };
    let dir: std::path::PathBuf = std::env::var_os("SOAK_DIR").map_or_else(|| workspace_root().join("target/soak"), Into::into);
    // The stand-in pod mounts a directory under it: a hostPath must be absolute.
    std::fs::create_dir_all(&dir)?;
    let dir = dir.canonicalize()?;
    let settings = Settings { run: Duration::from_secs_f64(minutes * 60.0), seed, dir };
    let report = soak::run(&settings).await?;
    print!("{}", soak::summary(&report));
    println!("soak: the run's record is {}", settings.dir.join("soak.json").display());
    if !report.broken.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
