//! The operator's OpenAPI calls on the local control plane: over verified TLS only.

use std::time::Duration;

use iotsub_e2e::{
    Bed,
    bed::emulator_config,
    subscription::{self, CA_SECRET, wait_status},
};
use iotsub_tests::https_server::unrelated_ca_pem;

#[tokio::test]
async fn an_openapi_endpoint_the_ca_does_not_vouch_for_is_a_tls_error_in_the_subscriptions_condition() -> anyhow::Result<()> {
    let bed = Bed::start("e2e-tls", &emulator_config("")).await?;
    // The subscription's CA is another one: the emulator's certificate does not chain to it.
    bed.ns.put_secret(CA_SECRET, &[("ca.pem", &unrelated_ca_pem()?)]).await?;
    subscription::apply(&bed.ns, &subscription::manifest("orders", &bed.emulator, 0)).await?;
    let status = wait_status(&bed.ns, "orders", "BacklogAvailable=False naming the TLS failure", Duration::from_secs(60), |s| {
        s.condition("BacklogAvailable").is_some_and(|c| c.status == "False" && c.message.contains("TLS handshake failed"))
    })
    .await?;
    let condition = status.condition("BacklogAvailable").expect("the condition");
    assert_eq!(condition.reason, "PlatformUnreachable");
    let address = bed.emulator.api_addr.to_string();
    assert!(condition.message.contains(&address) && condition.message.contains("UnknownIssuer"), "{}", condition.message);
    assert!(!condition.message.contains("Signature") && !condition.message.contains("demo-secret"), "{}", condition.message);
    assert!(bed.emulator.openapi_calls_typed().await?.is_empty(), "no signed request reached the endpoint");
    Ok(())
}
