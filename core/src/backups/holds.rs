//! Holds: while a backup or restore works on an app, the reconciler keeps its hands off the
//! app's container, and a rollout of it and a backup never run at once.

use crate::Pier;

/// Apps held by backups and apps being rolled out (how many rollouts each).
#[derive(Default)]
pub struct Holds {
    held: std::collections::HashSet<i64>,
    rolling: std::collections::HashMap<i64, u32>,
}

impl Pier {
    /// Keeps the reconciler's hands off an app (its container is paused, stopped or its volumes
    /// are being replaced) until the guard drops. `None` while it is held already or a rollout
    /// of it runs.
    pub fn hold_app(&self, app_id: i64) -> Option<AppHold> {
        let mut h = self.0.holds.lock().expect("holds lock");
        if h.rolling.contains_key(&app_id) || !h.held.insert(app_id) {
            return None;
        }
        Some(AppHold(self.clone(), app_id))
    }

    /// The apps held now.
    pub fn held_apps(&self) -> std::collections::HashSet<i64> {
        self.0.holds.lock().expect("holds lock").held.clone()
    }

    /// Marks a rollout of the app as running until the guard drops; `None` while the app is
    /// held. Checked and marked under one lock with [`Pier::hold_app`], so a backup and a
    /// rollout never both have the app's container.
    pub fn begin_rollout(&self, app_id: i64) -> Option<RolloutMark> {
        let mut h = self.0.holds.lock().expect("holds lock");
        if h.held.contains(&app_id) {
            return None;
        }
        *h.rolling.entry(app_id).or_insert(0) += 1;
        Some(RolloutMark(self.clone(), app_id))
    }
}

/// See [`Pier::hold_app`].
pub struct AppHold(Pier, i64);

impl Drop for AppHold {
    fn drop(&mut self) {
        (self.0)
            .0
            .holds
            .lock()
            .expect("holds lock")
            .held
            .remove(&self.1);
        self.0.wake_engine();
    }
}

/// See [`Pier::begin_rollout`].
pub struct RolloutMark(Pier, i64);

impl Drop for RolloutMark {
    fn drop(&mut self) {
        let mut h = (self.0).0.holds.lock().expect("holds lock");
        if let std::collections::hash_map::Entry::Occupied(mut e) = h.rolling.entry(self.1) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}
