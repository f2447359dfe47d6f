//! Teams and their members. Principals are resolved against the registry
//! snapshot, so a membership or role change applies on a replica as soon as
//! its snapshot has the write (at once here, within the bus delay
//! elsewhere).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Extension, Json};
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::extract::{JsonBody, typed};
use super::items::{json_array, json_response};
use super::openapi::{Done, Routes, array_of, op};
use crate::access::Principal;
use crate::registry::input::{MemberInput, TeamInput, bad, check_email, description, team_name};
use crate::registry::model::{Team, TeamMember, TeamRole, Visibility};
use crate::registry::snapshot::Snapshot;
use crate::store::StoreError;
use crate::util::{new_id, now, slugify};
use utoipa::openapi::path::HttpMethod;

fn team_visibility(v: Option<&str>, current: Visibility) -> Result<Visibility, ApiError> {
    match v {
        None => Ok(current),
        Some("private") => Ok(Visibility::Private),
        Some("public") => Ok(Visibility::Public),
        Some(_) => Err(bad("visibility", "must be private or public").into()),
    }
}

fn find<'s>(snap: &'s Snapshot, p: &Principal, id: &str) -> Result<&'s Team, ApiError> {
    snap.teams
        .get(id)
        .map(|e| &e.item)
        .filter(|t| snap.team_visible(p, t))
        .ok_or_else(|| ApiError::not_found("team", id))
}

fn require_admin(snap: &Snapshot, p: &Principal, team: &str) -> Result<(), ApiError> {
    if p.is_admin || snap.role_of(team, &p.email) == Some(TeamRole::TeamAdmin) {
        Ok(())
    } else {
        Err(ApiError::Forbidden("team_admin role required".into()))
    }
}

async fn list(State(st): State<AppState>, Extension(p): Extension<Arc<Principal>>) -> Response {
    let snap = st.registry.snapshot();
    let body = json_array(
        snap.teams
            .iter()
            .filter(|e| snap.team_visible(&p, &e.item))
            .map(|e| &*e.json),
    );
    json_response(StatusCode::OK, body)
}

async fn get_one(
    State(st): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let snap = st.registry.snapshot();
    find(&snap, &p, &id)?;
    Ok(json_response(
        StatusCode::OK,
        snap.teams.get(&id).expect("found").json.get().to_owned(),
    ))
}

fn created_team(st: &AppState, id: &str, status: StatusCode) -> Result<Response, ApiError> {
    let snap = st.registry.snapshot();
    let e = snap.teams.get(id).ok_or_else(|| {
        ApiError::Unavailable("written, but the registry could not be reloaded".into())
    })?;
    Ok(json_response(status, e.json.get().to_owned()))
}

async fn create(
    State(st): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let input: TeamInput = typed(body.unwrap_as("team"))?;
    let name = team_name(
        input
            .name
            .as_deref()
            .ok_or_else(|| bad("name", "is required"))?,
    )?;
    let slug = slugify(&name);
    if slug.is_empty() {
        return Err(bad("name", "must contain a letter or digit").into());
    }
    let ts = now();
    let team = Team {
        id: new_id(),
        name,
        slug,
        description: description(input.description)?,
        created_by: p.email.clone(),
        is_personal: false,
        visibility: team_visibility(input.visibility.as_deref(), Visibility::Private)?,
        is_active: true,
        created_at: ts.clone(),
        updated_at: ts,
    };
    st.updater
        .create_team(&team, &p.email)
        .await
        .map_err(team_conflict(&team.name))?;
    created_team(&st, &team.id, StatusCode::CREATED)
}

async fn update(
    State(st): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let input: TeamInput = typed(body.unwrap_as("team"))?;
    let snap = st.registry.snapshot();
    let mut team = find(&snap, &p, &id)?.clone();
    require_admin(&snap, &p, &id)?;
    if let Some(n) = input.name {
        team.name = team_name(&n)?;
        team.slug = slugify(&team.name);
    }
    if input.description.is_some() {
        team.description = description(input.description)?;
    }
    team.visibility = team_visibility(input.visibility.as_deref(), team.visibility)?;
    team.updated_at = now();
    if !st
        .updater
        .update_team(&team)
        .await
        .map_err(team_conflict(&team.name))?
    {
        return Err(ApiError::not_found("team", &id));
    }
    created_team(&st, &id, StatusCode::OK)
}

async fn delete(
    State(st): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let snap = st.registry.snapshot();
    find(&snap, &p, &id)?;
    require_admin(&snap, &p, &id)?;
    let deleted = st.updater.delete_team(&id).await.map_err(|e| match e {
        StoreError::Referenced(_) => ApiError::Conflict(
            "the team still owns registry items; move or delete them first".into(),
        ),
        o => o.into(),
    })?;
    if !deleted {
        return Err(ApiError::not_found("team", &id));
    }
    Ok(Json(json!({"status": "success", "message": format!("team {id} deleted")})).into_response())
}

fn team_conflict(name: &str) -> impl FnOnce(StoreError) -> ApiError + '_ {
    move |e| match e {
        StoreError::Conflict(_) => {
            ApiError::Conflict(format!("a team named {name} already exists"))
        }
        o => o.into(),
    }
}

fn members_of(snap: &Snapshot, team: &str) -> Vec<TeamMember> {
    snap.members.get(team).cloned().unwrap_or_default()
}

async fn list_members(
    State(st): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let snap = st.registry.snapshot();
    find(&snap, &p, &id)?;
    if !p.is_admin && snap.role_of(&id, &p.email).is_none() {
        return Err(ApiError::Forbidden(
            "only members see the member list".into(),
        ));
    }
    Ok(Json(members_of(&snap, &id)).into_response())
}

fn parse_role(v: Option<&str>, default: TeamRole) -> Result<TeamRole, ApiError> {
    match v {
        None => Ok(default),
        Some(r) => TeamRole::parse(r)
            .ok_or_else(|| bad("role", "must be team_admin, developer or viewer").into()),
    }
}

async fn add_member(
    State(st): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let input: MemberInput = typed(body.0)?;
    let snap = st.registry.snapshot();
    find(&snap, &p, &id)?;
    require_admin(&snap, &p, &id)?;
    let email = check_email(
        "email",
        input
            .email
            .as_deref()
            .ok_or_else(|| bad("email", "is required"))?,
    )?;
    let role = parse_role(input.role.as_deref(), TeamRole::Viewer)?;
    let member = TeamMember {
        id: id.clone(),
        team_id: id.clone(),
        user_email: email.clone(),
        role: role.as_str().into(),
        joined_at: now(),
    };
    st.updater.add_member(&member).await.map_err(|e| match e {
        StoreError::Conflict(_) => ApiError::Conflict(format!("{email} is already a member")),
        o => o.into(),
    })?;
    Ok((StatusCode::CREATED, Json(member)).into_response())
}

/// Refuses to leave a team without a team_admin.
fn keeps_an_admin(
    snap: &Snapshot,
    team: &str,
    changed: &str,
    new_role: Option<TeamRole>,
) -> Result<(), ApiError> {
    let admins = members_of(snap, team)
        .iter()
        .filter(|m| {
            let role = if m.user_email == changed {
                new_role
            } else {
                TeamRole::parse(&m.role)
            };
            role == Some(TeamRole::TeamAdmin)
        })
        .count();
    if admins == 0 {
        return Err(ApiError::Conflict(
            "a team needs at least one team_admin".into(),
        ));
    }
    Ok(())
}

async fn update_member(
    State(st): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path((id, email)): Path<(String, String)>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let input: MemberInput = typed(body.0)?;
    let snap = st.registry.snapshot();
    find(&snap, &p, &id)?;
    require_admin(&snap, &p, &id)?;
    let email = email.to_ascii_lowercase();
    if snap.role_of(&id, &email).is_none() {
        return Err(ApiError::not_found("member", &email));
    }
    let role = parse_role(input.role.as_deref(), TeamRole::Viewer)?;
    keeps_an_admin(&snap, &id, &email, Some(role))?;
    if !st.updater.set_member_role(&id, &email, role).await? {
        return Err(ApiError::not_found("member", &email));
    }
    let snap = st.registry.snapshot();
    let m = members_of(&snap, &id)
        .into_iter()
        .find(|m| m.user_email == email);
    Ok(Json(m).into_response())
}

async fn remove_member(
    State(st): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path((id, email)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let snap = st.registry.snapshot();
    find(&snap, &p, &id)?;
    let email = email.to_ascii_lowercase();
    if email != p.email {
        require_admin(&snap, &p, &id)?;
    }
    if snap.role_of(&id, &email).is_none() {
        return Err(ApiError::not_found("member", &email));
    }
    keeps_an_admin(&snap, &id, &email, None)?;
    if !st.updater.remove_member(&id, &email).await? {
        return Err(ApiError::not_found("member", &email));
    }
    Ok(
        Json(json!({"status": "success", "message": format!("{email} removed from team {id}")}))
            .into_response(),
    )
}

pub fn routes() -> Routes {
    Routes::default()
        .route("/teams", get(list).post(create), |doc| {
            let team = doc.component::<Team>();
            let input = doc.component::<TeamInput>();
            vec![
                op(
                    "list_teams",
                    "teams",
                    "The teams the caller belongs to (all, for admins)",
                )
                .answers(200, "The teams", array_of(team.clone()))
                .fails(&[401])
                .on(HttpMethod::Get),
                op(
                    "create_team",
                    "teams",
                    "Create a team; the caller becomes its owner",
                )
                .body(input)
                .answers(201, "The team", team)
                .fails(&[400, 401, 409, 413, 422, 503])
                .on(HttpMethod::Post),
            ]
        })
        .route(
            "/teams/{id}",
            get(get_one).put(update).delete(delete),
            |doc| {
                let team = doc.component::<Team>();
                let input = doc.component::<TeamInput>();
                let done = doc.component::<Done>();
                vec![
                    op("get_team", "teams", "Get a team")
                        .path_param("id", "the team's id")
                        .answers(200, "The team", team.clone())
                        .fails(&[401, 404])
                        .on(HttpMethod::Get),
                    op("update_team", "teams", "Change a team (owners)")
                        .path_param("id", "the team's id")
                        .body(input)
                        .answers(200, "The team", team)
                        .fails(&[400, 401, 403, 404, 409, 413, 422, 503])
                        .on(HttpMethod::Put),
                    op("delete_team", "teams", "Delete a team (owners)")
                        .path_param("id", "the team's id")
                        .answers(200, "Deleted", done)
                        .fails(&[401, 403, 404, 409, 503])
                        .on(HttpMethod::Delete),
                ]
            },
        )
        .route(
            "/teams/{id}/members",
            get(list_members).post(add_member),
            |doc| {
                let member = doc.component::<TeamMember>();
                let input = doc.component::<MemberInput>();
                vec![
                    op("list_team_members", "teams", "A team's members")
                        .path_param("id", "the team's id")
                        .answers(200, "The members", array_of(member.clone()))
                        .fails(&[401, 404])
                        .on(HttpMethod::Get),
                    op("add_team_member", "teams", "Add a member (owners)")
                        .path_param("id", "the team's id")
                        .body(input)
                        .answers(201, "The membership", member)
                        .fails(&[400, 401, 403, 404, 409, 413, 422, 503])
                        .on(HttpMethod::Post),
                ]
            },
        )
        .route(
            "/teams/{id}/members/{email}",
            put(update_member).delete(remove_member),
            |doc| {
                let member = doc.component::<TeamMember>();
                let input = doc.component::<MemberInput>();
                let done = doc.component::<Done>();
                vec![
                    op(
                        "update_team_member",
                        "teams",
                        "Change a member's role (owners)",
                    )
                    .path_param("id", "the team's id")
                    .path_param("email", "the member's email")
                    .body(input)
                    .answers(200, "The membership", member)
                    .fails(&[400, 401, 403, 404, 409, 413, 422, 503])
                    .on(HttpMethod::Put),
                    op(
                        "remove_team_member",
                        "teams",
                        "Remove a member (owners, or the member)",
                    )
                    .path_param("id", "the team's id")
                    .path_param("email", "the member's email")
                    .answers(200, "Removed", done)
                    .fails(&[401, 403, 404, 409, 503])
                    .on(HttpMethod::Delete),
                ]
            },
        )
}
