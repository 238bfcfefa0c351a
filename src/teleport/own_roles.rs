//! `check`'s report on the rules the identity's own roles grant (teleport-wire.md §10): the
//! `review_requests` rule auto-approval needs, and the `lock` rule `shift_end: revoke` needs.
//! Read from the roles, never by trying: nothing is created.

use super::client::TeleportClient;
use super::error::TeleportError;
use super::rbac::{OwnRoles, Verdict};

/// How to add the review rule (the commented block of `config/access-plugin.yaml`).
pub const REVIEW_FIX: &str = "add to the plugin's role (`tctl edit role/access-plugin`, as in config/access-plugin.yaml): `allow: {review_requests: {roles: ['<the roles on-call engineers request>']}}`, or set `auto_approval.enabled: false`";
/// How to add the lock rule.
pub const LOCK_FIX: &str =
    "add the allow rule `{resources: ['lock'], verbs: ['create', 'update']}` to the plugin's role (uncomment it in config/access-plugin.yaml, `tctl edit role/access-plugin`)";

/// What the daemon will do with the identity, as far as its rules go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Needs {
    /// Auto-approval is on: approving reviews.
    pub review: bool,
    /// `auto_approval.shift_end: revoke`: locks at shift end.
    pub lock: bool,
}

/// One line of the report: what was checked, and `Ok(text)` or `Err(text)` for a failure
/// that the configuration has to fix.
pub type RoleFinding = (&'static str, Result<String, RoleProblem>);

/// A failed role check: its text and whether waiting may help (a connection problem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleProblem {
    /// What is wrong, and the fix.
    pub text: String,
    /// `true` when Teleport could not be asked (retry later), `false` when a rule is missing.
    pub retryable: bool,
}

/// Reads the identity's roles and reports on them.
pub async fn check(client: &TeleportClient, needs: Needs) -> Vec<RoleFinding> {
    report(client.own_roles().await, needs)
}

fn list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The report for what reading the roles gave (pure).
pub fn report(roles: Result<OwnRoles, TeleportError>, needs: Needs) -> Vec<RoleFinding> {
    let auto_approval = needs.review;
    let roles = match roles {
        Ok(roles) => roles,
        // Teleport does not document who may read their own roles: a refusal means "cannot
        // tell", never "the rule is missing".
        Err(
            err @ (TeleportError::PermissionDenied { .. }
            | TeleportError::Unimplemented { .. }
            | TeleportError::MfaRequired { .. }),
        ) => {
            return vec![(
                "own roles",
                Ok(format!("cannot tell which rules the roles grant ({err}); the review and lock rules were not checked")),
            )]
        }
        Err(err) => {
            return vec![(
                "own roles",
                Err(RoleProblem {
                    retryable: err.is_retryable(),
                    text: err.to_string(),
                }),
            )]
        }
    };
    let names = roles.names().join(", ");
    let rights = roles.review_rights();
    let review = if !rights.any() {
        if auto_approval {
            Err(RoleProblem {
                text: format!("`auto_approval.enabled` is true but the roles ({names}) have no `allow.review_requests` rule, so every approval would be refused and each request declined; fix: {REVIEW_FIX}"),
                retryable: false,
            })
        } else {
            Ok(format!("no `review_requests` rule in the roles ({names}); not needed while auto-approval is off"))
        }
    } else {
        let mut text = format!("may review requests for {}", list(&rights.roles));
        if !rights.denied.is_empty() {
            text.push_str(&format!(" except {}", list(&rights.denied)));
        }
        if !rights.where_clauses.is_empty() {
            text.push_str(&format!(
                ", only where {}",
                rights.where_clauses.join(" or ")
            ));
        }
        if !auto_approval {
            text.push_str(" (auto-approval is off)");
        }
        Ok(text)
    };
    let lock = match roles.verbs("lock", &["create", "update"]) {
        Verdict::Allowed => Ok("may create and update locks".to_owned()),
        Verdict::Conditional(clauses) => Ok(format!(
            "may create and update locks only where {}",
            clauses.join(" and ")
        )),
        Verdict::Denied if needs.lock => Err(RoleProblem {
            text: format!("`auto_approval.shift_end` is `revoke` but the roles ({names}) have no `lock` create/update rule, so every revocation at shift end would be refused (and retried, with the access left in place); fix: {LOCK_FIX}, or set `auto_approval.shift_end: decline`"),
            retryable: false,
        }),
        Verdict::Denied => Ok(format!(
            "no `lock` create/update rule (not needed: `auto_approval.shift_end` is not `revoke`; with it: {LOCK_FIX})"
        )),
    };
    vec![("review rule", review), ("lock rule", lock)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::teleport::error::Operation;
    use crate::teleport::rbac::{RoleRules, Rule};

    fn with_review(review: &[&str]) -> OwnRoles {
        OwnRoles(vec![RoleRules {
            name: "access-plugin".into(),
            review_roles: review.iter().map(|s| s.to_string()).collect(),
            ..RoleRules::default()
        }])
    }

    #[test]
    fn a_missing_review_rule_fails_only_when_auto_approval_is_on() {
        let found = report(Ok(with_review(&[])), REVIEW);
        let (what, result) = &found[0];
        assert_eq!(*what, "review rule");
        let problem = result.as_ref().unwrap_err();
        assert!(!problem.retryable);
        assert!(problem.text.contains("review_requests"), "{}", problem.text);
        assert!(
            problem.text.contains("config/access-plugin.yaml"),
            "{}",
            problem.text
        );
        assert!(report(Ok(with_review(&[])), Needs::default())[0].1.is_ok());
        let ok = report(Ok(with_review(&["editor"])), REVIEW);
        assert_eq!(
            ok[0].1.as_ref().unwrap(),
            "may review requests for `editor`"
        );
    }

    const REVIEW: Needs = Needs {
        review: true,
        lock: false,
    };

    #[test]
    fn the_lock_rule_fails_only_when_shift_end_is_revoke() {
        let missing = report(Ok(with_review(&["*"])), REVIEW);
        let text = missing[1].1.as_ref().expect("information, not a failure");
        assert!(text.contains("is not `revoke`"), "{text}");
        let revoke = Needs {
            review: true,
            lock: true,
        };
        let failed = report(Ok(with_review(&["*"])), revoke);
        let problem = failed[1].1.as_ref().unwrap_err();
        assert!(!problem.retryable);
        assert!(
            problem.text.contains("resources: ['lock']"),
            "{}",
            problem.text
        );
        assert!(problem.text.contains("shift_end"), "{}", problem.text);
        let mut roles = with_review(&["*"]);
        roles.0[0].allow.push(Rule {
            resources: vec!["lock".into()],
            verbs: vec!["*".into()],
            where_clause: String::new(),
        });
        assert_eq!(
            report(Ok(roles), revoke)[1].1.as_ref().unwrap(),
            "may create and update locks"
        );
    }

    #[test]
    fn a_refusal_to_show_the_roles_is_cannot_tell_not_missing() {
        let denied = TeleportError::PermissionDenied {
            operation: Operation::GetOwnRoles,
            message: "access denied".into(),
            hint: Operation::GetOwnRoles.required_rule(),
        };
        let found = report(Err(denied), REVIEW);
        assert_eq!(found.len(), 1);
        assert!(found[0].1.as_ref().unwrap().contains("cannot tell"));
        let down = TeleportError::Unavailable {
            operation: Operation::GetOwnRoles,
            message: "restarting".into(),
        };
        assert!(
            report(Err(down), REVIEW)[0]
                .1
                .as_ref()
                .unwrap_err()
                .retryable
        );
    }
}
