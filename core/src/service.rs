//! The service layer's core: `Pier`, its settings and what it is wired to. The operations a
//! person can ask for, each with its permission check, live in one module per area
//! (`accounts`, `users`, `two_factor`, `tokens`, `apps`, `domains`, `backups`, `audit`, …) as
//! further `impl Pier` blocks. Browser server functions and the REST API call these, never the
//! repository directly.

use std::sync::Arc;

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{
    db::Db,
    model::{Actor, Quotas},
    now, repo,
    runtime::Runtime,
    secret::SecretKey,
    telemetry::Telemetry,
    throttle::{Policy, TenantLimits, TenantPolicy, Throttle},
    validate, Error, Result,
};

/// Tunables, with production defaults; tests shorten them.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A signed-in session ends after this long without a request.
    pub session_idle_secs: i64,
    /// A signed-in session ends this long after sign-in, however active.
    pub session_absolute_secs: i64,
    pub invite_ttl_secs: i64,
    pub default_quotas: Quotas,
    pub throttle: Policy,
    /// Per-tenant limits of costly actions (redeploys, DNS checks).
    pub tenant_limits: TenantPolicy,
    pub engine: EngineSettings,
    pub routing: RoutingSettings,
    pub acme: crate::certs::AcmeSettings,
    pub backups: crate::backups::BackupSettings,
    pub audit: crate::audit::AuditSettings,
    pub notify: NotifySettings,
}

/// How notifications are delivered.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// Webhooks may go to private networks and this machine (a LAN receiver; the tests').
    pub allow_private_webhooks: bool,
    /// The first retry waits this long; later ones 4, 20, 120 and 720 times as long.
    pub retry_base_secs: i64,
    /// Webhooks and the mail server only at these `host` or `host:port` (empty: any public
    /// host). An address listed here is allowed even where it is private.
    pub hosts: Vec<String>,
    /// An extra root (PEM) to trust for the mail server's TLS certificate (a private CA).
    pub smtp_ca_file: Option<std::path::PathBuf>,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            allow_private_webhooks: false,
            retry_base_secs: 30,
            hosts: Vec::new(),
            smtp_ca_file: None,
        }
    }
}

/// How host names reach apps.
#[derive(Debug, Clone)]
pub struct RoutingSettings {
    /// Apps also answer at `<app>-<handle>.<base domain>`.
    pub base_domain: Option<String>,
    /// The panel's own public host name (no tenant may register it).
    pub panel_host: Option<String>,
    /// Whether tenants may register `*.example.com`.
    pub allow_wildcards: bool,
    /// Domains one tenant may register.
    pub max_domains_per_user: i64,
    /// This server's public addresses, for telling tenants whether their DNS points here.
    pub public_addrs: Vec<std::net::IpAddr>,
    /// A domain is attached and certified only after its owner proved it theirs with a TXT
    /// record (`_pier-challenge.<domain>` holding their token).
    pub require_domain_proof: bool,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        RoutingSettings {
            base_domain: None,
            panel_host: None,
            allow_wildcards: false,
            max_domains_per_user: 100,
            public_addrs: Vec::new(),
            require_domain_proof: true,
        }
    }
}

/// How the apps engine behaves; tests shorten the waits.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// A full comparison of desired and actual state runs at least this often.
    pub resync_secs: u64,
    /// A new container must answer within this long or its deployment fails.
    pub health_timeout_secs: u64,
    /// CPU and memory are sampled this often.
    pub stats_every_secs: u64,
    /// Seconds a container gets to stop after SIGTERM.
    pub stop_timeout_secs: i64,
    /// Process limit of every container.
    pub pids_limit: i64,
    /// Extra labels on everything the engine creates (tests mark theirs).
    pub extra_labels: Vec<(String, String)>,
    /// Registries images may come from (`host[:port]`); empty means any.
    pub allowed_registries: Vec<String>,
    /// After a new deployment takes over its routes, the old container runs this much longer so
    /// requests it is answering finish.
    pub drain_ms: u64,
    /// What tenants' containers may reach beyond their network.
    pub egress: crate::runtime::EgressPolicy,
    /// Images of this many latest deployments per app stay on the engine (for quick
    /// rollbacks); older ones Pier pulled are removed.
    pub keep_images: i64,
    /// How often unneeded images are looked for.
    pub image_gc_secs: u64,
    /// The most a container's writable layer may hold (MiB; 0: no bound), where the storage
    /// driver can bound it (volumes have their own sizes).
    pub writable_layer_mb: i64,
    /// How often an app that follows its image tag asks the registry (±10 % per app).
    pub tag_check_secs: i64,
    /// How often the tag follower looks for apps that are due.
    pub tag_poll_secs: u64,
    /// How often the Swarm's machines are looked at (for the ones that went down or came back).
    pub node_check_secs: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            tag_check_secs: crate::tags::DEFAULT_CHECK_SECS,
            tag_poll_secs: 60,
            node_check_secs: 5,
            resync_secs: 15,
            health_timeout_secs: 60,
            stats_every_secs: 15,
            stop_timeout_secs: 10,
            pids_limit: 512,
            extra_labels: Vec::new(),
            allowed_registries: Vec::new(),
            drain_ms: 2000,
            egress: Default::default(),
            keep_images: 3,
            image_gc_secs: 600,
            writable_layer_mb: 10 * 1024,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            session_idle_secs: 7 * 24 * 3600,
            session_absolute_secs: 30 * 24 * 3600,
            invite_ttl_secs: 48 * 3600,
            default_quotas: Quotas::default(),
            throttle: Policy::default(),
            tenant_limits: TenantPolicy::default(),
            engine: EngineSettings::default(),
            routing: RoutingSettings::default(),
            acme: crate::certs::AcmeSettings::default(),
            backups: Default::default(),
            audit: Default::default(),
            notify: Default::default(),
        }
    }
}

/// HAProxy as the admin page shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProxyStatus {
    pub running: bool,
    pub workers: Vec<u32>,
    pub routes: usize,
    /// A refused configuration or a failed start, while it stands.
    pub error: Option<String>,
}

/// Reads HAProxy's state (the server's proxy supervisor answers).
pub type ProxyStatusSource = Arc<dyn Fn() -> ProxyStatus + Send + Sync>;

/// What the service gets from the server around it, when it is made.
#[derive(Default, Clone)]
pub struct Wiring {
    /// How domain names are looked up for DNS checks (None: the checks are off).
    pub resolver: Option<Arc<dyn crate::dns::Resolve>>,
    /// Where HAProxy's state is read from (None: this Pier runs without HAProxy).
    pub proxy_status: Option<ProxyStatusSource>,
}

/// How a sign-in with a right password went on.
#[derive(Debug, Clone)]
pub enum SignIn {
    /// Signed in.
    Done(Actor),
    /// The account has a second factor: the session waits for it.
    NeedsSecondFactor(crate::two_factor::Factors),
}

/// Where a request comes from, for throttling and the session list.
#[derive(Debug, Clone)]
pub struct Client {
    pub ip: String,
    pub user_agent: Option<String>,
}

/// See [`Pier::claim_listing`].
pub(crate) struct ListingClaim(Pier);

impl Drop for ListingClaim {
    fn drop(&mut self) {
        (self.0)
            .0
            .observed
            .listing
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

#[derive(Clone)]
pub struct Pier(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    db: Db,
    key: SecretKey,
    settings: Settings,
    pub(crate) throttle: Throttle,
    /// Whether two factors are required: 0 not read yet, 1 no, 2 yes (see `two_factor`).
    pub(crate) two_factor_required: std::sync::atomic::AtomicU8,
    tenant_limits: TenantLimits,
    runtime: Arc<dyn Runtime>,
    telemetry: Telemetry,
    pub(crate) metrics: crate::metrics::Metrics,
    /// Started with the first audit entry (see `audit::writer`).
    pub(crate) audit_writer: std::sync::OnceLock<crate::audit::Writer>,
    /// When each app's latest webhook check runs (see `tags::HOOK_MIN_GAP`).
    pub(crate) tag_hooks: std::sync::Mutex<std::collections::HashMap<i64, std::time::Instant>>,
    wake: tokio::sync::Notify,
    wake_certs: tokio::sync::Notify,
    pub(crate) wake_backups: tokio::sync::Notify,
    /// A notification was queued (see `notify`).
    pub(crate) wake_notify: tokio::sync::Notify,
    /// Counts rollouts that ended, for callers waiting on one (see `apps::wait`).
    pub(crate) rollouts_ended: tokio::sync::watch::Sender<u64>,
    /// Apps the reconciler leaves alone (a backup or restore has their container).
    pub(crate) holds: std::sync::Mutex<crate::backups::Holds>,
    instance: tokio::sync::OnceCell<String>,
    /// The engine's last container list, and whether it is still current.
    observed: crate::observed::Observed,
    proxy_status: Option<ProxyStatusSource>,
    egress: std::sync::RwLock<Option<crate::runtime::EgressStatus>>,
    resolver: std::sync::RwLock<Option<Arc<dyn crate::dns::Resolve>>>,
    /// Followed log streams open per user.
    log_slots: crate::slots::Slots,
    /// Waits for a deployment open per user (see `apps::wait`).
    wait_slots: crate::slots::Slots,
    /// See [`Pier::panel_certificate_name`].
    panel_cert_name: Option<String>,
    /// Until when the panel host's CA certificate is valid (0: it has none), for HSTS.
    panel_cert_until: std::sync::atomic::AtomicI64,
}

pub(crate) fn session_err(e: tower_sessions::session::Error) -> Error {
    Error::internal(format!("session: {e}"))
}

pub(crate) fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

pub(crate) fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The handle shown for a session instead of its id (which is the cookie value).
pub(crate) fn session_handle(id: &str) -> String {
    sha256_hex(&format!("pier session handle\0{id}"))[..16].to_owned()
}

/// The panel host when Pier orders a CA certificate for it: ACME on, and the configured host a
/// DNS name (not an address).
fn panel_certificate_name(s: &Settings) -> Option<String> {
    let host = s.routing.panel_host.as_deref()?;
    if !s.acme.enabled || !s.acme.panel_certificate || host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    validate::domain(host, false)
        .ok()
        .filter(|n| n == host && n.contains('.'))
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

impl Pier {
    /// A service with nothing from the server around it: no DNS checks, no HAProxy (the command
    /// line's tasks, and tests).
    pub fn new(db: Db, key: SecretKey, settings: Settings, runtime: Arc<dyn Runtime>) -> Self {
        Self::wired(db, key, settings, runtime, Wiring::default())
    }

    pub fn wired(
        db: Db,
        key: SecretKey,
        settings: Settings,
        runtime: Arc<dyn Runtime>,
        wiring: Wiring,
    ) -> Self {
        let throttle = Throttle::new(settings.throttle);
        let tenant_limits = TenantLimits::new(settings.tenant_limits);
        let panel_cert_name = panel_certificate_name(&settings);
        Pier(Arc::new(Inner {
            panel_cert_name,
            db,
            key,
            settings,
            throttle,
            two_factor_required: Default::default(),
            tenant_limits,
            runtime,
            telemetry: Telemetry::default(),
            metrics: Default::default(),
            audit_writer: Default::default(),
            tag_hooks: Default::default(),
            wake: tokio::sync::Notify::new(),
            wake_certs: tokio::sync::Notify::new(),
            wake_backups: tokio::sync::Notify::new(),
            wake_notify: tokio::sync::Notify::new(),
            rollouts_ended: tokio::sync::watch::Sender::new(0),
            holds: Default::default(),
            proxy_status: wiring.proxy_status,
            egress: std::sync::RwLock::new(None),
            resolver: std::sync::RwLock::new(wiring.resolver),
            instance: tokio::sync::OnceCell::new(),
            observed: Default::default(),
            panel_cert_until: std::sync::atomic::AtomicI64::new(0),
            log_slots: crate::slots::Slots::new(
                crate::logs::MAX_FOLLOWS_PER_USER,
                "open log streams",
                crate::logs::RECHECK.as_secs(),
            ),
            wait_slots: crate::slots::Slots::new(
                crate::apps::MAX_WAITS_PER_USER,
                "waits for a deployment",
                1,
            ),
        }))
    }

    /// The count of container changes the engine reported so far (see [`crate::observed`]).
    pub fn container_generation(&self) -> u64 {
        self.0.observed.generation()
    }

    /// Asks the engine for the installation's containers and records the answer for pages.
    /// The generation is read first, so a change while the engine lists leaves the list stale.
    pub async fn list_containers(
        &self,
        instance: &str,
    ) -> std::result::Result<Arc<Vec<crate::runtime::Container>>, crate::runtime::RuntimeError>
    {
        let generation = self.0.observed.generation();
        let list = self.runtime().containers(instance).await?;
        Ok(self.0.observed.record(generation, list))
    }

    /// Claims the one background refresh of the container list; `None` while one runs. The
    /// claim ends when dropped, however the refresh ends.
    pub(crate) fn claim_listing(&self) -> Option<ListingClaim> {
        use std::sync::atomic::Ordering;
        (!self.0.observed.listing.swap(true, Ordering::AcqRel)).then(|| ListingClaim(self.clone()))
    }

    /// The last container list, if taken within `max_age`.
    pub fn observed_containers(
        &self,
        max_age: std::time::Duration,
    ) -> Option<Arc<Vec<crate::runtime::Container>>> {
        self.0.observed.within(max_age)
    }

    /// The last container list while the engine's events say nothing changed since.
    pub fn unchanged_containers(&self) -> Option<Arc<Vec<crate::runtime::Container>>> {
        self.0.observed.current()
    }

    /// Whether the engine's events are followed and reported no change to this installation's
    /// containers since `generation` was read.
    pub fn containers_unchanged_since(&self, generation: u64) -> bool {
        self.0.observed.unchanged_since(generation)
    }

    /// The engine reported a change to one of this installation's containers.
    pub fn container_changed(&self) {
        self.0.observed.changed();
    }

    /// Following the engine's container events started or stopped.
    pub fn following_container_events(&self, yes: bool) {
        self.0.observed.set_following(yes);
    }

    /// Replaces the DNS resolver given at start (tests point it at their own DNS server).
    #[cfg(any(test, feature = "test-support"))]
    pub fn set_resolver(&self, r: Arc<dyn crate::dns::Resolve>) {
        *self.0.resolver.write().expect("resolver lock") = Some(r);
    }

    pub(crate) fn resolver(&self) -> Option<Arc<dyn crate::dns::Resolve>> {
        self.0.resolver.read().expect("resolver lock").clone()
    }

    /// HAProxy's state for admins; None when this Pier runs without it.
    pub fn proxy_status(&self, actor: &Actor) -> Result<Option<ProxyStatus>> {
        if actor.role != crate::model::Role::Admin {
            return Err(Error::Forbidden);
        }
        Ok(self.0.proxy_status.as_ref().map(|f| f()))
    }

    /// The container engine's isolation for admins; None when the engine does not answer.
    pub async fn engine_info(&self, actor: &Actor) -> Result<Option<crate::runtime::EngineInfo>> {
        Self::require_admin(actor)?;
        match self.runtime().info().await {
            Ok(i) => Ok(Some(i)),
            Err(e) => {
                tracing::warn!(error = %e, "reading the engine's info failed");
                Ok(None)
            }
        }
    }

    /// Records how the egress rules stand (the reconciler does after every check).
    pub fn record_egress(&self, status: crate::runtime::EgressStatus) {
        *self.0.egress.write().expect("egress lock") = Some(status);
    }

    /// The egress rules' state for admins; None before the engine first checked them.
    pub fn egress_status(&self, actor: &Actor) -> Result<Option<crate::runtime::EgressStatus>> {
        Self::require_admin(actor)?;
        Ok(self.0.egress.read().expect("egress lock").clone())
    }

    /// The panel host when Pier orders a CA certificate for it (decided once, from the
    /// settings: every panel response asks).
    pub fn panel_certificate_name(&self) -> Option<&str> {
        self.0.panel_cert_name.as_deref()
    }

    /// The issuer installed a CA certificate for the panel host, valid until `not_after`.
    pub fn set_panel_certificate(&self, not_after: i64) {
        self.0
            .panel_cert_until
            .store(not_after, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the panel host is served with a valid CA certificate now (so HSTS may be sent).
    pub fn panel_certified(&self) -> bool {
        self.0
            .panel_cert_until
            .load(std::sync::atomic::Ordering::Relaxed)
            > now()
    }

    /// Followed log streams open per user.
    pub fn log_slots(&self) -> &crate::slots::Slots {
        &self.0.log_slots
    }

    /// Waits for a deployment each person holds open (see `apps::wait`).
    pub fn wait_slots(&self) -> &crate::slots::Slots {
        &self.0.wait_slots
    }

    /// Asks the certificate issuer to look for work now.
    pub fn wake_certs(&self) {
        self.0.wake_certs.notify_one();
    }

    pub async fn certs_woken(&self) {
        self.0.wake_certs.notified().await;
    }

    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.0.runtime
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.0.telemetry
    }

    /// Tells the reconciler that desired state changed.
    pub fn wake_engine(&self) {
        self.0.wake.notify_one();
    }

    /// Waits until [`Pier::wake_engine`] is called (a call made before waiting counts).
    pub async fn engine_woken(&self) {
        self.0.wake.notified().await;
    }

    /// This installation's id, on every container and network it owns.
    pub async fn instance_id(&self) -> Result<String> {
        self.0
            .instance
            .get_or_try_init(|| repo::instance::id(&self.0.db))
            .await
            .cloned()
    }

    pub fn db(&self) -> &Db {
        &self.0.db
    }

    pub fn key(&self) -> &SecretKey {
        &self.0.key
    }

    /// The per-tenant rate limits of costly actions.
    pub(crate) fn tenant_limits(&self) -> &TenantLimits {
        &self.0.tenant_limits
    }

    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }
}
