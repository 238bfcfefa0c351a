//! The REST decoders on answers in the documented shapes.

use super::*;

#[test]
fn request_status_is_a_bare_object() {
    let body = br#"{"action":"Create","processedAt":"2024-01-05T07:44:10.409Z","integrationId":"i1",
        "isSuccess":true,"status":"Created alert","alertId":"9b25-1704440650350","alias":"teleport-access-request/abc"}"#;
    assert_eq!(
        request_status(body).unwrap(),
        RequestStatus {
            action: "Create".into(),
            is_success: true,
            status: "Created alert".into(),
            alert_id: "9b25-1704440650350".into(),
            alias: "teleport-access-request/abc".into(),
        }
    );
    let failed = request_status(
        br#"{"action":"AddNote","isSuccess":false,"status":"Alert does not exist"}"#,
    )
    .unwrap();
    assert!(!failed.is_success);
    assert!(failed.alert_id.is_empty());
    // Opsgenie's envelope is not JSM's shape: refused, not read as a failure.
    let err = request_status(br#"{"data":{"isSuccess":true}}"#).unwrap_err();
    assert_eq!(err.what, "request status");
    assert!(err.to_string().contains("isSuccess"), "{err}");
}

#[test]
fn error_messages_in_every_shape() {
    assert_eq!(
        error_message(
            br#"{"errors":[{"title":"No schedule exists with id [x]","code":"NOT_FOUND"}]}"#
        ),
        Some("No schedule exists with id [x]".into())
    );
    assert_eq!(
        error_message(br#"{"code":401,"message":"Unauthorized; scope does not match"}"#),
        Some("Unauthorized; scope does not match".into())
    );
    assert_eq!(
        error_message(br#"{"message":"Request is not found","took":0.0,"requestId":"r"}"#),
        Some("Request is not found".into())
    );
    assert_eq!(
        error_message(br#"{"errorMessages":["Specified user does not exist"],"errors":{}}"#),
        Some("Specified user does not exist".into())
    );
    assert_eq!(error_message(b"<html>502</html>"), None);
    assert_eq!(error_message(br#"{"errors":[]}"#), None);
}

#[test]
fn alert_pages_follow_relative_links_only() {
    let first = alert_page(
        br#"{"values":[{"id":"a1","alias":"teleport-access-request/1","status":"open"},
                      {"id":"a2","alias":"teleport-access-request/2","status":"acked"}],
             "count":3,"links":{"next":"/v1/alerts?query=status%3Aopen&offset=2&size=2"}}"#,
    )
    .unwrap();
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.count, Some(3));
    assert!(first.items.iter().all(AlertSummary::is_open));
    assert_eq!(
        first.next(),
        Some("/v1/alerts?query=status%3Aopen&offset=2&size=2")
    );
    let last = alert_page(
        br#"{"values":[{"id":"a3","alias":"x","status":"closed"}],"count":3,"links":{}}"#,
    )
    .unwrap();
    assert_eq!(last.next(), None);
    assert!(!last.items[0].is_open());
    // No `links` at all, and an empty `next`, end the list too.
    assert_eq!(alert_page(br#"{"values":[]}"#).unwrap().next(), None);
    assert_eq!(
        alert_page(br#"{"values":[],"links":{"next":""}}"#)
            .unwrap()
            .next(),
        None
    );
    // A link elsewhere is never followed.
    for evil in [
        "https://evil.example/v1/alerts?offset=2",
        "//evil.example/v1/alerts",
        "/v1/../../admin",
        "/v2/alerts?offset=2",
    ] {
        let body = format!(r#"{{"values":[],"links":{{"next":"{evil}"}}}}"#);
        assert_eq!(alert_page(body.as_bytes()).unwrap().next(), None, "{evil}");
    }
    assert!(alert_page(br#"{"values":{"id":"a"}}"#).is_err());
}

#[test]
fn notes_page_by_cursor() {
    let page = note_page(
        br#"{"values":[{"id":"1704869443312000050","createdAt":"2024-01-05T07:06:47.958Z",
              "updatedAt":"2024-01-05T07:06:47.958Z","note":"bob approved","owner":"user@example.com"}],
             "links":{"next":"/v1/alerts/a1/notes?after=1704869443312000050"}}"#,
    )
    .unwrap();
    assert_eq!(page.items[0].note, "bob approved");
    assert_eq!(
        page.next(),
        Some("/v1/alerts/a1/notes?after=1704869443312000050")
    );
}

#[test]
fn schedule_names_resolve_to_ids_exactly() {
    let page = schedule_page(
        br#"{"values":[{"id":"s1","name":"SRE Primary Backup","enabled":true},
                       {"id":"s2","name":"SRE primary","enabled":true,"teamId":"t1"}],
             "links":{"next":"/v1/schedules?offset=2&size=2"},"_expands":["rotation"]}"#,
    )
    .unwrap();
    assert_eq!(schedule_id(&page, "sre Primary"), Some("s2"));
    assert_eq!(schedule_id(&page, "SRE"), None);
    assert_eq!(page.next(), Some("/v1/schedules?offset=2&size=2"));
}

#[test]
fn on_calls_flat_and_nested() {
    assert_eq!(
        on_call_users(br#"{"onCallUsers":["5b2b0e011b3a756623f4e25e","u2","u2",""]}"#).unwrap(),
        vec!["5b2b0e011b3a756623f4e25e".to_owned(), "u2".to_owned()]
    );
    // The spec's example: a team (not a person), a user, an escalation holding the same user.
    let nested = br#"{"onCallParticipants":[{"id":"bc667897","type":"team"},
        {"id":"5b2b0e011b3a756623f4e25e","type":"user"},
        {"id":"7a24e9d7","type":"escalation","onCallParticipants":[
            {"id":"5b2b0e011b3a756623f4e25e","type":"user","forwardedFrom":{"id":"c564","type":"user"}},
            {"id":"u3","type":"user"}]}]}"#;
    assert_eq!(
        on_call_users(nested).unwrap(),
        vec!["5b2b0e011b3a756623f4e25e".to_owned(), "u3".to_owned()]
    );
    assert_eq!(
        on_call_users(br#"{"onCallUsers":[]}"#).unwrap(),
        Vec::<String>::new()
    );
    // Not an on-call answer (Opsgenie's, say): an error, never "nobody is on call".
    let err = on_call_users(br#"{"data":{"onCallRecipients":["a@example.com"]}}"#).unwrap_err();
    assert!(err.to_string().contains("neither onCallUsers"), "{err}");
    // Hostile nesting is cut off.
    let mut deep = String::from(r#"{"id":"u","type":"user"}"#);
    for _ in 0..20 {
        deep = format!(r#"{{"id":"e","type":"escalation","onCallParticipants":[{deep}]}}"#);
    }
    let body = format!(r#"{{"onCallParticipants":[{deep}]}}"#);
    assert!(on_call_users(body.as_bytes()).is_err());
}

#[test]
fn users_with_and_without_a_visible_email() {
    let alice = jira_user(
        br#"{"self":"https://x.atlassian.net/rest/api/3/user?accountId=a1","accountId":"a1",
             "accountType":"atlassian","emailAddress":"alice@example.com","displayName":"Alice","active":true}"#,
    )
    .unwrap();
    assert_eq!(alice.email_address.as_deref(), Some("alice@example.com"));
    let hidden = jira_user(br#"{"accountId":"b1","displayName":"Bob","active":true}"#).unwrap();
    assert_eq!(hidden.email_address, None);
    let blank = jira_user(br#"{"accountId":"c1","emailAddress":" "}"#).unwrap();
    assert_eq!(blank.email_address, None);
    assert!(jira_user(br#"{"displayName":"no id"}"#).is_err());
}

#[test]
fn bulk_users_page_by_start_at() {
    let first = jira_user_page(
        br#"{"maxResults":2,"startAt":0,"total":3,"isLast":false,
             "values":[{"accountId":"a"},{"accountId":"b","emailAddress":"b@example.com"}]}"#,
    )
    .unwrap();
    assert_eq!(first.users.len(), 2);
    assert_eq!(first.next_start, Some(2));
    let last = jira_user_page(
        br#"{"maxResults":2,"startAt":2,"total":3,"isLast":true,"values":[{"accountId":"c"}]}"#,
    )
    .unwrap();
    assert_eq!(last.next_start, None);
    // Without `isLast`, the total decides.
    let by_total =
        jira_user_page(br#"{"startAt":0,"total":5,"values":[{"accountId":"a"}]}"#).unwrap();
    assert_eq!(by_total.next_start, Some(1));
    // An empty page never loops.
    let empty = jira_user_page(br#"{"startAt":4,"total":9,"isLast":false,"values":[]}"#).unwrap();
    assert_eq!(empty.next_start, None);
}

#[test]
fn tenant_info_names_the_cloud_id() {
    assert_eq!(
        tenant_cloud_id(br#"{"cloudId":"8e7b3f2a-1c4d-4e5f-9a6b-7c8d9e0f1a2b"}"#).unwrap(),
        "8e7b3f2a-1c4d-4e5f-9a6b-7c8d9e0f1a2b"
    );
    assert!(tenant_cloud_id(br#"{"cloudId":""}"#).is_err());
    assert!(tenant_cloud_id(br#"{"cloudId":"../x"}"#).is_err());
    assert!(tenant_cloud_id(b"<html>").is_err());
}
