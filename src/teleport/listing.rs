//! Listing access requests one page at a time.
//!
//! A resync lists every request the cluster has, which can be 100,000 and more. Collecting
//! them before handing them over would make the daemon's memory grow with the backlog (and the
//! allocator would keep it afterwards), so the listing is a stream of pages: the consumer takes
//! a page, hands it over, and only then asks for the next. Nothing is fetched ahead, so at most
//! one page is held here at a time.
//!
//! `ListAccessRequests` pages by itself (`limit`, `start_key`, `next_key`). Servers without it
//! (Teleport 14-15 before the backport) answer UNIMPLEMENTED, and then the `GetAccessRequestsV2`
//! server stream is read item by item and cut into pages of the same size; HTTP/2 flow control
//! holds the rest of that stream at the server while a page is being handed over.

use std::sync::atomic::Ordering;

use futures::stream::{self, LocalBoxStream, StreamExt};
use tracing::warn;

use super::{convert, Operation, TeleportClient, TeleportError, LIST_PAGE_LIMIT};
use crate::core::model::AccessRequest;
use crate::pb;

/// A guard against a server that never ends pagination.
pub(crate) const MAX_LIST_PAGES: usize = 10_000;
/// The same guard for the streamed listing, in items.
const MAX_LISTED: usize = MAX_LIST_PAGES * LIST_PAGE_LIMIT as usize;

/// One item of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    /// Requests as the server listed them (never empty). Entries that cannot be converted are
    /// skipped with a warning.
    Page(Vec<AccessRequest>),
    /// The listing stopped before the server said it was complete (a repeated page key, or a
    /// guard against a runaway server). What was not listed is unknown, not gone. Always the
    /// last item.
    Truncated,
}

/// Where a listing stands between pages. One lives per listing, moved from page to page: boxing
/// the stream would save nothing worth an allocation.
#[allow(clippy::large_enum_variant)]
enum Cursor {
    /// `ListAccessRequests`, at `start_key` after `pages` pages.
    Paged { start_key: String, pages: usize },
    /// The `GetAccessRequestsV2` stream, before it is opened.
    OpenStream,
    /// The open `GetAccessRequestsV2` stream, after `items` items.
    Streamed {
        stream: tonic::Streaming<pb::types::AccessRequestV3>,
        items: usize,
    },
    /// The listing stopped early: say so, then end.
    Truncated,
    /// Nothing more to list.
    Done,
}

impl TeleportClient {
    /// Every access request the server has, a page at a time (see the module docs). The stream
    /// ends after the last page, or with an error (after which it ends too), or with
    /// [`Listed::Truncated`].
    pub fn list_pages(&self) -> LocalBoxStream<'static, Result<Listed, TeleportError>> {
        let start = if self.list_fallback.load(Ordering::Relaxed) {
            Cursor::OpenStream
        } else {
            Cursor::Paged {
                start_key: String::new(),
                pages: 0,
            }
        };
        let client = self.clone();
        stream::unfold((client, start), |(client, cursor)| async move {
            let (item, next) = client.next_page(cursor).await;
            item.map(|item| (item, (client, next)))
        })
        .boxed_local()
    }

    /// All access requests at once. For small listings only (the `request` example, tests):
    /// the resync and the sweep use [`TeleportClient::list_pages`] so as not to hold them all.
    pub async fn list_access_requests(&self) -> Result<Vec<AccessRequest>, TeleportError> {
        let mut out = Vec::new();
        let mut pages = self.list_pages();
        while let Some(item) = pages.next().await {
            if let Listed::Page(page) = item? {
                out.extend(page);
            }
        }
        Ok(out)
    }

    /// The ids of all access requests, for the orphan sweep: a set of ids is a small fraction
    /// of the requests themselves.
    pub async fn list_request_ids(
        &self,
    ) -> Result<std::collections::HashSet<String>, TeleportError> {
        let mut ids = std::collections::HashSet::new();
        let mut pages = self.list_pages();
        while let Some(item) = pages.next().await {
            if let Listed::Page(page) = item? {
                ids.extend(page.into_iter().map(|r| r.id));
            }
        }
        Ok(ids)
    }

    /// The next item from `cursor`, and where the listing stands after it. `None` ends it.
    async fn next_page(
        &self,
        mut cursor: Cursor,
    ) -> (Option<Result<Listed, TeleportError>>, Cursor) {
        loop {
            cursor = match cursor {
                Cursor::Done => return (None, Cursor::Done),
                Cursor::Truncated => return (Some(Ok(Listed::Truncated)), Cursor::Done),
                Cursor::Paged { start_key, pages } => {
                    if pages >= MAX_LIST_PAGES {
                        warn!(
                            pages,
                            "stopped listing access requests after too many pages"
                        );
                        return (Some(Ok(Listed::Truncated)), Cursor::Done);
                    }
                    let page = match self.list_page(start_key.clone(), LIST_PAGE_LIMIT).await {
                        Ok(page) => page,
                        // Only the first page tells an old server; later it is a real failure.
                        Err(TeleportError::Unimplemented { message, .. }) if pages == 0 => {
                            warn!(%message, "ListAccessRequests is not implemented by this server; using GetAccessRequestsV2 from now on");
                            self.list_fallback.store(true, Ordering::Relaxed);
                            cursor = Cursor::OpenStream;
                            continue;
                        }
                        Err(err) => return (Some(Err(err)), Cursor::Done),
                    };
                    let next = if page.next_key.is_empty() {
                        Cursor::Done
                    } else if page.next_key == start_key {
                        // Hand over what came, then say the listing is not complete.
                        warn!(next_key = %page.next_key, "Teleport repeated a page key; stopping the listing");
                        Cursor::Truncated
                    } else {
                        Cursor::Paged {
                            start_key: page.next_key,
                            pages: pages + 1,
                        }
                    };
                    match convert_page(page.access_requests) {
                        Some(items) => return (Some(Ok(Listed::Page(items))), next),
                        // An empty (or wholly unreadable) page that is not the last: go on.
                        None => next,
                    }
                }
                Cursor::OpenStream => match self.open_stream().await {
                    Ok(stream) => Cursor::Streamed { stream, items: 0 },
                    Err(err) => return (Some(Err(err)), Cursor::Done),
                },
                Cursor::Streamed { stream, items } => {
                    return self.next_streamed_page(stream, items).await;
                }
            }
        }
    }

    async fn open_stream(
        &self,
    ) -> Result<tonic::Streaming<pb::types::AccessRequestV3>, TeleportError> {
        let mut inner = self.inner.clone();
        self.unary(
            Operation::ListAccessRequests,
            inner.get_access_requests_v2(pb::types::AccessRequestFilter::default()),
        )
        .await
    }

    /// Up to a page of the `GetAccessRequestsV2` stream. A large cluster streams for longer
    /// than any fixed deadline, so the bound is progress: each next item must arrive within
    /// the call timeout; a stream that stalls fails, one that keeps delivering runs to its end.
    async fn next_streamed_page(
        &self,
        mut stream: tonic::Streaming<pb::types::AccessRequestV3>,
        mut items: usize,
    ) -> (Option<Result<Listed, TeleportError>>, Cursor) {
        let operation = Operation::ListAccessRequests;
        let mut page = Vec::new();
        while page.len() < LIST_PAGE_LIMIT as usize {
            if items >= MAX_LISTED {
                warn!(
                    items,
                    "stopped listing access requests after too many items"
                );
                return if page.is_empty() {
                    (Some(Ok(Listed::Truncated)), Cursor::Done)
                } else {
                    // Hand over what came, then say the listing is not complete.
                    (Some(Ok(Listed::Page(page))), Cursor::Truncated)
                };
            }
            let next = tokio::time::timeout(self.call_timeout, stream.message()).await;
            match next {
                Err(_) => {
                    let err = TeleportError::Timeout {
                        operation,
                        after: self.call_timeout,
                    };
                    return (Some(Err(err)), Cursor::Done);
                }
                Ok(Err(status)) => {
                    let err = TeleportError::from_status(operation, status);
                    return (Some(Err(err)), Cursor::Done);
                }
                Ok(Ok(None)) => {
                    return if page.is_empty() {
                        (None, Cursor::Done)
                    } else {
                        (Some(Ok(Listed::Page(page))), Cursor::Done)
                    };
                }
                Ok(Ok(Some(item))) => {
                    items += 1;
                    page.extend(convert_or_warn(item));
                }
            }
        }
        (
            Some(Ok(Listed::Page(page))),
            Cursor::Streamed { stream, items },
        )
    }
}

/// The readable requests of a page, or `None` if there are none.
fn convert_page(items: Vec<pb::types::AccessRequestV3>) -> Option<Vec<AccessRequest>> {
    let page: Vec<AccessRequest> = items.into_iter().filter_map(convert_or_warn).collect();
    (!page.is_empty()).then_some(page)
}

fn convert_or_warn(pb: pb::types::AccessRequestV3) -> Option<AccessRequest> {
    let name = pb
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    match convert::access_request_from_pb(pb) {
        Ok(request) => Some(request),
        Err(error) => {
            warn!(id = %name, %error, "skipping an access request that cannot be read");
            None
        }
    }
}
