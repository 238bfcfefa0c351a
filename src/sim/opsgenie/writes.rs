//! Asynchronous writes: create, add note, close, acknowledge. Each answers 202 and is applied
//! when its processing time comes.

use serde_json::json;
use tokio::time::Instant;

use super::ctx::{body_object, Ctx};
use super::params::id_kind;
use super::reply::Reply;
use super::state::{Action, IdKind, Pending};
use super::{lock, validate};

/// Queues work and answers 202; with a zero delay it is applied before answering.
pub(super) fn enqueue(ctx: &Ctx<'_>, target: Option<(String, IdKind)>, action: Action) -> Reply {
    let inner = ctx.inner;
    let now = Instant::now();
    let delay = *lock(&inner.processing_delay);
    if ctx.discard {
        // An injected fault: the answer goes out, the write never happens.
        return Reply::accepted("Request will be processed");
    }
    let mut st = lock(&inner.state);
    st.requests.insert(ctx.request_id.to_owned(), None);
    st.pending.push_back(Pending {
        request_id: ctx.request_id.to_owned(),
        ready_at: now + delay,
        target,
        action,
        fail_with: ctx.fail_with.clone(),
    });
    st.process_due(now);
    drop(st);
    inner.work.notify_one();
    inner.changed.notify_waiters();
    Reply::accepted("Request will be processed")
}

pub(super) fn create_alert(ctx: &Ctx<'_>) -> Reply {
    let empty = json!({});
    let body = match body_object(ctx, &empty) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match validate::create(body) {
        Ok(mut payload) => {
            // Opsgenie's default source is the caller's IP address.
            payload.source.get_or_insert_with(|| ctx.peer.to_string());
            enqueue(ctx, None, Action::Create(Box::new(payload)))
        }
        Err(errors) => Reply::unprocessable(errors),
    }
}

pub(super) fn alert_action(ctx: &Ctx<'_>, ident: &str, what: &str) -> Reply {
    let kind = match id_kind(ctx, "identifierType") {
        Ok(k) => k,
        Err(r) => return r,
    };
    let empty = json!({});
    let body = match body_object(ctx, &empty) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let payload = match validate::action(body, what == "notes") {
        Ok(p) => p,
        Err(errors) => return Reply::unprocessable(errors),
    };
    let action = match what {
        "notes" => Action::AddNote(payload),
        "close" => Action::Close(payload),
        _ => Action::Acknowledge(payload),
    };
    enqueue(ctx, Some((ident.to_owned(), kind)), action)
}
