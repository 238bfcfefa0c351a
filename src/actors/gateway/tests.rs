//! Tests of the gateway: its client against local servers, and the actor.

use super::client::is_loopback;
use super::*;
use crate::backend::AlertPayload;
use crate::backend::Operation;
use crate::config::{Limit, RateLimits};
use crate::config::{OpsgenieConfig, Secret};
use actix::Actor;
use mockito::Matcher;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

pub(super) const KEY: &str = "0a1b2c3d-aaaa-bbbb-cccc-0123456789ab";

#[derive(Default)]
pub(super) struct Recorder(StdMutex<Vec<CallEvent>>);

impl BackendCallObserver for Recorder {
    fn on_call(&self, event: &CallEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Recorder {
    pub(super) fn events(&self) -> Vec<CallEvent> {
        self.0.lock().unwrap().clone()
    }
}

pub(super) fn config(url: &str) -> OpsgenieConfig {
    let none = Limit::new(0, 0);
    OpsgenieConfig {
        api_url: Some(url.to_owned()),
        request_timeout: Duration::from_secs(5),
        rate_limits: RateLimits {
            alert: none,
            search: none,
            schedule_oncalls: none,
            heartbeat: none,
            configuration: none,
        },
        ..OpsgenieConfig::default()
    }
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(500),
        seed: Some(42),
        ..RetryPolicy::default()
    }
}

pub(super) fn client(cfg: &OpsgenieConfig) -> (GatewayClient, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let client = GatewayClient::with_policy(
        cfg,
        Secret::new(KEY),
        policy(),
        Some(recorder.clone() as Arc<dyn BackendCallObserver>),
    )
    .unwrap();
    (client, recorder)
}

pub(super) fn payload() -> AlertPayload {
    AlertPayload {
        message: "alice requested editor".into(),
        alias: "teleport-access-request/abc".into(),
        description: "reason: deploy".into(),
        responders: vec![],
        tags: vec!["teleport-access-request".into()],
        details: Default::default(),
        entity: String::new(),
        source: "teleport-opsgenie".into(),
        priority: "P3".into(),
    }
}

pub(super) const ACCEPTED: &str =
    r#"{"result":"Request will be processed","took":0.302,"requestId":"req-1"}"#;

/// Finishes `mock`: it answers 202 Accepted (request id `req-1`), and expects one call.
async fn accepting_once(mock: mockito::Mock) -> mockito::Mock {
    mock.with_status(202)
        .with_body(ACCEPTED)
        .expect(1)
        .create_async()
        .await
}

#[actix::test]
async fn create_sends_the_exact_request() {
    let mut server = mockito::Server::new_async().await;
    let mock = accepting_once(
        server
            .mock("POST", "/v2/alerts")
            .match_header("authorization", format!("GenieKey {KEY}").as_str())
            .match_header("content-type", "application/json; charset=utf-8")
            .match_header("accept", "application/json")
            .match_header("user-agent", USER_AGENT)
            .match_body(Matcher::Json(json!({
                "message": "alice requested editor",
                "alias": "teleport-access-request/abc",
                "description": "reason: deploy",
                "tags": ["teleport-access-request"],
                "source": "teleport-opsgenie",
                "priority": "P3"
            }))),
    )
    .await;
    let cfg = config(&server.url());
    let gateway = Gateway::start_supervised(GatewayClient::new(&cfg, Secret::new(KEY)).unwrap());
    let outcome = gateway.call(Operation::CreateAlert(payload())).await;
    assert_eq!(
        outcome,
        Ok(Outcome::Accepted {
            request_id: "req-1".into()
        })
    );
    mock.assert_async().await;
}

#[actix::test]
async fn note_and_close_go_to_the_alert_by_id() {
    let mut server = mockito::Server::new_async().await;
    let note = accepting_once(
        server
            .mock("POST", "/v2/alerts/a-1/notes?identifierType=id")
            .match_header("authorization", format!("GenieKey {KEY}").as_str())
            .match_body(Matcher::Json(
                json!({"note": "bob approved", "source": "teleport-opsgenie"}),
            )),
    )
    .await;
    let close = accepting_once(
        server
            .mock("POST", "/v2/alerts/a-1/close?identifierType=id")
            .match_body(Matcher::Json(
                json!({"note": "request approved", "source": "teleport-opsgenie"}),
            )),
    )
    .await;
    let (client, _) = client(&config(&server.url()));
    let gateway = Gateway::start_supervised(client);
    let alert = crate::backend::AlertRef::Id("a-1".into());
    let noted = gateway
        .call(Operation::AddNote {
            alert: alert.clone(),
            note: "bob approved".into(),
        })
        .await;
    assert!(matches!(noted, Ok(Outcome::Accepted { .. })), "{noted:?}");
    let closed = gateway
        .call(Operation::CloseAlert {
            alert,
            note: "request approved".into(),
        })
        .await;
    assert!(matches!(closed, Ok(Outcome::Accepted { .. })), "{closed:?}");
    note.assert_async().await;
    close.assert_async().await;
}

/// One answer of a [`scripted_server`]: status, extra headers, body.
pub(super) type Answer = (u16, Vec<(&'static str, &'static str)>, &'static str);

/// A loopback HTTP/1.1 server on the test's own runtime, answering the n-th request (from
/// 0) with `answer(n)`, one connection per request. Unlike mockito, which serves from a
/// thread of its own, it runs on the test's paused clock: an answer that is ready at once
/// wakes the runtime before the clock can auto-advance past a client timeout, so virtual
/// time moves only where the gateway sleeps. Returns its URL and the request count.
pub(super) async fn scripted_server(
    answer: impl Fn(usize) -> Answer + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let (requests, answer) = (count.clone(), Arc::new(answer));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (requests, answer) = (requests.clone(), answer.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut read = Vec::new();
                let end = loop {
                    if let Some(at) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read.extend_from_slice(&buf[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&read[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while read.len() < end + length {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read.extend_from_slice(&buf[..n]),
                    }
                }
                let (status, headers, body) = answer(requests.fetch_add(1, Ordering::SeqCst));
                let mut out = format!(
                    "HTTP/1.1 {status} Scripted\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                    body.len()
                );
                for (name, value) in headers {
                    out.push_str(&format!("{name}: {value}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(body);
                let _ = socket.write_all(out.as_bytes()).await;
            });
        }
    });
    (url, count)
}

#[tokio::test(start_paused = true)]
async fn alert_id_arrives_right_after_processing() {
    // Processed 300 ms after the first poll; 404 + RequestNotProcessed until then.
    let first_poll: Arc<StdMutex<Option<Instant>>> = Arc::default();
    let (url, requests) = scripted_server(move |_| {
        let mut first = first_poll.lock().unwrap();
        if first.get_or_insert_with(Instant::now).elapsed() >= Duration::from_millis(300) {
            (
                200,
                vec![],
                r#"{"data":{"success":true,"isSuccess":true,"action":"Create","status":"Created alert","alertId":"alert-9","alias":"teleport-access-request/abc"},"took":0.02,"requestId":"req-1"}"#,
            )
        } else {
            (404, vec![("X-Opsgenie-Errortype", "RequestNotProcessed")], r#"{"message":"Request not processed yet","took":0.0,"requestId":"x"}"#)
        }
    })
    .await;
    let (client, _) = client(&config(&url));
    let started = Instant::now();
    let id = client
        .await_alert_id("req-1", Duration::from_secs(10))
        .await;
    assert_eq!(id, Ok("alert-9".into()));
    // Polls at 0.1, 0.2 and 0.4 s: the answer is taken 100 ms after it was ready, not
    // seconds later.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_millis(450),
        "{elapsed:?}"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 3);
}

#[actix::test]
async fn alert_id_failure_and_timeout() {
    let mut server = mockito::Server::new_async().await;
    server
        .mock("GET", "/v2/alerts/requests/bad")
        .with_status(200)
        .with_body(
            r#"{"data":{"isSuccess":false,"action":"Close","status":"Alert does not exist","alertId":"","alias":""}}"#,
        )
        .create_async()
        .await;
    server
        .mock("GET", "/v2/alerts/requests/slow")
        .with_status(404)
        .with_header("X-Opsgenie-Errortype", "RequestNotProcessed")
        .create_async()
        .await;
    server
        .mock("GET", "/v2/alerts/requests/unknown")
        .with_status(404)
        .create_async()
        .await;
    let (client, _) = client(&config(&server.url()));
    assert_eq!(
        client.await_alert_id("bad", Duration::from_secs(5)).await,
        Err(GatewayError::RequestFailed {
            request_id: "bad".into(),
            status: "Alert does not exist".into()
        })
    );
    let slow = client
        .await_alert_id("slow", Duration::from_millis(400))
        .await
        .unwrap_err();
    assert!(matches!(slow, GatewayError::Timeout { .. }), "{slow:?}");
    assert!(slow.is_retryable());
    let unknown = client
        .await_alert_id("unknown", Duration::from_secs(5))
        .await
        .unwrap_err();
    // Typed, and "maybe done": the step reads the alert to find out.
    assert_eq!(
        unknown,
        GatewayError::UnknownRequest {
            request_id: "unknown".into()
        }
    );
    assert!(
        unknown.to_string().contains("wrong region or account"),
        "{unknown}"
    );
}

#[tokio::test(start_paused = true)]
async fn throttled_call_retries_once_after_the_period() {
    let (url, requests) = scripted_server(|n| match n {
        0 => (
            429,
            vec![
                ("X-RateLimit-State", "THROTTLED"),
                ("X-RateLimit-Period-In-Sec", "1"),
            ],
            r#"{"message":"You are making too many requests!","took":0.002,"requestId":"x"}"#,
        ),
        _ => (202, vec![], ACCEPTED),
    })
    .await;
    let (client, recorder) = client(&config(&url));
    let started = Instant::now();
    let outcome = client.call(Operation::CreateAlert(payload())).await;
    assert_eq!(
        outcome,
        Ok(Outcome::Accepted {
            request_id: "req-1".into()
        })
    );
    // The domain's pause, and nothing more.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_millis(1050),
        "{elapsed:?}"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 2);
    let events = recorder.events();
    assert_eq!(events.len(), 2);
    assert!(events[0].throttled);
    assert_eq!(events[0].status, Some(429));
    assert_eq!(events[0].retry_in, Some(Duration::from_secs(1)));
    assert_eq!((events[1].status, events[1].attempt), (Some(202), 2));
}

#[actix::test]
async fn unavailable_three_times_then_accepted() {
    let mut server = mockito::Server::new_async().await;
    let failing = server
        .mock("POST", "/v2/alerts")
        .with_status(503)
        .expect(3)
        .create_async()
        .await;
    let accepted = accepting_once(server.mock("POST", "/v2/alerts")).await;
    let (client, recorder) = client(&config(&server.url()));
    let outcome = client.call(Operation::CreateAlert(payload())).await;
    assert!(
        matches!(outcome, Ok(Outcome::Accepted { .. })),
        "{outcome:?}"
    );
    failing.assert_async().await;
    accepted.assert_async().await;
    let delays: Vec<Duration> = recorder
        .events()
        .iter()
        .filter_map(|e| e.retry_in)
        .collect();
    assert_eq!(delays.len(), 3);
    // The crate's backoff: each delay lies in [base, ceiling], the ceiling doubling.
    let base = policy().backoff_base;
    for (n, delay) in delays.iter().enumerate() {
        let ceiling = (base * 2u32.pow(n as u32)).min(policy().backoff_cap);
        assert!(*delay >= base && *delay <= ceiling, "{delays:?}");
    }
}

#[actix::test]
async fn exhausted_after_max_attempts() {
    let mut server = mockito::Server::new_async().await;
    let failing = server
        .mock("GET", "/v2/heartbeats/teleport-access-heartbeat/ping")
        .with_status(502)
        .expect(5)
        .create_async()
        .await;
    let (client, _) = client(&config(&server.url()));
    let err = client.health().await.unwrap_err();
    assert!(
        matches!(err, GatewayError::Exhausted { attempts: 5, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    failing.assert_async().await;
}

#[actix::test]
async fn unprocessable_is_not_retried_and_explains() {
    let mut server = mockito::Server::new_async().await;
    let mock = server
        .mock("POST", "/v2/alerts")
        .with_status(422)
        .with_body(r#"{"message":"Request body is not processable. Please check the errors.","errors":{"message":"Message can not be empty."},"took":0.083,"requestId":"r"}"#)
        .expect(1)
        .create_async()
        .await;
    let (client, _) = client(&config(&server.url()));
    let err = client
        .call(Operation::CreateAlert(payload()))
        .await
        .unwrap_err();
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(text.contains("HTTP 422"), "{text}");
    assert!(
        text.contains("message: Message can not be empty."),
        "{text}"
    );
    mock.assert_async().await;
}

#[actix::test]
async fn bad_key_error_names_the_fix_and_hides_the_key() {
    let mut server = mockito::Server::new_async().await;
    server
        .mock("GET", "/v2/heartbeats/teleport-access-heartbeat/ping")
        .with_status(401)
        .with_body(r#"{"message":"Could not authenticate","took":0.002,"requestId":"r"}"#)
        .expect(1)
        .create_async()
        .await;
    let cfg = config(&server.url());
    let gateway = Gateway::from_client(GatewayClient::new(&cfg, Secret::new(KEY)).unwrap());
    assert!(!format!("{gateway:?}").contains(KEY));
    let handle = GatewayHandle::from_addr(gateway.start());
    let err = handle.health().await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains("opsgenie.region: eu"), "{text}");
    assert!(!text.contains(KEY));
}

/// A server that never answers its first connection and answers 202 afterwards.
async fn stalling_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        let mut stalled = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            if count.fetch_add(1, Ordering::SeqCst) == 0 {
                stalled.push(socket);
                continue;
            }
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut read = Vec::new();
                while !read.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read.extend_from_slice(&buf[..n]),
                    }
                }
                let body = r#"{"result":"PONG - Heartbeat received","took":0,"requestId":"p"}"#;
                let answer = format!(
                    "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    (url, connections)
}

#[actix::test]
async fn a_timeout_is_retried() {
    let (url, connections) = stalling_server().await;
    let mut cfg = config(&url);
    cfg.request_timeout = Duration::from_millis(300);
    let (client, recorder) = client(&cfg);
    assert_eq!(client.health().await, Ok(()));
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    let events = recorder.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].status, None);
    assert!(events[0].retry_in.is_some());
    assert_eq!(events[1].status, Some(202));
}

/// How a [`flooding_server`] makes its first answers too large.
#[derive(Clone, Copy)]
enum Flood {
    /// A chunked 200 body that never ends (no length to refuse it by).
    Endless,
    /// A 200 declaring a 1 GiB body, of which it sends nothing.
    Declared,
}

/// A server whose first `oversized` answers are too large (see [`Flood`]) and whose later
/// answers are 202. Returns its URL, the number of connections, and the body bytes it
/// managed to write, with a flag set once the endless writer gave up.
async fn flooding_server(
    flood: Flood,
    oversized: usize,
) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>, Arc<AtomicBool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let written = Arc::new(AtomicUsize::new(0));
    let gave_up = Arc::new(AtomicBool::new(false));
    let (count, bytes, done) = (connections.clone(), written.clone(), gave_up.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let (bytes, done) = (bytes.clone(), done.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut read = Vec::new();
                while !read.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read.extend_from_slice(&buf[..n]),
                    }
                }
                if n >= oversized {
                    let answer = format!(
                        "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{ACCEPTED}",
                        ACCEPTED.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                    return;
                }
                match flood {
                    Flood::Declared => {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n";
                        let _ = socket.write_all(head.as_bytes()).await;
                        // Hold the connection open until the client drops it.
                        let _ = socket.read(&mut buf).await;
                    }
                    Flood::Endless => {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                        if socket.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let mut chunk = b"10000\r\n".to_vec();
                        chunk.extend(std::iter::repeat_n(b' ', 0x10000));
                        chunk.extend_from_slice(b"\r\n");
                        // Stops when the client hangs up; 1 GiB at most, so a client
                        // that reads without a limit fails the test instead of hanging.
                        for _ in 0..(1usize << 14) {
                            if socket.write_all(&chunk).await.is_err() {
                                break;
                            }
                            bytes.fetch_add(0x10000, Ordering::SeqCst);
                        }
                        done.store(true, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    (url, connections, written, gave_up)
}

#[actix::test]
async fn an_endless_answer_is_cut_at_the_cap_and_retried() {
    let (url, connections, written, gave_up) = flooding_server(Flood::Endless, 1).await;
    let (client, recorder) = client(&config(&url));
    let outcome = client.call(Operation::CreateAlert(payload())).await;
    assert_eq!(
        outcome,
        Ok(Outcome::Accepted {
            request_id: "req-1".into()
        })
    );
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    let events = recorder.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].status, Some(200));
    assert!(events[0].retry_in.is_some(), "{events:?}");
    assert_eq!(events[1].status, Some(202));
    // The client hung up: the writer stopped long before its 1 GiB. What it wrote is the
    // cap plus what the kernel's socket buffers absorbed (Linux lets a loopback receive
    // buffer grow to 32 MiB), far from the 1 GiB a reader without a limit takes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gave_up.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the flood was never cut off");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let written = written.load(Ordering::SeqCst);
    assert!(
        written < MAX_RESPONSE_BODY + 128 * 1024 * 1024,
        "{written} bytes were taken"
    );
}

#[actix::test]
async fn a_declared_oversized_answer_is_refused_and_named() {
    let (url, connections, _, _) = flooding_server(Flood::Declared, usize::MAX).await;
    let recorder = Arc::new(Recorder::default());
    let client = GatewayClient::with_policy(
        &config(&url),
        Secret::new(KEY),
        RetryPolicy {
            max_attempts: 2,
            ..policy()
        },
        Some(recorder.clone() as Arc<dyn BackendCallObserver>),
    )
    .unwrap();
    let err = client
        .call(Operation::CreateAlert(payload()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GatewayError::Exhausted { attempts: 2, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    let text = err.to_string();
    assert!(text.contains("larger than the 4 MiB limit"), "{text}");
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    assert_eq!(recorder.events().len(), 2);
}

fn jsm_config(url: &str) -> OpsgenieConfig {
    let mut cfg = config(&format!("{url}/jsm/ops/integration"));
    cfg.backend = crate::config::BackendKind::Jsm;
    cfg.jsm.email = Some("ops@example.com".into());
    cfg.jsm.api_token = Some(Secret::new("tok-123"));
    cfg.jsm.site = Some(url.to_owned());
    cfg.jsm.rest_url = Some(format!("{url}/jsm/ops/api"));
    cfg
}

#[actix::test]
async fn jsm_routes_each_api_with_its_credential_and_looks_the_cloud_id_up_once() {
    use base64::Engine as _;
    let mut server = mockito::Server::new_async().await;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("ops@example.com:tok-123")
    );
    let tenant = server
        .mock("GET", "/_edge/tenant_info")
        .match_header("authorization", Matcher::Missing)
        .with_body(r#"{"cloudId":"c-1"}"#)
        .expect(1)
        .create_async()
        .await;
    let on_call = server
        .mock("GET", "/jsm/ops/api/c-1/v1/schedules/s1/on-calls?flat=true")
        .match_header("authorization", basic.as_str())
        .with_body(r#"{"onCallUsers":["5b2b"]}"#)
        .expect(2)
        .create_async()
        .await;
    let user = server
        .mock("GET", "/rest/api/3/user?accountId=5b2b")
        .match_header("authorization", basic.as_str())
        .with_body(r#"{"accountId":"5b2b","displayName":"Bob"}"#)
        .create_async()
        .await;
    let create = server
        .mock("POST", "/jsm/ops/integration/v2/alerts")
        .match_header("authorization", format!("GenieKey {KEY}").as_str())
        .with_status(202)
        .with_body(r#"{"result":"Request will be processed","took":0.1,"requestId":"r1"}"#)
        .create_async()
        .await;
    let (client, _) = client(&jsm_config(&server.url()));
    for _ in 0..2 {
        let users = client
            .call(Operation::OnCall {
                schedule: "s1".into(),
            })
            .await
            .unwrap();
        assert_eq!(users, Outcome::OnCall(vec!["5b2b".into()]));
    }
    assert!(matches!(
        client
            .call(Operation::GetUser {
                account_id: "5b2b".into()
            })
            .await
            .unwrap(),
        Outcome::User { email: None, .. }
    ));
    assert_eq!(
        client
            .call(Operation::CreateAlert(payload()))
            .await
            .unwrap(),
        Outcome::Accepted {
            request_id: "r1".into()
        }
    );
    for mock in [tenant, on_call, user, create] {
        mock.assert_async().await;
    }
    // The credentials never show.
    let shown = format!("{client:?}");
    assert!(
        !shown.contains("tok-123") && !shown.contains(KEY),
        "{shown}"
    );
}

#[actix::test]
async fn jsm_rest_refusals_name_the_rest_credential_and_a_404_status_is_waited_out() {
    let mut server = mockito::Server::new_async().await;
    let mut cfg = jsm_config(&server.url());
    cfg.jsm.cloud_id = Some("c-9".into());
    server
        .mock("GET", "/jsm/ops/api/c-9/v1/schedules/s1/on-calls?flat=true")
        .with_status(401)
        .with_body(r#"{"code":401,"message":"Client must be authenticated"}"#)
        .create_async()
        .await;
    let status = server
        .mock("GET", "/jsm/ops/api/c-9/v1/alerts/requests/r1")
        .with_status(404)
        .with_body(r#"{"message":"Request is not found"}"#)
        .expect_at_least(2)
        .create_async()
        .await;
    let grace = Duration::from_millis(400);
    let client = GatewayClient::with_policy(
        &cfg,
        Secret::new(KEY),
        RetryPolicy {
            not_found_grace: grace,
            ..policy()
        },
        None,
    )
    .unwrap();
    let err = client
        .call(Operation::OnCall {
            schedule: "s1".into(),
        })
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("opsgenie.jsm.api_token_file"), "{text}");
    assert!(!err.is_retryable());
    // "Not found" is "not yet" for the grace period, then "unknown": never a timeout that
    // would be asked again for ever.
    let started = Instant::now();
    let err = client
        .await_request("r1", Duration::from_secs(600))
        .await
        .unwrap_err();
    assert!(matches!(err, GatewayError::UnknownRequest { .. }), "{err}");
    assert!(started.elapsed() >= grace);
    status.assert_async().await;
}

#[test]
fn jsm_without_its_rest_credential_is_a_config_error_naming_the_key() {
    let mut cfg = jsm_config("http://127.0.0.1:9");
    cfg.jsm.api_token = None;
    let err = GatewayClient::new(&cfg, Secret::new(KEY)).unwrap_err();
    assert!(
        err.to_string().contains("opsgenie.jsm.api_token_file"),
        "{err}"
    );
    let mut cfg = jsm_config("http://127.0.0.1:9");
    cfg.jsm.site = None;
    let err = GatewayClient::new(&cfg, Secret::new(KEY)).unwrap_err();
    assert!(err.to_string().contains("opsgenie.jsm.cloud_id"), "{err}");
}

#[test]
fn config_errors() {
    let cfg = config("http://127.0.0.1:9");
    assert!(matches!(
        GatewayClient::new(&cfg, Secret::new("")),
        Err(GatewayError::Config(_))
    ));
    assert!(matches!(
        GatewayClient::new(&config("ftp://example.com"), Secret::new(KEY)),
        Err(GatewayError::Config(_))
    ));
    let err = GatewayClient::new(&cfg, Secret::new("bad\nkey")).unwrap_err();
    assert!(!err.to_string().contains("bad"));
}

#[test]
fn loopback_detection() {
    let loopback = |u: &str| is_loopback(&url::Url::parse(u).unwrap());
    assert!(loopback("http://127.0.0.1:8080"));
    assert!(loopback("http://localhost"));
    assert!(loopback("http://[::1]:80"));
    assert!(!loopback("https://api.opsgenie.com"));
}
