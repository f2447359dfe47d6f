//! Upstream health: every `HEALTH_CHECK_INTERVAL` each enabled gateway gets a
//! `ping` within `GATEWAY_HEALTH_CHECK_TIMEOUT`. After `UNHEALTHY_THRESHOLD`
//! consecutive failures the gateway and its tools are marked unreachable
//! (calls then fail fast); one success restores them. Checks run
//! concurrently, so a hanging upstream delays no other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::Federation;
use crate::registry::Registry;
use crate::registry::model::Gateway;
use crate::store::Val;

#[derive(Default)]
pub struct HealthState {
    failures: Mutex<HashMap<String, u32>>,
}

/// One health check of one gateway: true when it answered.
pub async fn check(fed: &Federation, gw: &Gateway) -> Result<(), String> {
    let t = fed.cfg.health_timeout;
    let r = tokio::time::timeout(t, async {
        let up = fed.shared(gw).await.map_err(|e| e.to_string())?;
        up.call(
            "ping",
            serde_json::json!({}),
            None,
            t,
            CancellationToken::new(),
        )
        .await
        .map_err(|e| e.to_string())
    })
    .await;
    match r {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            fed.forget(&gw.id).await;
            Err(e)
        }
        Err(_) => {
            fed.forget(&gw.id).await;
            Err(format!("no answer within {t:?}"))
        }
    }
}

async fn set_reachable(registry: &Registry, gw: &Gateway, reachable: bool, error: Option<String>) {
    let store = registry.store();
    let r = async {
        let mut tx = store.begin().await?;
        tx.execute(
            "UPDATE gateways SET reachable = $1, last_error = $2, last_seen = $3 WHERE id = $4",
            vec![
                Val::from(reachable),
                Val::Text(error),
                crate::util::now().into(),
                gw.id.as_str().into(),
            ],
        )
        .await?;
        tx.execute(
            "UPDATE tools SET reachable = $1 WHERE gateway_id = $2",
            vec![Val::from(reachable), gw.id.as_str().into()],
        )
        .await?;
        tx.commit().await?;
        registry.reload().await
    };
    if let Err(e) = r.await {
        tracing::warn!(gateway = %gw.name, error = %e, "could not record gateway health");
    }
}

/// Runs one round of checks and records state changes.
pub async fn round(fed: &Arc<Federation>, registry: &Arc<Registry>, state: &HealthState) {
    let snap = registry.snapshot();
    let gateways: Vec<Gateway> = snap
        .gateways
        .iter()
        .map(|e| e.item.clone())
        .filter(|g| g.enabled)
        .collect();
    let checks = gateways.into_iter().map(|gw| {
        let fed = fed.clone();
        async move {
            let r = check(&fed, &gw).await;
            (gw, r)
        }
    });
    for (gw, r) in futures_util::future::join_all(checks).await {
        let failures = {
            let mut f = state.failures.lock().expect("lock");
            let n = f.entry(gw.id.clone()).or_default();
            match &r {
                Ok(()) => *n = 0,
                Err(_) => *n += 1,
            }
            *n
        };
        match r {
            Ok(()) if !gw.reachable => {
                tracing::info!(gateway = %gw.name, "gateway is reachable again");
                set_reachable(registry, &gw, true, None).await;
            }
            Err(e) if gw.reachable && failures >= fed.cfg.unhealthy_threshold => {
                tracing::warn!(gateway = %gw.name, error = %e, failures, "gateway marked unreachable");
                set_reachable(registry, &gw, false, Some(e)).await;
            }
            Err(e) => {
                tracing::debug!(gateway = %gw.name, error = %e, failures, "health check failed")
            }
            Ok(()) => {}
        }
    }
}

pub fn spawn(fed: Arc<Federation>, registry: Arc<Registry>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let state = HealthState::default();
        let mut tick = tokio::time::interval(fed.cfg.health_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            round(&fed, &registry, &state).await;
        }
    })
}
