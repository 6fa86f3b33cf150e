//! A real HTTP server on 127.0.0.1 standing in for the user's business server (the http sink) or a
//! dead-letter endpoint: it records every request (HTTP/1.1, or HTTP/2 by prior knowledge) and answers
//! what the test sets — a status for all or for one event id (a batch of CloudEvents is answered the
//! override of the first of its ids that has one), a `Location` for redirects (to `/landing`, which answers 200 to anything and is
//! recorded too, so a followed redirect shows), a `Retry-After`, a delay. It can also go away
//! (every connection reset, the port closed) and come back on the same port, speaking HTTP/1.1 only
//! if the test asks.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::{ConnectInfo, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version, header},
    response::{IntoResponse, Response},
    routing::any,
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, task::JoinSet};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Bytes,
    /// What the receiver answered (or would have, when the client gave up first).
    pub status: u16,
    pub at: std::time::Instant,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// The event ids it carries: its `ce-id`, or each event's of a batch.
    pub ids: Vec<String>,
    /// The client's end of the connection it came on.
    pub peer: std::net::SocketAddr,
}

pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

impl ReceivedRequest {
    pub fn ce_id(&self) -> Option<&str> {
        self.headers.get("ce-id").map(String::as_str)
    }

    /// The events of a batch body (empty for any other request).
    pub fn batch_events(&self) -> Vec<serde_json::Value> {
        if self.headers.get("content-type").map(String::as_str) != Some(BATCH_CONTENT_TYPE) {
            return Vec::new();
        }
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

fn event_ids(headers: &BTreeMap<String, String>, body: &[u8]) -> Vec<String> {
    if headers.get("content-type").map(String::as_str) == Some(BATCH_CONTENT_TYPE) {
        let events: Vec<serde_json::Value> = serde_json::from_slice(body).unwrap_or_default();
        return events.iter().filter_map(|e| e["id"].as_str().map(str::to_owned)).collect();
    }
    headers.get("ce-id").into_iter().cloned().collect()
}

#[derive(Clone, Default)]
struct Answers {
    requests: Arc<Mutex<Vec<ReceivedRequest>>>,
    /// ce-ids answered 2xx (counted on arrival, before any delay), kept apart so a test polling
    /// them under load stays cheap.
    accepted: Arc<Mutex<HashSet<String>>>,
    /// ce-ids whose 2xx answer the server finished (after its delay): what a client could have read.
    answered: Arc<Mutex<HashSet<String>>>,
    status: Arc<AtomicU16>,
    overrides: Arc<Mutex<HashMap<String, u16>>>,
    delays: Arc<Mutex<HashMap<String, Duration>>>,
    delay_ms: Arc<AtomicU64>,
    retry_after: Arc<Mutex<Option<String>>>,
}

/// The HTTP versions the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaks {
    /// HTTP/1.1, and HTTP/2 by prior knowledge (h2c).
    Http1AndHttp2,
    /// HTTP/1.1 only (hyper's): an HTTP/2 connection preface is no request; the connection is closed.
    Http1Only,
}

pub struct HttpReceiver {
    /// The events endpoint (`/events`).
    pub url: String,
    addr: SocketAddr,
    answers: Answers,
    /// The accept loop (none while gone away); aborting it resets every connection it serves.
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl HttpReceiver {
    pub async fn start() -> anyhow::Result<HttpReceiver> {
        Self::start_on(std::net::Ipv4Addr::LOCALHOST.into()).await
    }

    /// [`HttpReceiver::start`] listening on `ip` (an address of this machine).
    pub async fn start_on(ip: std::net::IpAddr) -> anyhow::Result<HttpReceiver> {
        Self::start_speaking((ip, 0).into(), Speaks::Http1AndHttp2).await
    }

    /// A receiver on 127.0.0.1 that speaks only HTTP/1.1.
    pub async fn start_http1_only() -> anyhow::Result<HttpReceiver> {
        Self::start_speaking((std::net::Ipv4Addr::LOCALHOST, 0).into(), Speaks::Http1Only).await
    }

    async fn start_speaking(addr: SocketAddr, speaks: Speaks) -> anyhow::Result<HttpReceiver> {
        let answers = Answers { status: Arc::new(AtomicU16::new(200)), ..Answers::default() };
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(serve(listener, app(&answers), speaks));
        Ok(HttpReceiver { url: format!("http://{addr}/events"), addr, answers, server: Mutex::new(Some(server)) })
    }

    /// The server goes away as a crashed one does: every connection is reset (requests in flight
    /// get no answer) and the port is closed.
    pub async fn go_away(&self) {
        let server = self.server.lock().unwrap().take();
        if let Some(server) = server {
            server.abort();
            let _ = server.await;
        }
    }

    /// The server is back on the same port, speaking `speaks`, with the same record and answers.
    pub async fn come_back(&self, speaks: Speaks) -> anyhow::Result<()> {
        self.go_away().await;
        let listener = TcpListener::bind(self.addr).await?;
        *self.server.lock().unwrap() = Some(tokio::spawn(serve(listener, app(&self.answers), speaks)));
        Ok(())
    }

    /// A URL on 127.0.0.1 where nothing listens (connection refused).
    pub async fn closed_port_url() -> anyhow::Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        drop(listener);
        Ok(format!("http://{addr}/events"))
    }

    /// A sink that never answers in time: `slow`, this receiver answering after 2 s; otherwise a
    /// closed port. Returns the receiver (kept for its record) and the URL to give the worker.
    pub async fn slow_or_closed(slow: bool) -> anyhow::Result<(HttpReceiver, String)> {
        let receiver = HttpReceiver::start().await?;
        let url = if slow { receiver.url.clone() } else { HttpReceiver::closed_port_url().await? };
        receiver.delay(Duration::from_secs(2));
        Ok((receiver, url))
    }

    /// Every answer (but `/landing`'s) is `status` from now on.
    pub fn answer(&self, status: u16) {
        self.answers.status.store(status, Ordering::SeqCst);
    }

    /// Requests with this event id (alone or in a batch) are answered `status`.
    pub fn answer_for(&self, ce_id: &str, status: u16) {
        self.answers.overrides.lock().unwrap().insert(ce_id.into(), status);
    }

    /// Requests with this ce-id wait `delay` before their answer.
    pub fn delay_for(&self, ce_id: &str, delay: Duration) {
        self.answers.delays.lock().unwrap().insert(ce_id.into(), delay);
    }

    /// Every answer waits this long first (a slow application).
    pub fn delay(&self, delay: Duration) {
        self.answers.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// 408, 429 and 503 answers carry `Retry-After: <value>`.
    pub fn retry_after(&self, value: &str) {
        *self.answers.retry_after.lock().unwrap() = Some(value.into());
    }

    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.answers.requests.lock().unwrap().clone()
    }

    /// Requests to the events endpoint carrying `ce_id` (alone or in a batch).
    pub fn requests_for(&self, ce_id: &str) -> Vec<ReceivedRequest> {
        self.requests().into_iter().filter(|r| r.ids.iter().any(|id| id == ce_id)).collect()
    }

    /// Requests that reached `/landing` (only a followed redirect goes there).
    pub fn landing_requests(&self) -> Vec<ReceivedRequest> {
        self.requests().into_iter().filter(|r| r.path == "/landing").collect()
    }

    /// ce-ids answered 2xx, counted as the request arrived (a client that gave up before a
    /// delayed answer is counted too: see [`HttpReceiver::answered_ids`]).
    pub fn accepted_ids(&self) -> HashSet<String> {
        self.answers.accepted.lock().unwrap().clone()
    }

    /// ce-ids whose 2xx answer the server finished after its delay (one cut off by
    /// [`HttpReceiver::go_away`] is not among them): what the worker may have acknowledged.
    pub fn answered_ids(&self) -> HashSet<String> {
        self.answers.answered.lock().unwrap().clone()
    }

    /// How many of `ids` were not answered 2xx yet.
    pub fn missing(&self, ids: &[String]) -> usize {
        let accepted = self.answers.accepted.lock().unwrap();
        ids.iter().filter(|id| !accepted.contains(*id)).count()
    }

    /// How many requests arrived.
    pub fn request_count(&self) -> usize {
        self.answers.requests.lock().unwrap().len()
    }

    /// Event id → requests received carrying it.
    pub fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for r in self.requests() {
            for id in r.ids {
                *counts.entry(id).or_default() += 1;
            }
        }
        counts
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        if let Some(server) = self.server.lock().unwrap().take() {
            server.abort();
        }
    }
}

fn app(answers: &Answers) -> Router {
    Router::new().fallback(any(receive)).with_state(answers.clone())
}

/// Accepts connections until aborted; the connections' tasks are aborted with it.
async fn serve(listener: TcpListener, app: Router, speaks: Speaks) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                // A connection dropped with the server is reset, as a crashed server's peer sees it.
                let _ = stream.set_zero_linger();
                let service = TowerToHyperService::new(app.clone().layer(axum::Extension(ConnectInfo(peer))));
                connections.spawn(async move {
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let builder = if speaks == Speaks::Http1Only { builder.http1_only() } else { builder };
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn receive(
    State(answers): State<Answers>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    method: Method,
    version: Version,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers: BTreeMap<String, String> =
        headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())).collect();
    let ids = event_ids(&headers, &body);
    let landing = uri.path() == "/landing";
    let delay = {
        let delays = answers.delays.lock().unwrap();
        ids.iter().find_map(|id| delays.get(id).copied()).unwrap_or(Duration::from_millis(answers.delay_ms.load(Ordering::SeqCst)))
    };
    let status = if landing {
        200
    } else {
        let overrides = answers.overrides.lock().unwrap();
        ids.iter().find_map(|id| overrides.get(id).copied()).unwrap_or_else(|| answers.status.load(Ordering::SeqCst))
    };
    if (200..300).contains(&status) && !landing {
        answers.accepted.lock().unwrap().extend(ids.iter().cloned());
    }
    answers.requests.lock().unwrap().push(ReceivedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        headers,
        body,
        status,
        at: std::time::Instant::now(),
        version: format!("{version:?}"),
        ids: ids.clone(),
        peer,
    });
    // Recorded on arrival: a client that gives up before the answer still shows.
    if !landing && !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if (200..300).contains(&status) && !landing {
        answers.answered.lock().unwrap().extend(ids);
    }
    let mut response = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR).into_response();
    if (300..400).contains(&status) {
        response.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/landing"));
    }
    let retry_after = answers.retry_after.lock().unwrap().clone();
    if let Some(value) = retry_after.filter(|_| matches!(status, 408 | 429 | 503)) {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_str(&value).expect("a valid Retry-After"));
    }
    response
}
