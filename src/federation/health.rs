//! Upstream health: every `HEALTH_CHECK_INTERVAL` each enabled gateway gets a
//! `ping` within `GATEWAY_HEALTH_CHECK_TIMEOUT`. After `UNHEALTHY_THRESHOLD`
//! consecutive failures the gateway and its tools are marked unreachable
//! (calls then fail fast); one success restores them. Checks run
//! concurrently, so a hanging upstream delays no other.
//!
//! A leader job: only the replica holding the lease checks and writes, and
//! each write carries the lease's fencing token.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::Federation;
use super::upstream::UpstreamError;
use crate::cluster::Leadership;
use crate::registry::Updater;
use crate::registry::model::Gateway;

#[derive(Default)]
pub struct HealthState {
    failures: Mutex<HashMap<String, u32>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckFailure {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("no answer within {0:?}")]
    NoAnswer(std::time::Duration),
}

/// One health check of one gateway: a `ping` answered in time.
pub async fn check(fed: &Federation, gw: &Gateway) -> Result<(), CheckFailure> {
    let t = fed.cfg.health_timeout;
    let r = tokio::time::timeout(t, async {
        let up = fed.shared(gw).await?;
        up.call(
            "ping",
            serde_json::json!({}),
            None,
            t,
            CancellationToken::new(),
        )
        .await
    })
    .await;
    let failure = match r {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(e)) => CheckFailure::Upstream(e),
        Err(_) => CheckFailure::NoAnswer(t),
    };
    fed.forget(&gw.id).await;
    Err(failure)
}

async fn set_reachable(
    updater: &Updater,
    gw: &Gateway,
    reachable: bool,
    error: Option<String>,
    fence: u64,
) {
    if let Err(e) = updater.set_reachable(&gw.id, reachable, error, fence).await {
        tracing::warn!(gateway = %gw.name, error = %e, "could not record gateway health");
    }
}

/// Runs one round of checks and records state changes.
/// `fence` is the leader's fencing token, carried by every write.
pub async fn round(fed: &Arc<Federation>, updater: &Updater, state: &HealthState, fence: u64) {
    let snap = updater.registry().snapshot();
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
            let mut f = state.failures.lock();
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
                set_reachable(updater, &gw, true, None, fence).await;
            }
            Err(e) if gw.reachable && failures >= fed.cfg.unhealthy_threshold => {
                tracing::warn!(gateway = %gw.name, error = %e, failures, "gateway marked unreachable");
                set_reachable(updater, &gw, false, Some(e.to_string()), fence).await;
            }
            Err(e) => {
                tracing::debug!(gateway = %gw.name, error = %e, failures, "health check failed")
            }
            Ok(()) => {}
        }
    }
}

/// Checks every `HEALTH_CHECK_INTERVAL` while this replica leads, until
/// `stop`.
pub async fn run(
    fed: Arc<Federation>,
    updater: Arc<Updater>,
    leadership: Arc<Leadership>,
    stop: CancellationToken,
) {
    let state = HealthState::default();
    let mut tick = tokio::time::interval(fed.cfg.health_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let Some(fence) = leadership.token() else {
            // A follower forgets its counts: the next leader starts afresh.
            state.failures.lock().clear();
            continue;
        };
        tokio::select! {
            _ = round(&fed, &updater, &state, fence) => {}
            _ = stop.cancelled() => return,
        }
    }
}
