//! Role checks: who may run which command.
//!
//! The bureau's people act in four roles (operator, disclosure staff,
//! approver, auditor), given per person in `[roles]` of `config.toml`
//! (see `Config::roles`). Every command that reads or changes stored
//! footage or records calls [`check`] before it reads or
//! writes anything, and the refusal names the person, the command and the
//! roles that would allow it.
//!
//! An installation without `[roles]` is one person's: the acting person
//! holds [`SINGLE_PERSON`] (operator and auditor), never disclosure staff
//! or approver, so that a newcomer can process footage at once while a
//! disclosure still needs a second, configured person to approve it. As
//! soon as `[roles]` exists, only what it lists counts.

use thiserror::Error;

use crate::config::Config;
use crate::disclose::Role;
use crate::i18n::Text;

/// Roles each command needs: any one of them lets it run.
pub const PROCESS: &[Role] = &[Role::Operator];
pub const SPLIT: &[Role] = &[Role::Operator];
pub const REDACT: &[Role] = &[Role::Operator];
pub const JUSTIFY: &[Role] = &[Role::Operator];
pub const DELAY: &[Role] = &[Role::Operator];
pub const PROMOTE: &[Role] = &[Role::Operator];
pub const STORAGE_INIT: &[Role] = &[Role::Operator];
/// Deleting footage whose retention ended is approved work, which a
/// single-person installation never holds: it needs a configured person.
pub const STORAGE_DELETE: &[Role] = &[Role::Approver];
pub const WORKER: &[Role] = &[Role::Operator];
pub const REPROCESS: &[Role] = &[Role::Operator];
/// Reading findings and fixity is both the station's and the checker's work.
pub const CHECK: &[Role] = &[Role::Operator, Role::Auditor];
pub const VERIFY: &[Role] = &[Role::Operator, Role::Auditor];
pub const STATUS: &[Role] = &[Role::Operator, Role::Auditor];
pub const AUDIT: &[Role] = &[Role::Auditor];
pub const REPORT: &[Role] = &[Role::Auditor];
pub const DISCLOSURE: &[Role] = &[Role::Disclosure];
/// Deciding a request; the requester is refused once the request is read.
pub const DISCLOSE_DECIDE: &[Role] = &[Role::Approver];
/// Showing and listing requests: the people who file, decide or check them.
pub const DISCLOSE_READ: &[Role] = &[Role::Disclosure, Role::Approver, Role::Auditor];

/// Roles of the acting person in an installation without `[roles]`: the
/// everyday work and its checks, but no disclosure, whose approval must
/// come from someone else.
pub const SINGLE_PERSON: &[Role] = &[Role::Operator, Role::Auditor];

/// The source of the role that let a command run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// `[roles]` lists it for the acting person.
    Configured,
    /// There is no `[roles]`: the single-person default.
    SinglePerson { actor: String },
}

impl Grant {
    /// Returns the one-line notice a command prints when it ran on the
    /// single-person default.
    pub fn notice(&self) -> Option<Text> {
        let Grant::SinglePerson { actor } = self else {
            return None;
        };
        Some(Text::new(
            format!(
                "提示：配置文件中没有 [roles]，按单人安装处理：{actor} 拥有 operator（操作员）和 auditor（审核人）角色，没有 disclosure（信息公开人员）和 approver（审批人）角色；配置 [roles] 后只按其中所列角色核对"
            ),
            format!(
                "note: the config has no [roles], so this is a single-person installation: {actor} holds the operator and auditor roles, never disclosure or approver; once [roles] exists, only what it lists counts"
            ),
        ))
    }
}

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

/// Returns whether the configuration gives `actor` the role: `[roles]` when it
/// exists, else the single-person default.
pub fn has_role(config: &Config, actor: &str, role: Role) -> bool {
    if !config.roles.configured {
        return SINGLE_PERSON.contains(&role);
    }
    config
        .roles
        .get(actor)
        .is_some_and(|roles| roles.contains(&role))
}

/// Checks that the config's acting person has any of `needed`. Callers
/// check before they open the catalog or the store.
pub fn check(config: &Config, command: &'static str, needed: &[Role]) -> Result<Grant, RoleError> {
    let actor = config.actor();
    if needed.iter().any(|role| has_role(config, &actor, *role)) {
        if !config.roles.configured {
            tracing::info!(%actor, command, "allowed: single-person installation");
            return Ok(Grant::SinglePerson { actor });
        }
        return Ok(Grant::Configured);
    }
    tracing::info!(%actor, command, "command rejected: role missing");
    Err(RoleError {
        actor,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn single_person_is_operator_and_auditor_only() {
        let config = config("");
        for role in [Role::Operator, Role::Auditor] {
            assert!(has_role(&config, "anyone", role), "{role:?}");
        }
        for role in [Role::Disclosure, Role::Approver] {
            assert!(!has_role(&config, "anyone", role), "{role:?}");
        }
    }

    #[test]
    fn empty_roles_table_gives_nobody_a_role() {
        let config = config("[roles]\n");
        for role in [Role::Operator, Role::Auditor, Role::Disclosure, Role::Approver] {
            assert!(!has_role(&config, "anyone", role), "{role:?}");
        }
        assert!(check(&config, "process", PROCESS).is_err());
    }

    #[test]
    fn configured_roles_replace_the_default() {
        let config = config("[roles]\nli = [\"approver\"]\n");
        assert!(has_role(&config, "li", Role::Approver));
        assert!(!has_role(&config, "li", Role::Operator));
        assert!(!has_role(&config, "wang", Role::Operator));
    }

    #[test]
    fn refusal_names_person_command_and_roles() {
        let error = RoleError {
            actor: "li".into(),
            command: "verify",
            needed: VERIFY.to_vec(),
        };
        let text = error.text();
        assert_eq!(
            text.en,
            "li may not run `verify`: it needs the role operator or auditor (config [roles])"
        );
        assert!(text.zh.starts_with("li 无权执行 `verify`"), "{}", text.zh);
        assert!(
            text.zh.contains("operator（操作员） 或 auditor（审核人）"),
            "{}",
            text.zh
        );
    }
}
