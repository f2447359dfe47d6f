//! Create, read, update, delete and state changes for the five registry
//! collections, written once over the [`ItemKind`] trait. Writes go through
//! the registry's write door (`st.updater`).

use std::future::Future;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use super::extract::{JsonBody, QueryParams, typed};
use super::openapi::{
    Doc, Done, Routes, any_object, array_of, bare_or_wrapped, boolean, op, page_of, page_size,
    string,
};
use crate::access::Principal;
use crate::federation::discovery;
use crate::federation::upstream::UpstreamError;
use crate::registry::discovered::Discovery;
use crate::registry::input::*;
use crate::registry::model::*;
use crate::registry::snapshot::{Collection, Entry, Snapshot};
use crate::store::{Record, StoreError};
use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::{RefOr, schema::Schema};

/// What a write carries besides the record itself: a credential to seal,
/// and (servers) the items to bundle.
#[derive(Default)]
pub struct WriteExtras {
    pub auth: Option<(String, Value)>,
    pub members: AssociationInput,
}

pub trait ItemKind: Owned + Record + Clone + Send + Sync + utoipa::ToSchema + 'static {
    /// The key of the wrapped create shape (`{"tool": {...}}`).
    const WRAPPER: &'static str;
    const LABEL: &'static str;
    type Input: DeserializeOwned + Send + utoipa::ToSchema;

    /// The schema of the item as the API answers it.
    fn answer_schema(doc: &mut Doc) -> RefOr<Schema> {
        doc.component::<Self>()
    }

    fn collection(s: &Snapshot) -> &Collection<Self>;
    fn new_item(owner: &str, now: &str) -> Self;
    fn placement(input: &Self::Input) -> &PlacementInput;
    fn apply(input: Self::Input, item: &mut Self, create: bool) -> Result<WriteExtras, InputError>;
    fn set_common(&mut self, team: Option<String>, vis: Visibility, now: &str);
    fn set_enabled(&mut self, enabled: bool);
    fn set_auth(&mut self, _kind: String, _sealed: String) {}
    fn name(&self) -> &str;

    /// Checks references to other registry items.
    fn check_refs(
        &self,
        _snap: &Snapshot,
        _p: &Principal,
        _extras: &WriteExtras,
    ) -> Result<(), ApiError> {
        Ok(())
    }

    /// Writes the item through the write door. `Ok(false)`: the item to
    /// update is gone.
    fn write(
        st: &AppState,
        item: &Self,
        _extras: &WriteExtras,
        create: bool,
    ) -> impl Future<Output = Result<bool, ApiError>> + Send {
        async move { st.updater.save(item, create).await.map_err(conflict(item)) }
    }

    fn after_delete(_st: &AppState, _id: &str) -> impl Future<Output = ()> + Send {
        async {}
    }
}

macro_rules! common_setters {
    () => {
        fn set_common(&mut self, team: Option<String>, vis: Visibility, now: &str) {
            self.team_id = team;
            self.visibility = vis;
            self.updated_at = now.to_owned();
        }
        fn set_enabled(&mut self, enabled: bool) {
            self.enabled = enabled;
        }
        fn name(&self) -> &str {
            &self.name
        }
    };
}

/// What every kind says the same way: its names, input, collection,
/// constructor and placement.
macro_rules! item_kind {
    ($label:literal, $input:ty, $field:ident, $new:path) => {
        const WRAPPER: &'static str = $label;
        const LABEL: &'static str = $label;
        type Input = $input;
        fn collection(s: &Snapshot) -> &Collection<Self> {
            &s.$field
        }
        fn new_item(owner: &str, now: &str) -> Self {
            $new(owner, now)
        }
        fn placement(input: &$input) -> &PlacementInput {
            &input.placement
        }
        common_setters!();
    };
}

/// Kinds that store a sealed upstream credential.
macro_rules! sealed_auth {
    ($input:ty) => {
        fn apply(input: $input, item: &mut Self, create: bool) -> Result<WriteExtras, InputError> {
            Ok(WriteExtras {
                auth: input.apply(item, create)?,
                ..WriteExtras::default()
            })
        }
        fn set_auth(&mut self, kind: String, sealed: String) {
            self.auth_type = Some(kind);
            self.auth_value = Some(sealed);
        }
    };
}

/// Kinds whose input carries nothing but the item.
macro_rules! plain_input {
    ($input:ty) => {
        fn apply(input: $input, item: &mut Self, create: bool) -> Result<WriteExtras, InputError> {
            input.apply(item, create)?;
            Ok(WriteExtras::default())
        }
    };
}

impl ItemKind for Tool {
    item_kind!("tool", ToolInput, tools, ToolInput::new_tool);
    sealed_auth!(ToolInput);
    fn check_refs(
        &self,
        snap: &Snapshot,
        p: &Principal,
        _extras: &WriteExtras,
    ) -> Result<(), ApiError> {
        if let Some(g) = &self.gateway_id
            && !snap.gateways.get(g).is_some_and(|e| p.can_see(&e.item))
        {
            return Err(bad("gateway_id", format!("unknown gateway {g}")).into());
        }
        Ok(())
    }
}

impl ItemKind for Gateway {
    item_kind!("gateway", GatewayInput, gateways, GatewayInput::new_gateway);
    sealed_auth!(GatewayInput);
    fn check_refs(
        &self,
        _snap: &Snapshot,
        p: &Principal,
        _extras: &WriteExtras,
    ) -> Result<(), ApiError> {
        if self.transport == Transport::Stdio && !p.is_admin {
            return Err(ApiError::Forbidden("only platform admins may register STDIO gateways (they run a command on the gateway host)".into()));
        }
        Ok(())
    }
    /// The upstream is asked what it offers before anything is written, so
    /// the gateway and its items land in one transaction: a gateway whose
    /// upstream cannot be reached is refused (create) or recorded as
    /// unreachable with the error (update).
    async fn write(
        st: &AppState,
        gw: &Self,
        _extras: &WriteExtras,
        create: bool,
    ) -> Result<bool, ApiError> {
        st.federation.forget(&gw.id).await;
        if !gw.enabled {
            return st.updater.save(gw, create).await.map_err(conflict(gw));
        }
        let discovery = match discovery::discover(&st.federation, gw).await {
            Ok(d) => Discovery::Offered(d),
            // What the client sent names an upstream that cannot be used:
            // its request is what must change (422 on `url`), not a failure
            // of this gateway.
            Err(e @ UpstreamError::Refused(..)) => {
                st.federation.forget(&gw.id).await;
                return Err(bad("url", e.to_string()).into());
            }
            Err(e) if create => {
                st.federation.forget(&gw.id).await;
                return Err(bad("url", format!("cannot register gateway {}: {e}", gw.name)).into());
            }
            Err(e) => {
                tracing::warn!(gateway = %gw.name, error = %e, "gateway updated but its upstream did not answer");
                Discovery::Unreachable {
                    error: e.to_string(),
                }
            }
        };
        let separator = &st.federation.cfg.separator;
        let saved = st
            .updater
            .save_gateway(gw, create, discovery, separator)
            .await;
        if saved.is_err() {
            st.federation.forget(&gw.id).await;
        }
        saved.map_err(conflict(gw))
    }
    async fn after_delete(st: &AppState, id: &str) {
        st.federation.forget(id).await;
    }
}

impl ItemKind for Resource {
    item_kind!(
        "resource",
        ResourceInput,
        resources,
        ResourceInput::new_resource
    );
    plain_input!(ResourceInput);
}

impl ItemKind for Prompt {
    item_kind!("prompt", PromptInput, prompts, PromptInput::new_prompt);
    plain_input!(PromptInput);
}

fn check_ids<T: Owned>(
    field: &str,
    ids: Option<&Vec<String>>,
    coll: &Collection<T>,
    p: &Principal,
) -> Result<(), ApiError> {
    for id in ids.into_iter().flatten() {
        if !coll.get(id).is_some_and(|e| p.can_see(&e.item)) {
            return Err(bad(field, format!("unknown id {id}")).into());
        }
    }
    Ok(())
}

impl ItemKind for Server {
    item_kind!("server", ServerInput, servers, ServerInput::new_server);
    /// A server is answered with the ids it bundles.
    fn answer_schema(doc: &mut Doc) -> RefOr<Schema> {
        let server = doc.component::<Server>();
        let bundle = doc.component::<Associations>();
        doc.named(
            "ServerWithAssociations",
            utoipa::openapi::schema::AllOfBuilder::new()
                .item(server)
                .item(bundle),
        )
    }
    fn apply(input: ServerInput, item: &mut Self, create: bool) -> Result<WriteExtras, InputError> {
        Ok(WriteExtras {
            members: input.apply(item, create)?,
            ..WriteExtras::default()
        })
    }
    fn check_refs(
        &self,
        snap: &Snapshot,
        p: &Principal,
        extras: &WriteExtras,
    ) -> Result<(), ApiError> {
        check_ids(
            "associated_tools",
            extras.members.tools.as_ref(),
            &snap.tools,
            p,
        )?;
        check_ids(
            "associated_resources",
            extras.members.resources.as_ref(),
            &snap.resources,
            p,
        )?;
        check_ids(
            "associated_prompts",
            extras.members.prompts.as_ref(),
            &snap.prompts,
            p,
        )
    }
    async fn write(
        st: &AppState,
        server: &Self,
        extras: &WriteExtras,
        create: bool,
    ) -> Result<bool, ApiError> {
        st.updater
            .save_server(server, create, &extras.members)
            .await
            .map_err(conflict(server))
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    include_inactive: bool,
    tags: Option<String>,
    team_id: Option<String>,
    visibility: Option<String>,
    gateway_id: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
    #[serde(default)]
    include_pagination: bool,
}

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;

/// Serializes pre-rendered entries as a JSON array without re-serializing them.
pub fn json_array<'a>(items: impl Iterator<Item = &'a serde_json::value::RawValue>) -> String {
    let mut out = String::from("[");
    for (i, raw) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(raw.get());
    }
    out.push(']');
    out
}

pub fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

fn entry_response<T>(status: StatusCode, e: &Entry<T>) -> Response {
    json_response(status, e.json.get().to_owned())
}

/// A page of visible items, filtered and cursor-paginated, from the snapshot.
pub fn page<'s, T: Owned + Record>(
    coll: &'s Collection<T>,
    p: &Principal,
    q: &ListQuery,
) -> Result<(Vec<&'s Entry<T>>, Option<String>), ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(bad("limit", format!("must be between 1 and {MAX_LIMIT}")).into());
    }
    let visibility = match q.visibility.as_deref() {
        None | Some("") => None,
        Some(v) => Some(
            Visibility::parse(v)
                .ok_or_else(|| bad("visibility", "must be private, team or public"))?,
        ),
    };
    let tags: Vec<String> = q
        .tags
        .as_deref()
        .map(|t| {
            t.split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut next = None;
    for e in coll.after(q.cursor.as_deref()) {
        let it = &e.item;
        let keep = (q.include_inactive || it.enabled())
            && p.can_see(it)
            && q.team_id.as_deref().is_none_or(|t| it.team_id() == Some(t))
            && visibility.is_none_or(|v| it.visibility() == v)
            && q.gateway_id
                .as_deref()
                .is_none_or(|g| it.gateway_id() == Some(g))
            && (tags.is_empty() || it.tags().iter().any(|t| tags.contains(t)));
        if !keep {
            continue;
        }
        if out.len() == limit {
            next = out.last().map(|l: &&Entry<T>| l.item.id().to_owned());
            break;
        }
        out.push(&**e);
    }
    Ok((out, next))
}

pub fn list_response<T: Owned>(
    entries: Vec<&Entry<T>>,
    next: Option<String>,
    paginated: bool,
) -> Response {
    let array = json_array(entries.iter().map(|e| &*e.json));
    if paginated {
        let next = serde_json::to_string(&next).expect("string serializes");
        return json_response(
            StatusCode::OK,
            format!("{{\"items\":{array},\"nextCursor\":{next}}}"),
        );
    }
    let mut resp = json_response(StatusCode::OK, array);
    if let Some(n) = next
        && let Ok(v) = HeaderValue::from_str(&n)
    {
        resp.headers_mut().insert("x-next-cursor", v);
    }
    resp
}

async fn list<K: ItemKind>(
    State(st): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Response, ApiError> {
    let snap = st.registry.snapshot();
    let (entries, next) = page(K::collection(&snap), &p, &q)?;
    Ok(list_response(entries, next, q.include_pagination))
}

/// The visible entry with this id, or 404 (invisible items do not exist).
fn visible<'s, K: ItemKind>(
    snap: &'s Snapshot,
    p: &Principal,
    id: &str,
) -> Result<&'s Arc<Entry<K>>, ApiError> {
    K::collection(snap)
        .get(id)
        .filter(|e| p.can_see(&e.item))
        .ok_or_else(|| ApiError::not_found(K::LABEL, id))
}

async fn get_one<K: ItemKind>(
    State(st): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let snap = st.registry.snapshot();
    Ok(entry_response(
        StatusCode::OK,
        visible::<K>(&snap, &p, &id)?,
    ))
}

fn check_team(snap: &Snapshot, team: Option<&str>) -> Result<(), ApiError> {
    if let Some(t) = team
        && snap.teams.get(t).is_none()
    {
        return Err(bad("team_id", format!("unknown team {t}")).into());
    }
    Ok(())
}

fn conflict<K: ItemKind>(item: &K) -> impl FnOnce(StoreError) -> ApiError + '_ {
    move |e| match e {
        StoreError::Conflict(_) => ApiError::Conflict(format!(
            "a {} named {} already exists here",
            K::LABEL,
            item.name()
        )),
        other => other.into(),
    }
}

/// Seals credentials, checks references and writes `item` through the
/// write door, then answers with the stored item from the new snapshot.
async fn save<K: ItemKind>(
    st: &AppState,
    p: &Principal,
    mut item: K,
    extras: WriteExtras,
    create: bool,
) -> Result<Response, ApiError> {
    let snap = st.registry.snapshot();
    item.check_refs(&snap, p, &extras)?;
    if let Some((kind, doc)) = &extras.auth {
        item.set_auth(kind.clone(), st.sealer.seal(doc.to_string().as_bytes()));
    }
    if !K::write(st, &item, &extras, create).await? {
        return Err(ApiError::not_found(K::LABEL, item.id()));
    }
    let snap = st.registry.snapshot();
    let status = if create {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    match K::collection(&snap).get(item.id()) {
        Some(e) => Ok(entry_response(status, e)),
        None => Err(ApiError::Unavailable(
            "written, but the registry could not be reloaded".into(),
        )),
    }
}

async fn create<K: ItemKind>(
    State(st): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let input: K::Input = typed(body.unwrap_as(K::WRAPPER))?;
    let (team, vis) = K::placement(&input).resolve(None)?;
    check_team(&st.registry.snapshot(), team.as_deref())?;
    p.can_create(team.as_deref(), vis)
        .map_err(|d| ApiError::Forbidden(d.0))?;
    let now = crate::util::now();
    let mut item = K::new_item(&p.email, &now);
    let extras = K::apply(input, &mut item, true)?;
    item.set_common(team, vis, &now);
    save(&st, &p, item, extras, true).await
}

async fn update<K: ItemKind>(
    State(st): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let input: K::Input = typed(body.unwrap_as(K::WRAPPER))?;
    let snap = st.registry.snapshot();
    let current = visible::<K>(&snap, &p, &id)?;
    if !p.can_modify(&current.item) {
        return Err(ApiError::Forbidden(format!(
            "not allowed to change this {}",
            K::LABEL
        )));
    }
    let was = (current.item.team_id(), current.item.visibility());
    let (team, vis) = K::placement(&input).resolve(Some(was))?;
    if (team.as_deref(), vis) != was {
        check_team(&snap, team.as_deref())?;
        p.can_create(team.as_deref(), vis)
            .map_err(|d| ApiError::Forbidden(d.0))?;
    }
    let mut item = current.item.clone();
    let extras = K::apply(input, &mut item, false)?;
    item.set_common(team, vis, &crate::util::now());
    save(&st, &p, item, extras, false).await
}

async fn delete<K: ItemKind>(
    State(st): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let snap = st.registry.snapshot();
    let current = visible::<K>(&snap, &p, &id)?;
    if !p.can_modify(&current.item) {
        return Err(ApiError::Forbidden(format!(
            "not allowed to delete this {}",
            K::LABEL
        )));
    }
    if !st.updater.delete::<K>(&id).await? {
        return Err(ApiError::not_found(K::LABEL, &id));
    }
    K::after_delete(&st, &id).await;
    Ok(axum::Json(serde_json::json!({
        "status": "success",
        "message": format!("{} {id} deleted", K::LABEL),
    }))
    .into_response())
}

#[derive(Deserialize)]
struct StateQuery {
    activate: Option<bool>,
}

async fn set_state<K: ItemKind>(
    State(st): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<StateQuery>,
) -> Result<Response, ApiError> {
    let activate = q.activate.ok_or_else(|| {
        ApiError::BadRequest("query parameter `activate=true|false` is required".into())
    })?;
    let snap = st.registry.snapshot();
    let current = visible::<K>(&snap, &p, &id)?;
    if !p.can_modify(&current.item) {
        return Err(ApiError::Forbidden(format!(
            "not allowed to change this {}",
            K::LABEL
        )));
    }
    let mut item = current.item.clone();
    item.set_enabled(activate);
    let (team, vis) = (item.team_id().map(str::to_owned), item.visibility());
    item.set_common(team, vis, &crate::util::now());
    save(&st, &p, item, WriteExtras::default(), false).await
}

#[derive(Debug, Clone, Copy)]
enum Member {
    Tools,
    Resources,
    Prompts,
}

async fn server_members(
    st: AppState,
    p: Arc<Principal>,
    id: String,
    q: ListQuery,
    which: Member,
) -> Result<Response, ApiError> {
    let snap = st.registry.snapshot();
    visible::<Server>(&snap, &p, &id)?;
    let a = snap.associations.get(&id).cloned().unwrap_or_default();
    let keep = |e_enabled: bool, visible: bool| visible && (q.include_inactive || e_enabled);
    let body = match which {
        Member::Tools => json_array(
            a.associated_tools
                .iter()
                .filter_map(|i| snap.tools.get(i))
                .filter(|e| keep(e.item.enabled, p.can_see(&e.item)))
                .map(|e| &*e.json),
        ),
        Member::Resources => json_array(
            a.associated_resources
                .iter()
                .filter_map(|i| snap.resources.get(i))
                .filter(|e| keep(e.item.enabled, p.can_see(&e.item)))
                .map(|e| &*e.json),
        ),
        Member::Prompts => json_array(
            a.associated_prompts
                .iter()
                .filter_map(|i| snap.prompts.get(i))
                .filter(|e| keep(e.item.enabled, p.can_see(&e.item)))
                .map(|e| &*e.json),
        ),
    };
    Ok(json_response(StatusCode::OK, body))
}

macro_rules! member_handler {
    ($name:ident, $which:expr) => {
        async fn $name(
            State(st): State<AppState>,
            Extension(p): Extension<Arc<Principal>>,
            Path(id): Path<String>,
            QueryParams(q): QueryParams<ListQuery>,
        ) -> Result<Response, ApiError> {
            server_members(st, p, id, q, $which).await
        }
    };
}
member_handler!(server_tools, Member::Tools);
member_handler!(server_resources, Member::Resources);
member_handler!(server_prompts, Member::Prompts);

/// `POST /gateways/{id}/tools/refresh`: discover the upstream again.
async fn refresh_gateway(
    State(st): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let snap = st.registry.snapshot();
    let gw = visible::<Gateway>(&snap, &p, &id)?;
    if !p.can_modify(&gw.item) {
        return Err(ApiError::Forbidden(
            "not allowed to refresh this gateway".into(),
        ));
    }
    discovery::refresh(&st.federation, &st.updater, &id)
        .await
        .map_err(|e| match e {
            discovery::RefreshError::Store(s) => ApiError::from(s),
            discovery::RefreshError::UnknownGateway(id) => ApiError::not_found("gateway", &id),
            other => ApiError::BadGateway(other.to_string()),
        })?;
    let snap = st.registry.snapshot();
    let count = |g: Option<&str>| g == Some(id.as_str());
    Ok(axum::Json(serde_json::json!({
        "status": "success",
        "toolCount": snap.tools.iter().filter(|e| count(e.item.gateway_id.as_deref())).count(),
        "resourceCount": snap.resources.iter().filter(|e| count(e.item.gateway_id.as_deref())).count(),
        "promptCount": snap.prompts.iter().filter(|e| count(e.item.gateway_id.as_deref())).count(),
    }))
    .into_response())
}

/// The list filters every collection takes.
fn list_filters(o: super::openapi::Op) -> super::openapi::Op {
    o.query("include_inactive", boolean(), "include disabled items")
        .query("tags", string(), "comma-separated; any match")
        .query("team_id", string(), "only this team's items")
        .query("visibility", string(), "private, team or public")
        .query("gateway_id", string(), "only items of this gateway")
        .query("limit", page_size(), "page size, 1 to 500 (default 50)")
        .query("cursor", string(), "the X-Next-Cursor of the previous page")
        .query(
            "include_pagination",
            boolean(),
            "answer {\"items\": [...], \"nextCursor\": ...} instead of an array",
        )
}

fn crud<K: ItemKind>(r: Routes, base: &str) -> Routes {
    let label = K::LABEL;
    let tag = format!("{label}s");
    let (one, many) = (label.to_owned(), tag.clone());
    r.route(base, get(list::<K>).post(create::<K>), move |doc| {
        let item = K::answer_schema(doc);
        let input = doc.component::<K::Input>();
        vec![
            list_filters(op(
                &format!("list_{many}"),
                &many,
                &format!("List the visible {many}"),
            ))
            .answers(200, &format!("The {many}"), page_of(item.clone()))
            .fails(&[400, 401, 422])
            .on(HttpMethod::Get),
            op(&format!("create_{one}"), &many, &format!("Create a {one}"))
                .body(bare_or_wrapped(K::WRAPPER, input))
                .answers(201, &format!("The {one} as stored"), item)
                .fails(&[400, 401, 403, 409, 413, 422, 503])
                .on(HttpMethod::Post),
        ]
    })
    .route(
        &format!("{base}/{{id}}"),
        get(get_one::<K>).put(update::<K>).delete(delete::<K>),
        {
            let (one, many) = (label.to_owned(), tag.clone());
            move |doc| {
                let item = K::answer_schema(doc);
                let input = doc.component::<K::Input>();
                let done = doc.component::<Done>();
                let id = format!("the {one}'s id");
                vec![
                    op(&format!("get_{one}"), &many, &format!("Get a {one}"))
                        .path_param("id", &id)
                        .answers(200, &format!("The {one}"), item.clone())
                        .fails(&[401, 404])
                        .on(HttpMethod::Get),
                    op(
                        &format!("update_{one}"),
                        &many,
                        &format!("Change a {one} (only the fields given)"),
                    )
                    .path_param("id", &id)
                    .body(bare_or_wrapped(K::WRAPPER, input))
                    .answers(200, &format!("The {one} as stored"), item)
                    .fails(&[400, 401, 403, 404, 409, 413, 422, 503])
                    .on(HttpMethod::Put),
                    op(&format!("delete_{one}"), &many, &format!("Delete a {one}"))
                        .path_param("id", &id)
                        .answers(200, "Deleted", done)
                        .fails(&[401, 403, 404, 409, 503])
                        .on(HttpMethod::Delete),
                ]
            }
        },
    )
    .route(&format!("{base}/{{id}}/state"), post(set_state::<K>), {
        let (one, many) = (label.to_owned(), tag);
        move |doc| {
            let item = K::answer_schema(doc);
            vec![
                op(
                    &format!("set_{one}_state"),
                    &many,
                    &format!("Enable or disable a {one}"),
                )
                .path_param("id", &format!("the {one}'s id"))
                .required_query("activate", boolean(), "true to enable, false to disable")
                .answers(200, &format!("The {one}"), item)
                .fails(&[400, 401, 403, 404, 503])
                .on(HttpMethod::Post),
            ]
        }
    })
}

pub fn routes() -> Routes {
    let r = Routes::default();
    let r = crud::<Tool>(r, "/tools");
    let r = crud::<Gateway>(r, "/gateways");
    let r = crud::<Resource>(r, "/resources");
    let r = crud::<Prompt>(r, "/prompts");
    let r = crud::<Server>(r, "/servers");
    r.route(
        "/gateways/{id}/tools/refresh",
        post(refresh_gateway),
        |_| {
            vec![
                op(
                    "refresh_gateway",
                    "gateways",
                    "Discover a gateway's tools, resources and prompts again",
                )
                .path_param("id", "the gateway's id")
                .answers(200, "Counts of what the gateway now offers", any_object())
                .fails(&[401, 403, 404, 502, 503])
                .on(HttpMethod::Post),
            ]
        },
    )
    .route("/servers/{id}/tools", get(server_tools), |doc| {
        let t = doc.component::<Tool>();
        vec![bundled("tools", t)]
    })
    .route("/servers/{id}/resources", get(server_resources), |doc| {
        let t = doc.component::<Resource>();
        vec![bundled("resources", t)]
    })
    .route("/servers/{id}/prompts", get(server_prompts), |doc| {
        let t = doc.component::<Prompt>();
        vec![bundled("prompts", t)]
    })
}

fn bundled(what: &str, item: RefOr<Schema>) -> (HttpMethod, utoipa::openapi::path::Operation) {
    op(
        &format!("server_{what}"),
        "servers",
        &format!("The {what} a virtual server bundles"),
    )
    .path_param("id", "the server's id")
    .query("include_inactive", boolean(), "include disabled items")
    .answers(200, &format!("The visible {what}"), array_of(item))
    .fails(&[400, 401, 404])
    .on(HttpMethod::Get)
}
