use std::{future::Future, time::Duration};

use tokio::time::{Instant, sleep};

/// Polls `check` every 50 ms until it returns `Some`, or fails naming `what` after `deadline`.
pub async fn wait_until<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() >= end {
            anyhow::bail!("timed out after {deadline:?} waiting for {what}");
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// Checks every 50 ms for `duration` that `check` keeps returning `Some` (nothing happens that
/// should not); fails naming `what` at the first `None`.
pub async fn holds_for<T, F, Fut>(what: &str, duration: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + duration;
    let started = Instant::now();
    while Instant::now() < end {
        if check().await.is_none() {
            anyhow::bail!("{what} stopped holding after {:?}", started.elapsed());
        }
        sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
