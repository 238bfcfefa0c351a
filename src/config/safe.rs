//! Values shown in configuration errors: short, printable, and never a secret.
//!
//! An error may quote what the operator wrote, so that they can find it; but it goes to a
//! terminal, a log and perhaps a ticket. So a value is cut to [`SHOWN_CHARS`] characters (saying
//! how long it was), control and bidirectional-override characters are escaped (they can hide
//! or reorder text on a terminal), and a value that looks like a key is not shown at all,
//! whichever setting it was written under: a GenieKey is UUID-shaped, other tokens are long
//! runs of hex or base64, and a PEM private key announces itself.

/// Most characters of a value shown in a message.
pub(crate) const SHOWN_CHARS: usize = 40;

/// `value` quoted for a message: escaped, cut, or replaced when it looks like a secret.
pub(crate) fn show(value: &str) -> String {
    show_at_most(value, SHOWN_CHARS)
}

/// Most characters of a path shown in a message: paths are what the operator must find.
pub(crate) const SHOWN_PATH_CHARS: usize = 200;

fn show_at_most(value: &str, max: usize) -> String {
    let chars = value.chars().count();
    // Only the head is ever shown, so only a secret reaching into the head matters; looking no
    // further keeps a 10 MB value cheap.
    let probe: String = value.chars().take(max + 64).collect();
    if looks_secret(&probe) {
        return format!("<a value that looks like a key or token, not shown ({chars} characters)>");
    }
    if chars <= max {
        return format!("\"{}\"", escape(value));
    }
    let head: String = value.chars().take(max).collect();
    format!("\"{}…\" ({chars} characters)", escape(&head))
}

/// A path for a message, with the same care as [`show`]: a key pasted into a path setting must
/// not be echoed back as "file … does not exist".
pub(crate) fn show_path(path: &std::path::Path) -> String {
    show_at_most(&path.to_string_lossy(), SHOWN_PATH_CHARS)
}

/// A dotted key path for a message. Its parts are the operator's keys, which may be anything:
/// each is escaped and cut, and one that looks like a key or token is not shown.
pub(crate) fn key_path(path: &str) -> String {
    path.split('.')
        .map(|part| {
            if looks_secret(part) {
                "<hidden>".to_owned()
            } else {
                cut(part, SHOWN_PATH_CHARS)
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// `text` with control and bidirectional-formatting characters written as `\u{…}` escapes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_hidden(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// At most `max` characters of `text`, escaped, with the full length when it was cut.
pub(crate) fn cut(text: &str, max: usize) -> String {
    let chars = text.chars().count();
    if chars <= max {
        return escape(text);
    }
    let head: String = text.chars().take(max).collect();
    format!("{}… ({chars} characters)", escape(&head))
}

/// Characters that a terminal does not show as themselves.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}' // zero-width characters and direction marks
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{FEFF}')
}

/// Whether `value` looks like a credential: a UUID-shaped string (an Opsgenie GenieKey), a PEM
/// private key, or a long run of hex digits or base64 that mixes cases and digits.
pub(crate) fn looks_secret(value: &str) -> bool {
    if value.contains("PRIVATE KEY") || value.contains("-----BEGIN") {
        return true;
    }
    // One pass over the runs of token characters. A run is split at anything outside the
    // base64 alphabet, and at '/' so that file paths (words between slashes) are not tokens.
    let token = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'_' | b'-' | b'=');
    value
        .as_bytes()
        .split(|b| !token(*b))
        .filter(|run| run.len() >= 24)
        .any(|run| has_uuid(run) || is_token(run))
}

/// A UUID (8-4-4-4-12 hex digits) anywhere in `run`.
fn has_uuid(run: &[u8]) -> bool {
    const SHAPE: &[u8] = b"xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    // Only windows with a dash in the first dash's place are worth a full look.
    run.windows(SHAPE.len())
        .filter(|window| window[8] == b'-')
        .any(|window| {
            window.iter().zip(SHAPE).all(|(b, shape)| match shape {
                b'-' => *b == b'-',
                _ => b.is_ascii_hexdigit(),
            })
        })
}

/// A long run of hex digits (with a digit in it), or of base64 that mixes cases and digits.
fn is_token(run: &[u8]) -> bool {
    let (mut digits, mut upper, mut lower, mut hex) = (0usize, false, false, true);
    for b in run {
        digits += usize::from(b.is_ascii_digit());
        upper |= b.is_ascii_uppercase();
        lower |= b.is_ascii_lowercase();
        hex &= b.is_ascii_hexdigit();
    }
    (hex && run.len() >= 32 && digits > 0) || (digits > 0 && upper && lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_cut_escaped_or_hidden() {
        let cases: &[(&str, &str)] = &[
            ("plain", "\"plain\""),
            ("a\u{1b}[31mb", "\"a\\u{1b}[31mb\""),
            ("x\u{202e}y", "\"x\\u{202e}y\""),
            (
                "6f1c2f4e-8a3b-4c2d-9e1f-0a1b2c3d4e5f",
                "<a value that looks like a key or token, not shown (36 characters)>",
            ),
            (
                "key=6F1C2F4E-8A3B-4C2D-9E1F-0A1B2C3D4E5F trailing",
                "<a value that looks like a key or token, not shown (49 characters)>",
            ),
            (
                "0123456789abcdef0123456789abcdef",
                "<a value that looks like a key or token, not shown (32 characters)>",
            ),
            (
                "dGhpcyBpcyBhIHRva2VuIFdpdGggRGlnaXRzIDEyMw==",
                "<a value that looks like a key or token, not shown (44 characters)>",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIB",
                "<a value that looks like a key or token, not shown (36 characters)>",
            ),
            // Paths and names are not tokens.
            (
                "/var/lib/teleport/plugins/opsgenie/auth.pem",
                "\"/var/lib/teleport/plugins/opsgenie/auth.…\" (43 characters)",
            ),
            (
                "teleport-access-request-notifications",
                "\"teleport-access-request-notifications\"",
            ),
        ];
        for (value, shown) in cases {
            assert_eq!(show(value), *shown, "{value:?}");
        }
        let huge = "x".repeat(10 * 1024 * 1024);
        assert_eq!(
            show(&huge),
            format!("\"{}…\" (10485760 characters)", "x".repeat(40))
        );
        assert_eq!(cut("abc", 2), "ab… (3 characters)");
    }
}
