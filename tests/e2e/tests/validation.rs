//! The API server refuses invalid subscriptions with a message that names the field (schema
//! bounds and CEL rules of the generated CRD), and fills in the defaults of a minimal one.

use iotsub_crds::ConsumerGroupSubscription;
use iotsub_e2e::Cluster;
use kube::{
    Api,
    api::{ApiResource, DynamicObject, PostParams},
};
use serde_json::{Value, json};

fn base() -> Value {
    json!({
        "apiVersion": "iotsub.dev/v1alpha1",
        "kind": "ConsumerGroupSubscription",
        "metadata": {"name": "bad"},
        "spec": {
            "endpoint": {"host": "iot-cn-xxxx.amqp.iothub.aliyuncs.com"},
            "consumerGroupId": "DEFAULT_GROUP",
            "regionId": "cn-shanghai",
            "credentials": {"secretName": "aliyun-credentials"},
        }
    })
}

/// The subscriptions of the README's "Credentials" section, as a user copies them.
fn readme_credentials_examples() -> anyhow::Result<Vec<Value>> {
    let readme = std::fs::read_to_string(iotsub_e2e::workspace_root().join("README.md"))?;
    let start = readme.find("\n## Credentials\n").ok_or_else(|| anyhow::anyhow!("README.md has no Credentials section"))?;
    let section = &readme[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |end| end + 1)];
    let mut subscriptions = Vec::new();
    for block in section.split("```yaml\n").skip(1) {
        let block = &block[..block.find("```").unwrap_or(block.len())];
        for document in iotsub_e2e::helm::parse_documents(block)? {
            if document["kind"] == "ConsumerGroupSubscription" {
                subscriptions.push(document);
            }
        }
    }
    anyhow::ensure!(subscriptions.len() == 2, "two examples in the Credentials section, found {}", subscriptions.len());
    Ok(subscriptions)
}

/// Sets `value` at a dotted path under `spec`.
fn with(path: &str, value: Value) -> Value {
    let mut object = base();
    let mut at = &mut object["spec"];
    let parts: Vec<&str> = path.split('.').collect();
    for part in &parts[..parts.len() - 1] {
        if at.get(*part).is_none() {
            at[*part] = json!({});
        }
        at = &mut at[*part];
    }
    at[parts[parts.len() - 1]] = value;
    object
}

fn with_all(changes: &[(&str, Value)]) -> Value {
    let mut object = base();
    for (path, value) in changes {
        let one = with(path, value.clone());
        merge(&mut object, &one);
    }
    object
}

fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b.clone(),
    }
}

/// Waits until the object `bad` is deleted, so the next create does not meet it.
async fn wait_gone(api: &Api<DynamicObject>) -> anyhow::Result<()> {
    iotsub_tests::wait_until("the object `bad` deleted", std::time::Duration::from_secs(10), || async {
        api.get_opt("bad").await.ok().and_then(|o| o.is_none().then_some(()))
    })
    .await
}

#[tokio::test]
async fn invalid_specs_are_refused_naming_the_field() -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?;
    let ns = cluster.namespace("e2e-valid").await?;
    let resource = ApiResource::erase::<ConsumerGroupSubscription>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(cluster.client.clone(), &ns.name, &resource);

    let table: Vec<(&str, Value, &[&str])> = vec![
        ("idle timeout below range", with("connection.idleTimeoutMs", json!(10000)), &["spec.connection.idleTimeoutMs", "30000"]),
        ("idle timeout above range", with("connection.idleTimeoutMs", json!(400000)), &["spec.connection.idleTimeoutMs", "300000"]),
        (
            "maxReplicas × connectionsPerPod over the cap",
            with_all(&[("autoscaling", json!({"enabled": true, "maxReplicas": 20})), ("connection.connectionsPerPod", json!(4))]),
            &["spec.autoscaling.maxReplicas", "clientCap"],
        ),
        (
            "replicas × connectionsPerPod over the cap",
            with_all(&[("replicas", json!(33)), ("connection.connectionsPerPod", json!(2))]),
            &["spec.replicas", "clientCap"],
        ),
        ("min > max", with("autoscaling", json!({"enabled": true, "minReplicas": 5, "maxReplicas": 2})), &["spec.autoscaling.minReplicas"]),
        ("unknown authMode", with("credentials.authMode", json!("password")), &["spec.credentials.authMode", "aksign"]),
        ("unknown signMethod", with("credentials.signMethod", json!("hmacsha512")), &["spec.credentials.signMethod", "hmacsha256"]),
        ("unknown sink type", with("sink", json!({"type": "kafka"})), &["spec.sink.type"]),
        ("http sink without url", with("sink", json!({"type": "http"})), &["spec.sink.http", "url"]),
        ("http sink url not http", with("sink", json!({"type": "http", "http": {"url": "ftp://x"}})), &["spec.sink.http.url"]),
        (
            "dead letters to http without url",
            with("sink", json!({"deadLetter": {"type": "http"}})),
            &["spec.sink.deadLetter.url", "required"],
        ),
        (
            "dead letter url not http",
            with("sink", json!({"deadLetter": {"type": "http", "url": "ftp://x"}})),
            &["spec.sink.deadLetter.url"],
        ),
        ("unknown dead letter type", with("sink", json!({"deadLetter": {"type": "s3"}})), &["spec.sink.deadLetter.type"]),
        (
            "unknown http protocol",
            with("sink", json!({"type": "http", "http": {"url": "http://s/e", "protocol": "spdy"}})),
            &["spec.sink.http.protocol"],
        ),
        (
            "batch limits without batch mode",
            with("sink", json!({"type": "http", "http": {"url": "http://s/e", "batch": {"maxEvents": 10}}})),
            &["spec.sink.http.batch", "mode: batch"],
        ),
        (
            "batch of no events",
            with("sink", json!({"type": "http", "http": {"url": "http://s/e", "mode": "batch", "batch": {"maxEvents": 0}}})),
            &["spec.sink.http.batch.maxEvents"],
        ),
        ("maxDeliveries zero", with("sink", json!({"maxDeliveries": 0})), &["spec.sink.maxDeliveries"]),
        ("maxMessageBytes too small", with("connection.maxMessageBytes", json!(10)), &["spec.connection.maxMessageBytes"]),
        ("empty consumer group", with("consumerGroupId", json!("")), &["spec.consumerGroupId"]),
        (
            "no credentials",
            {
                let mut o = base();
                o["spec"].as_object_mut().unwrap().remove("credentials");
                o
            },
            &["spec.credentials"],
        ),
        ("credentials with neither source", with("credentials", json!({"authMode": "aksign"})), &["spec.credentials", "exactly one"]),
        (
            "credentials with both sources",
            with(
                "credentials",
                json!({"secretName": "s", "rrsa": {"roleArn": "acs:ram::1:role/r", "oidcProviderArn": "acs:ram::1:oidc-provider/p"}}),
            ),
            &["spec.credentials", "exactly one"],
        ),
        (
            "rrsa role not an ARN",
            with("credentials", json!({"rrsa": {"roleArn": "iot-reader", "oidcProviderArn": "acs:ram::1:oidc-provider/p"}})),
            &["spec.credentials.rrsa.roleArn"],
        ),
        (
            "rrsa duration under 15 minutes",
            with(
                "credentials",
                json!({"rrsa": {"roleArn": "acs:ram::1:role/r", "oidcProviderArn": "acs:ram::1:oidc-provider/p", "durationSeconds": 60}}),
            ),
            &["spec.credentials.rrsa.durationSeconds"],
        ),
        (
            "rrsa STS endpoint over http",
            with(
                "credentials",
                json!({"rrsa": {"roleArn": "acs:ram::1:role/r", "oidcProviderArn": "acs:ram::1:oidc-provider/p", "stsEndpoint": "http://sts"}}),
            ),
            &["spec.credentials.rrsa.stsEndpoint", "https"],
        ),
        ("port out of range", with("endpoint.port", json!(70000)), &["spec.endpoint.port"]),
        ("negative replicas", with("replicas", json!(-1)), &["spec.replicas"]),
        ("connectionsPerPod zero", with("connection.connectionsPerPod", json!(0)), &["spec.connection.connectionsPerPod"]),
        (
            "name too long for a clientId",
            {
                let mut o = base();
                o["metadata"]["name"] = json!("x".repeat(45));
                o
            },
            &["metadata.name", "44"],
        ),
        ("apiEndpoint not a URL", with("autoscaling", json!({"apiEndpoint": "iot.example"})), &["spec.autoscaling.apiEndpoint"]),
        // `,` `=` `|` delimit the AMQP username's fields: the signer would refuse them at every login.
        ("a comma in consumerGroupId", with("consumerGroupId", json!("GROUP,x")), &["spec.consumerGroupId", "`,`"]),
        ("an equals sign in consumerGroupId", with("consumerGroupId", json!("GROUP=x")), &["spec.consumerGroupId", "`=`"]),
        ("a pipe in consumerGroupId", with("consumerGroupId", json!("GROUP|x")), &["spec.consumerGroupId", "`|`"]),
        ("a pipe in iotInstanceId", with("iotInstanceId", json!("iot-cn|x")), &["spec.iotInstanceId", "`|`"]),
        ("a comma in iotInstanceId", with("iotInstanceId", json!("iot-cn,x")), &["spec.iotInstanceId", "`,`"]),
        ("a URL as endpoint.host", with("endpoint.host", json!("amqps://iot.example.com:5671")), &["spec.endpoint.host", "host name"]),
        ("a space in endpoint.host", with("endpoint.host", json!("iot example.com")), &["spec.endpoint.host"]),
        ("a label starting with a hyphen", with("endpoint.host", json!("-iot.example.com")), &["spec.endpoint.host"]),
        (
            "a path as caSecretRef.key",
            with("endpoint.caSecretRef", json!({"name": "emulator-ca", "key": "certs/ca.pem"})),
            &["spec.endpoint.caSecretRef.key", "Secret data key"],
        ),
        (
            "credit × connectionsPerPod over a pod's bound",
            with("connection", json!({"credit": 5001, "connectionsPerPod": 2})),
            &["spec.connection.credit", "10000"],
        ),
        (
            "apiEndpoint in clear",
            with("autoscaling", json!({"apiEndpoint": "http://iot.cn-shanghai.aliyuncs.com"})),
            &["spec.autoscaling.apiEndpoint", "https://"],
        ),
        ("apiEndpoint without a host", with("autoscaling", json!({"apiEndpoint": "https://"})), &["spec.autoscaling.apiEndpoint"]),
    ];
    let mut failures = Vec::new();
    for (case, object, expected) in &table {
        let object: DynamicObject = serde_json::from_value(object.clone())?;
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => {
                failures.push(format!("{case}: accepted"));
                let _ = api.delete("bad", &Default::default()).await;
            }
            Err(kube::Error::Api(response)) => {
                let missing: Vec<_> = expected.iter().filter(|e| !response.message.contains(*e)).collect();
                if response.code != 422 || !missing.is_empty() {
                    failures.push(format!("{case}: HTTP {} without {missing:?}: {}", response.code, response.message));
                }
            }
            Err(other) => failures.push(format!("{case}: {other}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // What the rules above must still let through.
    let good: Vec<(&str, Value)> = vec![
        ("an IPv4 host", with("endpoint.host", json!("127.0.0.1"))),
        ("localhost", with("endpoint.host", json!("localhost"))),
        ("an instance id", with("iotInstanceId", json!("iot-cn-6ja2nr0ml01"))),
        ("an empty instance id (legacy instance)", with("iotInstanceId", json!(""))),
        ("a dotted CA key", with("endpoint.caSecretRef", json!({"name": "emulator-ca", "key": "ca.pem"}))),
        ("credit × connectionsPerPod at the bound", with("connection", json!({"credit": 5000, "connectionsPerPod": 2}))),
        (
            "a batched http2 sink",
            with(
                "sink",
                json!({"type": "http", "http": {"url": "https://s/e", "protocol": "http2", "mode": "batch",
                "batch": {"maxEvents": 500, "maxBytes": 4_194_304, "lingerMs": 5}}}),
            ),
        ),
        (
            "rrsa with every field",
            with(
                "credentials",
                json!({"rrsa": {"roleArn": "acs:ram::1:role/r", "oidcProviderArn": "acs:ram::1:oidc-provider/p",
                    "roleSessionName": "iot.sub@team", "durationSeconds": 900, "stsEndpoint": "https://sts.cn-shanghai.aliyuncs.com"}}),
            ),
        ),
    ];
    let mut good = good;
    for (i, mut object) in readme_credentials_examples()?.into_iter().enumerate() {
        object["metadata"] = json!({"name": "bad"});
        good.push((["the README's AccessKey example", "the README's RRSA example"].get(i).copied().unwrap_or("a README example"), object));
    }
    for (case, object) in &good {
        let object: DynamicObject = serde_json::from_value(object.clone())?;
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => {
                api.delete("bad", &Default::default()).await?;
                wait_gone(&api).await?;
            }
            Err(error) => failures.push(format!("{case}: refused: {error}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // A minimal subscription is accepted and gets the documented defaults.
    let created = api.create(&PostParams::default(), &serde_json::from_value(base())?).await?;
    let spec = &created.data["spec"];
    assert_eq!(spec["endpoint"]["port"], 5671);
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["connection"], json!({"connectionsPerPod": 1, "idleTimeoutMs": 60000, "credit": 100, "maxMessageBytes": 1_048_576}));
    assert_eq!(spec["credentials"]["authMode"], "aksign");
    assert_eq!(spec["credentials"]["signMethod"], "hmacsha1");
    assert_eq!(spec["sink"]["type"], "log");
    assert_eq!(spec["sink"]["deadLetter"], json!({"type": "log"}), "nothing is dropped without a record");
    assert_eq!(spec["sink"]["maxDeliveries"], 10);
    Ok(())
}
