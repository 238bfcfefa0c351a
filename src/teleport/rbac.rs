//! What the plugin's own Teleport roles allow, read from `GetCurrentUserRoles` (teleport-wire.md
//! §10) and evaluated as Teleport does: a verb on a resource is allowed when some role's allow
//! rules list the resource (or `*`) with the verb (or `*`) and no role's deny rules do; review
//! rights are `allow.review_requests.roles` minus `deny.review_requests.roles`.
//!
//! A rule with a `where` clause depends on data nobody can see ahead of time, so such a rule
//! gives "allowed where <clause>", never a yes or a no. Pure functions: `check` fetches the
//! roles and renders what this module concludes.

use crate::pb;

/// One `rules` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    /// Resource kinds, or `*`.
    pub resources: Vec<String>,
    /// Verbs, or `*`.
    pub verbs: Vec<String>,
    /// The `where` predicate; empty when unconditional.
    pub where_clause: String,
}

impl Rule {
    fn covers(&self, resource: &str, verb: &str) -> bool {
        self.resources.iter().any(|r| r == "*" || r == resource)
            && self.verbs.iter().any(|v| v == "*" || v == verb)
    }
}

/// The parts of one role that `check` reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoleRules {
    /// The role's name.
    pub name: String,
    /// `allow.rules`.
    pub allow: Vec<Rule>,
    /// `deny.rules`.
    pub deny: Vec<Rule>,
    /// `allow.review_requests.roles`.
    pub review_roles: Vec<String>,
    /// `allow.review_requests.where`.
    pub review_where: String,
    /// `deny.review_requests.roles`.
    pub review_denied: Vec<String>,
}

/// The roles of the identity the daemon runs as.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnRoles(pub Vec<RoleRules>);

/// Whether a verb is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// An unconditional allow rule, and no deny rule.
    Allowed,
    /// Only rules with `where` clauses decide (the clauses, allow ones as they are, deny ones
    /// prefixed with `not`).
    Conditional(Vec<String>),
    /// No allow rule, or an unconditional deny rule.
    Denied,
}

/// Review rights: roles whose requests may be reviewed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReviewRights {
    /// `allow.review_requests.roles` of every role (patterns as written).
    pub roles: Vec<String>,
    /// `deny.review_requests.roles` of every role.
    pub denied: Vec<String>,
    /// `allow.review_requests.where` clauses that narrow the rights.
    pub where_clauses: Vec<String>,
}

impl ReviewRights {
    /// Whether any review is possible at all.
    pub fn any(&self) -> bool {
        !self.roles.is_empty()
    }
}

fn rule_from_pb(rule: pb::types::Rule) -> Rule {
    Rule {
        resources: rule.resources,
        verbs: rule.verbs,
        where_clause: rule.r#where.trim().to_owned(),
    }
}

impl OwnRoles {
    /// From the roles as the server streams them.
    pub fn from_pb(roles: Vec<pb::types::RoleV6>) -> Self {
        Self(
            roles
                .into_iter()
                .map(|role| {
                    let name = role.metadata.map(|m| m.name).unwrap_or_default();
                    let spec = role.spec.unwrap_or_default();
                    let allow = spec.allow.unwrap_or_default();
                    let deny = spec.deny.unwrap_or_default();
                    let review = allow.review_requests.unwrap_or_default();
                    RoleRules {
                        name,
                        allow: allow.rules.into_iter().map(rule_from_pb).collect(),
                        deny: deny.rules.into_iter().map(rule_from_pb).collect(),
                        review_roles: review.roles,
                        review_where: review.r#where.trim().to_owned(),
                        review_denied: deny.review_requests.map(|r| r.roles).unwrap_or_default(),
                    }
                })
                .collect(),
        )
    }

    /// The role names, for messages.
    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|r| r.name.as_str()).collect()
    }

    /// Whether `verb` on `resource` is allowed.
    pub fn verb(&self, resource: &str, verb: &str) -> Verdict {
        let mut conditions = Vec::new();
        for rule in self.0.iter().flat_map(|r| &r.deny) {
            if rule.covers(resource, verb) {
                if rule.where_clause.is_empty() {
                    return Verdict::Denied;
                }
                conditions.push(format!("not ({})", rule.where_clause));
            }
        }
        let mut allowed = false;
        for rule in self.0.iter().flat_map(|r| &r.allow) {
            if rule.covers(resource, verb) {
                if rule.where_clause.is_empty() {
                    allowed = true;
                } else {
                    conditions.push(rule.where_clause.clone());
                }
            }
        }
        match (allowed, conditions.is_empty()) {
            (true, true) => Verdict::Allowed,
            // An unconditional allow narrowed by conditional denies, or conditional allows.
            (_, false) if allowed || self.has_conditional_allow(resource, verb) => {
                Verdict::Conditional(conditions)
            }
            _ => Verdict::Denied,
        }
    }

    fn has_conditional_allow(&self, resource: &str, verb: &str) -> bool {
        self.0
            .iter()
            .flat_map(|r| &r.allow)
            .any(|rule| rule.covers(resource, verb) && !rule.where_clause.is_empty())
    }

    /// Whether every one of `verbs` on `resource` is allowed: the weakest verdict of them.
    pub fn verbs(&self, resource: &str, verbs: &[&str]) -> Verdict {
        let mut conditions = Vec::new();
        for verb in verbs {
            match self.verb(resource, verb) {
                Verdict::Allowed => {}
                Verdict::Denied => return Verdict::Denied,
                Verdict::Conditional(found) => {
                    for clause in found {
                        if !conditions.contains(&clause) {
                            conditions.push(clause);
                        }
                    }
                }
            }
        }
        if conditions.is_empty() {
            Verdict::Allowed
        } else {
            Verdict::Conditional(conditions)
        }
    }

    /// Review rights over all roles.
    pub fn review_rights(&self) -> ReviewRights {
        let mut rights = ReviewRights::default();
        for role in &self.0 {
            rights.roles.extend(role.review_roles.iter().cloned());
            rights.denied.extend(role.review_denied.iter().cloned());
            if !role.review_where.is_empty() && !role.review_roles.is_empty() {
                rights.where_clauses.push(role.review_where.clone());
            }
        }
        rights
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(resources: &[&str], verbs: &[&str], where_clause: &str) -> Rule {
        Rule {
            resources: resources.iter().map(|s| s.to_string()).collect(),
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            where_clause: where_clause.into(),
        }
    }

    fn roles(allow: Vec<Rule>, deny: Vec<Rule>) -> OwnRoles {
        OwnRoles(vec![RoleRules {
            name: "r".into(),
            allow,
            deny,
            ..RoleRules::default()
        }])
    }

    #[test]
    fn allow_deny_wildcards_and_where_clauses() {
        let lock = |r: &OwnRoles| r.verbs("lock", &["create", "update"]);
        assert_eq!(lock(&roles(vec![], vec![])), Verdict::Denied);
        let allowed = roles(vec![rule(&["lock"], &["create", "update"], "")], vec![]);
        assert_eq!(lock(&allowed), Verdict::Allowed);
        let star = roles(vec![rule(&["*"], &["*"], "")], vec![]);
        assert_eq!(lock(&star), Verdict::Allowed);
        // Only one of the two verbs.
        let half = roles(vec![rule(&["lock"], &["create"], "")], vec![]);
        assert_eq!(lock(&half), Verdict::Denied);
        // A deny rule wins, whatever allows.
        let denied = roles(
            vec![rule(&["*"], &["*"], "")],
            vec![rule(&["lock"], &["*"], "")],
        );
        assert_eq!(lock(&denied), Verdict::Denied);
        // Where clauses cannot be decided here.
        let cond = roles(
            vec![rule(&["lock"], &["*"], "contains(user.traits, \"x\")")],
            vec![],
        );
        assert_eq!(
            lock(&cond),
            Verdict::Conditional(vec!["contains(user.traits, \"x\")".into()])
        );
        let narrowed = roles(
            vec![rule(&["lock"], &["*"], "")],
            vec![rule(&["lock"], &["update"], "is_bot")],
        );
        assert_eq!(
            lock(&narrowed),
            Verdict::Conditional(vec!["not (is_bot)".into()])
        );
        // A conditional deny with no allow at all is still no.
        let only_deny = roles(vec![], vec![rule(&["lock"], &["*"], "is_bot")]);
        assert_eq!(lock(&only_deny), Verdict::Denied);
    }

    #[test]
    fn review_rights_collect_every_role() {
        let own = OwnRoles(vec![
            RoleRules {
                name: "a".into(),
                review_roles: vec!["editor".into()],
                review_where: "contains(request.system_annotations[\"x\"], \"y\")".into(),
                ..RoleRules::default()
            },
            RoleRules {
                name: "b".into(),
                review_denied: vec!["admin".into()],
                ..RoleRules::default()
            },
        ]);
        let rights = own.review_rights();
        assert!(rights.any());
        assert_eq!(rights.roles, vec!["editor"]);
        assert_eq!(rights.denied, vec!["admin"]);
        assert_eq!(rights.where_clauses.len(), 1);
        assert!(!OwnRoles::default().review_rights().any());
        assert_eq!(own.names(), vec!["a", "b"]);
    }
}
