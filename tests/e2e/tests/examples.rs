//! The README's example is the quickstart that `make demo` applies (and `make demo-smoke` runs in
//! `make test`), so the example a user copies is one a test ran. No cluster needed.

use iotsub_crds::ConsumerGroupSubscription;
use iotsub_e2e::{helm::parse_documents, readme_block, workspace_root};
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

fn quickstart() -> anyhow::Result<Vec<Value>> {
    parse_documents(&std::fs::read_to_string(workspace_root().join("examples/quickstart.yaml"))?)
}

#[test]
fn quickstart_is_a_secret_and_an_autoscaled_subscription_of_the_emulator() -> anyhow::Result<()> {
    let objects = quickstart()?;
    assert_eq!(objects.len(), 2, "{objects:?}");
    let secret: Secret = serde_json::from_value(objects[0].clone())?;
    let keys: Vec<&String> = secret.string_data.as_ref().expect("stringData").keys().collect();
    assert_eq!(keys, ["accessKeyId", "accessKeySecret"]);
    let cgs: ConsumerGroupSubscription = serde_json::from_value(objects[1].clone())?;
    let spec = &cgs.spec;
    assert_eq!(spec.credentials.secret_name, Some(secret.metadata.name.expect("a name")));
    assert_eq!(spec.consumer_group_id, "DEFAULT_GROUP");
    // scripts/demo.sh substitutes these two for the ports the emulator got.
    assert_eq!(spec.endpoint.port, 5671);
    let autoscaling = spec.autoscaling.as_ref().expect("autoscaling");
    assert_eq!(autoscaling.api_endpoint, "https://127.0.0.1:8080");
    assert!(autoscaling.enabled);
    assert_eq!((autoscaling.min_replicas, autoscaling.max_replicas, autoscaling.target_backlog_per_replica), (1, 4, 500));
    assert_eq!(spec.endpoint.ca_secret_ref.as_ref().map(|r| (r.name.as_str(), r.key.as_str())), Some(("emulator-ca", "ca.pem")));
    Ok(())
}

#[test]
fn readme_example_is_the_quickstart() -> anyhow::Result<()> {
    let readme = parse_documents(&readme_block("## The `ConsumerGroupSubscription`")?)?;
    assert_eq!(readme, quickstart()?, "README.md's example differs from examples/quickstart.yaml");
    Ok(())
}
