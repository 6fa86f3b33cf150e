//! Credentials without restarts: the worker reads a mounted Secret directory before every
//! connection attempt, so a rotation (the kubelet swapping the volume's files) is used at the next
//! login by the same process; with RRSA it exchanges its OIDC token with STS (the emulator) for
//! credentials that expire.

use std::{path::Path, time::Duration};

use iotsub_tests::{
    Emulator,
    oidc::Issuer,
    wait_until,
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

/// RRSA: the worker exchanges its projected token with STS (the emulator) for credentials that
/// expire, and exchanges again at a reconnect once they are about to.
#[tokio::test]
async fn rrsa_exchanges_the_oidc_token_with_sts_and_logs_in_with_sts_credentials() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let issuer = Issuer::new(dir.path())?;
    // 60 s credentials: within the worker's 5-minute margin, so every attempt exchanges again.
    let emulator = Emulator::start(&issuer.emulator_config("team", 60)).await?;
    let token_file = dir.path().join("token");
    let token = issuer.token("team", "orders", "sts.aliyuncs.com", 600)?;
    std::fs::write(&token_file, &token)?;
    let options = WorkerOptions::for_emulator(&emulator, "rrsa").rrsa(&token_file, &emulator.api_url("/"));
    let worker = Worker::start(dir.path(), &options).await?;
    worker.wait_ready(Duration::from_secs(20)).await.map_err(|e| e.context(worker.stderr()))?;
    let ids = emulator.publish(GROUP, "/pk/dn/thing/event/property/post", "{}", 20).await?;
    wait_until("the messages acknowledged", Duration::from_secs(20), || async {
        (emulator.group_snapshot(GROUP).await.ok()?.counters.acknowledged >= ids.len() as u64).then_some(())
    })
    .await?;

    // A reconnect: a new token in the file (the kubelet refreshes it), exchanged again.
    std::fs::write(&token_file, issuer.token("team", "orders", "sts.aliyuncs.com", 600)?)?;
    emulator.inject("drop-connections", GROUP).await?;
    wait_until("a second exchange and login", Duration::from_secs(20), || async {
        let exchanges = worker.stderr().matches("STS credentials from the OIDC token").count();
        let attempts = emulator.group_snapshot(GROUP).await.ok()?.connection_attempts.total;
        (exchanges >= 2 && attempts >= 2 && worker.get("/readyz").await.ok()?.0 == 200).then_some(())
    })
    .await?;
    let refusals = emulator.refusals_typed().await?;
    assert!(!refusals.iter().any(|r| r.condition == "sasl:auth"), "every login with fresh STS credentials was accepted: {refusals:?}");
    assert!(!worker.stderr().contains(&token), "the OIDC token in the worker's log");
    Ok(())
}

/// A token STS refuses (another audience, another namespace's ServiceAccount) is named with STS's
/// code, and the worker waits the long backoff instead of spinning.
#[tokio::test]
async fn a_token_sts_refuses_is_named_and_not_retried_in_a_loop() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let issuer = Issuer::new(dir.path())?;
    let emulator = Emulator::start(&issuer.emulator_config("team", 60)).await?;
    // what is wrong, the token, the code STS answers
    let cases = [
        ("the wrong audience", issuer.token("team", "orders", "kubernetes", 600)?, "AuthenticationFail.OIDCToken.Invalid"),
        ("another namespace's ServiceAccount", issuer.token("other", "orders", "sts.aliyuncs.com", 600)?, "SubjectNotAllowed"),
    ];
    for (i, (what, token, code)) in cases.into_iter().enumerate() {
        let token_file = dir.path().join(format!("token-{i}"));
        std::fs::write(&token_file, &token)?;
        let worker_dir = tempfile::tempdir()?;
        let options = WorkerOptions::for_emulator(&emulator, &format!("bad-{i}")).rrsa(&token_file, &emulator.api_url("/"));
        let worker = Worker::start(worker_dir.path(), &options).await?;
        let (state, error) = wait_until(&format!("{what}: refused"), Duration::from_secs(20), || async {
            state(&worker).await.filter(|(state, _)| state == "login-refused")
        })
        .await?;
        assert!(error.contains(code) && error.contains("STS"), "{what}: {state} {error}");
        let attempts = worker.status().await?["connections"][0]["attempts"].as_u64().unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let again = worker.status().await?["connections"][0]["attempts"].as_u64().unwrap_or(0);
        assert_eq!(again, attempts, "{what}: retried within 3 s of a refusal");
        assert!(!worker.stderr().contains(&token), "{what}: the token in the log");
    }
    Ok(())
}
