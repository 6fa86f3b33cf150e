//! The emulator's delivery semantics, seen by plain fe2o3-amqp consumers over TLS.

use std::{collections::HashSet, time::Duration};

use fe2o3_amqp::{
    Receiver,
    types::{messaging::Body, primitives::Value},
};
use iotsub_tests::{
    Emulator,
    amqp_client::{ClientOptions, Received, consumer, idle_consumer, properties},
    wait_until,
};
use tokio::time::timeout;

type Delivery = fe2o3_amqp::link::delivery::Delivery<Body<Value>>;

async fn recv(receiver: &mut Receiver) -> anyhow::Result<Delivery> {
    Ok(timeout(Duration::from_secs(10), receiver.recv::<Body<Value>>()).await??)
}

/// Receives and accepts until `n` distinct messageIds arrived; returns them.
async fn receive_distinct(receiver: &mut Receiver, n: usize) -> anyhow::Result<HashSet<String>> {
    let mut seen = HashSet::new();
    while seen.len() < n {
        let delivery = recv(receiver).await?;
        seen.insert(properties(&delivery)?.message_id);
        receiver.accept(&delivery).await?;
    }
    Ok(seen)
}

const TOPIC: &str = "/a1demo/dev1/thing/event/property/post";

#[tokio::test]
async fn a_message_arrives_as_the_platforms_samples_read_it() -> anyhow::Result<()> {
    let emulator = Emulator::start("").await?;
    let (_client, mut receiver) = consumer(&emulator, &ClientOptions::demo("props")).await?;
    let before = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let ids = emulator.publish("DEFAULT_GROUP", TOPIC, r#"{"items":{"Power":{"value":"on"}}}"#, 1).await?;
    let delivery = recv(&mut receiver).await?;
    let got: Received = properties(&delivery)?;
    assert_eq!(got.message_id, ids[0]);
    assert_eq!(got.topic, TOPIC);
    assert_eq!(got.payload, br#"{"items":{"Power":{"value":"on"}}}"#);
    assert!(got.generate_time >= before - 1000, "generateTime {} is epoch ms", got.generate_time);
    receiver.accept(&delivery).await?;
    let group = wait_until("the acknowledgement to register", Duration::from_secs(5), || async {
        let g = emulator.group("DEFAULT_GROUP").await.ok()?;
        (g["acknowledged"] == 1 && g["inFlight"] == 0).then_some(g)
    })
    .await?;
    assert_eq!(group["clients"][0]["clientId"], "props");
    assert_eq!(group["clients"][0]["idleTimeoutMs"], 60_000, "the idle-time-out the client advertised");
    Ok(())
}

#[tokio::test]
async fn an_unacknowledged_message_is_redelivered_with_the_same_message_id() -> anyhow::Result<()> {
    let emulator = Emulator::start("[limits]\nack_timeout_ms = 400\nstacked_retry_after_ms = 0\n").await?;
    let (_client, mut receiver) = consumer(&emulator, &ClientOptions::demo("slow")).await?;
    let ids = emulator.publish("DEFAULT_GROUP", TOPIC, "x", 1).await?;
    let first = recv(&mut receiver).await?;
    assert_eq!(properties(&first)?.message_id, ids[0]);
    // Not acknowledged: after the ack timeout the platform pushes it again.
    let second = recv(&mut receiver).await?;
    assert_eq!(properties(&second)?.message_id, ids[0]);
    receiver.accept(&second).await?;
    let group = emulator.group("DEFAULT_GROUP").await?;
    assert!(group["timedOut"].as_u64() >= Some(1), "{group}");
    assert!(group["redelivered"].as_u64() >= Some(1), "{group}");
    Ok(())
}

#[tokio::test]
async fn messages_stack_while_nobody_listens_and_are_pushed_at_the_stacked_rate() -> anyhow::Result<()> {
    let emulator = Emulator::start("[limits]\nstacked_rate_per_group = 100\n").await?;
    let ids: HashSet<String> = emulator.publish("DEFAULT_GROUP", TOPIC, "x", 300).await?.into_iter().collect();
    let group = emulator.group("DEFAULT_GROUP").await?;
    assert_eq!((group["backlog"].as_u64(), group["stacked"].as_u64()), (Some(300), Some(300)));

    let (_client, mut receiver) = consumer(&emulator, &ClientOptions::demo("late")).await?;
    let started = tokio::time::Instant::now();
    let mut seen = HashSet::new();
    // In the first second at most one second's burst plus one second's rate can arrive.
    while started.elapsed() < Duration::from_millis(1000) {
        let Ok(delivery) = timeout(Duration::from_millis(50), receiver.recv::<Body<Value>>()).await else { continue };
        let delivery = delivery?;
        seen.insert(properties(&delivery)?.message_id);
        receiver.accept(&delivery).await?;
    }
    assert!(seen.len() <= 220, "{} stacked messages in the first second at 100/s", seen.len());
    let rest = receive_distinct(&mut receiver, 300 - seen.len()).await?;
    seen.extend(rest);
    assert_eq!(seen, ids);
    wait_until("the backlog to drain", Duration::from_secs(5), || async {
        let g = emulator.group("DEFAULT_GROUP").await.ok()?;
        (g["backlog"] == 0 && g["acknowledged"] == 300).then_some(())
    })
    .await
}

#[tokio::test]
async fn a_groups_messages_spread_over_its_clients() -> anyhow::Result<()> {
    let emulator = Emulator::start("").await?;
    let mut clients = Vec::new();
    for i in 0..4 {
        clients.push(consumer(&emulator, &ClientOptions::demo(&format!("spread-{i}"))).await?);
    }
    wait_until("four attached clients", Duration::from_secs(5), || async {
        let g = emulator.group("DEFAULT_GROUP").await.ok()?;
        (g["clients"].as_array()?.iter().filter(|c| c["attached"] == true).count() == 4).then_some(())
    })
    .await?;
    let published: HashSet<String> = emulator.publish("DEFAULT_GROUP", TOPIC, "x", 400).await?.into_iter().collect();
    // Each client receives until all 400 were acknowledged by someone (or a generous deadline).
    let total = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (client, mut receiver) in clients {
        let total = total.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while total.load(std::sync::atomic::Ordering::SeqCst) < 400 && tokio::time::Instant::now() < deadline {
                let Ok(Ok(delivery)) = timeout(Duration::from_millis(200), receiver.recv::<Body<Value>>()).await else { continue };
                got.push(properties(&delivery).unwrap().message_id);
                receiver.accept(&delivery).await.unwrap();
                total.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            drop(client);
            got
        }));
    }
    let mut union = HashSet::new();
    for task in tasks {
        let got = task.await?;
        // 100 each on average; a client with hardly any means the group is not spread.
        assert!(got.len() >= 20, "a client got only {} of 400: not spread over the clients", got.len());
        union.extend(got);
    }
    assert_eq!(union, published);
    Ok(())
}

#[tokio::test]
async fn deliveries_cut_off_by_a_disconnect_go_to_another_client() -> anyhow::Result<()> {
    let emulator = Emulator::start("").await?;
    let (first, mut first_receiver) = consumer(&emulator, &ClientOptions::demo("gone")).await?;
    let ids: HashSet<String> = emulator.publish("DEFAULT_GROUP", TOPIC, "x", 50).await?.into_iter().collect();
    // Take some deliveries, acknowledge none, and vanish.
    for _ in 0..10 {
        recv(&mut first_receiver).await?;
    }
    drop(first_receiver);
    drop(first);
    let (_second, mut receiver) = consumer(&emulator, &ClientOptions::demo("heir")).await?;
    let seen = receive_distinct(&mut receiver, ids.len()).await?;
    assert_eq!(seen, ids);
    Ok(())
}

#[tokio::test]
async fn drop_connections_fault_closes_every_client_with_a_reason() -> anyhow::Result<()> {
    let emulator = Emulator::start("").await?;
    let (mut client, _receiver) = consumer(&emulator, &ClientOptions::demo("victim")).await?;
    emulator.fault("drop-connections", "DEFAULT_GROUP").await?;
    let closed = timeout(Duration::from_secs(10), client.connection.on_close()).await?;
    let error = format!("{closed:?}");
    assert!(error.contains("drop-connections"), "{error}");
    Ok(())
}

#[tokio::test]
async fn the_openapi_reports_backlog_and_clients_with_a_verified_signature() -> anyhow::Result<()> {
    use iotsub_aliyun::{consumer_group::ConsumerGroupStatus, openapi};
    let emulator = Emulator::start("").await?;
    let (_client, _receiver) = consumer(&emulator, &ClientOptions::demo("api-visible")).await?;
    emulator.fault("pause-delivery", "DEFAULT_GROUP").await?;
    emulator.publish("DEFAULT_GROUP", TOPIC, "x", 7).await?;
    let query = |secret: &'static str, nonce: String| {
        let mut params = openapi::common_params("QueryConsumerGroupStatus", "demo", "cn-shanghai", &nonce, time::OffsetDateTime::now_utc());
        params.insert("GroupId".into(), "DEFAULT_GROUP".into());
        params.insert("IotInstanceId".into(), "".into());
        format!("{}/?{}", emulator.api_url(""), openapi::signed_query(&params, secret))
    };
    let http = reqwest::Client::new();
    let status: ConsumerGroupStatus =
        http.get(query("demo-secret", uuid::Uuid::new_v4().to_string())).send().await?.error_for_status()?.json().await?;
    assert!(status.envelope.success);
    assert_eq!(status.accumulation_count, 7);
    assert_eq!(status.client_connection_status_list.clients.len(), 1);
    assert_eq!(status.client_connection_status_list.clients[0].client_id, "api-visible");
    assert!(status.client_connection_status_list.clients[0].client_ip_port.starts_with("127.0.0.1:"));

    let refused = http.get(query("not-the-secret", uuid::Uuid::new_v4().to_string())).send().await?;
    assert_eq!(refused.status(), 400);
    let body: serde_json::Value = refused.json().await?;
    assert_eq!(body["Code"], "SignatureDoesNotMatch");
    assert!(body["Message"].as_str().unwrap().contains("string to sign"));
    assert!(!body.to_string().contains("demo-secret"));
    Ok(())
}

#[tokio::test]
async fn the_client_cap_refuses_one_client_too_many_and_frees_a_place_when_one_leaves() -> anyhow::Result<()> {
    let emulator = Emulator::start("[limits]\nclient_cap_per_group = 2\n").await?;
    let first = consumer(&emulator, &ClientOptions::demo("cap-0")).await?;
    let _second = consumer(&emulator, &ClientOptions::demo("cap-1")).await?;
    let refused = match consumer(&emulator, &ClientOptions::demo("cap-2")).await {
        Ok((mut client, _receiver)) => format!("{:?}", timeout(Duration::from_secs(5), client.connection.on_close()).await?),
        Err(e) => format!("{e:?}"),
    };
    assert!(refused.contains("already has 2 clients"), "the third client was not refused for the cap: {refused}");
    let refusals: serde_json::Value = reqwest::get(emulator.api_url("/admin/refusals")).await?.json().await?;
    let last = refusals.as_array().and_then(|r| r.last()).cloned().unwrap_or_default();
    assert_eq!((last["clientId"].as_str(), last["condition"].as_str()), (Some("cap-2"), Some("amqp:resource-limit-exceeded")));

    drop(first);
    wait_until("a place under the cap", Duration::from_secs(5), || async {
        let g = emulator.group("DEFAULT_GROUP").await.ok()?;
        (g["clients"].as_array()?.len() == 1).then_some(())
    })
    .await?;
    let (_third, mut receiver) = consumer(&emulator, &ClientOptions::demo("cap-2")).await?;
    emulator.publish("DEFAULT_GROUP", TOPIC, "x", 20).await?;
    recv(&mut receiver).await?;
    Ok(())
}

#[tokio::test]
async fn the_traffic_generator_publishes_device_messages_at_its_rate() -> anyhow::Result<()> {
    let emulator = Emulator::start("").await?;
    let (_client, mut receiver) = consumer(&emulator, &ClientOptions::demo("fleet")).await?;
    let reply = emulator
        .post("/admin/traffic", serde_json::json!({"consumerGroupId": "DEFAULT_GROUP", "ratePerSecond": 200, "devices": 5, "seconds": 1}))
        .await?;
    assert_eq!(reply["messages"], 200);
    let mut devices = HashSet::new();
    for _ in 0..200 {
        let delivery = recv(&mut receiver).await?;
        let got = properties(&delivery)?;
        let body: serde_json::Value = serde_json::from_slice(&got.payload)?;
        let device = body["deviceName"].as_str().unwrap_or_default().to_owned();
        assert!(got.topic.contains(&device), "topic {} names the device {device}", got.topic);
        assert!(got.topic.ends_with("/thing/event/property/post") || got.topic.starts_with("/as/mqtt/status/"), "{}", got.topic);
        devices.insert(device);
        receiver.accept(&delivery).await?;
    }
    assert_eq!(devices.len(), 5);
    let extra = timeout(Duration::from_millis(500), receiver.recv::<Body<Value>>()).await;
    assert!(extra.is_err(), "more than ratePerSecond × seconds messages");
    Ok(())
}

#[tokio::test]
async fn reset_purges_the_stacked_queue_and_the_list_names_the_groups() -> anyhow::Result<()> {
    use iotsub_aliyun::{
        consumer_group::{ActionResult, ConsumerGroupList},
        openapi,
    };
    let emulator = Emulator::start("[[instances]]\nid = \"iot-1\"\nconsumer_groups = [\"orders\", \"telemetry\", \"billing\"]\n").await?;
    let call = |action: &str, extra: &[(&str, &str)]| {
        let mut params =
            openapi::common_params(action, "demo", "cn-shanghai", &uuid::Uuid::new_v4().to_string(), time::OffsetDateTime::now_utc());
        for (k, v) in extra {
            params.insert((*k).into(), (*v).into());
        }
        format!("{}/?{}", emulator.api_url(""), openapi::signed_query(&params, "demo-secret"))
    };
    let http = reqwest::Client::new();
    let list: ConsumerGroupList = http
        .get(call("QueryConsumerGroupList", &[("IotInstanceId", "iot-1"), ("PageSize", "2"), ("CurrentPage", "2")]))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!((list.total, list.page_count), (3, 2));
    assert_eq!(list.data.groups.iter().map(|g| g.group_id.as_str()).collect::<Vec<_>>(), ["telemetry"]);

    let body = serde_json::json!({"instanceId": "iot-1", "consumerGroupId": "orders", "topic": TOPIC, "payload": "x", "count": 25});
    emulator.post("/admin/messages", body).await?;
    let backlog = |emulator: &Emulator| {
        let url = emulator.api_url("/admin/consumer-groups/orders?instanceId=iot-1");
        async move { anyhow::Ok(reqwest::get(url).await?.json::<serde_json::Value>().await?["backlog"].as_u64()) }
    };
    assert_eq!(backlog(&emulator).await?, Some(25));
    let reset: ActionResult =
        http.get(call("ResetConsumerGroupPosition", &[("IotInstanceId", "iot-1"), ("GroupId", "orders")])).send().await?.json().await?;
    assert!(reset.success);
    assert_eq!(backlog(&emulator).await?, Some(0));
    Ok(())
}

/// Qpid JMS (the platform's Java sample) begins a session of its own first and attaches its
/// consumer in a second one.
#[tokio::test]
async fn the_receiver_link_may_come_on_a_later_session() -> anyhow::Result<()> {
    let emulator = Emulator::start("").await?;
    let mut client = iotsub_tests::amqp_client::open(&emulator, &ClientOptions::demo("jms-like")).await?;
    let mut second = fe2o3_amqp::Session::begin(&mut client.connection).await?;
    let mut receiver = Receiver::attach(&mut second, "consumer", "default").await?;
    let ids = emulator.publish("DEFAULT_GROUP", TOPIC, "x", 3).await?;
    let seen = receive_distinct(&mut receiver, 3).await?;
    assert_eq!(seen, ids.into_iter().collect());
    Ok(())
}

#[tokio::test]
async fn a_client_that_grants_no_credit_holds_back_no_message() -> anyhow::Result<()> {
    let emulator = Emulator::start("").await?;
    let mut idle = Vec::new();
    for i in 0..3 {
        idle.push(idle_consumer(&emulator, &ClientOptions::demo(&format!("idle-{i}"))).await?);
    }
    let (_client, mut receiver) = consumer(&emulator, &ClientOptions::demo("busy")).await?;
    let ids: HashSet<String> = emulator.publish("DEFAULT_GROUP", TOPIC, "x", 50).await?.into_iter().collect();
    // Each idle client is offered messages it can't take; they must come back to the busy one.
    let seen = timeout(Duration::from_secs(30), receive_distinct(&mut receiver, 50)).await??;
    assert_eq!(seen, ids);
    wait_until("50 acknowledged, nothing left", Duration::from_secs(10), || async {
        let g = emulator.group("DEFAULT_GROUP").await.ok()?;
        (g["backlog"] == 0 && g["acknowledged"] == 50 && g["inFlight"] == 0).then_some(())
    })
    .await
}
