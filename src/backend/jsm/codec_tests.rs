//! The JSM codec: which API and path each operation goes to, and how the REST answers read.

use http::HeaderMap;
use serde_json::json;

use super::*;

fn codec() -> JsmCodec {
    JsmCodec::new("teleport-opsgenie", None)
}

fn answer(op: &Operation, status: u16, body: &[u8]) -> Result<Outcome, BackendError> {
    codec().response(op, status, &HeaderMap::new(), body)
}

#[test]
fn writes_go_to_the_integration_events_api_in_opsgenie_shapes() {
    let close = codec()
        .request(&Operation::CloseAlert {
            alert: AlertRef::Alias("teleport-access-request/x".into()),
            note: "n".into(),
        })
        .unwrap();
    assert_eq!(close.api, Api::Primary);
    assert_eq!(
        close.path_and_query,
        "/v2/alerts/teleport-access-request%2Fx/close?identifierType=alias"
    );
    assert_eq!(
        close.body,
        Some(json!({"note": "n", "source": "teleport-opsgenie"}))
    );
    let note = codec()
        .request(&Operation::AddNote {
            alert: AlertRef::Id("a-1".into()),
            note: "hi".into(),
        })
        .unwrap();
    assert_eq!(
        (note.api, note.path_and_query.as_str()),
        (Api::Primary, "/v2/alerts/a-1/notes?identifierType=id")
    );
}

#[test]
fn every_read_goes_to_the_rest_api_by_id() {
    let cases = [
        (
            Operation::RequestStatus {
                request_id: "r 1".into(),
            },
            "/v1/alerts/requests/r%201",
        ),
        (
            Operation::GetAlert {
                alert: AlertRef::Id("a-1".into()),
            },
            "/v1/alerts/a-1",
        ),
        (
            Operation::GetAlert {
                alert: AlertRef::Alias("teleport-access-request/x".into()),
            },
            "/v1/alerts/alias?alias=teleport-access-request%2Fx",
        ),
        (
            Operation::ListNotes {
                alert_id: "a-1".into(),
                offset: None,
            },
            "/v1/alerts/a-1/notes?size=100",
        ),
        (
            Operation::ListNotes {
                alert_id: "a-1".into(),
                offset: Some("/v1/alerts/a-1/notes?after=17".into()),
            },
            "/v1/alerts/a-1/notes?after=17",
        ),
        (
            Operation::ListOpenAlerts {
                tag: "teleport-access-request".into(),
                offset: 100,
            },
            "/v1/alerts?query=status%3Aopen%20AND%20tag%3A%22teleport-access-request%22&offset=100&size=100",
        ),
        (
            Operation::OnCall {
                schedule: "s-1".into(),
            },
            "/v1/schedules/s-1/on-calls?flat=true",
        ),
        (
            Operation::FindSchedule {
                name: " SRE primary ".into(),
            },
            "/v1/schedules?query=SRE%20primary&size=50",
        ),
        (
            Operation::Heartbeat {
                name: "hb".into(),
            },
            "/v1/alerts?size=1",
        ),
    ];
    for (op, path) in cases {
        let req = codec().request(&op).unwrap();
        assert_eq!(req.api, Api::JsmRest, "{op:?}");
        assert_eq!(req.method, Method::GET, "{op:?}");
        assert_eq!(req.path_and_query, path, "{op:?}");
        assert_eq!(req.body, None);
    }
    let with_team = JsmCodec::new("s", Some("t-1"))
        .request(&Operation::Heartbeat {
            name: "teleport access".into(),
        })
        .unwrap();
    assert_eq!(
        with_team.path_and_query,
        "/v1/teams/t-1/heartbeats/ping?name=teleport%20access"
    );
    let user = codec()
        .request(&Operation::GetUser {
            account_id: "557058:f5".into(),
        })
        .unwrap();
    assert_eq!(
        (user.api, user.path_and_query.as_str()),
        (Api::JiraUsers, "/rest/api/3/user?accountId=557058%3Af5")
    );
    let tenant = codec().request(&Operation::TenantInfo).unwrap();
    assert_eq!(tenant.api, Api::TenantInfo);
    assert!(codec()
        .request(&Operation::GetHeartbeat { name: "x".into() })
        .is_err());
}

#[test]
fn request_status_is_bare_and_its_404_is_not_yet_known() {
    let op = Operation::RequestStatus {
        request_id: "r1".into(),
    };
    assert_eq!(
        answer(&op, 404, br#"{"message":"Request is not found"}"#).unwrap(),
        Outcome::NotFoundYet
    );
    let body = br#"{"action":"Create","processedAt":"2024-01-05T07:44:10.409Z","integrationId":"i",
        "isSuccess":true,"status":"Created alert","alertId":"a-1","alias":"x"}"#;
    assert_eq!(
        answer(&op, 200, body).unwrap(),
        Outcome::Processed(Processed {
            success: true,
            alert_id: "a-1".into(),
            status: "Created alert".into()
        })
    );
    // Opsgenie's envelope is not JSM's answer.
    assert!(matches!(
        answer(&op, 200, br#"{"data":{"isSuccess":true}}"#),
        Err(BackendError::Decode { .. })
    ));
    assert_eq!(
        answer(&op, 401, b"{}"),
        Err(BackendError::Status { status: 401 })
    );
}

#[test]
fn alerts_notes_and_listing_read_the_rest_shapes_with_paging() {
    let get = Operation::GetAlert {
        alert: AlertRef::Alias("x".into()),
    };
    assert_eq!(
        answer(&get, 200, br#"{"id":"a-1","alias":"x","status":"acked"}"#).unwrap(),
        Outcome::Alert {
            id: "a-1".into(),
            open: true
        }
    );
    assert_eq!(
        answer(&get, 200, br#"{"id":"a-1","alias":"x","status":"closed"}"#).unwrap(),
        Outcome::Alert {
            id: "a-1".into(),
            open: false
        }
    );
    assert_eq!(
        answer(&get, 404, br#"{"message":"Alert does not exist"}"#).unwrap(),
        Outcome::NoSuchAlert
    );

    let notes = Operation::ListNotes {
        alert_id: "a-1".into(),
        offset: None,
    };
    let page = br#"{"values":[{"id":"1","note":"one","owner":"API"},{"id":"2","note":"two"}],
        "links":{"next":"/v1/alerts/a-1/notes?after=2"}}"#;
    assert_eq!(
        answer(&notes, 200, page).unwrap(),
        Outcome::Notes {
            texts: vec!["one".into(), "two".into()],
            next: Some("/v1/alerts/a-1/notes?after=2".into())
        }
    );
    // A next link elsewhere ends the list rather than being followed.
    let evil = br#"{"values":[],"links":{"next":"https://evil.example/v1/x"}}"#;
    assert_eq!(
        answer(&notes, 200, evil).unwrap(),
        Outcome::Notes {
            texts: vec![],
            next: None
        }
    );

    let list = Operation::ListOpenAlerts {
        tag: "t".into(),
        offset: 0,
    };
    let page = br#"{"values":[{"id":"i1","alias":"a1","status":"open"},{"id":"i2","alias":"a2","status":"closed"}],
        "count":3,"links":{"next":"/v1/alerts?offset=2&size=2"}}"#;
    assert_eq!(
        answer(&list, 200, page).unwrap(),
        Outcome::Alerts {
            alerts: vec![("a1".into(), "i1".into())],
            more: true
        }
    );
    assert_eq!(
        answer(&list, 200, br#"{"values":[],"count":0,"links":{}}"#).unwrap(),
        Outcome::Alerts {
            alerts: vec![],
            more: false
        }
    );
}

#[test]
fn schedules_on_calls_users_and_the_cloud_id() {
    let find = Operation::FindSchedule {
        name: "sre primary".into(),
    };
    let page = br#"{"values":[{"id":"s1","name":"SRE Primary"}],"links":{}}"#;
    assert_eq!(
        answer(&find, 200, page).unwrap(),
        Outcome::Schedule(Some("s1".into()))
    );
    assert_eq!(
        answer(&find, 200, br#"{"values":[],"links":{}}"#).unwrap(),
        Outcome::Schedule(None)
    );
    let on_call = Operation::OnCall {
        schedule: "s1".into(),
    };
    assert_eq!(
        answer(&on_call, 200, br#"{"onCallUsers":["5b2b","u2"]}"#).unwrap(),
        Outcome::OnCall(vec!["5b2b".into(), "u2".into()])
    );
    assert!(answer(&on_call, 200, br#"{"data":{}}"#).is_err());
    let user = Operation::GetUser {
        account_id: "b1".into(),
    };
    assert_eq!(
        answer(&user, 200, br#"{"accountId":"b1","displayName":"Bob"}"#).unwrap(),
        Outcome::User {
            account_id: "b1".into(),
            display_name: "Bob".into(),
            email: None
        }
    );
    assert_eq!(
        answer(
            &Operation::TenantInfo,
            200,
            br#"{"cloudId":"8e7b3f2a-1c4d"}"#
        )
        .unwrap(),
        Outcome::CloudId("8e7b3f2a-1c4d".into())
    );
}

#[test]
fn the_timeline_helper_builds_the_rest_request_and_reads_it_with_the_shared_decoder() {
    let req = timeline_request("s 1", 2, "weeks", "2026-12-01T08:00:00Z");
    assert_eq!(req.api, Api::JsmRest);
    assert_eq!(
        req.path_and_query,
        "/v1/schedules/s%201/timeline?interval=2&intervalUnit=weeks&date=2026-12-01T08%3A00%3A00Z"
    );
    let body = br#"{"startDate":"2026-12-01T00:00:00Z","endDate":"2026-12-15T00:00:00Z",
        "finalTimeline":{"rotations":[{"id":"r","name":"R","periods":[
          {"startDate":"2026-12-01T00:00:00Z","endDate":"2026-12-02T00:00:00Z","type":"base",
           "responder":{"id":"5b2b","type":"user"}}]}]}}"#;
    let timeline = decode_timeline(200, body).unwrap();
    assert_eq!(
        timeline,
        crate::backend::timeline::decode_jsm(body).unwrap()
    );
    assert_eq!(
        decode_timeline(404, b"{}"),
        Err(BackendError::Status { status: 404 })
    );
    assert!(matches!(
        decode_timeline(200, b"<html>"),
        Err(BackendError::Decode { .. })
    ));
}
