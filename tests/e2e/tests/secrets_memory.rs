//! The operator holds no Secret data it does not use: it watches Secrets' metadata only, so 2 000
//! unrelated Secrets of 10 KiB (20 MiB of data, like a cluster full of Helm releases) in a watched
//! namespace cost it next to no memory.

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt, stream};
use iotsub_e2e::{Cluster, Operator, bed::operator_args};
use iotsub_tests::wait_until;
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::api::{ObjectMeta, PostParams};

const SECRETS: usize = 2_000;
const SECRET_BYTES: usize = 10 * 1024;
const TOLERANCE_KIB: u64 = 5 * 1024;

/// The resident set of a process, from /proc.
fn rss_kib(operator: &Operator) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", operator.process.pid()))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

async fn filled(operator: &Operator) -> anyhow::Result<()> {
    // The leader metric turns 1 once every watch cache had its first full list.
    wait_until("the operator's caches filled", Duration::from_secs(60), || async {
        (operator.metric("iotsub_operator_leader").await.ok()? == 1.0).then_some(())
    })
    .await
}

#[tokio::test]
async fn two_thousand_unrelated_secrets_cost_the_operator_under_5_mib() -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?;
    let crowded = cluster.namespace("e2e-secrets").await?;
    let empty = cluster.namespace("e2e-nosecrets").await?;
    let api = crowded.api::<Secret>();
    let value = ByteString("x".repeat(SECRET_BYTES).into_bytes());
    stream::iter(0..SECRETS)
        .map(|i| {
            let (api, value) = (api.clone(), value.clone());
            async move {
                let secret = Secret {
                    metadata: ObjectMeta { name: Some(format!("unrelated-{i}")), ..Default::default() },
                    data: Some([("blob".to_owned(), value)].into()),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &secret).await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;

    let with = Operator::start(&cluster.kubeconfig, &operator_args(&crowded)).await?;
    let without = Operator::start(&cluster.kubeconfig, &operator_args(&empty)).await?;
    filled(&with).await?;
    filled(&without).await?;
    // Let both settle (allocator arenas, the first metrics scrape), then compare.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_with, rss_without) = (rss_kib(&with)?, rss_kib(&without)?);
    println!("operator RSS: {rss_with} KiB watching {SECRETS} Secrets of {SECRET_BYTES} B, {rss_without} KiB watching none");
    assert!(
        rss_with <= rss_without + TOLERANCE_KIB,
        "{SECRETS} unrelated Secrets cost {} KiB (more than {TOLERANCE_KIB} KiB)",
        rss_with.saturating_sub(rss_without)
    );
    assert_eq!(with.metric("iotsub_operator_secrets_held").await.unwrap_or(0.0), 0.0, "no Secret is referenced");
    Ok(())
}
