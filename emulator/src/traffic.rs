//! A device traffic generator: what a fleet of devices would publish, with realistic topics and bodies.

use std::{sync::Arc, time::Duration};

use rand::Rng;
use serde_json::json;

use crate::{
    groups::Group,
    message::{MessageIds, StoredMessage, epoch_ms},
    platform::Platform,
};

pub const PRODUCT_KEY: &str = "a1iotsubDemo";

/// One device's next message: mostly property posts, now and then an online/offline status.
pub fn device_message(ids: &MessageIds, device: u32, rng: &mut impl Rng) -> StoredMessage {
    let device_name = format!("device-{device:04}");
    let now = epoch_ms();
    if rng.random_ratio(1, 50) {
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(now as i128 * 1_000_000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let utc = format!("{}.{:03}Z", iotsub_aliyun::openapi::format_timestamp(at).trim_end_matches('Z'), at.millisecond());
        let body = json!({
            "status": if rng.random_bool(0.5) { "online" } else { "offline" },
            "productKey": PRODUCT_KEY,
            "deviceName": device_name,
            "utcTime": utc,
            "utcLastTime": utc,
            "clientIp": format!("192.0.2.{}", device % 250 + 1),
        });
        return StoredMessage::new(ids.next(), format!("/as/mqtt/status/{PRODUCT_KEY}/{device_name}"), body.to_string().into_bytes());
    }
    let body = json!({
        "iotId": format!("iot{device:08x}{PRODUCT_KEY}"),
        "productKey": PRODUCT_KEY,
        "deviceName": device_name,
        "gmtCreate": now,
        "items": {
            "Temperature": {"value": (rng.random_range(180..320) as f64) / 10.0, "time": now},
            "Humidity": {"value": rng.random_range(20..90), "time": now},
            "Power": {"value": if rng.random_bool(0.9) { "on" } else { "off" }, "time": now},
        },
    });
    StoredMessage::new(ids.next(), format!("/{PRODUCT_KEY}/{device_name}/thing/event/property/post"), body.to_string().into_bytes())
}

/// Publishes `rate` messages per second from `devices` devices for `seconds`, in 1 ms steps so the
/// flow is smooth: devices publish independently, and with 10 ms steps each step's burst of ten
/// messages (at 1 000 msg/s) queued behind itself in the receiver, which a latency benchmark then
/// measured as the receiver's tail.
pub async fn run(group: Arc<Group>, platform: Arc<Platform>, rate: u32, devices: u32, seconds: u32) {
    let started = tokio::time::Instant::now();
    let total = rate as u64 * seconds as u64;
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while sent < total {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        if due > sent {
            let mut rng = rand::rng();
            let batch: Vec<_> = (sent..due)
                .map(|i| Arc::new(device_message(&platform.message_ids, (i % devices.max(1) as u64) as u32, &mut rng)))
                .collect();
            group.publish(batch);
            sent = due;
        }
    }
    tracing::info!(group = %group.key.consumer_group_id, sent, "device traffic finished");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_look_like_the_platforms() {
        let ids = MessageIds::new();
        let mut rng = rand::rng();
        let messages: Vec<_> = (0..500).map(|i| device_message(&ids, i % 7, &mut rng)).collect();
        assert!(messages.iter().any(|m| m.topic.starts_with("/as/mqtt/status/")));
        let post = messages.iter().find(|m| m.topic.ends_with("/thing/event/property/post")).unwrap();
        let crate::message::Body::Data(payload) = &post.body else { panic!("a data body") };
        let body: serde_json::Value = serde_json::from_slice(payload).unwrap();
        assert_eq!(body["productKey"], PRODUCT_KEY);
        assert!(body["items"]["Temperature"]["value"].is_number());
        let unique: std::collections::HashSet<_> = messages.iter().map(|m| &m.message_id).collect();
        assert_eq!(unique.len(), 500);
    }
}
