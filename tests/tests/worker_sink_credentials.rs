//! Sink credentials: request headers from a mounted Secret's files, read again when kubelet swaps
//! them; the sink URL's userinfo and query never reach a log, `/status` or `/readyz`.

use std::time::Duration;

use iotsub_tests::{http_receiver::HttpReceiver, wait_until, worker::Fixture};

/// Writes `value` as the key `name` the way kubelet lays out a Secret volume: the key is a link
/// into `..data`, which links to a timestamped directory and is swapped atomically on an update.
fn write_secret_volume(dir: &std::path::Path, version: &str, name: &str, value: &str) -> anyhow::Result<()> {
    let data = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&data)?;
    std::fs::write(data.join(name), value)?;
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp)?;
    std::fs::rename(&tmp, dir.join("..data"))?;
    let key = dir.join(name);
    if std::fs::symlink_metadata(&key).is_err() {
        std::os::unix::fs::symlink(format!("..data/{name}"), &key)?;
    }
    Ok(())
}

#[tokio::test]
async fn sink_headers_come_from_the_mounted_secret_and_follow_its_rotation() -> anyhow::Result<()> {
    let sink = HttpReceiver::start().await?;
    let secret = tempfile::tempdir()?;
    write_secret_volume(secret.path(), "2026_01", "Authorization", "Bearer first-token\n")?;
    let fx = Fixture::start("", "hd", |o| o.http_sink(&sink.url).arg("--sink-headers-dir", secret.path().display())).await?;
    fx.publish("{}", 2).await?;
    fx.wait_group("2 acknowledgements", Duration::from_secs(15), |g| g.counters.acknowledged == 2).await?;
    assert!(sink.requests().iter().all(|r| r.headers.get("authorization").map(String::as_str) == Some("Bearer first-token")));

    write_secret_volume(secret.path(), "2026_02", "Authorization", "Bearer second-token")?;
    // Read again within a second or so of the swap: wait for a message that carries the new value.
    wait_until("a request with the rotated token", Duration::from_secs(15), || async {
        fx.publish("{}", 1).await.ok()?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        sink.requests().iter().any(|r| r.headers.get("authorization").map(String::as_str) == Some("Bearer second-token")).then_some(())
    })
    .await?;
    let everything = format!("{}{}", fx.worker.stderr(), fx.worker.status().await?);
    assert!(!everything.contains("first-token") && !everything.contains("second-token"), "a header value leaked");
    Ok(())
}

#[tokio::test]
async fn the_sink_urls_userinfo_and_query_are_never_shown() -> anyhow::Result<()> {
    let sink = HttpReceiver::start().await?;
    sink.answer(401);
    let url = sink.url.replace("http://", "http://alice:pa55word@") + "?key=q-secret";
    let fx = Fixture::start("", "red", |o| {
        o.http_sink(&url).arg("--sink-failure-threshold", 2).arg("--dead-letter-url", "http://x:dl-secret@127.0.0.1:1/")
    })
    .await?;
    fx.publish("{}", 1).await?;
    let status = wait_until("the sink's circuit to open", Duration::from_secs(20), || async {
        let s = fx.worker.status().await.ok()?;
        (s["sink"]["state"] == "open").then_some(s)
    })
    .await?;
    // The userinfo became Basic credentials on the wire, as the URL says.
    assert!(sink.requests().iter().all(|r| r.headers.get("authorization").is_some_and(|a| a.starts_with("Basic "))));
    let readyz = fx.worker.get("/readyz").await?.1;
    let everything = format!("{}{status}{readyz}{}", fx.worker.stderr(), fx.worker.get("/metrics").await?.1);
    for secret in ["pa55word", "q-secret", "alice", "dl-secret"] {
        assert!(!everything.contains(secret), "`{secret}` leaked:\n{everything}");
    }
    assert!(readyz.contains("401") && readyz.contains("<redacted>"), "{readyz}");
    Ok(())
}
