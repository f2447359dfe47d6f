//! Registry records as stored, and their public JSON shape (camelCase, as
//! the reference answers). Stored upstream credentials stay sealed and are
//! shown masked.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use sqlx::any::AnyRow;

pub use crate::access::{Owned, TeamRole, Visibility};
use crate::store::{Record, StoreError, Val, col, col_bool, col_json};

/// How the gateway talks to an upstream MCP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, utoipa::ToSchema)]
pub enum Transport {
    #[serde(rename = "STREAMABLEHTTP")]
    StreamableHttp,
    #[serde(rename = "SSE")]
    Sse,
    #[serde(rename = "STDIO")]
    Stdio,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::Sse, Transport::StreamableHttp, Transport::Stdio];

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::StreamableHttp => "STREAMABLEHTTP",
            Transport::Sse => "SSE",
            Transport::Stdio => "STDIO",
        }
    }

    /// The stored name, or the reference's spellings (`streamable-http`,
    /// `streamable_http`, any case).
    pub fn parse(s: &str) -> Option<Transport> {
        let s = s.to_ascii_uppercase().replace(['-', '_'], "");
        Transport::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Where a tool's calls go: an upstream MCP server, or one HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, utoipa::ToSchema)]
pub enum IntegrationType {
    #[serde(rename = "MCP")]
    Mcp,
    #[serde(rename = "REST")]
    Rest,
}

impl IntegrationType {
    pub fn as_str(self) -> &'static str {
        match self {
            IntegrationType::Mcp => "MCP",
            IntegrationType::Rest => "REST",
        }
    }

    pub fn parse(s: &str) -> Option<IntegrationType> {
        match s.to_ascii_uppercase().as_str() {
            "MCP" => Some(IntegrationType::Mcp),
            "REST" => Some(IntegrationType::Rest),
            _ => None,
        }
    }
}

/// Column codecs used by the `record!` macro.
#[allow(clippy::ptr_arg)]
pub mod conv {
    use super::*;

    macro_rules! codec {
        ($name:ident, $ty:ty, |$v:ident| $to:expr, |$row:ident, $t:ident, $c:ident| $from:expr) => {
            pub mod $name {
                use super::*;
                pub fn to_val($v: &$ty) -> Val {
                    $to
                }
                pub fn from_row(
                    $row: &AnyRow,
                    $t: &'static str,
                    $c: &'static str,
                ) -> Result<$ty, StoreError> {
                    $from
                }
            }
        };
    }

    codec!(text, String, |v| Val::Text(Some(v.clone())), |r, t, c| col(
        r, t, c
    ));
    codec!(
        opt_text,
        Option<String>,
        |v| Val::Text(v.clone()),
        |r, t, c| col(r, t, c)
    );
    codec!(int, i64, |v| Val::Int(Some(*v)), |r, t, c| col(r, t, c));
    codec!(opt_int, Option<i64>, |v| Val::Int(*v), |r, t, c| col(
        r, t, c
    ));
    codec!(flag, bool, |v| Val::from(*v), |r, t, c| col_bool(r, t, c));
    codec!(
        json,
        Value,
        |v| Val::Text(Some(v.to_string())),
        |r, t, c| col_json(r, t, c)
    );
    codec!(
        strings,
        Vec<String>,
        |v| Val::Text(Some(serde_json::to_string(v).unwrap_or_default())),
        |r, t, c| col_json(r, t, c)
    );
    codec!(
        opt_json,
        Option<Value>,
        |v| Val::Text(v.as_ref().map(|v| v.to_string())),
        |r, t, c| {
            let s: Option<String> = col(r, t, c)?;
            s.map(|s| serde_json::from_str(&s))
                .transpose()
                .map_err(|e| StoreError::Corrupt {
                    table: t,
                    column: c,
                    message: e.to_string(),
                })
        }
    );
    codec!(
        transport,
        Transport,
        |v| Val::from(v.as_str()),
        |r, t, c| {
            let s: String = col(r, t, c)?;
            Transport::parse(&s).ok_or_else(|| StoreError::Corrupt {
                table: t,
                column: c,
                message: format!("unknown transport {s}"),
            })
        }
    );
    codec!(
        integration,
        IntegrationType,
        |v| Val::from(v.as_str()),
        |r, t, c| {
            let s: String = col(r, t, c)?;
            IntegrationType::parse(&s).ok_or_else(|| StoreError::Corrupt {
                table: t,
                column: c,
                message: format!("unknown integration type {s}"),
            })
        }
    );
    codec!(vis, Visibility, |v| Val::from(v.as_str()), |r, t, c| {
        let s: String = col(r, t, c)?;
        Visibility::parse(&s).ok_or_else(|| StoreError::Corrupt {
            table: t,
            column: c,
            message: format!("unknown visibility {s}"),
        })
    });
}

macro_rules! record {
    ($ty:ident, $table:literal, { $($field:ident : $kind:ident),* $(,)? }) => {
        impl Record for $ty {
            const TABLE: &'static str = $table;
            const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),*];
            fn id(&self) -> &str {
                &self.id
            }
            fn values(&self) -> Vec<Val> {
                vec![$(conv::$kind::to_val(&self.$field)),*]
            }
            fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
                Ok($ty { $($field: conv::$kind::from_row(row, $table, stringify!($field))?),* })
            }
        }
    };
}

fn mask<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("*****"),
        None => s.serialize_none(),
    }
}

macro_rules! owned {
    ($ty:ident) => {
        owned!($ty, |_s| None);
    };
    ($ty:ident, gateway) => {
        owned!($ty, |s| s.gateway_id.as_deref());
    };
    ($ty:ident, |$s:ident| $gw:expr) => {
        impl Owned for $ty {
            fn team_id(&self) -> Option<&str> {
                self.team_id.as_deref()
            }
            fn owner_email(&self) -> &str {
                &self.owner_email
            }
            fn visibility(&self) -> Visibility {
                self.visibility
            }
            fn enabled(&self) -> bool {
                self.enabled
            }
            fn tags(&self) -> &[String] {
                &self.tags
            }
            fn gateway_id(&self) -> Option<&str> {
                let $s = self;
                $gw
            }
        }
    };
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    pub id: String,
    pub name: String,
    pub original_name: String,
    pub custom_name: Option<String>,
    pub display_name: Option<String>,
    pub title: Option<String>,
    pub url: Option<String>,
    pub description: Option<String>,
    pub integration_type: IntegrationType,
    pub request_type: String,
    pub headers: Value,
    pub input_schema: Value,
    pub output_schema: Option<Value>,
    pub annotations: Value,
    pub jsonpath_filter: Option<String>,
    pub auth_type: Option<String>,
    #[serde(serialize_with = "mask")]
    pub auth_value: Option<String>,
    pub timeout_ms: Option<i64>,
    pub enabled: bool,
    pub reachable: bool,
    pub gateway_id: Option<String>,
    pub tags: Vec<String>,
    pub team_id: Option<String>,
    pub owner_email: String,
    pub visibility: Visibility,
    pub created_at: String,
    pub updated_at: String,
}

record!(Tool, "tools", {
    id: text, name: text, original_name: text, custom_name: opt_text, display_name: opt_text,
    title: opt_text, url: opt_text, description: opt_text, integration_type: integration,
    request_type: text, headers: json, input_schema: json, output_schema: opt_json,
    annotations: json, jsonpath_filter: opt_text, auth_type: opt_text, auth_value: opt_text,
    timeout_ms: opt_int, enabled: flag, reachable: flag, gateway_id: opt_text, tags: strings,
    team_id: opt_text, owner_email: text, visibility: vis, created_at: text, updated_at: text,
});
owned!(Tool, gateway);

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Gateway {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub url: String,
    pub description: Option<String>,
    pub transport: Transport,
    pub capabilities: Value,
    pub passthrough_headers: Vec<String>,
    pub auth_type: Option<String>,
    #[serde(serialize_with = "mask")]
    pub auth_value: Option<String>,
    pub enabled: bool,
    pub reachable: bool,
    pub last_seen: Option<String>,
    pub last_error: Option<String>,
    pub tags: Vec<String>,
    pub team_id: Option<String>,
    pub owner_email: String,
    pub visibility: Visibility,
    pub created_at: String,
    pub updated_at: String,
}

record!(Gateway, "gateways", {
    id: text, name: text, slug: text, url: text, description: opt_text, transport: transport,
    capabilities: json, passthrough_headers: strings, auth_type: opt_text, auth_value: opt_text,
    enabled: flag, reachable: flag, last_seen: opt_text, last_error: opt_text, tags: strings, team_id: opt_text,
    owner_email: text, visibility: vis, created_at: text, updated_at: text,
});
owned!(Gateway);

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    pub id: String,
    pub uri: String,
    pub name: String,
    pub description: Option<String>,
    pub mime_type: Option<String>,
    pub size: Option<i64>,
    pub uri_template: Option<String>,
    #[serde(skip)]
    pub text_content: Option<String>,
    pub gateway_id: Option<String>,
    pub enabled: bool,
    pub tags: Vec<String>,
    pub team_id: Option<String>,
    pub owner_email: String,
    pub visibility: Visibility,
    pub created_at: String,
    pub updated_at: String,
}

record!(Resource, "resources", {
    id: text, uri: text, name: text, description: opt_text, mime_type: opt_text, size: opt_int,
    uri_template: opt_text, text_content: opt_text, gateway_id: opt_text, enabled: flag,
    tags: strings, team_id: opt_text, owner_email: text, visibility: vis, created_at: text,
    updated_at: text,
});
owned!(Resource, gateway);

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Prompt {
    pub id: String,
    pub name: String,
    pub original_name: String,
    pub description: Option<String>,
    pub template: String,
    #[serde(rename = "arguments")]
    pub argument_schema: Value,
    pub gateway_id: Option<String>,
    pub enabled: bool,
    pub tags: Vec<String>,
    pub team_id: Option<String>,
    pub owner_email: String,
    pub visibility: Visibility,
    pub created_at: String,
    pub updated_at: String,
}

record!(Prompt, "prompts", {
    id: text, name: text, original_name: text, description: opt_text, template: text,
    argument_schema: json, gateway_id: opt_text, enabled: flag, tags: strings,
    team_id: opt_text, owner_email: text, visibility: vis, created_at: text, updated_at: text,
});
owned!(Prompt, gateway);

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Server {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub icon: Option<String>,
    pub prefix_mode: String,
    pub enabled: bool,
    pub tags: Vec<String>,
    pub team_id: Option<String>,
    pub owner_email: String,
    pub visibility: Visibility,
    pub created_at: String,
    pub updated_at: String,
}

record!(Server, "servers", {
    id: text, name: text, description: opt_text, icon: opt_text, prefix_mode: text, enabled: flag, tags: strings,
    team_id: opt_text, owner_email: text, visibility: vis, created_at: text, updated_at: text,
});
owned!(Server);

/// What a virtual server bundles.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Associations {
    pub associated_tools: Vec<String>,
    pub associated_resources: Vec<String>,
    pub associated_prompts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Team {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    pub created_by: String,
    pub is_personal: bool,
    pub visibility: Visibility,
    pub is_active: bool,
    pub created_at: String,
    pub updated_at: String,
}

record!(Team, "teams", {
    id: text, name: text, slug: text, description: opt_text, created_by: text,
    is_personal: flag, visibility: vis, is_active: flag, created_at: text, updated_at: text,
});

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamMember {
    #[serde(skip)]
    pub id: String,
    pub team_id: String,
    pub user_email: String,
    pub role: String,
    pub joined_at: String,
}

// team_members has a composite key; `id` mirrors team_id for the Record seam
// and is never written on its own.
#[allow(clippy::misnamed_getters)]
impl Record for TeamMember {
    const TABLE: &'static str = "team_members";
    const COLUMNS: &'static [&'static str] = &["team_id", "user_email", "role", "joined_at"];
    fn id(&self) -> &str {
        &self.team_id
    }
    fn values(&self) -> Vec<Val> {
        vec![
            self.team_id.as_str().into(),
            self.user_email.as_str().into(),
            self.role.as_str().into(),
            self.joined_at.as_str().into(),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        let team_id: String = col(row, "team_members", "team_id")?;
        Ok(TeamMember {
            id: team_id.clone(),
            team_id,
            user_email: col(row, "team_members", "user_email")?,
            role: col(row, "team_members", "role")?,
            joined_at: col(row, "team_members", "joined_at")?,
        })
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub user_email: String,
    pub team_id: Option<String>,
    pub jti: String,
    #[serde(skip)]
    pub token_hash: String,
    pub server_id: Option<String>,
    pub expires_at: Option<String>,
    pub last_used: Option<String>,
    pub is_active: bool,
    pub created_at: String,
}

record!(ApiToken, "api_tokens", {
    id: text, name: text, description: opt_text, user_email: text, team_id: opt_text, jti: text,
    token_hash: text, server_id: opt_text, expires_at: opt_text, last_used: opt_text,
    is_active: flag, created_at: text,
});

#[derive(Debug, Clone)]
pub struct User {
    pub email: String,
    pub is_admin: bool,
    pub is_active: bool,
}

impl Record for User {
    const TABLE: &'static str = "users";
    const COLUMNS: &'static [&'static str] =
        &["email", "full_name", "is_admin", "is_active", "created_at"];
    fn id(&self) -> &str {
        &self.email
    }
    fn values(&self) -> Vec<Val> {
        vec![
            self.email.as_str().into(),
            Val::Text(None),
            self.is_admin.into(),
            self.is_active.into(),
            crate::util::now().into(),
        ]
    }
    fn from_row(row: &AnyRow) -> Result<Self, StoreError> {
        Ok(User {
            email: col(row, "users", "email")?,
            is_admin: col_bool(row, "users", "is_admin")?,
            is_active: col_bool(row, "users", "is_active")?,
        })
    }
}

pub const TOOL_NAME_MAX: usize = 128;
pub const NAME_MAX: usize = 255;
pub const DESCRIPTION_MAX: usize = 8192;
pub const URL_MAX: usize = 2048;
pub const TEMPLATE_MAX: usize = 65536;
pub const CONTENT_MAX: usize = 1 << 20;
