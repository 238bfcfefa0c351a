//! A small subset of Opsgenie's alert search language, enough for list/count calls such as an
//! orphan sweep: `field:value` terms joined by `AND`, values optionally in double quotes.
//!
//! Supported fields: `status` (open/closed), `tag`/`tags`, `alias`, `priority`, `entity`,
//! `source`, `owner`, `acknowledged` (true/false) and `message` (case-insensitive substring).
//! `OR`, `NOT` and parentheses are refused with an error (answered as 422) rather than being
//! silently misread.

use super::model::Alert;

/// One `field:value` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Term {
    field: String,
    value: String,
}

/// Splits on whitespace outside double quotes; quotes are removed, `\"` escapes a quote.
fn tokens(q: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = q.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => cur.extend(chars.next()),
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if quoted {
        return Err("unbalanced quote in query".into());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Parses a query; an empty query matches everything.
pub(crate) fn parse(q: &str) -> Result<Vec<Term>, String> {
    let mut terms = Vec::new();
    let mut expect_term = true;
    for tok in tokens(q)? {
        if tok.eq_ignore_ascii_case("and") && !expect_term {
            expect_term = true;
            continue;
        }
        if !expect_term {
            return Err(format!(
                "unsupported query syntax near '{tok}' (only AND is supported)"
            ));
        }
        let Some((field, value)) = tok.split_once([':', '=']) else {
            return Err(format!("unsupported query term '{tok}'"));
        };
        let field = field.to_ascii_lowercase();
        if !matches!(
            field.as_str(),
            "status"
                | "tag"
                | "tags"
                | "alias"
                | "priority"
                | "entity"
                | "source"
                | "owner"
                | "acknowledged"
                | "message"
        ) {
            return Err(format!("unsupported query field '{field}'"));
        }
        terms.push(Term {
            field,
            value: value.to_owned(),
        });
        expect_term = false;
    }
    if expect_term && !terms.is_empty() {
        return Err("query ends with AND".into());
    }
    Ok(terms)
}

/// True if the alert satisfies every term.
pub(crate) fn matches(terms: &[Term], a: &Alert) -> bool {
    terms.iter().all(|t| {
        let v = t.value.as_str();
        match t.field.as_str() {
            "status" => a.status.as_str().eq_ignore_ascii_case(v),
            "tag" | "tags" => a.tags.iter().any(|x| x == v),
            "alias" => a.alias == v,
            "priority" => a.priority.eq_ignore_ascii_case(v),
            "entity" => a.entity.as_deref() == Some(v),
            "source" => a.source == v,
            "owner" => a.user.as_deref() == Some(v),
            "acknowledged" => a.acknowledged.to_string().eq_ignore_ascii_case(v),
            "message" => a.message.to_lowercase().contains(&v.to_lowercase()),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_terms() {
        let t = parse(r#"status:open AND tag:"teleport access""#).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].value, "teleport access");
        assert_eq!(parse("tag:x").unwrap().len(), 1);
        assert!(parse("").unwrap().is_empty());
        assert!(parse("status:open OR tag:x").is_err());
        assert!(parse("status:open AND").is_err());
        assert!(parse("bogus:1").is_err());
        assert!(parse("tag:\"x").is_err());
    }
}
