//! Create and update payloads, in the reference's shapes. One struct per kind
//! serves both: on create, required fields are checked; on update (PUT),
//! only the fields present are applied. Field names are accepted in
//! snake_case and camelCase.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::model::*;
use crate::util::slugify;

/// A rejected field: the API answers 422 naming it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InputError {
    pub field: String,
    pub message: String,
}

pub fn bad(field: &str, message: impl Into<String>) -> InputError {
    InputError {
        field: field.to_owned(),
        message: message.into(),
    }
}

type InputResult<T> = Result<T, InputError>;

fn check_len(field: &str, v: &str, max: usize) -> InputResult<()> {
    if v.chars().count() > max {
        return Err(bad(field, format!("must be at most {max} characters")));
    }
    Ok(())
}

fn check_name(field: &str, v: &str) -> InputResult<String> {
    let v = v.trim();
    if v.is_empty() {
        return Err(bad(field, "must not be empty"));
    }
    check_len(field, v, NAME_MAX)?;
    if v.chars().any(char::is_control) {
        return Err(bad(field, "must not contain control characters"));
    }
    Ok(v.to_owned())
}

fn check_tool_name(v: &str) -> InputResult<String> {
    let v = v.trim();
    if v.is_empty() {
        return Err(bad("name", "must not be empty"));
    }
    check_len("name", v, TOOL_NAME_MAX)?;
    let mut chars = v.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c));
    if !(first_ok && rest_ok) {
        return Err(bad("name", "must match ^[a-zA-Z0-9_][a-zA-Z0-9._/-]*$"));
    }
    Ok(v.to_owned())
}

fn check_description(v: Option<String>) -> InputResult<Option<String>> {
    if let Some(d) = &v
        && d.len() > DESCRIPTION_MAX
    {
        return Err(bad(
            "description",
            format!("must be at most {DESCRIPTION_MAX} bytes"),
        ));
    }
    Ok(v)
}

pub fn check_url(field: &str, v: &str) -> InputResult<String> {
    let v = v.trim();
    check_len(field, v, URL_MAX)?;
    let u = url::Url::parse(v).map_err(|e| bad(field, format!("is not a valid URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(bad(field, "must be an http or https URL"));
    }
    if u.host_str().is_none() {
        return Err(bad(field, "must name a host"));
    }
    Ok(v.to_owned())
}

/// Tags arrive as a list or a comma-separated string.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Tags {
    List(Vec<String>),
    Csv(String),
}

impl Tags {
    fn normalize(self) -> InputResult<Vec<String>> {
        let raw = match self {
            Tags::List(l) => l,
            Tags::Csv(s) => s.split(',').map(str::to_owned).collect(),
        };
        let mut out: Vec<String> = Vec::new();
        for t in raw {
            let t = t.trim().to_ascii_lowercase();
            if t.is_empty() {
                continue;
            }
            check_len("tags", &t, 64)?;
            if !out.contains(&t) {
                out.push(t);
            }
        }
        if out.len() > 50 {
            return Err(bad("tags", "at most 50 tags"));
        }
        Ok(out)
    }
}

/// Ids arrive as a list or a comma-separated string.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Ids {
    List(Vec<String>),
    Csv(String),
}

impl Ids {
    pub fn into_vec(self) -> Vec<String> {
        let raw = match self {
            Ids::List(l) => l,
            Ids::Csv(s) => s.split(',').map(str::to_owned).collect(),
        };
        let mut out: Vec<String> = Vec::new();
        for id in raw {
            let id = id.trim().to_owned();
            if !id.is_empty() && !out.contains(&id) {
                out.push(id);
            }
        }
        out
    }
}

/// Where an item lives: its team and visibility, as asked for.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct PlacementInput {
    #[serde(alias = "teamId")]
    pub team_id: Option<String>,
    #[schema(value_type = Option<Visibility>)]
    pub visibility: Option<String>,
}

impl PlacementInput {
    /// Resolves against the current placement (None on create).
    pub fn resolve(
        &self,
        current: Option<(Option<&str>, Visibility)>,
    ) -> InputResult<(Option<String>, Visibility)> {
        let team = match (&self.team_id, current) {
            (Some(t), _) if t.trim().is_empty() => None,
            (Some(t), _) => Some(t.trim().to_owned()),
            (None, Some((t, _))) => t.map(str::to_owned),
            (None, None) => None,
        };
        let visibility = match (&self.visibility, current) {
            (Some(v), _) => Visibility::parse(v)
                .ok_or_else(|| bad("visibility", "must be private, team or public"))?,
            (None, Some((_, v))) => v,
            (None, None) if team.is_some() => Visibility::Team,
            (None, None) => Visibility::Public,
        };
        if visibility == Visibility::Team && team.is_none() {
            return Err(bad("visibility", "`team` visibility needs a team_id"));
        }
        Ok((team, visibility))
    }
}

/// Credentials for calling an upstream, in either of the reference's shapes:
/// a tool's nested `auth` object or a gateway's flat `auth_*` fields.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct AuthInput {
    #[serde(alias = "authType")]
    pub auth_type: Option<String>,
    #[serde(alias = "auth_username")]
    pub username: Option<String>,
    #[serde(alias = "auth_password")]
    pub password: Option<String>,
    #[serde(alias = "auth_token")]
    pub token: Option<String>,
    #[serde(alias = "authHeaderKey")]
    pub auth_header_key: Option<String>,
    #[serde(alias = "authHeaderValue")]
    pub auth_header_value: Option<String>,
    #[serde(alias = "authHeaders")]
    pub auth_headers: Option<Vec<HeaderPair>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct HeaderPair {
    pub key: String,
    pub value: String,
}

impl AuthInput {
    /// The credential as a JSON document to be sealed, with its type; `None`
    /// when no auth is configured.
    pub fn to_secret(&self, field: &str) -> InputResult<Option<(String, Value)>> {
        let Some(kind) = self.auth_type.as_deref().map(str::to_ascii_lowercase) else {
            return Ok(None);
        };
        let need = |v: &Option<String>, name: &str| -> InputResult<String> {
            v.clone().filter(|s| !s.is_empty()).ok_or_else(|| {
                bad(
                    &format!("{field}.{name}"),
                    format!("is required for {kind} auth"),
                )
            })
        };
        let doc = match kind.as_str() {
            "" | "none" => return Ok(None),
            "basic" => {
                json!({"username": need(&self.username, "username")?, "password": need(&self.password, "password")?})
            }
            "bearer" => json!({"token": need(&self.token, "token")?}),
            "authheaders" => {
                let mut headers: Vec<(String, String)> = Vec::new();
                if let Some(k) = &self.auth_header_key {
                    headers.push((
                        k.clone(),
                        need(&self.auth_header_value, "auth_header_value")?,
                    ));
                }
                for h in self.auth_headers.iter().flatten() {
                    headers.push((h.key.clone(), h.value.clone()));
                }
                if headers.is_empty() {
                    return Err(bad(
                        &format!("{field}.auth_headers"),
                        "at least one header is required",
                    ));
                }
                for (k, v) in &headers {
                    if k.is_empty()
                        || k.contains([':', '\r', '\n', ' '])
                        || v.contains(['\r', '\n'])
                    {
                        return Err(bad(
                            &format!("{field}.auth_headers"),
                            "invalid header name or value",
                        ));
                    }
                }
                json!({"headers": headers.into_iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>()})
            }
            other => {
                return Err(bad(
                    &format!("{field}.auth_type"),
                    format!("unknown auth type {other} (basic, bearer, authheaders)"),
                ));
            }
        };
        Ok(Some((kind, doc)))
    }
}

fn object_or(field: &str, v: Value) -> InputResult<Value> {
    if v.is_object() {
        Ok(v)
    } else {
        Err(bad(field, "must be a JSON object"))
    }
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct ToolInput {
    #[schema(pattern = "^[a-zA-Z0-9_][a-zA-Z0-9._/-]*$", max_length = 128)]
    pub name: Option<String>,
    #[serde(alias = "displayName")]
    pub display_name: Option<String>,
    pub title: Option<String>,
    #[schema(pattern = "^https?://[^/\\s]+", max_length = 2048)]
    pub url: Option<String>,
    pub description: Option<String>,
    #[serde(alias = "integrationType")]
    #[schema(value_type = Option<IntegrationType>)]
    pub integration_type: Option<String>,
    #[serde(alias = "requestType")]
    #[schema(pattern = "^(GET|POST|PUT|PATCH|DELETE)$")]
    pub request_type: Option<String>,
    pub headers: Option<Map<String, Value>>,
    #[serde(alias = "inputSchema")]
    pub input_schema: Option<Value>,
    #[serde(alias = "outputSchema")]
    pub output_schema: Option<Value>,
    pub annotations: Option<Map<String, Value>>,
    #[serde(alias = "jsonpathFilter")]
    pub jsonpath_filter: Option<String>,
    pub auth: Option<AuthInput>,
    #[serde(alias = "gatewayId")]
    pub gateway_id: Option<String>,
    pub tags: Option<Tags>,
    #[serde(alias = "timeoutMs")]
    pub timeout_ms: Option<u64>,
    #[serde(flatten)]
    pub placement: PlacementInput,
}

pub const REQUEST_TYPES: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

impl ToolInput {
    /// Applies the present fields to `t`; `create` checks required ones.
    /// Returns the credential to seal, if one was given.
    pub fn apply(self, t: &mut Tool, create: bool) -> InputResult<Option<(String, Value)>> {
        if let Some(n) = self.name {
            t.original_name = check_tool_name(&n)?;
            t.name = t.original_name.clone();
        } else if create {
            return Err(bad("name", "is required"));
        }
        if let Some(v) = self.display_name {
            t.display_name = Some(check_name("display_name", &v)?);
        }
        if let Some(v) = self.title {
            t.title = Some(check_name("title", &v)?);
        }
        if let Some(v) = self.integration_type
            && IntegrationType::parse(&v) != Some(IntegrationType::Rest)
        {
            return Err(bad(
                "integration_type",
                "only REST tools can be created through the API; MCP tools come from registered gateways",
            ));
        }
        if let Some(v) = self.request_type {
            let v = v.to_ascii_uppercase();
            if !REQUEST_TYPES.contains(&v.as_str()) {
                return Err(bad(
                    "request_type",
                    format!("must be one of {}", REQUEST_TYPES.join(", ")),
                ));
            }
            t.request_type = v;
        }
        if let Some(v) = self.url {
            t.url = Some(check_url("url", &v)?);
        } else if create && t.integration_type == IntegrationType::Rest {
            return Err(bad("url", "is required for REST tools"));
        }
        if self.description.is_some() {
            t.description = check_description(self.description)?;
        }
        if let Some(h) = self.headers {
            for (k, v) in &h {
                if !v.is_string()
                    || k.contains(['\r', '\n', ':'])
                    || v.as_str().is_some_and(|s| s.contains(['\r', '\n']))
                {
                    return Err(bad(
                        "headers",
                        format!("header {k} must be a string without line breaks"),
                    ));
                }
            }
            t.headers = Value::Object(h);
        }
        if let Some(s) = self.input_schema {
            t.input_schema = object_or("input_schema", s)?;
        }
        if let Some(s) = self.output_schema {
            t.output_schema = if s.is_null() {
                None
            } else {
                Some(object_or("output_schema", s)?)
            };
        }
        if let Some(a) = self.annotations {
            t.annotations = Value::Object(a);
        }
        if let Some(f) = self.jsonpath_filter {
            check_len("jsonpath_filter", &f, 1024)?;
            t.jsonpath_filter = Some(f).filter(|f| !f.is_empty());
        }
        if let Some(g) = self.gateway_id {
            t.gateway_id = Some(g).filter(|g| !g.is_empty());
        }
        if let Some(tags) = self.tags {
            t.tags = tags.normalize()?;
        }
        if let Some(ms) = self.timeout_ms {
            if ms == 0 || ms > 3_600_000 {
                return Err(bad("timeout_ms", "must be between 1 and 3600000"));
            }
            t.timeout_ms = Some(ms as i64);
        }
        match self.auth {
            Some(a) => a.to_secret("auth"),
            None => Ok(None),
        }
    }

    pub fn new_tool(owner: &str, now: &str) -> Tool {
        Tool {
            id: crate::util::new_id(),
            name: String::new(),
            original_name: String::new(),
            custom_name: None,
            display_name: None,
            title: None,
            url: None,
            description: None,
            integration_type: IntegrationType::Rest,
            request_type: "POST".into(),
            headers: json!({}),
            input_schema: json!({"type": "object", "properties": {}}),
            output_schema: None,
            annotations: json!({}),
            jsonpath_filter: None,
            auth_type: None,
            auth_value: None,
            timeout_ms: None,
            enabled: true,
            reachable: true,
            gateway_id: None,
            tags: vec![],
            team_id: None,
            owner_email: owner.to_owned(),
            visibility: Visibility::Public,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
        }
    }
}

pub const PREFIX_MODES: &[&str] = &["always", "conditional", "never"];

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct GatewayInput {
    #[schema(pattern = "\\S", max_length = 255)]
    pub name: Option<String>,
    #[schema(pattern = "^https?://[^/\\s]+", max_length = 2048)]
    pub url: Option<String>,
    pub description: Option<String>,
    #[schema(value_type = Option<Transport>)]
    pub transport: Option<String>,
    #[serde(alias = "passthroughHeaders")]
    pub passthrough_headers: Option<Vec<String>>,
    pub tags: Option<Tags>,
    #[serde(flatten)]
    pub auth: AuthInput,
    #[serde(flatten)]
    pub placement: PlacementInput,
}

impl GatewayInput {
    pub fn apply(self, g: &mut Gateway, create: bool) -> InputResult<Option<(String, Value)>> {
        if let Some(n) = self.name {
            g.name = check_name("name", &n)?;
            g.slug = slugify(&g.name);
            if g.slug.is_empty() {
                return Err(bad("name", "must contain a letter or digit"));
            }
        } else if create {
            return Err(bad("name", "is required"));
        }
        if let Some(t) = self.transport {
            g.transport = Transport::parse(&t).ok_or_else(|| {
                let names: Vec<&str> = Transport::ALL.iter().map(|t| t.as_str()).collect();
                bad("transport", format!("must be one of {}", names.join(", ")))
            })?;
        }
        match self.url {
            Some(u) if g.transport == Transport::Stdio => {
                check_len("url", &u, URL_MAX)?;
                if u.trim().is_empty() {
                    return Err(bad("url", "must name the command to run"));
                }
                g.url = u.trim().to_owned();
            }
            Some(u) => g.url = check_url("url", &u)?,
            None if create => return Err(bad("url", "is required")),
            None => {}
        }
        if self.description.is_some() {
            g.description = check_description(self.description)?;
        }
        if let Some(p) = self.passthrough_headers {
            g.passthrough_headers = p;
        }
        if let Some(tags) = self.tags {
            g.tags = tags.normalize()?;
        }
        self.auth.to_secret("auth")
    }

    pub fn new_gateway(owner: &str, now: &str) -> Gateway {
        Gateway {
            id: crate::util::new_id(),
            name: String::new(),
            slug: String::new(),
            url: String::new(),
            description: None,
            transport: Transport::StreamableHttp,
            capabilities: json!({}),
            passthrough_headers: vec![],
            auth_type: None,
            auth_value: None,
            enabled: true,
            reachable: true,
            last_seen: None,
            last_error: None,
            tags: vec![],
            team_id: None,
            owner_email: owner.to_owned(),
            visibility: Visibility::Public,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
        }
    }
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct ResourceInput {
    #[schema(pattern = "\\S", max_length = 2048)]
    pub uri: Option<String>,
    #[schema(pattern = "\\S", max_length = 255)]
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(alias = "mimeType")]
    pub mime_type: Option<String>,
    #[serde(alias = "uriTemplate")]
    pub uri_template: Option<String>,
    pub content: Option<String>,
    pub tags: Option<Tags>,
    #[serde(flatten)]
    pub placement: PlacementInput,
}

impl ResourceInput {
    pub fn apply(self, r: &mut Resource, create: bool) -> InputResult<()> {
        if let Some(u) = self.uri {
            let u = u.trim().to_owned();
            if u.is_empty() || !u.contains(':') {
                return Err(bad("uri", "must be an absolute URI such as file:///a.txt"));
            }
            check_len("uri", &u, URL_MAX)?;
            r.uri = u;
        } else if create {
            return Err(bad("uri", "is required"));
        }
        if let Some(n) = self.name {
            r.name = check_name("name", &n)?;
        } else if create {
            return Err(bad("name", "is required"));
        }
        if self.description.is_some() {
            r.description = check_description(self.description)?;
        }
        if let Some(m) = self.mime_type {
            check_len("mime_type", &m, 255)?;
            r.mime_type = Some(m);
        }
        if let Some(t) = self.uri_template {
            check_len("uri_template", &t, URL_MAX)?;
            r.uri_template = Some(t);
        }
        if let Some(c) = self.content {
            if c.len() > CONTENT_MAX {
                return Err(bad(
                    "content",
                    format!("must be at most {CONTENT_MAX} bytes"),
                ));
            }
            r.size = Some(c.len() as i64);
            r.text_content = Some(c);
        }
        if let Some(tags) = self.tags {
            r.tags = tags.normalize()?;
        }
        Ok(())
    }

    pub fn new_resource(owner: &str, now: &str) -> Resource {
        Resource {
            id: crate::util::new_id(),
            uri: String::new(),
            name: String::new(),
            description: None,
            mime_type: None,
            size: None,
            uri_template: None,
            text_content: None,
            gateway_id: None,
            enabled: true,
            tags: vec![],
            team_id: None,
            owner_email: owner.to_owned(),
            visibility: Visibility::Public,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PromptArgument {
    #[schema(pattern = "\\S", max_length = 255)]
    pub name: String,
    pub description: Option<String>,
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct PromptInput {
    #[schema(pattern = "\\S", max_length = 255)]
    pub name: Option<String>,
    pub description: Option<String>,
    #[schema(pattern = "\\S")]
    pub template: Option<String>,
    pub arguments: Option<Vec<PromptArgument>>,
    pub tags: Option<Tags>,
    #[serde(flatten)]
    pub placement: PlacementInput,
}

impl PromptInput {
    pub fn apply(self, p: &mut Prompt, create: bool) -> InputResult<()> {
        if let Some(n) = self.name {
            p.original_name = check_name("name", &n)?;
            p.name = p.original_name.clone();
        } else if create {
            return Err(bad("name", "is required"));
        }
        if self.description.is_some() {
            p.description = check_description(self.description)?;
        }
        if let Some(t) = self.template {
            if t.len() > TEMPLATE_MAX {
                return Err(bad(
                    "template",
                    format!("must be at most {TEMPLATE_MAX} bytes"),
                ));
            }
            p.template = t;
        } else if create {
            return Err(bad("template", "is required"));
        }
        if let Some(args) = self.arguments {
            let mut out = Vec::new();
            for (i, a) in args.iter().enumerate() {
                check_name(&format!("arguments[{i}].name"), &a.name)?;
                out.push(
                    json!({"name": a.name, "description": a.description, "required": a.required}),
                );
            }
            p.argument_schema = Value::Array(out);
        }
        if let Some(tags) = self.tags {
            p.tags = tags.normalize()?;
        }
        Ok(())
    }

    pub fn new_prompt(owner: &str, now: &str) -> Prompt {
        Prompt {
            id: crate::util::new_id(),
            name: String::new(),
            original_name: String::new(),
            description: None,
            template: String::new(),
            argument_schema: json!([]),
            gateway_id: None,
            enabled: true,
            tags: vec![],
            team_id: None,
            owner_email: owner.to_owned(),
            visibility: Visibility::Public,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
        }
    }
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct ServerInput {
    pub id: Option<String>,
    #[schema(pattern = "\\S", max_length = 255)]
    pub name: Option<String>,
    pub description: Option<String>,
    pub icon: Option<String>,
    #[serde(alias = "prefixMode")]
    #[schema(pattern = "^(always|conditional|never)$")]
    pub prefix_mode: Option<String>,
    #[serde(alias = "associatedTools")]
    pub associated_tools: Option<Ids>,
    #[serde(alias = "associatedResources")]
    pub associated_resources: Option<Ids>,
    #[serde(alias = "associatedPrompts")]
    pub associated_prompts: Option<Ids>,
    pub tags: Option<Tags>,
    #[serde(flatten)]
    pub placement: PlacementInput,
}

/// Association changes asked for by a server payload (`None` = unchanged).
#[derive(Debug, Default)]
pub struct AssociationInput {
    pub tools: Option<Vec<String>>,
    pub resources: Option<Vec<String>>,
    pub prompts: Option<Vec<String>>,
}

impl ServerInput {
    pub fn apply(self, s: &mut Server, create: bool) -> InputResult<AssociationInput> {
        if create && let Some(id) = self.id.filter(|i| !i.is_empty()) {
            if id.len() > 64
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(bad("id", "must be at most 64 letters, digits, - or _"));
            }
            s.id = id;
        }
        if let Some(n) = self.name {
            s.name = check_name("name", &n)?;
        } else if create {
            return Err(bad("name", "is required"));
        }
        if self.description.is_some() {
            s.description = check_description(self.description)?;
        }
        if let Some(i) = self.icon {
            check_len("icon", &i, URL_MAX)?;
            s.icon = Some(i).filter(|i| !i.is_empty());
        }
        if let Some(m) = self.prefix_mode {
            if !PREFIX_MODES.contains(&m.as_str()) {
                return Err(bad("prefix_mode", "must be always, conditional or never"));
            }
            s.prefix_mode = m;
        }
        if let Some(tags) = self.tags {
            s.tags = tags.normalize()?;
        }
        Ok(AssociationInput {
            tools: self.associated_tools.map(Ids::into_vec),
            resources: self.associated_resources.map(Ids::into_vec),
            prompts: self.associated_prompts.map(Ids::into_vec),
        })
    }

    pub fn new_server(owner: &str, now: &str) -> Server {
        Server {
            id: crate::util::new_id(),
            name: String::new(),
            description: None,
            icon: None,
            prefix_mode: "always".into(),
            enabled: true,
            tags: vec![],
            team_id: None,
            owner_email: owner.to_owned(),
            visibility: Visibility::Public,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
        }
    }
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct TeamInput {
    #[schema(pattern = "\\S", max_length = 255)]
    pub name: Option<String>,
    pub description: Option<String>,
    #[schema(value_type = Option<Visibility>)]
    pub visibility: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct MemberInput {
    #[schema(pattern = "^[^@\\s]+@[^@\\s]+$")]
    pub email: Option<String>,
    #[schema(value_type = Option<String>, example = "developer", pattern = "^(viewer|member|developer|team_admin|owner)$")]
    pub role: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TokenInput {
    #[schema(pattern = "\\S", max_length = 255)]
    pub name: String,
    pub description: Option<String>,
    #[serde(alias = "expiresInDays")]
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<u32>,
    #[serde(alias = "teamId")]
    pub team_id: Option<String>,
    #[serde(alias = "serverId")]
    pub server_id: Option<String>,
}

impl TokenInput {
    pub fn validate(&self) -> InputResult<()> {
        check_name("name", &self.name)?;
        check_description(self.description.clone())?;
        if let Some(d) = self.expires_in_days
            && (d == 0 || d > 3650)
        {
            return Err(bad("expires_in_days", "must be between 1 and 3650"));
        }
        Ok(())
    }
}

pub fn check_email(field: &str, v: &str) -> InputResult<String> {
    let v = v.trim().to_ascii_lowercase();
    let ok = v.len() <= 255
        && v.split_once('@')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
        && !v.contains(char::is_whitespace);
    if ok {
        Ok(v)
    } else {
        Err(bad(field, "must be an email address"))
    }
}

pub fn team_name(v: &str) -> InputResult<String> {
    check_name("name", v)
}

pub fn description(v: Option<String>) -> InputResult<Option<String>> {
    check_description(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_follow_the_reference_pattern() {
        assert!(check_tool_name("get_weather.v2/x-y").is_ok());
        assert!(check_tool_name("-bad").is_err());
        assert!(check_tool_name("sp ace").is_err());
        assert!(check_tool_name(&"a".repeat(129)).is_err());
        assert!(check_tool_name(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn create_requires_url_for_rest_tools() {
        let mut t = ToolInput::new_tool("o@x", "now");
        let input: ToolInput = serde_json::from_value(json!({"name": "t"})).unwrap();
        assert_eq!(input.apply(&mut t, true).unwrap_err().field, "url");
    }

    #[test]
    fn auth_shapes_normalize() {
        let a: AuthInput =
            serde_json::from_value(json!({"auth_type": "bearer", "token": "abc"})).unwrap();
        assert_eq!(
            a.to_secret("auth").unwrap().unwrap().1,
            json!({"token": "abc"})
        );
        let a: AuthInput =
            serde_json::from_value(json!({"auth_type": "basic", "auth_username": "u"})).unwrap();
        assert_eq!(a.to_secret("auth").unwrap_err().field, "auth.password");
        let a: AuthInput = serde_json::from_value(json!({"auth_type": "authheaders", "auth_header_key": "X-Key", "auth_header_value": "v\r\nInjected: 1"})).unwrap();
        assert!(a.to_secret("auth").is_err());
    }

    #[test]
    fn placement_defaults() {
        let p = PlacementInput::default();
        assert_eq!(p.resolve(None).unwrap(), (None, Visibility::Public));
        let p = PlacementInput {
            team_id: Some("t".into()),
            visibility: None,
        };
        assert_eq!(
            p.resolve(None).unwrap(),
            (Some("t".into()), Visibility::Team)
        );
        let p = PlacementInput {
            team_id: None,
            visibility: Some("team".into()),
        };
        assert_eq!(p.resolve(None).unwrap_err().field, "visibility");
        let p = PlacementInput {
            team_id: None,
            visibility: Some("secret".into()),
        };
        assert!(p.resolve(None).is_err());
    }

    #[test]
    fn tags_and_ids_accept_csv() {
        let t: Tags = serde_json::from_value(json!("A, b,a")).unwrap();
        assert_eq!(t.normalize().unwrap(), vec!["a", "b"]);
        let i: Ids = serde_json::from_value(json!("x,y, x")).unwrap();
        assert_eq!(i.into_vec(), vec!["x", "y"]);
    }
}
