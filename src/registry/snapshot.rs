//! The immutable in-memory registry the serving path reads. It is rebuilt
//! from the database after every committed write (and when another instance
//! bumps the registry version) and swapped atomically; readers never wait.
//! Every item carries its public JSON, serialized once at build time.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

use super::model::*;
use crate::access::Principal;

/// An item with its pre-serialized public JSON.
#[derive(Debug)]
pub struct Entry<T> {
    pub item: T,
    pub json: Box<RawValue>,
}

#[derive(Debug)]
pub struct Collection<T> {
    items: Vec<Arc<Entry<T>>>,
    ids: Vec<String>,
    by_id: HashMap<String, usize>,
}

impl<T> Default for Collection<T> {
    fn default() -> Self {
        Collection {
            items: Vec::new(),
            ids: Vec::new(),
            by_id: HashMap::new(),
        }
    }
}

impl<T> Collection<T> {
    /// Items sorted by id (UUIDv7: creation order) with their JSON.
    pub fn build(
        mut items: Vec<T>,
        id: impl Fn(&T) -> &str,
        json: impl Fn(&T) -> Box<RawValue>,
    ) -> Self {
        items.sort_by(|a, b| id(a).cmp(id(b)));
        let items: Vec<Arc<Entry<T>>> = items
            .into_iter()
            .map(|item| {
                let json = json(&item);
                Arc::new(Entry { item, json })
            })
            .collect();
        let ids: Vec<String> = items.iter().map(|e| id(&e.item).to_owned()).collect();
        let by_id = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        Collection { items, ids, by_id }
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Entry<T>>> {
        self.by_id.get(id).map(|&i| &self.items[i])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Entry<T>>> {
        self.items.iter()
    }

    /// Items after `cursor` (an id), in order.
    pub fn after(&self, cursor: Option<&str>) -> &[Arc<Entry<T>>] {
        let start = cursor.map_or(0, |c| self.ids.partition_point(|id| id.as_str() <= c));
        &self.items[start..]
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

pub fn raw<T: Serialize>(v: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(v).expect("registry items serialize")
}

/// How tools and prompts are named in one MCP scope (all of `/mcp`, or one
/// virtual server): each item with whether it goes by its plain upstream
/// name, and the lookup from exposed name to ids.
#[derive(Debug, Default)]
pub struct McpScope {
    pub tools: Vec<(String, bool)>,
    pub tool_by_name: HashMap<String, Vec<String>>,
    pub prompts: Vec<(String, bool)>,
    pub prompt_by_name: HashMap<String, Vec<String>>,
}

impl McpScope {
    fn build<'a>(
        tools: impl Iterator<Item = &'a Tool>,
        prompts: impl Iterator<Item = &'a Prompt>,
        mode: &str,
    ) -> McpScope {
        let mut scope = McpScope::default();
        let tools: Vec<&Tool> = tools.collect();
        let prompts: Vec<&Prompt> = prompts.collect();
        let count = |names: &mut HashMap<String, usize>, n: &str| {
            *names.entry(n.to_owned()).or_default() += 1
        };
        let mut tool_plain: HashMap<String, usize> = HashMap::new();
        tools
            .iter()
            .for_each(|t| count(&mut tool_plain, &t.original_name));
        let mut prompt_plain: HashMap<String, usize> = HashMap::new();
        prompts
            .iter()
            .for_each(|p| count(&mut prompt_plain, &p.original_name));
        let plain = |counts: &HashMap<String, usize>, n: &str| match mode {
            "never" => true,
            "conditional" => counts.get(n).copied().unwrap_or(0) <= 1,
            _ => false,
        };
        for t in tools {
            let p = plain(&tool_plain, &t.original_name);
            let name = if p { &t.original_name } else { &t.name };
            scope
                .tool_by_name
                .entry(name.clone())
                .or_default()
                .push(t.id.clone());
            scope.tools.push((t.id.clone(), p));
        }
        for pr in prompts {
            let p = plain(&prompt_plain, &pr.original_name);
            let name = if p { &pr.original_name } else { &pr.name };
            scope
                .prompt_by_name
                .entry(name.clone())
                .or_default()
                .push(pr.id.clone());
            scope.prompts.push((pr.id.clone(), p));
        }
        scope
    }
}

/// A tool's MCP listing entry, under its prefixed and its plain name.
#[derive(Debug)]
pub struct McpTool {
    pub prefixed: Box<RawValue>,
    pub plain: Box<RawValue>,
}

fn mcp_tool_json(t: &Tool, name: &str) -> Box<RawValue> {
    let mut v = serde_json::json!({"name": name, "inputSchema": t.input_schema});
    if let Some(d) = t.description.as_deref().filter(|d| !d.is_empty()) {
        v["description"] = d.into();
    }
    if let Some(title) = t.title.as_deref().or(t.display_name.as_deref()) {
        v["title"] = title.into();
    }
    if let Some(o) = &t.output_schema {
        v["outputSchema"] = o.clone();
    }
    if t.annotations.as_object().is_some_and(|a| !a.is_empty()) {
        v["annotations"] = t.annotations.clone();
    }
    raw(&v)
}

#[derive(Debug, Default)]
pub struct Snapshot {
    pub version: i64,
    pub tools: Collection<Tool>,
    pub gateways: Collection<Gateway>,
    pub resources: Collection<Resource>,
    pub prompts: Collection<Prompt>,
    pub servers: Collection<Server>,
    pub associations: HashMap<String, Associations>,
    pub teams: Collection<Team>,
    pub members: HashMap<String, Vec<TeamMember>>,
    /// Users by (lower-case) email.
    pub users: HashMap<String, User>,
    /// Each user's teams and roles, for resolving principals.
    pub roles_by_user: HashMap<String, HashMap<String, TeamRole>>,
    pub mcp_tools: HashMap<String, McpTool>,
    pub mcp_global: McpScope,
    pub mcp_servers: HashMap<String, McpScope>,
}

#[derive(Serialize)]
struct ServerView<'a> {
    #[serde(flatten)]
    server: &'a Server,
    #[serde(flatten)]
    associations: &'a Associations,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TeamView<'a> {
    #[serde(flatten)]
    team: &'a Team,
    member_count: usize,
}

pub struct Parts {
    pub version: i64,
    pub tools: Vec<Tool>,
    pub gateways: Vec<Gateway>,
    pub resources: Vec<Resource>,
    pub prompts: Vec<Prompt>,
    pub servers: Vec<Server>,
    pub server_tools: Vec<(String, String)>,
    pub server_resources: Vec<(String, String)>,
    pub server_prompts: Vec<(String, String)>,
    pub teams: Vec<Team>,
    pub members: Vec<TeamMember>,
    pub users: Vec<User>,
}

impl Snapshot {
    pub fn build(p: Parts) -> Snapshot {
        let mut associations: HashMap<String, Associations> = HashMap::new();
        for (s, t) in p.server_tools {
            associations.entry(s).or_default().associated_tools.push(t);
        }
        for (s, r) in p.server_resources {
            associations
                .entry(s)
                .or_default()
                .associated_resources
                .push(r);
        }
        for (s, pr) in p.server_prompts {
            associations
                .entry(s)
                .or_default()
                .associated_prompts
                .push(pr);
        }
        let mut members: HashMap<String, Vec<TeamMember>> = HashMap::new();
        let mut roles_by_user: HashMap<String, HashMap<String, TeamRole>> = HashMap::new();
        for m in p.members {
            if let Some(role) = TeamRole::parse(&m.role) {
                roles_by_user
                    .entry(m.user_email.to_ascii_lowercase())
                    .or_default()
                    .insert(m.team_id.clone(), role);
            }
            members.entry(m.team_id.clone()).or_default().push(m);
        }
        let empty = Associations::default();
        let servers = Collection::build(
            p.servers,
            |s| &s.id,
            |s| {
                raw(&ServerView {
                    server: s,
                    associations: associations.get(&s.id).unwrap_or(&empty),
                })
            },
        );
        let teams = Collection::build(
            p.teams,
            |t| &t.id,
            |t| {
                raw(&TeamView {
                    team: t,
                    member_count: members.get(&t.id).map_or(0, Vec::len),
                })
            },
        );
        let mcp_tools = p
            .tools
            .iter()
            .map(|t| {
                (
                    t.id.clone(),
                    McpTool {
                        prefixed: mcp_tool_json(t, &t.name),
                        plain: mcp_tool_json(t, &t.original_name),
                    },
                )
            })
            .collect();
        let mcp_global = McpScope::build(p.tools.iter(), p.prompts.iter(), "always");
        let tool_idx: HashMap<&str, &Tool> = p.tools.iter().map(|t| (t.id.as_str(), t)).collect();
        let prompt_idx: HashMap<&str, &Prompt> =
            p.prompts.iter().map(|t| (t.id.as_str(), t)).collect();
        let mcp_servers = servers
            .iter()
            .map(|e| {
                let a = associations.get(&e.item.id).unwrap_or(&empty);
                let scope = McpScope::build(
                    a.associated_tools
                        .iter()
                        .filter_map(|id| tool_idx.get(id.as_str()).copied()),
                    a.associated_prompts
                        .iter()
                        .filter_map(|id| prompt_idx.get(id.as_str()).copied()),
                    &e.item.prefix_mode,
                );
                (e.item.id.clone(), scope)
            })
            .collect();
        Snapshot {
            version: p.version,
            mcp_tools,
            mcp_global,
            mcp_servers,
            tools: Collection::build(p.tools, |t| &t.id, raw),
            gateways: Collection::build(p.gateways, |g| &g.id, raw),
            resources: Collection::build(p.resources, |r| &r.id, raw),
            prompts: Collection::build(p.prompts, |r| &r.id, raw),
            servers,
            associations,
            teams,
            members,
            users: p
                .users
                .into_iter()
                .map(|u| (u.email.to_ascii_lowercase(), u))
                .collect(),
            roles_by_user,
        }
    }

    /// A user's teams and roles (empty for a user in no team).
    pub fn roles_of(&self, email: &str) -> HashMap<String, TeamRole> {
        self.roles_by_user.get(email).cloned().unwrap_or_default()
    }

    pub fn role_of(&self, team: &str, email: &str) -> Option<TeamRole> {
        self.members
            .get(team)
            .and_then(|ms| ms.iter().find(|m| m.user_email == email))
            .and_then(|m| TeamRole::parse(&m.role))
    }

    /// Teams a principal may see: members see their teams, everyone sees
    /// public teams, an unrestricted admin sees all.
    pub fn team_visible(&self, p: &Principal, team: &Team) -> bool {
        p.is_admin
            || team.visibility == Visibility::Public
            || self.role_of(&team.id, &p.email).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::input::ToolInput;

    fn tool(id: &str, gateway: &str, original: &str) -> Tool {
        let mut t = ToolInput::new_tool("o@example.com", "2026-01-01T00:00:00Z");
        t.id = id.into();
        t.original_name = original.into();
        t.name = format!("{gateway}-{original}");
        t
    }

    fn names(scope: &McpScope) -> Vec<String> {
        let mut n: Vec<String> = scope.tool_by_name.keys().cloned().collect();
        n.sort();
        n
    }

    #[test]
    fn prefix_modes_name_tools_as_documented() {
        let tools = [
            tool("1", "a", "echo"),
            tool("2", "b", "echo"),
            tool("3", "a", "add"),
        ];
        let always = McpScope::build(tools.iter(), std::iter::empty(), "always");
        assert_eq!(names(&always), vec!["a-add", "a-echo", "b-echo"]);
        let conditional = McpScope::build(tools.iter(), std::iter::empty(), "conditional");
        assert_eq!(
            names(&conditional),
            vec!["a-echo", "add", "b-echo"],
            "only clashing names keep their prefix"
        );
        let never = McpScope::build(tools.iter(), std::iter::empty(), "never");
        assert_eq!(names(&never), vec!["add", "echo"]);
        assert_eq!(
            never.tool_by_name["echo"],
            vec!["1", "2"],
            "a clash resolves to both, in order"
        );
    }

    #[test]
    fn principals_resolve_from_users_and_memberships() {
        let snap = Snapshot::build(Parts {
            version: 7,
            tools: vec![],
            gateways: vec![],
            resources: vec![],
            prompts: vec![],
            servers: vec![],
            server_tools: vec![],
            server_resources: vec![],
            server_prompts: vec![],
            teams: vec![],
            members: vec![TeamMember {
                id: "t1".into(),
                team_id: "t1".into(),
                user_email: "Ann@Example.com".into(),
                role: "developer".into(),
                joined_at: "x".into(),
            }],
            users: vec![User {
                email: "Ann@Example.com".into(),
                is_admin: false,
                is_active: false,
            }],
        });
        assert_eq!(snap.roles_of("ann@example.com")["t1"], TeamRole::Developer);
        assert!(!snap.users["ann@example.com"].is_active);
        assert!(snap.roles_of("bob@example.com").is_empty());
    }
}
