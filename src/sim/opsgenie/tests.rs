//! Black-box tests of the fake over real HTTP on 127.0.0.1.

use super::*;

use std::time::Duration;

use axum::http::Method;
use serde_json::{json, Value};
use uuid::Uuid;

mod answers;
mod timeline;

const CONFIG_ONLY_KEY: &str = "99999999-8888-7777-6666-555555555555";

fn client() -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("test client")
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
    /// The body exactly as received.
    text: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn send(method: &str, url: &str, auth: Option<&str>, body: Option<Value>) -> Answer {
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client().request(method, url);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    answer(req).await
}

async fn answer(req: reqwest::RequestBuilder) -> Answer {
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        text,
    }
}

/// Sends `body` as is, with this `Content-Type` (none when `None`), with the fake's key.
async fn send_raw(
    fake: &FakeOpsgenie,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> Answer {
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client()
        .request(method, format!("{}{path}", fake.url()))
        .header("Authorization", format!("GenieKey {}", fake.api_key()))
        .body(body.to_owned());
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    answer(req).await
}

/// Calls the fake with its own key.
async fn call(fake: &FakeOpsgenie, method: &str, path: &str, body: Option<Value>) -> Answer {
    let auth = format!("GenieKey {}", fake.api_key());
    send(method, &format!("{}{path}", fake.url()), Some(&auth), body).await
}

async fn start(delay: Duration) -> FakeOpsgenie {
    FakeOpsgenie::start(FakeOpsgenieOptions {
        config_only_keys: vec![CONFIG_ONLY_KEY.into()],
        processing_delay: delay,
        ..Default::default()
    })
    .await
    .expect("start fake")
}

fn request_id(a: &Answer) -> String {
    a.body["requestId"].as_str().unwrap_or_default().to_owned()
}

/// The status of the asynchronous request `a` was answered with.
async fn status_of(fake: &FakeOpsgenie, a: &Answer) -> Answer {
    call(
        fake,
        "GET",
        &format!("/v2/alerts/requests/{}", request_id(a)),
        None,
    )
    .await
}

#[tokio::test]
async fn auth_errors_and_common_envelope() {
    let fake = start(Duration::ZERO).await;
    let url = format!("{}/v2/alerts", fake.url());
    let body = json!({"message": "m"});

    let a = send("POST", &url, None, Some(body.clone())).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.body["message"], "Could not authenticate");

    let a = send("POST", &url, Some("GenieKey not-a-key"), Some(body.clone())).await;
    assert_eq!(a.status, 422);
    assert_eq!(a.body["message"], "Key format is not valid!");

    let unknown = "GenieKey 00000000-0000-0000-0000-000000000000";
    let a = send("POST", &url, Some(unknown), Some(body.clone())).await;
    assert_eq!(a.status, 401);

    let config_only = format!("GenieKey {CONFIG_ONLY_KEY}");
    let a = send("POST", &url, Some(&config_only), Some(body.clone())).await;
    assert_eq!(a.status, 403);
    assert_eq!(a.body["code"], 40301);
    assert_eq!(
        a.body["message"],
        "To perform this action, use an API key from an API integration."
    );
    // Config-only keys may still ping and read.
    let ping = format!("{}/v2/heartbeats/hb/ping", fake.url());
    assert_eq!(
        send("GET", &ping, Some(&config_only), None).await.status,
        202
    );

    let a = call(&fake, "POST", "/v2/alerts", Some(body)).await;
    assert_eq!(a.status, 202);
    assert!(a.body["took"].is_number());
    let rid = request_id(&a);
    assert_eq!(a.header("x-request-id"), Some(rid.as_str()));
    assert!(a.header("x-response-time").is_some());
    assert_eq!(a.header("x-ratelimit-state"), Some("OK"));

    // Turning the key into a config-only key at run time.
    fake.set_config_only(&fake.api_key(), true);
    assert_eq!(
        call(&fake, "POST", "/v2/alerts", Some(json!({"message": "m"})))
            .await
            .status,
        403
    );
    fake.set_config_only(&fake.api_key(), false);

    let calls = fake.calls();
    assert_eq!(calls.len(), 7);
    assert!(!calls[0].auth_ok && calls[0].status == 401);
    assert!(calls[3].auth_ok && calls[3].status == 403);
    assert_eq!(calls[5].body, Some(json!({"message": "m"})));
    assert_eq!(fake.count_calls("POST", "/v2/alerts"), 6);
    fake.shutdown();
}

#[tokio::test(start_paused = true)]
async fn create_is_processed_after_the_delay() {
    let fake = start(Duration::from_secs(5)).await;
    let a = call(
        &fake,
        "POST",
        "/v2/alerts",
        Some(json!({"message": "hello", "alias": "a-1",
        "tags": ["t"], "details": {"k": "v"}, "note": "first"})),
    )
    .await;
    assert_eq!(a.status, 202);
    assert_eq!(a.body["result"], "Request will be processed");
    let rid = request_id(&a);

    let s = call(&fake, "GET", &format!("/v2/alerts/requests/{rid}"), None).await;
    assert_eq!(s.status, 404);
    assert_eq!(
        s.header("x-opsgenie-errortype"),
        Some("RequestNotProcessed")
    );
    assert!(fake.alerts().is_empty());
    let g = call(&fake, "GET", "/v2/alerts/a-1?identifierType=alias", None).await;
    assert_eq!(g.status, 404);

    let unknown = call(
        &fake,
        "GET",
        &format!("/v2/alerts/requests/{}", Uuid::new_v4()),
        None,
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.header("x-opsgenie-errortype"), None);

    fake.wait_until(Duration::from_secs(10), "alert a-1", |f| {
        f.alert_by_alias("a-1").is_some()
    })
    .await
    .expect("processed");
    let s = call(&fake, "GET", &format!("/v2/alerts/requests/{rid}"), None).await;
    assert_eq!(s.status, 200);
    let d = &s.body["data"];
    let alert = fake.alert_by_alias("a-1").expect("alert");
    assert_eq!(d["isSuccess"], true);
    assert_eq!(d["success"], true);
    assert_eq!(d["action"], "Create");
    assert_eq!(d["status"], "Created alert");
    assert_eq!(d["alertId"], alert.id.as_str());
    assert_eq!(d["alias"], "a-1");
    assert_eq!(d["integrationId"], fake.integration_id().as_str());
    assert!(d["processedAt"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(alert.message, "hello");
    assert_eq!(alert.source, "127.0.0.1");
    assert_eq!(alert.priority, "P3");
    assert_eq!(alert.notes.len(), 1);
    assert_eq!(alert.details.get("k").map(String::as_str), Some("v"));

    let g = call(&fake, "GET", &format!("/v2/alerts/{}", alert.id), None).await;
    assert_eq!(g.status, 200);
    assert_eq!(g.body["data"]["alias"], "a-1");
    assert_eq!(g.body["data"]["status"], "open");
    assert_eq!(g.body["data"]["details"]["k"], "v");
}

#[tokio::test]
async fn limits_give_422_and_bad_json_400() {
    let fake = start(Duration::ZERO).await;
    let cases = [
        (json!({"message": "x".repeat(131)}), "message"),
        (json!({"alias": "a"}), "message"),
        (json!({"message": "m", "alias": "a".repeat(513)}), "alias"),
        (
            json!({"message": "m", "description": "d".repeat(15_001)}),
            "description",
        ),
        (json!({"message": "m", "tags": vec!["t"; 21]}), "tags"),
        (json!({"message": "m", "tags": ["t".repeat(51)]}), "tags"),
        (json!({"message": "m", "details": {"k": 1}}), "details#k"),
        (
            json!({"message": "m", "details": {"k": "v".repeat(8_000)}}),
            "details",
        ),
        (json!({"message": "m", "entity": "e".repeat(513)}), "entity"),
        (json!({"message": "m", "source": "s".repeat(101)}), "source"),
        (json!({"message": "m", "user": "u".repeat(101)}), "user"),
        (json!({"message": "m", "note": "n".repeat(25_001)}), "note"),
        (json!({"message": "m", "priority": "P0"}), "priority"),
        (
            json!({"message": "m", "responders": [{"type": "bb", "id": "x"}]}),
            "responders#type",
        ),
        (
            json!({"message": "m", "responders": [{"type": "team"}]}),
            "responders#id",
        ),
    ];
    for (body, field) in cases {
        let a = call(&fake, "POST", "/v2/alerts", Some(body)).await;
        assert_eq!(a.status, 422, "{field}");
        assert!(a.body["errors"].get(field).is_some(), "{field}: {}", a.body);
    }
    let url = format!("{}/v2/alerts", fake.url());
    let resp = client()
        .post(&url)
        .header("Authorization", format!("GenieKey {}", fake.api_key()))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 400);
    // Notes need a note.
    let a = call(
        &fake,
        "POST",
        "/v2/alerts/x/notes",
        Some(json!({"user": "u"})),
    )
    .await;
    assert_eq!(a.status, 422);
    assert!(fake.alerts().is_empty());
}

#[tokio::test]
async fn alias_dedup_and_recreate_after_close() {
    let fake = start(Duration::ZERO).await;
    let body = json!({"message": "m", "alias": "req/1"});
    let r1 = request_id(&call(&fake, "POST", "/v2/alerts", Some(body.clone())).await);
    let r2 = request_id(&call(&fake, "POST", "/v2/alerts", Some(body.clone())).await);
    let s1 = call(&fake, "GET", &format!("/v2/alerts/requests/{r1}"), None).await;
    let s2 = call(&fake, "GET", &format!("/v2/alerts/requests/{r2}"), None).await;
    assert_eq!(s2.body["data"]["isSuccess"], true);
    assert_eq!(s1.body["data"]["alertId"], s2.body["data"]["alertId"]);
    let alerts = fake.alerts();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].count, 2);

    // Close by alias (percent-encoded slash), with a note.
    let c = call(
        &fake,
        "POST",
        "/v2/alerts/req%2F1/close?identifierType=alias",
        Some(json!({"note": "resolved", "user": "bob", "source": "teleport"})),
    )
    .await;
    assert_eq!(c.status, 202);
    let closed = fake.alert_by_alias("req/1").expect("alert");
    assert_eq!(closed.status, AlertStatus::Closed);
    assert!(closed.closed_at.is_some());
    assert_eq!(closed.closed_by.as_deref(), Some("bob"));
    assert_eq!(
        closed.notes.last().map(|n| n.text.as_str()),
        Some("resolved")
    );

    let r3 = request_id(&call(&fake, "POST", "/v2/alerts", Some(body)).await);
    let s3 = call(&fake, "GET", &format!("/v2/alerts/requests/{r3}"), None).await;
    assert_ne!(s3.body["data"]["alertId"], s1.body["data"]["alertId"]);
    let newest = fake.alert_by_alias("req/1").expect("alert");
    assert_eq!(newest.status, AlertStatus::Open);
    assert_eq!(newest.count, 1);
    assert_eq!(fake.alerts().len(), 2);
    let g = call(
        &fake,
        "GET",
        "/v2/alerts/req%2F1?identifierType=alias",
        None,
    )
    .await;
    assert_eq!(g.body["data"]["id"], newest.id.as_str());
}

#[tokio::test]
async fn notes_and_close_by_alias_tiny_and_jsm_prefix() {
    let fake = start(Duration::ZERO).await;
    call(
        &fake,
        "POST",
        "/v2/alerts",
        Some(json!({"message": "m", "alias": "al"})),
    )
    .await;
    let a = call(
        &fake,
        "POST",
        "/v2/alerts/al/notes?identifierType=alias",
        Some(json!({"note": "approved by alice", "user": "alice", "source": "teleport"})),
    )
    .await;
    assert_eq!(a.status, 202);
    let s = status_of(&fake, &a).await;
    assert_eq!(s.body["data"]["action"], "AddNote");
    assert_eq!(s.body["data"]["isSuccess"], true);

    // Same shapes under the JSM Integration Events prefix.
    let a = call(
        &fake,
        "POST",
        "/jsm/ops/integration/v2/alerts/al/notes?identifierType=alias",
        Some(json!({"note": "second"})),
    )
    .await;
    assert_eq!(a.status, 202);
    let alert = fake.alert_by_alias("al").expect("alert");
    let texts: Vec<_> = alert.notes.iter().map(|n| n.text.as_str()).collect();
    assert_eq!(texts, ["approved by alice", "second"]);
    assert_eq!(alert.notes[0].user.as_deref(), Some("alice"));
    assert_eq!(alert.notes[0].source.as_deref(), Some("teleport"));
    assert_eq!(fake.count_calls("POST", "/v2/alerts/al/notes"), 2);

    // Unknown alert: still 202, then a failed status.
    let a = call(
        &fake,
        "POST",
        "/v2/alerts/nope/notes?identifierType=alias",
        Some(json!({"note": "n"})),
    )
    .await;
    assert_eq!(a.status, 202);
    let s = status_of(&fake, &a).await;
    assert_eq!(s.status, 200);
    assert_eq!(s.body["data"]["isSuccess"], false);
    assert_eq!(s.body["data"]["status"], "Alert does not exist");
    assert_eq!(s.body["data"]["alertId"], "");

    // Close by tiny id, without a body.
    let c = call(
        &fake,
        "POST",
        &format!("/v2/alerts/{}/close?identifierType=tiny", alert.tiny_id),
        None,
    )
    .await;
    assert_eq!(c.status, 202);
    let s = status_of(&fake, &c).await;
    assert_eq!(s.body["data"]["status"], "Closed alert");
    assert_eq!(
        fake.alert_by_alias("al").map(|a| a.status),
        Some(AlertStatus::Closed)
    );
    let bad = call(
        &fake,
        "POST",
        "/v2/alerts/al/close?identifierType=bogus",
        None,
    )
    .await;
    assert_eq!(bad.status, 422);
}

#[tokio::test]
async fn on_calls_flat_nested_and_404() {
    let fake = start(Duration::ZERO).await;
    let id = fake.add_schedule("ops", None, &["alice@example.com", "bob@example.com"]);
    let a = call(
        &fake,
        "GET",
        "/v2/schedules/ops/on-calls?scheduleIdentifierType=name&flat=true",
        None,
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["data"]["_parent"]["id"], id.as_str());
    assert_eq!(a.body["data"]["_parent"]["name"], "ops");
    assert_eq!(a.body["data"]["_parent"]["enabled"], true);
    assert_eq!(
        a.body["data"]["onCallRecipients"],
        json!(["alice@example.com", "bob@example.com"])
    );

    let a = call(&fake, "GET", &format!("/v2/schedules/{id}/on-calls"), None).await;
    let p = &a.body["data"]["onCallParticipants"];
    assert_eq!(p[0]["name"], "alice@example.com");
    assert_eq!(p[0]["type"], "user");
    assert!(p[0]["id"].as_str().is_some_and(|s| !s.is_empty()));

    // A name given with the default identifier type (id) does not resolve.
    assert_eq!(
        call(&fake, "GET", "/v2/schedules/ops/on-calls?flat=true", None)
            .await
            .status,
        404
    );
    let a = call(
        &fake,
        "GET",
        "/v2/schedules/nope/on-calls?scheduleIdentifierType=name",
        None,
    )
    .await;
    assert_eq!(a.status, 404);

    assert!(fake.set_on_call("ops", &["carol@example.com"]));
    assert!(!fake.set_on_call("missing", &[]));
    let a = call(
        &fake,
        "GET",
        "/jsm/ops/integration/v2/schedules/ops/on-calls?scheduleIdentifierType=name&flat=true",
        None,
    )
    .await;
    assert_eq!(
        a.body["data"]["onCallRecipients"],
        json!(["carol@example.com"])
    );
}

#[tokio::test]
async fn heartbeat_pings() {
    let fake = start(Duration::ZERO).await;
    for (method, path) in [
        ("GET", "/v2/heartbeats/teleport-access-heartbeat/ping"),
        ("POST", "/v2/heartbeats/any/ping"),
        ("GET", "/jsm/ops/integration/v2/heartbeats/x/ping"),
    ] {
        let a = call(&fake, method, path, None).await;
        assert_eq!(a.status, 202, "{method} {path}");
        assert_eq!(a.body["result"], "PONG - Heartbeat received");
    }
    assert_eq!(
        call(&fake, "DELETE", "/v2/heartbeats/x/ping", None)
            .await
            .status,
        405
    );
    assert_eq!(call(&fake, "GET", "/v2/nothing", None).await.status, 404);
}

#[tokio::test]
async fn rate_limits_answer_429_with_headers() {
    let fake = FakeOpsgenie::start(FakeOpsgenieOptions {
        rate_limits: FakeRateLimits {
            // Two calls a minute: a refill takes 30 s, far longer than this test.
            alert: Some((1000, 2)),
            create_per_second: Some(1),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .expect("start");
    let ok = call(&fake, "POST", "/v2/alerts", Some(json!({"message": "m"}))).await;
    assert_eq!(ok.status, 202);
    // The create bucket (1/s) is empty now.
    let a = call(&fake, "POST", "/v2/alerts", Some(json!({"message": "m"}))).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.header("x-ratelimit-period-in-sec"), Some("1"));
    // A non-create alert call takes the second minute token, then the minute bucket trips.
    assert_eq!(call(&fake, "GET", "/v2/alerts/x", None).await.status, 404);
    let a = call(&fake, "GET", "/v2/alerts/x", None).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.header("x-ratelimit-state"), Some("THROTTLED"));
    assert_eq!(a.header("x-ratelimit-reason"), Some("ACCOUNT"));
    assert_eq!(a.header("x-ratelimit-period-in-sec"), Some("60"));
    assert_eq!(
        a.body["message"],
        "You are making too many requests! To avoid errors, we recommend you limit requests."
    );
    assert!(a.body["requestId"].is_string());
    // Other domains are unaffected.
    let hb = call(&fake, "GET", "/v2/heartbeats/x/ping", None).await;
    assert_eq!(hb.status, 202);
    assert_eq!(hb.header("x-ratelimit-state"), Some("OK"));

    // An injected burst.
    fake.faults().throttle_next(2);
    assert_eq!(
        call(&fake, "GET", "/v2/heartbeats/x/ping", None)
            .await
            .status,
        429
    );
    assert_eq!(
        call(&fake, "GET", "/v2/heartbeats/x/ping", None)
            .await
            .status,
        429
    );
    assert_eq!(
        call(&fake, "GET", "/v2/heartbeats/x/ping", None)
            .await
            .status,
        202
    );
    assert_eq!(fake.throttled_count(), 4);

    fake.set_rate_limits(FakeRateLimits::default());
    assert_eq!(call(&fake, "GET", "/v2/alerts/x", None).await.status, 404);
}

#[tokio::test]
async fn list_open_alerts_by_tag() {
    let fake = start(Duration::ZERO).await;
    for (alias, tags) in [
        ("a", vec!["sweep"]),
        ("b", vec!["sweep", "x"]),
        ("c", vec!["other"]),
    ] {
        call(
            &fake,
            "POST",
            "/v2/alerts",
            Some(json!({"message": alias, "alias": alias, "tags": tags})),
        )
        .await;
    }
    call(
        &fake,
        "POST",
        "/v2/alerts/a/close?identifierType=alias",
        None,
    )
    .await;

    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("query", r#"status:open AND tag:"sweep""#)
        .append_pair("limit", "100")
        .finish();
    let a = call(&fake, "GET", &format!("/v2/alerts?{q}"), None).await;
    assert_eq!(a.status, 200);
    let data = a.body["data"].as_array().expect("data");
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["alias"], "b");
    assert_eq!(data[0]["status"], "open");
    assert_eq!(data[0]["tags"], json!(["sweep", "x"]));
    assert!(data[0]["id"].is_string() && data[0]["message"] == "b");
    assert!(a.body["paging"]["first"].is_string());

    let a = call(&fake, "GET", "/v2/alerts?query=tag:sweep&limit=1", None).await;
    let data = a.body["data"].as_array().expect("data");
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["alias"], "b", "newest first");
    assert!(a.body["paging"]["next"].is_string());
    let a = call(
        &fake,
        "GET",
        "/v2/alerts?query=tag:sweep&limit=1&offset=1",
        None,
    )
    .await;
    assert_eq!(a.body["data"][0]["alias"], "a");

    let a = call(&fake, "GET", "/v2/alerts/count?query=status%3Aopen", None).await;
    assert_eq!(a.body["data"]["count"], 2);
    assert_eq!(
        call(&fake, "GET", "/v2/alerts?query=a%20OR%20b", None)
            .await
            .status,
        422
    );
    assert_eq!(
        call(&fake, "GET", "/v2/alerts?limit=0", None).await.status,
        422
    );
}

#[tokio::test]
async fn faults_inject_errors_and_latency() {
    let fake = start(Duration::ZERO).await;
    fake.faults().set_error_rate(1.0);
    let a = call(&fake, "POST", "/v2/alerts", Some(json!({"message": "m"}))).await;
    assert!((500..600).contains(&a.status));
    assert!(a.body["requestId"].is_string());
    assert!(fake.alerts().is_empty());
    // Lost answers: the alert is created although the caller sees a 5xx.
    fake.faults().set_errors_after_effect(true);
    let a = call(
        &fake,
        "POST",
        "/v2/alerts",
        Some(json!({"message": "m", "alias": "lost"})),
    )
    .await;
    assert!((500..600).contains(&a.status));
    assert!(fake.alert_by_alias("lost").is_some());
    fake.faults().set_error_rate(0.0);
    fake.faults().set_fixed_latency(Duration::from_millis(30));
    #[allow(
        clippy::disallowed_methods,
        reason = "the fake's injected latency is real time, measured as a client sees it"
    )]
    let t = std::time::Instant::now();
    assert_eq!(
        call(&fake, "GET", "/v2/heartbeats/x/ping", None)
            .await
            .status,
        202
    );
    assert!(t.elapsed() >= Duration::from_millis(30));
    fake.faults().clear();
    let err = fake
        .wait_until(Duration::from_millis(20), "never", |_| false)
        .await
        .unwrap_err();
    assert!(err.contains("never"));
}

#[tokio::test(start_paused = true)]
async fn requests_apply_in_order_of_receipt() {
    let fake = start(Duration::from_secs(2)).await;
    call(
        &fake,
        "POST",
        "/v2/alerts",
        Some(json!({"message": "m", "alias": "o"})),
    )
    .await;
    call(
        &fake,
        "POST",
        "/v2/alerts/o/notes?identifierType=alias",
        Some(json!({"note": "n1"})),
    )
    .await;
    call(
        &fake,
        "POST",
        "/v2/alerts/o/close?identifierType=alias",
        Some(json!({"note": "bye"})),
    )
    .await;
    assert_eq!(fake.pending_requests(), 3);
    fake.wait_until(Duration::from_secs(5), "all processed", |f| {
        f.pending_requests() == 0
    })
    .await
    .expect("processed");
    let a = fake.alert_by_alias("o").expect("alert");
    assert_eq!(a.status, AlertStatus::Closed);
    let texts: Vec<_> = a.notes.iter().map(|n| n.text.as_str()).collect();
    assert_eq!(texts, ["n1", "bye"]);
}

#[tokio::test]
async fn concurrent_creates_dedup_by_alias() {
    let fake = start(Duration::from_millis(20)).await;
    let http = client();
    let url = format!("{}/v2/alerts", fake.url());
    let auth = format!("GenieKey {}", fake.api_key());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (http, url, auth) = (http.clone(), url.clone(), auth.clone());
        tasks.spawn(async move {
            let body = json!({"message": "m", "alias": format!("alias-{}", i % 20)});
            let resp = http
                .post(&url)
                .header("Authorization", auth)
                .json(&body)
                .send()
                .await;
            resp.map(|r| r.status().as_u16()).unwrap_or(0)
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.expect("task"), 202);
    }
    fake.wait_until(Duration::from_secs(10), "all processed", |f| {
        f.pending_requests() == 0
    })
    .await
    .expect("processed");
    let alerts = fake.alerts();
    assert_eq!(alerts.len(), 20);
    assert_eq!(alerts.iter().map(|a| a.count).sum::<u64>(), 200);
    assert_eq!(fake.count_calls("POST", "/v2/alerts"), 200);
}

#[tokio::test]
async fn the_fake_stops_and_frees_its_state_once_its_last_handle_is_dropped() {
    let fake = start(Duration::ZERO).await;
    let state = std::sync::Arc::downgrade(&fake.inner);
    let mut stopped = fake.inner.shutdown.subscribe();
    let clone = fake.clone();
    drop(fake);
    assert!(!*stopped.borrow(), "a clone still uses it");
    drop(clone);
    tokio::time::timeout(Duration::from_secs(10), stopped.wait_for(|s| *s))
        .await
        .expect("stopped in time")
        .expect("stop signal");
    // The server and processor tasks end and let go of everything the fake stored.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while state.strong_count() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "state still held");
        tokio::task::yield_now().await;
    }
}
