//! Background work as named tasks that stop on a shared signal, and the
//! process's readiness (`/ready`): starting until migrations and the first
//! snapshot are done, ready, then draining from the moment shutdown begins.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Ready,
    Draining,
}

#[derive(Debug)]
pub struct Readiness(AtomicU8);

impl Default for Readiness {
    fn default() -> Self {
        Readiness(AtomicU8::new(Phase::Starting as u8))
    }
}

impl Readiness {
    pub fn phase(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            _ => Phase::Draining,
        }
    }

    pub fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::Release);
    }
}

/// The process's background tasks.
#[derive(Default)]
pub struct Tasks {
    stop: CancellationToken,
    running: Vec<(&'static str, JoinHandle<()>)>,
}

impl Tasks {
    /// Starts `name`; it is handed the stop signal and must return soon
    /// after it fires.
    pub fn spawn<F, Fut>(&mut self, name: &'static str, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(task(self.stop.child_token()));
        self.running.push((name, handle));
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.running.iter().map(|(n, _)| *n).collect()
    }

    /// Signals every task and waits up to `grace` for each; a task that does
    /// not stop in time is aborted and named in the log.
    pub async fn shutdown(self, grace: Duration) {
        self.stop.cancel();
        let deadline = tokio::time::Instant::now() + grace;
        for (name, mut handle) in self.running {
            match tokio::time::timeout_at(deadline, &mut handle).await {
                Ok(_) => tracing::debug!(task = name, "stopped"),
                Err(_) => {
                    tracing::warn!(task = name, "did not stop in time; aborted");
                    handle.abort();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    #[tokio::test(start_paused = true)]
    async fn tasks_stop_on_the_signal_and_stragglers_are_aborted() {
        let mut tasks = Tasks::default();
        let polite = Arc::new(AtomicBool::new(false));
        let p = polite.clone();
        tasks.spawn("polite", move |stop| async move {
            stop.cancelled().await;
            p.store(true, Ordering::SeqCst);
        });
        tasks.spawn("stubborn", |_stop| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        assert_eq!(tasks.names(), vec!["polite", "stubborn"]);
        tasks.shutdown(Duration::from_secs(1)).await;
        assert!(polite.load(Ordering::SeqCst));
    }

    #[test]
    fn readiness_moves_through_its_phases() {
        let r = Readiness::default();
        assert_eq!(r.phase(), Phase::Starting);
        r.set(Phase::Ready);
        assert_eq!(r.phase(), Phase::Ready);
        r.set(Phase::Draining);
        assert_eq!(r.phase(), Phase::Draining);
    }
}
