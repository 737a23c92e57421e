//! The service layer: every operation a person can ask for, with its permission check. Browser
//! server functions and the REST API call these, never the repository directly.

use std::sync::Arc;

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_cookies::Cookies;
use tower_sessions::{Expiry, Session};

use crate::{
    db::Db,
    model::{Actor, Origin, Quotas, Role, SessionSummary, User},
    now, password, repo,
    runtime::Runtime,
    secret::SecretKey,
    session_store::{AuthData, AUTH_KEY, CSRF_KEY},
    telemetry::Telemetry,
    throttle::{Policy, TenantLimits, TenantPolicy, Throttle},
    validate::{self, Checks},
    Error, Result,
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
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            tag_check_secs: crate::tags::DEFAULT_CHECK_SECS,
            tag_poll_secs: 60,
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

type ProxyStatusSource = Arc<dyn Fn() -> ProxyStatus + Send + Sync>;

/// How often an active session pushes back its idle expiry (each push is one write).
const REFRESH_EVERY_SECS: i64 = 300;

/// How long a visitor's CSRF cookie lasts (a sign-in form left open longer is sent again).
const ANONYMOUS_IDLE_SECS: i64 = 12 * 3600;

/// The cookie holding a visitor's CSRF token before they sign in.
pub const CSRF_COOKIE: &str = "pier_csrf";

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

/// Changes to a user; absent fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    /// Already checked (`validate::quotas`).
    pub quotas: Option<Quotas>,
}

impl UserPatch {
    /// What the patch changes, for the audit log.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = self.role {
            parts.push(format!("role {}", r.as_str()));
        }
        if let Some(d) = self.disabled {
            parts.push(if d { "disabled" } else { "enabled" }.to_owned());
        }
        if let Some(q) = self.quotas {
            parts.push(format!(
                "quotas: {} apps, {} MiB memory, {} CPUs, {} MiB storage, {} MiB backups",
                q.max_apps,
                q.max_memory_mb,
                validate::format_cpus(q.max_cpus_milli),
                q.max_storage_mb,
                q.max_backup_mb
            ));
        }
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join("; ")
        }
    }
}

/// Quotas as typed into the admin form, for the audit log: `[apps, memory MiB, CPUs, storage
/// MiB, backups MiB]`, an empty field said as `empty` ("unchanged", "default").
fn typed_quotas([apps, memory, cpus, storage, backups]: [&str; 5], empty: &str) -> String {
    let v = |s: &str| match s.trim() {
        "" => empty.to_owned(),
        t => t.chars().take(20).collect(),
    };
    format!(
        "quotas: apps {}, memory {} MiB, CPUs {}, storage {} MiB, backups {} MiB",
        v(apps),
        v(memory),
        v(cpus),
        v(storage),
        v(backups)
    )
}

impl NewUser {
    /// The new user as the audit log tells it (whether a password was set, never the password).
    fn describe(&self) -> String {
        let role = match self.role.trim() {
            "" => "default".to_owned(),
            r => r.chars().take(20).collect(),
        };
        let quotas = [
            self.max_apps.as_str(),
            &self.max_memory_mb,
            &self.max_cpus,
            &self.max_storage_mb,
            &self.max_backup_mb,
        ];
        format!(
            "role {role}; {}; {}",
            if self.password.is_empty() {
                "invite link"
            } else {
                "password set"
            },
            typed_quotas(quotas, "default")
        )
    }
}

/// A user to create, as typed into the admin form.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub email: String,
    pub role: String,
    /// Empty: the user gets an invite link to choose a password.
    pub password: String,
    pub max_apps: String,
    pub max_memory_mb: String,
    pub max_cpus: String,
    /// Empty: the operator's default.
    pub max_storage_mb: String,
    /// Empty: the operator's default.
    pub max_backup_mb: String,
}

/// See [`Pier::claim_listing`].
pub(crate) struct ListingClaim(Pier);

impl Drop for ListingClaim {
    fn drop(&mut self) {
        (self.0)
            .0
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
    /// Apps the reconciler leaves alone (a backup or restore has their container).
    pub(crate) holds: std::sync::Mutex<crate::backups::Holds>,
    instance: tokio::sync::OnceCell<String>,
    /// The engine's last container list and when it was taken.
    #[allow(clippy::type_complexity)]
    observed: std::sync::Mutex<Option<(std::time::Instant, Arc<Vec<crate::runtime::Container>>)>>,
    /// A page's refresh of that list is under way (one at a time, shared by every page).
    listing: std::sync::atomic::AtomicBool,
    proxy_status: std::sync::RwLock<Option<ProxyStatusSource>>,
    egress: std::sync::RwLock<Option<crate::runtime::EgressStatus>>,
    resolver: std::sync::RwLock<Option<Arc<dyn crate::dns::Resolve>>>,
    /// Followed log streams open per user.
    log_slots: crate::logs::LogSlots,
    /// See [`Pier::panel_certificate_name`].
    panel_cert_name: Option<String>,
    /// Until when the panel host's CA certificate is valid (0: it has none), for HSTS.
    panel_cert_until: std::sync::atomic::AtomicI64,
}

fn session_err(e: tower_sessions::session::Error) -> Error {
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
fn session_handle(id: &str) -> String {
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

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

impl Pier {
    pub fn new(db: Db, key: SecretKey, settings: Settings, runtime: Arc<dyn Runtime>) -> Self {
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
            holds: Default::default(),
            proxy_status: std::sync::RwLock::new(None),
            egress: std::sync::RwLock::new(None),
            resolver: std::sync::RwLock::new(None),
            instance: tokio::sync::OnceCell::new(),
            observed: std::sync::Mutex::new(None),
            listing: std::sync::atomic::AtomicBool::new(false),
            panel_cert_until: std::sync::atomic::AtomicI64::new(0),
            log_slots: Default::default(),
        }))
    }

    /// Records what the engine listed (the reconciler does after every look).
    pub fn observe_containers(
        &self,
        list: Vec<crate::runtime::Container>,
    ) -> Arc<Vec<crate::runtime::Container>> {
        let list = Arc::new(list);
        *self.0.observed.lock().expect("observed lock") =
            Some((std::time::Instant::now(), list.clone()));
        list
    }

    /// Claims the one background refresh of the container list; `None` while one runs. The
    /// claim ends when dropped, however the refresh ends.
    pub(crate) fn claim_listing(&self) -> Option<ListingClaim> {
        use std::sync::atomic::Ordering;
        (!self.0.listing.swap(true, Ordering::AcqRel)).then(|| ListingClaim(self.clone()))
    }

    /// The last container list, if taken within `max_age`.
    pub fn observed_containers(
        &self,
        max_age: std::time::Duration,
    ) -> Option<Arc<Vec<crate::runtime::Container>>> {
        self.0
            .observed
            .lock()
            .expect("observed lock")
            .as_ref()
            .filter(|(at, _)| at.elapsed() <= max_age)
            .map(|(_, list)| list.clone())
    }

    /// Where HAProxy's state is read from (set when the server starts or adopts it).
    pub fn set_proxy_status_source(&self, source: ProxyStatusSource) {
        *self.0.proxy_status.write().expect("proxy status lock") = Some(source);
    }

    /// How domain names are looked up for DNS checks (set by the server at start).
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
        let source = self
            .0
            .proxy_status
            .read()
            .expect("proxy status lock")
            .clone();
        Ok(source.map(|f| f()))
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
    pub fn log_slots(&self) -> &crate::logs::LogSlots {
        &self.0.log_slots
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

    // ----- CSRF -----------------------------------------------------------------------------

    /// The CSRF token forms carry. Signed in: the session's (made anew at every sign-in).
    /// A visitor who has not signed in has no session row at all: their token lives in a
    /// cookie signed with this Pier's key (`pier_csrf`, `__Host-` over HTTPS), so passers-by
    /// and crawlers write nothing to the database.
    pub async fn csrf_token(&self, session: &Session, cookies: &Cookies) -> Result<String> {
        if let Some(t) = session.get::<String>(CSRF_KEY).await.map_err(session_err)? {
            return Ok(t);
        }
        if session
            .get_value(AUTH_KEY)
            .await
            .map_err(session_err)?
            .is_some()
        {
            let t = random_token();
            session.insert(CSRF_KEY, &t).await.map_err(session_err)?;
            return Ok(t);
        }
        let key = self.csrf_cookie_key();
        let jar = cookies.signed(&key);
        if let Some(t) = jar.get(CSRF_COOKIE).map(|c| c.value().to_owned()) {
            return Ok(t);
        }
        let t = random_token();
        let mut c = tower_cookies::Cookie::new(CSRF_COOKIE, t.clone());
        c.set_http_only(true);
        c.set_same_site(tower_cookies::cookie::SameSite::Strict);
        c.set_path("/");
        c.set_max_age(time::Duration::seconds(ANONYMOUS_IDLE_SECS));
        jar.add(c);
        Ok(t)
    }

    /// Whether `presented` is the session's token (signed in) or the visitor's signed cookie
    /// token (not signed in).
    pub async fn check_csrf(
        &self,
        session: &Session,
        cookies: &Cookies,
        presented: Option<&str>,
    ) -> Result<()> {
        let expected = match session.get::<String>(CSRF_KEY).await.map_err(session_err)? {
            Some(t) => Some(t),
            None => {
                let key = self.csrf_cookie_key();
                let found = cookies
                    .signed(&key)
                    .get(CSRF_COOKIE)
                    .map(|c| c.value().to_owned());
                found
            }
        };
        match (expected, presented) {
            (Some(e), Some(p)) if bool::from(e.as_bytes().ct_eq(p.as_bytes())) => Ok(()),
            _ => Err(Error::Csrf),
        }
    }

    fn csrf_cookie_key(&self) -> tower_cookies::Key {
        tower_cookies::Key::from(&self.key().derive("csrf cookie"))
    }

    // ----- signing in and out ---------------------------------------------------------------

    pub async fn sign_in(
        &self,
        session: &Session,
        email: &str,
        password: &str,
        client: &Client,
    ) -> Result<SignIn> {
        let mut c = Checks::default();
        let email = c.check("email", validate::email(email));
        if password.is_empty() {
            c.check::<()>("password", Err("Enter your password.".into()));
        } else if password.len() > 4 * validate::PASSWORD_MAX_CHARS {
            c.check::<()>("password", Err("That password is too long.".into()));
        }
        c.finish()?;
        let email = email.unwrap_or_default();
        // Every attempt with a well-formed address is recorded, under the account it names
        // when there is one (its owner sees the failures on their account page).
        let user = repo::users::by_email(self.db(), &email).await?;
        let who = crate::audit::Who {
            user_id: user.as_ref().map(|u| u.id),
            email: email.clone(),
            origin: Origin {
                token_id: None,
                address: Some(client.ip.clone()),
            },
        };
        let mut what = crate::audit::Change::new(crate::audit::Action::SignIn, &email);
        what.owner = who.user_id;
        let r = self
            .check_sign_in(session, &email, password, client, user)
            .await;
        if let Ok(SignIn::NeedsSecondFactor(_)) = r {
            what.summary = "password accepted; asked for the second factor".into();
        }
        self.record_as(&who, what, &r).await;
        r
    }

    async fn check_sign_in(
        &self,
        session: &Session,
        email: &str,
        password: &str,
        client: &Client,
        user: Option<User>,
    ) -> Result<SignIn> {
        let throttle = &self.0.throttle;
        throttle
            .check(email, &client.ip)
            .map_err(|retry_after_secs| Error::RateLimited {
                what: "failed sign-in attempts",
                retry_after_secs,
            })?;

        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        if !password::verify(password.to_owned(), hash).await? {
            throttle.record_failure(email, &client.ip);
            tracing::info!(ip = %client.ip, "failed sign-in");
            return Err(Error::BadCredentials);
        }
        let user = user.expect("a verified password belongs to a user");
        if user.disabled {
            return Err(Error::AccountDisabled);
        }
        if repo::two_factor::enrolled(self.db(), user.id).await? {
            // The password is right, but the account's streak of failures is kept until the
            // second factor is too: knowing the password must not reset the code throttle.
            session.cycle_id().await.map_err(session_err)?;
            session.set_expiry(Some(Expiry::OnInactivity(time::Duration::seconds(
                crate::two_factor::PENDING_SECS,
            ))));
            let pending = crate::two_factor::Pending {
                user_id: user.id,
                at: now(),
            };
            session
                .insert(crate::two_factor::PENDING_KEY, &pending)
                .await
                .map_err(session_err)?;
            return Ok(SignIn::NeedsSecondFactor(self.factors(user.id).await?));
        }
        throttle.clear_account(email);
        Ok(SignIn::Done(
            self.complete_sign_in(session, user, client).await?,
        ))
    }

    /// Makes this session a signed-in one: a fresh id and CSRF token (no session fixation), the
    /// full idle lifetime.
    pub(crate) async fn complete_sign_in(
        &self,
        session: &Session,
        user: User,
        client: &Client,
    ) -> Result<Actor> {
        session.cycle_id().await.map_err(session_err)?;
        session
            .remove_value(crate::two_factor::PENDING_KEY)
            .await
            .map_err(session_err)?;
        session.set_expiry(Some(Expiry::OnInactivity(time::Duration::seconds(
            self.0.settings.session_idle_secs,
        ))));
        let t = now();
        let auth = AuthData {
            user_id: user.id,
            signed_in_at: t,
            refreshed_at: t,
            user_agent: client.user_agent.as_deref().map(|u| truncate(u, 256)),
            ip: Some(truncate(&client.ip, 64)),
        };
        session.insert(AUTH_KEY, &auth).await.map_err(session_err)?;
        session
            .insert(CSRF_KEY, random_token())
            .await
            .map_err(session_err)?;
        repo::users::touch_sign_in(self.db(), user.id, t).await?;
        tracing::info!(user_id = user.id, "signed in");
        Ok(Actor::from(user))
    }

    /// Ends this session; recorded in the audit log when someone was signed in.
    pub async fn sign_out(&self, session: &Session, client: &Client) -> Result<()> {
        let Some(mut actor) = self.current_actor(session).await? else {
            return self.end_this_session(session).await;
        };
        actor.origin.address = Some(client.ip.clone());
        let what = crate::audit::Change::new(crate::audit::Action::SignOut, &actor.email)
            .owner(actor.user_id)
            .summary("signed out");
        self.audited(&actor, what, self.end_this_session(session))
            .await
    }

    async fn end_this_session(&self, session: &Session) -> Result<()> {
        session.flush().await.map_err(session_err)
    }

    /// The signed-in user for this session, if any. Ends the session when it is past its
    /// absolute lifetime or its user was disabled or deleted.
    pub async fn current_actor(&self, session: &Session) -> Result<Option<Actor>> {
        let Some(mut auth) = session
            .get::<AuthData>(AUTH_KEY)
            .await
            .map_err(session_err)?
        else {
            return Ok(None);
        };
        let t = now();
        if t - auth.signed_in_at >= self.0.settings.session_absolute_secs {
            session.flush().await.map_err(session_err)?;
            return Ok(None);
        }
        let user = match repo::users::by_id(self.db(), auth.user_id).await? {
            Some(u) if !u.disabled => u,
            _ => {
                session.flush().await.map_err(session_err)?;
                return Ok(None);
            }
        };
        if t - auth.refreshed_at >= REFRESH_EVERY_SECS {
            auth.refreshed_at = t;
            session.insert(AUTH_KEY, &auth).await.map_err(session_err)?;
        }
        Ok(Some(Actor::from(user)))
    }

    /// The signed-in user, for everything but setting up two-factor sign-in: when this Pier
    /// requires a second factor and the user has none yet, they may do nothing else.
    pub async fn require_actor(&self, session: &Session) -> Result<Actor> {
        let actor = self.require_actor_enrolling(session).await?;
        if self.must_enrol(&actor).await? {
            return Err(Error::TwoFactorSetup);
        }
        Ok(actor)
    }

    /// The signed-in user, even one who still has to set up a second factor (for the pages and
    /// calls that set it up).
    pub async fn require_actor_enrolling(&self, session: &Session) -> Result<Actor> {
        self.current_actor(session)
            .await?
            .ok_or(Error::Unauthenticated)
    }

    pub(crate) fn require_admin(actor: &Actor) -> Result<()> {
        if actor.is_admin() {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }

    // ----- own account ----------------------------------------------------------------------

    /// Changes the caller's password; every other session ends, and with `revoke_tokens` every
    /// API token of theirs too (how many is returned).
    pub async fn change_password(
        &self,
        actor: &Actor,
        session: &Session,
        current: &str,
        new: &str,
        confirm: &str,
        revoke_tokens: bool,
    ) -> Result<u64> {
        let what = crate::audit::Change::new(crate::audit::Action::PasswordChange, &actor.email)
            .owner(actor.user_id)
            .summary(if revoke_tokens {
                "changed the password; other sessions and every API token ended"
            } else {
                "changed the password; other sessions ended"
            });
        self.audited(actor, what, async {
            let mut c = Checks::default();
            if current.is_empty() {
                c.check::<()>("current", Err("Enter your current password.".into()));
            }
            c.check("new", validate::password(new));
            if new != confirm {
                c.check::<()>("confirm", Err("The two new passwords differ.".into()));
            }
            c.finish()?;
            let user = repo::users::by_id(self.db(), actor.user_id)
                .await?
                .ok_or(Error::Unauthenticated)?;
            if !password::verify(current.to_owned(), user.password_hash).await? {
                return Err(Error::field(
                    "current",
                    "That is not your current password.",
                ));
            }
            let hash = password::hash(new.to_owned()).await?;
            let keep = session.id().map(|id| id.to_string()).unwrap_or_default();
            let mut tx = self.db().begin().await?;
            repo::users::set_password(&mut *tx, user.id, &hash).await?;
            repo::sessions::delete_for_user_except(&mut *tx, user.id, &keep).await?;
            let revoked = match revoke_tokens {
                true => repo::tokens::delete_all_for_user(&mut *tx, user.id).await?,
                false => 0,
            };
            tx.commit().await?;
            tracing::info!(
                user_id = user.id,
                tokens_revoked = revoked,
                "password changed; other sessions ended"
            );
            Ok(revoked)
        })
        .await
    }

    pub async fn list_sessions(
        &self,
        actor: &Actor,
        session: &Session,
    ) -> Result<Vec<SessionSummary>> {
        let current = session.id().map(|id| id.to_string());
        let rows = repo::sessions::list_for_user(self.db(), actor.user_id, now()).await?;
        Ok(rows
            .into_iter()
            .map(|r| SessionSummary {
                handle: session_handle(&r.id),
                current: current.as_deref() == Some(r.id.as_str()),
                created_at: r.created_at,
                last_seen_at: r.last_seen_at,
                expires_at: r.expires_at,
                user_agent: r.user_agent,
                ip: r.ip,
            })
            .collect())
    }

    /// Ends one of the actor's own sessions, named by its handle.
    pub async fn end_session(&self, actor: &Actor, session: &Session, handle: &str) -> Result<()> {
        let what = crate::audit::Change::new(crate::audit::Action::SessionEnd, handle)
            .owner(actor.user_id)
            .summary("ended a session");
        self.audited(actor, what, async {
            let rows = repo::sessions::list_for_user(self.db(), actor.user_id, now()).await?;
            let row = rows
                .into_iter()
                .find(|r| session_handle(&r.id) == handle)
                .ok_or(Error::NotFound)?;
            if session.id().map(|id| id.to_string()).as_deref() == Some(row.id.as_str()) {
                return self.end_this_session(session).await;
            }
            repo::sessions::delete(self.db(), &row.id).await
        })
        .await
    }

    pub async fn end_other_sessions(&self, actor: &Actor, session: &Session) -> Result<u64> {
        let what = crate::audit::Change::new(crate::audit::Action::SessionEndOthers, &actor.email)
            .owner(actor.user_id)
            .summary("ended every other session");
        self.audited(actor, what, async {
            let keep = session.id().map(|id| id.to_string()).unwrap_or_default();
            repo::sessions::delete_for_user_except(self.db(), actor.user_id, &keep).await
        })
        .await
    }

    // ----- invites --------------------------------------------------------------------------

    async fn new_invite(&self, db: &mut sqlx::SqliteConnection, user_id: i64) -> Result<String> {
        let token = random_token();
        let t = now();
        repo::invites::delete_unused(&mut *db, user_id).await?;
        repo::invites::insert(
            &mut *db,
            user_id,
            &sha256_hex(&token),
            t,
            t + self.0.settings.invite_ttl_secs,
        )
        .await?;
        Ok(token)
    }

    /// Checks an invite link and returns the email it is for.
    pub async fn invite_email(&self, token: &str) -> Result<String> {
        let (_, user) = self.valid_invite(token).await?;
        Ok(user.email)
    }

    async fn valid_invite(&self, token: &str) -> Result<(repo::invites::Invite, User)> {
        let gone = |m: &str| Error::Gone {
            message: m.to_owned(),
        };
        let invalid = "This invite link is not valid. Ask your admin for a new one.";
        if token.len() != 64 || !token.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(gone(invalid));
        }
        let invite = repo::invites::by_token_hash(self.db(), &sha256_hex(token))
            .await?
            .ok_or_else(|| gone(invalid))?;
        if invite.used_at.is_some() {
            return Err(gone(
                "This invite link was already used. Sign in, or ask your admin for a new link.",
            ));
        }
        if invite.expires_at <= now() {
            return Err(gone(
                "This invite link has expired. Ask your admin for a new one.",
            ));
        }
        let user = repo::users::by_id(self.db(), invite.user_id)
            .await?
            .ok_or_else(|| gone(invalid))?;
        if user.disabled {
            return Err(Error::AccountDisabled);
        }
        Ok((invite, user))
    }

    /// Sets a password through an invite link. The link works once; every existing session of
    /// the user ends.
    pub async fn accept_invite(
        &self,
        token: &str,
        new: &str,
        confirm: &str,
        client: &Client,
    ) -> Result<String> {
        let (invite, user) = self.valid_invite(token).await?;
        let who = crate::audit::Who {
            user_id: Some(user.id),
            email: user.email.clone(),
            origin: Origin {
                token_id: None,
                address: Some(client.ip.clone()),
            },
        };
        let what = crate::audit::Change::new(crate::audit::Action::InviteAccept, &user.email)
            .owner(user.id)
            .summary("password set through an invite link");
        let r = self.use_invite(invite, user, new, confirm).await;
        self.record_as(&who, what, &r).await;
        r
    }

    async fn use_invite(
        &self,
        invite: repo::invites::Invite,
        user: User,
        new: &str,
        confirm: &str,
    ) -> Result<String> {
        let mut c = Checks::default();
        c.check("password", validate::password(new));
        if new != confirm {
            c.check::<()>("confirm", Err("The two passwords differ.".into()));
        }
        c.finish()?;
        let hash = password::hash(new.to_owned()).await?;
        let mut tx = self.db().begin().await?;
        if !repo::invites::mark_used(&mut *tx, invite.id, now()).await? {
            return Err(Error::Gone {
                message: "This invite link was already used.".into(),
            });
        }
        repo::users::set_password(&mut *tx, user.id, &hash).await?;
        repo::sessions::delete_for_user(&mut *tx, user.id).await?;
        tx.commit().await?;
        tracing::info!(user_id = user.id, "password set through invite");
        Ok(user.email)
    }

    // ----- administration -------------------------------------------------------------------

    pub async fn list_users(&self, actor: &Actor) -> Result<Vec<User>> {
        Self::require_admin(actor)?;
        repo::users::list(self.db()).await
    }

    /// Creates a user. Without a password, returns an invite token for them to choose one.
    pub async fn create_user(&self, actor: &Actor, new: NewUser) -> Result<(User, Option<String>)> {
        let mut what =
            crate::audit::Change::new(crate::audit::Action::UserCreate, new.email.trim())
                .summary(new.describe());
        let r = match Self::require_admin(actor) {
            Ok(()) => self.create_user_unchecked(new).await,
            Err(e) => Err(e),
        };
        what.owner = r.as_ref().ok().map(|(u, _)| u.id);
        self.record(actor, what, &r).await;
        r
    }

    async fn create_user_unchecked(&self, new: NewUser) -> Result<(User, Option<String>)> {
        let mut c = Checks::default();
        let email = c.check("email", validate::email(&new.email));
        let role = c.check(
            "role",
            Role::parse(new.role.trim()).ok_or_else(|| "Choose admin or member.".to_string()),
        );
        if !new.password.is_empty() {
            c.check("password", validate::password(&new.password));
        }
        let d = self.0.settings.default_quotas;
        let or = |s: &str, v: String| if s.trim().is_empty() { v } else { s.to_owned() };
        let quotas = validate::quotas_into(
            &mut c,
            &or(&new.max_apps, d.max_apps.to_string()),
            &or(&new.max_memory_mb, d.max_memory_mb.to_string()),
            &or(&new.max_cpus, validate::format_cpus(d.max_cpus_milli)),
            &new.max_storage_mb,
            &new.max_backup_mb,
            d,
        );
        if let Some(e) = &email {
            if repo::users::by_email(self.db(), e).await?.is_some() {
                c.check::<()>(
                    "email",
                    Err("A user with this email already exists.".into()),
                );
            }
        }
        c.finish()?;
        let (email, role, quotas) = (
            email.unwrap_or_default(),
            role.unwrap_or(Role::Member),
            quotas.unwrap_or(d),
        );
        let hash = if new.password.is_empty() {
            None
        } else {
            Some(password::hash(new.password.clone()).await?)
        };
        let mut tx = self.db().begin().await?;
        let id = match repo::users::insert(&mut *tx, &email, hash.as_deref(), role, quotas, now())
            .await
        {
            Ok(id) => id,
            Err(Error::Database(e)) if crate::error::is_unique_violation(&e) => {
                return Err(Error::field(
                    "email",
                    "A user with this email already exists.",
                ))
            }
            Err(e) => return Err(e),
        };
        repo::users::assign_handle(&mut tx, id, &email).await?;
        let token = if hash.is_none() {
            Some(self.new_invite(&mut tx, id).await?)
        } else {
            None
        };
        tx.commit().await?;
        let user = repo::users::by_id(self.db(), id)
            .await?
            .ok_or(Error::NotFound)?;
        tracing::info!(user_id = id, role = role.as_str(), "user created");
        Ok((user, token))
    }

    /// The operator's way in: creates an admin from the command line, where no one is signed in.
    pub async fn create_admin_from_cli(&self, email: &str, password: &str) -> Result<User> {
        let new = NewUser {
            email: email.to_owned(),
            role: "admin".into(),
            password: password.to_owned(),
            ..NewUser::default()
        };
        let mut what = crate::audit::Change::new(crate::audit::Action::UserCreate, email.trim())
            .summary(new.describe());
        let r = self.create_user_unchecked(new).await.map(|(user, _)| user);
        what.owner = r.as_ref().ok().map(|u| u.id);
        self.record_as(&crate::audit::Who::command_line(), what, &r)
            .await;
        r
    }

    /// How a user is named in an audit entry: their e-mail for an admin, the bare id for
    /// anyone else (whose refused attempt must not learn whose account the id is).
    pub(crate) async fn user_label(&self, actor: &Actor, id: i64) -> String {
        match actor.is_admin() {
            true => match repo::users::by_id(self.db(), id).await {
                Ok(Some(u)) => u.email,
                _ => format!("#{id}"),
            },
            false => format!("#{id}"),
        }
    }

    /// One user, for an admin.
    pub async fn user(&self, actor: &Actor, id: i64) -> Result<User> {
        Self::require_admin(actor)?;
        self.target(id).await
    }

    async fn target(&self, id: i64) -> Result<User> {
        repo::users::by_id(self.db(), id)
            .await?
            .ok_or(Error::NotFound)
    }

    const LAST_ADMIN: &'static str =
        "This is the last enabled admin. Make someone else an admin first.";

    /// Changes what `patch` names of a user, all in one transaction: a refusal (the last
    /// admin) leaves every field as it was.
    pub async fn patch_user(&self, actor: &Actor, id: i64, patch: UserPatch) -> Result<User> {
        let what = crate::audit::Change::new(
            crate::audit::Action::UserUpdate,
            self.user_label(actor, id).await,
        )
        .owner(id)
        .summary(patch.describe());
        self.audited(actor, what, async {
            Self::require_admin(actor)?;
            self.target(id).await?;
            let mut tx = self.db().begin().await?;
            if let Some(role) = patch.role {
                if !repo::users::set_role_keeping_an_admin(&mut *tx, id, role).await? {
                    return Err(Error::Conflict(Self::LAST_ADMIN.into()));
                }
            }
            if let Some(disabled) = patch.disabled {
                if !repo::users::set_disabled_keeping_an_admin(&mut *tx, id, disabled).await? {
                    return Err(Error::Conflict(Self::LAST_ADMIN.into()));
                }
                if disabled {
                    repo::sessions::delete_for_user(&mut *tx, id).await?;
                }
            }
            if let Some(q) = patch.quotas {
                if !repo::users::set_quotas(&mut *tx, id, q).await? {
                    return Err(Error::NotFound);
                }
            }
            tx.commit().await?;
            tracing::info!(user_id = id, by = actor.user_id, ?patch, "user changed");
            self.target(id).await
        })
        .await
    }

    pub async fn set_role(&self, actor: &Actor, id: i64, role: &str) -> Result<User> {
        let what = crate::audit::Change::new(
            crate::audit::Action::UserUpdate,
            self.user_label(actor, id).await,
        )
        .owner(id)
        .summary(format!("role {}", role.trim()));
        self.audited(actor, what, async {
            Self::require_admin(actor)?;
            let role =
                Role::parse(role).ok_or_else(|| Error::field("role", "Choose admin or member."))?;
            self.target(id).await?;
            if !repo::users::set_role_keeping_an_admin(self.db(), id, role).await? {
                return Err(Error::Conflict(Self::LAST_ADMIN.into()));
            }
            tracing::info!(
                user_id = id,
                by = actor.user_id,
                role = role.as_str(),
                "role changed"
            );
            self.target(id).await
        })
        .await
    }

    /// Disables (ending every session of the user at once) or enables a user.
    pub async fn set_disabled(&self, actor: &Actor, id: i64, disabled: bool) -> Result<User> {
        let what = crate::audit::Change::new(
            crate::audit::Action::UserUpdate,
            self.user_label(actor, id).await,
        )
        .owner(id)
        .summary(if disabled { "disabled" } else { "enabled" });
        self.audited(actor, what, async {
            Self::require_admin(actor)?;
            self.target(id).await?;
            let mut tx = self.db().begin().await?;
            if !repo::users::set_disabled_keeping_an_admin(&mut *tx, id, disabled).await? {
                return Err(Error::Conflict(Self::LAST_ADMIN.into()));
            }
            if disabled {
                repo::sessions::delete_for_user(&mut *tx, id).await?;
            }
            tx.commit().await?;
            tracing::info!(
                user_id = id,
                by = actor.user_id,
                disabled,
                "user status changed"
            );
            self.target(id).await
        })
        .await
    }

    /// Issues a new invite link with which the user chooses a new password. With
    /// `revoke_tokens` (an account that may be in the wrong hands) the account is locked out at
    /// once: every API token and session ends and the old password stops working, until the
    /// link is used. Returns the user, the invite token and how many tokens went.
    pub async fn reset_password(
        &self,
        actor: &Actor,
        id: i64,
        revoke_tokens: bool,
    ) -> Result<(User, String, u64)> {
        let what = crate::audit::Change::new(
            crate::audit::Action::UserPasswordReset,
            self.user_label(actor, id).await,
        )
        .owner(id)
        .summary(if revoke_tokens {
            "new invite link; locked out: sessions, password and API tokens revoked"
        } else {
            "new invite link"
        });
        self.audited(actor, what, async {
            Self::require_admin(actor)?;
            let user = self.target(id).await?;
            let mut tx = self.db().begin().await?;
            let token = self.new_invite(&mut tx, id).await?;
            let revoked = match revoke_tokens {
                true => {
                    repo::sessions::delete_for_user(&mut *tx, id).await?;
                    repo::users::clear_password(&mut *tx, id).await?;
                    repo::tokens::delete_all_for_user(&mut *tx, id).await?
                }
                false => 0,
            };
            tx.commit().await?;
            tracing::info!(
                user_id = id,
                by = actor.user_id,
                locked_out = revoke_tokens,
                tokens_revoked = revoked,
                "password reset link issued"
            );
            Ok((user, token, revoked))
        })
        .await
    }

    /// Sets a user's quotas from a form: `[apps, memory MiB, CPUs, storage MiB, backups MiB]`
    /// (an empty storage or backups field keeps its value).
    pub async fn set_quotas(&self, actor: &Actor, id: i64, form: [&str; 5]) -> Result<User> {
        let what = crate::audit::Change::new(
            crate::audit::Action::UserUpdate,
            self.user_label(actor, id).await,
        )
        .owner(id)
        .summary(typed_quotas(form, "unchanged"));
        self.audited(actor, what, async {
            Self::require_admin(actor)?;
            let current = self.target(id).await?;
            let [apps, memory, cpus, storage, backups] = form;
            let q = validate::quotas(apps, memory, cpus, storage, backups, current.quotas)?;
            if !repo::users::set_quotas(self.db(), id, q).await? {
                return Err(Error::NotFound);
            }
            self.target(id).await
        })
        .await
    }

    pub async fn delete_user(&self, actor: &Actor, id: i64) -> Result<()> {
        let what = crate::audit::Change::new(
            crate::audit::Action::UserDelete,
            self.user_label(actor, id).await,
        )
        .owner(id)
        .summary("deleted");
        self.audited(actor, what, async {
            Self::require_admin(actor)?;
            let user = self.target(id).await?;
            if id == actor.user_id {
                return Err(Error::Conflict(
                    "You cannot delete your own account; ask another admin.".into(),
                ));
            }
            let apps = repo::apps::count_for_user(self.db(), id).await?;
            if apps > 0 {
                return Err(Error::Conflict(format!(
                    "{} still has {apps} app{}. Delete them first, or disable the account instead.",
                    user.email,
                    if apps == 1 { "" } else { "s" }
                )));
            }
            let kept = repo::volumes::list_for_user(self.db(), id).await?.len();
            if kept > 0 {
                return Err(Error::Conflict(format!(
                    "{} still has {kept} volume{} with data. They delete them on their Volumes page first.",
                    user.email,
                    if kept == 1 { "" } else { "s" }
                )));
            }
            if !repo::users::delete_keeping_an_admin(self.db(), id).await? {
                return Err(Error::Conflict(Self::LAST_ADMIN.into()));
            }
            tracing::info!(user_id = id, email = %user.email, by = actor.user_id, "user deleted");
            Ok(())
        })
        .await
    }

    /// Removes expired sessions; run periodically.
    pub async fn purge_expired_sessions(&self) -> Result<u64> {
        repo::sessions::delete_expired(self.db(), now()).await
    }
}
