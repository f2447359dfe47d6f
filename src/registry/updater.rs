//! The write door: every statement that changes registry tables (items,
//! associations, discovery results, reachability, users, teams, members,
//! tokens, revocations) is written here and nowhere else. After a commit the
//! door rebuilds this replica's snapshot and announces the change exactly
//! once on the cluster bus; a failed transaction announces nothing.
//!
//! Readers hold an `Arc<Registry>` (read-only); only holders of the
//! [`Updater`] can write, so who may write shows in the types.

use std::sync::Arc;

use super::Registry;
use super::discovered::{Discovered, Discovery, DiscoveryRows};
use super::input::AssociationInput;
use super::model::{ApiToken, Gateway, Prompt, Resource, Server, Team, TeamMember, TeamRole, Tool};
use crate::cluster::{Bus, Event};
use crate::store::{Record, Store, StoreError, Tx, Val};

/// What a committed write changed, which decides the one event announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Registry items (tools, gateways, ...): snapshots are stale.
    Registry,
    /// Users, teams or memberships: snapshots and cached principals.
    Principals,
}

pub struct Updater {
    registry: Arc<Registry>,
    bus: Arc<Bus>,
}

/// An open write. Dropping it rolls the transaction back and announces
/// nothing; [`Write::commit`] bumps the registry version, commits, rebuilds
/// the snapshot and announces the change once.
struct Write<'u> {
    updater: &'u Updater,
    tx: Tx<'u>,
    change: Change,
}

impl Write<'_> {
    /// Commits when the write found what it changes; otherwise rolls back
    /// and announces nothing. Returns `found`.
    async fn commit_if(self, found: bool) -> Result<bool, StoreError> {
        if found {
            self.commit().await?;
        }
        Ok(found)
    }

    async fn commit(mut self) -> Result<(), StoreError> {
        let version = self
            .tx
            .run_returning(
                "UPDATE registry_state SET version = version + 1 WHERE id = 1 RETURNING version"
                    .to_owned(),
                vec![],
            )
            .await?
            .ok_or_else(|| StoreError::Unavailable("registry_state row is missing".into()))?;
        self.tx.commit().await?;
        // The write stands even if the rebuild fails: the next sync (or the
        // next write) retries it.
        if let Err(e) = self.updater.registry.reload().await {
            tracing::warn!(error = %e, "registry reload after a write failed");
        }
        let event = match self.change {
            Change::Registry => Event::RegistryChanged { version },
            Change::Principals => Event::PrincipalsChanged { version },
        };
        self.updater.bus.publish(event).await;
        Ok(())
    }
}

fn insert_sql<R: Record>() -> String {
    let placeholders: Vec<String> = (1..=R::COLUMNS.len()).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        R::TABLE,
        R::COLUMNS.join(", "),
        placeholders.join(", ")
    )
}

/// Updates every column but the first (the id).
fn update_sql<R: Record>() -> String {
    let sets: Vec<String> = R::COLUMNS[1..]
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ${}", i + 2))
        .collect();
    format!(
        "UPDATE {} SET {} WHERE {} = $1",
        R::TABLE,
        sets.join(", "),
        R::COLUMNS[0]
    )
}

async fn insert<R: Record>(tx: &mut Tx<'_>, r: &R) -> Result<(), StoreError> {
    tx.run(insert_sql::<R>(), r.values()).await.map(|_| ())
}

/// False when the row is gone.
async fn update<R: Record>(tx: &mut Tx<'_>, r: &R) -> Result<bool, StoreError> {
    Ok(tx.run(update_sql::<R>(), r.values()).await? > 0)
}

async fn delete(tx: &mut Tx<'_>, table: &'static str, id: &str) -> Result<bool, StoreError> {
    Ok(tx
        .run(
            format!("DELETE FROM {table} WHERE id = $1"),
            vec![id.into()],
        )
        .await?
        > 0)
}

/// Replaces the right-hand side of an association for one left id.
async fn replace_pairs(
    tx: &mut Tx<'_>,
    table: &'static str,
    left: &'static str,
    right: &'static str,
    left_id: &str,
    right_ids: &[String],
) -> Result<(), StoreError> {
    tx.run(
        format!("DELETE FROM {table} WHERE {left} = $1"),
        vec![left_id.into()],
    )
    .await?;
    for id in right_ids {
        tx.run(
            format!("INSERT INTO {table} ({left}, {right}) VALUES ($1, $2)"),
            vec![left_id.into(), id.as_str().into()],
        )
        .await?;
    }
    Ok(())
}

async fn ensure_user(tx: &mut Tx<'_>, email: &str) -> Result<(), StoreError> {
    tx.run(
        "INSERT INTO users (email, is_admin, is_active, created_at) VALUES ($1, 0, 1, $2) ON CONFLICT (email) DO NOTHING".to_owned(),
        vec![email.into(), crate::util::now().into()],
    )
    .await
    .map(|_| ())
}

/// Refuses a leader write whose fencing token is older than one already
/// used: a replica that lost the lease cannot overwrite its successor.
async fn check_fence(tx: &mut Tx<'_>, token: u64) -> Result<(), StoreError> {
    let token = i64::try_from(token).unwrap_or(i64::MAX);
    let n = tx
        .run(
            "UPDATE cluster_fences SET token = $1 WHERE name = 'leader' AND token <= $1".to_owned(),
            vec![token.into()],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::Fenced(token));
    }
    Ok(())
}

impl Updater {
    pub fn new(registry: Arc<Registry>, bus: Arc<Bus>) -> Updater {
        Updater { registry, bus }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn bus(&self) -> &Arc<Bus> {
        &self.bus
    }

    fn store(&self) -> &Store {
        self.registry.store()
    }

    /// Opens a write; nothing is announced unless it is committed.
    async fn begin(&self, change: Change) -> Result<Write<'_>, StoreError> {
        Ok(Write {
            updater: self,
            tx: self.store().begin_write().await?,
            change,
        })
    }

    /// Creates (`create`) or updates an item. `Ok(false)`: the item to
    /// update is gone.
    pub async fn save<R: Record>(&self, item: &R, create: bool) -> Result<bool, StoreError> {
        let mut w = self.begin(Change::Registry).await?;
        let found = put(&mut w.tx, item, !create).await?;
        w.commit_if(found).await
    }

    /// Creates many items in one transaction (an import): all or none, one
    /// event.
    pub async fn create_many<R: Record>(&self, items: &[R]) -> Result<(), StoreError> {
        let mut w = self.begin(Change::Registry).await?;
        for item in items {
            insert(&mut w.tx, item).await?;
        }
        w.commit().await
    }

    /// Creates or updates a virtual server and the items it bundles.
    pub async fn save_server(
        &self,
        server: &Server,
        create: bool,
        members: &AssociationInput,
    ) -> Result<bool, StoreError> {
        let mut w = self.begin(Change::Registry).await?;
        if !put(&mut w.tx, server, !create).await? {
            return Ok(false);
        }
        for (ids, table, right) in [
            (&members.tools, "server_tool_association", "tool_id"),
            (
                &members.resources,
                "server_resource_association",
                "resource_id",
            ),
            (&members.prompts, "server_prompt_association", "prompt_id"),
        ] {
            if let Some(ids) = ids {
                replace_pairs(&mut w.tx, table, "server_id", right, &server.id, ids).await?;
            }
        }
        w.commit_if(true).await
    }

    /// Creates or updates a gateway together with what its upstream offers
    /// (one transaction, one event), or, when the upstream did not answer,
    /// records it as unreachable with the error.
    pub async fn save_gateway(
        &self,
        gw: &Gateway,
        create: bool,
        discovery: Discovery,
        separator: &str,
    ) -> Result<bool, StoreError> {
        let mut w = self.begin(Change::Registry).await?;
        if !put(&mut w.tx, gw, !create).await? {
            return Ok(false);
        }
        match discovery {
            Discovery::Offered(d) => write_discovery(&mut w.tx, gw, d, separator).await?,
            Discovery::Unreachable { error } => {
                mark_reachable(&mut w.tx, &gw.id, false, Some(error)).await?
            }
        }
        w.commit_if(true).await
    }

    /// Rewrites a gateway's items from a new discovery. Ids of items that
    /// were already known are kept, so virtual servers keep them.
    /// Writes what discovery found. `Ok(false)`: the gateway was deleted
    /// meanwhile (discovery takes time), and nothing was written.
    pub async fn apply_discovery(
        &self,
        gw: &Gateway,
        d: Discovered,
        separator: &str,
    ) -> Result<bool, StoreError> {
        let mut w = self.begin(Change::Registry).await?;
        let present: Vec<Gateway> = w.tx.fetch_where("id", gw.id.as_str().into()).await?;
        if present.is_empty() {
            return Ok(false);
        }
        write_discovery(&mut w.tx, gw, d, separator).await?;
        w.commit().await?;
        Ok(true)
    }

    /// Records a health-check verdict (a leader job: `fence` is the lease's
    /// token).
    pub async fn set_reachable(
        &self,
        gateway_id: &str,
        reachable: bool,
        error: Option<String>,
        fence: u64,
    ) -> Result<(), StoreError> {
        let mut w = self.begin(Change::Registry).await?;
        check_fence(&mut w.tx, fence).await?;
        mark_reachable(&mut w.tx, gateway_id, reachable, error).await?;
        w.commit().await
    }

    /// Deletes an item of `R`'s table. `Ok(false)`: there was none.
    pub async fn delete<R: Record>(&self, id: &str) -> Result<bool, StoreError> {
        let mut w = self.begin(Change::Registry).await?;
        let found = delete(&mut w.tx, R::TABLE, id).await?;
        w.commit_if(found).await
    }

    /// A new team with its creator as team_admin.
    pub async fn create_team(&self, team: &Team, creator: &str) -> Result<(), StoreError> {
        let mut w = self.begin(Change::Principals).await?;
        ensure_user(&mut w.tx, creator).await?;
        insert(&mut w.tx, team).await?;
        let admin = TeamMember {
            id: team.id.clone(),
            team_id: team.id.clone(),
            user_email: creator.to_owned(),
            role: TeamRole::TeamAdmin.as_str().into(),
            joined_at: team.created_at.clone(),
        };
        insert(&mut w.tx, &admin).await?;
        w.commit().await
    }

    pub async fn update_team(&self, team: &Team) -> Result<bool, StoreError> {
        let mut w = self.begin(Change::Registry).await?;
        let found = update(&mut w.tx, team).await?;
        w.commit_if(found).await
    }

    pub async fn delete_team(&self, id: &str) -> Result<bool, StoreError> {
        let mut w = self.begin(Change::Principals).await?;
        let found = delete(&mut w.tx, "teams", id).await?;
        w.commit_if(found).await
    }

    pub async fn add_member(&self, member: &TeamMember) -> Result<(), StoreError> {
        let mut w = self.begin(Change::Principals).await?;
        ensure_user(&mut w.tx, &member.user_email).await?;
        insert(&mut w.tx, member).await?;
        w.commit().await
    }

    pub async fn set_member_role(
        &self,
        team: &str,
        email: &str,
        role: TeamRole,
    ) -> Result<bool, StoreError> {
        let mut w = self.begin(Change::Principals).await?;
        let n =
            w.tx.run(
                "UPDATE team_members SET role = $1 WHERE team_id = $2 AND user_email = $3"
                    .to_owned(),
                vec![role.as_str().into(), team.into(), email.into()],
            )
            .await?;
        w.commit_if(n > 0).await
    }

    pub async fn remove_member(&self, team: &str, email: &str) -> Result<bool, StoreError> {
        let mut w = self.begin(Change::Principals).await?;
        let n =
            w.tx.run(
                "DELETE FROM team_members WHERE team_id = $1 AND user_email = $2".to_owned(),
                vec![team.into(), email.into()],
            )
            .await?;
        w.commit_if(n > 0).await
    }

    /// Records an API token (shown to its owner once). Tokens are not part
    /// of the snapshot: the registry version stays.
    pub async fn issue_token(&self, record: &ApiToken) -> Result<(), StoreError> {
        let mut tx = self.store().begin().await?;
        insert(&mut tx, record).await?;
        tx.commit().await?;
        self.bus
            .publish(Event::TokenIssued {
                jti: record.jti.clone(),
            })
            .await;
        Ok(())
    }

    /// Revokes a token by its `jti` (and marks the API token record, if
    /// any, inactive). Every replica refuses it once the event arrives.
    pub async fn revoke_token(
        &self,
        jti: &str,
        by: &str,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.store().begin().await?;
        tx.run(
            "UPDATE api_tokens SET is_active = 0 WHERE jti = $1".to_owned(),
            vec![jti.into()],
        )
        .await?;
        tx.run(
            "INSERT INTO token_revocations (jti, revoked_at, revoked_by, reason) VALUES ($1, $2, $3, $4) ON CONFLICT (jti) DO NOTHING".to_owned(),
            vec![jti.into(), crate::util::now().into(), by.into(), Val::Text(reason.map(str::to_owned))],
        )
        .await?;
        tx.commit().await?;
        self.bus
            .publish(Event::TokenRevoked {
                jti: jti.to_owned(),
            })
            .await;
        Ok(())
    }
}

async fn mark_reachable(
    tx: &mut Tx<'_>,
    gateway_id: &str,
    reachable: bool,
    error: Option<String>,
) -> Result<(), StoreError> {
    tx.run(
        "UPDATE gateways SET reachable = $1, last_error = $2, last_seen = $3 WHERE id = $4"
            .to_owned(),
        vec![
            Val::from(reachable),
            Val::Text(error),
            crate::util::now().into(),
            gateway_id.into(),
        ],
    )
    .await?;
    tx.run(
        "UPDATE tools SET reachable = $1 WHERE gateway_id = $2".to_owned(),
        vec![Val::from(reachable), gateway_id.into()],
    )
    .await?;
    Ok(())
}

async fn write_discovery(
    tx: &mut Tx<'_>,
    gw: &Gateway,
    d: Discovered,
    separator: &str,
) -> Result<(), StoreError> {
    let known_tools: Vec<Tool> = tx.fetch_where("gateway_id", gw.id.as_str().into()).await?;
    let known_resources: Vec<Resource> =
        tx.fetch_where("gateway_id", gw.id.as_str().into()).await?;
    let known_prompts: Vec<Prompt> = tx.fetch_where("gateway_id", gw.id.as_str().into()).await?;
    let rows = DiscoveryRows::build(
        gw,
        &d,
        separator,
        known_tools,
        known_resources,
        known_prompts,
    );
    for (t, known) in &rows.tools {
        put(tx, t, *known).await?;
    }
    for (r, known) in &rows.resources {
        put(tx, r, *known).await?;
    }
    for (p, known) in &rows.prompts {
        put(tx, p, *known).await?;
    }
    for (table, id) in &rows.gone {
        delete(tx, table, id).await?;
    }
    tx.run(
        "UPDATE gateways SET capabilities = $1, last_seen = $2, reachable = 1, last_error = NULL WHERE id = $3".to_owned(),
        vec![d.capabilities.to_string().into(), crate::util::now().into(), Val::from(gw.id.as_str())],
    )
    .await?;
    tx.run(
        "UPDATE tools SET reachable = 1 WHERE gateway_id = $1".to_owned(),
        vec![gw.id.as_str().into()],
    )
    .await?;
    Ok(())
}

/// Inserts a new item, or updates one already `known`; false when the
/// item to update is gone.
async fn put<R: Record>(tx: &mut Tx<'_>, item: &R, known: bool) -> Result<bool, StoreError> {
    if known {
        update(tx, item).await
    } else {
        insert(tx, item).await.map(|_| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::model::Team;

    #[test]
    fn statements_name_every_column() {
        assert_eq!(
            insert_sql::<Team>(),
            "INSERT INTO teams (id, name, slug, description, created_by, is_personal, visibility, is_active, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        assert!(update_sql::<Team>().starts_with("UPDATE teams SET name = $2, slug = $3"));
        assert!(update_sql::<Team>().ends_with("WHERE id = $1"));
    }
}
