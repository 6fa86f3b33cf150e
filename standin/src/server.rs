//! The HTTP server (HTTP/1.1, and HTTP/2 by prior knowledge): event requests (any POST outside `/admin/`), `/healthz`, and the admin
//! endpoints (`GET /admin/stats`, `POST`/`DELETE /admin/fault`).

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER},
    service::service_fn,
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use serde::Serialize;
use tokio::{net::TcpListener, sync::Semaphore, time::Instant};

use crate::{
    config::Config,
    delay::Delayer,
    fault::{Fault, FaultRequest, FaultView},
    ids::{IdRecorder, event_ids},
};

/// What one stand-in shares between its connections.
pub struct Standin {
    service_time: Duration,
    delayer: Delayer,
    /// The worker pool's places: a request waits here, in arrival order, for one.
    places: Option<Semaphore>,
    concurrency: usize,
    fault: Fault,
    recorder: IdRecorder,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    answered_ok: AtomicU64,
    events_taken: AtomicU64,
    faulted: AtomicU64,
    bad_requests: AtomicU64,
    waiting: AtomicU64,
    in_service: AtomicU64,
}

/// `GET /admin/stats`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Event requests received (every POST outside `/admin/`).
    pub requests: u64,
    /// Answered 200: their ids were taken.
    pub answered_ok: u64,
    /// CloudEvent ids taken (a batch counts each of its events).
    pub events_taken: u64,
    /// Ids written and flushed to the ids file.
    pub ids_flushed: u64,
    /// Answered with the injected fault's status.
    pub faulted: u64,
    /// Answered 400 (no CloudEvent id, or a body that does not parse).
    pub bad_requests: u64,
    /// Waiting for a place, and being served, right now.
    pub waiting: u64,
    pub in_service: u64,
    pub service_time_ms: f64,
    /// 0: no limit.
    pub concurrency: usize,
    pub fault: Option<FaultView>,
}

type Body = Full<Bytes>;

impl Standin {
    pub fn new(config: &Config) -> anyhow::Result<Arc<Standin>> {
        Ok(Arc::new(Standin {
            service_time: config.service_time(),
            delayer: Delayer::start()?,
            places: (config.concurrency > 0).then(|| Semaphore::new(config.concurrency)),
            concurrency: config.concurrency,
            fault: Fault::default(),
            recorder: IdRecorder::start(config.ids_file.as_deref(), config.ids_times)?,
            counters: Counters::default(),
        }))
    }

    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        Stats {
            requests: load(&c.requests),
            answered_ok: load(&c.answered_ok),
            events_taken: load(&c.events_taken),
            ids_flushed: self.recorder.flushed(),
            faulted: load(&c.faulted),
            bad_requests: load(&c.bad_requests),
            waiting: load(&c.waiting),
            in_service: load(&c.in_service),
            service_time_ms: self.service_time.as_secs_f64() * 1000.0,
            concurrency: self.concurrency,
            fault: self.fault.view(Instant::now()),
        }
    }

    /// Waits until every id taken so far is in the ids file, up to `deadline`.
    pub async fn drain_ids(&self, deadline: Duration) {
        let end = Instant::now() + deadline;
        while self.recorder.is_recording()
            && self.recorder.flushed() < self.counters.events_taken.load(Ordering::Relaxed)
            && Instant::now() < end
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        let path = request.uri().path();
        match (request.method(), path) {
            (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
            (&Method::GET, "/admin/stats") => json(StatusCode::OK, &self.stats()),
            (&Method::POST, "/admin/fault") => self.inject(request).await,
            (&Method::DELETE, "/admin/fault") => {
                self.fault.set(None);
                empty(StatusCode::NO_CONTENT)
            }
            (_, p) if p.starts_with("/admin/") => text(StatusCode::NOT_FOUND, "no such admin endpoint\n"),
            (&Method::POST, _) => self.event(request).await,
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "events are POSTed\n"),
        }
    }

    async fn inject(&self, request: Request<Incoming>) -> Response<Body> {
        let body = match request.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => return text(StatusCode::BAD_REQUEST, &format!("reading the fault request: {e}\n")),
        };
        let fault: FaultRequest = match serde_json::from_slice(&body) {
            Ok(fault) => fault,
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("the fault request is not {{\"status\", \"seconds\"?, \"retryAfter\"?}}: {e}\n"),
                );
            }
        };
        match fault.activate(Instant::now()) {
            Ok(active) => {
                tracing::info!(status = active.status, seconds = ?fault.seconds, "fault injected");
                self.fault.set(Some(active));
                empty(StatusCode::NO_CONTENT)
            }
            Err(why) => text(StatusCode::BAD_REQUEST, &format!("{why}\n")),
        }
    }

    async fn event(&self, request: Request<Incoming>) -> Response<Body> {
        let c = &self.counters;
        c.requests.fetch_add(1, Ordering::Relaxed);
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => {
                c.bad_requests.fetch_add(1, Ordering::Relaxed);
                return text(StatusCode::BAD_REQUEST, &format!("reading the body: {e}\n"));
            }
        };
        // A server that is down or refuses the caller answers at once, without taking a place.
        if let Some(fault) = self.fault.current(Instant::now()) {
            c.faulted.fetch_add(1, Ordering::Relaxed);
            let mut response = empty(StatusCode::from_u16(fault.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE));
            if let Some(seconds) = fault.retry_after {
                response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
            }
            return response;
        }
        let ids = match event_ids(&parts.headers, &body) {
            Ok(ids) => ids,
            Err(e) => {
                c.bad_requests.fetch_add(1, Ordering::Relaxed);
                return text(StatusCode::BAD_REQUEST, &format!("{e}\n"));
            }
        };
        let _place = match &self.places {
            Some(places) => {
                c.waiting.fetch_add(1, Ordering::Relaxed);
                let place = places.acquire().await.expect("the semaphore is never closed");
                c.waiting.fetch_sub(1, Ordering::Relaxed);
                Some(place)
            }
            None => None,
        };
        c.in_service.fetch_add(1, Ordering::Relaxed);
        self.delayer.sleep(self.service_time).await;
        c.in_service.fetch_sub(1, Ordering::Relaxed);
        c.events_taken.fetch_add(ids.len() as u64, Ordering::Relaxed);
        c.answered_ok.fetch_add(1, Ordering::Relaxed);
        self.recorder.record(ids);
        empty(StatusCode::OK)
    }
}

/// Accepts connections until the process ends: HTTP/1.1 with keep-alive or HTTP/2 (h2c, told apart
/// by the client's preface), one task per connection.
pub async fn serve(listener: TcpListener, standin: Arc<Standin>) {
    loop {
        let (tcp, _) = iotsub_common::net::accept(&listener).await;
        let standin = standin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let standin = standin.clone();
                async move { Ok::<_, Infallible>(standin.handle(request).await) }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().keep_alive(true);
            // Streams per connection: as many requests in flight as HTTP/1.1 would have connections.
            builder.http2().max_concurrent_streams(10_000);
            if let Err(e) = builder.serve_connection(TokioIo::new(tcp), service).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).expect("stats serialize");
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
