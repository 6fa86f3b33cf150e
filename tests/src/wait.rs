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
