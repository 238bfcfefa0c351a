//! From the configuration to the plain settings types of the core, which imports nothing
//! from here (the core may not depend on the configuration; the configuration may depend on
//! the core).

use crate::core::policy::PolicySettings;

use super::AutoApprovalConfig;

impl From<&AutoApprovalConfig> for PolicySettings {
    fn from(c: &AutoApprovalConfig) -> Self {
        Self {
            enabled: c.enabled,
            default_schedules: c.default_schedules.clone(),
            user_domain: c.user_domain.clone(),
            users: c.users.clone(),
            allowed_roles: c.allowed_roles.clone(),
            denied_roles: c.denied_roles.clone(),
            max_duration: c.max_duration,
            allow_resource_requests: c.allow_resource_requests,
            lookup_retries: c.lookup_retries,
            max_schedules: c.max_schedules,
            shift_end: c.shift_end,
            shift_grace: c.shift_grace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_agree() {
        assert_eq!(
            PolicySettings::from(&AutoApprovalConfig::default()),
            PolicySettings::default()
        );
    }
}
