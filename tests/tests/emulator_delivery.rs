//! The emulator's delivery semantics, seen by plain fe2o3-amqp consumers over TLS.

use std::{collections::HashSet, time::Duration};

use fe2o3_amqp::{
    Receiver,
    link::RecvError,
    types::{
        messaging::{AmqpValue, Body},
        primitives::{LazyValue, SimpleValue, Value},
    },
};
use iotsub_emulator::admin::{
    AcknowledgedIds, BodyType, ConnectionAttempts, GenerateTimeType, MessageIdType, MessageShape, PublishRequest, Stage,
};
use iotsub_tests::{
    Emulator,
    amqp_client::{ClientOptions, Received, consumer, idle_consumer, properties, property},
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
        let g = emulator.group_snapshot("DEFAULT_GROUP").await.ok()?;
        (g.counters.acknowledged == 1 && g.in_flight == 0).then_some(g)
    })
    .await?;
    assert_eq!(group.clients[0].client_id, "props");
    assert_eq!(group.clients[0].idle_timeout_ms, Some(60_000), "the idle-time-out the client advertised");
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
    let group = emulator.group_snapshot("DEFAULT_GROUP").await?;
    assert!(group.counters.timed_out >= 1, "{:?}", group.counters);
    assert!(group.counters.redelivered >= 1, "{:?}", group.counters);
    assert!(group.max_deliveries_per_message >= 2, "the one message was sent twice: {group:?}");
    Ok(())
}

#[tokio::test]
async fn messages_stack_while_nobody_listens_and_are_pushed_at_the_stacked_rate() -> anyhow::Result<()> {
    let emulator = Emulator::start("[limits]\nstacked_rate_per_group = 100\n").await?;
    let ids: HashSet<String> = emulator.publish("DEFAULT_GROUP", TOPIC, "x", 300).await?.into_iter().collect();
    let group = emulator.group_snapshot("DEFAULT_GROUP").await?;
    assert_eq!((group.backlog, group.stacked), (300, 300));

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
        let g = emulator.group_snapshot("DEFAULT_GROUP").await.ok()?;
        (g.backlog == 0 && g.counters.acknowledged == 300).then_some(())
    })
    .await
}

/// The emulator's ackLatency is timed on the wire (the transfer's frame written, the disposition's
/// frame read), which needs its frame walker to find both in the real TLS stream: every
/// acknowledgement, single or in a range, must have been matched by delivery tag.
#[tokio::test]
async fn every_acknowledgement_is_timed_on_the_wire() -> anyhow::Result<()> {
    let emulator = Emulator::start("").await?;
    let (_client, mut receiver) = consumer(&emulator, &ClientOptions::demo("wire-clock")).await?;
    emulator.publish("DEFAULT_GROUP", TOPIC, "x", 300).await?;
    receive_distinct(&mut receiver, 300).await?;
    let group = wait_until("300 acknowledgements", Duration::from_secs(10), || async {
        let g = emulator.group_snapshot("DEFAULT_GROUP").await.ok()?;
        (g.counters.acknowledged == 300).then_some(g)
    })
    .await?;
    let latency = group.ack_latency.expect("acknowledgements were timed");
    assert_eq!(latency.samples, 300);
    assert_eq!(latency.task_clocked, 0, "acknowledgements the wire clock did not see");
    Ok(())
}

#[tokio::test]
async fn a_groups_messages_spread_over_its_clients() -> anyhow::Result<()> {
    let emulator = Emulator::start("").await?;
    let mut clients = Vec::new();
    for i in 0..4 {
        clients.push(consumer(&emulator, &ClientOptions::demo(&format!("spread-{i}"))).await?);
    }
    wait_until("four attached clients", Duration::from_secs(5), || async {
        let g = emulator.group_snapshot("DEFAULT_GROUP").await.ok()?;
        (g.attached_clients() == 4).then_some(())
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
    use iotsub_aliyun::{
        consumer_group::{ConsumerGroupStatus, GatewayError},
        openapi,
    };
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
    let http = emulator.http_client();
    let status: ConsumerGroupStatus =
        http.get(query("demo-secret", uuid::Uuid::new_v4().to_string())).send().await?.error_for_status()?.json().await?;
    assert!(status.envelope.success);
    assert_eq!(status.accumulation_count, 7);
    assert_eq!(status.client_connection_status_list.clients.len(), 1);
    assert_eq!(status.client_connection_status_list.clients[0].client_id, "api-visible");
    assert!(status.client_connection_status_list.clients[0].client_ip_port.starts_with("127.0.0.1:"));

    let refused = http.get(query("not-the-secret", uuid::Uuid::new_v4().to_string())).send().await?;
    assert_eq!(refused.status(), 400);
    let text = refused.text().await?;
    assert!(!text.contains("demo-secret"), "{text}");
    let body: GatewayError = serde_json::from_str(&text)?;
    assert_eq!(body.code, "SignatureDoesNotMatch");
    assert!(body.message.contains("string to sign"), "{}", body.message);
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
    let refusals = emulator.refusals_typed().await?;
    let last = refusals.last().ok_or_else(|| anyhow::anyhow!("no refusal recorded"))?;
    assert_eq!((last.client_id.as_deref(), last.condition.as_str()), (Some("cap-2"), "amqp:resource-limit-exceeded"));

    drop(first);
    wait_until("a place under the cap", Duration::from_secs(5), || async {
        let g = emulator.group_snapshot("DEFAULT_GROUP").await.ok()?;
        (g.clients.len() == 1).then_some(())
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
    assert_eq!(emulator.traffic("DEFAULT_GROUP", 200, 5, 1).await?, 200);
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
    let http = emulator.http_client();
    let list: ConsumerGroupList = http
        .get(call("QueryConsumerGroupList", &[("IotInstanceId", "iot-1"), ("PageSize", "2"), ("CurrentPage", "2")]))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!((list.total, list.page_count), (3, 2));
    assert_eq!(list.data.groups.iter().map(|g| g.group_id.as_str()).collect::<Vec<_>>(), ["telemetry"]);

    let admin_list: Vec<_> = emulator.groups().await?.into_iter().map(|g| (g.key.instance_id, g.key.consumer_group_id)).collect();
    assert_eq!(admin_list, [("iot-1".into(), "billing".into()), ("iot-1".into(), "orders".into()), ("iot-1".into(), "telemetry".into())]);
    emulator.publish_request(&PublishRequest { instance_id: "iot-1".into(), ..PublishRequest::new("orders", TOPIC, "x", 25) }).await?;
    assert_eq!(emulator.group_in("iot-1", "orders").await?.backlog, 25);
    let reset: ActionResult =
        http.get(call("ResetConsumerGroupPosition", &[("IotInstanceId", "iot-1"), ("GroupId", "orders")])).send().await?.json().await?;
    assert!(reset.success);
    assert_eq!(emulator.group_in("iot-1", "orders").await?.backlog, 0);
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
        let g = emulator.group_snapshot("DEFAULT_GROUP").await.ok()?;
        (g.backlog == 0 && g.counters.acknowledged == 50 && g.in_flight == 0).then_some(())
    })
    .await
}

// --- other message shapes (for the worker's tests of what the platform may send) -----------------

fn shape(message_id: MessageIdType, generate_time: GenerateTimeType, body: BodyType) -> MessageShape {
    MessageShape { message_id, generate_time, body, undecodable: false }
}

#[tokio::test]
async fn each_message_id_type_arrives_in_its_amqp_type_and_the_reply_names_it_canonically() -> anyhow::Result<()> {
    let emulator = Emulator::start("").await?;
    let (_client, mut receiver) = consumer(&emulator, &ClientOptions::demo("ids")).await?;
    for kind in [MessageIdType::String, MessageIdType::Ulong, MessageIdType::Uuid, MessageIdType::Binary, MessageIdType::Absent] {
        let ids = emulator.publish_shaped("DEFAULT_GROUP", TOPIC, "x", 1, shape(kind, GenerateTimeType::Long, BodyType::Data)).await?;
        let delivery = recv(&mut receiver).await?;
        let arrived = property(&delivery, "messageId");
        let canonical = match (kind, &arrived) {
            (MessageIdType::String, Some(SimpleValue::String(s))) => Some(s.clone()),
            (MessageIdType::Ulong, Some(SimpleValue::Ulong(n))) => Some(n.to_string()),
            (MessageIdType::Uuid, Some(SimpleValue::Uuid(u))) => Some(uuid::Uuid::from_bytes(*u.as_inner()).hyphenated().to_string()),
            (MessageIdType::Binary, Some(SimpleValue::Binary(b))) => Some(b.iter().map(|x| format!("{x:02x}")).collect()),
            (MessageIdType::Absent, None) => None,
            _ => anyhow::bail!("a {kind:?} messageId arrived as {arrived:?}"),
        };
        assert_eq!(ids, std::slice::from_ref(&canonical), "the reply names the {kind:?} id as a consumer carries it");
        if let Some(id) = canonical {
            assert!(!id.is_empty() && id.chars().all(|c| !c.is_ascii_uppercase()), "{id}");
        }
        assert!(matches!(property(&delivery, "generateTime"), Some(SimpleValue::Long(_))));
        receiver.accept(&delivery).await?;
    }
    Ok(())
}

#[tokio::test]
async fn generate_time_may_be_a_string_or_absent() -> anyhow::Result<()> {
    let emulator = Emulator::start("").await?;
    let (_client, mut receiver) = consumer(&emulator, &ClientOptions::demo("times")).await?;
    let before = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    emulator.publish_shaped("DEFAULT_GROUP", TOPIC, "x", 1, shape(MessageIdType::String, GenerateTimeType::String, BodyType::Data)).await?;
    let delivery = recv(&mut receiver).await?;
    match property(&delivery, "generateTime") {
        Some(SimpleValue::String(ms)) => assert!(ms.parse::<i64>()? >= before - 1000, "epoch ms as a string: {ms}"),
        other => anyhow::bail!("generateTime arrived as {other:?}, expected an AMQP string"),
    }
    receiver.accept(&delivery).await?;

    emulator.publish_shaped("DEFAULT_GROUP", TOPIC, "x", 1, shape(MessageIdType::String, GenerateTimeType::Absent, BodyType::Data)).await?;
    let delivery = recv(&mut receiver).await?;
    assert_eq!(property(&delivery, "generateTime"), None);
    assert!(matches!(property(&delivery, "messageId"), Some(SimpleValue::String(_))));
    receiver.accept(&delivery).await?;
    Ok(())
}

#[tokio::test]
async fn an_amqp_value_body_is_the_json_payload_as_amqp_values() -> anyhow::Result<()> {
    let emulator = Emulator::start("").await?;
    let (_client, mut receiver) = consumer(&emulator, &ClientOptions::demo("values")).await?;
    let payload = r#"{"a": 1, "b": [true, null, "x", 1.5], "c": {"d": -2}}"#;
    emulator
        .publish_shaped("DEFAULT_GROUP", TOPIC, payload, 1, shape(MessageIdType::String, GenerateTimeType::Long, BodyType::AmqpValue))
        .await?;
    let delivery = recv(&mut receiver).await?;
    let Body::Value(AmqpValue(Value::Map(map))) = &delivery.message().body else {
        anyhow::bail!("body is {:?}, expected one amqp-value section holding a map", delivery.message().body);
    };
    let get = |key: &str| map.get(&Value::String(key.into())).cloned();
    assert_eq!(get("a"), Some(Value::Long(1)));
    assert_eq!(get("b"), Some(Value::List(vec![Value::Bool(true), Value::Null, Value::String("x".into()), Value::from(1.5)])));
    let Some(Value::Map(c)) = get("c") else { anyhow::bail!("c is not a map: {map:?}") };
    assert_eq!(c.get(&Value::String("d".into())), Some(&Value::Long(-2)));
    receiver.accept(&delivery).await?;

    emulator
        .publish_shaped("DEFAULT_GROUP", TOPIC, r#""plain""#, 1, shape(MessageIdType::String, GenerateTimeType::Long, BodyType::AmqpValue))
        .await?;
    let delivery = recv(&mut receiver).await?;
    assert!(matches!(&delivery.message().body, Body::Value(AmqpValue(Value::String(s))) if s == "plain"), "{:?}", delivery.message().body);
    receiver.accept(&delivery).await?;
    Ok(())
}

#[tokio::test]
async fn an_amqp_sequence_body_carries_the_json_arrays_items() -> anyhow::Result<()> {
    let emulator = Emulator::start("").await?;
    let (_client, mut receiver) = consumer(&emulator, &ClientOptions::demo("sequences")).await?;
    let sequence = shape(MessageIdType::String, GenerateTimeType::Long, BodyType::AmqpSequence);
    emulator.publish_shaped("DEFAULT_GROUP", TOPIC, r#"[1, "two", {"three": 3}]"#, 1, sequence).await?;
    let delivery = recv(&mut receiver).await?;
    let Body::Sequence(batch) = &delivery.message().body else {
        anyhow::bail!("body is {:?}, expected an amqp-sequence section", delivery.message().body);
    };
    assert_eq!(batch.len(), 1, "one section");
    assert_eq!(batch[0].0[..2], [Value::Long(1), Value::String("two".into())]);
    assert!(matches!(&batch[0].0[2], Value::Map(m) if m.get(&Value::String("three".into())) == Some(&Value::Long(3))));
    receiver.accept(&delivery).await?;

    let refused = emulator.publish_shaped("DEFAULT_GROUP", TOPIC, r#"{"not": "an array"}"#, 1, sequence).await.expect_err("400");
    assert!(refused.to_string().contains("needs a JSON array"), "{refused}");
    Ok(())
}

#[tokio::test]
async fn an_undecodable_message_fails_to_decode_yet_its_properties_and_raw_body_can_be_read() -> anyhow::Result<()> {
    let emulator = Emulator::start("[limits]\nstacked_retry_after_ms = 0\n").await?;
    let (_client, mut receiver) = consumer(&emulator, &ClientOptions::demo("garbled")).await?;
    let garbled = MessageShape { undecodable: true, ..MessageShape::default() };
    let ids = emulator.publish_shaped("DEFAULT_GROUP", TOPIC, "x", 1, garbled).await?;

    let error = match timeout(Duration::from_secs(10), receiver.recv::<Body<Value>>()).await? {
        Err(RecvError::MessageDecode(error)) => error,
        other => anyhow::bail!("expected a decode error, got {other:?}"),
    };
    assert!(error.to_string().to_lowercase().contains("format code"), "{error}");
    // The link stays usable: the delivery is settled like any other, and comes back.
    receiver.release(error.info).await?;
    let raw = timeout(Duration::from_secs(10), receiver.recv::<Body<LazyValue>>()).await??;
    assert_eq!(property(&raw, "messageId"), ids[0].clone().map(SimpleValue::String), "the properties before the body decode");
    let Body::Value(AmqpValue(bytes)) = &raw.message().body else { anyhow::bail!("not an amqp-value section: {:?}", raw.message().body) };
    assert_eq!(bytes.as_slice()[..2], [0xc0, 0x03], "a list8 of 3 bytes");
    assert!(bytes.as_slice().contains(&0xff), "holding format codes AMQP does not define: {bytes:?}");
    receiver.accept(&raw).await?;
    wait_until("one release and one acknowledgement", Duration::from_secs(5), || async {
        let c = emulator.group_snapshot("DEFAULT_GROUP").await.ok()?.counters;
        (c.refused_by_client == 1 && c.acknowledged == 1).then_some(())
    })
    .await
}

#[tokio::test]
async fn an_oversized_message_is_sent_whole_whatever_the_link_advertises() -> anyhow::Result<()> {
    let emulator = Emulator::start("").await?;
    let size = 2 * 1024 * 1024;
    let (client, mut receiver) = consumer(&emulator, &ClientOptions::demo("big")).await?;
    let ids = emulator
        .publish_request(&PublishRequest { payload_size: Some(size), ..PublishRequest::new("DEFAULT_GROUP", TOPIC, "0123456789", 1) })
        .await?;
    let got = properties(&recv(&mut receiver).await?)?;
    assert_eq!(Some(got.message_id), ids[0].clone());
    assert_eq!(got.payload.len(), size);
    assert!(got.payload.starts_with(b"01234567890123"));
    drop((client, receiver));

    // A client that advertises 1 MiB is still sent the 2 MiB message: its own link must refuse it.
    let mut options = ClientOptions::demo("guarded");
    options.max_message_size = Some(1024 * 1024);
    let (_guarded, mut guarded) = consumer(&emulator, &options).await?;
    let group = wait_until("the guarded client attached", Duration::from_secs(5), || async {
        let g = emulator.group_snapshot("DEFAULT_GROUP").await.ok()?;
        (g.clients.len() == 1 && g.clients[0].client_id == "guarded" && g.clients[0].attached).then_some(g)
    })
    .await?;
    assert_eq!(group.clients[0].max_message_size, Some(1024 * 1024), "the advertised size is shown");
    emulator.publish_request(&PublishRequest { payload_size: Some(size), ..PublishRequest::new("DEFAULT_GROUP", TOPIC, "x", 1) }).await?;
    let refused = timeout(Duration::from_secs(10), guarded.recv::<Body<Value>>()).await?;
    // fe2o3 detaches its link with message-size-exceeded: the message did reach it.
    let refused = format!("{:?}", refused.map(|d| d.message().body.clone()));
    assert!(refused.contains("MessageSizeExceeded"), "{refused}");
    Ok(())
}

// --- connection attempts (the platform allows 100 a minute per group) ----------------------------

#[tokio::test]
async fn every_login_attempt_naming_a_group_is_counted_refused_or_not() -> anyhow::Result<()> {
    let emulator = Emulator::start("[limits]\nconnection_attempts_per_minute = 3\n").await?;
    assert_eq!(emulator.group_snapshot("DEFAULT_GROUP").await?.connection_attempts, ConnectionAttempts { total: 0, last_minute: 0 });
    let _first = consumer(&emulator, &ClientOptions::demo("attempt-1")).await?;
    let mut wrong = ClientOptions::demo("attempt-2");
    wrong.key.secret = "not-the-secret".to_string().into();
    assert!(consumer(&emulator, &wrong).await.is_err(), "a wrong secret is refused at SASL");
    let _third = consumer(&emulator, &ClientOptions::demo("attempt-3")).await?;
    // The fourth in a minute is over the limit of 3: refused, and counted all the same.
    let over = match consumer(&emulator, &ClientOptions::demo("attempt-4")).await {
        Ok((mut client, _receiver)) => format!("{:?}", timeout(Duration::from_secs(5), client.connection.on_close()).await?),
        Err(e) => format!("{e:?}"),
    };
    assert!(over.contains("too many connection attempts"), "{over}");
    let mut other_group = ClientOptions::demo("elsewhere");
    other_group.consumer_group_id = "NO_SUCH_GROUP".into();
    assert!(consumer(&emulator, &other_group).await.is_err());

    let attempts = emulator.group_snapshot("DEFAULT_GROUP").await?.connection_attempts;
    assert_eq!(attempts, ConnectionAttempts { total: 4, last_minute: 4 }, "the unknown group's attempt is not this group's");
    let stages: Vec<_> = emulator.refusals_typed().await?.into_iter().map(|r| (r.client_id.unwrap_or_default(), r.stage)).collect();
    assert!(stages.contains(&("attempt-2".into(), Stage::Sasl)) && stages.contains(&("attempt-4".into(), Stage::Open)), "{stages:?}");
    Ok(())
}

#[tokio::test]
async fn with_acknowledged_ids_recorded_only_accepted_messages_are_listed_in_order() -> anyhow::Result<()> {
    let emulator = Emulator::start("[limits]\nrecord_acknowledged_ids = true\nstacked_retry_after_ms = 0\n").await?;
    let (_client, mut receiver) = consumer(&emulator, &ClientOptions::demo("lister")).await?;
    let ids = emulator.publish("DEFAULT_GROUP", TOPIC, "x", 2).await?;
    let first = recv(&mut receiver).await?;
    receiver.release(&first).await?;
    // Released: not acknowledged, so not listed; it comes back and is accepted with the other.
    let mut accepted = Vec::new();
    while accepted.len() < 2 {
        let delivery = recv(&mut receiver).await?;
        accepted.push(properties(&delivery)?.message_id);
        receiver.accept(&delivery).await?;
    }
    wait_until("both acknowledgements counted", Duration::from_secs(5), || async {
        let group = emulator.group_snapshot("DEFAULT_GROUP").await.ok()?;
        (group.counters.acknowledged == 2 && group.in_flight == 0).then_some(())
    })
    .await?;
    let listed: AcknowledgedIds = emulator.get_json("/admin/consumer-groups/DEFAULT_GROUP/acknowledged-ids").await?;
    assert_eq!((listed.ids.as_slice(), listed.total), (accepted.as_slice(), 2), "the release is not listed");
    let mut sorted = listed.ids.clone();
    sorted.sort();
    let mut published = ids.clone();
    published.sort();
    assert_eq!(sorted, published);
    let second_page: AcknowledgedIds = emulator.get_json("/admin/consumer-groups/DEFAULT_GROUP/acknowledged-ids?from=1&limit=5").await?;
    assert_eq!((second_page.from, second_page.ids.as_slice(), second_page.total), (1, &accepted[1..], 2));
    Ok(())
}

#[tokio::test]
async fn acknowledged_ids_not_recorded_are_refused_naming_the_setting() -> anyhow::Result<()> {
    let emulator = Emulator::start("").await?;
    let response = emulator.http_client().get(emulator.api_url("/admin/consumer-groups/DEFAULT_GROUP/acknowledged-ids")).send().await?;
    assert_eq!(response.status().as_u16(), 409);
    assert!(response.text().await?.contains("record_acknowledged_ids = true"));
    Ok(())
}
