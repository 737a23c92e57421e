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

/// A reading as kept: 16 bytes instead of a [`Point`]'s 32. An hour of readings every 15 s for
/// 1,000 apps is 240,000 of them (3.7 MiB kept this way). Memory is kept in KiB, rounded up:
/// control groups count whole pages, so real readings lose nothing.
#[derive(Debug, Clone, Copy)]
struct Kept {
    at: u32,
    cpu_percent: f32,
    memory_kib: u32,
    limit_kib: u32,
}

fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

impl From<Point> for Kept {
    fn from(p: Point) -> Kept {
        Kept {
            at: u32::try_from(p.at.max(0)).unwrap_or(u32::MAX),
            cpu_percent: p.cpu_percent as f32,
            memory_kib: kib(p.memory_bytes),
            limit_kib: kib(p.memory_limit),
        }
    }
}

impl From<Kept> for Point {
    fn from(k: Kept) -> Point {
        Point {
            at: i64::from(k.at),
            cpu_percent: f64::from(k.cpu_percent),
            memory_bytes: u64::from(k.memory_kib) * 1024,
            memory_limit: u64::from(k.limit_kib) * 1024,
        }
    }
}

#[derive(Default)]
pub struct Telemetry {
    pulls: Mutex<HashMap<i64, PullProgress>>,
    history: Mutex<HashMap<i64, VecDeque<Kept>>>,
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
        q.push_back(p.into());
        while q
            .front()
            .is_some_and(|f| i64::from(f.at) < p.at - HISTORY_SECS)
        {
            q.pop_front();
        }
    }

    pub fn history(&self, app_id: i64) -> Vec<Point> {
        self.history
            .lock()
            .expect("telemetry lock")
            .get(&app_id)
            .map(|q| q.iter().map(|k| Point::from(*k)).collect())
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

    #[test]
    fn a_kept_reading_reads_back_to_the_page() {
        let p = Point {
            at: 1_800_000_000,
            cpu_percent: 12.5,
            memory_bytes: 40 << 20,
            memory_limit: 256 << 20,
        };
        assert_eq!(Point::from(Kept::from(p)), p);
        assert_eq!(std::mem::size_of::<Kept>(), 16);
        // A partial KiB rounds up, so a reading above zero never reads as zero.
        let odd = Point::from(Kept::from(Point {
            memory_bytes: 1,
            ..p
        }));
        assert_eq!(odd.memory_bytes, 1024);
    }
}
