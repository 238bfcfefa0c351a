//! The resync handover: how the event stream gives the registry the listing it makes after
//! every (re)connect, a page at a time, and how the registry tells what disappeared while the
//! watch was down.
//!
//! The event stream sends [`Resync::Begin`], then one [`Resync::Page`] per page of the listing,
//! then [`Resync::End`], each with `send` and awaiting the answer. The registry answers a page
//! only once its queue of waiting requests has room again, so the listing is read no faster
//! than requests are handled, and memory holds a page or two, whatever the backlog's size.
//!
//! What disappeared: a request the registry is working on (an actor, or a snapshot waiting for
//! one) when the listing begins, and that the whole listing does not contain, was deleted while
//! the watch was down: its deletion event is lost for good. The registry hands such requests
//! to their actors as [`Snapshot::Gone`], as the deletion event would have done. Only ids the
//! registry holds are compared (never a set of everything listed), so this costs memory in
//! proportion to the work in hand, not to the backlog. A listing that stopped early (see
//! [`crate::teleport::client::Listed::Truncated`]) proves nothing, and then nothing is handed
//! over as gone. Requests nobody was working on are the orphan sweep's
//! ([`crate::pipeline::sweep`]): it closes the alerts of requests that no longer exist.
//!
//! [`Snapshot::Gone`]: crate::core::model::Snapshot::Gone

use std::collections::HashSet;

use actix::prelude::*;

use crate::core::model::AccessRequest;

/// One part of a resync, in order: `Begin`, any number of `Page`s, `End`. A new `Begin` drops
/// whatever a resync that never ended had gathered.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub enum Resync {
    /// A listing begins.
    Begin,
    /// Requests as listed. Answered once the registry has room for more.
    Page(Vec<AccessRequest>),
    /// The listing ended. `complete`: it reached the server's last page, so a request it did
    /// not contain no longer exists.
    End {
        /// Whether the listing ran to its end.
        complete: bool,
    },
}

/// The ids the registry held when a listing began and has not seen listed since: at the
/// listing's end, the requests that disappeared.
#[derive(Debug, Default)]
pub struct Unlisted {
    ids: Option<HashSet<String>>,
}

impl Unlisted {
    /// A listing begins while the registry holds `known`.
    pub fn begin<'a>(&mut self, known: impl IntoIterator<Item = &'a String>) {
        self.ids = Some(known.into_iter().cloned().collect());
    }

    /// `id` was listed, or was heard of otherwise (it exists, or its fate is known).
    pub fn seen(&mut self, id: &str) {
        if let Some(ids) = &mut self.ids {
            ids.remove(id);
        }
    }

    /// The listing ended: the ids to hand over as gone (none if it was not `complete`, or if
    /// no listing had begun). Ends the tracking either way.
    pub fn end(&mut self, complete: bool) -> Vec<String> {
        let ids = self.ids.take().unwrap_or_default();
        if !complete {
            return Vec::new();
        }
        let mut ids: Vec<String> = ids.into_iter().collect();
        // A stable order for the log and for tests.
        ids.sort_unstable();
        ids
    }

    /// Whether a listing is in progress.
    pub fn in_progress(&self) -> bool {
        self.ids.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn what_was_held_and_not_listed_is_gone_after_a_complete_listing() {
        let mut unlisted = Unlisted::default();
        unlisted.begin(&known(&["a", "b", "c"]));
        assert!(unlisted.in_progress());
        unlisted.seen("b");
        unlisted.seen("x"); // listed, but not held: nothing to do
        assert_eq!(unlisted.end(true), known(&["a", "c"]));
        assert!(!unlisted.in_progress());
        // Ended: a second end hands nothing over.
        assert_eq!(unlisted.end(true), Vec::<String>::new());
    }

    #[test]
    fn a_truncated_listing_proves_nothing() {
        let mut unlisted = Unlisted::default();
        unlisted.begin(&known(&["a", "b"]));
        unlisted.seen("a");
        assert_eq!(unlisted.end(false), Vec::<String>::new());
        assert!(!unlisted.in_progress());
    }

    #[test]
    fn a_new_listing_starts_over_and_nothing_is_tracked_outside_one() {
        let mut unlisted = Unlisted::default();
        unlisted.seen("a");
        assert_eq!(unlisted.end(true), Vec::<String>::new());
        unlisted.begin(&known(&["a"]));
        // The first listing failed half way; the next one begins with what is held now.
        unlisted.begin(&known(&["b"]));
        assert_eq!(unlisted.end(true), known(&["b"]));
    }
}
