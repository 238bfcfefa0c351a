//! Classification of statuses and connection failures.

use super::*;
use tonic::{Code, Status};

fn map(op: Operation, code: Code, msg: &str) -> TeleportError {
    TeleportError::from_status(op, Status::new(code, msg))
}

#[test]
fn compare_failed_is_retryable() {
    let e = map(
        Operation::UpdatePluginData,
        Code::FailedPrecondition,
        "expectations not met for field \"state\"",
    );
    assert!(matches!(e, TeleportError::CompareFailed { .. }));
    assert!(e.is_retryable());
}

#[test]
fn review_outcomes_are_recognised() {
    let e = map(
        Operation::SubmitReview,
        Code::PermissionDenied,
        "user \"access-plugin\" has already reviewed this request",
    );
    assert!(matches!(e, TeleportError::AlreadyReviewed { .. }), "{e}");
    for (word, state) in [
        ("approved", RequestState::Approved),
        ("denied", RequestState::Denied),
        ("promoted", RequestState::Promoted),
    ] {
        let e = map(
            Operation::SubmitReview,
            Code::PermissionDenied,
            &format!("the access request has been already {word}"),
        );
        match e {
            TeleportError::AlreadyResolved { state: s, .. } => assert_eq!(s, state),
            other => panic!("{other:?}"),
        }
    }
    let e = map(
        Operation::SubmitReview,
        Code::AlreadyExists,
        "review exists",
    );
    assert!(matches!(e, TeleportError::AlreadyReviewed { .. }));
    assert!(!e.is_retryable());
}

#[test]
fn mfa_and_rbac_denials_carry_hints() {
    let e = map(
        Operation::SubmitReview,
        Code::PermissionDenied,
        "admin-level API request requires MFA verification",
    );
    assert!(matches!(e, TeleportError::MfaRequired { .. }));
    assert!(e.to_string().contains("tbot"), "{e}");

    let e = map(
        Operation::UpdatePluginData,
        Code::PermissionDenied,
        "access denied",
    );
    assert!(e.to_string().contains("`access_plugin_data`"), "{e}");
    let e = map(
        Operation::WatchAccessRequests,
        Code::PermissionDenied,
        "access denied",
    );
    assert!(e.to_string().contains("`access_request`"), "{e}");
    let e = map(
        Operation::SubmitReview,
        Code::PermissionDenied,
        "user \"x\" cannot submit reviews",
    );
    assert!(e.to_string().contains("review_requests"), "{e}");
    assert!(!e.is_retryable());
}

#[test]
fn other_codes() {
    assert!(matches!(
        map(Operation::GetPluginData, Code::NotFound, "nope"),
        TeleportError::NotFound { .. }
    ));
    let e = map(Operation::Ping, Code::Unavailable, "connection problem");
    assert!(matches!(e, TeleportError::Unavailable { .. }) && e.is_retryable());
    let e = map(
        Operation::ListAccessRequests,
        Code::Unimplemented,
        "unknown method",
    );
    assert!(matches!(e, TeleportError::Unimplemented { .. }) && !e.is_retryable());
    let e = map(
        Operation::ListAccessRequests,
        Code::ResourceExhausted,
        "slow down",
    );
    assert!(e.is_retryable());
    let e = map(Operation::ListAccessRequests, Code::InvalidArgument, "bad");
    assert!(matches!(
        e,
        TeleportError::Status {
            code: Code::InvalidArgument,
            ..
        }
    ));
    assert!(!e.is_retryable());
}

#[test]
fn alerts_reported_as_text_are_classified_like_typed_ones() {
    for (alert, failure) in [
        (
            rustls::AlertDescription::UnknownCA,
            ConnectFailure::ClientCertRejected,
        ),
        (
            rustls::AlertDescription::CertificateRequired,
            ConnectFailure::ClientCertRejected,
        ),
        (
            rustls::AlertDescription::NoApplicationProtocol,
            ConnectFailure::Alpn,
        ),
        (
            rustls::AlertDescription::HandshakeFailure,
            ConnectFailure::Other,
        ),
    ] {
        // What a reader sees once the handshake is over: the typed error as text.
        let text = rustls::Error::AlertReceived(alert).to_string();
        let io = std::io::Error::other(text);
        assert_eq!(find_alert_text(&io), Some(failure), "{alert:?}");
    }
    assert_eq!(
        find_alert_text(&std::io::Error::other("connection reset")),
        None
    );
}

#[test]
fn transport_statuses_are_retryable() {
    let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
    let status = Status::from_error(Box::new(io));
    let e = TeleportError::from_status(Operation::WatchAccessRequests, status);
    assert!(e.is_retryable(), "{e:?}");
}

#[test]
fn connect_failures_are_classified() {
    let tcp = ConnectError::Tcp {
        addr: "127.0.0.1:1".into(),
        error: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"),
    };
    let e = TeleportError::from_connect_error("direct", &tcp);
    assert!(matches!(
        e,
        TeleportError::Connect {
            failure: ConnectFailure::Unreachable,
            ..
        }
    ));
    assert!(e.is_retryable());
    let unknown_ca = ConnectError::Handshake {
        addr: "a:3025".into(),
        error: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ),
    };
    let e = TeleportError::from_connect_error("direct", &unknown_ca);
    assert!(
        e.to_string()
            .contains("was the identity issued by this cluster?"),
        "{e}"
    );
    assert!(!e.is_retryable());
    for (err, failure) in [
        (
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName),
            ConnectFailure::NameMismatch,
        ),
        (
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
            ConnectFailure::ServerCertExpired,
        ),
        (
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateExpired),
            ConnectFailure::ClientCertRejected,
        ),
    ] {
        assert_eq!(classify_rustls(&err), failure);
    }
}
