//! The fake answers as Opsgenie answers and refuses what it refuses: responders by id, 415 for
//! other content types, enum query values, paging, notes listing, failures after acceptance
//! and answers a client cannot read.

use super::*;

use crate::sim::opsgenie::{Garble, Write, INJECTED_FAILURE_STATUS};

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

async fn create(fake: &FakeOpsgenie, alias: &str) -> Answer {
    call(
        fake,
        "POST",
        "/v2/alerts",
        Some(json!({"message": alias, "alias": alias})),
    )
    .await
}

async fn note(fake: &FakeOpsgenie, alias: &str, text: &str) -> Answer {
    call(
        fake,
        "POST",
        &format!("/v2/alerts/{alias}/notes?identifierType=alias"),
        Some(json!({"note": text, "user": "bob"})),
    )
    .await
}

#[tokio::test]
async fn responders_are_resolved_and_answered_by_type_and_id() {
    let fake = start(Duration::ZERO).await;
    let schedule = fake.add_schedule("Primary", None, &[]);
    let team = fake.add_team("sre", Some("0b5b8c5e-2f43-4b5f-9a0e-7a3f1d2c4e55"));
    let other = fake.add_team("dba", None);
    let a = call(
        &fake,
        "POST",
        "/v2/alerts",
        Some(json!({"message": "m", "alias": "r", "responders": [
            {"type": "schedule", "name": "Primary"},
            {"type": "team", "name": "sre"},
            {"type": "team", "id": other},
            {"type": "user", "username": "alice@example.com"},
            {"type": "schedule", "name": "No such schedule"},
            {"type": "escalation", "name": "Not modelled"},
        ]})),
    )
    .await;
    assert_eq!(a.status, 202);
    let got = call(&fake, "GET", "/v2/alerts/r?identifierType=alias", None).await;
    let responders = got.body["data"]["responders"].as_array().expect("list");
    let want_ids = [schedule.as_str(), team.as_str(), other.as_str()];
    assert_eq!(responders.len(), 4, "{responders:?}");
    for (r, id) in responders.iter().zip(want_ids) {
        assert_eq!(r["id"], id);
        assert_eq!(keys(r), ["id", "type"], "only {{type, id}}: {r}");
    }
    assert_eq!(responders[3]["type"], "user");
    assert!(responders[3]["id"].as_str().is_some_and(|s| s.len() == 36));
    // The list answer carries the same.
    let list = call(&fake, "GET", "/v2/alerts", None).await;
    assert_eq!(
        list.body["data"][0]["responders"],
        got.body["data"]["responders"]
    );
    // What was sent stays recorded, and the resolution is visible to tests.
    let alert = fake.alert_by_alias("r").expect("alert");
    assert_eq!(alert.responders.len(), 6);
    assert_eq!(alert.routed_to[0].name, "Primary");
    assert_eq!(fake.team_id("sre").as_deref(), Some(team.as_str()));
    fake.shutdown();
}

#[tokio::test]
async fn a_body_that_is_not_json_by_content_type_gets_415() {
    let fake = start(Duration::ZERO).await;
    let body = r#"{"message":"m","alias":"x"}"#;
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let a = send_raw(&fake, "POST", "/v2/alerts", ct, body).await;
        assert_eq!(a.status, 415, "{ct:?}");
        assert!(a.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("application/json")));
        assert!(a.body["requestId"].is_string());
    }
    assert!(fake.alerts().is_empty(), "nothing was created");
    let a = send_raw(
        &fake,
        "POST",
        "/v2/alerts",
        Some("application/json; charset=utf-8"),
        body,
    )
    .await;
    assert_eq!(a.status, 202);
    // A close without a body needs no content type.
    let a = send_raw(
        &fake,
        "POST",
        "/v2/alerts/x/close?identifierType=alias",
        None,
        "",
    )
    .await;
    assert_eq!(a.status, 202);
    let calls = fake.calls();
    assert_eq!(calls[0].content_type.as_deref(), Some("text/plain"));
    assert_eq!(calls[0].raw_body, body, "the exact body is recorded");
    assert_eq!(calls[0].body, Some(json!({"message": "m", "alias": "x"})));
    assert_eq!(calls[4].response_body, a.text);
    fake.shutdown();
}

#[tokio::test]
async fn enum_and_integer_query_values_are_validated() {
    let fake = start(Duration::ZERO).await;
    fake.add_schedule("s", None, &[]);
    create(&fake, "a").await;
    let cases = [
        ("/v2/alerts/a?identifierType=name", "identifierType"),
        ("/v2/alerts/a?identifierType=ALIAS", "identifierType"),
        ("/v2/alerts?sort=priority", "sort"),
        ("/v2/alerts?order=up", "order"),
        ("/v2/alerts?limit=0", "limit"),
        ("/v2/alerts?limit=101", "limit"),
        ("/v2/alerts?offset=-1", "offset"),
        (
            "/v2/alerts?searchIdentifierType=alias",
            "searchIdentifierType",
        ),
        ("/v2/alerts/count?query=status%3Dopen&sort=x", ""),
        (
            "/v2/alerts/a/notes?identifierType=alias&direction=up",
            "direction",
        ),
        (
            "/v2/alerts/a/notes?identifierType=alias&order=newest",
            "order",
        ),
        (
            "/v2/schedules/s/on-calls?scheduleIdentifierType=title",
            "scheduleIdentifierType",
        ),
        (
            "/v2/schedules/s/on-calls?scheduleIdentifierType=name&flat=yes",
            "flat",
        ),
    ];
    for (path, param) in cases {
        let a = call(&fake, "GET", path, None).await;
        if param.is_empty() {
            // Count takes no sort: the parameter is ignored.
            assert_eq!(a.status, 200, "{path}");
            continue;
        }
        assert_eq!(a.status, 422, "{path}: {}", a.text);
        assert!(a.body["errors"][param].is_string(), "{path}: {}", a.text);
    }
    let ok = [
        "/v2/alerts?sort=report.closeTime&order=asc",
        "/v2/alerts?sort=alias&order=desc&limit=100&offset=0",
        "/v2/alerts/a?identifierType=alias",
        "/v2/alerts/a/notes?identifierType=alias&direction=prev&order=asc&limit=1",
        "/v2/schedules/s/on-calls?scheduleIdentifierType=name&flat=false",
    ];
    for path in ok {
        assert_eq!(call(&fake, "GET", path, None).await.status, 200, "{path}");
    }
    let w = call(
        &fake,
        "POST",
        "/v2/alerts/a/notes?identifierType=nickname",
        Some(json!({"note": "n"})),
    )
    .await;
    assert_eq!(w.status, 422);
    assert!(w.body["errors"]["identifierType"].is_string());
    fake.shutdown();
}

#[tokio::test]
async fn lists_sort_and_page_as_the_definitions_say() {
    let fake = start(Duration::ZERO).await;
    for alias in ["c", "a", "e", "b", "d"] {
        create(&fake, alias).await;
    }
    let aliases = |a: &Answer| -> Vec<String> {
        a.body["data"]
            .as_array()
            .map(|d| {
                d.iter()
                    .map(|x| x["alias"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let a = call(
        &fake,
        "GET",
        "/v2/alerts?sort=alias&order=asc&limit=2",
        None,
    )
    .await;
    assert_eq!(aliases(&a), ["a", "b"]);
    let paging = &a.body["paging"];
    assert_eq!(
        keys(paging),
        ["first", "last", "next"],
        "no prev on the first page"
    );
    let next = paging["next"].as_str().expect("next");
    assert!(next.contains("offset=2") && next.contains("sort=alias") && next.contains("order=asc"));
    let path = &next[fake.url().len()..];
    let b = call(&fake, "GET", path, None).await;
    assert_eq!(aliases(&b), ["c", "d"]);
    assert_eq!(keys(&b.body["paging"]), ["first", "last", "next", "prev"]);
    let c = call(
        &fake,
        "GET",
        "/v2/alerts?sort=alias&order=asc&limit=2&offset=4",
        None,
    )
    .await;
    assert_eq!(aliases(&c), ["e"]);
    assert_eq!(
        keys(&c.body["paging"]),
        ["first", "last", "prev"],
        "no next on the last page"
    );
    // Default: createdAt, newest first.
    let d = call(&fake, "GET", "/v2/alerts", None).await;
    assert_eq!(aliases(&d), ["d", "b", "e", "a", "c"]);
    fake.shutdown();
}

#[tokio::test]
async fn an_alerts_notes_are_listed_with_offsets_and_paging() {
    let fake = start(Duration::ZERO).await;
    call(
        &fake,
        "POST",
        "/v2/alerts",
        Some(json!({"message": "m", "alias": "al", "note": "n0"})),
    )
    .await;
    for n in ["n1", "n2", "n3"] {
        assert_eq!(note(&fake, "al", n).await.status, 202);
    }
    let texts = |a: &Answer| -> Vec<String> {
        a.body["data"]
            .as_array()
            .map(|d| {
                d.iter()
                    .map(|x| x["note"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let first = call(
        &fake,
        "GET",
        "/v2/alerts/al/notes?identifierType=alias&limit=2",
        None,
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(texts(&first), ["n3", "n2"], "newest first by default");
    let n3 = &first.body["data"][0];
    assert_eq!(keys(n3), ["createdAt", "note", "offset", "owner"]);
    assert_eq!(n3["owner"], "bob");
    assert!(n3["offset"].is_string());
    assert!(first.body["requestId"].is_string() && first.body["took"].is_number());
    let paging = &first.body["paging"];
    assert_eq!(keys(paging), ["first", "next"]);
    let next = paging["next"].as_str().expect("next");
    let second = call(&fake, "GET", &next[fake.url().len()..], None).await;
    assert_eq!(texts(&second), ["n1", "n0"]);
    assert_eq!(
        keys(&second.body["paging"]),
        ["first"],
        "nothing after the last page"
    );
    // By id, oldest first; the create's note has the create's owner (none given).
    let id = fake.alert_by_alias("al").expect("alert").id;
    let asc = call(
        &fake,
        "GET",
        &format!("/v2/alerts/{id}/notes?order=asc"),
        None,
    )
    .await;
    assert_eq!(texts(&asc), ["n0", "n1", "n2", "n3"]);
    assert_eq!(asc.body["data"][0]["owner"], "Fake API integration");
    // Paging back from an offset.
    let off = asc.body["data"][2]["offset"]
        .as_str()
        .expect("offset")
        .to_owned();
    let prev = call(
        &fake,
        "GET",
        &format!("/v2/alerts/{id}/notes?order=asc&direction=prev&offset={off}&limit=1"),
        None,
    )
    .await;
    assert_eq!(texts(&prev), ["n1"]);
    let missing = call(
        &fake,
        "GET",
        "/v2/alerts/nope/notes?identifierType=alias",
        None,
    )
    .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["message"], "Alert does not exist");
    fake.shutdown();
}

#[tokio::test]
async fn writes_can_fail_after_they_were_accepted() {
    let fake = start(Duration::ZERO).await;
    // Unknown alert: 202, then the status says so.
    let a = note(&fake, "nope", "hello").await;
    assert_eq!(a.status, 202);
    let s = status_of(&fake, &a).await.body["data"].clone();
    assert_eq!(
        (
            s["isSuccess"].clone(),
            s["success"].clone(),
            s["action"].clone()
        ),
        (json!(false), json!(false), json!("AddNote"))
    );
    assert_eq!(s["status"], "Alert does not exist");
    assert_eq!(
        (s["alertId"].as_str(), s["alias"].as_str()),
        (Some(""), Some(""))
    );

    create(&fake, "al").await;
    fake.faults()
        .fail_next(Some(Write::AddNote), 1, "Could not add note");
    // A close is not a note: not affected.
    let refused = call(
        &fake,
        "POST",
        "/v2/alerts/al/notes?identifierType=alias",
        Some(json!({})),
    )
    .await;
    assert_eq!(
        refused.status, 422,
        "a refused write does not use the injection up"
    );
    let failed = note(&fake, "al", "lost").await;
    assert_eq!(failed.status, 202);
    let s = status_of(&fake, &failed).await.body["data"].clone();
    assert_eq!(s["isSuccess"], false);
    assert_eq!(s["status"], "Could not add note");
    let ok = note(&fake, "al", "kept").await;
    assert_eq!(status_of(&fake, &ok).await.body["data"]["isSuccess"], true);
    let texts: Vec<String> = fake
        .alert_by_alias("al")
        .expect("alert")
        .notes
        .into_iter()
        .map(|n| n.text)
        .collect();
    assert_eq!(texts, ["kept"]);
    let calls = fake.calls();
    let failed_call = calls
        .iter()
        .find(|c| c.request_id == request_id(&failed))
        .expect("call");
    assert_eq!(
        failed_call.fault.as_deref(),
        Some("fails after acceptance: Could not add note")
    );

    // Any write, here a create: nothing is created.
    fake.faults().fail_next(None, 1, "Internal error");
    let c = create(&fake, "gone").await;
    assert_eq!(status_of(&fake, &c).await.body["data"]["isSuccess"], false);
    assert!(fake.alert_by_alias("gone").is_none());

    // A close of a closed alert: success by default, failure with the knob.
    let close = |alias: &'static str| {
        let fake = fake.clone();
        async move {
            call(
                &fake,
                "POST",
                &format!("/v2/alerts/{alias}/close?identifierType=alias"),
                None,
            )
            .await
        }
    };
    let first = close("al").await;
    assert_eq!(
        status_of(&fake, &first).await.body["data"]["status"],
        "Closed alert"
    );
    let again = status_of(&fake, &close("al").await).await.body["data"].clone();
    assert_eq!(
        (again["isSuccess"].clone(), again["status"].clone()),
        (json!(true), json!("Alert is already closed"))
    );
    fake.set_close_of_closed_fails(true);
    let again = status_of(&fake, &close("al").await).await.body["data"].clone();
    assert_eq!(
        (again["isSuccess"].clone(), again["status"].clone()),
        (json!(false), json!("Alert is already closed"))
    );

    // At a rate.
    fake.faults().set_write_failure_rate(1.0);
    let n = note(&fake, "al", "x").await;
    let s = status_of(&fake, &n).await.body["data"].clone();
    assert_eq!(
        (s["isSuccess"].clone(), s["status"].clone()),
        (json!(false), json!(INJECTED_FAILURE_STATUS))
    );
    fake.faults().clear();
    let n = note(&fake, "al", "y").await;
    assert_eq!(status_of(&fake, &n).await.body["data"]["isSuccess"], true);
    fake.shutdown();
}

#[tokio::test]
async fn writes_can_be_answered_with_a_2xx_nobody_can_read() {
    let fake = start(Duration::ZERO).await;
    let cases = [
        (Garble::Html, 200, "text/html"),
        (Garble::InvalidJson, 202, "application/json"),
        (Garble::Empty, 202, "application/json"),
        (Garble::NoRequestId, 202, "application/json"),
    ];
    for (i, (garble, status, ct)) in cases.into_iter().enumerate() {
        for applied in [true, false] {
            let alias = format!("g{i}-{applied}");
            fake.faults()
                .garble_next(Some(Write::Create), 1, garble, applied);
            let a = create(&fake, &alias).await;
            assert_eq!(a.status, status, "{garble:?}");
            assert!(
                a.header("content-type").is_some_and(|h| h.starts_with(ct)),
                "{garble:?}"
            );
            assert!(a.body.get("requestId").is_none(), "{garble:?}: {}", a.text);
            match garble {
                Garble::Html => assert!(a.text.starts_with("<html>")),
                Garble::InvalidJson => assert!(serde_json::from_str::<Value>(&a.text).is_err()),
                Garble::Empty => assert_eq!(a.text, ""),
                Garble::NoRequestId => assert_eq!(a.body["result"], "Request will be processed"),
            }
            assert_eq!(
                fake.alert_by_alias(&alias).is_some(),
                applied,
                "{garble:?} {applied}"
            );
            let call = fake.calls().pop().expect("recorded");
            assert_eq!(call.response_body, a.text, "the exact answer is recorded");
            assert_eq!(call.status, status);
            let want = format!(
                "garbled answer ({}), {}",
                garble.as_str(),
                if applied { "applied" } else { "not applied" }
            );
            assert_eq!(call.fault.as_deref(), Some(want.as_str()));
            // The request itself is known when applied: its status can be read by id.
            let known = call.fault.is_some() && applied;
            let s = call_status(&fake, &call.request_id).await;
            assert_eq!(s == 200, known, "{garble:?} {applied}: {s}");
        }
    }
    // Only the kind asked for; the next write of another kind answers normally.
    fake.faults()
        .garble_next(Some(Write::Close), 1, Garble::Empty, true);
    assert_eq!(note(&fake, "g0-true", "n").await.status, 202);
    let close = call(
        &fake,
        "POST",
        "/v2/alerts/g0-true/close?identifierType=alias",
        None,
    )
    .await;
    assert_eq!((close.status, close.text.as_str()), (202, ""));
    // At a rate: every write, a mix of kinds.
    fake.faults().set_garble_rate(1.0);
    for _ in 0..8 {
        let a = create(&fake, "rated").await;
        assert!(a.body.get("requestId").is_none(), "{}", a.text);
    }
    fake.faults().clear();
    assert!(create(&fake, "rated").await.body["requestId"].is_string());
    fake.shutdown();
}

async fn call_status(fake: &FakeOpsgenie, request_id: &str) -> u16 {
    call(
        fake,
        "GET",
        &format!("/v2/alerts/requests/{request_id}"),
        None,
    )
    .await
    .status
}
