//! Black-box tests of the fake over real mTLS gRPC on 127.0.0.1.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use tonic::Code;

use super::*;
use crate::pb::proto::auth_service_client::AuthServiceClient;
use tonic::transport::Channel;

const FIXTURE: &str = r#"
kind: role
version: v7
metadata:
  name: requester
  labels: {team: dev}
spec:
  options:
    max_session_ttl: 8h
  allow:
    logins: [root]
    node_labels: {'*': '*'}
    request:
      roles: [db-admin, 'web-*']
      annotations:
        opsgenie_schedules: [primary]
        pagerduty_services: [svc-a, svc-b]
      thresholds:
        - approve: 2
          deny: 1
---
kind: role
version: v7
metadata:
  name: quick
spec:
  allow:
    request:
      roles: [ops]
      annotations:
        opsgenie_schedules: [secondary, primary]
---
kind: role
version: v7
metadata:
  name: reviewer
spec:
  allow:
    review_requests:
      roles: ['*']
      preview_as_roles: [list-access-request-resources]
---
kind: role
version: v7
metadata:
  name: requests-admin
spec:
  allow:
    rules:
      - resources: ['*']
        verbs: ['*']
---
kind: user
version: v2
metadata:
  name: alice
spec:
  roles: [requester, quick]
"#;

const T: Duration = Duration::from_secs(10);

async fn fake_with(opts: FakeTeleportOptions) -> FakeTeleport {
    let tp = FakeTeleport::start(opts).await.unwrap();
    tp.add_role_yaml(FIXTURE).unwrap();
    tp.add_role_yaml(ACCESS_PLUGIN_ROLE).unwrap();
    tp.add_user("access-plugin", ["access-plugin"]);
    tp.add_user("bob", ["reviewer"]);
    tp.add_user("carol", ["reviewer"]);
    tp.add_user("dave", ["reviewer"]);
    tp.add_user("nobody", Vec::<String>::new());
    tp.add_user("root", ["requests-admin"]);
    tp
}

async fn fake() -> FakeTeleport {
    fake_with(FakeTeleportOptions::default()).await
}

async fn client(tp: &FakeTeleport, user: &str) -> AuthServiceClient<Channel> {
    tokio::time::timeout(T, tp.client(user))
        .await
        .unwrap()
        .unwrap()
}

fn watch_all() -> proto::Watch {
    proto::Watch {
        kinds: vec![types::WatchKind {
            kind: "access_request".to_owned(),
            ..Default::default()
        }],
        allow_partial_success: false,
    }
}

async fn next_event(
    stream: &mut tonic::Streaming<proto::Event>,
) -> Result<Option<proto::Event>, Status> {
    tokio::time::timeout(T, stream.message()).await.unwrap()
}

fn id_of(r: &types::AccessRequestV3) -> String {
    r.metadata.as_ref().unwrap().name.clone()
}

fn state(r: &types::AccessRequestV3) -> types::RequestState {
    types::RequestState::try_from(r.spec.as_ref().unwrap().state).unwrap()
}

fn review_msg(
    id: &str,
    author: &str,
    approve: bool,
    reason: &str,
) -> types::AccessReviewSubmission {
    types::AccessReviewSubmission {
        request_id: id.to_owned(),
        review: Some(types::AccessReview {
            author: author.to_owned(),
            proposed_state: if approve {
                types::RequestState::Approved as i32
            } else {
                types::RequestState::Denied as i32
            },
            reason: reason.to_owned(),
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn ping_reports_cluster_and_version() {
    let tp = fake().await;
    let mut c = client(&tp, "nobody").await;
    let resp = c.ping(proto::PingRequest {}).await.unwrap().into_inner();
    assert_eq!(resp.cluster_name, "sandbox.teleport.example");
    assert_eq!(resp.server_version, "17.4.2");
    assert!(resp.remote_addr.starts_with("127.0.0.1:"));
    assert_eq!(tp.count_calls("Ping"), 1);
    assert_eq!(tp.calls()[0].caller, "nobody");
    // Counted per caller too, so a load test can tell the daemon's calls from a reviewer's.
    let mut other = client(&tp, "someone").await;
    other.ping(proto::PingRequest {}).await.unwrap();
    c.ping(proto::PingRequest {}).await.unwrap();
    assert_eq!(tp.count_calls("Ping"), 3);
    assert_eq!(tp.count_calls_by("Ping", "nobody"), 2);
    assert_eq!(tp.count_calls_by("Ping", "someone"), 1);
    assert_eq!(tp.count_calls_by("GetPluginData", "nobody"), 0);
    assert_eq!(
        tp.calls_by("nobody").into_iter().collect::<Vec<_>>(),
        vec![("Ping", 2)]
    );
}

#[tokio::test]
async fn watch_sends_init_first_then_put_on_create() {
    let tp = fake().await;
    let mut c = client(&tp, "access-plugin").await;
    let mut stream = c.watch_events(watch_all()).await.unwrap().into_inner();
    let init = next_event(&mut stream).await.unwrap().unwrap();
    assert_eq!(init.operation, proto::Operation::Init as i32);
    let Some(proto::event::Resource::WatchStatus(status)) = init.resource else {
        panic!("INIT without WatchStatus: {init:?}");
    };
    assert_eq!(status.spec.unwrap().kinds[0].kind, "access_request");
    tp.wait_until(T, "one watcher", |tp| tp.watchers() == 1)
        .await
        .unwrap();

    let created = tp
        .create_request("alice", &["db-admin"], "fix prod")
        .unwrap();
    let ev = next_event(&mut stream).await.unwrap().unwrap();
    assert_eq!(ev.operation, proto::Operation::Put as i32);
    let Some(proto::event::Resource::AccessRequest(r)) = ev.resource else {
        panic!("PUT without request: {ev:?}");
    };
    assert_eq!(r, created);
    let spec = r.spec.unwrap();
    assert_eq!(spec.state, types::RequestState::Pending as i32);
    assert_eq!(spec.user, "alice");
    assert_eq!(spec.request_reason, "fix prod");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let created_at = spec.created.unwrap().seconds;
    assert!((now - created_at).abs() < 60);
    assert!(spec.expires.unwrap().seconds > now);
    assert!(r.metadata.unwrap().expires.unwrap().seconds > now);
    // Annotations are the union over the requester's roles.
    let ann = spec.system_annotations.unwrap().values;
    assert_eq!(ann["opsgenie_schedules"].values, ["primary", "secondary"]);
    assert_eq!(ann["pagerduty_services"].values, ["svc-a", "svc-b"]);
    // Thresholds come from the role granting db-admin.
    assert_eq!(spec.thresholds.len(), 1);
    assert_eq!(spec.thresholds[0].approve, 2);
}

#[tokio::test]
async fn watch_rejects_unknown_kind_unless_partial_success() {
    let tp = fake().await;
    let mut c = client(&tp, "access-plugin").await;
    let mut w = watch_all();
    w.kinds.push(types::WatchKind {
        kind: "node".to_owned(),
        ..Default::default()
    });
    let err = c.watch_events(w.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    w.allow_partial_success = true;
    let mut stream = c.watch_events(w).await.unwrap().into_inner();
    let init = next_event(&mut stream).await.unwrap().unwrap();
    let Some(proto::event::Resource::WatchStatus(status)) = init.resource else {
        panic!("no status");
    };
    assert_eq!(status.spec.unwrap().kinds.len(), 1);

    let mut bad = watch_all();
    bad.kinds[0]
        .filter
        .insert("color".to_owned(), "red".to_owned());
    let err = c.watch_events(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("unknown filter key"));
}

#[tokio::test]
async fn review_thresholds_and_error_messages() {
    let tp = fake().await;
    let r = tp.create_request("alice", &["db-admin"], "").unwrap();
    let id = id_of(&r);
    let mut bob = client(&tp, "bob").await;

    // Author mismatch.
    let err = bob
        .submit_access_review(review_msg(&id, "carol", true, ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(
        err.message(),
        r#"user "bob" cannot submit reviews on behalf of "carol""#
    );

    // Empty author means the caller; approve 2 needs two approvals.
    let after = bob
        .submit_access_review(review_msg(&id, "", true, "looks fine"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&after), types::RequestState::Pending);
    assert_eq!(after.spec.as_ref().unwrap().reviews[0].author, "bob");
    assert!(after.spec.as_ref().unwrap().reviews[0].created.is_some());

    let err = bob
        .submit_access_review(review_msg(&id, "", true, ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(
        err.message(),
        r#"user "bob" has already reviewed this request"#
    );

    let after = tp.review(&id, "carol", true, "on call").unwrap();
    assert_eq!(state(&after), types::RequestState::Approved);
    assert_eq!(after.spec.as_ref().unwrap().resolve_reason, "on call");
    // Once resolved, the access expiry becomes the resource expiry.
    assert_eq!(
        after.metadata.as_ref().unwrap().expires,
        after.spec.as_ref().unwrap().expires
    );

    // Already reviewed is reported before already resolved.
    let err = bob
        .submit_access_review(review_msg(&id, "", true, ""))
        .await
        .unwrap_err();
    assert!(err.message().ends_with("has already reviewed this request"));
    let err = tp.review(&id, "dave", false, "").unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(
        err.message(),
        "the access request has been already approved"
    );

    // A single denial denies.
    let r2 = tp.create_request("alice", &["db-admin"], "").unwrap();
    let denied = tp.review(&id_of(&r2), "dave", false, "no").unwrap();
    assert_eq!(state(&denied), types::RequestState::Denied);
    let err = tp.review(&id_of(&r2), "bob", true, "").unwrap_err();
    assert_eq!(err.message(), "the access request has been already denied");
}

#[tokio::test]
async fn review_validation_rules() {
    let tp = fake().await;
    let id = id_of(&tp.create_request("alice", &["ops"], "").unwrap());
    let mut bob = client(&tp, "bob").await;

    let mut promoted = review_msg(&id, "", true, "");
    promoted.review.as_mut().unwrap().proposed_state = types::RequestState::Promoted as i32;
    let err = bob.submit_access_review(promoted).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut none = review_msg(&id, "", true, "");
    none.review.as_mut().unwrap().proposed_state = 0;
    assert_eq!(
        bob.submit_access_review(none).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    let mut annotated = review_msg(&id, "", true, "");
    annotated.review.as_mut().unwrap().annotations = Some(crate::pb::wrappers::LabelValues {
        values: HashMap::from([(
            "k".to_owned(),
            crate::pb::wrappers::StringValues {
                values: vec!["v".to_owned()],
            },
        )]),
    });
    assert_eq!(
        bob.submit_access_review(annotated)
            .await
            .unwrap_err()
            .code(),
        Code::Unimplemented
    );

    // Not a reviewer at all.
    let mut nobody = client(&tp, "nobody").await;
    let err = nobody
        .submit_access_review(review_msg(&id, "", true, ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), r#"user "nobody" cannot submit reviews"#);

    // Reviewing one's own request is refused even with reviewer rights.
    tp.add_user("alice", ["requester", "quick", "reviewer"]);
    let err = tp.review(&id, "alice", true, "").unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Admin-action MFA.
    tp.set_mfa_required(true);
    let err = bob
        .submit_access_review(review_msg(&id, "", true, ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(
        err.message(),
        "admin-level API request requires MFA verification"
    );
    tp.set_mfa_required(false);
    let ok = bob
        .submit_access_review(review_msg(&id, "", true, ""))
        .await
        .unwrap()
        .into_inner();
    // The `quick` role has no thresholds: the default approve 1 applies.
    assert_eq!(state(&ok), types::RequestState::Approved);
}

#[tokio::test]
async fn create_over_grpc_validates_like_teleport() {
    let tp = fake().await;
    let mut alice = client(&tp, "alice").await;
    let mk = |name: &str, user: &str, roles: &[&str]| types::AccessRequestV3 {
        kind: "access_request".to_owned(),
        version: "v3".to_owned(),
        metadata: Some(types::Metadata {
            name: name.to_owned(),
            ..Default::default()
        }),
        spec: Some(types::AccessRequestSpecV3 {
            user: user.to_owned(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = alice
        .create_access_request_v2(mk("not-a-uuid", "", &["db-admin"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let id = uuid::Uuid::new_v4().to_string();
    let r = alice
        .create_access_request_v2(mk(&id, "", &["web-frontend"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.spec.as_ref().unwrap().user, "alice");
    assert_eq!(
        alice
            .create_access_request_v2(mk(&id, "", &["web-frontend"]))
            .await
            .unwrap_err()
            .code(),
        Code::AlreadyExists
    );

    let err = alice
        .create_access_request_v2(mk(&uuid::Uuid::new_v4().to_string(), "", &["root"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // Creating for someone else needs access_request:create.
    let err = alice
        .create_access_request_v2(mk(&uuid::Uuid::new_v4().to_string(), "bob", &["ops"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let mut root = client(&tp, "root").await;
    root.create_access_request_v2(mk(&uuid::Uuid::new_v4().to_string(), "alice", &["ops"]))
        .await
        .unwrap();
    assert_eq!(tp.request_count(), 2);
}

#[tokio::test]
async fn plugin_data_compare_and_swap() {
    let tp = fake().await;
    let id = id_of(&tp.create_request("alice", &["ops"], "").unwrap());
    let mut c = client(&tp, "access-plugin").await;
    let upd = |set: &[(&str, &str)], expect: &[(&str, &str)]| types::PluginDataUpdateParams {
        kind: "access_request".to_owned(),
        resource: id.clone(),
        plugin: "opsgenie".to_owned(),
        set: set
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        expect: expect
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let get = types::PluginDataFilter {
        kind: "access_request".to_owned(),
        resource: id.clone(),
        plugin: "opsgenie".to_owned(),
    };

    // Nothing stored yet: an empty list, not NotFound.
    let seq = c.get_plugin_data(get.clone()).await.unwrap().into_inner();
    assert!(seq.plugin_data.is_empty());

    // No entry: expectations of "" hold, anything else fails.
    let err = c
        .update_plugin_data(upd(&[("alert", "A1")], &[("alert", "X")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.message(), r#"expectations not met for field "alert""#);
    c.update_plugin_data(upd(&[("alert", "A1"), ("state", "open")], &[("alert", "")]))
        .await
        .unwrap();

    // A second writer with the stale "absent" expectation loses.
    let err = c
        .update_plugin_data(upd(&[("alert", "A2")], &[("alert", "")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // Matching expectations win; "" in Set deletes a key.
    c.update_plugin_data(upd(&[("state", "")], &[("alert", "A1"), ("state", "open")]))
        .await
        .unwrap();
    let seq = c.get_plugin_data(get.clone()).await.unwrap().into_inner();
    let pd = &seq.plugin_data[0];
    assert_eq!(pd.kind, "plugin_data");
    assert!(pd.metadata.as_ref().unwrap().expires.is_some());
    let data = &pd.spec.as_ref().unwrap().entries["opsgenie"].data;
    assert_eq!(data.len(), 1);
    assert_eq!(data["alert"], "A1");

    // Unconditional update (no Expect).
    c.update_plugin_data(upd(&[("alert", "")], &[]))
        .await
        .unwrap();
    assert_eq!(tp.plugin_data(&id, "opsgenie"), None);
    let seq = c.get_plugin_data(get.clone()).await.unwrap().into_inner();
    assert!(seq.plugin_data.is_empty());

    // Unknown request without data.
    let mut missing = upd(&[("a", "b")], &[]);
    missing.resource = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        c.update_plugin_data(missing).await.unwrap_err().code(),
        Code::NotFound
    );

    // Test API.
    tp.set_plugin_data(
        &id,
        "other",
        BTreeMap::from([("k".to_owned(), "v".to_owned())]),
    )
    .unwrap();
    assert_eq!(tp.plugin_data(&id, "other").unwrap()["k"], "v".to_owned());
}

#[tokio::test]
async fn delete_emits_header_and_keeps_plugin_data() {
    let tp = fake().await;
    let id = id_of(&tp.create_request("alice", &["ops"], "").unwrap());
    tp.set_plugin_data(
        &id,
        "opsgenie",
        BTreeMap::from([("alert".to_owned(), "A1".to_owned())]),
    )
    .unwrap();
    let mut plugin = client(&tp, "access-plugin").await;
    let mut stream = plugin.watch_events(watch_all()).await.unwrap().into_inner();
    next_event(&mut stream).await.unwrap().unwrap();

    // The plugin role may not delete.
    let err = plugin
        .delete_access_request(proto::RequestId { id: id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let mut root = client(&tp, "root").await;
    root.delete_access_request(proto::RequestId { id: id.clone() })
        .await
        .unwrap();
    let ev = next_event(&mut stream).await.unwrap().unwrap();
    assert_eq!(ev.operation, proto::Operation::Delete as i32);
    let Some(proto::event::Resource::ResourceHeader(h)) = ev.resource else {
        panic!("DELETE without header: {ev:?}");
    };
    assert_eq!(h.kind, "access_request");
    assert_eq!(h.version, "v3");
    let m = h.metadata.unwrap();
    assert_eq!(m.name, id);
    assert_eq!(m.namespace, "default");

    assert!(tp.request(&id).is_none());
    let seq = plugin
        .get_plugin_data(types::PluginDataFilter {
            kind: "access_request".to_owned(),
            resource: id.clone(),
            plugin: "opsgenie".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seq.plugin_data.len(), 1);
    // ...and can still be updated (the DELETE handler records that it closed the alert).
    plugin
        .update_plugin_data(types::PluginDataUpdateParams {
            kind: "access_request".to_owned(),
            resource: id.clone(),
            plugin: "opsgenie".to_owned(),
            set: HashMap::from([("closed".to_owned(), "true".to_owned())]),
            expect: HashMap::from([("alert".to_owned(), "A1".to_owned())]),
        })
        .await
        .unwrap();
    assert_eq!(tp.plugin_data(&id, "opsgenie").unwrap()["closed"], "true");
    assert_eq!(
        root.delete_access_request(proto::RequestId { id })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn rbac_denials() {
    let tp = fake().await;
    let id = id_of(&tp.create_request("alice", &["ops"], "").unwrap());
    let mut nobody = client(&tp, "nobody").await;
    let err = nobody.watch_events(watch_all()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(
        err.message(),
        r#"access denied to perform action "list" on "access_request""#
    );
    let err = nobody
        .list_access_requests(proto::ListAccessRequestsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = nobody
        .update_plugin_data(types::PluginDataUpdateParams {
            kind: "access_request".to_owned(),
            resource: id.clone(),
            plugin: "p".to_owned(),
            set: HashMap::from([("a".to_owned(), "b".to_owned())]),
            expect: HashMap::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let mut plugin = client(&tp, "access-plugin").await;
    let err = plugin
        .set_access_request_state(proto::RequestStateSetter {
            id: id.clone(),
            state: types::RequestState::Approved as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let mut root = client(&tp, "root").await;
    root.set_access_request_state(proto::RequestStateSetter {
        id: id.clone(),
        state: types::RequestState::Denied as i32,
        reason: "nope".to_owned(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(tp.request_state(&id), Some(types::RequestState::Denied));
    assert_eq!(
        tp.request(&id).unwrap().spec.unwrap().resolve_reason,
        "nope"
    );
    // Denied is final.
    assert!(tp
        .set_state(&id, types::RequestState::Approved, "")
        .is_err());
}

#[tokio::test]
async fn list_paginates_and_fallback_knob() {
    let tp = fake_with(FakeTeleportOptions {
        max_page_size: 3,
        ..Default::default()
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(id_of(
            &tp.create_request("alice", &["ops"], &format!("r{i}"))
                .unwrap(),
        ));
    }
    tp.set_state(&ids[1], types::RequestState::Approved, "")
        .unwrap();
    let mut c = client(&tp, "access-plugin").await;

    let mut seen = Vec::new();
    let mut key = String::new();
    let mut pages = 0;
    loop {
        let resp = c
            .list_access_requests(proto::ListAccessRequestsRequest {
                limit: 100, // capped to 3
                start_key: key.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(resp.access_requests.len() <= 3);
        seen.extend(resp.access_requests.iter().map(id_of));
        if resp.next_key.is_empty() {
            break;
        }
        key = resp.next_key;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids, "sorted by creation");

    let pending = c
        .list_access_requests(proto::ListAccessRequestsRequest {
            filter: Some(types::AccessRequestFilter {
                state: types::RequestState::Pending as i32,
                ..Default::default()
            }),
            limit: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pending.access_requests.len(), 3);
    assert!(!pending.access_requests.iter().any(|r| id_of(r) == ids[1]));

    tp.set_list_access_requests_implemented(false);
    let err = c
        .list_access_requests(proto::ListAccessRequestsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    let mut stream = c
        .get_access_requests_v2(types::AccessRequestFilter {
            state: types::RequestState::Pending as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut all = Vec::new();
    while let Some(r) = stream.message().await.unwrap() {
        all.push(id_of(&r));
    }
    assert_eq!(all.len(), 6);
    assert_eq!(tp.count_calls("ListAccessRequests"), 5);
}

#[tokio::test]
async fn drop_watchers_ends_streams_with_error() {
    let tp = fake().await;
    let mut c = client(&tp, "access-plugin").await;
    let mut s1 = c.watch_events(watch_all()).await.unwrap().into_inner();
    let mut s2 = c.watch_events(watch_all()).await.unwrap().into_inner();
    next_event(&mut s1).await.unwrap().unwrap();
    next_event(&mut s2).await.unwrap().unwrap();
    tp.wait_until(T, "two watchers", |tp| tp.watchers() == 2)
        .await
        .unwrap();
    tp.drop_watchers();
    for s in [&mut s1, &mut s2] {
        let err = next_event(s).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
    }
    tp.wait_until(T, "no watchers", |tp| tp.watchers() == 0)
        .await
        .unwrap();
    // A new watch works after the drop.
    let mut s3 = c.watch_events(watch_all()).await.unwrap().into_inner();
    assert_eq!(
        next_event(&mut s3).await.unwrap().unwrap().operation,
        proto::Operation::Init as i32
    );
}

#[tokio::test]
async fn lagging_watcher_is_disconnected_not_silently_skipped() {
    let tp = fake_with(FakeTeleportOptions {
        event_buffer: 16,
        ..Default::default()
    })
    .await;
    let mut c = client(&tp, "access-plugin").await;
    let mut s = c.watch_events(watch_all()).await.unwrap().into_inner();
    next_event(&mut s).await.unwrap().unwrap();
    // The forwarding task can't run during this synchronous burst, so it must lag.
    for _ in 0..100 {
        tp.create_request("alice", &["ops"], "").unwrap();
    }
    let mut puts = 0;
    let err = loop {
        match next_event(&mut s).await {
            Ok(Some(_)) => puts += 1,
            Ok(None) => panic!("stream ended without an error"),
            Err(e) => break e,
        }
    };
    assert!(puts < 100);
    assert_eq!(err.code(), Code::Unavailable);
}

#[tokio::test]
async fn watch_filter_applies_to_puts_only() {
    let tp = fake().await;
    let mut c = client(&tp, "access-plugin").await;
    let mut w = watch_all();
    w.kinds[0]
        .filter
        .insert("state".to_owned(), "APPROVED".to_owned());
    let mut s = c.watch_events(w).await.unwrap().into_inner();
    next_event(&mut s).await.unwrap().unwrap();
    let id = id_of(&tp.create_request("alice", &["ops"], "").unwrap());
    tp.review(&id, "bob", true, "ok").unwrap();
    let ev = next_event(&mut s).await.unwrap().unwrap();
    let Some(proto::event::Resource::AccessRequest(r)) = ev.resource else {
        panic!("expected the approved PUT");
    };
    assert_eq!(state(&r), types::RequestState::Approved);
    tp.delete_request(&id).unwrap();
    let ev = next_event(&mut s).await.unwrap().unwrap();
    assert_eq!(ev.operation, proto::Operation::Delete as i32);
}

#[tokio::test]
async fn injected_faults_and_latency() {
    let tp = fake().await;
    let mut c = client(&tp, "nobody").await;
    tp.fail_next(2, Code::Unavailable);
    for _ in 0..2 {
        let err = c.ping(proto::PingRequest {}).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
    }
    c.ping(proto::PingRequest {}).await.unwrap();
    assert_eq!(tp.count_calls("Ping"), 3);

    tp.set_latency(Duration::from_millis(50));
    #[allow(
        clippy::disallowed_methods,
        reason = "the fake's injected latency is real time, measured as a client sees it"
    )]
    let started = std::time::Instant::now();
    c.ping(proto::PingRequest {}).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(50));
}

#[tokio::test]
async fn identity_file_connects_and_expired_cert_is_rejected() {
    let tp = fake().await;
    // A client built from the identity file's PEM blocks (key, cert, CA), as the daemon does.
    let dir = std::env::temp_dir().join(format!("fake-tp-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("identity");
    tp.write_identity(&path, "access-plugin").unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let blocks = pem_blocks(&text);
    assert_eq!(blocks.len(), 3);
    let tls = ClientTlsConfig::new()
        .domain_name(API_DOMAIN)
        .ca_certificate(Certificate::from_pem(&blocks[2]))
        .identity(Identity::from_pem(&blocks[1], &blocks[0]));
    let ch = Endpoint::from_shared(tp.uri())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    AuthServiceClient::new(ch)
        .ping(proto::PingRequest {})
        .await
        .unwrap();

    let now = SystemTime::now();
    let (cert, key) = tp
        .pki()
        .client_cert(
            "access-plugin",
            now - Duration::from_secs(7200),
            now - Duration::from_secs(3600),
            KeyKind::EcdsaP256,
        )
        .unwrap();
    let tls = ClientTlsConfig::new()
        .domain_name(API_DOMAIN)
        .ca_certificate(Certificate::from_pem(tp.pki().ca_pem()))
        .identity(Identity::from_pem(cert, key));
    let result = async {
        let ch = Endpoint::from_shared(tp.uri())?
            .tls_config(tls)?
            .connect()
            .await?;
        AuthServiceClient::new(ch)
            .ping(proto::PingRequest {})
            .await
            .map_err(|e| FakeTeleportError::InvalidResource(e.to_string()))?;
        Ok::<_, FakeTeleportError>(())
    }
    .await;
    assert!(result.is_err(), "expired certificate accepted");
}

/// PEM blocks in order, as the identity-file parser rule assigns them.
fn pem_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("-----BEGIN ") {
            cur = Some(String::new());
        }
        if let Some(b) = cur.as_mut() {
            b.push_str(line);
            b.push('\n');
        }
        if line.starts_with("-----END ") {
            blocks.extend(cur.take());
        }
    }
    blocks
}

#[tokio::test]
async fn wait_until_times_out_with_description() {
    let tp = fake().await;
    let err = tp
        .wait_until(Duration::from_millis(20), "a miracle", |_| false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("a miracle"));
}

#[test]
fn role_yaml_rejects_unknown_kinds_and_ignores_unknown_fields() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tp = FakeTeleport::start(FakeTeleportOptions::default())
            .await
            .unwrap();
        assert!(tp
            .add_role_yaml("kind: node\nmetadata: {name: x}\n")
            .is_err());
        tp.add_role_yaml(
            "kind: role\nversion: v7\nmetadata: {name: r, description: d}\nspec:\n  allow:\n    kubernetes_labels: {a: b}\n    request: {roles: [x], max_duration: 4h}\n",
        )
        .unwrap();
        tp.add_user("u", ["r"]);
        assert!(tp.create_request("u", &["x"], "").is_ok());
    });
}

#[tokio::test]
async fn ten_thousand_requests_stream_and_page() {
    let tp = fake().await;
    let mut c = client(&tp, "access-plugin").await;
    let mut s = c.watch_events(watch_all()).await.unwrap().into_inner();
    next_event(&mut s).await.unwrap().unwrap();
    const N: usize = 10_000;
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while n < N {
            match tokio::time::timeout(T, s.message()).await {
                Ok(Ok(Some(_))) => n += 1,
                other => panic!("watch ended early after {n}: {other:?}"),
            }
        }
        n
    });
    for i in 0..N {
        tp.create_request("alice", &["ops"], "").unwrap();
        if i % 500 == 0 {
            // Let the watcher drain, as a real server interleaves work.
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(reader.await.unwrap(), N);
    let mut total = 0;
    let mut key = String::new();
    loop {
        let resp = c
            .list_access_requests(proto::ListAccessRequestsRequest {
                start_key: key,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        total += resp.access_requests.len();
        if resp.next_key.is_empty() {
            break;
        }
        key = resp.next_key;
    }
    assert_eq!(total, N);
}

#[tokio::test]
async fn own_roles_are_served_as_written_to_any_known_user() {
    let tp = fake().await;
    tp.add_role_yaml(
        r#"
kind: role
version: v7
metadata:
  name: narrow
spec:
  allow:
    rules:
      - resources: ['lock']
        verbs: ['create']
        where: 'equals(user.metadata.name, "x")'
    review_requests:
      roles: ['editor']
      where: 'contains(reviewer.roles, "x")'
  deny:
    rules:
      - resources: ['lock']
        verbs: ['update']
    review_requests:
      roles: ['admin']
"#,
    )
    .unwrap();
    tp.add_user("narrow-user", ["narrow", "no-such-role"]);
    let mut c = client(&tp, "narrow-user").await;
    let mut stream = c.get_current_user_roles(()).await.unwrap().into_inner();
    let mut roles = Vec::new();
    while let Some(role) = stream.message().await.unwrap() {
        roles.push(role);
    }
    // A role the user names but the cluster lacks is not served.
    assert_eq!(roles.len(), 1);
    let role = &roles[0];
    assert_eq!(role.metadata.as_ref().unwrap().name, "narrow");
    let spec = role.spec.as_ref().unwrap();
    let allow = spec.allow.as_ref().unwrap();
    assert_eq!(allow.rules[0].resources, vec!["lock"]);
    assert_eq!(allow.rules[0].r#where, "equals(user.metadata.name, \"x\")");
    let review = allow.review_requests.as_ref().unwrap();
    assert_eq!(review.roles, vec!["editor"]);
    assert_eq!(review.r#where, "contains(reviewer.roles, \"x\")");
    let deny = spec.deny.as_ref().unwrap();
    assert_eq!(deny.rules[0].verbs, vec!["update"]);
    assert_eq!(deny.review_requests.as_ref().unwrap().roles, vec!["admin"]);
    // No rule is needed, but the user must exist.
    let mut c = client(&tp, "stranger").await;
    let err = c.get_current_user_roles(()).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(tp.count_calls("GetCurrentUserRoles"), 2);
}
