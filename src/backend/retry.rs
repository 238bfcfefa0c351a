//! What to do about an answer that is not a success, and how long to wait before trying again.
//!
//! [`classify`] is a pure function of the status, headers and body: a 429 pauses the domain for
//! the period Opsgenie names, 5xx and 408 are transient, everything else is permanent and comes
//! with a hint that names the fix (wrong key, wrong region, wrong kind of key, ...).
//! The delay between attempts is [`crate::backend::backoff::Backoff`], the crate's one backoff.

use std::collections::BTreeMap;
use std::time::Duration;

use http::HeaderMap;
use serde::Deserialize;

/// How long to pause a domain after a 429 that names no period.
pub const DEFAULT_THROTTLE_PAUSE: Duration = Duration::from_secs(1);

/// The longest pause a 429 can impose; protects against absurd `Retry-After` values.
pub const MAX_THROTTLE_PAUSE: Duration = Duration::from_secs(300);

/// What the gateway should do with an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: read the answer.
    Success,
    /// 429: pause the whole domain for `pause`, then try again.
    Throttled {
        /// From `X-RateLimit-Period-In-Sec` or `Retry-After`, else one second.
        pause: Duration,
    },
    /// Try again after a backoff: 5xx (but 501), 408, timeouts and connection failures.
    Transient {
        /// What happened, for logs and for the error when retries run out.
        reason: String,
        /// Whether the call may have taken effect anyway: a 5xx can come after the work was
        /// done, while a 408 (the server gave up reading the request) or a connection that was
        /// never made means it was not.
        maybe_done: bool,
    },
    /// Trying again will not help.
    Permanent {
        /// What the backend said (its `message`, or the status).
        message: String,
        /// What the operator should do about it.
        hint: String,
    },
}

/// Opsgenie's error envelope: `{message, code, errors, took, requestId}`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    errors: BTreeMap<String, serde_json::Value>,
}

/// Classifies an HTTP answer by status, headers and (for hints) the error body.
pub fn classify(status: u16, headers: &HeaderMap, body: &[u8]) -> Verdict {
    if (200..300).contains(&status) {
        return Verdict::Success;
    }
    if status == 429 {
        return Verdict::Throttled {
            pause: throttle_pause(headers),
        };
    }
    let error: ApiError = serde_json::from_slice(body).unwrap_or_default();
    let message = if error.message.is_empty() {
        format!("HTTP {status}")
    } else {
        error.message.clone()
    };
    if status == 408 || ((500..600).contains(&status) && status != 501) {
        return Verdict::Transient {
            reason: format!("HTTP {status}: {message}"),
            maybe_done: status != 408,
        };
    }
    let hint = match status {
        400 => "the backend could not parse the request body; this is a bug in \
                teleport-opsgenie, please report it"
            .to_owned(),
        401 => "the API key was not accepted: check the key, and the region \
                (`opsgenie.region: eu` for api.eu.opsgenie.com accounts)"
            .to_owned(),
        402 => "the account's plan does not include this action; upgrade the plan or turn off \
                the feature that needs it"
            .to_owned(),
        403 if error.code == Some(40301) => "use the key of an API integration, not an account \
                (API Key Management) key; for on-call lookups the integration must not be \
                restricted from configuration access"
            .to_owned(),
        403 => "the key is not allowed to do this: check the API integration's permissions and \
                that its team can see the schedules it is asked about"
            .to_owned(),
        404 => "not found: check the schedule and heartbeat names, and that `opsgenie.region` \
                or `opsgenie.api_url` points at the account's API"
            .to_owned(),
        422 if error.message.contains("Key format is not valid") => "the API key is malformed: \
                copy the whole key of the API integration, without quotes or spaces"
            .to_owned(),
        422 => {
            let errors: Vec<String> = error
                .errors
                .iter()
                .map(|(field, reason)| match reason {
                    serde_json::Value::String(s) => format!("{field}: {s}"),
                    other => format!("{field}: {other}"),
                })
                .collect();
            if errors.is_empty() {
                "the backend rejected the request's content".to_owned()
            } else {
                format!("the backend rejected fields: {}", errors.join("; "))
            }
        }
        501 | 405 | 406 | 410 | 415 => "the backend does not support this call: check \
                `opsgenie.backend` and `opsgenie.api_url`"
            .to_owned(),
        _ => format!("unexpected HTTP status {status}"),
    };
    Verdict::Permanent { message, hint }
}

/// The pause a 429 asks for: `X-RateLimit-Period-In-Sec` (Opsgenie), then `Retry-After` in
/// seconds (JSM, Atlassian), else [`DEFAULT_THROTTLE_PAUSE`]; at most [`MAX_THROTTLE_PAUSE`].
pub fn throttle_pause(headers: &HeaderMap) -> Duration {
    let seconds = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
    };
    seconds("x-ratelimit-period-in-sec")
        .or_else(|| seconds("retry-after"))
        .map(|s| Duration::from_secs_f64(s.min(MAX_THROTTLE_PAUSE.as_secs_f64())))
        .unwrap_or(DEFAULT_THROTTLE_PAUSE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    fn hint(status: u16, body: &str) -> String {
        match classify(status, &HeaderMap::new(), body.as_bytes()) {
            Verdict::Permanent { hint, .. } => hint,
            other => panic!("expected permanent, got {other:?}"),
        }
    }

    #[test]
    fn success_and_transients() {
        assert_eq!(classify(202, &HeaderMap::new(), b""), Verdict::Success);
        for (status, maybe) in [
            (500, true),
            (502, true),
            (503, true),
            (504, true),
            (408, false),
        ] {
            assert!(
                matches!(
                    classify(status, &HeaderMap::new(), b""),
                    Verdict::Transient { maybe_done, .. } if maybe_done == maybe
                ),
                "{status}"
            );
        }
        assert!(matches!(
            classify(501, &HeaderMap::new(), b""),
            Verdict::Permanent { .. }
        ));
    }

    #[test]
    fn throttle_pauses() {
        let t = |h: &[(&'static str, &'static str)]| classify(429, &headers(h), b"");
        assert_eq!(
            t(&[("X-RateLimit-Period-In-Sec", "60")]),
            Verdict::Throttled {
                pause: Duration::from_secs(60)
            }
        );
        assert_eq!(
            t(&[("Retry-After", "3")]),
            Verdict::Throttled {
                pause: Duration::from_secs(3)
            }
        );
        assert_eq!(
            t(&[("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT")]),
            Verdict::Throttled {
                pause: DEFAULT_THROTTLE_PAUSE
            }
        );
        assert_eq!(
            t(&[("Retry-After", "99999")]),
            Verdict::Throttled {
                pause: MAX_THROTTLE_PAUSE
            }
        );
    }

    #[test]
    fn hints_name_the_fix() {
        assert!(
            hint(401, r#"{"message":"Could not authenticate"}"#).contains("opsgenie.region: eu")
        );
        assert!(hint(
            403,
            r#"{"code":40301,"message":"To perform this action, use an API key from an API integration."}"#
        )
        .contains("API integration"));
        assert!(hint(422, r#"{"message":"Key format is not valid!"}"#).contains("malformed"));
        let h = hint(
            422,
            r#"{"message":"Request body is not processable.","errors":{"recipients#type":"Invalid recipient type 'bb'"}}"#,
        );
        assert!(
            h.contains("recipients#type: Invalid recipient type 'bb'"),
            "{h}"
        );
        assert!(hint(402, "").contains("plan"));
        assert!(hint(404, "not json").contains("not found"));
    }
}
