//! The REST API's OpenAPI 3.1 document. Routes are added together with
//! their operations ([`Routes::route`]), so the document describes the
//! router it was built with; payload schemas come from the types the
//! handlers read and write (utoipa derives).

use std::fmt::Write as _;

use axum::routing::MethodRouter;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr, Required,
};
use utoipa::{PartialSchema, ToSchema};

use super::AppState;

/// The shape of every error answer of the REST API.
#[derive(serde::Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code: `bad_request`, `validation_error`, `unauthorized`,
    /// `forbidden`, `not_found`, `conflict`, `payload_too_large`,
    /// `unavailable`, `bad_gateway`, `internal_error`.
    pub error: String,
    pub detail: String,
    /// The rejected field (422 only).
    pub field: Option<String>,
}

/// `{"status": "success", "message": ...}` of deletes and removals.
#[derive(serde::Serialize, ToSchema)]
pub struct Done {
    pub status: String,
    pub message: String,
}

/// Operations and the schemas they name, as routes are added.
#[derive(Default)]
pub struct Doc {
    paths: Paths,
    schemas: Vec<(String, RefOr<Schema>)>,
}

impl Doc {
    /// A reference to `T`'s schema, registered (with what it names) once.
    pub fn component<T: ToSchema>(&mut self) -> RefOr<Schema> {
        let name = T::name().into_owned();
        if !self.schemas.iter().any(|(n, _)| *n == name) {
            self.schemas.push((name.clone(), T::schema()));
            T::schemas(&mut self.schemas);
        }
        Ref::from_schema_name(name).into()
    }

    /// A schema of our own under `name`.
    pub fn named(&mut self, name: &str, schema: impl Into<RefOr<Schema>>) -> RefOr<Schema> {
        if !self.schemas.iter().any(|(n, _)| n == name) {
            self.schemas.push((name.to_owned(), schema.into()));
        }
        Ref::from_schema_name(name).into()
    }

    pub fn add(&mut self, path: &str, method: HttpMethod, op: Operation) {
        self.paths.add_path_operation(path, vec![method], op);
    }

    fn merge(&mut self, other: Doc, prefix: &str) {
        for (path, item) in other.paths.paths {
            let path = format!("{prefix}{path}");
            match self.paths.paths.get_mut(&path) {
                Some(existing) => existing.merge_operations(item),
                None => {
                    self.paths.paths.insert(path, item);
                }
            }
        }
        for (name, schema) in other.schemas {
            if !self.schemas.iter().any(|(n, _)| *n == name) {
                self.schemas.push((name, schema));
            }
        }
    }

    /// The finished document.
    pub fn document(mut self) -> OpenApi {
        // Every error answer names it (`fails`).
        self.component::<ErrorBody>();
        let mut components = ComponentsBuilder::new().security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT made with `mcpgate token create`, or an API token from POST /v1/tokens",
                    ))
                    .build(),
            ),
        );
        for (name, schema) in self.schemas {
            components = components.schema(name, schema);
        }
        OpenApiBuilder::new()
            .info(
                InfoBuilder::new()
                    .title("mcpgate")
                    .version(env!("CARGO_PKG_VERSION"))
                    .description(Some(
                        "The registry REST API of mcpgate, an MCP gateway. Everything under /v1 \
                         is also served without the prefix (deprecated aliases with Deprecation \
                         and Sunset headers). MCP itself is spoken on /mcp (Streamable HTTP), \
                         /sse, /ws and /rpc; see the README.",
                    ))
                    .build(),
            )
            .paths(self.paths)
            .components(Some(components.build()))
            .security(Some([SecurityRequirement::new(
                "bearer",
                Vec::<String>::new(),
            )]))
            .build()
    }
}

/// A router and the operations of its routes.
pub struct Routes {
    pub router: axum::Router<AppState>,
    pub doc: Doc,
}

impl Default for Routes {
    fn default() -> Self {
        Routes {
            router: axum::Router::new(),
            doc: Doc::default(),
        }
    }
}

impl Routes {
    /// Routes `path` and documents its operations.
    pub fn route(
        mut self,
        path: &str,
        methods: MethodRouter<AppState>,
        ops: impl FnOnce(&mut Doc) -> Vec<(HttpMethod, Operation)>,
    ) -> Routes {
        self.router = self.router.route(path, methods);
        for (method, op) in ops(&mut self.doc) {
            self.doc.add(path, method, op);
        }
        self
    }

    pub fn merge(mut self, other: Routes) -> Routes {
        self.router = self.router.merge(other.router);
        self.doc.merge(other.doc, "");
        self
    }

    /// `other`'s operations under `prefix` (its router is returned as is,
    /// for the caller to nest).
    pub fn take_doc(&mut self, other: Doc, prefix: &str) {
        self.doc.merge(other, prefix);
    }
}

/// One operation, built up.
pub struct Op(OperationBuilder);

/// An operation: its id, its tag and what it does.
pub fn op(id: &str, tag: &str, summary: &str) -> Op {
    Op(OperationBuilder::new()
        .operation_id(Some(id))
        .tag(tag)
        .summary(Some(summary)))
}

fn json_content(schema: RefOr<Schema>) -> utoipa::openapi::content::Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

fn error_text(status: u16) -> &'static str {
    match status {
        400 => "Malformed JSON, a body that is not an object, nesting too deep, or a bad query",
        401 => "Missing, malformed, expired or revoked token",
        403 => "Not allowed",
        404 => "Unknown id, or an item the caller may not see",
        409 => "Duplicate name, or an item still referenced",
        413 => "Body over MAX_REQUEST_BODY_BYTES",
        422 => "An invalid field, named in `field`",
        502 => "The upstream could not be reached",
        503 => "The database is unavailable",
        _ => "Error",
    }
}

impl Op {
    pub fn path_param(self, name: &str, what: &str) -> Op {
        Op(self.0.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some(what))
                .schema(Some(String::schema())),
        ))
    }

    pub fn query(self, name: &str, schema: RefOr<Schema>, what: &str) -> Op {
        Op(self.0.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(what))
                .schema(Some(schema)),
        ))
    }

    pub fn required_query(self, name: &str, schema: RefOr<Schema>, what: &str) -> Op {
        Op(self.0.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::True)
                .description(Some(what))
                .schema(Some(schema)),
        ))
    }

    pub fn body(self, schema: RefOr<Schema>) -> Op {
        Op(self.0.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content("application/json", json_content(schema))
                .build(),
        )))
    }

    pub fn answers(self, status: u16, what: &str, schema: RefOr<Schema>) -> Op {
        Op(self.0.response(
            status.to_string(),
            ResponseBuilder::new()
                .description(what)
                .content("application/json", json_content(schema))
                .build(),
        ))
    }

    pub fn answers_text(self, status: u16, what: &str, media: &str) -> Op {
        Op(self.0.response(
            status.to_string(),
            ResponseBuilder::new()
                .description(what)
                .content(
                    media,
                    json_content(ObjectBuilder::new().schema_type(Type::String).into()),
                )
                .build(),
        ))
    }

    /// The error answers this operation can give (401 comes with every
    /// authenticated one).
    pub fn fails(mut self, statuses: &[u16]) -> Op {
        for s in statuses {
            self.0 = self.0.response(
                s.to_string(),
                ResponseBuilder::new()
                    .description(error_text(*s))
                    .content(
                        "application/json",
                        json_content(Ref::from_schema_name("ErrorBody").into()),
                    )
                    .build(),
            );
        }
        self
    }

    /// Needs no token.
    pub fn public(self) -> Op {
        Op(self.0.securities(Some(Vec::<SecurityRequirement>::new())))
    }

    pub fn on(self, method: HttpMethod) -> (HttpMethod, Operation) {
        (method, self.0.build())
    }
}

/// `schema`, or the reference's wrapped shape `{"<key>": schema, "team_id",
/// "visibility"}`.
pub fn bare_or_wrapped(key: &str, schema: RefOr<Schema>) -> RefOr<Schema> {
    let wrapped = ObjectBuilder::new()
        .property(key, schema.clone())
        .required(key)
        .property(
            "team_id",
            ObjectBuilder::new().schema_type(Type::String).build(),
        )
        .property(
            "visibility",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["private", "team", "public"]))
                .build(),
        );
    OneOfBuilder::new().item(schema).item(wrapped).into()
}

pub fn array_of(schema: RefOr<Schema>) -> RefOr<Schema> {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(schema)
        .into()
}

/// A list answer: an array (the next cursor in `X-Next-Cursor`), or with
/// `include_pagination=true` the items and the cursor in the body.
pub fn page_of(item: RefOr<Schema>) -> RefOr<Schema> {
    let paged = ObjectBuilder::new()
        .property("items", array_of(item.clone()))
        .required("items")
        .property(
            "nextCursor",
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                    Type::String,
                    Type::Null,
                ]))
                .build(),
        );
    OneOfBuilder::new().item(array_of(item)).item(paged).into()
}

/// `limit`: 1 to 500.
pub fn page_size() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(500))
        .into()
}

pub fn any_object() -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(Type::Object).into()
}

pub fn string() -> RefOr<Schema> {
    String::schema()
}

pub fn boolean() -> RefOr<Schema> {
    bool::schema()
}

/// A page that renders the document: every operation with its method, path,
/// summary, parameters and answers, in plain HTML (no scripts, so it works
/// where no CDN is reachable).
pub fn render_html(doc: &OpenApi) -> String {
    let mut out = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>mcpgate API</title>\
         <style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}\
         code,.m{font-family:ui-monospace,monospace}.op{border-top:1px solid #ddd;padding:.5rem 0}\
         .m{display:inline-block;min-width:4.5rem;font-weight:bold}.p{color:#555;font-size:90%}</style>\
         </head><body>",
    );
    let info = &doc.info;
    let _ = write!(
        out,
        "<h1>{} {}</h1><p>{}</p><p><a href=\"/openapi.json\">openapi.json</a> (OpenAPI 3.1)</p>",
        escape(&info.title),
        escape(&info.version),
        escape(info.description.as_deref().unwrap_or("")),
    );
    for (path, item) in &doc.paths.paths {
        let ops = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("DELETE", &item.delete),
        ];
        for (method, op) in ops {
            let Some(op) = op else { continue };
            let _ = write!(
                out,
                "<div class=\"op\"><span class=\"m\">{method}</span> <code>{}</code> — {}",
                escape(path),
                escape(op.summary.as_deref().unwrap_or(""))
            );
            if let Some(params) = &op.parameters {
                let names: Vec<String> = params
                    .iter()
                    .map(|p| {
                        let place = match p.parameter_in {
                            ParameterIn::Path => "path",
                            ParameterIn::Query => "query",
                            ParameterIn::Header => "header",
                            ParameterIn::Cookie => "cookie",
                        };
                        format!("<code>{}</code> ({place})", escape(&p.name))
                    })
                    .collect();
                let _ = write!(
                    out,
                    "<div class=\"p\">parameters: {}</div>",
                    names.join(", ")
                );
            }
            let statuses: Vec<&str> = op.responses.responses.keys().map(String::as_str).collect();
            let _ = write!(
                out,
                "<div class=\"p\">answers: {}</div></div>",
                statuses.join(", ")
            );
        }
    }
    out.push_str("</body></html>");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
