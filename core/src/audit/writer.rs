//! Writes audit entries in batches: one statement for whatever arrived within `BATCH_WINDOW`,
//! by one task. An entry per request in a statement of its own made every audited write wait
//! for SQLite's write lock twice and cost the REST API half its write throughput; batched every
//! 20 ms, a quarter; every 200 ms, 2 % (bench/observability.py, release build, this machine).
//! The batch's statement holds the write lock for a few milliseconds, which shows in the p99 of
//! writes that meet it (7 → 25 ms under a saturating load), not in their throughput.
//!
//! The price: an entry is in the database within `BATCH_WINDOW` of its change, not before the
//! response. A crash in between loses those entries (a clean shutdown flushes them), and
//! everything that reads the log flushes first, so a person always sees their latest change.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::{db::Db, repo};

/// How long the writer gathers entries before it writes them.
const BATCH_WINDOW: Duration = Duration::from_millis(200);
/// The most entries one transaction writes.
const BATCH_MAX: usize = 2048;
/// Entries waiting beyond this make `record` wait (backpressure, never loss).
const QUEUE: usize = 8192;

/// One entry, owned, on its way to the database.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Pending {
    pub at: i64,
    pub actor_id: Option<i64>,
    pub actor_email: String,
    pub token_id: Option<i64>,
    pub address: Option<String>,
    pub action: &'static str,
    pub object_kind: &'static str,
    pub object_name: String,
    pub owner_id: Option<i64>,
    pub summary: String,
    pub outcome: &'static str,
    pub message: Option<String>,
}

enum Msg {
    Entry(Box<Pending>),
    /// Answered once every entry sent before it is written.
    Flush(oneshot::Sender<()>),
}

/// The handle `Pier` keeps; the task ends when it is dropped.
pub(crate) struct Writer {
    tx: mpsc::Sender<Msg>,
}

impl Writer {
    /// Starts the writing task (on the current Tokio runtime).
    pub(crate) fn start(db: Db) -> Writer {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, rx));
        Writer { tx }
    }

    pub(crate) async fn send(&self, e: Pending) {
        if self.tx.send(Msg::Entry(Box::new(e))).await.is_err() {
            tracing::error!("the audit writer has stopped; an entry was not written");
        }
    }

    /// Waits until every entry sent so far is in the database.
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn run(db: Db, mut rx: mpsc::Receiver<Msg>) {
    while let Some(first) = rx.recv().await {
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        let mut take = |m: Msg, batch: &mut Vec<Pending>| match m {
            Msg::Entry(e) => batch.push(*e),
            Msg::Flush(done) => flushes.push(done),
        };
        let flushing = matches!(first, Msg::Flush(_));
        take(first, &mut batch);
        if !flushing {
            // Gather what the next few milliseconds bring (a flush cuts the wait short).
            let until = tokio::time::Instant::now() + BATCH_WINDOW;
            while batch.len() < BATCH_MAX {
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(m)) => {
                        let flush = matches!(m, Msg::Flush(_));
                        take(m, &mut batch);
                        if flush {
                            break;
                        }
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(m) => take(m, &mut batch),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            if let Err(e) = write(&db, &batch).await {
                tracing::error!(error = %e, entries = batch.len(), "could not write audit entries");
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn write(db: &Db, batch: &[Pending]) -> crate::Result<()> {
    let json = serde_json::to_string(batch).map_err(crate::Error::internal)?;
    let written = repo::audit::insert_json(db, &json).await?;
    debug_assert_eq!(written as usize, batch.len());
    Ok(())
}
