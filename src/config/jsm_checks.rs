//! What `opsgenie.jsm` must hold with `backend: jsm`: the REST API's credential (account e-mail
//! and API token) and where the site is (`site` or `cloud_id`). Both credentials are always
//! required on JSM, because request status, alert reads, the orphan sweep, readiness and
//! on-call lookups exist only on the REST API (opsgenie-api.md §9.6).

use super::files::read_secret_file;
use super::problem::ConfigProblem;
use super::safe;
use super::{BackendKind, Config, Secret};

/// The hint for a missing piece of the REST credential.
const TOKEN_HINT: &str = "create an API token for the account at id.atlassian.com (Security > API tokens), store it in a file readable only by the daemon and name it in `opsgenie.jsm.api_token_file`";

/// Checks `opsgenie.jsm` for `backend: jsm`; fills `api_token` from `api_token_file`.
pub(super) fn check_jsm(config: &mut Config, problems: &mut Vec<ConfigProblem>) {
    if config.opsgenie.backend != BackendKind::Jsm {
        return;
    }
    let j = &mut config.opsgenie.jsm;
    match j.email.as_deref().map(str::trim) {
        None | Some("") => problems.push(
            ConfigProblem::new(
                "opsgenie.jsm.email",
                "`backend: jsm` needs the REST API's credential: the e-mail of the Atlassian account whose API token is used",
            )
            .hint("set `opsgenie.jsm.email` (an agent with JSM Operations access) and `opsgenie.jsm.api_token_file`"),
        ),
        Some(email) if !email.contains('@') || email.chars().any(char::is_whitespace) => problems
            .push(ConfigProblem::new(
                "opsgenie.jsm.email",
                format!("{} is not an e-mail address", safe::show(email)),
            )),
        Some(_) => {}
    }
    match (&j.api_token, &j.api_token_file) {
        (Some(_), Some(_)) => problems.push(
            ConfigProblem::new(
                "opsgenie.jsm.api_token",
                "both `opsgenie.jsm.api_token` and `opsgenie.jsm.api_token_file` are set",
            )
            .hint("keep only `api_token_file`, so the token stays out of the config and the environment"),
        ),
        (Some(token), None) => {
            let trimmed = token.expose().trim();
            if trimmed.is_empty() {
                problems.push(ConfigProblem::new("opsgenie.jsm.api_token", "is empty"));
            } else if trimmed.len() != token.expose().len() {
                j.api_token = Some(Secret::new(trimmed));
            }
        }
        (None, Some(path)) => {
            match read_secret_file("opsgenie.jsm.api_token_file", "the API token", path)
                .map_err(ConfigProblem::about_a_file)
            {
                Ok(token) => j.api_token = Some(token),
                Err(problem) => problems.push(problem),
            }
        }
        (None, None) => problems.push(
            ConfigProblem::new(
                "opsgenie.jsm.api_token_file",
                "`backend: jsm` needs the REST API's credential: an Atlassian API token",
            )
            .hint(TOKEN_HINT),
        ),
    }
    let site = j.site.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let cloud_id = j.cloud_id.as_deref().map(str::trim);
    match (site, cloud_id) {
        (None, None) => problems.push(
            ConfigProblem::new(
                "opsgenie.jsm.site",
                "`backend: jsm` needs to know the site: set `opsgenie.jsm.site` or `opsgenie.jsm.cloud_id`",
            )
            .hint("e.g. `site: example.atlassian.net` (its cloudId is looked up once at start)"),
        ),
        (Some(site), _) => {
            if let Some(problem) = check_site(site) {
                problems.push(problem);
            }
        }
        (None, Some(_)) => {}
    }
    if let Some(id) = cloud_id {
        if !is_cloud_id(id) {
            problems.push(
                ConfigProblem::new(
                    "opsgenie.jsm.cloud_id",
                    format!("{} is not a cloudId", safe::show(id)),
                )
                .hint("a cloudId looks like 8e7b3f2a-1c4d-4e5f-9a6b-7c8d9e0f1a2b; https://<site>.atlassian.net/_edge/tenant_info shows it, or set `site` instead"),
            );
        }
    }
    if let Some(url) = &j.rest_url {
        if let Some(problem) = check_url("opsgenie.jsm.rest_url", url) {
            problems.push(problem);
        }
    }
    if let Some(team) = &j.heartbeat_team_id {
        if !is_cloud_id(team.trim()) {
            problems.push(
                ConfigProblem::new(
                    "opsgenie.jsm.heartbeat_team_id",
                    format!("{} is not a team id", safe::show(team)),
                )
                .hint("the REST API names teams by id (the team's URL in JSM Operations ends with it); remove the key to read one page of alerts for readiness instead"),
            );
        }
    }
}

/// A cloudId or a team id: letters, digits and `-`.
pub(super) fn is_cloud_id(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn check_site(site: &str) -> Option<ConfigProblem> {
    let key = "opsgenie.jsm.site";
    if site.contains("://") {
        return check_url(key, site);
    }
    let host_ok = !site.contains(['/', ':', '@', ' '])
        && site.contains('.')
        && site
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    (!host_ok).then(|| {
        ConfigProblem::new(key, format!("{} is not a site name", safe::show(site)))
            .hint("write the host alone, e.g. example.atlassian.net")
    })
}

fn check_url(key: &str, url: &str) -> Option<ConfigProblem> {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => None,
        Ok(_) => Some(ConfigProblem::new(
            key,
            "must be an http:// or https:// URL with a host",
        )),
        Err(e) => Some(ConfigProblem::new(key, format!("is not a valid URL: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jsm() -> Config {
        let mut config = Config::default();
        config.opsgenie.backend = BackendKind::Jsm;
        config
    }

    fn keys(problems: &[ConfigProblem]) -> Vec<&str> {
        problems.iter().map(|p| p.path.as_str()).collect()
    }

    #[test]
    fn jsm_needs_the_rest_credential_and_the_site_each_named_with_the_fix() {
        let mut config = jsm();
        let mut problems = Vec::new();
        check_jsm(&mut config, &mut problems);
        assert_eq!(
            keys(&problems),
            [
                "opsgenie.jsm.email",
                "opsgenie.jsm.api_token_file",
                "opsgenie.jsm.site"
            ]
        );
        let text = problems[1].to_string();
        assert!(text.contains("id.atlassian.com"), "{text}");

        // Opsgenie needs none of it.
        let mut config = Config::default();
        let mut problems = Vec::new();
        check_jsm(&mut config, &mut problems);
        assert!(problems.is_empty());
    }

    #[test]
    fn a_complete_rest_credential_passes_and_bad_values_are_named() {
        let mut config = jsm();
        config.opsgenie.jsm.email = Some("ops-bot@example.com".into());
        config.opsgenie.jsm.api_token = Some(Secret::new(" s3cr3t-tok \n"));
        config.opsgenie.jsm.site = Some("example.atlassian.net".into());
        let mut problems = Vec::new();
        check_jsm(&mut config, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            config.opsgenie.jsm.api_token.unwrap().expose(),
            "s3cr3t-tok"
        );

        let mut config = jsm();
        config.opsgenie.jsm.email = Some("ops-bot".into());
        config.opsgenie.jsm.api_token = Some(Secret::new("s3cr3t-tok"));
        config.opsgenie.jsm.site = Some("https://example.atlassian.net/jira".into());
        config.opsgenie.jsm.cloud_id = Some("../x".into());
        config.opsgenie.jsm.heartbeat_team_id = Some("SRE team".into());
        let mut problems = Vec::new();
        check_jsm(&mut config, &mut problems);
        assert_eq!(
            keys(&problems),
            [
                "opsgenie.jsm.email",
                "opsgenie.jsm.cloud_id",
                "opsgenie.jsm.heartbeat_team_id"
            ]
        );
        // The secret is never shown.
        assert!(!problems.iter().any(|p| p.to_string().contains("s3cr3t")));

        let mut config = jsm();
        config.opsgenie.jsm.email = Some("a@example.com".into());
        config.opsgenie.jsm.api_token = Some(Secret::new("tok"));
        config.opsgenie.jsm.site = Some("example atlassian".into());
        let mut problems = Vec::new();
        check_jsm(&mut config, &mut problems);
        assert_eq!(keys(&problems), ["opsgenie.jsm.site"]);
    }
}
