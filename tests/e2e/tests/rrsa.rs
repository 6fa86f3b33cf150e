//! RRSA with the local control plane's real ServiceAccount tokens: no AccessKey anywhere in the
//! namespace. The emulator is the STS, trusting the cluster's `/openid/v1/jwks` and one subject;
//! the operator exchanges a TokenRequest token for its OpenAPI calls, the workers their projected
//! token (audience `sts.aliyuncs.com`) for their logins.

use std::time::Duration;

use iotsub_e2e::{
    Cluster, Operator, TestNamespace,
    bed::{emulator_config, operator_args},
    subscription::{self, all_connected, wait_status},
};
use iotsub_tests::{Emulator, wait_until};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Secret, ServiceAccount},
};
use kube::{Api, api::ListParams};
use serde_json::{Value, json};

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const ROLE_ARN: &str = "acs:ram::1234567890123456:role/iot-subscriber";
const PROVIDER_ARN: &str = "acs:ram::1234567890123456:oidc-provider/localkube";

/// The cluster's token signing keys, as its `/openid/v1/jwks` serves them, in a file.
async fn cluster_jwks(cluster: &Cluster) -> anyhow::Result<tempfile::NamedTempFile> {
    let request = http::Request::get("/openid/v1/jwks").body(Vec::new())?;
    let jwks = cluster.client.request_text(request).await?;
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), jwks)?;
    Ok(file)
}

/// A namespace with only the emulator's CA, an emulator whose STS trusts `orders` of that
/// namespace (credentials living `ttl_seconds`), and an operator.
struct RrsaBed {
    ns: TestNamespace,
    emulator: Emulator,
    operator: Operator,
    _jwks: tempfile::NamedTempFile,
}

async fn start(prefix: &str, ttl_seconds: u64) -> anyhow::Result<RrsaBed> {
    let cluster = Cluster::connect().await?;
    let ns = cluster.namespace(prefix).await?;
    let jwks = cluster_jwks(&cluster).await?;
    let sts = format!(
        "[sts]\njwks_file = {jwks:?}\nissuer = {ISSUER:?}\ncredentials_ttl_seconds = {ttl_seconds}\n\n[[sts.roles]]\narn = {ROLE_ARN:?}\noidc_provider_arn = {PROVIDER_ARN:?}\nsubjects = [\"system:serviceaccount:{ns}:orders\"]\n",
        jwks = jwks.path().display().to_string(),
        ns = ns.name,
    );
    let emulator = iotsub_e2e::reach::emulator(&format!("{}\n{sts}", emulator_config(""))).await?;
    ns.put_secret(subscription::CA_SECRET, &[("ca.pem", &std::fs::read_to_string(&emulator.ca_pem)?)]).await?;
    let operator = Operator::start(&cluster.kubeconfig, &operator_args(&ns)).await?;
    Ok(RrsaBed { ns, emulator, operator, _jwks: jwks })
}

/// `orders` with RRSA credentials at the emulator's STS; a small client cap leaves each pod a
/// reconnect budget for the drops of the tests.
fn manifest(emulator: &Emulator, service_account: Option<&str>) -> Value {
    let mut manifest = subscription::manifest("orders", emulator, 1);
    manifest["spec"]["credentials"] =
        json!({"rrsa": {"roleArn": ROLE_ARN, "oidcProviderArn": PROVIDER_ARN, "stsEndpoint": emulator.api_url("")}});
    manifest["spec"]["autoscaling"]["clientCap"] = 4.into();
    if let Some(account) = service_account {
        manifest["spec"]["serviceAccountName"] = account.into();
    }
    manifest
}

/// The AccessKey ID the group's clients logged in with.
async fn login_keys(emulator: &Emulator) -> anyhow::Result<Vec<String>> {
    let group = emulator.group("DEFAULT_GROUP").await?;
    Ok(group["clients"].as_array().into_iter().flatten().filter_map(|c| c["accessKeyId"].as_str().map(str::to_owned)).collect())
}

/// Publishes `count` messages and waits until the group acknowledged them all.
async fn delivered(emulator: &Emulator, count: u32) -> anyhow::Result<()> {
    let before = emulator.group("DEFAULT_GROUP").await?["acknowledged"].as_u64().unwrap_or(0);
    emulator.publish("DEFAULT_GROUP", "/pk/dn/thing/event/property/post", r#"{"Power":"on"}"#, count).await?;
    let wanted = before + u64::from(count);
    wait_until("the messages acknowledged", Duration::from_secs(60), || async {
        let group = emulator.group("DEFAULT_GROUP").await.ok()?;
        (group["acknowledged"].as_u64()? >= wanted && group["backlog"].as_u64()? == 0).then_some(())
    })
    .await
}

#[tokio::test]
async fn an_rrsa_subscription_delivers_with_no_secret_and_renews_expiring_credentials() -> anyhow::Result<()> {
    let bed = start("e2e-rrsa", 60).await?;
    subscription::apply(&bed.ns, &manifest(&bed.emulator, None)).await?;
    let status = wait_status(&bed.ns, "orders", "the worker connected, the platform queried", Duration::from_secs(90), |s| {
        all_connected(1)(s) && s.condition("CredentialsValid").is_some_and(|c| c.reason == "AcceptedByPlatform")
    })
    .await?;
    assert_eq!(status.condition("BacklogAvailable").map(|c| c.status.as_str()), Some("True"), "the operator's own calls work");

    // The ServiceAccount the operator made, trusted by the role; no AccessKey in the namespace.
    let accounts: Api<ServiceAccount> = bed.ns.api();
    let account = accounts.get("orders").await?;
    assert_eq!(account.metadata.owner_references.as_ref().map(|o| o[0].kind.as_str()), Some("ConsumerGroupSubscription"));
    let secrets: Api<Secret> = bed.ns.api();
    let names: Vec<String> = secrets.list(&ListParams::default()).await?.items.into_iter().filter_map(|s| s.metadata.name).collect();
    assert_eq!(names, [subscription::CA_SECRET], "only the CA");
    let deployments: Api<Deployment> = bed.ns.api();
    let pod = deployments.get("orders").await?.spec.and_then(|s| s.template.spec).expect("a pod template");
    assert_eq!(pod.service_account_name.as_deref(), Some("orders"));

    let first = login_keys(&bed.emulator).await?;
    assert!(first.len() == 1 && first[0].starts_with("STS."), "logged in with STS credentials: {first:?}");
    delivered(&bed.emulator, 20).await?;

    // The credentials live 60 s: after they expired, a dropped connection logs in again with new
    // ones (the worker exchanges its token again), and delivery goes on.
    let issued_at = std::time::Instant::now();
    wait_until("the first STS credentials expired", Duration::from_secs(90), || async {
        (issued_at.elapsed() > Duration::from_secs(65)).then_some(())
    })
    .await?;
    bed.emulator.inject("drop-connections", "DEFAULT_GROUP").await?;
    wait_until("the worker logged in again with new STS credentials", Duration::from_secs(60), || async {
        let keys = login_keys(&bed.emulator).await.ok()?;
        (keys.len() == 1 && keys[0].starts_with("STS.") && keys != first).then_some(())
    })
    .await?;
    delivered(&bed.emulator, 20).await?;
    let refusals: Vec<_> = bed.emulator.refusals().await?.into_iter().filter(|r| r["stage"] != "link").collect();
    assert!(refusals.is_empty(), "no login refused (the dropped link aside): {refusals:?}");
    Ok(())
}

#[tokio::test]
async fn a_service_account_the_role_does_not_trust_is_named_in_status_and_nothing_spins() -> anyhow::Result<()> {
    let bed = start("e2e-rrsa-refused", 0).await?;
    let accounts: Api<ServiceAccount> = bed.ns.api();
    let intruder: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "intruder"}}))?;
    accounts.create(&Default::default(), &intruder).await?;
    subscription::apply(&bed.ns, &manifest(&bed.emulator, Some("intruder"))).await?;
    let status = wait_status(&bed.ns, "orders", "CredentialsValid=False/RoleRefused", Duration::from_secs(60), |s| {
        s.condition("CredentialsValid").is_some_and(|c| c.reason == "RoleRefused")
    })
    .await?;
    let condition = status.condition("CredentialsValid").expect("the condition");
    assert_eq!(condition.status, "False");
    assert!(condition.message.contains("intruder") && condition.message.contains(ROLE_ARN), "{}", condition.message);
    assert!(condition.message.contains("AuthenticationFail"), "STS's code: {}", condition.message);
    assert!(!condition.message.contains("eyJ"), "no token in the message: {}", condition.message);
    assert_eq!(status.condition("Ready").map(|c| c.reason.as_str()), Some("CredentialsInvalid"));
    let deployments: Api<Deployment> = bed.ns.api();
    assert!(deployments.get_opt("orders").await?.is_none(), "no Deployment whose pods could only be refused");
    assert!(accounts.get_opt("orders").await?.is_none(), "the user's account is used, none is made");

    // A refusal is remembered for a minute: over the next reconciles, no new exchange.
    let exchanges = metric(&bed.operator, "iotsub_operator_sts_exchanges_total{outcome=\"RoleRefused\"}").await?;
    let reconciles = metric(&bed.operator, "iotsub_operator_reconciles_total").await?;
    wait_until("two more reconciles", Duration::from_secs(60), || async {
        (metric(&bed.operator, "iotsub_operator_reconciles_total").await.ok()? >= reconciles + 2.0).then_some(())
    })
    .await?;
    let now = metric(&bed.operator, "iotsub_operator_sts_exchanges_total{outcome=\"RoleRefused\"}").await?;
    assert!(exchanges >= 1.0 && now <= exchanges + 1.0, "{exchanges} then {now} exchanges");
    assert!(!bed.operator.log_text().contains("eyJ"), "no token in the operator's log");
    Ok(())
}

async fn metric(operator: &Operator, series: &str) -> anyhow::Result<f64> {
    let (_, text) = operator.get("/metrics").await?;
    let line = text.lines().find(|l| l.starts_with(series)).ok_or_else(|| anyhow::anyhow!("no {series} in {text}"))?;
    Ok(line.rsplit(' ').next().unwrap_or_default().parse()?)
}

#[tokio::test]
async fn a_missing_service_account_and_an_unreachable_sts_are_each_named_in_status() -> anyhow::Result<()> {
    let bed = start("e2e-rrsa-unreachable", 0).await?;
    // The user names an account that does not exist: the operator makes none in its place.
    let mut missing = manifest(&bed.emulator, Some("nobody"));
    missing["metadata"]["name"] = "missing".into();
    subscription::apply(&bed.ns, &missing).await?;
    // An STS endpoint where nothing listens.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let sts = format!("https://127.0.0.1:{closed_port}");
    let mut unreachable = manifest(&bed.emulator, None);
    unreachable["spec"]["credentials"]["rrsa"]["stsEndpoint"] = sts.clone().into();
    subscription::apply(&bed.ns, &unreachable).await?;

    let status = wait_status(&bed.ns, "missing", "CredentialsValid=False/ServiceAccountNotFound", Duration::from_secs(60), |s| {
        s.condition("CredentialsValid").is_some_and(|c| c.reason == "ServiceAccountNotFound")
    })
    .await?;
    let condition = status.condition("CredentialsValid").expect("the condition");
    assert_eq!(condition.status, "False");
    assert!(condition.message.contains("nobody"), "names the account: {}", condition.message);
    let accounts: Api<ServiceAccount> = bed.ns.api();
    assert!(accounts.get_opt("nobody").await?.is_none(), "the user's account is not made for them");

    let status = wait_status(&bed.ns, "orders", "CredentialsValid=False/StsUnreachable", Duration::from_secs(60), |s| {
        s.condition("CredentialsValid").is_some_and(|c| c.reason == "StsUnreachable")
    })
    .await?;
    let condition = status.condition("CredentialsValid").expect("the condition");
    assert!(condition.message.contains(&sts), "names the endpoint: {}", condition.message);
    assert!(!condition.message.contains("eyJ"), "no token in the message: {}", condition.message);
    let deployments: Api<Deployment> = bed.ns.api();
    for name in ["missing", "orders"] {
        assert!(deployments.get_opt(name).await?.is_none(), "{name}: no Deployment whose pods could only be refused");
    }
    assert!(!bed.operator.log_text().contains("eyJ"), "no token in the operator's log");
    Ok(())
}
