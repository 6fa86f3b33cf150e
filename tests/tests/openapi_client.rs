//! The operator's OpenAPI client (`iotsub_aliyun::client`) against the emulator's OpenAPI: signed
//! calls, a refused signature, retries of transient failures, one rate limiter per AccessKey.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use iotsub_aliyun::{
    amqp::AccessKey,
    client::{CallError, HttpSettings, OpenApiClient, RetryPolicy, Target},
    consumer_group::ConsumerGroupStatus,
    openapi,
    redact::Redactor,
};
use iotsub_tests::{
    Emulator,
    amqp_client::{ClientOptions, consumer},
    https_server::HttpsServer,
};

const TOPIC: &str = "/a1demo/dev1/thing/event/property/post";

fn key(id: &str, secret: &str) -> AccessKey {
    AccessKey { id: id.into(), secret: secret.to_owned().into(), security_token: None }
}

fn client() -> OpenApiClient {
    let settings = HttpSettings { timeout: Duration::from_secs(2), connect_timeout: Duration::from_secs(2) };
    OpenApiClient::new(settings, RetryPolicy { attempts: 3, first_backoff: Duration::from_millis(300) })
}

fn ca(emulator: &Emulator) -> Vec<u8> {
    std::fs::read(&emulator.ca_pem).expect("the emulator's ca.pem")
}

/// One call with a fresh client trusting `ca`, as `id`/`secret`, for `group`.
async fn query(base: &str, ca: Option<&[u8]>, (id, secret): (&str, &str), group: &str) -> Result<ConsumerGroupStatus, CallError> {
    let key = key(id, secret);
    let target = Target { base_url: base, region_id: "cn-shanghai", access_key: &key, extra_root_pem: ca };
    client().query_consumer_group_status(&target, None, group).await
}

async fn codes(emulator: &Emulator) -> anyhow::Result<Vec<String>> {
    Ok(emulator.openapi_calls_typed().await?.into_iter().map(|c| c.code).collect())
}

#[tokio::test]
async fn a_signed_query_reads_backlog_and_clients() -> anyhow::Result<()> {
    let emulator = Emulator::start("").await?;
    let (_client, _receiver) = consumer(&emulator, &ClientOptions::demo("seen-by-the-api")).await?;
    emulator.fault("pause-delivery", "DEFAULT_GROUP").await?;
    emulator.publish("DEFAULT_GROUP", TOPIC, "x", 12).await?;
    let base = emulator.api_url("");
    let status = query(&base, Some(&ca(&emulator)), ("demo", "demo-secret"), "DEFAULT_GROUP").await?;
    assert_eq!(status.accumulation_count, 12);
    let ids: Vec<_> = status.client_connection_status_list.clients.iter().map(|c| c.client_id.as_str()).collect();
    assert_eq!(ids, ["seen-by-the-api"]);
    assert_eq!(codes(&emulator).await?, ["OK"]);
    Ok(())
}

#[tokio::test]
async fn a_refused_signature_is_reported_at_once_and_not_retried() -> anyhow::Result<()> {
    let emulator = Emulator::start("").await?;
    let (base, ca) = (emulator.api_url(""), ca(&emulator));
    let error = query(&base, Some(&ca), ("demo", "not-the-secret"), "DEFAULT_GROUP").await.expect_err("a wrong secret is refused");
    assert!(matches!(&error, CallError::Refused { code, .. } if code == "SignatureDoesNotMatch"), "{error:?}");
    assert!(!error.to_string().contains("not-the-secret"), "the secret never appears: {error}");
    assert_eq!(codes(&emulator).await?, ["SignatureDoesNotMatch"], "one call, no retry");

    let error = query(&base, Some(&ca), ("nobody", "x"), "DEFAULT_GROUP").await.expect_err("an unknown AccessKey is refused");
    assert!(matches!(&error, CallError::Refused { code, .. } if code == "InvalidAccessKeyId.NotFound"), "{error:?}");
    let error =
        query(&base, Some(&ca), ("demo", "demo-secret"), "NO_SUCH_GROUP").await.expect_err("an unknown group is an error of the platform");
    assert!(matches!(&error, CallError::Platform { code, .. } if code.contains("NotExistedConsumerGroup")), "{error:?}");
    assert_eq!(codes(&emulator).await?.len(), 3, "none of them retried");
    Ok(())
}

#[tokio::test]
async fn a_refused_sts_signature_leaves_no_trace_of_the_token_or_secret_in_the_error() -> anyhow::Result<()> {
    // `+`, `/` and `=` make the raw, percent-encoded and doubly percent-encoded forms differ.
    const TOKEN: &str = "CAIS+sts/Token=0123456789";
    let emulator = Emulator::start("").await?;
    let base = emulator.api_url("");
    // Like the real gateway, the emulated one echoes its string to sign, the token inside.
    let mut params = openapi::common_params("QueryConsumerGroupStatus", "demo", "cn-shanghai", "echo-1", time::OffsetDateTime::now_utc());
    params.insert("GroupId".into(), "DEFAULT_GROUP".into());
    params.insert("SecurityToken".into(), TOKEN.into());
    let url = format!("{base}/?{}", openapi::signed_query(&params, "not-the-secret"));
    let raw = emulator.http_client().get(url).send().await?.text().await?;
    let secrets = Redactor::for_values([TOKEN, "not-the-secret"]);
    assert!(raw.contains("SignatureDoesNotMatch") && secrets.finds_any(&raw), "the gateway's answer holds the token: {raw}");

    let key = AccessKey { id: "demo".into(), secret: "not-the-secret".to_owned().into(), security_token: Some(TOKEN.to_owned().into()) };
    let ca = ca(&emulator);
    let target = Target { base_url: &base, region_id: "cn-shanghai", access_key: &key, extra_root_pem: Some(&ca) };
    let error = client().query_consumer_group_status(&target, None, "DEFAULT_GROUP").await.expect_err("refused");
    assert!(
        matches!(&error, CallError::Refused { code, request_id, .. } if code == "SignatureDoesNotMatch" && !request_id.is_empty()),
        "{error:?}"
    );
    let text = format!("{error} {error:?}");
    assert!(!secrets.finds_any(&text), "no form of the token or secret: {text}");
    assert!(text.contains("not matched with our calculation"), "the gateway's own words stay: {text}");
    Ok(())
}

#[tokio::test]
async fn the_gateways_throttling_is_retried_with_backoff_until_answered() -> anyhow::Result<()> {
    // The emulated gateway allows 1 call/s for the account: our limiter (5/s) lets the second call
    // through at once, the gateway throttles it, and the retry after the backoff gets an answer.
    let emulator = Emulator::start("[limits]\nopenapi_rate_per_account = 1\n").await?;
    let (base, ca) = (emulator.api_url(""), ca(&emulator));
    let demo = key("demo", "demo-secret");
    let target = Target { base_url: &base, region_id: "cn-shanghai", access_key: &demo, extra_root_pem: Some(&ca) };
    let client = OpenApiClient::new(HttpSettings::default(), RetryPolicy { attempts: 4, first_backoff: Duration::from_millis(600) });
    client.query_consumer_group_status(&target, None, "DEFAULT_GROUP").await?;
    let started = Instant::now();
    client.query_consumer_group_status(&target, None, "DEFAULT_GROUP").await?;
    let codes = codes(&emulator).await?;
    assert_eq!(codes.first().map(String::as_str), Some("OK"));
    assert_eq!(codes.last().map(String::as_str), Some("OK"));
    assert!(codes.iter().any(|c| c == "Throttling.User"), "the gateway throttled at least once: {codes:?}");
    assert!(started.elapsed() >= Duration::from_millis(300), "the retry waited for its backoff");
    Ok(())
}

#[tokio::test]
async fn an_unreachable_endpoint_is_retried_then_named_without_secrets() -> anyhow::Result<()> {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?; // bound, then dropped: nothing listens
    let base = format!("https://{closed}");
    let started = Instant::now();
    let error = query(&base, None, ("demo", "demo-secret"), "DEFAULT_GROUP").await.expect_err("nothing listens");
    assert!(matches!(&error, CallError::Unreachable(detail) if detail.contains(&closed.to_string())), "{error:?}");
    let text = error.to_string();
    assert!(!text.contains("demo-secret") && !text.contains("Signature"), "{text}");
    // Three attempts: two backoffs of 150–300 ms and 300–600 ms.
    assert!(started.elapsed() >= Duration::from_millis(450), "retried with backoff: {:?}", started.elapsed());
    Ok(())
}

#[tokio::test]
async fn subscriptions_sharing_an_access_key_share_its_five_calls_per_second() -> anyhow::Result<()> {
    let emulator = Emulator::start("[limits]\nopenapi_rate_per_account = 100\n").await?;
    let (base, ca) = (emulator.api_url(""), ca(&emulator));
    let client = client();
    let (demo, other) = (key("demo", "demo-secret"), key("ram-user", "ram-secret"));
    let target = Target { base_url: &base, region_id: "cn-shanghai", access_key: &demo, extra_root_pem: Some(&ca) };
    let calls = (0..8).map(|_| client.query_consumer_group_status(&target, None, "DEFAULT_GROUP"));
    let results = futures::future::join_all(calls).await;
    let answered = results.iter().filter(|r| r.is_ok()).count();
    let throttled = results.iter().filter(|r| matches!(r, Err(CallError::Throttled))).count();
    assert_eq!((answered, throttled), (5, 3), "{results:?}");
    assert_eq!(emulator.openapi_calls_typed().await?.len(), 5, "throttled calls never left the process");
    // Another AccessKey has its own budget.
    let result = client
        .query_consumer_group_status(
            &Target { base_url: &base, region_id: "cn-shanghai", access_key: &other, extra_root_pem: Some(&ca) },
            None,
            "DEFAULT_GROUP",
        )
        .await;
    assert!(!matches!(result, Err(CallError::Throttled)), "{result:?}");
    Ok(())
}

#[tokio::test]
async fn a_redirect_from_the_endpoint_is_named_and_not_followed() -> anyhow::Result<()> {
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    // Where a hostile endpoint would send the signed query: back to itself, over plain http.
    let router = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            (axum::http::StatusCode::FOUND, [(axum::http::header::LOCATION, format!("http://127.0.0.1:9/{uri}"))])
        }
    });
    let server = HttpsServer::start(router).await?;
    let error = query(&server.url(), Some(server.ca_pem.as_bytes()), ("demo", "demo-secret"), "DEFAULT_GROUP")
        .await
        .expect_err("a redirect is no answer");
    let text = error.to_string();
    assert!(matches!(&error, CallError::Untrusted(_)), "{error:?}");
    assert!(text.contains("302") && text.contains("redirect") && text.contains("http://127.0.0.1:9"), "{text}");
    assert!(!text.contains("Signature") && !text.contains("demo-secret"), "the echoed query is not repeated: {text}");
    assert_eq!(requests.load(Ordering::SeqCst), 1, "one request, no second one to the redirect, no retry");
    Ok(())
}

#[tokio::test]
async fn the_emulators_certificate_is_verified_against_the_ca_given() -> anyhow::Result<()> {
    let emulator = Emulator::start("").await?;
    let base = emulator.api_url("");
    let stranger = HttpsServer::start(axum::Router::new()).await?;
    let error = query(&base, Some(stranger.ca_pem.as_bytes()), ("demo", "demo-secret"), "DEFAULT_GROUP")
        .await
        .expect_err("another CA does not vouch for the emulator");
    let text = error.to_string();
    assert!(matches!(&error, CallError::Untrusted(_)), "{error:?}");
    assert!(text.contains("TLS handshake failed") && text.contains(&emulator.api_addr.to_string()), "{text}");
    assert!(text.contains("UnknownIssuer"), "says why: {text}");
    let error = query(&base, None, ("demo", "demo-secret"), "DEFAULT_GROUP").await.expect_err("the default roots do not either");
    assert!(error.to_string().contains("TLS handshake failed"), "{error}");
    assert!(emulator.openapi_calls_typed().await?.is_empty(), "no request was sent");
    Ok(())
}

#[tokio::test]
async fn a_plain_http_endpoint_is_refused_before_anything_is_sent() -> anyhow::Result<()> {
    let emulator = Emulator::start("").await?;
    let plain = format!("http://{}", emulator.api_addr);
    let error = query(&plain, Some(&ca(&emulator)), ("demo", "demo-secret"), "DEFAULT_GROUP").await.expect_err("http is refused");
    assert!(matches!(&error, CallError::Untrusted(text) if text.contains("https://")), "{error:?}");
    assert!(emulator.openapi_calls_typed().await?.is_empty(), "no request was sent");
    Ok(())
}
