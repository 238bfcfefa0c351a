//! Who is on call, as the backends name them, and how a Teleport user is recognised among them.
//!
//! Opsgenie names on-call users by username, which is their e-mail address. JSM Operations
//! names them by Atlassian accountId; the e-mail comes from Jira's user API, and only when the
//! user's profile shows it. So on JSM a Teleport user is matched, in order:
//!
//! 1. by an explicit `auto_approval.users` entry, which may name the accountId or the e-mail
//!    (authoritative: when an entry exists, nothing else counts);
//! 2. by the e-mail Jira shows, with Opsgenie's rules: the Teleport name itself, then the name
//!    plus `@` and `auto_approval.user_domain`.
//!
//! A user whose e-mail is hidden can only be matched by an accountId entry; when nobody matched
//! and such users are on call, the decline names the entry that would fix it. A user whose
//! e-mail could not be read (the user API failed) makes "not on call" unknowable: that is a
//! failed lookup, never a "no".

/// What is known of an on-call user's e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Email {
    /// The address (Opsgenie: the username).
    Known(String),
    /// The user's profile hides it (JSM).
    Hidden,
    /// It could not be read; why.
    Unknown(String),
}

/// One person on call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnCallUser {
    /// How the backend names them: Opsgenie's username, JSM's accountId.
    pub id: String,
    /// Their e-mail.
    pub email: Email,
    /// Their display name, where known (for messages).
    pub display_name: String,
}

impl OnCallUser {
    /// An Opsgenie on-call user: the username is the e-mail.
    pub fn opsgenie(username: &str) -> Self {
        Self {
            id: username.to_owned(),
            email: Email::Known(username.to_owned()),
            display_name: String::new(),
        }
    }

    /// Whether the user's e-mail could not be read: an answer holding such a user is not
    /// cached, so the next decision asks again.
    pub fn incomplete(&self) -> bool {
        matches!(self.email, Email::Unknown(_))
    }

    /// How messages show the user: the e-mail if known, else the display name and accountId.
    pub fn shown(&self) -> String {
        match (&self.email, self.display_name.is_empty()) {
            (Email::Known(email), _) => email.clone(),
            (_, true) => format!("accountId {}", self.id),
            (_, false) => format!("{} (accountId {})", self.display_name, self.id),
        }
    }
}

impl From<&str> for OnCallUser {
    fn from(username: &str) -> Self {
        Self::opsgenie(username)
    }
}

impl From<String> for OnCallUser {
    fn from(username: String) -> Self {
        Self::opsgenie(&username)
    }
}

impl From<&String> for OnCallUser {
    fn from(username: &String) -> Self {
        Self::opsgenie(username)
    }
}

/// Which rule recognised the requester among the users on call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchRule {
    /// `auto_approval.users` maps the Teleport user to the on-call user (e-mail or accountId).
    ExplicitMap,
    /// The Teleport user name equals the on-call user's e-mail (ignoring case).
    Username,
    /// The Teleport user name plus `@` and `auto_approval.user_domain` equals it (ignoring case).
    UserDomain,
}

impl MatchRule {
    /// The rule's name, as notes and logs show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExplicitMap => "explicit map",
            Self::Username => "username",
            Self::UserDomain => "user_domain",
        }
    }
}

/// The requester, found on call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// The on-call user, as messages show them (e-mail, else accountId).
    pub opsgenie_user: String,
    /// How the backend names them (Opsgenie's username, JSM's accountId): whom the schedule's
    /// timeline is read for when the shift's end matters.
    pub backend_id: String,
    /// How the requester was recognised.
    pub rule: MatchRule,
}

/// The matching settings: the explicit entries and the domain.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// `auto_approval.users`.
    pub users: &'a std::collections::BTreeMap<String, String>,
    /// `auto_approval.user_domain`.
    pub user_domain: Option<&'a str>,
}

/// Whether the requester is among the users on call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// On call.
    Yes(Match),
    /// Not among them. `hidden` are the on-call users whose e-mail Jira hides, who might be
    /// the requester (only when no explicit entry decided).
    No {
        /// Users that only an accountId entry could match.
        hidden: Vec<OnCallUser>,
    },
    /// Cannot be told: some users' e-mails could not be read (the reasons).
    Unknown(Vec<String>),
}

/// Finds `teleport_user` among `on_call` (see the module docs for the order of the rules).
pub fn find(teleport_user: &str, on_call: &[OnCallUser], rules: Rules<'_>) -> Found {
    let by_email = |wanted: &str| {
        on_call
            .iter()
            .find(|u| matches!(&u.email, Email::Known(e) if same_name(e, wanted)))
    };
    let found = |u: &OnCallUser, rule| {
        Found::Yes(Match {
            opsgenie_user: match &u.email {
                Email::Known(email) => email.clone(),
                _ => u.id.clone(),
            },
            backend_id: u.id.clone(),
            rule,
        })
    };
    let unknown = || -> Vec<String> {
        on_call
            .iter()
            .filter_map(|u| match &u.email {
                Email::Unknown(why) => Some(format!(
                    "could not read the e-mail of on-call user {}: {why}",
                    u.id
                )),
                _ => None,
            })
            .collect()
    };
    if let Some((_, mapped)) = rules
        .users
        .iter()
        .find(|(k, _)| same_name(k, teleport_user))
    {
        let mapped = mapped.trim();
        if let Some(u) = on_call.iter().find(|u| u.id == mapped) {
            return found(u, MatchRule::ExplicitMap);
        }
        if let Some(u) = by_email(mapped) {
            return found(u, MatchRule::ExplicitMap);
        }
        // An entry naming an e-mail cannot rule out a user whose e-mail was not read.
        let reasons = unknown();
        if mapped.contains('@') && !reasons.is_empty() {
            return Found::Unknown(reasons);
        }
        let hidden = if mapped.contains('@') {
            hidden_users(on_call)
        } else {
            Vec::new()
        };
        return Found::No { hidden };
    }
    if let Some(u) = by_email(teleport_user) {
        return found(u, MatchRule::Username);
    }
    let domain = rules
        .user_domain
        .map(|d| d.trim().trim_start_matches('@'))
        .filter(|d| !d.is_empty() && !teleport_user.contains('@'));
    if let Some(domain) = domain {
        if let Some(u) = by_email(&format!("{teleport_user}@{domain}")) {
            return found(u, MatchRule::UserDomain);
        }
    }
    let reasons = unknown();
    if !reasons.is_empty() {
        return Found::Unknown(reasons);
    }
    Found::No {
        hidden: hidden_users(on_call),
    }
}

fn hidden_users(on_call: &[OnCallUser]) -> Vec<OnCallUser> {
    on_call
        .iter()
        .filter(|u| u.email == Email::Hidden)
        .cloned()
        .collect()
}

/// The sentence that tells how to match a requester whose e-mail Jira hides: which
/// `auto_approval.users` entry to add, per hidden on-call user. Empty when there are none.
pub fn hidden_hint(teleport_user: &str, hidden: &[OnCallUser]) -> String {
    match hidden {
        [] => String::new(),
        [one] => format!(
            "; {} is on call but their Atlassian profile hides the e-mail: if that is {teleport_user}, add `auto_approval.users: {{\"{teleport_user}\": \"{}\"}}`",
            one.shown(),
            one.id
        ),
        many => format!(
            "; {} on-call users hide their e-mail in their Atlassian profile ({}): if {teleport_user} is one of them, add `auto_approval.users: {{\"{teleport_user}\": \"<their accountId>\"}}`",
            many.len(),
            many.iter().map(OnCallUser::shown).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Names compared as people type them: trimmed, ignoring case.
pub fn same_name(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn jsm(id: &str, email: Email) -> OnCallUser {
        OnCallUser {
            id: id.into(),
            email,
            display_name: format!("User {id}"),
        }
    }

    fn known(e: &str) -> Email {
        Email::Known(e.into())
    }

    fn rules<'a>(users: &'a BTreeMap<String, String>, domain: Option<&'a str>) -> Rules<'a> {
        Rules {
            users,
            user_domain: domain,
        }
    }

    fn entries(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn rule(found: &Found) -> Option<MatchRule> {
        match found {
            Found::Yes(m) => Some(m.rule),
            _ => None,
        }
    }

    #[test]
    fn account_id_rules_in_order() {
        let on_call = vec![
            jsm("acc-alice", known("Alice@example.com")),
            jsm("acc-bob", Email::Hidden),
            jsm("acc-carol", known("carol@example.com")),
        ];
        let none = BTreeMap::new();
        // The visible e-mail, by name or by name and domain.
        assert_eq!(
            rule(&find("alice@example.com", &on_call, rules(&none, None))),
            Some(MatchRule::Username)
        );
        assert_eq!(
            rule(&find("carol", &on_call, rules(&none, Some("example.com")))),
            Some(MatchRule::UserDomain)
        );
        // An accountId entry matches a hidden e-mail; the match shows the accountId.
        let by_id = entries(&[("bob", "acc-bob")]);
        assert_eq!(
            find("bob", &on_call, rules(&by_id, Some("example.com"))),
            Found::Yes(Match {
                opsgenie_user: "acc-bob".into(),
                backend_id: "acc-bob".into(),
                rule: MatchRule::ExplicitMap
            })
        );
        // An e-mail entry matches the visible e-mail.
        let by_email = entries(&[("al", "alice@example.com")]);
        assert_eq!(
            rule(&find("al", &on_call, rules(&by_email, None))),
            Some(MatchRule::ExplicitMap)
        );
        // An entry is authoritative: carol mapped elsewhere is not matched by her e-mail.
        let elsewhere = entries(&[("carol", "acc-nobody")]);
        assert_eq!(
            find("carol", &on_call, rules(&elsewhere, Some("example.com"))),
            Found::No { hidden: vec![] }
        );
    }

    #[test]
    fn hidden_emails_decline_with_the_entry_that_fixes_it() {
        let on_call = vec![jsm("acc-bob", Email::Hidden)];
        let none = BTreeMap::new();
        let Found::No { hidden } = find("bob", &on_call, rules(&none, Some("example.com"))) else {
            panic!("not a no")
        };
        assert_eq!(hidden, on_call);
        let hint = hidden_hint("bob", &hidden);
        assert!(
            hint.contains(r#"`auto_approval.users: {"bob": "acc-bob"}`"#),
            "{hint}"
        );
        assert!(hint.contains("User acc-bob (accountId acc-bob)"), "{hint}");
        let two = vec![jsm("a1", Email::Hidden), jsm("a2", Email::Hidden)];
        let hint = hidden_hint("bob", &two);
        assert!(
            hint.contains("2 on-call users") && hint.contains("<their accountId>"),
            "{hint}"
        );
        assert_eq!(hidden_hint("bob", &[]), "");
        // An e-mail entry cannot see a hidden e-mail either: the hint still helps.
        let by_email = entries(&[("bob", "bob@example.com")]);
        assert!(matches!(
            find("bob", &on_call, rules(&by_email, None)),
            Found::No { hidden } if hidden.len() == 1
        ));
    }

    #[test]
    fn an_unreadable_email_is_never_a_no() {
        let on_call = vec![
            jsm("acc-alice", known("alice@example.com")),
            jsm("acc-x", Email::Unknown("HTTP 503".into())),
        ];
        let none = BTreeMap::new();
        let Found::Unknown(reasons) = find("bob@example.com", &on_call, rules(&none, None)) else {
            panic!("not unknown")
        };
        assert!(
            reasons[0].contains("acc-x") && reasons[0].contains("HTTP 503"),
            "{reasons:?}"
        );
        // A match elsewhere still counts, and an accountId entry needs no e-mail.
        assert_eq!(
            rule(&find("alice@example.com", &on_call, rules(&none, None))),
            Some(MatchRule::Username)
        );
        let by_id = entries(&[("x", "acc-x")]);
        assert_eq!(
            rule(&find("x", &on_call, rules(&by_id, None))),
            Some(MatchRule::ExplicitMap)
        );
        // An accountId entry that is not on call is a plain no: no e-mail would change it.
        let absent = entries(&[("y", "acc-y")]);
        assert_eq!(
            find("y", &on_call, rules(&absent, None)),
            Found::No { hidden: vec![] }
        );
        assert!(on_call[1].incomplete() && !on_call[0].incomplete());
    }

    #[test]
    fn opsgenie_users_are_their_emails() {
        let on_call: Vec<OnCallUser> = ["alice@example.com"].into_iter().map(Into::into).collect();
        let none = BTreeMap::new();
        assert_eq!(
            find("ALICE@example.com", &on_call, rules(&none, None)),
            Found::Yes(Match {
                opsgenie_user: "alice@example.com".into(),
                backend_id: "alice@example.com".into(),
                rule: MatchRule::Username
            })
        );
        assert_eq!(on_call[0].shown(), "alice@example.com");
    }
}
