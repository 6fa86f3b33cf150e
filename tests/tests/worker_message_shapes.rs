//! Messages not of the platform's shape, published through the emulator's admin API: every id type
//! carried as a string, generateTime kept, amqp-value and amqp-sequence bodies as JSON, an
//! undecodable body and an oversized message as dead letters, and the link stays up throughout.

use std::time::Duration;

use iotsub_emulator::admin::{BodyType, GenerateTimeType, MessageIdType, MessageShape, PublishRequest};
use iotsub_tests::{
    http_receiver::HttpReceiver,
    worker::{Fixture, GROUP, TOPIC},
};

fn shape(message_id: MessageIdType, generate_time: GenerateTimeType, body: BodyType) -> MessageShape {
    MessageShape { message_id, generate_time, body, undecodable: false }
}

#[tokio::test]
async fn every_message_id_type_reaches_the_sink_as_its_canonical_string() -> anyhow::Result<()> {
    let sink = HttpReceiver::start().await?;
    let fx = Fixture::start("", "ids", |o| o.http_sink(&sink.url)).await?;
    let mut expected = Vec::new();
    for id_type in [MessageIdType::String, MessageIdType::Ulong, MessageIdType::Uuid, MessageIdType::Binary] {
        let ids = fx.emulator.publish_shaped(GROUP, TOPIC, "{\"a\":1}", 2, shape(id_type, GenerateTimeType::Long, BodyType::Data)).await?;
        expected.extend(ids.into_iter().map(|id| id.expect("an id")));
    }
    fx.wait_group("8 acknowledgements", Duration::from_secs(15), |g| g.counters.acknowledged == 8).await?;
    let accepted = sink.accepted_ids();
    for id in &expected {
        assert!(accepted.contains(id), "{id} not delivered as its canonical string; got {accepted:?}");
    }
    assert!(expected.iter().any(|id| id.len() == 36 && id.matches('-').count() == 4), "a uuid among {expected:?}");
    Ok(())
}

#[tokio::test]
async fn an_absent_message_id_becomes_the_delivery_tag_never_empty() -> anyhow::Result<()> {
    let fx = Fixture::start("", "abs", |o| o).await?;
    let ids =
        fx.emulator.publish_shaped(GROUP, TOPIC, "{}", 3, shape(MessageIdType::Absent, GenerateTimeType::Absent, BodyType::Data)).await?;
    assert!(ids.iter().all(Option::is_none));
    fx.wait_group("3 acknowledgements", Duration::from_secs(15), |g| g.counters.acknowledged == 3).await?;
    let lines = fx.worker.lines();
    assert_eq!(lines.len(), 3);
    let ids: std::collections::HashSet<&str> = lines.iter().filter_map(|l| l["messageId"].as_str()).collect();
    assert_eq!(ids.len(), 3, "three distinct stand-in ids: {lines:?}");
    assert!(ids.iter().all(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit())), "{ids:?}");
    assert!(lines.iter().all(|l| l["generateTime"].is_null()));
    Ok(())
}

#[tokio::test]
async fn amqp_value_and_sequence_bodies_reach_the_sink_as_json_and_a_string_generate_time_is_kept() -> anyhow::Result<()> {
    let sink = HttpReceiver::start().await?;
    let fx = Fixture::start("", "val", |o| o.http_sink(&sink.url)).await?;
    let map = fx
        .emulator
        .publish_shaped(
            GROUP,
            TOPIC,
            r#"{"a":1,"b":[true,"x"]}"#,
            1,
            shape(MessageIdType::String, GenerateTimeType::String, BodyType::AmqpValue),
        )
        .await?;
    let seq = fx
        .emulator
        .publish_shaped(
            GROUP,
            TOPIC,
            r#"[1,"two",{"k":null}]"#,
            1,
            shape(MessageIdType::String, GenerateTimeType::Long, BodyType::AmqpSequence),
        )
        .await?;
    fx.wait_group("2 acknowledgements", Duration::from_secs(15), |g| g.counters.acknowledged == 2).await?;
    let map_request = &sink.requests_for(map[0].as_deref().unwrap())[0];
    let body: serde_json::Value = serde_json::from_slice(&map_request.body)?;
    assert_eq!(body, serde_json::json!({"a": 1, "b": [true, "x"]}));
    assert_eq!(map_request.headers["content-type"], "application/json");
    // generateTime sent as a string of milliseconds: still a time.
    assert!(map_request.headers.contains_key("ce-time"), "{:?}", map_request.headers);
    let seq_request = &sink.requests_for(seq[0].as_deref().unwrap())[0];
    let body: serde_json::Value = serde_json::from_slice(&seq_request.body)?;
    assert_eq!(body, serde_json::json!([1, "two", {"k": null}]));
    Ok(())
}

#[tokio::test]
async fn an_undecodable_body_and_an_oversized_message_become_dead_letters_and_the_link_stays_up() -> anyhow::Result<()> {
    let fx = Fixture::start("", "bad", |o| o.arg("--max-message-bytes", 1_000)).await?;
    let undecodable = MessageShape { undecodable: true, ..MessageShape::default() };
    let bad = fx.emulator.publish_shaped(GROUP, TOPIC, "{}", 2, undecodable).await?;
    let big =
        fx.emulator.publish_request(&PublishRequest { payload_size: Some(5_000), ..PublishRequest::new(GROUP, TOPIC, "big", 1) }).await?;
    let good = fx.publish("{\"ok\":1}", 2).await?;
    fx.wait_group("all 5 acknowledged", Duration::from_secs(15), |g| g.counters.acknowledged == 5 && g.in_flight == 0).await?;
    let letters = fx.dead_letters();
    assert_eq!(letters.len(), 3, "{letters:?}");
    for id in bad.iter().flatten() {
        let letter =
            letters.iter().find(|l| l["messageId"] == id.as_str()).unwrap_or_else(|| panic!("no dead letter for {id}: {letters:?}"));
        assert_eq!(letter["reason"], "undecodable");
        assert_eq!(letter["topic"], TOPIC, "what could be read is kept");
        assert!(letter["detail"].as_str().unwrap().contains("no AMQP encoding"), "{letter}");
    }
    let letter = letters.iter().find(|l| l["messageId"] == big[0].as_deref().unwrap()).expect("the oversized message's dead letter");
    assert_eq!(letter["reason"], "too-large");
    assert!(letter["detail"].as_str().unwrap().contains("5000 bytes"), "{letter}");
    let delivered = iotsub_tests::worker::delivered_counts(fx.dir.path());
    assert!(good.iter().all(|id| delivered.get(id) == Some(&1)), "{delivered:?}");
    assert_eq!(delivered.len(), 2, "no dead letter reached the sink");
    // No reconnect: the link stayed up.
    assert_eq!(fx.worker.metric_sum("iotsub_worker_reconnects_total{").await?, 0.0);
    assert_eq!(fx.worker.status().await?["connections"][0]["attempts"], 1);
    Ok(())
}
