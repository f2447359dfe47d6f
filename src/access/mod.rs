//! The access vocabulary every room shares: who is asking ([`Principal`]),
//! how items are placed (visibility, team, owner) and what team roles allow.
//! It sits at the bottom of the house so that `mcp`, `registry` and `auth`
//! can all use it without knowing each other.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Private,
    Team,
    Public,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Team => "team",
            Visibility::Public => "public",
        }
    }

    pub fn parse(s: &str) -> Option<Visibility> {
        match s {
            "private" => Some(Visibility::Private),
            "team" => Some(Visibility::Team),
            "public" => Some(Visibility::Public),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum TeamRole {
    Viewer,
    Developer,
    TeamAdmin,
}

impl TeamRole {
    pub fn parse(s: &str) -> Option<TeamRole> {
        match s {
            "viewer" | "member" => Some(TeamRole::Viewer),
            "developer" => Some(TeamRole::Developer),
            "team_admin" | "owner" => Some(TeamRole::TeamAdmin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TeamRole::Viewer => "viewer",
            TeamRole::Developer => "developer",
            TeamRole::TeamAdmin => "team_admin",
        }
    }
}

/// The fields every registry item shares for access control.
pub trait Owned {
    fn team_id(&self) -> Option<&str>;
    fn owner_email(&self) -> &str;
    fn visibility(&self) -> Visibility;
    fn enabled(&self) -> bool;
    fn tags(&self) -> &[String];
    fn gateway_id(&self) -> Option<&str> {
        None
    }
}

/// Why an action is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

/// Which teams a principal acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeamScope {
    /// Platform admin without a team restriction: sees everything.
    All,
    Only(HashSet<String>),
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub email: String,
    pub is_admin: bool,
    pub teams: TeamScope,
    pub roles: HashMap<String, TeamRole>,
    pub jti: Option<String>,
    pub exp: Option<i64>,
}

impl Principal {
    pub fn in_team(&self, team: &str) -> bool {
        match &self.teams {
            TeamScope::All => true,
            TeamScope::Only(t) => t.contains(team),
        }
    }

    pub fn role_in(&self, team: &str) -> Option<TeamRole> {
        if !self.in_team(team) {
            return None;
        }
        self.roles.get(team).copied()
    }

    /// `private` items are seen by their owner, `team` items by the team's
    /// members, `public` by everyone; an unrestricted admin sees all.
    pub fn can_see(&self, item: &dyn Owned) -> bool {
        if self.teams == TeamScope::All {
            return true;
        }
        match item.visibility() {
            Visibility::Public => true,
            Visibility::Private => item.owner_email() == self.email,
            Visibility::Team => {
                item.owner_email() == self.email || item.team_id().is_some_and(|t| self.in_team(t))
            }
        }
    }

    /// May this principal place a new item in `team` with `visibility`?
    pub fn can_create(&self, team: Option<&str>, visibility: Visibility) -> Result<(), Denied> {
        if self.is_admin {
            return Ok(());
        }
        match team {
            Some(t) => match self.role_in(t) {
                Some(r) if r >= TeamRole::Developer => Ok(()),
                Some(_) => Err(Denied(format!(
                    "role viewer in team {t} cannot create items"
                ))),
                None => Err(Denied(format!("not a member of team {t}"))),
            },
            None if visibility == Visibility::Public => Err(Denied(
                "only platform admins may publish items outside a team".into(),
            )),
            None => Ok(()),
        }
    }

    /// May this principal change or delete `item`?
    pub fn can_modify(&self, item: &dyn Owned) -> bool {
        if self.is_admin || item.owner_email() == self.email {
            return true;
        }
        match (item.team_id(), item.visibility()) {
            (Some(t), Visibility::Team | Visibility::Public) => {
                self.role_in(t).is_some_and(|r| r >= TeamRole::Developer)
            }
            _ => false,
        }
    }

    /// A stable description of what this principal may see, for cache keys
    /// at the edge: never the token, always the whole visibility scope.
    pub fn scope_key(&self) -> String {
        match &self.teams {
            TeamScope::All => "admin".into(),
            TeamScope::Only(t) => {
                let mut teams: Vec<&str> = t.iter().map(String::as_str).collect();
                teams.sort_unstable();
                format!("user:{}|teams:{}", self.email, teams.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item(Option<&'static str>, &'static str, Visibility);
    impl Owned for Item {
        fn team_id(&self) -> Option<&str> {
            self.0
        }
        fn owner_email(&self) -> &str {
            self.1
        }
        fn visibility(&self) -> Visibility {
            self.2
        }
        fn enabled(&self) -> bool {
            true
        }
        fn tags(&self) -> &[String] {
            &[]
        }
    }

    fn user(teams: &[(&str, TeamRole)]) -> Principal {
        Principal {
            email: "u@x".into(),
            is_admin: false,
            teams: TeamScope::Only(teams.iter().map(|(t, _)| t.to_string()).collect()),
            roles: teams.iter().map(|(t, r)| (t.to_string(), *r)).collect(),
            jti: None,
            exp: None,
        }
    }

    #[test]
    fn visibility_rules() {
        let p = user(&[("t1", TeamRole::Viewer)]);
        assert!(p.can_see(&Item(None, "o@x", Visibility::Public)));
        assert!(!p.can_see(&Item(None, "o@x", Visibility::Private)));
        assert!(p.can_see(&Item(None, "u@x", Visibility::Private)));
        assert!(p.can_see(&Item(Some("t1"), "o@x", Visibility::Team)));
        assert!(!p.can_see(&Item(Some("t2"), "o@x", Visibility::Team)));
        assert!(!p.can_see(&Item(Some("t1"), "o@x", Visibility::Private)));
    }

    #[test]
    fn roles_gate_writes() {
        let viewer = user(&[("t1", TeamRole::Viewer)]);
        assert!(viewer.can_create(Some("t1"), Visibility::Team).is_err());
        assert!(viewer.can_create(None, Visibility::Private).is_ok());
        assert!(viewer.can_create(None, Visibility::Public).is_err());
        assert!(!viewer.can_modify(&Item(Some("t1"), "o@x", Visibility::Team)));
        let dev = user(&[("t1", TeamRole::Developer)]);
        assert!(dev.can_create(Some("t1"), Visibility::Team).is_ok());
        assert!(dev.can_create(Some("t2"), Visibility::Team).is_err());
        assert!(dev.can_modify(&Item(Some("t1"), "o@x", Visibility::Team)));
        assert!(!dev.can_modify(&Item(Some("t1"), "o@x", Visibility::Private)));
    }

    #[test]
    fn scope_keys_separate_users_and_teams() {
        let a = user(&[("t1", TeamRole::Viewer), ("t2", TeamRole::Viewer)]);
        let b = user(&[("t2", TeamRole::Viewer), ("t1", TeamRole::Viewer)]);
        assert_eq!(a.scope_key(), b.scope_key());
        assert_ne!(a.scope_key(), user(&[("t1", TeamRole::Viewer)]).scope_key());
    }
}
