//! Per-person caps on requests that stay open (followed logs, waits for a deployment): one
//! person's open requests cannot take the panel's connections and tasks from everyone else.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use crate::{Error, Result};

/// How many requests of one kind each person holds open, and how many they may.
#[derive(Clone)]
pub struct Slots {
    open: Arc<Mutex<HashMap<i64, usize>>>,
    limit: usize,
    /// What they are, for the 429 ("open log streams").
    what: &'static str,
    /// When to try again, for the 429.
    retry_after_secs: u64,
}

/// One open request; gives its slot back when dropped (it ended, or the client went away).
pub struct Slot {
    slots: Slots,
    user_id: i64,
}

impl Slots {
    pub fn new(limit: usize, what: &'static str, retry_after_secs: u64) -> Self {
        Slots {
            open: Default::default(),
            limit,
            what,
            retry_after_secs,
        }
    }

    /// A slot for `user_id`, or `RateLimited` when they hold all of theirs.
    pub fn take(&self, user_id: i64) -> Result<Slot> {
        let mut open = self.open.lock().expect("slots lock");
        let n = open.entry(user_id).or_default();
        if *n >= self.limit {
            return Err(Error::RateLimited {
                what: self.what,
                retry_after_secs: self.retry_after_secs,
            });
        }
        *n += 1;
        Ok(Slot {
            slots: self.clone(),
            user_id,
        })
    }

    /// The requests `user_id` holds open now.
    pub fn open(&self, user_id: i64) -> usize {
        self.open
            .lock()
            .expect("slots lock")
            .get(&user_id)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().expect("slots lock");
        if let Some(n) = open.get_mut(&self.user_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.user_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_person_holds_at_most_the_limit_and_dropped_slots_come_back() {
        let slots = Slots::new(2, "things", 3);
        let a1 = slots.take(1).unwrap();
        let _a2 = slots.take(1).unwrap();
        match slots.take(1) {
            Err(Error::RateLimited {
                what,
                retry_after_secs,
            }) => assert_eq!((what, retry_after_secs), ("things", 3)),
            other => panic!("expected RateLimited, got {:?}", other.map(|_| ())),
        }
        // Another person's are their own.
        let _b = slots.take(2).unwrap();
        assert_eq!((slots.open(1), slots.open(2)), (2, 1));
        drop(a1);
        assert_eq!(slots.open(1), 1);
        let _a3 = slots.take(1).unwrap();
        assert_eq!(slots.open(1), 2);
    }
}
