//! Teleport roles and users, parsed from the same YAML operators write for `tctl create`, and the
//! few RBAC questions the access-request API asks of them.
//!
//! Only the parts of a role the access-request flow reads are modelled: `allow`/`deny` rules,
//! `allow.request` (requestable roles, annotations, thresholds) and `allow.review_requests`.
//! Everything else a real role file carries (logins, labels, options, ...) is accepted and ignored.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

/// One YAML document: a role (`kind: role`) or a user (`kind: user`).
#[derive(Debug, Deserialize)]
pub(crate) struct Resource {
    pub kind: String,
    #[serde(default)]
    pub metadata: ResourceMetadata,
    #[serde(default)]
    pub spec: serde_yaml::Value,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ResourceMetadata {
    #[serde(default)]
    pub name: String,
}

/// `spec` of a `kind: user` document.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct UserSpec {
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `spec` of a `kind: role` document.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct RoleSpec {
    #[serde(default)]
    pub allow: Conditions,
    #[serde(default)]
    pub deny: Conditions,
}

/// An `allow` or `deny` block.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct Conditions {
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub request: Option<RequestConditions>,
    #[serde(default)]
    pub review_requests: Option<ReviewConditions>,
}

/// One `rules` entry. `where` expressions are kept (roles are served back as written) but not
/// evaluated: a rule with one allows as if it matched.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct Rule {
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default, rename = "where")]
    pub where_clause: String,
}

/// `allow.request`.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct RequestConditions {
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub search_as_roles: Vec<String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub thresholds: Vec<Threshold>,
}

/// `allow.request.thresholds[]`. A missing or zero count means 1, as in Teleport.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct Threshold {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub filter: String,
    #[serde(default)]
    pub approve: u32,
    #[serde(default)]
    pub deny: u32,
}

/// `allow.review_requests`. `where` is kept but not evaluated; `preview_as_roles` is ignored.
#[derive(Debug, Default, Clone, Deserialize)]
pub(crate) struct ReviewConditions {
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default, rename = "where")]
    pub where_clause: String,
}

/// A parsed role.
#[derive(Debug, Clone)]
pub(crate) struct Role {
    pub spec: RoleSpec,
}

/// Matches a Teleport-style role name pattern. Supports `*` globs (and the common `^.*$` / `.*`
/// catch-alls); anything else is compared literally.
pub(crate) fn pattern_matches(pattern: &str, name: &str) -> bool {
    if pattern == "*" || pattern == "^.*$" || pattern == ".*" {
        return true;
    }
    if !pattern.contains('*') {
        return pattern == name;
    }
    glob(pattern.as_bytes(), name.as_bytes())
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    // Iterative glob with single-star backtracking: linear for the patterns roles use.
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

fn rule_matches(rule: &Rule, resource: &str, verb: &str) -> bool {
    let res = rule.resources.iter().any(|r| r == "*" || r == resource);
    let verb_ok = rule.verbs.iter().any(|v| v == "*" || v == verb);
    res && verb_ok
}

/// The roles and users known to the fake cluster.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    pub roles: HashMap<String, Role>,
    pub users: HashMap<String, Vec<String>>,
}

impl Directory {
    fn user_roles<'a>(&'a self, user: &str) -> impl Iterator<Item = &'a Role> + 'a {
        self.users
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|name| self.roles.get(name))
    }

    /// The user's roles as `GetCurrentUserRoles` streams them (rules and review rights; the
    /// parts this fake does not model are absent, as undeclared fields are to the client).
    pub fn role_messages(&self, user: &str) -> Vec<crate::pb::types::RoleV6> {
        use crate::pb::types;
        let rules = |rules: &[Rule]| -> Vec<types::Rule> {
            rules
                .iter()
                .map(|r| types::Rule {
                    resources: r.resources.clone(),
                    verbs: r.verbs.clone(),
                    r#where: r.where_clause.clone(),
                    actions: vec![],
                })
                .collect()
        };
        let review = |c: &Option<ReviewConditions>| {
            c.as_ref().map(|c| types::AccessReviewConditions {
                roles: c.roles.clone(),
                r#where: c.where_clause.clone(),
                preview_as_roles: vec![],
            })
        };
        let conditions = |c: &Conditions| types::RoleConditions {
            rules: rules(&c.rules),
            review_requests: review(&c.review_requests),
        };
        self.users
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|name| self.roles.get(name).map(|role| (name, role)))
            .map(|(name, role)| types::RoleV6 {
                kind: "role".to_owned(),
                sub_kind: String::new(),
                version: "v7".to_owned(),
                metadata: Some(types::Metadata {
                    name: name.clone(),
                    namespace: "default".to_owned(),
                    ..Default::default()
                }),
                spec: Some(types::RoleSpecV6 {
                    allow: Some(conditions(&role.spec.allow)),
                    deny: Some(conditions(&role.spec.deny)),
                }),
            })
            .collect()
    }

    /// Whether the user exists.
    pub fn has_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Rule check with Teleport's precedence: any matching deny rule wins over allow rules.
    pub fn allows(&self, user: &str, resource: &str, verb: &str) -> bool {
        let mut allowed = false;
        for role in self.user_roles(user) {
            if role
                .spec
                .deny
                .rules
                .iter()
                .any(|r| rule_matches(r, resource, verb))
            {
                return false;
            }
            allowed |= role
                .spec
                .allow
                .rules
                .iter()
                .any(|r| rule_matches(r, resource, verb));
        }
        allowed
    }

    /// Whether `user` may request `role` for themselves (`allow.request.roles`, minus
    /// `deny.request.roles`).
    pub fn can_request(&self, user: &str, role: &str) -> bool {
        let mut allowed = false;
        for r in self.user_roles(user) {
            if let Some(deny) = &r.spec.deny.request {
                if deny.roles.iter().any(|p| pattern_matches(p, role)) {
                    return false;
                }
            }
            if let Some(allow) = &r.spec.allow.request {
                allowed |= allow.roles.iter().any(|p| pattern_matches(p, role));
            }
        }
        allowed
    }

    /// Roles a wildcard (empty) request expands to: the literal names in `allow.request.roles`.
    pub fn requestable_roles(&self, user: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self.user_roles(user) {
            if let Some(allow) = &r.spec.allow.request {
                for p in &allow.roles {
                    if !p.contains('*') && !p.starts_with('^') && !out.contains(p) {
                        out.push(p.clone());
                    }
                }
            }
        }
        out
    }

    /// `allow.request.search_as_roles` of all the user's roles (resource-based requests).
    pub fn search_as_roles(&self, user: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self.user_roles(user) {
            if let Some(allow) = &r.spec.allow.request {
                for p in &allow.search_as_roles {
                    if !out.contains(p) {
                        out.push(p.clone());
                    }
                }
            }
        }
        out
    }

    /// Union of `allow.request.annotations` over the user's roles; values keep first-seen order
    /// and are not repeated.
    pub fn annotations(&self, user: &str) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in self.user_roles(user) {
            if let Some(allow) = &r.spec.allow.request {
                for (k, vs) in &allow.annotations {
                    let slot = out.entry(k.clone()).or_default();
                    for v in vs {
                        if !slot.contains(v) {
                            slot.push(v.clone());
                        }
                    }
                }
            }
        }
        out
    }

    /// Thresholds from those of the user's roles that grant at least one of `requested`.
    pub fn thresholds(&self, user: &str, requested: &[String]) -> Vec<Threshold> {
        let mut out: Vec<Threshold> = Vec::new();
        for r in self.user_roles(user) {
            let Some(allow) = &r.spec.allow.request else {
                continue;
            };
            let grants = requested
                .iter()
                .any(|want| allow.roles.iter().any(|p| pattern_matches(p, want)));
            if !grants {
                continue;
            }
            for t in &allow.thresholds {
                let dup = out.iter().any(|o| {
                    o.name == t.name
                        && o.filter == t.filter
                        && o.approve == t.approve
                        && o.deny == t.deny
                });
                if !dup {
                    out.push(t.clone());
                }
            }
        }
        out
    }

    /// Whether `user` has any `review_requests` grant at all.
    pub fn is_reviewer(&self, user: &str) -> bool {
        self.user_roles(user).any(|r| {
            r.spec
                .allow
                .review_requests
                .as_ref()
                .is_some_and(|rv| !rv.roles.is_empty())
        })
    }

    /// Whether `user`'s `review_requests.roles` cover every role in `roles`.
    pub fn can_review(&self, user: &str, roles: &[String]) -> bool {
        let patterns: Vec<&String> = self
            .user_roles(user)
            .filter_map(|r| r.spec.allow.review_requests.as_ref())
            .flat_map(|rv| rv.roles.iter())
            .collect();
        let denied: Vec<&String> = self
            .user_roles(user)
            .filter_map(|r| r.spec.deny.review_requests.as_ref())
            .flat_map(|rv| rv.roles.iter())
            .collect();
        !roles.is_empty()
            && roles.iter().all(|want| {
                patterns.iter().any(|p| pattern_matches(p, want))
                    && !denied.iter().any(|p| pattern_matches(p, want))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns() {
        assert!(pattern_matches("*", "x"));
        assert!(pattern_matches("db-*", "db-admin"));
        assert!(!pattern_matches("db-*", "web-admin"));
        assert!(pattern_matches("*-admin", "db-admin"));
        assert!(pattern_matches("a*b*c", "axxbyyc"));
        assert!(!pattern_matches("a*b*c", "axxbyy"));
        assert!(pattern_matches("editor", "editor"));
        assert!(!pattern_matches("editor", "editors"));
    }
}
