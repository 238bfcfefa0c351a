//! Identity parsing against certificates made by the sim PKI.

use std::time::Duration;

use super::*;
use crate::sim::pki::{KeyKind as Alg, Pki};

/// A PKCS#8 document wrapping a PKCS#1 (RSA) or SEC1 (P-256) key, as `openssl pkcs8`
/// writes it.
fn to_pkcs8(legacy_pem: &str) -> String {
    const RSA: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    const P256: &[u8] = &[
        0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
        0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ];
    let legacy = pem::parse(legacy_pem).expect("key PEM");
    let algorithm = match legacy.tag() {
        "RSA PRIVATE KEY" => RSA,
        "EC PRIVATE KEY" => P256,
        other => panic!("not a legacy key: {other}"),
    };
    let key = legacy.contents();
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend(algorithm);
    der_push(&mut body, 0x04, key);
    let mut out = Vec::new();
    der_push(&mut out, 0x30, &body);
    pem::encode_config(
        &pem::Pem::new("PRIVATE KEY", out),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

fn der_push(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    match content.len() {
        len @ 0..0x80 => out.push(len as u8),
        len @ 0x80..0x100 => out.extend([0x81, len as u8]),
        len => out.extend([0x82, (len >> 8) as u8, len as u8]),
    }
    out.extend(content);
}

/// An identity file as `tctl auth sign` lays it out: key, an SSH certificate line, TLS
/// certificate, a CA line, the CA PEM.
fn identity_file(ca_pem: &str, key_pem: &str, cert_pem: &str) -> String {
    format!(
        "{key_pem}ssh-ed25519-cert-v01@openssh.com AAAAfake access-plugin\n{cert_pem}@cert-authority *.example.com ssh-rsa AAAAfake type=host\n{ca_pem}"
    )
}

const DAY: Duration = Duration::from_secs(86_400);

/// A client certificate for `access-plugin`, valid from `from` to `to` days from now, and
/// its key (SEC1 for ECDSA, PKCS#1 for RSA, PKCS#8 for Ed25519).
fn client_cert(pki: &Pki, alg: Alg, from: i32, to: i32) -> (String, String) {
    let at = |days: i32| {
        let now = SystemTime::now();
        let delta = DAY * days.unsigned_abs();
        if days < 0 {
            now - delta
        } else {
            now + delta
        }
    };
    pki.client_cert("access-plugin", at(from), at(to), alg)
        .expect("client cert")
}

struct Fixture {
    ca: String,
    /// As the PKI writes it: SEC1, PKCS#1 or PKCS#8 (see [`client_cert`]).
    key: String,
    cert: String,
}

impl Fixture {
    fn identity_file(&self) -> String {
        identity_file(&self.ca, &self.key, &self.cert)
    }
}

fn fixture(alg: Alg) -> Fixture {
    let pki = Pki::new("example.com").expect("pki");
    let (cert, key) = client_cert(&pki, alg, -1, 90);
    Fixture {
        ca: pki.ca_pem(),
        key,
        cert,
    }
}

fn key_pem(f: &Fixture, kind: KeyKind) -> String {
    match kind {
        KeyKind::Pkcs8 if f.key.contains("BEGIN PRIVATE KEY") => f.key.clone(),
        KeyKind::Pkcs8 => to_pkcs8(&f.key),
        KeyKind::Pkcs1 | KeyKind::Sec1 => f.key.clone(),
    }
}

fn parse_ok(alg: Alg, kind: KeyKind) {
    let f = fixture(alg);
    let text = identity_file(&f.ca, &key_pem(&f, kind), &f.cert);
    let id = Identity::parse(&text).unwrap_or_else(|e| panic!("{alg:?}/{kind:?}: {e}"));
    assert_eq!(id.key.kind(), kind);
    assert_eq!(id.username, "access-plugin");
    assert_eq!(id.cluster_name.as_deref(), Some("example.com"));
    assert_eq!(id.ca_ders().len(), 1);
    let der = |pem: &str| pem::parse(pem).expect("pem").into_contents();
    assert_eq!(id.ca_ders()[0].as_ref(), der(&f.ca).as_slice());
    assert_eq!(id.cert_der().as_ref(), der(&f.cert).as_slice());
    let now = SystemTime::now();
    assert!(id.not_before < now && now < id.not_after);
    assert!(!id.is_expired(now));
    id.check_validity(now).expect("valid");
}

#[test]
fn parses_pkcs8_keys_of_every_algorithm() {
    parse_ok(Alg::EcdsaP256, KeyKind::Pkcs8);
    parse_ok(Alg::Rsa2048, KeyKind::Pkcs8);
    parse_ok(Alg::Ed25519, KeyKind::Pkcs8);
}

#[test]
fn parses_pkcs1_rsa_key() {
    parse_ok(Alg::Rsa2048, KeyKind::Pkcs1);
}

#[test]
fn parses_sec1_ec_key() {
    parse_ok(Alg::EcdsaP256, KeyKind::Sec1);
}

#[test]
fn crlf_and_indentation_are_tolerated() {
    let f = fixture(Alg::EcdsaP256);
    let text = f
        .identity_file()
        .lines()
        .map(|l| format!("  {l}\r\n"))
        .collect::<String>();
    Identity::parse(&text).expect("parses");
}

#[test]
fn several_cas_are_all_kept() {
    let f = fixture(Alg::EcdsaP256);
    let other = Pki::new("other").expect("pki");
    let text = format!("{}{}", f.identity_file(), other.ca_pem());
    let id = Identity::parse(&text).expect("parses");
    assert_eq!(id.ca_ders().len(), 2);
}

#[test]
fn truncated_pem_is_reported() {
    let f = fixture(Alg::EcdsaP256);
    let text = f.identity_file();
    // Cut inside the CA block: no END line.
    let cut = &text[..text.len() - 40];
    let err = Identity::parse(cut).unwrap_err();
    assert!(
        matches!(err, IdentityError::Truncated { index: 3, .. }),
        "{err}"
    );
    // Damage the base64 of the key.
    let damaged = text.replacen("\n", "\n!!!!", 2);
    let err = Identity::parse(&damaged).unwrap_err();
    assert!(
        matches!(err, IdentityError::Truncated { index: 1, .. }),
        "{err}"
    );
    // A key block without its END line, followed by the rest: the key is reported.
    let cut_key = f.key.replace("-----END EC PRIVATE KEY-----\n", "");
    assert_ne!(cut_key, f.key);
    let text = identity_file(&f.ca, &cut_key, &f.cert);
    let err = Identity::parse(&text).unwrap_err();
    assert!(
        matches!(err, IdentityError::Truncated { index: 1, .. }),
        "{err}"
    );
}

#[test]
fn encrypted_keys_are_refused_clearly() {
    let f = fixture(Alg::EcdsaP256);
    let key = key_pem(&f, KeyKind::Pkcs8).replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY");
    let text = identity_file(&f.ca, &key, &f.cert);
    let err = Identity::parse(&text).unwrap_err();
    assert!(matches!(err, IdentityError::BadKey { .. }), "{err}");
}

#[test]
fn wrong_order_is_reported() {
    let f = fixture(Alg::EcdsaP256);
    let text = format!("{}{}{}", f.cert, f.key, f.ca);
    let err = Identity::parse(&text).unwrap_err();
    assert!(
        matches!(
            err,
            IdentityError::WrongOrder {
                index: 1,
                expected: "private key",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("tctl auth sign"), "{err}");
    let text = format!("{}{}{}", f.key, f.key, f.ca);
    let err = Identity::parse(&text).unwrap_err();
    assert!(
        matches!(
            err,
            IdentityError::WrongOrder {
                index: 2,
                expected: "TLS certificate",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn missing_ca_is_reported() {
    let f = fixture(Alg::EcdsaP256);
    let text = format!("{}{}", f.key, f.cert);
    let err = Identity::parse(&text).unwrap_err();
    assert!(matches!(err, IdentityError::NoCa { .. }), "{err}");
    let err = Identity::parse("nothing here\n").unwrap_err();
    assert!(matches!(err, IdentityError::Missing { .. }), "{err}");
}

#[test]
fn key_certificate_mismatch_is_reported_without_key_material() {
    let f = fixture(Alg::EcdsaP256);
    let other = fixture(Alg::EcdsaP256).key;
    let text = identity_file(&f.ca, &other, &f.cert);
    let err = Identity::parse(&text).unwrap_err();
    assert!(matches!(err, IdentityError::KeyMismatch { .. }), "{err}");
    let msg = format!("{err} {err:?}");
    assert!(!msg.contains("BEGIN"), "{msg}");
    // RSA key with an ECDSA certificate.
    let rsa = fixture(Alg::Rsa2048).key;
    let text = identity_file(&f.ca, &rsa, &f.cert);
    let err = Identity::parse(&text).unwrap_err();
    assert!(matches!(err, IdentityError::KeyMismatch { .. }), "{err}");
}

#[test]
fn expired_certificate_is_detected_with_a_fix() {
    let pki = Pki::new("example.com").expect("pki");
    let (cert, key) = client_cert(&pki, Alg::EcdsaP256, -10, -1);
    let text = identity_file(&pki.ca_pem(), &key, &cert);
    let id = Identity::parse(&text).expect("parses; expiry is checked separately");
    let now = SystemTime::now();
    assert!(id.is_expired(now));
    let err = id.check_validity(now).unwrap_err();
    assert!(matches!(err, IdentityError::Expired { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("expired at 20"), "{msg}");
    assert!(msg.contains("--ttl=2190h"), "{msg}");
}

#[test]
fn debug_output_redacts_the_key() {
    let f = fixture(Alg::EcdsaP256);
    let text = f.identity_file();
    let id = Identity::parse(&text).expect("parses");
    let dbg = format!("{id:?}");
    assert!(dbg.contains("<redacted>"));
    assert!(!dbg.contains("PRIVATE KEY-----"), "{dbg}");
}

#[test]
fn from_parts_and_load() {
    let f = fixture(Alg::Rsa2048);
    let key = key_pem(&f, KeyKind::Pkcs1);
    let id = Identity::from_parts(&key, &f.cert, &f.ca).expect("parts");
    assert_eq!(id.username, "access-plugin");

    let tmp = tempfile::tempdir().expect("tmp dir");
    let dir = tmp.path();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let mut cfg = TeleportConfig {
        client_key: Some(write("auth.key", &key)),
        client_crt: Some(write("auth.crt", &f.cert)),
        root_cas: Some(write("auth.cas", &f.ca)),
        ..TeleportConfig::default()
    };
    Identity::load(&cfg).expect("loads trio");

    // Missing CA file: the error names it.
    cfg.root_cas = Some(dir.join("missing.cas"));
    let err = Identity::load(&cfg).unwrap_err();
    assert!(matches!(err, IdentityError::Unreadable { .. }), "{err}");
    assert!(err.to_string().contains("missing.cas"), "{err}");

    // Incomplete trio.
    cfg.root_cas = None;
    assert!(matches!(
        Identity::load(&cfg),
        Err(IdentityError::NotConfigured(_))
    ));

    let path = write("identity", &f.identity_file());
    let cfg = TeleportConfig {
        identity: Some(path.clone()),
        ..TeleportConfig::default()
    };
    Identity::load(&cfg).expect("loads identity file");
}

/// Loads `text` as the identity file `name` in a fresh folder; the error and the file's path.
fn load_error(name: &str, text: &str) -> (IdentityError, String) {
    let tmp = tempfile::tempdir().expect("tmp dir");
    let path = tmp.path().join(name);
    std::fs::write(&path, text).expect("write");
    let cfg = TeleportConfig {
        identity: Some(path.clone()),
        ..TeleportConfig::default()
    };
    let err = Identity::load(&cfg).expect_err("refused");
    (err, path.display().to_string())
}

/// 1960-01-01 and 1965-01-01.
fn before_1970() -> (SystemTime, SystemTime) {
    let year = 365 * DAY;
    let epoch = std::time::UNIX_EPOCH;
    (epoch - 10 * year, epoch - 5 * year)
}

#[test]
fn certificates_dated_before_1970_are_errors_naming_the_file() {
    let pki = Pki::new("example.com").expect("pki");
    let (start, end) = before_1970();
    let now = SystemTime::now() + 30 * DAY;
    // Entirely before 1970, and starting before 1970 but valid now: both refused.
    for (from, to, field) in [(start, end, "not before"), (start, now, "not before")] {
        let (cert, key) = pki
            .client_cert("access-plugin", from, to, Alg::EcdsaP256)
            .expect("cert");
        let (err, path) = load_error("old", &identity_file(&pki.ca_pem(), &key, &cert));
        match &err {
            IdentityError::DateOutOfRange { field: f, date, .. } => {
                assert_eq!(*f, field);
                assert!(date.starts_with("19"), "{date}");
            }
            other => panic!("{other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&path), "{msg}");
        assert!(msg.contains("1970..9999"), "{msg}");
    }
}

#[test]
fn the_last_representable_year_is_accepted_and_rendered() {
    let pki = Pki::new("example.com").expect("pki");
    // 9999-12-31T00:00:00Z, the end of GeneralizedTime's range.
    let end = std::time::UNIX_EPOCH + Duration::from_secs(253_402_214_400);
    let (cert, key) = pki
        .client_cert(
            "access-plugin",
            SystemTime::now() - DAY,
            end,
            Alg::EcdsaP256,
        )
        .expect("cert");
    let id = Identity::parse(&identity_file(&pki.ca_pem(), &key, &cert)).expect("parses");
    assert_eq!(rfc3339(id.not_after), "9999-12-31T00:00:00Z");
    id.check_validity(SystemTime::now()).expect("valid");
}

#[test]
fn times_outside_the_range_are_rendered_without_panicking() {
    let (start, _) = before_1970();
    assert!(rfc3339(start).contains("before 1970"), "{}", rfc3339(start));
    let far = std::time::UNIX_EPOCH + Duration::from_secs(400_000_000_000);
    assert!(rfc3339(far).contains("after 1970"), "{}", rfc3339(far));
    assert_eq!(unix_seconds_in_range(-1), None);
    assert_eq!(unix_seconds_in_range(MAX_UNIX_SECONDS + 1), None);
    assert_eq!(unix_seconds_in_range(i64::MIN), None);
    assert_eq!(unix_seconds_in_range(i64::MAX), None);
    assert!(unix_seconds_in_range(MAX_UNIX_SECONDS).is_some());
}

#[test]
fn an_api_key_given_as_identity_is_never_advised_to_be_overwritten() {
    for text in [
        "0f3c5a1e-8d2b-4c6f-9a7e-1b2c3d4e5f60\n",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ] {
        let (err, path) = load_error("api-key", text);
        let msg = err.to_string();
        assert!(msg.contains(&path), "{msg}");
        assert!(!msg.contains(&format!("--out={path}")), "{msg}");
        assert!(msg.contains("<a new file>"), "{msg}");
        assert!(msg.contains("tbot"), "{msg}");
    }
    let (err, _) = load_error("api-key", "0f3c5a1e\n");
    assert!(
        err.to_string().contains("not a Teleport identity file"),
        "{err}"
    );
    // A real identity that expired is renewed in place: that advice names the file.
    let pki = Pki::new("example.com").expect("pki");
    let (cert, key) = client_cert(&pki, Alg::EcdsaP256, -10, -1);
    let (err, path) = load_error("expired", &identity_file(&pki.ca_pem(), &key, &cert));
    assert!(matches!(err, IdentityError::Expired { .. }), "{err}");
    assert!(err.to_string().contains(&format!("--out={path}")), "{err}");
}

#[test]
fn an_openssh_key_is_named_as_one_with_the_fix() {
    let text = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ==\n-----END OPENSSH PRIVATE KEY-----\n";
    let (err, path) = load_error("id_ed25519", text);
    assert!(matches!(err, IdentityError::OpenSshKey { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("OpenSSH private key"), "{msg}");
    assert!(msg.contains("tctl auth sign"), "{msg}");
    assert!(msg.contains("tbot"), "{msg}");
    assert!(!msg.contains(&format!("--out={path}")), "{msg}");
    assert!(!msg.contains("not a usable RSA"), "{msg}");
}

#[test]
fn a_tbot_directory_gets_a_hint_to_name_its_identity_file() {
    let tmp = tempfile::tempdir().expect("tmp dir");
    let cfg = TeleportConfig {
        identity: Some(tmp.path().to_owned()),
        ..TeleportConfig::default()
    };
    let inside = tmp.path().join("identity").display().to_string();
    let err = Identity::load(&cfg).expect_err("a directory");
    assert!(matches!(err, IdentityError::Directory { .. }), "{err}");
    assert!(err.to_string().contains(&inside), "{err}");
    // With tbot's output in place, the hint is the exact setting.
    std::fs::write(&inside, fixture(Alg::EcdsaP256).identity_file()).expect("write");
    let err = Identity::load(&cfg).expect_err("still a directory");
    assert!(
        err.to_string()
            .contains(&format!("set `teleport.identity: {inside}`")),
        "{err}"
    );
}

#[test]
fn an_oversized_file_is_not_read_whole() {
    let (err, path) = load_error("big", &"A".repeat(2 * MAX_FILE_BYTES as usize));
    assert!(matches!(err, IdentityError::Unreadable { .. }), "{err}");
    assert!(err.to_string().contains(&path), "{err}");
}
