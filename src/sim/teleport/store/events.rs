//! Watch events as Teleport shapes them (teleport-wire.md §7), and the per-kind watch filter.

use std::collections::HashMap;

use tonic::Status;

use super::{request_id, KIND_ACCESS_REQUEST, NAMESPACE, VERSION_V3};
use crate::pb::{proto, types};

/// Events as Teleport shapes them (teleport-wire.md §7).
pub(crate) fn put_event(r: &types::AccessRequestV3) -> proto::Event {
    proto::Event {
        operation: proto::Operation::Put as i32,
        resource: Some(proto::event::Resource::AccessRequest(r.clone())),
    }
}

pub(crate) fn delete_event(id: &str) -> proto::Event {
    proto::Event {
        operation: proto::Operation::Delete as i32,
        resource: Some(proto::event::Resource::ResourceHeader(
            types::ResourceHeader {
                kind: KIND_ACCESS_REQUEST.to_owned(),
                sub_kind: String::new(),
                version: VERSION_V3.to_owned(),
                metadata: Some(types::Metadata {
                    name: id.to_owned(),
                    namespace: NAMESPACE.to_owned(),
                    ..Default::default()
                }),
            },
        )),
    }
}

/// The `id`/`user`/`state` filter of one watched kind. PUTs must match; DELETEs always pass.
#[derive(Debug, Clone, Default)]
pub(crate) struct WatchFilter {
    id: Option<String>,
    user: Option<String>,
    state: Option<i32>,
}

impl WatchFilter {
    /// Parses a `WatchKind.filter` map, rejecting keys Teleport doesn't know.
    pub fn parse(map: &HashMap<String, String>) -> Result<Self, Status> {
        let mut f = WatchFilter::default();
        for (k, v) in map {
            match k.as_str() {
                "id" => f.id = Some(v.clone()),
                "user" => f.user = Some(v.clone()),
                "state" => {
                    let s = types::RequestState::from_str_name(v).ok_or_else(|| {
                        Status::invalid_argument(format!("unknown request state {v:?}"))
                    })?;
                    f.state = Some(s as i32);
                }
                other => {
                    return Err(Status::invalid_argument(format!(
                        "unknown filter key {other:?}"
                    )))
                }
            }
        }
        Ok(f)
    }

    pub fn matches(&self, ev: &proto::Event) -> bool {
        let Some(proto::event::Resource::AccessRequest(r)) = &ev.resource else {
            return true;
        };
        let spec = r.spec.as_ref();
        self.id.as_deref().is_none_or(|id| id == request_id(r))
            && self
                .user
                .as_deref()
                .is_none_or(|u| spec.is_some_and(|s| s.user == u))
            && self
                .state
                .is_none_or(|st| spec.is_some_and(|s| s.state == st))
    }
}
