//! API tokens: signed JWTs with a `jti`, recorded by hash, shown once.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::extract::{JsonBody, QueryParams, typed};
use super::openapi::{Done, Routes, array_of, boolean, op};
use crate::access::Principal;
use crate::crypto::sha256_hex;
use crate::registry::input::{TokenInput, bad};
use crate::registry::model::ApiToken;
use crate::store::StoreError;
use crate::util::{new_id, now};
use utoipa::openapi::path::HttpMethod;

async fn create(
    State(st): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let input: TokenInput = typed(body.0)?;
    input.validate()?;
    let snap = st.registry.snapshot();
    if let Some(t) = &input.team_id {
        if snap.teams.get(t).is_none() {
            return Err(bad("team_id", format!("unknown team {t}")).into());
        }
        if !p.is_admin && snap.role_of(t, &p.email).is_none() {
            return Err(ApiError::Forbidden(format!("not a member of team {t}")));
        }
    }
    if let Some(s) = &input.server_id
        && !snap.servers.get(s).is_some_and(|e| p.can_see(&e.item))
    {
        return Err(bad("server_id", format!("unknown server {s}")).into());
    }
    let minutes = input.expires_in_days.map_or(0, |d| d as u64 * 1440);
    let teams = input.team_id.clone().map(|t| vec![t]);
    let mut claims = st
        .auth
        .signer()
        .claims(&p.email, minutes, teams, p.is_admin);
    claims.token_use = Some("api".into());
    let jti = claims.jti.clone().expect("claims carry a jti");
    let token = st
        .auth
        .signer()
        .sign(&claims)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let record = ApiToken {
        id: new_id(),
        name: input.name.trim().to_owned(),
        description: input.description,
        user_email: p.email.clone(),
        team_id: input.team_id,
        jti,
        token_hash: sha256_hex(token.as_bytes()),
        server_id: input.server_id,
        expires_at: claims
            .exp
            .and_then(|e| chrono::DateTime::from_timestamp(e, 0))
            .map(|d| d.to_rfc3339()),
        last_used: None,
        is_active: true,
        created_at: now(),
    };
    st.updater.issue_token(&record).await.map_err(|e| match e {
        StoreError::Conflict(_) => {
            ApiError::Conflict(format!("you already have a token named {}", record.name))
        }
        o => o.into(),
    })?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            access_token: token,
            token_type: "bearer".into(),
            token: record,
        }),
    )
        .into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    all: bool,
}

async fn list(
    State(st): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Response, ApiError> {
    let store = st.registry.store();
    let tokens: Vec<ApiToken> = if q.all {
        if !p.is_admin {
            return Err(ApiError::Forbidden(
                "only platform admins list every token".into(),
            ));
        }
        store.load_all().await?
    } else {
        store
            .fetch_where("user_email", p.email.as_str().into())
            .await?
    };
    Ok(Json(tokens).into_response())
}

async fn owned_token(st: &AppState, p: &Principal, id: &str) -> Result<ApiToken, ApiError> {
    let t: Option<ApiToken> = st.registry.store().fetch_optional("id", id.into()).await?;
    t.filter(|t| p.is_admin || t.user_email == p.email)
        .ok_or_else(|| ApiError::not_found("token", id))
}

async fn get_one(
    State(st): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(owned_token(&st, &p, &id).await?).into_response())
}

async fn revoke(
    State(st): State<AppState>,
    Extension(p): Extension<Arc<Principal>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let t = owned_token(&st, &p, &id).await?;
    st.updater
        .revoke_token(&t.jti, &p.email, Some("revoked through the API"))
        .await?;
    Ok(
        Json(json!({"status": "success", "message": format!("token {id} revoked")}))
            .into_response(),
    )
}

/// The answer to a token's creation: the only time it is shown.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct IssuedToken {
    pub access_token: String,
    pub token_type: String,
    pub token: ApiToken,
}

pub fn routes() -> Routes {
    Routes::default()
        .route("/tokens", get(list).post(create), |doc| {
            let token = doc.component::<ApiToken>();
            let input = doc.component::<TokenInput>();
            let issued = doc.component::<IssuedToken>();
            vec![
                op(
                    "list_tokens",
                    "tokens",
                    "The caller's API tokens (everyone's with all=true, for admins)",
                )
                .query("all", boolean(), "every user's tokens (admins)")
                .answers(200, "The tokens (never their secret)", array_of(token))
                .fails(&[400, 401, 403])
                .on(HttpMethod::Get),
                op("create_token", "tokens", "Issue an API token")
                    .body(input)
                    .answers(201, "The token, shown this once", issued)
                    .fails(&[400, 401, 403, 409, 413, 422, 503])
                    .on(HttpMethod::Post),
            ]
        })
        .route("/tokens/{id}", get(get_one).delete(revoke), |doc| {
            let token = doc.component::<ApiToken>();
            let done = doc.component::<Done>();
            vec![
                op("get_token", "tokens", "Get one of the caller's tokens")
                    .path_param("id", "the token's id")
                    .answers(200, "The token", token)
                    .fails(&[401, 404])
                    .on(HttpMethod::Get),
                op(
                    "revoke_token",
                    "tokens",
                    "Revoke a token (at once, on every replica)",
                )
                .path_param("id", "the token's id")
                .answers(200, "Revoked", done)
                .fails(&[401, 404, 503])
                .on(HttpMethod::Delete),
            ]
        })
}
