//! Role checks: who may run which command.
//!
//! The bureau's people act in four roles (operator, disclosure staff,
//! approver, auditor), given per person in `[roles]` of `config.toml`
//! (see `Config::roles`). A command that needs a role asks [`require`]
//! before it reads or writes anything, and the refusal names the person,
//! the command and the roles that would allow it.

use thiserror::Error;

use crate::disclose::Role;
use crate::i18n::Text;
use crate::runner::Services;

/// What each command of this module's callers needs: any one of the roles.
pub const WORKER: &[Role] = &[Role::Operator];
pub const REPROCESS: &[Role] = &[Role::Operator];
pub const STATUS: &[Role] = &[Role::Operator, Role::Auditor];
pub const AUDIT: &[Role] = &[Role::Auditor];
pub const REPORT: &[Role] = &[Role::Auditor];
pub const DISCLOSURE: &[Role] = &[Role::Disclosure];

#[derive(Debug, Error)]
#[error("{actor} may not run `{command}`: it needs the role {} (config [roles])", names(.needed, false))]
pub struct RoleError {
    pub actor: String,
    pub command: &'static str,
    pub needed: Vec<Role>,
}

impl RoleError {
    pub fn text(&self) -> Text {
        Text::new(
            format!(
                "{} 无权执行 `{}`：需要角色 {}（配置文件 [roles]）",
                self.actor,
                self.command,
                names(&self.needed, true)
            ),
            self.to_string(),
        )
    }
}

/// Whether the configuration gives `actor` the role.
pub fn has_role(services: &Services, actor: &str, role: Role) -> bool {
    services
        .config
        .roles
        .get(actor)
        .is_some_and(|roles| roles.contains(&role))
}

/// Passes when the acting person holds any of `needed`.
pub fn require(
    services: &Services,
    command: &'static str,
    needed: &[Role],
) -> Result<(), RoleError> {
    if needed
        .iter()
        .any(|role| has_role(services, &services.actor, *role))
    {
        return Ok(());
    }
    tracing::info!(actor = %services.actor, command, "refused: role missing");
    Err(RoleError {
        actor: services.actor.clone(),
        command,
        needed: needed.to_vec(),
    })
}

fn names(roles: &[Role], chinese: bool) -> String {
    let name = |role: &Role| match (role, chinese) {
        (Role::Operator, true) => "operator（操作员）",
        (Role::Disclosure, true) => "disclosure（信息公开人员）",
        (Role::Approver, true) => "approver（审批人）",
        (Role::Auditor, true) => "auditor（审核人）",
        (Role::Operator, false) => "operator",
        (Role::Disclosure, false) => "disclosure",
        (Role::Approver, false) => "approver",
        (Role::Auditor, false) => "auditor",
    };
    let joined: Vec<&str> = roles.iter().map(name).collect();
    joined.join(if chinese { " 或 " } else { " or " })
}
