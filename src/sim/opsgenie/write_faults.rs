//! Faults of asynchronous writes: answers a client cannot read, and requests that fail after
//! they were accepted.
//!
//! Opsgenie accepts a create, note, close or acknowledge with 202 and only its request status
//! says whether it worked; and any 2xx may reach the client mangled (a proxy's HTML page, a body
//! cut short). These knobs produce both, scripted (the next `n` writes) or at a seeded random
//! rate, so a client's handling of "maybe done" can be tested.

use std::collections::VecDeque;

use rand::rngs::StdRng;
use rand::Rng;

/// An alert write, for knobs that apply to one kind only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// `POST /v2/alerts`.
    Create,
    /// `POST /v2/alerts/{id}/notes`.
    AddNote,
    /// `POST /v2/alerts/{id}/close`.
    Close,
    /// `POST /v2/alerts/{id}/acknowledge`.
    Acknowledge,
}

/// A 2xx answer whose body the client cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Garble {
    /// 200 with a `text/html` page, as a proxy or captive portal answers.
    Html,
    /// 202, `application/json`, but the body is JSON cut short.
    InvalidJson,
    /// 202 with an empty body.
    Empty,
    /// 202 with a JSON body that has no `requestId`.
    NoRequestId,
}

impl Garble {
    const ALL: [Garble; 4] = [
        Garble::Html,
        Garble::InvalidJson,
        Garble::Empty,
        Garble::NoRequestId,
    ];

    /// A short name for the call log.
    pub fn as_str(self) -> &'static str {
        match self {
            Garble::Html => "html",
            Garble::InvalidJson => "invalid json",
            Garble::Empty => "empty body",
            Garble::NoRequestId => "no requestId",
        }
    }

    /// Status, content type and body of the mangled answer.
    pub(super) fn answer(self) -> (u16, &'static str, &'static str) {
        match self {
            Garble::Html => (
                200,
                "text/html; charset=utf-8",
                "<html><head><title>Gateway</title></head><body><h1>Please wait</h1></body></html>",
            ),
            Garble::InvalidJson => (
                202,
                "application/json",
                r#"{"result":"Request will be processed","took":0.0,"requestId":"#,
            ),
            Garble::Empty => (202, "application/json", ""),
            Garble::NoRequestId => (
                202,
                "application/json",
                r#"{"result":"Request will be processed","took":0.001}"#,
            ),
        }
    }
}

/// What happens to one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum WriteFault {
    /// Accepted with a normal 202; when processed, its status is `isSuccess:false` with this
    /// text and nothing changes.
    FailAfterAccept(String),
    /// The answer is mangled; `applied` says whether the write still takes effect.
    Garble { garble: Garble, applied: bool },
}

impl WriteFault {
    /// How the call log names it.
    pub(super) fn describe(&self) -> String {
        match self {
            WriteFault::FailAfterAccept(status) => format!("fails after acceptance: {status}"),
            WriteFault::Garble { garble, applied } => format!(
                "garbled answer ({}), {}",
                garble.as_str(),
                if *applied { "applied" } else { "not applied" }
            ),
        }
    }
}

/// The status text of failures injected at a rate.
pub const INJECTED_FAILURE_STATUS: &str = "Could not process the request (injected failure)";

#[derive(Debug)]
struct Scripted {
    only: Option<Write>,
    remaining: usize,
    fault: WriteFault,
}

/// The write-fault knobs' state (behind the [`super::Faults`] mutex).
#[derive(Debug, Default)]
pub(super) struct WriteFaults {
    scripted: VecDeque<Scripted>,
    garble_rate: f64,
    failure_rate: f64,
}

/// A fault taken for one write; `scripted` ones are given back if the write is refused.
#[derive(Debug)]
pub(super) struct Taken {
    pub fault: WriteFault,
    pub(super) scripted_for: Option<Option<Write>>,
}

fn clamp(rate: f64) -> f64 {
    if rate.is_nan() {
        0.0
    } else {
        rate.clamp(0.0, 1.0)
    }
}

impl WriteFaults {
    pub(super) fn script(&mut self, only: Option<Write>, n: usize, fault: WriteFault) {
        if n > 0 {
            self.scripted.push_back(Scripted {
                only,
                remaining: n,
                fault,
            });
        }
    }

    pub(super) fn set_garble_rate(&mut self, rate: f64) {
        self.garble_rate = clamp(rate);
    }

    pub(super) fn set_failure_rate(&mut self, rate: f64) {
        self.failure_rate = clamp(rate);
    }

    pub(super) fn clear(&mut self) {
        *self = WriteFaults::default();
    }

    /// The fault for this write, if any: scripted ones first (oldest first), then the rates.
    pub(super) fn take(&mut self, write: Write, rng: &mut StdRng) -> Option<Taken> {
        if let Some(i) = self
            .scripted
            .iter()
            .position(|s| s.only.is_none_or(|w| w == write))
        {
            let s = &mut self.scripted[i];
            s.remaining -= 1;
            let taken = Taken {
                fault: s.fault.clone(),
                scripted_for: Some(s.only),
            };
            if s.remaining == 0 {
                self.scripted.remove(i);
            }
            return Some(taken);
        }
        if self.garble_rate > 0.0 && rng.random::<f64>() < self.garble_rate {
            let garble = Garble::ALL[rng.random_range(0..Garble::ALL.len())];
            let applied = rng.random::<bool>();
            return Some(Taken {
                fault: WriteFault::Garble { garble, applied },
                scripted_for: None,
            });
        }
        if self.failure_rate > 0.0 && rng.random::<f64>() < self.failure_rate {
            return Some(Taken {
                fault: WriteFault::FailAfterAccept(INJECTED_FAILURE_STATUS.to_owned()),
                scripted_for: None,
            });
        }
        None
    }

    /// Puts back a scripted fault whose write was refused (4xx, 429…), so "the next `n`
    /// writes" means writes that were accepted.
    pub(super) fn give_back(&mut self, taken: Taken) {
        if let Some(only) = taken.scripted_for {
            self.scripted.push_front(Scripted {
                only,
                remaining: 1,
                fault: taken.fault,
            });
        }
    }
}
