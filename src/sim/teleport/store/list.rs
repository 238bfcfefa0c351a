//! Listing requests: `ListAccessRequests` (filtered, sorted, paginated) and the older
//! `GetAccessRequestsV2` (every match at once).

use std::ops::Bound;

use tonic::Status;

use super::{created_key, filter_matches, Actor, OrderKey, Store};
use crate::pb::{proto, types};

impl Store {
    fn page_limit(&self, limit: i32) -> usize {
        let want = usize::try_from(limit).unwrap_or(0);
        let want = if want == 0 {
            self.limits.default_page
        } else {
            want
        };
        want.clamp(1, self.limits.max_page.max(1))
    }

    /// `ListAccessRequests`: filtered, sorted, paginated.
    pub fn list(
        &self,
        actor: Actor<'_>,
        req: &proto::ListAccessRequestsRequest,
    ) -> Result<proto::ListAccessRequestsResponse, Status> {
        self.check_read(actor)?;
        let filter = req.filter.clone().unwrap_or_default();
        let limit = self.page_limit(req.limit);
        let sort = proto::AccessRequestSort::try_from(req.sort)
            .unwrap_or(proto::AccessRequestSort::SortDefault);
        if matches!(
            sort,
            proto::AccessRequestSort::SortDefault | proto::AccessRequestSort::Created
        ) {
            return self.list_by_created(&filter, req.descending, limit, &req.start_key);
        }
        // Rare sorts: materialise and sort; the start key is an offset into that order.
        let mut all: Vec<&types::AccessRequestV3> = self
            .requests
            .values()
            .filter(|r| filter_matches(&filter, r))
            .collect();
        all.sort_by(|a, b| {
            let (sa, sb) = (a.spec.as_ref(), b.spec.as_ref());
            let primary = match sort {
                proto::AccessRequestSort::State => sa.map(|s| s.state).cmp(&sb.map(|s| s.state)),
                _ => sa.map(|s| &s.user).cmp(&sb.map(|s| &s.user)),
            };
            primary.then_with(|| created_key(a).cmp(&created_key(b)))
        });
        if req.descending {
            all.reverse();
        }
        let start = if req.start_key.is_empty() {
            0
        } else {
            req.start_key
                .strip_prefix('@')
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| Status::invalid_argument("invalid start key"))?
        };
        let page: Vec<types::AccessRequestV3> = all
            .iter()
            .skip(start)
            .take(limit)
            .map(|r| (*r).clone())
            .collect();
        let next_key = if start + page.len() < all.len() {
            format!("@{}", start + page.len())
        } else {
            String::new()
        };
        Ok(proto::ListAccessRequestsResponse {
            access_requests: page,
            next_key,
        })
    }

    fn parse_start_key(&self, key: &str) -> Result<Option<OrderKey>, Status> {
        if key.is_empty() {
            return Ok(None);
        }
        if let Some((nanos, id)) = key.split_once('/') {
            if let Ok(n) = nanos.parse::<i128>() {
                return Ok(Some((n, id.to_owned())));
            }
        }
        // Also accept a bare request id, as long as it still exists.
        match self.requests.get(key) {
            Some(r) => Ok(Some(created_key(r))),
            None => Err(Status::invalid_argument(format!(
                "invalid start key {key:?}"
            ))),
        }
    }

    fn list_by_created(
        &self,
        filter: &types::AccessRequestFilter,
        descending: bool,
        limit: usize,
        start_key: &str,
    ) -> Result<proto::ListAccessRequestsResponse, Status> {
        let start = self.parse_start_key(start_key)?;
        let iter: Box<dyn Iterator<Item = &OrderKey>> = match (&start, descending) {
            (None, false) => Box::new(self.order.iter()),
            (None, true) => Box::new(self.order.iter().rev()),
            (Some(k), false) => Box::new(self.order.range((Bound::Included(k), Bound::Unbounded))),
            (Some(k), true) => Box::new(
                self.order
                    .range((Bound::Unbounded, Bound::Included(k)))
                    .rev(),
            ),
        };
        let mut page = Vec::with_capacity(limit.min(1024));
        let mut next_key = String::new();
        for key in iter {
            let Some(r) = self.requests.get(&key.1) else {
                continue;
            };
            if !filter_matches(filter, r) {
                continue;
            }
            if page.len() == limit {
                next_key = format!("{}/{}", key.0, key.1);
                break;
            }
            page.push(r.clone());
        }
        Ok(proto::ListAccessRequestsResponse {
            access_requests: page,
            next_key,
        })
    }

    /// `GetAccessRequestsV2`: every match, in created order.
    pub fn get_all(
        &self,
        actor: Actor<'_>,
        filter: &types::AccessRequestFilter,
    ) -> Result<Vec<types::AccessRequestV3>, Status> {
        self.check_read(actor)?;
        if !filter.id.is_empty() {
            return Ok(self
                .requests
                .get(&filter.id)
                .filter(|r| filter_matches(filter, r))
                .cloned()
                .into_iter()
                .collect());
        }
        Ok(self
            .order
            .iter()
            .filter_map(|(_, id)| self.requests.get(id))
            .filter(|r| filter_matches(filter, r))
            .cloned()
            .collect())
    }
}
