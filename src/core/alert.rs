//! What an alert says, as the backends send it: the create body and its responders. Plain data
//! (serde only), produced by [`super::render`] and sent by the backends' codecs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The JSON body of an alert creation, within Opsgenie's documented limits
/// ([`super::render`] guarantees them). Lengths are in UTF-16 code units, as Opsgenie (a Java
/// service) counts them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertPayload {
    /// At most 130 units.
    pub message: String,
    /// `teleport-access-request/<id>`; the backend de-duplicates open alerts on it.
    pub alias: String,
    /// At most 15,000 units.
    pub description: String,
    /// At most 50.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub responders: Vec<Responder>,
    /// At most 20 tags of at most 50 units.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// String to string, at most 8,000 units in all.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    /// At most 512 units.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub entity: String,
    /// At most 100 units.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// `P1` to `P5`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub priority: String,
}

/// Who an alert notifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Responder {
    /// `schedule`, `team`, `escalation` or `user`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Set when the configured value is a UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Set otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}
