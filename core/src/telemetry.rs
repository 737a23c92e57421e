//! What the engine observes and the UI shows but nobody needs to keep: image pull progress and
//! the last hour of CPU and memory per app. Held in memory, bounded.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

use serde::{Deserialize, Serialize};

use crate::runtime::PullProgress;

/// How long a metrics history reaches back.
pub const HISTORY_SECS: i64 = 3600;

/// One reading of an app's container.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub at: i64,
    /// Percent of one CPU (150 = one and a half CPUs busy).
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub memory_limit: u64,
}

#[derive(Default)]
pub struct Telemetry {
    pulls: Mutex<HashMap<i64, PullProgress>>,
    history: Mutex<HashMap<i64, VecDeque<Point>>>,
}

impl Telemetry {
    pub fn set_pull(&self, deployment_id: i64, p: PullProgress) {
        self.pulls
            .lock()
            .expect("telemetry lock")
            .insert(deployment_id, p);
    }

    pub fn clear_pull(&self, deployment_id: i64) {
        self.pulls
            .lock()
            .expect("telemetry lock")
            .remove(&deployment_id);
    }

    pub fn pull(&self, deployment_id: i64) -> Option<PullProgress> {
        self.pulls
            .lock()
            .expect("telemetry lock")
            .get(&deployment_id)
            .cloned()
    }

    /// Records a reading, dropping those older than an hour.
    pub fn record(&self, app_id: i64, p: Point) {
        let mut h = self.history.lock().expect("telemetry lock");
        let q = h.entry(app_id).or_default();
        q.push_back(p);
        while q.front().is_some_and(|f| f.at < p.at - HISTORY_SECS) {
            q.pop_front();
        }
    }

    pub fn history(&self, app_id: i64) -> Vec<Point> {
        self.history
            .lock()
            .expect("telemetry lock")
            .get(&app_id)
            .map(|q| q.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Forgets apps that no longer exist.
    pub fn retain_apps(&self, keep: &dyn Fn(i64) -> bool) {
        self.history
            .lock()
            .expect("telemetry lock")
            .retain(|id, _| keep(*id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_one_hour() {
        let t = Telemetry::default();
        for i in 0..200 {
            t.record(
                1,
                Point {
                    at: i * 30,
                    cpu_percent: 1.0,
                    memory_bytes: 1,
                    memory_limit: 2,
                },
            );
        }
        let h = t.history(1);
        assert_eq!(h.last().unwrap().at, 199 * 30);
        assert!(h.first().unwrap().at >= 199 * 30 - HISTORY_SECS);
        assert_eq!(h.len(), 121);
        t.retain_apps(&|id| id != 1);
        assert!(t.history(1).is_empty());
    }
}
