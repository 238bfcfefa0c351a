//! The fake JSM against a plain HTTP client: what it accepts, refuses and records.

use std::time::Duration;

use serde_json::{json, Value};

use super::*;

const WAIT: Duration = Duration::from_secs(10);

struct Client {
    fake: FakeJsm,
    http: reqwest::Client,
}

impl Client {
    async fn new(options: FakeJsmOptions) -> Self {
        let fake = FakeJsm::start(options).await.expect("fake JSM");
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Self { fake, http }
    }

    async fn send(&self, builder: reqwest::RequestBuilder) -> (u16, Value) {
        let response = builder.send().await.expect("answer");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// A call to the Integration Events API with the default key.
    async fn events(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut b = self
            .http
            .request(method, format!("{}{path}", self.fake.integration_url()))
            .header("Authorization", format!("GenieKey {DEFAULT_GENIE_KEY}"));
        if let Some(body) = body {
            b = b.json(&body);
        }
        self.send(b).await
    }

    /// A GET on the REST API (path after the cloudId) with the default account.
    async fn rest(&self, path: &str) -> (u16, Value) {
        let b = self
            .http
            .get(format!("{}{path}", self.fake.rest_url()))
            .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN));
        self.send(b).await
    }

    /// A GET on the site (user API, tenant info) with the default account.
    async fn site(&self, path: &str) -> (u16, Value) {
        let b = self
            .http
            .get(format!("{}{path}", self.fake.url()))
            .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN));
        self.send(b).await
    }

    /// Polls the REST request status until it is processed.
    async fn processed(&self, request_id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, body) = self
                .rest(&format!("/v1/alerts/requests/{request_id}"))
                .await;
            if status == 200 {
                return body;
            }
            assert_eq!(status, 404, "{body}");
            assert!(tokio::time::Instant::now() < deadline, "never processed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn create_body(alias: &str) -> Value {
    json!({
        "message": "alice requested editor",
        "alias": alias,
        "description": "reason: deploy",
        "tags": ["teleport-access-request"],
        "details": {"request_id": "abc"},
        "source": "teleport-opsgenie",
        "priority": "P3",
    })
}

#[tokio::test]
async fn integration_events_answer_the_four_operations_only() {
    let c = Client::new(FakeJsmOptions::default()).await;
    let post = reqwest::Method::POST;
    let (status, created) = c
        .events(
            post.clone(),
            "/v2/alerts",
            Some(create_body("teleport-access-request/abc")),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["result"], "Request will be processed");
    let request_id = created["requestId"].as_str().unwrap().to_owned();
    let alias = "teleport-access-request%2Fabc";
    for verb in ["notes", "acknowledge", "close"] {
        let (status, body) = c
            .events(
                post.clone(),
                &format!("/v2/alerts/{alias}/{verb}?identifierType=alias"),
                Some(json!({"note": format!("{verb} note"), "source": "teleport-opsgenie"})),
            )
            .await;
        assert_eq!(status, 202, "{verb}: {body}");
    }
    // What the Opsgenie API also has, and this one does not document: 404, and recorded.
    let get = reqwest::Method::GET;
    let (status, _) = c
        .events(
            get.clone(),
            &format!("/v2/alerts/requests/{request_id}"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = c.events(get.clone(), "/v2/heartbeats/hb/ping", None).await;
    assert_eq!(status, 404);
    let (status, _) = c.events(get, "/v2/alerts?query=status%3Aopen", None).await;
    assert_eq!(status, 404);

    let undocumented: Vec<String> = c
        .fake
        .undocumented_calls()
        .iter()
        .map(|call| call.path.clone())
        .collect();
    assert_eq!(
        undocumented,
        [
            format!("/jsm/ops/integration/v2/alerts/requests/{request_id}"),
            "/jsm/ops/integration/v2/heartbeats/hb/ping".to_owned(),
            "/jsm/ops/integration/v2/alerts".to_owned(),
        ]
    );
    // The create is recorded with its exact body and operation.
    let creates = c.fake.calls_to("create_alert");
    assert_eq!(creates.len(), 1);
    assert_eq!(
        creates[0].body,
        Some(create_body("teleport-access-request/abc"))
    );
    assert_eq!(creates[0].api, Api::IntegrationEvents);

    // Applied in order: a note, then acknowledged, then closed.
    c.fake
        .wait_until(WAIT, "the close", |f| {
            f.alert_by_alias("teleport-access-request/abc")
                .is_some_and(|a| a.status == AlertStatus::Closed)
        })
        .await
        .unwrap();
    let alert = c
        .fake
        .alert_by_alias("teleport-access-request/abc")
        .unwrap();
    let notes: Vec<&str> = alert.notes.iter().map(|n| n.note.as_str()).collect();
    assert_eq!(notes, ["notes note", "acknowledge note", "close note"]);
    assert_eq!(alert.details["request_id"], "abc");
}

#[tokio::test]
async fn genie_key_is_the_only_credential_of_integration_events() {
    let c = Client::new(FakeJsmOptions::default()).await;
    let url = format!("{}/v2/alerts", c.fake.integration_url());
    let body = create_body("a");
    let none = c.send(c.http.post(&url).json(&body)).await;
    assert_eq!(none.0, 401);
    assert_eq!(none.1["message"], "Could not authenticate");
    let token = c
        .send(
            c.http
                .post(&url)
                .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN))
                .json(&body),
        )
        .await;
    assert_eq!(token.0, 401);
    let malformed = c
        .send(
            c.http
                .post(&url)
                .header("Authorization", "GenieKey nope")
                .json(&body),
        )
        .await;
    assert_eq!(malformed.0, 422);
    let unknown = c
        .send(
            c.http
                .post(&url)
                .header("Authorization", format!("GenieKey {}", Uuid::new_v4()))
                .json(&body),
        )
        .await;
    assert_eq!(unknown.0, 401);
    // Not JSON: 415; no message: 422 naming the field.
    let text = c
        .send(
            c.http
                .post(&url)
                .header("Authorization", format!("GenieKey {DEFAULT_GENIE_KEY}"))
                .header("Content-Type", "text/plain")
                .body("hello"),
        )
        .await;
    assert_eq!(text.0, 415);
    let (status, empty) = c
        .events(
            reqwest::Method::POST,
            "/v2/alerts",
            Some(json!({"alias": "x"})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(empty["errors"]["message"], "Message can not be empty.");
    // 131 UTF-16 units (65 emoji and one letter): over the limit.
    let long = format!("{}x", "😀".repeat(65));
    let (status, _) = c
        .events(
            reqwest::Method::POST,
            "/v2/alerts",
            Some(json!({"message": long})),
        )
        .await;
    assert_eq!(status, 422);
    assert!(c.fake.alerts().is_empty());
    assert!(c.fake.undocumented_calls().is_empty());
}

#[tokio::test]
async fn request_status_is_on_rest_and_unknown_until_processed() {
    let c = Client::new(FakeJsmOptions {
        processing_delay: Duration::from_millis(150),
        ..FakeJsmOptions::default()
    })
    .await;
    let (_, created) = c
        .events(reqwest::Method::POST, "/v2/alerts", Some(create_body("a1")))
        .await;
    let request_id = created["requestId"].as_str().unwrap();
    // Not processed yet: JSM answers as for an unknown request.
    let (status, body) = c.rest(&format!("/v1/alerts/requests/{request_id}")).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (404, Some("Request is not found"))
    );
    let status = c.processed(request_id).await;
    // A bare object, no `data` envelope.
    assert_eq!(status["action"], "Create");
    assert_eq!(status["isSuccess"], true);
    assert_eq!(status["status"], "Created alert");
    assert_eq!(status["alias"], "a1");
    assert_eq!(status["integrationId"], c.fake.integration_id());
    let alert_id = status["alertId"].as_str().unwrap().to_owned();
    assert_eq!(alert_id, c.fake.alert_by_alias("a1").unwrap().id);

    // A note for an alias nobody has: accepted, then reported as failed.
    let (_, accepted) = c
        .events(
            reqwest::Method::POST,
            "/v2/alerts/nobody/notes?identifierType=alias",
            Some(json!({"note": "n"})),
        )
        .await;
    let failed = c.processed(accepted["requestId"].as_str().unwrap()).await;
    assert_eq!(failed["isSuccess"], false);
    assert_eq!(failed["status"], "Alert does not exist");

    // By id and by alias; an alias is not an id.
    let (status, by_id) = c.rest(&format!("/v1/alerts/{alert_id}")).await;
    assert_eq!((status, by_id["alias"].as_str()), (200, Some("a1")));
    assert_eq!(by_id["extraProperties"]["request_id"], "abc");
    assert!(by_id.get("details").is_none());
    let (status, by_alias) = c.rest("/v1/alerts/alias?alias=a1").await;
    assert_eq!(
        (status, by_alias["id"].as_str()),
        (200, Some(alert_id.as_str()))
    );
    let (status, _) = c.rest("/v1/alerts/a1").await;
    assert_eq!(status, 404);
    assert!(c.fake.undocumented_calls().is_empty());
}

#[tokio::test]
async fn rest_needs_basic_auth_and_the_cloud_id() {
    let c = Client::new(FakeJsmOptions::default()).await;
    let path = "/v1/schedules";
    let url = |cloud: &str| format!("{}{REST_PREFIX}/{cloud}{path}", c.fake.url());
    let cloud = c.fake.cloud_id();
    let none = c.send(c.http.get(url(&cloud))).await;
    assert_eq!(none.0, 401);
    assert_eq!(none.1["code"], 401);
    let wrong = c
        .send(
            c.http
                .get(url(&cloud))
                .basic_auth(DEFAULT_EMAIL, Some("wrong")),
        )
        .await;
    assert_eq!(wrong.0, 401);
    let genie = c
        .send(
            c.http
                .get(url(&cloud))
                .header("Authorization", format!("GenieKey {DEFAULT_GENIE_KEY}")),
        )
        .await;
    assert_eq!(genie.0, 401);
    let other_site = c
        .send(
            c.http
                .get(url("00000000-0000-0000-0000-000000000000"))
                .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN)),
        )
        .await;
    assert_eq!(other_site.0, 404);
    assert!(other_site.1["errors"][0]["title"].is_string());
    let (status, _) = c.rest(path).await;
    assert_eq!(status, 200);
    // An undocumented REST path is refused and recorded.
    let (status, _) = c.rest("/v1/alerts/some-id/logs").await;
    assert_eq!(status, 404);
    let undocumented = c.fake.undocumented_calls();
    assert_eq!(undocumented.len(), 1);
    assert_eq!(undocumented[0].api, Api::Rest);
    assert!(undocumented[0].auth_ok);
}

#[tokio::test]
async fn schedules_by_name_ids_only_and_flat_on_calls() {
    let c = Client::new(FakeJsmOptions::default()).await;
    let primary = c
        .fake
        .add_schedule("SRE Primary", None, &["5b2b0e011b3a756623f4e25e"]);
    c.fake.add_schedule("SRE Secondary", None, &[]);
    c.fake.add_schedule("Database", None, &[]);

    let (_, exact) = c.rest("/v1/schedules?query=sre%20primary").await;
    let names: Vec<&str> = exact["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["SRE Primary"]);
    assert_eq!(exact["values"][0]["id"], primary);
    assert!(exact["links"].get("next").is_none());

    // A prefix search, a page at a time.
    let (_, first) = c.rest("/v1/schedules?query=sre*&size=1").await;
    assert_eq!(first["values"].as_array().unwrap().len(), 1);
    let next = first["links"]["next"]
        .as_str()
        .expect("next page")
        .to_owned();
    assert_eq!(next, "/v1/schedules?query=sre%2A&offset=1&size=1");
    let (_, second) = c.rest(&next).await;
    assert_eq!(second["values"][0]["name"], "SRE Secondary");
    assert!(second["links"].get("next").is_none());
    let (status, _) = c.rest("/v1/schedules?size=51").await;
    assert_eq!(status, 400);

    // Ids only: a name in the path is an unknown id.
    let (status, err) = c
        .rest("/v1/schedules/SRE%20Primary/on-calls?flat=true")
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        err["errors"][0]["title"],
        "No schedule exists with id [SRE Primary]"
    );
    let (status, flat) = c
        .rest(&format!("/v1/schedules/{primary}/on-calls?flat=true"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(flat, json!({"onCallUsers": ["5b2b0e011b3a756623f4e25e"]}));
    let (_, nested) = c.rest(&format!("/v1/schedules/{primary}/on-calls")).await;
    assert_eq!(
        nested,
        json!({"onCallParticipants": [{"id": "5b2b0e011b3a756623f4e25e", "type": "user"}]})
    );
    assert_eq!(c.fake.calls_to("get_on_calls").len(), 3);
}

fn t(s: &str) -> SystemTime {
    humantime::parse_rfc3339(s).unwrap()
}

#[tokio::test]
async fn timelines_are_set_per_schedule_and_drive_on_calls() {
    let c = Client::new(FakeJsmOptions::default()).await;
    let id = c
        .fake
        .add_schedule("Primary", None, &["ignored-once-a-timeline-is-set"]);
    let period = |start: &str, end: &str, user: &str| Period {
        start: t(start),
        end: t(end),
        kind: "base".into(),
        responder_type: "user".into(),
        responder_id: user.into(),
    };
    assert!(c.fake.set_timeline(
        &id,
        vec![Rotation {
            id: "r1".into(),
            name: "Primary Rotation".into(),
            periods: vec![
                period("2024-01-28T09:00:00Z", "2024-02-01T09:00:00Z", "alice-id"),
                period("2024-02-01T09:00:00Z", "2024-02-08T09:00:00Z", "bob-id"),
            ],
        }],
    ));
    let (status, tl) = c
        .rest(&format!(
            "/v1/schedules/{id}/timeline?interval=1&intervalUnit=weeks&date=2024-02-01T08:00:00Z"
        ))
        .await;
    assert_eq!(status, 200, "{tl}");
    assert_eq!(tl["startDate"], "2024-01-29T00:00:00.000Z");
    assert_eq!(tl["endDate"], "2024-02-05T00:00:00.000Z");
    let periods = &tl["finalTimeline"]["rotations"][0]["periods"];
    // Cut to the window, ids only.
    assert_eq!(periods[0]["startDate"], "2024-01-29T00:00:00.000Z");
    assert_eq!(periods[0]["endDate"], "2024-02-01T09:00:00.000Z");
    assert_eq!(
        periods[0]["responder"],
        json!({"id": "alice-id", "type": "user"})
    );
    assert_eq!(periods[1]["endDate"], "2024-02-05T00:00:00.000Z");
    // On-calls at a date follow the timeline.
    let (_, at) = c
        .rest(&format!(
            "/v1/schedules/{id}/on-calls?flat=true&date=2024-02-01T09:00:00Z"
        ))
        .await;
    assert_eq!(at, json!({"onCallUsers": ["bob-id"]}));
    let (status, _) = c
        .rest(&format!("/v1/schedules/{id}/timeline?intervalUnit=years"))
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn alerts_and_notes_page_with_values_and_links() {
    let c = Client::new(FakeJsmOptions::default()).await;
    for alias in ["a", "b", "c"] {
        c.events(
            reqwest::Method::POST,
            "/v2/alerts",
            Some(create_body(alias)),
        )
        .await;
    }
    c.events(
        reqwest::Method::POST,
        "/v2/alerts",
        Some(json!({"message": "untagged", "alias": "d"})),
    )
    .await;
    c.fake
        .wait_until(WAIT, "four alerts", |f| f.alerts().len() == 4)
        .await
        .unwrap();
    let query = "query=status%3Aopen%20AND%20tag%3A%22teleport-access-request%22";
    let (status, page) = c.rest(&format!("/v1/alerts?{query}&size=2")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["count"], 3);
    let aliases = |p: &Value| -> Vec<String> {
        p["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["alias"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(aliases(&page), ["c", "b"]);
    let next = page["links"]["next"].as_str().unwrap().to_owned();
    let (_, last) = c.rest(&next).await;
    assert_eq!(aliases(&last), ["a"]);
    assert!(last["links"].get("next").is_none());
    let (status, _) = c.rest("/v1/alerts?size=101").await;
    assert_eq!(status, 400);
    let (status, _) = c.rest("/v1/alerts?offset=19950&size=100").await;
    assert_eq!(status, 400);

    let id = c.fake.alert_by_alias("a").unwrap().id;
    for n in 0..3 {
        c.events(
            reqwest::Method::POST,
            &format!("/v2/alerts/{id}/notes"),
            Some(json!({"note": format!("note {n}")})),
        )
        .await;
    }
    c.fake
        .wait_until(WAIT, "three notes", |f| {
            f.alert_by_alias("a").is_some_and(|a| a.notes.len() == 3)
        })
        .await
        .unwrap();
    let (_, first) = c.rest(&format!("/v1/alerts/{id}/notes?size=2")).await;
    let texts = |p: &Value| -> Vec<String> {
        p["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["note"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(texts(&first), ["note 0", "note 1"]);
    let (_, second) = c.rest(first["links"]["next"].as_str().unwrap()).await;
    assert_eq!(texts(&second), ["note 2"]);
    assert!(second["links"].get("next").is_none());
    assert!(c.fake.undocumented_calls().is_empty());
}

#[tokio::test]
async fn users_hide_emails_their_profiles_hide() {
    let c = Client::new(FakeJsmOptions::default()).await;
    c.fake
        .add_user("acc-alice", "Alice", "alice@example.com", true);
    c.fake.add_user("acc-bob", "Bob", "bob@example.com", false);
    let (status, alice) = c.site("/rest/api/3/user?accountId=acc-alice").await;
    assert_eq!(status, 200);
    assert_eq!(alice["emailAddress"], "alice@example.com");
    assert_eq!(alice["accountId"], "acc-alice");
    let cloud = c.fake.cloud_id();
    let (status, bob) = c
        .site(&format!(
            "/ex/jira/{cloud}/rest/api/3/user?accountId=acc-bob"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(bob["displayName"], "Bob");
    assert!(bob.get("emailAddress").is_none(), "{bob}");
    let (status, _) = c.site("/rest/api/3/user?accountId=acc-nobody").await;
    assert_eq!(status, 404);
    let (status, bulk) = c
        .site("/rest/api/3/user/bulk?accountId=acc-alice&accountId=acc-bob&accountId=x")
        .await;
    assert_eq!(status, 200);
    assert_eq!(bulk["total"], 2);
    assert_eq!(bulk["isLast"], true);
    let none = c
        .send(c.http.get(format!(
            "{}/rest/api/3/user?accountId=acc-alice",
            c.fake.url()
        )))
        .await;
    assert_eq!(none.0, 401);
    // The cloudId, without credentials.
    let (status, tenant) = c
        .send(c.http.get(format!("{}/_edge/tenant_info", c.fake.url())))
        .await;
    assert_eq!(status, 200);
    assert_eq!(tenant, json!({"cloudId": cloud}));
}

#[tokio::test]
async fn heartbeats_are_team_scoped_on_rest() {
    let c = Client::new(FakeJsmOptions::default()).await;
    let team = c.fake.add_team();
    let (status, pong) = c
        .rest(&format!(
            "/v1/teams/{team}/heartbeats/ping?name=teleport-access-heartbeat"
        ))
        .await;
    assert_eq!(status, 202);
    assert_eq!(pong["result"], "PONG - Heartbeat received");
    assert_eq!(
        c.fake.pings(),
        [(team.clone(), "teleport-access-heartbeat".to_owned())]
    );
    let (status, _) = c
        .rest(&format!(
            "/v1/teams/{}/heartbeats/ping?name=x",
            Uuid::new_v4()
        ))
        .await;
    assert_eq!(status, 404);
    let (status, _) = c.rest(&format!("/v1/teams/{team}/heartbeats/ping")).await;
    assert_eq!(status, 400);
    // The Opsgenie-style path does not exist on REST.
    let (status, _) = c
        .rest("/v1/heartbeats/teleport-access-heartbeat/ping")
        .await;
    assert_eq!(status, 404);
    assert_eq!(c.fake.undocumented_calls().len(), 1);
    assert_eq!(c.fake.calls_to("ping_heartbeat").len(), 3);
}

/// The REST decoders (`backend::jsm::rest`) read what the fake answers, following `next` links
/// to the end of each list.
#[tokio::test]
async fn the_rest_decoders_read_the_fakes_answers_page_by_page() {
    use crate::backend::jsm::rest as decode;
    let c = Client::new(FakeJsmOptions::default()).await;
    for n in 0..5 {
        c.events(
            reqwest::Method::POST,
            "/v2/alerts",
            Some(create_body(&format!("teleport-access-request/{n}"))),
        )
        .await;
    }
    c.fake
        .wait_until(WAIT, "five alerts", |f| f.alerts().len() == 5)
        .await
        .unwrap();
    let raw = |path: String| {
        let c = &c;
        async move {
            let response = c
                .http
                .get(format!("{}{path}", c.fake.rest_url()))
                .basic_auth(DEFAULT_EMAIL, Some(DEFAULT_API_TOKEN))
                .send()
                .await
                .unwrap();
            response.bytes().await.unwrap()
        }
    };
    let mut aliases = Vec::new();
    let mut next = Some("/v1/alerts?query=status%3Aopen&size=2".to_owned());
    let mut pages = 0;
    while let Some(path) = next {
        let page = decode::alert_page(&raw(path).await).unwrap();
        assert_eq!(page.count, Some(5));
        aliases.extend(page.items.iter().map(|a| a.alias.clone()));
        next = page.next().map(str::to_owned);
        pages += 1;
    }
    assert_eq!(pages, 3);
    aliases.sort();
    let expected: Vec<String> = (0..5)
        .map(|n| format!("teleport-access-request/{n}"))
        .collect();
    assert_eq!(aliases, expected);

    let id = c
        .fake
        .add_schedule("SRE Primary", None, &["acc-1", "acc-2"]);
    let page =
        decode::schedule_page(&raw("/v1/schedules?query=SRE%20Primary".into()).await).unwrap();
    assert_eq!(decode::schedule_id(&page, "sre primary"), Some(id.as_str()));
    let users = decode::on_call_users(&raw(format!("/v1/schedules/{id}/on-calls?flat=true")).await)
        .unwrap();
    assert_eq!(users, ["acc-1", "acc-2"]);
    let nested = decode::on_call_users(&raw(format!("/v1/schedules/{id}/on-calls")).await).unwrap();
    assert_eq!(nested, users);
    let (_, accepted) = c
        .events(reqwest::Method::POST, "/v2/alerts", Some(create_body("x")))
        .await;
    let request_id = accepted["requestId"].as_str().unwrap().to_owned();
    c.processed(&request_id).await;
    let status =
        decode::request_status(&raw(format!("/v1/alerts/requests/{request_id}")).await).unwrap();
    assert!(status.is_success);
    assert_eq!(status.alias, "x");
    assert!(c.fake.undocumented_calls().is_empty());
}

#[tokio::test]
async fn the_fake_stops_and_frees_its_state_once_its_last_handle_is_dropped() {
    let fake = FakeJsm::start(FakeJsmOptions::default())
        .await
        .expect("fake JSM");
    let state = Arc::downgrade(&fake.inner);
    let mut stopped = fake.inner.shutdown.subscribe();
    let clone = fake.clone();
    drop(fake);
    assert!(!*stopped.borrow(), "a clone still uses it");
    drop(clone);
    tokio::time::timeout(WAIT, stopped.wait_for(|s| *s))
        .await
        .expect("stopped in time")
        .expect("stop signal");
    // The server task ends and lets go of everything the fake stored.
    let deadline = tokio::time::Instant::now() + WAIT;
    while state.strong_count() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "state still held");
        tokio::task::yield_now().await;
    }
}
