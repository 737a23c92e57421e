//! Argon2id password hashing with OWASP's parameters (19 MiB, 2 passes, 1 lane), run on the
//! blocking pool so sign-ins never stall the async workers.
//!
//! At most one hash per core runs at once (a burst of sign-ins queues instead of exhausting
//! memory), each in a 19 MiB block buffer. Buffers are reused while sign-ins keep coming (a fresh
//! one costs its page faults: sign-ins/s fell by a third without reuse) and dropped once unused
//! for [`KEEP_IDLE`], by a thread that exists only while some are kept; the server's allocator
//! (jemalloc, see server/src/main.rs) then gives the memory back to the system, so an idle panel
//! holds none. (Kept forever, they were 19 MiB per core; under glibc's malloc freed ones stayed
//! in its arenas: bench/panel.py measures.)

use std::{
    sync::{Condvar, Mutex, OnceLock},
    time::{Duration, Instant},
};

use argon2::{
    password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString},
    Algorithm, Argon2, Block, Params, Version,
};
use subtle::ConstantTimeEq;

use crate::{Error, Result};

/// How long an unused buffer is kept for the next sign-in.
pub const KEEP_IDLE: Duration = Duration::from_secs(2);

fn params() -> Params {
    Params::new(Params::DEFAULT_M_COST, 2, 1, None).expect("valid argon2 parameters")
}

/// Argon2 memory: at most `max` buffers exist; a hash waits (on a blocking-pool thread, never an
/// async worker) until one is free. Plain std primitives, so the pool works the same from any
/// tokio runtime (each test has its own).
struct Pool {
    max: usize,
    state: Mutex<PoolState>,
    /// A buffer came back.
    freed: Condvar,
}

#[derive(Default)]
struct PoolState {
    /// Buffers in existence: leased plus kept.
    made: usize,
    /// Kept buffers and when each came back; the last is the most recently used.
    kept: Vec<(Vec<Block>, Instant)>,
    /// Whether the thread that drops idle buffers is running.
    reaping: bool,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self) -> Vec<Block> {
        let mut s = self.lock();
        loop {
            if let Some((buf, _)) = s.kept.pop() {
                return buf;
            }
            if s.made < self.max {
                s.made += 1;
                return Vec::new();
            }
            s = self.freed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn give(&'static self, buf: Vec<Block>) {
        let mut s = self.lock();
        s.kept.push((buf, Instant::now()));
        self.freed.notify_one();
        if !s.reaping {
            s.reaping = std::thread::Builder::new()
                .name("argon2-reaper".into())
                .spawn(|| self.reap())
                .is_ok();
            if !s.reaping {
                // No thread to drop them later: keep nothing.
                let kept = std::mem::take(&mut s.kept);
                s.made -= kept.len();
            }
        }
    }

    /// Drops each kept buffer once it has been unused for [`KEEP_IDLE`]; ends when none is kept.
    fn reap(&self) {
        loop {
            let mut s = self.lock();
            let Some(oldest) = s.kept.first().map(|(_, at)| *at) else {
                s.reaping = false;
                return;
            };
            let idle = oldest.elapsed();
            if idle >= KEEP_IDLE {
                let (buf, _) = s.kept.remove(0);
                s.made -= 1;
                drop(s);
                drop(buf);
            } else {
                drop(s);
                std::thread::sleep(KEEP_IDLE - idle);
            }
        }
    }
}

/// Hands the buffer back even if hashing panicked.
struct Lease {
    pool: &'static Pool,
    buf: Option<Vec<Block>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            self.pool.give(b);
        }
    }
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        max: std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 4),
        state: Mutex::new(PoolState::default()),
        freed: Condvar::new(),
    })
}

/// How many argon2 buffers exist right now (leased or kept).
#[cfg(test)]
fn buffers() -> usize {
    pool().lock().made
}

/// Runs `f` on the blocking pool with a block buffer large enough for `blocks`.
async fn with_memory<T: Send + 'static>(
    blocks: usize,
    f: impl FnOnce(&mut [Block]) -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(move || {
        let pool = pool();
        let mut lease = Lease {
            pool,
            buf: Some(pool.take()),
        };
        let mem = lease.buf.as_mut().expect("leased");
        if mem.len() < blocks {
            mem.resize(blocks, Block::default());
        }
        f(&mut mem[..blocks])
    })
    .await
    .map_err(Error::internal)
}

pub async fn hash(password: String) -> Result<String> {
    let p = params();
    with_memory(p.block_count(), move |mem| {
        let salt = SaltString::generate(&mut OsRng);
        let mut raw_salt = [0u8; 64];
        let salt_bytes = salt.decode_b64(&mut raw_salt).map_err(Error::internal)?;
        let mut out = [0u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, p.clone())
            .hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, mem)
            .map_err(Error::internal)?;
        let phc = PasswordHash {
            algorithm: argon2::ARGON2ID_IDENT,
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&p).map_err(Error::internal)?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).map_err(Error::internal)?),
        };
        Ok(phc.to_string())
    })
    .await?
}

/// Checks `password` against a stored PHC string.
fn verify_with(password: &[u8], hash: &str, mem: &mut [Block]) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(p), Some(salt), Some(expected)) = (Params::try_from(&parsed), parsed.salt, parsed.hash)
    else {
        return false;
    };
    if parsed.algorithm != argon2::ARGON2ID_IDENT || p.block_count() > mem.len() {
        return false;
    }
    let mut raw_salt = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut raw_salt) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let blocks = p.block_count();
    let ok = Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
        .hash_password_into_with_memory(password, salt, &mut out, &mut mem[..blocks])
        .is_ok();
    ok && bool::from(out.ct_eq(expected.as_bytes()))
}

/// Verifies `password` against `hash`. With no hash (unknown user, or no password set yet) it
/// still does the same work against a dummy hash, so timing does not tell whether an account
/// exists.
pub async fn verify(password: String, hash: Option<String>) -> Result<bool> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = match DUMMY.get() {
        Some(d) => d.clone(),
        None => {
            let d = self::hash("pier-dummy-password-for-timing".into()).await?;
            DUMMY.get_or_init(|| d).clone()
        }
    };
    with_memory(params().block_count(), move |mem| match hash {
        Some(h) => verify_with(password.as_bytes(), &h, mem),
        None => {
            verify_with(password.as_bytes(), &dummy, mem);
            false
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{PasswordHasher, PasswordVerifier};

    #[tokio::test]
    async fn idle_buffers_are_given_back() {
        let h = hash("correct horse battery".into()).await.unwrap();
        assert!(buffers() >= 1, "the buffer is kept for the next sign-in");
        assert!(verify("correct horse battery".into(), Some(h))
            .await
            .unwrap());
        // Then dropped once unused (other tests in this process may be hashing too: wait for
        // a quiet moment, bounded).
        let deadline = Instant::now() + KEEP_IDLE * 10;
        while buffers() > 0 {
            assert!(
                Instant::now() < deadline,
                "{} buffers still kept",
                buffers()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse battery".into(), Some(h.clone()))
            .await
            .unwrap());
        assert!(!verify("wrong horse battery".into(), Some(h)).await.unwrap());
        assert!(!verify("anything".into(), None).await.unwrap());
        assert!(!verify("anything".into(), Some("not a hash".into()))
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn interoperates_with_the_reference_implementation() {
        // A hash made by argon2's own PasswordHasher verifies here, and ours verifies there.
        let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params());
        let theirs = a
            .hash_password(b"interop password", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert!(verify("interop password".into(), Some(theirs))
            .await
            .unwrap());
        let ours = hash("interop password".into()).await.unwrap();
        assert!(a
            .verify_password(b"interop password", &PasswordHash::new(&ours).unwrap())
            .is_ok());
    }
}
