//! Starting Pier: the service, made with everything it depends on, and the work that runs beside
//! the web server (the reconciler and its helpers, the certificate issuer). `pier serve` and the
//! integration tests both start Pier here; only serving HTTP (a listener, or a test's router
//! called directly) is theirs.

use std::{future::Future, sync::Arc};

use pier_core::{
    db::Db,
    dns::Resolve,
    runtime::Runtime,
    secret::SecretKey,
    service::{Settings, Wiring},
    Pier,
};
use tokio::task::JoinHandle;

use crate::{certs::Challenges, proxy::Proxy};

/// What a Pier is made of.
pub struct Parts {
    pub db: Db,
    pub key: SecretKey,
    pub settings: Settings,
    pub runtime: Arc<dyn Runtime>,
    /// How DNS checks look names up (None: the checks are off).
    pub resolver: Option<Arc<dyn Resolve>>,
    /// The HAProxy in front, started or adopted (None: `--no-proxy`).
    pub proxy: Option<Arc<Proxy>>,
    /// Where the issuer leaves HTTP-01 answers for the router.
    pub challenges: Challenges,
}

/// A started Pier: the service and the tasks running beside it.
pub struct Handles {
    pub pier: Pier,
    pub proxy: Option<Arc<Proxy>>,
    pub challenges: Challenges,
    tasks: Vec<JoinHandle<()>>,
}

/// Makes the service and starts its background work.
pub fn launch(parts: Parts) -> Handles {
    let Parts {
        db,
        key,
        settings,
        runtime,
        resolver,
        proxy,
        challenges,
    } = parts;
    let wiring = Wiring {
        resolver,
        proxy_status: proxy.clone().map(|p| {
            let read: pier_core::service::ProxyStatusSource = Arc::new(move || p.status());
            read
        }),
    };
    let pier = Pier::wired(db, key, settings, runtime, wiring);
    let mut tasks = crate::engine::spawn(pier.clone(), proxy.clone());
    if let Some(p) = proxy.clone().filter(|_| pier.settings().acme.enabled) {
        let issuer = crate::certs::Issuer::new(pier.clone(), p, challenges.clone());
        tasks.push(tokio::spawn(issuer.run()));
        tracing::info!(directory = %pier.settings().acme.directory, "certificates from ACME");
    }
    Handles {
        pier,
        proxy,
        challenges,
        tasks,
    }
}

impl Handles {
    /// Runs `work` beside the others; it ends with them.
    pub fn spawn(&mut self, work: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(work));
    }

    /// Stops every task at once, wherever it is (mid-pull, mid-create…), as a crash would.
    pub fn abort(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }

    /// Stops the tasks, writes the audit entries still gathering and closes the database.
    pub async fn shutdown(mut self) {
        self.abort();
        self.pier.flush_audit().await;
        self.pier.db().close().await;
    }
}
