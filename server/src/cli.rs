//! What each command does: open the data dir, then serve or run an operator task.

use std::{io::BufRead, path::Path};

use anyhow::{bail, Context};
use axum::serve::ListenerExt;
use pier_core::{
    audit::{Action, Change, Who},
    db,
    secret::SecretKey,
    service::Settings,
    Pier,
};

use crate::{
    config::{AdminCommand, BackupCommand, Cli, Command, ServeArgs, TokenCommand},
    http,
};

/// The data dir (made 0700, whether new or not), its database (0600), its secret key and the
/// Docker engine Pier drives.
pub async fn open_parts(
    data_dir: &Path,
) -> anyhow::Result<(
    db::Db,
    SecretKey,
    std::sync::Arc<dyn pier_core::runtime::Runtime>,
)> {
    crate::files::private_dir(data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let key = SecretKey::load_or_create(&data_dir.join("secret.key"))?;
    let db = db::open(&data_dir.join("pier.db"))
        .await
        .with_context(|| format!("opening the database in {}", data_dir.display()))?;
    // After opening, so a database SQLite has just created is covered too.
    make_private(data_dir)?;
    let runtime = crate::engine::docker::DockerRuntime::new(data_dir.join("volumes"));
    Ok((db, key, std::sync::Arc::new(runtime)))
}

/// The engine `pier serve` runs apps on: this machine's containers, or Swarm services when
/// asked (or, with `auto`, when the engine manages a Swarm at start).
async fn engine_for(
    data_dir: &Path,
    mode: crate::config::EngineMode,
    encrypt: bool,
) -> anyhow::Result<std::sync::Arc<dyn pier_core::runtime::Runtime>> {
    use crate::{config::EngineMode, engine::docker::DockerRuntime};
    use pier_core::runtime::Runtime;
    let local = DockerRuntime::new(data_dir.join("volumes"));
    let swarm = match mode {
        EngineMode::Docker => false,
        EngineMode::Swarm => true,
        EngineMode::Auto => {
            let probe = tokio::time::timeout(std::time::Duration::from_secs(10), local.cluster());
            match probe.await {
                Ok(Ok(cluster)) => cluster.is_some(),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the container engine did not answer at start; running apps as containers (PIER_ENGINE=swarm forces Swarm services)");
                    false
                }
                Err(_) => {
                    tracing::warn!("the container engine did not answer within 10 s at start; running apps as containers (PIER_ENGINE=swarm forces Swarm services)");
                    false
                }
            }
        }
    };
    if swarm {
        tracing::info!(
            encrypted_networks = encrypt,
            "running apps as Swarm services"
        );
        Ok(std::sync::Arc::new(
            crate::engine::swarm::runtime::SwarmRuntime::new(local, encrypt),
        ))
    } else {
        tracing::info!("running apps as containers on this machine");
        Ok(std::sync::Arc::new(local))
    }
}

/// The service alone, for the command line's tasks.
pub async fn open(data_dir: &Path, settings: Settings) -> anyhow::Result<Pier> {
    let (db, key, runtime) = open_parts(data_dir).await?;
    Ok(Pier::new(db, key, settings, runtime))
}

/// Tightens an existing data dir and database to owner-only. SQLite creates a new `pier.db`
/// (and its `-wal`/`-shm`) with the process umask; the 0700 directory already keeps others out,
/// but the files are tightened too so that copying the directory elsewhere does not expose them.
fn make_private(data_dir: &Path) -> anyhow::Result<()> {
    let chmod = |path: &Path, mode| {
        crate::files::restrict(path, mode)
            .with_context(|| format!("making {} private", path.display()))
    };
    chmod(data_dir, 0o700)?;
    for file in ["pier.db", "pier.db-wal", "pier.db-shm"] {
        chmod(&data_dir.join(file), 0o600)?;
    }
    Ok(())
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut settings = Settings::default();
    if let Command::Serve(args) = &cli.command {
        settings.engine.allowed_registries = args.allowed_registries.clone();
        settings.backups.target_hosts = args.backup_target_hosts.clone();
        settings.engine.egress.block_private = args.egress_block_private;
        // Apps may call sites served here by their domains, through HAProxy's public ports.
        if !args.no_proxy {
            settings.engine.egress.open_ports = vec![args.http_addr.port(), args.https_addr.port()];
        }
        settings.routing.base_domain = args.base_domain.clone();
        settings.routing.panel_host = args.panel_host.clone();
        settings.routing.allow_wildcards = args.allow_wildcard_domains;
        settings.routing.require_domain_proof = !args.no_domain_proof;
        settings.audit.enabled = !args.no_audit_log;
        settings.notify.allow_private_webhooks = args.notify_allow_private_webhooks;
        settings.notify.hosts = args.notify_hosts.clone();
        settings.notify.smtp_ca_file = args.smtp_ca_file.clone();
        settings.engine.tag_check_secs = args.tag_check_hours * 3600;
        settings.routing.public_addrs = args.public_addrs.clone();
        settings.acme.enabled = !args.no_proxy && !args.no_acme;
        settings.acme.directory = args.acme_directory.clone();
        settings.acme.email = args.acme_email.clone();
        settings.acme.ca_file = args.acme_ca_file.clone();
    }
    settings.backups.dir = Some(cli.data_dir.join("backups"));
    settings.backups.key_file = Some(cli.data_dir.join("secret.key"));
    // Before anything is opened: the data directory must still be empty.
    if let Command::Restore { from, snapshot, .. } = &cli.command {
        let passphrase = read_password_line(std::io::stdin().lock())?;
        let r =
            crate::backup::panel::restore(&cli.data_dir, from, &passphrase, snapshot.as_deref())
                .await?;
        println!(
            "Restored Pier {} from backup {} into {}; {} apps get their volumes back from their latest snapshots when `pier serve` starts.",
            r.instance,
            r.snapshot,
            cli.data_dir.display(),
            r.apps
        );
        return Ok(());
    }
    let command = match cli.command {
        Command::Serve(args) => return serve(settings, *args, &cli.data_dir).await,
        other => other,
    };
    let pier = open(&cli.data_dir, settings).await?;
    let outcome = match command {
        Command::Serve(_) => unreachable!("served above"),
        Command::Admin {
            command: AdminCommand::Create { email, .. },
        } => {
            let password = read_password_line(std::io::stdin().lock())?;
            let user = pier
                .create_admin_from_cli(&email, &password)
                .await
                .map_err(explain)?;
            println!("Created admin {} (id {}).", user.email, user.id);
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::ResetTwoFactor { email },
        } => {
            pier.reset_two_factor_from_cli(&email)
                .await
                .map_err(explain)?;
            println!("Removed the authenticator and recovery codes of {email}.");
            Ok(())
        }
        Command::Token {
            command: TokenCommand::Create { email, name, scope },
        } => {
            let (token, secret) = pier
                .create_token_from_cli(&email, &name, &scope)
                .await
                .map_err(explain)?;
            eprintln!(
                "Created token {} ({}, scope {}) for {email}. It is shown once:",
                token.id,
                token.name,
                token.scope.as_str()
            );
            println!("{secret}");
            Ok(())
        }
        Command::Backup {
            command: None | Some(BackupCommand::Now),
        } => {
            let id = crate::backup::panel::back_up_for(&pier, &Who::command_line(), Ok(()))
                .await
                .map_err(explain)?;
            println!("Backed up Pier: snapshot {id}.");
            Ok(())
        }
        Command::Backup {
            command: Some(BackupCommand::Passphrase { .. }),
        } => {
            let passphrase = read_password_line(std::io::stdin().lock())?;
            let r = crate::backup::panel::set_passphrase(&pier, &passphrase)
                .await
                .map_err(|e| pier_core::Error::Unavailable(format!("{e:#}")));
            let what = Change::new(Action::BackupPassphrase, "backup repository")
                .summary("a passphrase added to the backup repository's keys");
            pier.record_as(&Who::command_line(), what, &r).await;
            r?;
            println!("The backup repository now opens with this passphrase too: keep it apart from this machine.");
            Ok(())
        }
        Command::Restore { .. } => unreachable!("handled before the database is opened"),
    };
    // What a command recorded in the audit log is written before the process ends.
    pier.flush_audit().await;
    outcome
}

/// A domain error as one line for the terminal.
fn explain(e: pier_core::Error) -> anyhow::Error {
    let detail: Vec<String> = e
        .field_messages()
        .into_iter()
        .map(|(field, message)| format!("{field}: {message}"))
        .collect();
    if detail.is_empty() {
        anyhow::anyhow!("{}", e.public_message())
    } else {
        anyhow::anyhow!("{}", detail.join("; "))
    }
}

/// The first line of standard input, without its line ending.
fn read_password_line(mut input: impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!("no password on standard input (pipe it in: `printf '%s\\n' \"$PW\" | pier admin create --email … --password-stdin`)");
    }
    Ok(password.to_owned())
}

async fn serve(settings: Settings, args: ServeArgs, data_dir: &Path) -> anyhow::Result<()> {
    let resolver: Option<std::sync::Arc<dyn pier_core::dns::Resolve>> =
        match crate::dns::DnsResolver::new(args.dns_server) {
            Ok(r) => Some(std::sync::Arc::new(r)),
            Err(e) => {
                tracing::warn!(error = %e, "no DNS resolver: domain DNS checks are off");
                None
            }
        };
    // Apps live under the base domain; were the panel on the same registrable domain, any app
    // could set cookies the panel's browser sends back and would count as same-site to it.
    if let (Some(base), Some(panel)) = (&args.base_domain, &args.panel_host) {
        let site = pier_core::certs::registered_domain(base);
        if site == pier_core::certs::registered_domain(panel) {
            tracing::warn!(
                base_domain = %base,
                panel_host = %panel,
                site = %site,
                "PIER_BASE_DOMAIN and PIER_PANEL_HOST share a registrable domain: apps can toss \
                 cookies at the panel and count as same-site; put the panel on a domain of its own"
            );
        }
    }
    let (db, key, _) = open_parts(data_dir).await?;
    let runtime = engine_for(data_dir, args.engine, args.swarm_encrypt).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(addr = %args.listen, "Pier is listening");
    let proxy = if args.no_proxy {
        None
    } else {
        let files = crate::proxy::Files::in_dir(&data_dir.join("haproxy"));
        let cfg = files.config(
            args.http_addr,
            args.https_addr,
            args.listen,
            args.panel_host.clone(),
        );
        let proxy = crate::proxy::Proxy::start(files, cfg)
            .await
            .context("starting HAProxy (or run with --no-proxy)")?;
        tracing::info!(http = %args.http_addr, https = %args.https_addr, "HAProxy is serving");
        Some(proxy)
    };
    let mut handles = crate::launch::launch(crate::launch::Parts {
        db,
        key,
        settings,
        runtime,
        resolver,
        proxy,
        challenges: crate::certs::Challenges::default(),
    });
    let pier = handles.pier.clone();
    let mut state = http::AppState::new(pier.clone(), &args);
    state.challenges = handles.challenges.clone();
    let app = http::router(state);
    if let Some(addr) = args.metrics_listen {
        let (pier, proxy) = (pier.clone(), handles.proxy.clone());
        handles.spawn(async move {
            if let Err(e) = crate::metrics::serve(addr, pier, proxy).await {
                tracing::error!(error = format!("{e:#}"), "the metrics listener stopped");
            }
        });
    }

    handles.spawn(crate::janitor::run(pier.clone(), data_dir.to_path_buf()));

    // No Nagle: a response goes out as headers then body; with Nagle the body waited for the
    // client's delayed ACK of the headers, 40 ms (the p99 of every page, measured).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    // Audit entries still gathering for their batch go in before the database closes.
    handles.shutdown().await;
    tracing::info!("Pier stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_line() {
        assert_eq!(
            read_password_line(&b"secret pass 123\n"[..]).unwrap(),
            "secret pass 123"
        );
        assert_eq!(
            read_password_line(&b"crlf password!\r\nrest"[..]).unwrap(),
            "crlf password!"
        );
        assert!(read_password_line(&b"\n"[..]).is_err());
        assert!(read_password_line(&b""[..]).is_err());
    }

    #[tokio::test]
    async fn an_existing_data_dir_and_database_are_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = std::env::temp_dir().join(format!("pier-open-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A first open makes the database; loosen everything, as an older Pier or a restore would.
        drop(open(&dir, Settings::default()).await.unwrap());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for f in ["pier.db", "pier.db-wal", "pier.db-shm"] {
            let p = dir.join(f);
            if p.exists() {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
        drop(open(&dir, Settings::default()).await.unwrap());
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("pier.db")), 0o600);
        for f in ["pier.db-wal", "pier.db-shm"] {
            let p = dir.join(f);
            if p.exists() {
                assert_eq!(mode(&p), 0o600, "{f}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
