//! Plugin data: read by filter, written by compare-and-swap, and kept after its request is
//! gone (teleport-wire.md §2.9).

use std::collections::BTreeMap;
use std::time::SystemTime;

use prost_types::Timestamp;
use tonic::Status;

use super::{
    access_denied, not_found, Actor, PluginRecord, Store, KIND_ACCESS_REQUEST, KIND_PLUGIN_DATA,
    MAX_PLUGIN_DATA_BYTES, NAMESPACE, PLUGIN_DATA_GRACE, VERSION_V3,
};
use crate::pb::{proto, types};

impl Store {
    fn check_plugin_kind(kind: &str) -> Result<(), Status> {
        if kind == KIND_ACCESS_REQUEST {
            Ok(())
        } else {
            Err(Status::invalid_argument(format!(
                "unsupported resource kind {kind:?} for plugin data"
            )))
        }
    }

    fn plugin_data_resource(id: &str, rec: &PluginRecord) -> types::PluginDataV3 {
        types::PluginDataV3 {
            kind: "plugin_data".to_owned(),
            sub_kind: KIND_ACCESS_REQUEST.to_owned(),
            version: VERSION_V3.to_owned(),
            metadata: Some(types::Metadata {
                name: id.to_owned(),
                namespace: NAMESPACE.to_owned(),
                expires: rec.expires,
                ..Default::default()
            }),
            spec: Some(types::PluginDataSpecV3 {
                entries: rec
                    .entries
                    .iter()
                    .map(|(plugin, data)| {
                        (
                            plugin.clone(),
                            types::PluginDataEntry {
                                data: data.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                            },
                        )
                    })
                    .collect(),
            }),
        }
    }

    /// `GetPluginData`. No match is an empty list, never NotFound.
    pub fn get_plugin_data(
        &self,
        actor: Actor<'_>,
        filter: &types::PluginDataFilter,
    ) -> Result<proto::PluginDataSeq, Status> {
        if self.check_read(actor).is_err() {
            self.check(actor, KIND_PLUGIN_DATA, &["list", "read"])
                .map_err(|_| access_denied("read", KIND_ACCESS_REQUEST))?;
        }
        Self::check_plugin_kind(&filter.kind)?;
        let wanted = |rec: &PluginRecord| {
            filter.plugin.is_empty() || rec.entries.contains_key(&filter.plugin)
        };
        let mut out = Vec::new();
        if filter.resource.is_empty() {
            let mut ids: Vec<&String> = self.plugin_data.keys().collect();
            ids.sort();
            for id in ids {
                if let Some(rec) = self.plugin_data.get(id).filter(|r| wanted(r)) {
                    out.push(Self::plugin_data_resource(id, rec));
                }
            }
        } else if let Some(rec) = self.plugin_data.get(&filter.resource).filter(|r| wanted(r)) {
            out.push(Self::plugin_data_resource(&filter.resource, rec));
        }
        Ok(proto::PluginDataSeq { plugin_data: out })
    }

    /// Direct read of one plugin's entry (test API).
    pub fn plugin_entry(&self, id: &str, plugin: &str) -> Option<BTreeMap<String, String>> {
        self.plugin_data.get(id)?.entries.get(plugin).cloned()
    }

    /// `UpdatePluginData` with compare-and-swap on `expect` (teleport-wire.md §2.9).
    pub fn update_plugin_data(
        &mut self,
        actor: Actor<'_>,
        params: types::PluginDataUpdateParams,
    ) -> Result<(), Status> {
        if self.check(actor, KIND_ACCESS_REQUEST, &["update"]).is_err() {
            self.check(actor, KIND_PLUGIN_DATA, &["update"])?;
        }
        Self::check_plugin_kind(&params.kind)?;
        if params.resource.is_empty() {
            return Err(Status::invalid_argument(
                "plugin data resource name is required",
            ));
        }
        if params.plugin.is_empty() {
            return Err(Status::invalid_argument("plugin name is required"));
        }
        let request_expiry = self
            .requests
            .get(&params.resource)
            .and_then(|r| r.spec.as_ref())
            .and_then(|s| s.expires.as_ref())
            .map(|t| Timestamp {
                seconds: t.seconds.saturating_add(PLUGIN_DATA_GRACE.as_secs() as i64),
                nanos: t.nanos,
            });
        let exists = self.requests.contains_key(&params.resource);
        let current = self.plugin_data.get(&params.resource);
        if current.is_none() && !exists {
            return Err(not_found(&params.resource));
        }
        let entry = current.and_then(|rec| rec.entries.get(&params.plugin));
        // Sorted, so the reported field is deterministic when several mismatch.
        let mut expect: Vec<(&String, &String)> = params.expect.iter().collect();
        expect.sort();
        for (key, want) in expect {
            let have = entry
                .and_then(|e| e.get(key))
                .map(String::as_str)
                .unwrap_or("");
            if have != want {
                return Err(Status::failed_precondition(format!(
                    "expectations not met for field {key:?}"
                )));
            }
        }
        let mut new_entry = entry.cloned().unwrap_or_default();
        let mut newly_set = Vec::new();
        for (k, v) in params.set {
            if v.is_empty() {
                new_entry.remove(&k);
            } else {
                if self.tracked_keys.contains(&k) && !new_entry.contains_key(&k) {
                    newly_set.push(k.clone());
                }
                new_entry.insert(k, v);
            }
        }
        let mut entries = current.map(|r| r.entries.clone()).unwrap_or_default();
        if new_entry.is_empty() {
            entries.remove(&params.plugin);
        } else {
            entries.insert(params.plugin.clone(), new_entry);
        }
        let size: usize = entries
            .iter()
            .map(|(p, d)| p.len() + d.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>())
            .sum();
        if size > MAX_PLUGIN_DATA_BYTES {
            return Err(Status::invalid_argument("plugin data size limit exceeded"));
        }
        let now = SystemTime::now();
        self.first_set.extend(
            newly_set
                .into_iter()
                .map(|k| (params.resource.clone(), k, now)),
        );
        if entries.is_empty() {
            self.plugin_data.remove(&params.resource);
        } else {
            let expires = current.and_then(|r| r.expires).or(request_expiry);
            self.plugin_data
                .insert(params.resource, PluginRecord { entries, expires });
        }
        self.changed.notify_waiters();
        Ok(())
    }
}
