//! Waiting for a new container to answer: HTTP on its loopback port for web apps, a TCP
//! connection on its network for internal ones. A container that exits or crash-loops fails at
//! once, with why; a deployment cancelled meanwhile stops the wait.

use std::time::Duration;

use pier_core::{
    model::{AppKind, Deployment},
    repo,
    runtime::ContainerState,
    Pier,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// How waiting for a new container ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Health {
    Healthy,
    /// A newer deployment was asked for meanwhile (or this one ended otherwise).
    Cancelled,
    /// It exited, crash-looped, disappeared or did not answer in time: why, in words.
    Failed(String),
}

/// How long a container seen restarting is watched for the exit code of its next crash.
const CRASH_WATCH: Duration = Duration::from_secs(5);

/// Polls until the container answers (its health path with 2xx/3xx, else anything), fails, or
/// the time is up. `serving`: an older deployment serves meanwhile (the message says so). Err
/// when the engine or the database does not answer.
pub(super) async fn wait(
    pier: &Pier,
    instance: &str,
    container: &str,
    dep: &Deployment,
    serving: bool,
) -> anyhow::Result<Health> {
    let timeout = pier.settings().engine.health_timeout_secs;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let mut last = String::from("no answer yet");
    // The restart count is not in the container list: it is asked for separately, at most
    // twice a second while the container does not answer (polls come every 40 ms at first).
    let mut next_restart_check = tokio::time::Instant::now();
    // When a restart was first seen.
    let mut crashing: Option<tokio::time::Instant> = None;
    loop {
        // A newer deployment cancels this one: stop waiting (and holding its memory) at once.
        let still = repo::deployments::by_id(pier.db(), dep.id).await?;
        if !still.is_some_and(|d| d.status.in_progress()) {
            return Ok(Health::Cancelled);
        }
        // Pages read this list too: keep it fresh, so the new container shows the moment it serves.
        let listed = pier.list_containers(instance).await?;
        let Some(c) = listed.iter().find(|c| c.id == container).cloned() else {
            return Ok(Health::Failed(
                "The container disappeared while starting.".into(),
            ));
        };
        // Between two restarts of a crash loop the list may show it running every time it is
        // read (a busy machine lists slowly); once crashing, the engine is asked directly, which
        // catches the moment it is down and its exit code.
        if crashing.is_some()
            || matches!(
                c.state,
                ContainerState::Exited | ContainerState::Dead | ContainerState::Restarting
            )
        {
            let info = pier.runtime().exit_info(container).await?;
            if !info.running {
                return Ok(Health::Failed(if info.restarts > 0 {
                    format!(
                        "The container keeps crashing while starting (restarts so far: {}); the last time {}.",
                        info.restarts,
                        info.describe()
                    )
                } else {
                    format!("The container stopped while starting: {}.", info.describe())
                }));
            }
        }
        // Where the quick probes between two full looks go (see the end of the loop).
        let mut quick = None;
        if c.running() {
            let answer = match dep.kind {
                AppKind::Web => match c.endpoint() {
                    Some(addr) => {
                        quick = Some(addr);
                        Some(probe(addr, dep.health_path.as_deref()).await)
                    }
                    None => None,
                },
                // From the host, on the tenant's network: the port takes a connection.
                AppKind::Internal => match (c.ip, c.host) {
                    (Some(ip), _) => Some(probe_tcp(ip, dep.port).await),
                    // A Swarm task on the tenant's overlay network, which this machine cannot
                    // enter: running (its container started) is as far as it can be seen.
                    (None, Some(_)) => Some(Ok(())),
                    (None, None) => None,
                },
            };
            match answer {
                Some(Ok(())) => return Ok(Health::Healthy),
                Some(Err(e)) => {
                    last = e;
                    // Running again after a crash (Docker restarted it): a crash loop caught
                    // between two restarts. It will not get better by waiting, but Docker
                    // forgets the exit code while the container runs: look on (quickly) to
                    // catch it between restarts, where the code is known.
                    if crashing.is_none() && tokio::time::Instant::now() >= next_restart_check {
                        next_restart_check =
                            tokio::time::Instant::now() + Duration::from_millis(500);
                        let info = pier.runtime().exit_info(container).await?;
                        if info.restarts > 0 {
                            crashing = Some(tokio::time::Instant::now());
                        }
                    }
                    if crashing.is_some_and(|at| at.elapsed() >= CRASH_WATCH) {
                        let info = pier.runtime().exit_info(container).await?;
                        return Ok(Health::Failed(format!(
                            "The container keeps crashing while starting (restarts so far: {}).",
                            info.restarts
                        )));
                    }
                }
                None => {}
            }
        }
        if tokio::time::Instant::now() >= deadline {
            let what = match (&dep.kind, &dep.health_path) {
                (AppKind::Internal, _) => {
                    format!("its port {} did not take connections", dep.port)
                }
                (_, Some(p)) => format!("{p} did not answer with a success status"),
                (_, None) => format!("it did not answer HTTP on port {}", dep.port),
            };
            let keeps = if serving {
                " The previous deployment keeps serving."
            } else {
                ""
            };
            return Ok(Health::Failed(format!(
                "The new container never became healthy: {what} within {timeout} s (last: {last}).{keeps}"
            )));
        }
        // Quick polls at first (most apps answer within a second), then gentler ones.
        let waited =
            Duration::from_secs(timeout).saturating_sub(deadline - tokio::time::Instant::now());
        let pause = if waited < Duration::from_secs(3) || crashing.is_some() {
            40
        } else {
            250
        };
        match quick.filter(|_| pause == 40 && crashing.is_none()) {
            // Between two full looks (the deployment, the engine's list), only the port is
            // tried, every 10 ms: most apps answer within milliseconds of listening, and a
            // deploy should not wait out a whole pause for it.
            Some(addr) => {
                let until = tokio::time::Instant::now() + Duration::from_millis(pause);
                while tokio::time::Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    if probe(addr, dep.health_path.as_deref()).await.is_ok() {
                        return Ok(Health::Healthy);
                    }
                }
            }
            None => tokio::time::sleep(Duration::from_millis(pause)).await,
        }
    }
}

/// One HTTP request to the container's loopback port.
pub(super) async fn probe(addr: std::net::SocketAddr, path: Option<&str>) -> Result<(), String> {
    let attempt = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connection failed: {e}"))?;
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: pier-health\r\nConnection: close\r\n\r\n",
            path.unwrap_or("/")
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("sending failed: {e}"))?;
        let mut buf = [0u8; 64];
        let mut n = 0;
        while n < 12 {
            let r = s
                .read(&mut buf[n..])
                .await
                .map_err(|e| format!("reading failed: {e}"))?;
            if r == 0 {
                break;
            }
            n += r;
        }
        let head = String::from_utf8_lossy(&buf[..n]);
        let code: u16 = head
            .strip_prefix("HTTP/1.")
            .and_then(|r| r.get(2..5))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| "closed without an HTTP answer".to_string())?;
        match path {
            Some(_) if !(200..400).contains(&code) => Err(format!("status {code}")),
            _ => Ok(()),
        }
    };
    tokio::time::timeout(Duration::from_secs(3), attempt)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

/// A TCP connection to an internal app's port on its network.
pub(super) async fn probe_tcp(ip: std::net::IpAddr, port: u16) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect((ip, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("connection failed: {e}")),
        Err(_) => Err("timed out".into()),
    }
}
