//! Where each API of a backend is and which credential it takes ([`Api`]): Opsgenie's or
//! JSM's Integration Events host with the GenieKey, JSM's REST API under the site's cloudId
//! and Jira's user API with the account's Basic credential, the site's tenant info with none.
//! The cloudId is configured or looked up once, through the client's own `call`.

use http::header::HeaderValue;

use super::{GatewayClient, GatewayError};
use crate::backend::{Api, Operation, Outcome};
use crate::config::{OpsgenieConfig, ATLASSIAN_API_URL};

/// Where JSM's REST and user APIs are, and the credential they take.
pub(super) struct RestRoute {
    /// `opsgenie.jsm.rest_url`, without the cloudId.
    pub(super) rest_base: String,
    /// The site's URL, if a site is set (user API and tenant info).
    site: Option<String>,
    /// `Basic base64(email:token)`, marked sensitive.
    auth: HeaderValue,
    /// The cloudId: configured, or looked up once from the site.
    cloud_id: tokio::sync::OnceCell<String>,
}

impl GatewayClient {
    /// The cloudId of the JSM site: the configured one, else looked up once from the site's
    /// `/_edge/tenant_info` (through [`GatewayClient::call`], so under the same limits).
    pub(super) async fn cloud_id(&self) -> Result<String, GatewayError> {
        let Some(rest) = &self.inner.rest else {
            return Err(no_rest());
        };
        let id = rest
            .cloud_id
            .get_or_try_init(|| async {
                // Boxed: `call` may come back here for the REST call that needed it.
                match Box::pin(self.call(Operation::TenantInfo)).await? {
                    Outcome::CloudId(id) => Ok(id),
                    other => Err(GatewayError::Permanent {
                        status: None,
                        endpoint: "tenant_info",
                        message: format!("unexpected answer {other:?}"),
                        hint: "set `opsgenie.jsm.cloud_id`".into(),
                    }),
                }
            })
            .await?;
        Ok(id.clone())
    }

    /// The cloudId, looking it up if need be (`check` reports it).
    pub async fn jsm_cloud_id(&self) -> Result<String, GatewayError> {
        self.cloud_id().await
    }

    /// The base URL and credential of `api`.
    pub(super) async fn route(
        &self,
        api: Api,
    ) -> Result<(String, Option<HeaderValue>), GatewayError> {
        let inner = &*self.inner;
        let rest = || inner.rest.as_ref().ok_or_else(no_rest);
        Ok(match api {
            Api::Primary => (inner.base_url.clone(), Some(inner.genie_auth.clone())),
            Api::TenantInfo => match &rest()?.site {
                Some(site) => (site.clone(), None),
                None => {
                    return Err(GatewayError::Config(
                        "the cloudId cannot be looked up without `opsgenie.jsm.site`".into(),
                    ))
                }
            },
            Api::JsmRest => {
                let rest = rest()?;
                let cloud = self.cloud_id().await?;
                (
                    format!("{}/{cloud}", rest.rest_base),
                    Some(rest.auth.clone()),
                )
            }
            Api::JiraUsers => match &rest()?.site {
                Some(site) => (site.clone(), Some(rest()?.auth.clone())),
                None => {
                    let rest = rest()?;
                    let cloud = self.cloud_id().await?;
                    (
                        format!("{}/ex/jira/{cloud}", origin(&rest.rest_base)),
                        Some(rest.auth.clone()),
                    )
                }
            },
        })
    }
}

/// The REST route of a `backend: jsm` configuration; which key is missing, if any.
pub(super) fn rest_route(cfg: &OpsgenieConfig) -> Result<RestRoute, GatewayError> {
    let j = &cfg.jsm;
    let missing = |key: &str| {
        GatewayError::Config(format!(
            "`backend: jsm` needs `{key}` (the JSM Operations REST API's credential and site)"
        ))
    };
    let email = j
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .ok_or_else(|| missing("opsgenie.jsm.email"))?;
    let token = j
        .api_token
        .as_ref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| missing("opsgenie.jsm.api_token_file"))?;
    let site = j.site_url();
    let cloud_id = j
        .cloud_id
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    if site.is_none() && cloud_id.is_none() {
        return Err(missing("opsgenie.jsm.site` or `opsgenie.jsm.cloud_id"));
    }
    let rest_base = j.rest_base();
    if !url::Url::parse(&rest_base).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
        return Err(GatewayError::Config(
            "`opsgenie.jsm.rest_url` must be an http or https URL".into(),
        ));
    }
    use base64::Engine as _;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{email}:{}", token.expose()));
    let mut auth = HeaderValue::try_from(format!("Basic {basic}")).map_err(|_| {
        GatewayError::Config("the JSM credential cannot be sent in a header".into())
    })?;
    auth.set_sensitive(true);
    let once = tokio::sync::OnceCell::new();
    if let Some(id) = cloud_id {
        let _ = once.set(id.to_owned());
    }
    Ok(RestRoute {
        rest_base,
        site,
        auth,
        cloud_id: once,
    })
}

fn no_rest() -> GatewayError {
    GatewayError::Config("this call needs `opsgenie.backend: jsm` and its REST credential".into())
}

/// `scheme://host[:port]` of `url` (the Atlassian API host of the REST base), falling back to
/// [`ATLASSIAN_API_URL`].
fn origin(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null")
        .unwrap_or_else(|| ATLASSIAN_API_URL.to_owned())
}
