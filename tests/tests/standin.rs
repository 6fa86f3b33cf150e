//! The business-server stand-in, as a real process answering real HTTP requests.

use std::time::{Duration, Instant};

use iotsub_tests::{standin::Standin, wait_until};
use nix::sys::signal::Signal;
use reqwest::{Client, StatusCode};

async fn post_event(http: &Client, standin: &Standin, id: &str) -> reqwest::Result<reqwest::Response> {
    http.post(standin.url("/events"))
        .header("ce-id", id)
        .header("ce-specversion", "1.0")
        .header("content-type", "application/json")
        .body(r#"{"items":{"Temperature":{"value":21.5}}}"#)
        .send()
        .await
}

#[tokio::test]
async fn an_event_is_answered_no_sooner_than_the_service_time_and_its_id_recorded() -> anyhow::Result<()> {
    let standin = Standin::start(&["--service-time-ms", "250"]).await?;
    let http = Client::new();
    assert_eq!(http.get(standin.url("/healthz")).send().await?.status(), StatusCode::OK);
    let started = Instant::now();
    let response = post_event(&http, &standin, "id-1").await?;
    let took = started.elapsed();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(took >= Duration::from_millis(250), "answered after {took:?}, before the 250 ms service time");
    assert_eq!(standin.recorded_ids(1).await?, ["id-1"]);
    let stats = standin.stats().await?;
    assert_eq!((stats.requests, stats.answered_ok, stats.events_taken), (1, 1, 1));
    Ok(())
}

#[tokio::test]
async fn http2_by_prior_knowledge_is_served_and_every_id_recorded() -> anyhow::Result<()> {
    let standin = Standin::start(&["--service-time-ms", "50"]).await?;
    let http = Client::builder().http2_prior_knowledge().build()?;
    let ids: Vec<String> = (0..20).map(|i| format!("h2-{i}")).collect();
    let answers = futures::future::join_all(ids.iter().map(|id| post_event(&http, &standin, id))).await;
    for answer in answers {
        let answer = answer?;
        assert_eq!((answer.version(), answer.status()), (reqwest::Version::HTTP_2, StatusCode::OK));
    }
    let mut recorded = standin.recorded_ids(20).await?;
    recorded.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(recorded, expected);
    Ok(())
}

#[tokio::test]
async fn requests_beyond_the_concurrency_limit_wait_in_line_and_are_all_served() -> anyhow::Result<()> {
    let standin = Standin::start(&["--service-time-ms", "400", "--concurrency", "2"]).await?;
    let http = Client::new();
    let requests: Vec<_> = (0..5)
        .map(|i| {
            let (http, url) = (http.clone(), standin.url("/events"));
            tokio::spawn(async move { http.post(url).header("ce-id", format!("q-{i}")).body("{}").send().await })
        })
        .collect();
    let stats = wait_until("2 requests in service and 3 waiting", Duration::from_secs(10), || async {
        let stats = standin.stats().await.ok()?;
        (stats.requests == 5).then_some(stats)
    })
    .await?;
    assert_eq!((stats.in_service, stats.waiting), (2, 3), "{stats:?}");
    for request in requests {
        assert_eq!(request.await??.status(), StatusCode::OK);
    }
    let mut ids = standin.recorded_ids(5).await?;
    ids.sort();
    assert_eq!(ids, ["q-0", "q-1", "q-2", "q-3", "q-4"]);
    Ok(())
}

#[tokio::test]
async fn each_event_of_a_batch_and_a_structured_event_is_recorded() -> anyhow::Result<()> {
    let standin = Standin::start(&[]).await?;
    let http = Client::new();
    let batch = http
        .post(standin.url("/events"))
        .header("content-type", "application/cloudevents-batch+json")
        .body(r#"[{"specversion":"1.0","id":"b-1","type":"t","source":"s"},{"specversion":"1.0","id":"b-2","type":"t","source":"s"}]"#)
        .send()
        .await?;
    assert_eq!(batch.status(), StatusCode::OK);
    let structured = http
        .post(standin.url("/events"))
        .header("content-type", "application/cloudevents+json")
        .body(r#"{"specversion":"1.0","id":"s-1","type":"t","source":"s"}"#)
        .send()
        .await?;
    assert_eq!(structured.status(), StatusCode::OK);
    assert_eq!(standin.recorded_ids(3).await?, ["b-1", "b-2", "s-1"]);
    let stats = standin.stats().await?;
    assert_eq!((stats.answered_ok, stats.events_taken), (2, 3));
    Ok(())
}

#[tokio::test]
async fn a_request_without_an_event_id_is_refused_with_400_saying_so() -> anyhow::Result<()> {
    let standin = Standin::start(&[]).await?;
    let response = Client::new().post(standin.url("/events")).body("{}").send().await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await?.contains("no CloudEvent id"));
    let bad_batch =
        Client::new().post(standin.url("/events")).header("content-type", "application/cloudevents-batch+json").body("[{").send().await?;
    assert_eq!(bad_batch.status(), StatusCode::BAD_REQUEST);
    assert!(bad_batch.text().await?.contains("batch body is not valid JSON"));
    let stats = standin.stats().await?;
    assert_eq!((stats.bad_requests, stats.events_taken), (2, 0));
    Ok(())
}

#[tokio::test]
async fn an_injected_503_is_answered_for_its_seconds_with_retry_after_then_events_are_taken_again() -> anyhow::Result<()> {
    let standin = Standin::start(&[]).await?;
    let http = Client::new();
    let injected = http.post(standin.url("/admin/fault")).body(r#"{"status":503,"seconds":1.5,"retryAfter":7}"#).send().await?;
    assert_eq!(injected.status(), StatusCode::NO_CONTENT);
    let refused = post_event(&http, &standin, "f-1").await?;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned()), Some("7".into()));
    wait_until("the fault to end", Duration::from_secs(10), || async {
        (post_event(&http, &standin, "f-2").await.ok()?.status() == StatusCode::OK).then_some(())
    })
    .await?;
    let stats = standin.stats().await?;
    assert!(stats.faulted >= 1, "{stats:?}");
    assert_eq!(standin.recorded_ids(1).await?, ["f-2"], "a refused event is not recorded");
    Ok(())
}

#[tokio::test]
async fn an_injected_401_holds_until_cleared() -> anyhow::Result<()> {
    let standin = Standin::start(&[]).await?;
    let http = Client::new();
    http.post(standin.url("/admin/fault")).body(r#"{"status":401}"#).send().await?.error_for_status()?;
    for i in 0..3 {
        assert_eq!(post_event(&http, &standin, &format!("u-{i}")).await?.status(), StatusCode::UNAUTHORIZED);
    }
    http.delete(standin.url("/admin/fault")).send().await?.error_for_status()?;
    assert_eq!(post_event(&http, &standin, "u-ok").await?.status(), StatusCode::OK);
    assert_eq!(standin.stats().await?.faulted, 3);
    Ok(())
}

#[tokio::test]
async fn a_fault_with_a_success_status_is_refused_naming_the_status() -> anyhow::Result<()> {
    let standin = Standin::start(&[]).await?;
    let response = Client::new().post(standin.url("/admin/fault")).body(r#"{"status":204}"#).send().await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await?.contains("status 204"));
    Ok(())
}

#[tokio::test]
async fn sigterm_stops_the_stand_in_with_every_id_taken_in_its_file() -> anyhow::Result<()> {
    let mut standin = Standin::start(&[]).await?;
    let http = Client::new();
    for i in 0..200 {
        assert_eq!(post_event(&http, &standin, &format!("t-{i}")).await?.status(), StatusCode::OK);
    }
    standin.process.signal(Signal::SIGTERM)?;
    let status = standin.process.wait_exit(Duration::from_secs(10)).await?;
    assert!(status.success(), "{status}: {}", standin.log());
    let ids = std::fs::read_to_string(&standin.ids_file)?;
    let expected: Vec<String> = (0..200).map(|i| format!("t-{i}")).collect();
    assert_eq!(ids.lines().collect::<Vec<_>>(), expected);
    Ok(())
}
