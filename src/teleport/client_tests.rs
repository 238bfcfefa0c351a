//! The client's pure parts, and the client against small in-file fakes and the fake Teleport.

mod version_tests {
    use super::super::*;

    #[test]
    fn keepalive_respects_teleports_ping_policy() {
        // Teleport answers pings more frequent than every 60 s with GOAWAY too_many_pings
        // (teleport-wire.md §5); the timeout must leave room for a slow answer.
        // A margin over the minimum, not the minimum itself: a ping early by a few
        // milliseconds is a strike.
        assert!(KEEPALIVE_INTERVAL >= TELEPORT_MIN_PING_INTERVAL + Duration::from_secs(10));
        assert!(KEEPALIVE_INTERVAL <= Duration::from_secs(90));
        assert!(KEEPALIVE_TIMEOUT >= Duration::from_secs(10));
        assert!(KEEPALIVE_TIMEOUT < KEEPALIVE_INTERVAL);
    }

    #[test]
    fn auto_reports_one_clear_error() {
        let connect = |failure| TeleportError::Connect {
            addr: "a:1".into(),
            route: "direct",
            failure,
            detail: "x".into(),
        };
        assert!(!worth_trying_proxy(&connect(ConnectFailure::Unreachable)));
        assert!(worth_trying_proxy(&connect(ConnectFailure::Alpn)));
        assert!(worth_trying_proxy(&connect(ConnectFailure::UnknownCa)));
        let same = both_failed(
            connect(ConnectFailure::UnknownCa),
            connect(ConnectFailure::UnknownCa),
        );
        assert!(matches!(same, TeleportError::Connect { .. }), "{same}");
        let routed = both_failed(
            connect(ConnectFailure::Alpn),
            connect(ConnectFailure::HandshakeAborted),
        );
        assert!(
            matches!(
                routed,
                TeleportError::Connect {
                    failure: ConnectFailure::HandshakeAborted,
                    ..
                }
            ),
            "{routed}"
        );
        let too_old = both_failed(
            connect(ConnectFailure::NameMismatch),
            TeleportError::ServerTooOld {
                version: "13.0.0".into(),
                min: MIN_SERVER_VERSION,
            },
        );
        assert!(matches!(too_old, TeleportError::ServerTooOld { .. }));
        let mixed = both_failed(
            connect(ConnectFailure::NameMismatch),
            connect(ConnectFailure::HandshakeAborted),
        );
        assert!(matches!(mixed, TeleportError::AllRoutesFailed { .. }));
    }

    #[test]
    fn versions_compare_numerically_and_tolerate_suffixes() {
        assert_eq!(version_at_least("17.4.2", MIN_SERVER_VERSION), Some(true));
        assert_eq!(
            version_at_least("17.4.2-dev", MIN_SERVER_VERSION),
            Some(true)
        );
        assert_eq!(version_at_least("v14.0.0", MIN_SERVER_VERSION), Some(true));
        assert_eq!(
            version_at_least("14.0.0-alpha.1", MIN_SERVER_VERSION),
            Some(true)
        );
        assert_eq!(version_at_least("13.4.20", MIN_SERVER_VERSION), Some(false));
        assert_eq!(version_at_least("9.10.0", "10.2.0"), Some(false));
        assert_eq!(version_at_least("100", MIN_SERVER_VERSION), Some(true));
        assert_eq!(version_at_least("", MIN_SERVER_VERSION), None);
        assert_eq!(version_at_least("banana", MIN_SERVER_VERSION), None);
    }
}

#[cfg(feature = "sim")]
mod e2e_tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::StreamExt;
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::transport::{Certificate, Server, ServerTlsConfig};
    use tonic::{Request, Response, Status};

    use super::super::*;
    use crate::pb::proto::auth_service_server::{AuthService, AuthServiceServer};
    use crate::teleport::error::ConnectFailure;
    use std::time::SystemTime;

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    use crate::sim::pki::{KeyKind, Pki};

    /// Just enough of Teleport's Auth Service for the client's tests.
    struct Fake {
        version: String,
        list_unimplemented: bool,
        /// The second page names itself as the next: a server that never ends pagination.
        list_repeats_key: bool,
        list_calls: Arc<AtomicUsize>,
    }

    fn request(id: &str) -> pb::types::AccessRequestV3 {
        pb::types::AccessRequestV3 {
            kind: ACCESS_REQUEST_KIND.into(),
            version: "v3".into(),
            metadata: Some(pb::types::Metadata {
                name: id.into(),
                ..Default::default()
            }),
            spec: Some(pb::types::AccessRequestSpecV3 {
                user: "alice".into(),
                state: pb::types::RequestState::Pending as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    type Stream<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

    #[tonic::async_trait]
    impl AuthService for Fake {
        async fn ping(
            &self,
            _: Request<pb::proto::PingRequest>,
        ) -> Result<Response<pb::proto::PingResponse>, Status> {
            Ok(Response::new(pb::proto::PingResponse {
                cluster_name: "example.com".into(),
                server_version: self.version.clone(),
                proxy_public_addr: "teleport.example.com:443".into(),
                ..Default::default()
            }))
        }
        type WatchEventsStream = Stream<pb::proto::Event>;
        async fn watch_events(
            &self,
            _: Request<pb::proto::Watch>,
        ) -> Result<Response<Self::WatchEventsStream>, Status> {
            let init = pb::proto::Event {
                operation: pb::proto::Operation::Init as i32,
                resource: None,
            };
            let put = pb::proto::Event {
                operation: pb::proto::Operation::Put as i32,
                resource: Some(pb::proto::event::Resource::AccessRequest(request("a"))),
            };
            // Stays open after the two events, like a real watch.
            let events =
                futures::stream::iter(vec![Ok(init), Ok(put)]).chain(futures::stream::pending());
            Ok(Response::new(Box::pin(events)))
        }
        async fn list_access_requests(
            &self,
            req: Request<pb::proto::ListAccessRequestsRequest>,
        ) -> Result<Response<pb::proto::ListAccessRequestsResponse>, Status> {
            self.list_calls.fetch_add(1, Ordering::SeqCst);
            if self.list_unimplemented {
                return Err(Status::unimplemented("unknown method ListAccessRequests"));
            }
            // Two pages: "" -> [a, b] next "p2"; "p2" -> [c].
            let req = req.into_inner();
            assert_eq!(req.limit, LIST_PAGE_LIMIT);
            let (ids, next) = if req.start_key.is_empty() {
                (vec!["a", "b"], "p2")
            } else if self.list_repeats_key {
                (vec!["c"], "p2")
            } else {
                (vec!["c"], "")
            };
            Ok(Response::new(pb::proto::ListAccessRequestsResponse {
                access_requests: ids.into_iter().map(request).collect(),
                next_key: next.into(),
            }))
        }
        type GetAccessRequestsV2Stream = Stream<pb::types::AccessRequestV3>;
        async fn get_access_requests_v2(
            &self,
            _: Request<pb::types::AccessRequestFilter>,
        ) -> Result<Response<Self::GetAccessRequestsV2Stream>, Status> {
            let mut malformed = request("x");
            malformed.metadata = None;
            let items = vec![Ok(request("a")), Ok(malformed), Ok(request("c"))];
            Ok(Response::new(Box::pin(futures::stream::iter(items))))
        }
        async fn create_access_request_v2(
            &self,
            _: Request<pb::types::AccessRequestV3>,
        ) -> Result<Response<pb::types::AccessRequestV3>, Status> {
            Err(Status::unimplemented("not in this fake"))
        }
        async fn submit_access_review(
            &self,
            _: Request<pb::types::AccessReviewSubmission>,
        ) -> Result<Response<pb::types::AccessRequestV3>, Status> {
            Err(Status::permission_denied(
                "user \"access-plugin\" has already reviewed this request",
            ))
        }
        async fn set_access_request_state(
            &self,
            _: Request<pb::proto::RequestStateSetter>,
        ) -> Result<Response<()>, Status> {
            Err(Status::unimplemented("not in this fake"))
        }
        async fn delete_access_request(
            &self,
            _: Request<pb::proto::RequestId>,
        ) -> Result<Response<()>, Status> {
            Err(Status::unimplemented("not in this fake"))
        }
        async fn get_plugin_data(
            &self,
            req: Request<pb::types::PluginDataFilter>,
        ) -> Result<Response<pb::proto::PluginDataSeq>, Status> {
            let filter = req.into_inner();
            if filter.resource != "with-data" {
                return Ok(Response::new(pb::proto::PluginDataSeq::default()));
            }
            let entry = |k: &str, v: &str| pb::types::PluginDataEntry {
                data: HashMap::from([(k.to_owned(), v.to_owned())]),
            };
            let mut entries = HashMap::new();
            entries.insert("other".to_owned(), entry("x", "1"));
            entries.insert(filter.plugin.clone(), entry("alert_id", "42"));
            Ok(Response::new(pb::proto::PluginDataSeq {
                plugin_data: vec![pb::types::PluginDataV3 {
                    spec: Some(pb::types::PluginDataSpecV3 { entries }),
                    ..Default::default()
                }],
            }))
        }
        async fn update_plugin_data(
            &self,
            req: Request<pb::types::PluginDataUpdateParams>,
        ) -> Result<Response<()>, Status> {
            let params = req.into_inner();
            match params.expect.get("state") {
                Some(v) if v != "open" => Err(Status::failed_precondition(
                    "expectations not met for field \"state\"",
                )),
                _ => Ok(Response::new(())),
            }
        }
        type GetCurrentUserRolesStream = Stream<pb::types::RoleV6>;
        async fn get_current_user_roles(
            &self,
            _: Request<()>,
        ) -> Result<Response<Self::GetCurrentUserRolesStream>, Status> {
            Err(Status::unimplemented("not in this fake"))
        }

        async fn upsert_lock(&self, _: Request<pb::types::LockV2>) -> Result<Response<()>, Status> {
            Err(Status::unimplemented("not in this fake"))
        }

        async fn get_lock(
            &self,
            _: Request<pb::proto::GetLockRequest>,
        ) -> Result<Response<pb::types::LockV2>, Status> {
            Err(Status::unimplemented("not in this fake"))
        }

        async fn delete_lock(
            &self,
            _: Request<pb::proto::DeleteLockRequest>,
        ) -> Result<Response<()>, Status> {
            Err(Status::unimplemented("not in this fake"))
        }
    }

    /// A client identity for `access-plugin` issued by `issuer`, trusting `trusted_ca`.
    fn identity_for(issuer: &Pki, trusted_ca: &str) -> Identity {
        let now = SystemTime::now();
        let (cert, key) = issuer
            .client_cert(
                "access-plugin",
                now - Duration::from_secs(86_400),
                now + Duration::from_secs(30 * 86_400),
                KeyKind::EcdsaP256,
            )
            .expect("client cert");
        Identity::from_parts(&key, &cert, trusted_ca).expect("identity")
    }

    /// A fake Auth Service with `pki`'s certificate, and a client connected to it directly.
    async fn connected(fake: Fake) -> TeleportClient {
        let pki = pki();
        let addr = serve(&pki, fake).await;
        let identity = identity_for(&pki, &pki.ca_pem());
        let (client, _) = TeleportClient::connect(&config(addr, ConnectMode::Auth), &identity)
            .await
            .expect("connect");
        client
    }

    fn pki() -> Pki {
        Pki::new("example.com").expect("pki")
    }

    #[tokio::test]
    async fn watch_delivers_init_then_changes() {
        use crate::core::model::Snapshot;
        use crate::teleport::convert::{snapshot_from_event, EventKind};

        let pki = pki();
        let addr = serve(&pki, fake("17.0.0")).await;
        let identity = identity_for(&pki, &pki.ca_pem());
        let (client, _) = TeleportClient::connect(&config(addr, ConnectMode::Proxy), &identity)
            .await
            .expect("connect");
        let mut stream = client.watch_access_requests().await.expect("watch");
        let next = |ev: Option<pb::proto::Event>| snapshot_from_event(ev.expect("event"));
        let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("in time")
            .expect("ok");
        assert_eq!(next(first), Ok(EventKind::Init));
        let second = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("in time")
            .expect("ok");
        match next(second) {
            Ok(EventKind::Put(Snapshot::Present(r))) => assert_eq!(r.id, "a"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn wrong_server_name_is_explained() {
        // Teleport's own certificates always carry the API name, so this one is made here:
        // a CA and a server certificate for another name.
        let key = || KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, key()).expect("ca");
        let server_key = key();
        let server_cert = CertificateParams::new(vec!["auth.example.com".to_owned()])
            .expect("params")
            .signed_by(&server_key, &ca)
            .expect("server cert");
        let addr = serve_with(
            (server_cert.pem(), server_key.serialize_pem()),
            &ca.pem(),
            fake("17.0.0"),
        )
        .await;
        let identity = identity_for(&pki(), &ca.pem());
        let err = TeleportClient::connect(&config(addr, ConnectMode::Auth), &identity)
            .await
            .unwrap_err();
        match &err {
            TeleportError::Connect { failure, .. } => {
                assert_eq!(*failure, ConnectFailure::NameMismatch, "{err}")
            }
            other => panic!("{other:?}"),
        }
    }

    async fn serve(pki: &Pki, fake: Fake) -> SocketAddr {
        serve_with(pki.server_cert().expect("server cert"), &pki.ca_pem(), fake).await
    }

    /// Serves `fake` with the certificate and key `server`, asking for client certificates
    /// signed by `client_ca`.
    async fn serve_with(server: (String, String), client_ca: &str, fake: Fake) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (cert, key) = server;
        let tls = ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert, key))
            .client_ca_root(Certificate::from_pem(client_ca));
        let server = Server::builder()
            .tls_config(tls)
            .expect("tls config")
            .add_service(AuthServiceServer::new(fake))
            .serve_with_incoming(TcpListenerStream::new(listener));
        tokio::spawn(server);
        addr
    }

    fn fake(version: &str) -> Fake {
        Fake {
            version: version.into(),
            list_unimplemented: false,
            list_repeats_key: false,
            list_calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn config(addr: SocketAddr, mode: ConnectMode) -> TeleportConfig {
        TeleportConfig {
            addr: addr.to_string(),
            mode,
            dial_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(5),
            ..TeleportConfig::default()
        }
    }

    #[tokio::test]
    async fn connects_directly_and_through_proxy_routing() {
        let pki = pki();
        let addr = serve(&pki, fake("17.4.2-dev")).await;
        let identity = identity_for(&pki, &pki.ca_pem());
        for (mode, used) in [
            (ConnectMode::Auth, ConnectMode::Auth),
            (ConnectMode::Proxy, ConnectMode::Proxy),
            (ConnectMode::Auto, ConnectMode::Auth),
        ] {
            let (client, connected) = TeleportClient::connect(&config(addr, mode), &identity)
                .await
                .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
            assert_eq!(connected.mode, used);
            assert_eq!(connected.ping.cluster_name, "example.com");
            assert_eq!(connected.ping.proxy_public_addr, "teleport.example.com:443");
            client.ping().await.expect("second ping");
        }
    }

    #[tokio::test]
    async fn lists_all_pages() {
        let client = connected(fake("17.0.0")).await;
        let ids: Vec<String> = client
            .list_access_requests()
            .await
            .expect("list")
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, vec!["a", "b", "c"]);
    }

    #[tokio::test]
    async fn a_repeated_page_key_hands_over_the_page_then_says_the_listing_is_truncated() {
        let mut f = fake("17.0.0");
        f.list_repeats_key = true;
        let calls = f.list_calls.clone();
        let client = connected(f).await;
        let items: Vec<Listed> = client
            .list_pages()
            .map(|item| item.expect("page"))
            .collect()
            .await;
        let ids = |listed: &Listed| match listed {
            Listed::Page(page) => page.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            Listed::Truncated => vec!["<truncated>".to_owned()],
        };
        assert_eq!(
            items.iter().map(ids).collect::<Vec<_>>(),
            vec![vec!["a", "b"], vec!["c"], vec!["<truncated>"]]
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "the repeated key is not followed"
        );
    }

    #[tokio::test]
    async fn list_falls_back_to_the_stream_once_and_skips_malformed_entries() {
        let mut f = fake("14.3.0");
        f.list_unimplemented = true;
        let calls = f.list_calls.clone();
        let client = connected(f).await;
        for _ in 0..2 {
            let ids: Vec<String> = client
                .clone()
                .list_access_requests()
                .await
                .expect("list")
                .into_iter()
                .map(|r| r.id)
                .collect();
            assert_eq!(ids, vec!["a", "c"]);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "fallback is remembered");
    }

    #[tokio::test]
    async fn plugin_data_and_review_errors() {
        let client = connected(fake("17.0.0")).await;
        let data = client.get_plugin_data("with-data").await.expect("get");
        assert_eq!(data, BTreeMap::from([("alert_id".into(), "42".into())]));
        assert!(client
            .get_plugin_data("none")
            .await
            .expect("get")
            .is_empty());
        let set = BTreeMap::from([("state".to_owned(), "closed".to_owned())]);
        client
            .update_plugin_data("r", set.clone(), BTreeMap::new())
            .await
            .expect("unconditional");
        let err = client
            .update_plugin_data("r", set, BTreeMap::from([("state".into(), "stale".into())]))
            .await
            .unwrap_err();
        assert!(matches!(err, TeleportError::CompareFailed { .. }) && err.is_retryable());
        let err = client
            .submit_review("r", RequestState::Approved, "on call")
            .await
            .unwrap_err();
        assert!(
            matches!(err, TeleportError::AlreadyReviewed { .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn old_servers_are_refused() {
        let pki = pki();
        let addr = serve(&pki, fake("13.4.1")).await;
        let identity = identity_for(&pki, &pki.ca_pem());
        let err = TeleportClient::connect(&config(addr, ConnectMode::Auth), &identity)
            .await
            .unwrap_err();
        assert!(matches!(err, TeleportError::ServerTooOld { .. }), "{err}");
    }

    #[tokio::test]
    async fn unknown_ca_is_explained() {
        let pki = pki();
        let addr = serve(&pki, fake("17.0.0")).await;
        let stranger = Pki::new("elsewhere").expect("pki");
        // Client cert from the right CA, but trusting another cluster's CA.
        let identity = identity_for(&pki, &stranger.ca_pem());
        let err = TeleportClient::connect(&config(addr, ConnectMode::Auth), &identity)
            .await
            .unwrap_err();
        match &err {
            TeleportError::Connect { failure, .. } => {
                assert_eq!(*failure, ConnectFailure::UnknownCa, "{err}")
            }
            other => panic!("{other:?}"),
        }
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn unreachable_address_is_retryable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let pki = pki();
        let identity = identity_for(&pki, &pki.ca_pem());
        let err = TeleportClient::connect(&config(addr, ConnectMode::Auto), &identity)
            .await
            .unwrap_err();
        // Auto does not dial the same dead address a second time.
        assert!(
            matches!(
                err,
                TeleportError::Connect {
                    failure: ConnectFailure::Unreachable,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.is_retryable());
    }

    #[tokio::test]
    async fn client_certificate_from_another_cluster_is_refused() {
        let pki = pki();
        let addr = serve(&pki, fake("17.0.0")).await;
        let stranger = Pki::new("elsewhere").expect("pki");
        // Trusts the server, but the client cert is signed by a CA the server does not know.
        let identity = identity_for(&stranger, &pki.ca_pem());
        let err = TeleportClient::connect(&config(addr, ConnectMode::Auth), &identity)
            .await
            .unwrap_err();
        match &err {
            TeleportError::TlsRejected { failure, .. } => {
                assert_eq!(*failure, ConnectFailure::ClientCertRejected, "{err}")
            }
            other => panic!("{other:?}"),
        }
        assert!(
            err.to_string().contains("refused the client certificate"),
            "{err}"
        );
        assert!(!err.is_retryable());
    }
}

/// The client against the fake Teleport (its RBAC, its listing, its roles).
#[cfg(feature = "sim")]
mod against_the_fake {
    use std::time::Duration;

    use super::super::*;
    use crate::sim::teleport::requester::{Requester, RequesterError};
    use crate::sim::world::{World, WorldOptions, REQUESTER};
    use crate::teleport::rbac::Verdict;

    async fn world() -> World {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        World::start(WorldOptions::default()).await.expect("world")
    }

    async fn client_for(world: &World, path: &std::path::Path, call: Duration) -> TeleportClient {
        let mut cfg = world.config().teleport;
        cfg.identity = Some(path.to_owned());
        cfg.call_timeout = call;
        let identity = Identity::load(&cfg).expect("identity");
        TeleportClient::connect(&cfg, &identity)
            .await
            .expect("connect")
            .0
    }

    /// A Teleport 14-15 without `ListAccessRequests`, with `n` pending requests.
    async fn old_server_with_requests(n: usize) -> (World, TeleportClient) {
        let world = world().await;
        world.teleport.set_list_access_requests_implemented(false);
        for i in 0..n {
            world
                .teleport
                .create_request(REQUESTER, &["editor"], &format!("r{i}"))
                .expect("request");
        }
        // Small bounds instead of long waits: a 200 ms deadline per item.
        let client = client_for(&world, &world.plugin_identity, Duration::from_millis(200)).await;
        (world, client)
    }

    /// The sizes of the pages of one listing, and whether it said it was truncated.
    async fn page_sizes(client: &TeleportClient) -> (Vec<usize>, bool) {
        use futures::StreamExt;
        let mut sizes = Vec::new();
        let mut truncated = false;
        let mut pages = client.list_pages();
        while let Some(item) = pages.next().await {
            match item.expect("page") {
                Listed::Page(page) => sizes.push(page.len()),
                Listed::Truncated => truncated = true,
            }
        }
        (sizes, truncated)
    }

    #[tokio::test]
    async fn the_listing_comes_a_page_at_a_time_from_either_listing_call() {
        let world = world().await;
        let n = 2 * LIST_PAGE_LIMIT as usize + 1;
        for i in 0..n {
            world
                .teleport
                .create_request(REQUESTER, &["editor"], &format!("r{i}"))
                .expect("request");
        }
        let client = client_for(&world, &world.plugin_identity, Duration::from_secs(5)).await;
        let page = LIST_PAGE_LIMIT as usize;
        // `ListAccessRequests`: one call per page, as the server pages it.
        assert_eq!(page_sizes(&client).await, (vec![page, page, 1], false));
        assert_eq!(world.teleport.count_calls("ListAccessRequests"), 3);
        // An older server: one `GetAccessRequestsV2` stream, cut into pages of the same size.
        world.teleport.set_list_access_requests_implemented(false);
        assert_eq!(page_sizes(&client).await, (vec![page, page, 1], false));
        assert_eq!(world.teleport.count_calls("GetAccessRequestsV2"), 1);
        let ids = client.list_request_ids().await.expect("ids");
        assert_eq!(ids.len(), n);
        assert_eq!(world.teleport.count_calls("ListAccessRequests"), 4);
    }

    #[tokio::test]
    async fn a_slow_but_progressing_streamed_listing_runs_to_its_end() {
        let (world, client) = old_server_with_requests(40).await;
        // 40 items, 30 ms apart: 1.2 s in all, six times the per-item deadline.
        world
            .teleport
            .set_list_stream_pacing(Duration::from_millis(30), None);
        let started = tokio::time::Instant::now();
        let listed = client.list_access_requests().await.expect("listed");
        assert_eq!(listed.len(), 40);
        assert!(started.elapsed() > Duration::from_millis(200));
        assert_eq!(world.teleport.count_calls("GetAccessRequestsV2"), 1);
    }

    #[tokio::test]
    async fn a_stalled_streamed_listing_fails_with_a_timeout() {
        let (world, client) = old_server_with_requests(10).await;
        world
            .teleport
            .set_list_stream_pacing(Duration::from_millis(1), Some(3));
        let err = client.list_access_requests().await.unwrap_err();
        assert!(
            matches!(
                err,
                TeleportError::Timeout {
                    operation: Operation::ListAccessRequests,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.is_retryable());
    }

    #[tokio::test]
    async fn own_roles_tell_review_and_lock_rights_without_changing_anything() {
        let world = world().await;
        let plugin = client_for(&world, &world.plugin_identity, Duration::from_secs(5)).await;
        let roles = plugin.own_roles().await.expect("roles");
        let mut names = roles.names();
        names.sort();
        assert_eq!(names, vec!["access-plugin", "access-plugin-approver"]);
        assert_eq!(roles.review_rights().roles, vec!["editor"]);
        assert_eq!(roles.verbs("lock", &["create", "update"]), Verdict::Denied);
        assert_eq!(
            roles.verbs("access_request", &["list", "read"]),
            Verdict::Allowed
        );

        // Without the review rule, with a lock rule.
        world
            .teleport
            .add_role_yaml(
                r#"
kind: role
version: v7
metadata:
  name: locker
spec:
  allow:
    rules:
      - resources: ['access_request']
        verbs: ['list', 'read']
      - resources: ['lock']
        verbs: ['create', 'update']
"#,
            )
            .expect("role");
        world.teleport.add_user("locker-plugin", ["locker"]);
        let path = world.dir.join("locker-identity");
        world
            .teleport
            .write_identity(&path, "locker-plugin")
            .expect("identity");
        let locker = client_for(&world, &path, Duration::from_secs(5)).await;
        let roles = locker.own_roles().await.expect("roles");
        assert!(!roles.review_rights().any());
        assert_eq!(roles.verbs("lock", &["create", "update"]), Verdict::Allowed);
        // Reading created nothing: no request, no plugin data.
        assert_eq!(world.teleport.request_count(), 0);
        assert_eq!(world.teleport.count_calls("GetCurrentUserRoles"), 2);
    }

    #[tokio::test]
    async fn a_role_the_requester_may_not_request_is_not_blamed_on_the_plugin() {
        let world = world().await;
        let admin =
            Requester(client_for(&world, &world.admin_identity, Duration::from_secs(5)).await);
        let err = admin
            .create(REQUESTER, &["no-such-role".to_owned()], "demo")
            .await
            .unwrap_err();
        assert!(
            matches!(err, RequesterError::NotRequestable { .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains("no-such-role"), "{msg}");
        assert!(msg.contains("allow.request.roles"), "{msg}");
        assert!(!msg.contains("plugin"), "{msg}");
        // A real permission problem is still reported as one.
        let plugin =
            Requester(client_for(&world, &world.plugin_identity, Duration::from_secs(5)).await);
        let err = plugin
            .create(REQUESTER, &["editor".to_owned()], "demo")
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                RequesterError::Teleport(TeleportError::PermissionDenied { .. })
            ),
            "{err}"
        );
        // And the admin's own requests work.
        let made = admin
            .create(REQUESTER, &["editor".to_owned()], "demo")
            .await
            .expect("created");
        admin
            .set_state(&made.id, RequestState::Approved, "ok")
            .await
            .expect("approved");
        admin.delete(&made.id).await.expect("deleted");
    }
}
