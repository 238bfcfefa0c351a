//! Tests of the actor shell: calls through the handle, cancellation with the caller, and
//! supervision. The backend is the in-process [`scripted_server`], which counts the requests it
//! receives; time is tokio's paused clock, so waiting out backoffs and rate limits is instant.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Context, Handler, Message};
use tokio::time::Instant;

use super::tests::{client, config, payload, scripted_server, Recorder, ACCEPTED, KEY};
use super::*;
use crate::config::{Limit, Secret};
use crate::pipeline::error_policy::{self, Class};

/// Stops the actor, as a crash would.
#[derive(Message)]
#[rtype(result = "()")]
struct Crash;

impl Handler<Crash> for Gateway {
    type Result = ();

    fn handle(&mut self, _msg: Crash, ctx: &mut Context<Self>) {
        use actix::ActorContext;
        ctx.stop();
    }
}

/// How often the supervisor restarted the actor.
#[derive(Message)]
#[rtype(result = "u32")]
struct Restarts;

impl Handler<Restarts> for Gateway {
    type Result = u32;

    fn handle(&mut self, _msg: Restarts, _ctx: &mut Context<Self>) -> u32 {
        self.restarts
    }
}

/// Waits (in virtual time) until `done` holds; fails the test after a minute of it.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Retries every second, practically forever: only cancellation ends a failing call.
fn patient() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 10_000,
        backoff_base: Duration::from_secs(1),
        backoff_cap: Duration::from_secs(1),
        deadline: Duration::from_secs(3600),
        seed: Some(7),
        ..RetryPolicy::default()
    }
}

fn patient_client(cfg: &crate::config::OpsgenieConfig) -> (GatewayClient, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let client = GatewayClient::with_policy(
        cfg,
        Secret::new(KEY),
        patient(),
        Some(recorder.clone() as Arc<dyn BackendCallObserver>),
    )
    .unwrap();
    (client, recorder)
}

#[actix::test]
async fn a_dropped_caller_stops_the_retries() {
    tokio::time::pause();
    let (url, requests) = scripted_server(|_| (503, vec![], r#"{"message":"unavailable"}"#)).await;
    let (client, recorder) = patient_client(&config(&url));
    let gateway = Gateway::start_supervised(client);
    let caller = {
        let gateway = gateway.clone();
        actix::spawn(async move { gateway.call(Operation::CreateAlert(payload())).await })
    };
    // Three attempts answered, and the gateway is in its backoff before the fourth.
    until("three answered attempts", || {
        let seen = requests.load(Ordering::SeqCst);
        seen >= 3 && recorder.events().len() == seen
    })
    .await;
    let at_drop = requests.load(Ordering::SeqCst);
    caller.abort();
    // A minute of virtual time: sixty more attempts, had the call not been cancelled.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(requests.load(Ordering::SeqCst), at_drop);
    assert_eq!(recorder.events().len(), at_drop);
    // The gateway itself still works: a new call reaches the backend.
    let next = gateway.addr().clone();
    assert!(next.connected());
    let before = requests.load(Ordering::SeqCst);
    let again = {
        let gateway = gateway.clone();
        actix::spawn(async move { gateway.call(Operation::CreateAlert(payload())).await })
    };
    until("a new call", || requests.load(Ordering::SeqCst) > before).await;
    again.abort();
}

#[actix::test]
async fn a_dropped_caller_leaves_the_rate_limit_queue() {
    tokio::time::pause();
    let (url, requests) = scripted_server(|_| (202, vec![], ACCEPTED)).await;
    let mut cfg = config(&url);
    // One alert call a minute.
    cfg.rate_limits.alert = Limit::new(0, 1);
    let (client, _) = client(&cfg);
    let gateway = Gateway::start_supervised(client);
    assert!(gateway
        .call(Operation::CreateAlert(payload()))
        .await
        .is_ok());
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    // The next one waits for the minute's slot; its caller gives up after ten seconds.
    let waited = tokio::time::timeout(
        Duration::from_secs(10),
        gateway.call(Operation::CreateAlert(payload())),
    )
    .await;
    assert!(waited.is_err(), "{waited:?}");
    // Well past the next slot: the abandoned call never went out.
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    // The slot it would have taken is there for the next caller.
    assert!(gateway
        .call(Operation::CreateAlert(payload()))
        .await
        .is_ok());
    assert_eq!(requests.load(Ordering::SeqCst), 2);
}

#[actix::test]
async fn a_stopped_gateway_is_restarted_and_answers_again() {
    let (url, requests) = scripted_server(|_| (202, vec![], ACCEPTED)).await;
    let (client, _) = client(&config(&url));
    let gateway = Gateway::start_supervised(client);
    assert!(gateway
        .call(Operation::CreateAlert(payload()))
        .await
        .is_ok());
    gateway.addr().send(Crash).await.unwrap();
    assert_eq!(
        gateway
            .call(Operation::CreateAlert(payload()))
            .await
            .map(|_| ()),
        Ok(())
    );
    assert_eq!(gateway.addr().send(Restarts).await.unwrap(), 1);
    assert_eq!(requests.load(Ordering::SeqCst), 2);
}

#[actix::test]
async fn a_gateway_that_is_gone_gives_a_typed_retryable_error() {
    let (url, requests) = scripted_server(|_| (202, vec![], ACCEPTED)).await;
    let (client, _) = client(&config(&url));
    // Not supervised: once stopped it stays stopped.
    let addr = Gateway::from_client(client).start();
    let gateway = GatewayHandle::from_addr(addr.clone());
    addr.send(Crash).await.unwrap();
    until("the gateway to stop", || !addr.connected()).await;
    let err = gateway
        .call(Operation::CreateAlert(payload()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            GatewayError::Stopped {
                endpoint: "create_alert",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(error_policy::backend(&err), Class::Transient);
    assert!(err.to_string().contains("not running"), "{err}");
    let health = gateway.health().await.unwrap_err();
    assert!(matches!(health, GatewayError::Stopped { .. }), "{health:?}");
    assert_eq!(requests.load(Ordering::SeqCst), 0);
}
