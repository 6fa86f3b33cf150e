//! Credentials without restarts: the worker reads a mounted Secret directory before every
//! connection attempt, so a rotation (the kubelet swapping the volume's files) is used at the next
//! login by the same process.

use std::{path::Path, time::Duration};

use iotsub_tests::{
    Emulator, wait_until,
    worker::{GROUP, Worker, WorkerOptions},
};

const ACCOUNTS: &str = r#"
[[accounts]]
access_key_id = "demo"
access_key_secret = "demo-secret"

[[accounts]]
access_key_id = "rotated"
access_key_secret = "rotated-secret"
"#;

/// Writes the keys the way the kubelet updates a Secret volume: a new directory, then `..data`
/// swapped to it in one rename; the key files are links through `..data`.
fn kubelet_write(dir: &Path, generation: u32, id: &str, secret: &str) -> anyhow::Result<()> {
    let data = dir.join(format!("..gen{generation}"));
    std::fs::create_dir_all(&data)?;
    std::fs::write(data.join("accessKeyId"), id)?;
    std::fs::write(data.join("accessKeySecret"), secret)?;
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..gen{generation}"), &tmp)?;
    std::fs::rename(&tmp, dir.join("..data"))?;
    for name in ["accessKeyId", "accessKeySecret"] {
        if dir.join(name).symlink_metadata().is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name))?;
        }
    }
    Ok(())
}

async fn state(worker: &Worker) -> Option<(String, String)> {
    let status = worker.status().await.ok()?;
    let connection = &status["connections"][0];
    Some((connection["state"].as_str()?.to_owned(), connection["lastError"].as_str().unwrap_or_default().to_owned()))
}

#[tokio::test]
async fn a_rotated_secret_volume_is_used_at_the_next_login_by_the_same_process() -> anyhow::Result<()> {
    let emulator = Emulator::start(ACCOUNTS).await?;
    let keys = tempfile::tempdir()?;
    kubelet_write(keys.path(), 1, "demo", "demo-secret")?;
    let dir = tempfile::tempdir()?;
    let options = WorkerOptions::for_emulator(&emulator, "files").credentials_dir(keys.path()).arg("--login-backoff-ms", 1000);
    let worker = Worker::start(dir.path(), &options).await?;
    worker.wait_ready(Duration::from_secs(20)).await?;
    let pid = worker.process.pid();

    // A broken key first: the next login is refused, which proves the directory was read again.
    kubelet_write(keys.path(), 2, "demo", "not-the-secret")?;
    emulator.inject("drop-connections", GROUP).await?;
    let (_, error) = wait_until("the next login refused", Duration::from_secs(20), || async {
        state(&worker).await.filter(|(state, _)| state == "login-refused")
    })
    .await?;
    assert!(!error.contains("not-the-secret"), "the secret in /status: {error}");

    // The rotation: the same process logs in with the new key.
    kubelet_write(keys.path(), 3, "rotated", "rotated-secret")?;
    worker.wait_ready(Duration::from_secs(20)).await?;
    assert_eq!(worker.process.pid(), pid, "the same process");
    let refusals = emulator.refusals_typed().await?;
    assert!(refusals.iter().any(|r| r.condition == "sasl:auth"), "{refusals:?}");
    let log = worker.stderr();
    for secret in ["demo-secret", "not-the-secret", "rotated-secret"] {
        assert!(!log.contains(secret), "{secret} in the worker's log");
    }
    Ok(())
}
