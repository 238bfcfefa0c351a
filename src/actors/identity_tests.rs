//! The watcher against the fake Teleport: a renewal with a certificate dated before 1970 is
//! refused and logged while the current connection stays in use; a good one is picked up.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::config::ConnectMode;
use crate::sim::pki::KeyKind;
use crate::sim::teleport::{FakeTeleport, FakeTeleportOptions, ACCESS_PLUGIN_ROLE};

/// Counts the reconnects the watcher asks for.
#[derive(Default)]
struct Stream(u64);

impl Actor for Stream {
    type Context = Context<Self>;
}

impl Handler<Reconnect> for Stream {
    type Result = ();
    fn handle(&mut self, _: Reconnect, _: &mut Self::Context) {
        self.0 += 1;
    }
}

#[derive(Message)]
#[rtype(result = "u64")]
struct Count;

impl Handler<Count> for Stream {
    type Result = u64;
    fn handle(&mut self, _: Count, _: &mut Self::Context) -> u64 {
        self.0
    }
}

const WAIT: Duration = Duration::from_secs(10);

/// Asks `ask` until it answers at least `want`, within [`WAIT`].
async fn until_at_least<F, Fut>(what: &str, want: u64, mut ask: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while ask().await < want {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn a_refreshed_identity_dated_before_1970_is_refused_and_the_connection_kept() {
    let tp = FakeTeleport::start(FakeTeleportOptions::default())
        .await
        .expect("fake");
    tp.add_role_yaml(ACCESS_PLUGIN_ROLE).expect("role");
    tp.add_user("access-plugin", ["access-plugin"]);
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("identity");
    tp.write_identity(&path, "access-plugin").expect("identity");
    let cfg = TeleportConfig {
        addr: tp.addr().to_string(),
        mode: ConnectMode::Auth,
        identity: Some(path.clone()),
        refresh_identity_interval: Duration::from_millis(50),
        ..TeleportConfig::default()
    };
    let identity = Identity::load(&cfg).expect("identity");
    let (client, _) = TeleportClient::connect(&cfg, &identity)
        .await
        .expect("connect");
    let handle = ClientHandle::new(client);
    let stream = Stream::default().start();
    let initial = std::fs::read(&path).expect("read");
    let watcher = IdentityWatcher::new(
        cfg.clone(),
        handle.clone(),
        stream.clone().recipient(),
        Some(&initial),
    )
    .start();

    // tbot's renewal gone wrong: a certificate from 1960 to 1965.
    let year = Duration::from_secs(365 * 86_400);
    let (cert, key) = tp
        .pki()
        .client_cert(
            "access-plugin",
            UNIX_EPOCH - 10 * year,
            UNIX_EPOCH - 5 * year,
            KeyKind::EcdsaP256,
        )
        .expect("cert");
    std::fs::write(&path, format!("{key}{cert}{}", tp.pki().ca_pem())).expect("write");
    until_at_least("the bad file is refused", 1, || {
        let w = watcher.clone();
        async move { w.send(Refusals).await.expect("watcher alive") }
    })
    .await;
    assert_eq!(watcher.send(Reloads).await.expect("alive"), 0);
    assert_eq!(stream.send(Count).await.expect("alive"), 0);
    handle
        .get()
        .ping()
        .await
        .expect("the current connection still works");

    // A good renewal afterwards is used.
    let renewed_at = SystemTime::now();
    tp.write_identity(&path, "access-plugin").expect("identity");
    until_at_least("the good file is used", 1, || {
        let w = watcher.clone();
        async move { w.send(Reloads).await.expect("watcher alive") }
    })
    .await;
    assert_eq!(stream.send(Count).await.expect("alive"), 1);
    assert!(tp
        .calls()
        .iter()
        .any(|c| c.method == "Ping" && c.at >= renewed_at));
    watcher.send(StopReloading).await.expect("stops");
}
