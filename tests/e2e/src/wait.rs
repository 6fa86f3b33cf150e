//! Waiting on the cluster: [`holds_for`], the other half of `iotsub_tests::wait_until`.

use std::{future::Future, time::Duration};

use tokio::time::{Instant, sleep};

/// Checks `check` every 250 ms for `duration` and fails naming `what` as soon as it does not hold
/// (its error says why): for "nothing happens for a while", instead of a bare sleep.
pub async fn holds_for<F, Fut>(what: &str, duration: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let started = Instant::now();
    loop {
        check().await.map_err(|e| e.context(format!("{what} stopped holding after {:?} of {duration:?}", started.elapsed())))?;
        if started.elapsed() >= duration {
            return Ok(());
        }
        sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn holds_for_checks_until_the_end_and_names_what_broke() {
        let mut calls = 0;
        holds_for("a constant", Duration::from_millis(600), || {
            calls += 1;
            async { Ok(()) }
        })
        .await
        .unwrap();
        assert!(calls >= 3, "checked {calls} times");
        let mut left = 2;
        let error = holds_for("a countdown", Duration::from_secs(5), || {
            left -= 1;
            let now = left;
            async move { if now > 0 { Ok(()) } else { Err(anyhow::anyhow!("reached zero")) } }
        })
        .await
        .unwrap_err();
        assert!(format!("{error:#}").contains("a countdown stopped holding"), "{error:#}");
        assert!(format!("{error:#}").contains("reached zero"), "{error:#}");
    }
}
