//! Query parameters checked as the official definitions declare them: enums (`identifierType`,
//! `sort`, `order`, `direction`, …) take only their listed values, integers their range. A
//! value outside gets 422 with an `errors` entry naming the parameter and what it accepts, like
//! a body field that fails validation.

use super::ctx::{query_param, Ctx};
use super::reply::Reply;
use super::state::IdKind;
use super::validate::FieldErrors;

fn refuse(name: &str, reason: String) -> Reply {
    Reply::unprocessable(FieldErrors::from([(name.to_owned(), reason)]))
}

/// The value of enum parameter `name`, `default` when absent; 422 for a value not in
/// `allowed` (compared exactly: Opsgenie's enums are case-sensitive).
pub(super) fn one_of(
    ctx: &Ctx<'_>,
    name: &str,
    allowed: &[&'static str],
    default: &'static str,
) -> Result<&'static str, Reply> {
    match query_param(ctx.query, name) {
        None => Ok(default),
        Some(v) => allowed.iter().find(|a| **a == v).copied().ok_or_else(|| {
            refuse(
                name,
                format!(
                    "{name} should be one of [{}], got '{v}'",
                    allowed.join(", ")
                ),
            )
        }),
    }
}

/// The value of integer parameter `name` within `min..=max`, `default` when absent.
pub(super) fn int_in(
    ctx: &Ctx<'_>,
    name: &str,
    min: usize,
    max: usize,
    default: usize,
) -> Result<usize, Reply> {
    let Some(v) = query_param(ctx.query, name) else {
        return Ok(default);
    };
    match v.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ if max == usize::MAX => Err(refuse(
            name,
            format!("{name} must be an integer of at least {min}, got '{v}'"),
        )),
        _ => Err(refuse(
            name,
            format!("{name} must be an integer between {min} and {max}, got '{v}'"),
        )),
    }
}

/// `order`: `asc` or `desc` (default); true for ascending.
pub(super) fn ascending(ctx: &Ctx<'_>) -> Result<bool, Reply> {
    Ok(one_of(ctx, "order", &["asc", "desc"], "desc")? == "asc")
}

/// `identifierType` (or another parameter of the same enum): `id` (default), `alias`, `tiny`.
pub(super) fn id_kind(ctx: &Ctx<'_>, param: &str) -> Result<IdKind, Reply> {
    let raw = one_of(ctx, param, &["id", "alias", "tiny"], "id")?;
    Ok(IdKind::parse(Some(raw)).unwrap_or(IdKind::Id))
}
