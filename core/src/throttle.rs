//! Throttling, kept in memory: a restart forgets it, which only ever errs towards letting a
//! person in.
//!
//! Sign-in has two guards. Per client address, a sliding window of recent failures. Per account,
//! an exponential delay rather than a fixed lock: after a few free failures each further failure
//! makes the account wait longer (1, 2, 4 … minutes, capped), and once the wait is over the right
//! password signs in. A fixed lock that any stranger can renew would keep an admin out for as
//! long as the stranger cares to; a capped delay only slows guessing down.
//!
//! [`Window`] is the sliding window on its own, for actions limited per tenant (redeploys, DNS
//! checks: [`TenantPolicy`]).

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub max: usize,
    pub window: Duration,
}

/// The per-account delay: `free` failures cost nothing, then the n-th further failure makes the
/// account wait `first * 2^(n-1)`, at most `max`. A streak is forgotten after `forget_after`
/// without a failure (or at a successful sign-in).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub free: u32,
    pub first: Duration,
    pub max: Duration,
    pub forget_after: Duration,
}

impl Backoff {
    /// The wait after `failures` consecutive failures.
    fn delay(&self, failures: u32) -> Duration {
        if failures < self.free {
            return Duration::ZERO;
        }
        // 2^16 minutes is far past any sensible cap; the shift cannot overflow.
        let doublings = (failures - self.free).min(16);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub per_account: Backoff,
    pub per_address: Limit,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            per_account: Backoff {
                free: 5,
                first: Duration::from_secs(60),
                max: Duration::from_secs(15 * 60),
                forget_after: Duration::from_secs(60 * 60),
            },
            per_address: Limit {
                max: 20,
                window: Duration::from_secs(15 * 60),
            },
        }
    }
}

/// Beyond this many keys, stale ones are dropped before a new one is added.
const MAX_KEYS: usize = 100_000;

/// A sliding window per key: at most `limit.max` events in any `limit.window`.
#[derive(Debug)]
pub struct Window {
    limit: Limit,
    events: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Window {
    pub fn new(limit: Limit) -> Self {
        Window {
            limit,
            events: Mutex::default(),
        }
    }

    /// `Err(seconds)` when `key` is at its limit: how long until the oldest event ages out.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let map = self.events.lock().expect("window lock");
        let Some(q) = map.get(key) else {
            return Ok(());
        };
        let recent: Vec<&Instant> = q.iter().filter(|t| now - **t < self.limit.window).collect();
        if recent.len() >= self.limit.max {
            let oldest = recent[recent.len() - self.limit.max];
            let left = self.limit.window.saturating_sub(now - *oldest);
            Err(left.as_secs().max(1))
        } else {
            Ok(())
        }
    }

    pub fn record(&self, key: &str) {
        let now = Instant::now();
        let window = self.limit.window;
        let mut map = self.events.lock().expect("window lock");
        if map.len() >= MAX_KEYS {
            map.retain(|_, q| q.back().is_some_and(|t| now - *t < window));
        }
        let q = map.entry(key.to_owned()).or_default();
        while q.front().is_some_and(|t| now - *t >= window) {
            q.pop_front();
        }
        q.push_back(now);
        while q.len() > self.limit.max {
            q.pop_front();
        }
    }

    /// Checks and, when allowed, counts one event: for actions limited whether they succeed or
    /// not.
    pub fn take(&self, key: &str) -> Result<(), u64> {
        self.check(key)?;
        self.record(key);
        Ok(())
    }

    /// [`Window::take`] for one tenant's `what` ("redeploys"), as the error people see.
    pub fn take_for_tenant(&self, tenant: i64, what: &'static str) -> crate::Result<()> {
        self.take(&tenant.to_string())
            .map_err(|retry_after_secs| crate::Error::RateLimited {
                what,
                retry_after_secs,
            })
    }
}

/// How often each tenant may ask for actions that cost the server (or a third party) far more
/// than the request: a redeploy pulls an image and replaces containers; a DNS check makes this
/// server query the DNS on the tenant's behalf.
#[derive(Debug, Clone, Copy)]
pub struct TenantPolicy {
    pub redeploys: Limit,
    pub dns_checks: Limit,
}

impl Default for TenantPolicy {
    fn default() -> Self {
        TenantPolicy {
            redeploys: Limit {
                max: 20,
                window: Duration::from_secs(10 * 60),
            },
            dns_checks: Limit {
                max: 30,
                window: Duration::from_secs(60),
            },
        }
    }
}

/// The windows of a [`TenantPolicy`], keyed by tenant.
#[derive(Debug)]
pub struct TenantLimits {
    pub redeploys: Window,
    pub dns_checks: Window,
}

impl TenantLimits {
    pub fn new(policy: TenantPolicy) -> Self {
        TenantLimits {
            redeploys: Window::new(policy.redeploys),
            dns_checks: Window::new(policy.dns_checks),
        }
    }
}

/// An account's current run of failed sign-ins.
#[derive(Debug, Clone, Copy)]
struct Streak {
    failures: u32,
    last: Instant,
}

#[derive(Debug)]
pub struct Throttle {
    backoff: Backoff,
    addresses: Window,
    accounts: Mutex<HashMap<String, Streak>>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(Policy::default())
    }
}

impl Throttle {
    pub fn new(policy: Policy) -> Self {
        Throttle {
            backoff: policy.per_account,
            addresses: Window::new(policy.per_address),
            accounts: Mutex::default(),
        }
    }

    /// `Err(seconds)` while the account's delay runs or the address is over its limit: how long
    /// to wait.
    pub fn check(&self, account: &str, address: &str) -> Result<(), u64> {
        let now = Instant::now();
        let account_wait = self
            .accounts
            .lock()
            .expect("throttle lock")
            .get(account)
            .filter(|s| now - s.last < self.backoff.forget_after)
            .map_or(0, |s| {
                let left = self.backoff.delay(s.failures).saturating_sub(now - s.last);
                if left.is_zero() {
                    0
                } else {
                    left.as_secs().max(1)
                }
            });
        let address_wait = self.addresses.check(address).err().unwrap_or(0);
        match account_wait.max(address_wait) {
            0 => Ok(()),
            wait => Err(wait),
        }
    }

    /// [`Throttle::check`] as the error a person sees: "Too many {what}. Try again in …".
    pub fn admit(&self, account: &str, address: &str, what: &'static str) -> crate::Result<()> {
        self.check(account, address)
            .map_err(|retry_after_secs| crate::Error::RateLimited {
                what,
                retry_after_secs,
            })
    }

    /// Counts a failed sign-in (only attempts that were let through are counted: a refused one
    /// checks no password, and counting it would let anyone stretch an account's delay).
    pub fn record_failure(&self, account: &str, address: &str) {
        let now = Instant::now();
        let forget_after = self.backoff.forget_after;
        {
            let mut map = self.accounts.lock().expect("throttle lock");
            if map.len() >= MAX_KEYS {
                map.retain(|_, s| now - s.last < forget_after);
            }
            let streak = map.entry(account.to_owned()).or_insert(Streak {
                failures: 0,
                last: now,
            });
            if now - streak.last >= forget_after {
                streak.failures = 0;
            }
            streak.failures = streak.failures.saturating_add(1);
            streak.last = now;
        }
        self.addresses.record(address);
    }

    /// A successful sign-in ends the account's streak (not the address's count).
    pub fn clear_account(&self, account: &str) {
        self.accounts.lock().expect("throttle lock").remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(first: Duration) -> Policy {
        Policy {
            per_account: Backoff {
                free: 3,
                first,
                max: first * 4,
                forget_after: Duration::from_secs(3600),
            },
            per_address: Limit {
                max: 5,
                window: Duration::from_secs(60),
            },
        }
    }

    #[test]
    fn the_account_delay_doubles_up_to_its_cap() {
        let b = policy(Duration::from_secs(60)).per_account;
        let mins: Vec<u64> = (0..8).map(|n| b.delay(n).as_secs() / 60).collect();
        assert_eq!(mins, [0, 0, 0, 1, 2, 4, 4, 4]);
        assert_eq!(b.delay(u32::MAX), b.max);
    }

    #[test]
    fn an_account_waits_after_its_free_failures() {
        let t = Throttle::new(policy(Duration::from_secs(60)));
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
    fn once_the_delay_has_passed_the_account_may_try_again() {
        let t = Throttle::new(policy(Duration::from_millis(50)));
        for _ in 0..3 {
            t.record_failure("a@x.io", "1.2.3.4");
        }
        assert!(t.check("a@x.io", "1.2.3.4").is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert!(t.check("a@x.io", "1.2.3.4").is_ok());
        // A further failure doubles the wait: still refused after the first delay.
        t.record_failure("a@x.io", "1.2.3.4");
        std::thread::sleep(Duration::from_millis(60));
        assert!(t.check("a@x.io", "1.2.3.4").is_err());
        std::thread::sleep(Duration::from_millis(50));
        assert!(t.check("a@x.io", "1.2.3.4").is_ok());
    }

    #[test]
    fn locks_an_address_across_accounts() {
        let t = Throttle::new(policy(Duration::from_secs(60)));
        for i in 0..5 {
            t.record_failure(&format!("u{i}@x.io"), "1.2.3.4");
        }
        assert!(t.check("new@x.io", "1.2.3.4").is_err());
        assert!(t.check("new@x.io", "5.6.7.8").is_ok());
    }

    #[test]
    fn a_window_limits_each_key_on_its_own() {
        let w = Window::new(Limit {
            max: 2,
            window: Duration::from_secs(600),
        });
        assert!(w.take("tenant 1").is_ok());
        assert!(w.take("tenant 1").is_ok());
        let wait = w.take("tenant 1").unwrap_err();
        assert!((599..=600).contains(&wait), "{wait}");
        assert!(w.take("tenant 2").is_ok());
    }
}
