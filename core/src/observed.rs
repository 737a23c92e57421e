//! The engine's container list as pages read it.
//!
//! Listing a thousand containers costs the engine tens of milliseconds. While the engine's
//! events are followed (`server::engine::events`), the last list is reused until the engine
//! reports a change to one of this installation's containers; otherwise pages accept a list up
//! to a second old, as before. Each list carries the count of changes seen when it was *asked
//! for*, so a change that lands while a list is being taken makes that list stale at once.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use crate::runtime::Container;

/// How long a list is trusted while events are followed and none arrived: a safety net for an
/// event the engine never sent.
pub const TRUSTED_FOR: Duration = Duration::from_secs(60);

struct Snapshot {
    at: Instant,
    generation: u64,
    list: Arc<Vec<Container>>,
}

#[derive(Default)]
pub struct Observed {
    last: Mutex<Option<Snapshot>>,
    /// Changes the engine reported; also bumped when following starts or stops.
    changes: AtomicU64,
    /// The engine's events are being followed.
    following: AtomicBool,
    /// A page's refresh of the list is under way (one at a time, shared by every page).
    pub(crate) listing: AtomicBool,
}

impl Observed {
    /// Read before asking the engine for a list; given back to [`Observed::record`].
    pub fn generation(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// Keeps a list the engine gave, asked for at `generation`.
    pub fn record(&self, generation: u64, list: Vec<Container>) -> Arc<Vec<Container>> {
        let list = Arc::new(list);
        *self.last.lock().expect("observed lock") = Some(Snapshot {
            at: Instant::now(),
            generation,
            list: list.clone(),
        });
        list
    }

    /// The last list, if taken within `max_age`.
    pub fn within(&self, max_age: Duration) -> Option<Arc<Vec<Container>>> {
        self.last
            .lock()
            .expect("observed lock")
            .as_ref()
            .filter(|s| s.at.elapsed() <= max_age)
            .map(|s| s.list.clone())
    }

    /// The last list when the engine's events say nothing changed since it was asked for.
    pub fn current(&self) -> Option<Arc<Vec<Container>>> {
        if !self.following.load(Ordering::Acquire) {
            return None;
        }
        let generation = self.generation();
        self.last
            .lock()
            .expect("observed lock")
            .as_ref()
            .filter(|s| s.generation == generation && s.at.elapsed() <= TRUSTED_FOR)
            .map(|s| s.list.clone())
    }

    /// Whether events are followed and none arrived since `generation` was read.
    pub fn unchanged_since(&self, generation: u64) -> bool {
        self.following.load(Ordering::Acquire) && self.generation() == generation
    }

    /// The engine reported a change to one of the installation's containers.
    pub fn changed(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }

    /// Following the engine's events started (`true`) or stopped. Either way, lists taken
    /// before are no longer current: events may have been missed in between.
    pub fn set_following(&self, yes: bool) {
        self.following.store(yes, Ordering::Release);
        self.changed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_current_until_a_change_while_events_are_followed() {
        let o = Observed::default();
        let g = o.generation();
        o.record(g, Vec::new());
        assert!(o.current().is_none(), "not following: never current");
        assert!(o.within(Duration::from_secs(1)).is_some());

        o.set_following(true);
        assert!(o.current().is_none(), "taken before following started");
        let g = o.generation();
        o.record(g, Vec::new());
        assert!(o.current().is_some());
        assert!(o.unchanged_since(g));
        o.changed();
        assert!(o.current().is_none(), "a change makes it stale");
        assert!(!o.unchanged_since(g));

        // A change while a list is being taken: that list is stale when it arrives.
        let g = o.generation();
        o.changed();
        o.record(g, Vec::new());
        assert!(o.current().is_none());
        let g = o.generation();
        o.record(g, Vec::new());
        assert!(o.current().is_some());

        let g = o.generation();
        o.set_following(false);
        assert!(
            o.current().is_none(),
            "stopped following: events may be missed"
        );
        assert!(
            !o.unchanged_since(o.generation()),
            "not following: nothing known"
        );
        assert_ne!(g, o.generation());
        assert!(o.within(Duration::from_secs(1)).is_some());
    }
}
