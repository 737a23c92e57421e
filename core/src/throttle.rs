//! Sign-in throttling: a sliding window of recent failures per key (one key per account, one per
//! client address). Kept in memory: a restart forgets it, which only ever errs towards letting a
//! person in.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub max_failures: usize,
    pub window: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub per_account: Limit,
    pub per_address: Limit,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            per_account: Limit {
                max_failures: 5,
                window: Duration::from_secs(15 * 60),
            },
            per_address: Limit {
                max_failures: 20,
                window: Duration::from_secs(15 * 60),
            },
        }
    }
}

const MAX_KEYS: usize = 100_000;

#[derive(Debug, Default)]
pub struct Throttle {
    policy: Policy,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Throttle {
    pub fn new(policy: Policy) -> Self {
        Throttle {
            policy,
            failures: Mutex::default(),
        }
    }

    fn keys(&self, account: &str, address: &str) -> [(String, Limit); 2] {
        [
            (format!("acct:{account}"), self.policy.per_account),
            (format!("addr:{address}"), self.policy.per_address),
        ]
    }

    /// `Err(seconds)` when either key is over its limit: how long until the oldest failure in
    /// the window ages out.
    pub fn check(&self, account: &str, address: &str) -> Result<(), u64> {
        let now = Instant::now();
        let map = self.failures.lock().expect("throttle lock");
        let mut wait = 0u64;
        for (key, limit) in self.keys(account, address) {
            if let Some(q) = map.get(&key) {
                let recent: Vec<&Instant> = q.iter().filter(|t| now - **t < limit.window).collect();
                if recent.len() >= limit.max_failures {
                    let oldest = recent[recent.len() - limit.max_failures];
                    let left = limit.window.saturating_sub(now - *oldest);
                    wait = wait.max(left.as_secs().max(1));
                }
            }
        }
        if wait > 0 {
            Err(wait)
        } else {
            Ok(())
        }
    }

    pub fn record_failure(&self, account: &str, address: &str) {
        let now = Instant::now();
        let mut map = self.failures.lock().expect("throttle lock");
        if map.len() >= MAX_KEYS {
            let longest = self
                .policy
                .per_account
                .window
                .max(self.policy.per_address.window);
            map.retain(|_, q| q.back().is_some_and(|t| now - *t < longest));
        }
        for (key, limit) in self.keys(account, address) {
            let q = map.entry(key).or_default();
            while q.front().is_some_and(|t| now - *t >= limit.window) {
                q.pop_front();
            }
            q.push_back(now);
            while q.len() > limit.max_failures {
                q.pop_front();
            }
        }
    }

    /// A successful sign-in clears the account's failures (not the address's).
    pub fn clear_account(&self, account: &str) {
        self.failures
            .lock()
            .expect("throttle lock")
            .remove(&format!("acct:{account}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Throttle {
        Throttle::new(Policy {
            per_account: Limit {
                max_failures: 3,
                window: Duration::from_secs(60),
            },
            per_address: Limit {
                max_failures: 5,
                window: Duration::from_secs(60),
            },
        })
    }

    #[test]
    fn locks_an_account_after_its_limit() {
        let t = small();
        for _ in 0..3 {
            assert!(t.check("a@x.io", "1.2.3.4").is_ok());
            t.record_failure("a@x.io", "1.2.3.4");
        }
        let wait = t.check("a@x.io", "9.9.9.9").unwrap_err();
        assert!((59..=60).contains(&wait), "{wait}");
        // Another account from the same address is still allowed.
        assert!(t.check("b@x.io", "1.2.3.4").is_ok());
        t.clear_account("a@x.io");
        assert!(t.check("a@x.io", "1.2.3.4").is_ok());
    }

    #[test]
    fn locks_an_address_across_accounts() {
        let t = small();
        for i in 0..5 {
            t.record_failure(&format!("u{i}@x.io"), "1.2.3.4");
        }
        assert!(t.check("new@x.io", "1.2.3.4").is_err());
        assert!(t.check("new@x.io", "5.6.7.8").is_ok());
    }
}
