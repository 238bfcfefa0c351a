//! The on-call lookup behind [`OnCallCache`](super::oncall::OnCallCache) on JSM Operations. JSM's
//! REST API takes schedule ids only and answers accountIds, so one lookup is:
//!
//! 1. the schedule's id: a UUID is taken as an id; a name is resolved with `FindSchedule` once
//!    and remembered (ids do not change; a name not found is not remembered);
//! 2. `OnCall` with `flat=true`: the accountIds on call;
//! 3. each accountId's e-mail from Jira's user API (`GetUser`), remembered for
//!    [`EMAIL_TTL`]: visible, or hidden by the user's profile. A user whose e-mail cannot be
//!    read is reported as such ([`Email::Unknown`]), never dropped: the policy then treats "not
//!    on call" as unknown, and the cache does not keep the answer.
//!
//! Every call goes through the gateway. A schedule name that matches none is a permanent 404,
//! as Opsgenie answers for an unknown schedule, so the decline names it and is not retried.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use futures::future::{FutureExt, LocalBoxFuture};
use tokio::time::Instant;

use super::gateway::{GatewayError, GatewayHandle};
use super::oncall::Lookup;
use super::timelines::TimelineLookup;
use crate::backend::{Operation, Outcome};
use crate::core::oncall_user::{Email, OnCallUser};
use crate::core::policy::is_schedule_id;

/// How long a user's e-mail (or its being hidden) is reused.
pub const EMAIL_TTL: Duration = Duration::from_secs(3600);

/// Most schedule names and users remembered; past it the oldest half is forgotten.
pub const MAX_REMEMBERED: usize = 4096;

/// One backend call, as the lookup makes it (the gateway's handle in the daemon).
pub type Call = Rc<dyn Fn(Operation) -> LocalBoxFuture<'static, Result<Outcome, GatewayError>>>;

#[derive(Default)]
struct Memory {
    /// Lower-cased schedule name → id.
    schedules: HashMap<String, String>,
    /// accountId → (display name, e-mail or hidden, when read).
    users: HashMap<String, (String, Email, Instant)>,
}

/// The JSM lookup through the gateway.
pub fn jsm_on_call_lookup(gateway: GatewayHandle) -> Lookup {
    let call: Call = Rc::new(move |op| {
        let gateway = gateway.clone();
        async move { gateway.call(op).await }.boxed_local()
    });
    lookup_with(call)
}

/// The timeline lookup behind the
/// [`TimelineCache`](super::timelines::TimelineCache) on JSM: the schedule's id (resolved like
/// [`jsm_on_call_lookup`]'s, with its own memory), then `ScheduleTimeline` by id. Its periods
/// name people by accountId, as the on-call answer does, so the requester's accountId is who
/// the shift end is looked up for.
pub fn jsm_timeline_lookup(gateway: GatewayHandle) -> TimelineLookup {
    let call: Call = Rc::new(move |op| {
        let gateway = gateway.clone();
        async move { gateway.call(op).await }.boxed_local()
    });
    timeline_lookup_with(call)
}

/// The JSM timeline lookup through `call`.
pub fn timeline_lookup_with(call: Call) -> TimelineLookup {
    let memory = Rc::new(RefCell::new(Memory::default()));
    Rc::new(move |schedule: String, date: SystemTime| {
        let (call, memory) = (Rc::clone(&call), Rc::clone(&memory));
        async move {
            let schedule = schedule_id(&call, &memory, &schedule).await?;
            match call(Operation::ScheduleTimeline { schedule, date }).await? {
                Outcome::Timeline(timeline) => Ok(timeline),
                other => Err(unexpected("schedule_timeline", &other)),
            }
        }
        .boxed_local()
    })
}

/// The JSM lookup through `call`.
pub fn lookup_with(call: Call) -> Lookup {
    let memory = Rc::new(RefCell::new(Memory::default()));
    Rc::new(move |schedule: String| {
        let (call, memory) = (Rc::clone(&call), Rc::clone(&memory));
        async move { look_up(&call, &memory, &schedule).await }.boxed_local()
    })
}

fn unexpected(endpoint: &'static str, outcome: &Outcome) -> GatewayError {
    GatewayError::Permanent {
        status: None,
        endpoint,
        message: format!("unexpected answer {outcome:?}"),
        hint: "check `opsgenie.backend` and `opsgenie.jsm.rest_url`".into(),
    }
}

async fn schedule_id(
    call: &Call,
    memory: &RefCell<Memory>,
    schedule: &str,
) -> Result<String, GatewayError> {
    let schedule = schedule.trim();
    if is_schedule_id(schedule) {
        return Ok(schedule.to_owned());
    }
    let key = schedule.to_lowercase();
    if let Some(id) = memory.borrow().schedules.get(&key) {
        return Ok(id.clone());
    }
    let op = Operation::FindSchedule {
        name: schedule.to_owned(),
    };
    match call(op).await? {
        Outcome::Schedule(Some(id)) => {
            let mut m = memory.borrow_mut();
            if m.schedules.len() >= MAX_REMEMBERED {
                m.schedules.clear();
            }
            m.schedules.insert(key, id.clone());
            Ok(id)
        }
        Outcome::Schedule(None) => Err(GatewayError::Permanent {
            status: Some(404),
            endpoint: "find_schedule",
            message: format!("JSM Operations has no schedule named \"{schedule}\""),
            hint: "check the name in the `teleport.dev/schedules` annotation or `auto_approval.default_schedules` (the account must be allowed to see the schedule), or give the schedule's id".into(),
        }),
        other => Err(unexpected("find_schedule", &other)),
    }
}

async fn user(call: &Call, memory: &RefCell<Memory>, account_id: &str) -> OnCallUser {
    let now = Instant::now();
    let known = memory
        .borrow()
        .users
        .get(account_id)
        .filter(|(_, _, at)| now.duration_since(*at) < EMAIL_TTL)
        .map(|(name, email, _)| (name.clone(), email.clone()));
    if let Some((display_name, email)) = known {
        return OnCallUser {
            id: account_id.to_owned(),
            email,
            display_name,
        };
    }
    let op = Operation::GetUser {
        account_id: account_id.to_owned(),
    };
    let (display_name, email) = match call(op).await {
        Ok(Outcome::User {
            display_name,
            email,
            ..
        }) => {
            let email = email.map_or(Email::Hidden, Email::Known);
            let mut m = memory.borrow_mut();
            if m.users.len() >= MAX_REMEMBERED {
                m.users
                    .retain(|_, (_, _, at)| now.duration_since(*at) < EMAIL_TTL / 2);
            }
            m.users.insert(
                account_id.to_owned(),
                (display_name.clone(), email.clone(), now),
            );
            (display_name, email)
        }
        Ok(other) => (
            String::new(),
            Email::Unknown(unexpected("get_user", &other).to_string()),
        ),
        Err(err) => (String::new(), Email::Unknown(err.to_string())),
    };
    OnCallUser {
        id: account_id.to_owned(),
        email,
        display_name,
    }
}

async fn look_up(
    call: &Call,
    memory: &RefCell<Memory>,
    schedule: &str,
) -> Result<Vec<OnCallUser>, GatewayError> {
    let id = schedule_id(call, memory, schedule).await?;
    let account_ids = match call(Operation::OnCall { schedule: id }).await? {
        Outcome::OnCall(ids) => ids,
        other => return Err(unexpected("on_call", &other)),
    };
    let mut users = Vec::with_capacity(account_ids.len());
    for account_id in account_ids {
        users.push(user(call, memory, &account_id).await);
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A scripted backend: schedule "SRE" is s-1, on call acc-a (visible) and acc-b (hidden);
    /// acc-c's user lookup fails.
    fn backend(calls: Rc<RefCell<Vec<String>>>, on_call: Rc<RefCell<Vec<String>>>) -> Call {
        Rc::new(move |op: Operation| {
            calls.borrow_mut().push(op.endpoint().to_owned());
            let answer = match op {
                Operation::FindSchedule { name } if name.eq_ignore_ascii_case("sre") => {
                    Ok(Outcome::Schedule(Some("s-1".into())))
                }
                Operation::FindSchedule { .. } => Ok(Outcome::Schedule(None)),
                Operation::OnCall { schedule } => {
                    assert!(schedule == "s-1" || is_schedule_id(&schedule), "{schedule}");
                    Ok(Outcome::OnCall(on_call.borrow().clone()))
                }
                Operation::GetUser { account_id } if account_id == "acc-c" => {
                    Err(GatewayError::Exhausted {
                        endpoint: "get_user",
                        attempts: 5,
                        last: "HTTP 503".into(),
                    })
                }
                Operation::GetUser { account_id } => Ok(Outcome::User {
                    email: (account_id == "acc-a").then(|| "a@example.com".to_owned()),
                    display_name: format!("User {account_id}"),
                    account_id,
                }),
                other => panic!("unexpected {other:?}"),
            };
            async move { answer }.boxed_local()
        })
    }

    #[actix_rt::test]
    async fn names_resolve_once_users_are_remembered_and_failures_are_marked() {
        tokio::time::pause();
        let calls = Rc::new(RefCell::new(Vec::new()));
        let on_call = Rc::new(RefCell::new(vec!["acc-a".to_owned(), "acc-b".to_owned()]));
        let lookup = lookup_with(backend(Rc::clone(&calls), Rc::clone(&on_call)));

        let users = lookup("SRE".into()).await.unwrap();
        assert_eq!(users[0].email, Email::Known("a@example.com".into()));
        assert_eq!(users[1].email, Email::Hidden);
        assert_eq!(users[1].display_name, "User acc-b");
        assert_eq!(
            *calls.borrow(),
            ["find_schedule", "on_call", "get_user", "get_user"]
        );

        // Again (any case): the id and both users are remembered; only the on-calls are asked.
        calls.borrow_mut().clear();
        lookup("sre".into()).await.unwrap();
        assert_eq!(*calls.borrow(), ["on_call"]);

        // A failed user lookup is marked, never dropped, and not remembered.
        on_call.borrow_mut().push("acc-c".into());
        let users = lookup("SRE".into()).await.unwrap();
        assert!(users[2].incomplete(), "{:?}", users[2]);
        calls.borrow_mut().clear();
        lookup("SRE".into()).await.unwrap();
        assert_eq!(*calls.borrow(), ["on_call", "get_user"]);

        // After the TTL, e-mails are read again.
        tokio::time::advance(EMAIL_TTL).await;
        calls.borrow_mut().clear();
        lookup("SRE".into()).await.unwrap();
        assert_eq!(
            calls.borrow().iter().filter(|c| *c == "get_user").count(),
            3
        );
    }

    #[actix_rt::test]
    async fn ids_are_used_as_they_are_and_unknown_names_are_permanent_404s() {
        let calls = Rc::new(RefCell::new(Vec::new()));
        let on_call = Rc::new(RefCell::new(vec![]));
        let lookup = lookup_with(backend(Rc::clone(&calls), on_call));
        let id = "6c2b7a4e-27a9-4a8e-9a8c-3f0b3b4f3f2a";
        assert!(lookup(id.into()).await.unwrap().is_empty());
        assert_eq!(*calls.borrow(), ["on_call"]);
        let err = lookup("Nope".into()).await.unwrap_err();
        assert!(
            matches!(
                &err,
                GatewayError::Permanent {
                    status: Some(404),
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("\"Nope\""), "{err}");
        // Not remembered: asked again next time.
        let n = Cell::new(calls.borrow().len());
        let _ = lookup("Nope".into()).await;
        n.set(calls.borrow().len() - n.get());
        assert_eq!(n.get(), 1);
    }
}
