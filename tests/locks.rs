//! Locks on access requests against the fake Teleport (teleport-wire.md §9): created with the
//! `lock` rule, refused without it or under admin-action MFA (distinct, non-retryable errors
//! naming the fix), one lock per request however many replicas upsert it, the expiry carried,
//! and the request's access revoked while the lock is in force.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use teleport_opsgenie::core::shift::lock_name;
use teleport_opsgenie::sim::world::{World, WorldOptions, REQUESTER};
use teleport_opsgenie::teleport::client::{RequestLock, TeleportClient};
use teleport_opsgenie::teleport::error::{Operation, TeleportError};
use teleport_opsgenie::teleport::identity::Identity;

const LOCKER_ROLE: &str = r#"
kind: role
version: v7
metadata:
  name: locker
spec:
  allow:
    rules:
      - resources: ['lock']
        verbs: ['create', 'update', 'read', 'delete']
"#;

async fn world() -> World {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    World::start(WorldOptions::default()).await.expect("world")
}

async fn client_for(world: &World, path: &Path) -> TeleportClient {
    let mut cfg = world.config().teleport;
    cfg.identity = Some(path.to_owned());
    cfg.call_timeout = Duration::from_secs(5);
    let identity = Identity::load(&cfg).expect("identity");
    TeleportClient::connect(&cfg, &identity)
        .await
        .expect("connect")
        .0
}

/// A plugin identity with the plugin's roles plus the `lock` rule.
async fn locker(world: &World) -> TeleportClient {
    world.teleport.add_role_yaml(LOCKER_ROLE).expect("role");
    world.teleport.add_user(
        "locker-plugin",
        ["access-plugin", "access-plugin-approver", "locker"],
    );
    let path = world.dir.join("locker-identity");
    world
        .teleport
        .write_identity(&path, "locker-plugin")
        .expect("identity");
    client_for(world, &path).await
}

fn request(world: &World) -> String {
    let made = world
        .teleport
        .create_request(REQUESTER, &["editor"], "on call")
        .expect("request");
    made.metadata.expect("metadata").name
}

/// A whole second, so the round trip through a protobuf Timestamp is exact.
fn in_an_hour() -> SystemTime {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    UNIX_EPOCH + Duration::from_secs(now.as_secs() + 3600)
}

#[tokio::test]
async fn a_lock_with_the_rule_revokes_the_request_until_it_expires() {
    let world = world().await;
    let client = locker(&world).await;
    let id = request(&world);
    let other = request(&world);
    let expires = in_an_hour();
    let lock = RequestLock::for_request(&id, "your on-call shift ended", Some(expires));
    assert!(!world.teleport.access_revoked(&id));
    client.upsert_lock(&lock).await.expect("upsert");

    let read = client.get_lock(&lock_name(&id)).await.expect("get");
    assert_eq!(read.name, lock_name(&id));
    assert_eq!(read.request_id, id);
    assert_eq!(read.message, "your on-call shift ended");
    assert_eq!(read.expires, Some(expires), "the expiry is carried");
    assert_eq!(read.created_by, "locker-plugin", "set by the server");
    assert!(read.created_at.is_some(), "set by the server");

    assert!(world.teleport.access_revoked(&id));
    assert!(!world.teleport.access_revoked(&other), "only the target");
    assert!(
        !world
            .teleport
            .access_revoked_at(&id, expires + Duration::from_secs(1)),
        "an expired lock no longer applies"
    );

    client.delete_lock(&lock.name).await.expect("delete");
    assert!(!world.teleport.access_revoked(&id));
    let gone = client.get_lock(&lock.name).await.unwrap_err();
    assert!(matches!(gone, TeleportError::NotFound { .. }), "{gone}");
}

#[tokio::test]
async fn replicas_and_retries_make_one_lock() {
    let world = world().await;
    let first = locker(&world).await;
    let second = client_for(&world, &world.dir.join("locker-identity")).await;
    let id = request(&world);
    for client in [&first, &second, &first] {
        let lock = RequestLock::for_request(&id, "shift ended", Some(in_an_hour()));
        client.upsert_lock(&lock).await.expect("upsert");
    }
    assert_eq!(world.teleport.count_calls("UpsertLock"), 3);
    let locks = world.teleport.locks();
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert_eq!(
        locks[0].metadata.as_ref().map(|m| m.name.as_str()),
        Some(lock_name(&id).as_str())
    );
}

#[tokio::test]
async fn without_the_lock_rule_the_refusal_names_the_rule_and_is_final() {
    let world = world().await;
    // The plugin's documented roles, without the commented-out `lock` rule.
    let plugin = client_for(&world, &world.plugin_identity).await;
    let id = request(&world);
    let lock = RequestLock::for_request(&id, "shift ended", Some(in_an_hour()));
    let err = plugin.upsert_lock(&lock).await.unwrap_err();
    match &err {
        TeleportError::PermissionDenied { operation, .. } => {
            assert_eq!(*operation, Operation::UpsertLock)
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("`lock`"), "{text}");
    assert!(text.contains("`create`, `update`"), "{text}");
    assert!(text.contains("config/access-plugin.yaml"), "{text}");
    assert!(err.is_refusal() && !err.is_retryable());
    assert!(world.teleport.locks().is_empty());
    assert!(!world.teleport.access_revoked(&id));

    let err = plugin.get_lock(&lock.name).await.unwrap_err();
    assert!(
        matches!(
            err,
            TeleportError::PermissionDenied {
                operation: Operation::GetLock,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn admin_action_mfa_is_a_distinct_final_refusal_with_the_fix() {
    let world = world().await;
    let client = locker(&world).await;
    world.teleport.set_mfa_required_for_locks(true);
    let id = request(&world);
    let lock = RequestLock::for_request(&id, "shift ended", Some(in_an_hour()));
    let err = client.upsert_lock(&lock).await.unwrap_err();
    assert!(
        matches!(
            err,
            TeleportError::MfaRequired {
                operation: Operation::UpsertLock,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("tbot"), "{err}");
    assert!(err.is_refusal() && !err.is_retryable());
    assert!(world.teleport.locks().is_empty());

    world.teleport.set_mfa_required_for_locks(false);
    client.upsert_lock(&lock).await.expect("upsert");
    assert!(world.teleport.access_revoked(&id));
}

#[tokio::test]
async fn a_lock_without_a_target_is_refused_before_any_call() {
    let world = world().await;
    let client = locker(&world).await;
    let lock = RequestLock::for_request("", "shift ended", None);
    let err = client.upsert_lock(&lock).await.unwrap_err();
    assert!(matches!(err, TeleportError::Config(_)), "{err}");
    assert_eq!(world.teleport.count_calls("UpsertLock"), 0);
}
