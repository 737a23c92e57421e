//! Driving one deployment to a running container: pull, create, start, wait until it answers,
//! then make it the one that serves. Each step tolerates having been done before.

use std::{collections::HashMap, time::Duration};

use futures_util::StreamExt;
use pier_core::{
    apps::{bridge_name, container_name, network_name, open_env},
    model::{AppKind, CapProfile, DeployStatus, Deployment},
    notify::Event,
    now, repo,
    runtime::{
        volume_name, Container, ContainerSpec, RuntimeError, VolumeSpec, LABEL_APP,
        LABEL_DEPLOYMENT, LABEL_INSTANCE, LABEL_TENANT,
    },
    tags::TAG_CAUSE,
    validate, Pier,
};

use super::routing::Routing;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Runs deployment `id`. With `promote`, it is a rollout (the deployment becomes current once
/// healthy); without, the serving deployment's container is being recreated.
///
/// Errors returned here are transient (the engine did not answer): the caller retries with
/// backoff. Anything the deployment itself got wrong ends it as failed, with the reason, and
/// returns Ok(false); Ok(true) when it is done (or there was nothing left to do).
pub async fn run(pier: &Pier, routing: &Routing, id: i64, promote: bool) -> anyhow::Result<bool> {
    let t0 = std::time::Instant::now();
    let Some(dep) = repo::deployments::by_id(pier.db(), id).await? else {
        return Ok(true);
    };
    let Some(app) = repo::apps::by_id(pier.db(), dep.app_id).await? else {
        return Ok(true);
    };
    if promote && !dep.status.in_progress() {
        return Ok(true);
    }
    let instance = pier.instance_id().await?;
    let rt = pier.runtime();
    let (app_name, owner) = (&app.name, app.user_id);
    let fail = |msg: String| async move {
        tracing::info!(deployment = id, reason = %msg, "deployment failed");
        if promote {
            if repo::deployments::fail(pier.db(), id, &msg, now()).await? {
                pier.metrics().deployment("failed");
                let previous_serves = repo::apps::by_id(pier.db(), dep.app_id)
                    .await?
                    .is_some_and(|a| a.current_deployment_id.is_some());
                let event = Event::DeploymentFailed {
                    app: app_name.clone(),
                    deployment: dep.number,
                    reason: msg.clone(),
                    previous_serves,
                };
                pier.notify(owner, event).await;
            }
        } else {
            repo::apps::set_last_error(pier.db(), dep.app_id, Some(&msg)).await?;
        }
        anyhow::Ok(false)
    };

    // 1. Pull (by digest when the deployment pins one).
    if promote && !repo::deployments::advance(pier.db(), id, DeployStatus::Pulling).await? {
        return Ok(true);
    }
    let Ok(mut image) = validate::image(&dep.image) else {
        return fail(format!("{:?} is not a valid image reference.", dep.image)).await;
    };
    if let Some(d) = &dep.digest {
        image = image.pinned(d);
    }
    // Checked again here, not only when the app was saved: redeploys, rollbacks and recreates
    // pull too, and the operator may have narrowed the list since.
    let allowed = &pier.settings().engine.allowed_registries;
    if !allowed.is_empty() && !allowed.contains(&image.registry) {
        return fail(format!(
            "This Pier no longer pulls from {}; it only pulls from {}.",
            image.registry,
            allowed.join(", ")
        ))
        .await;
    }
    if allowed.is_empty() {
        // Without a list, never a registry in the host's own network (apps saved before this
        // rule existed are stopped here).
        if let Err(why) = validate::public_registry(&image.registry) {
            return fail(why).await;
        }
    }
    let auth = match pier.registry_auth(app.user_id, &image.registry).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(deployment = id, error = %e, "registry login unreadable");
            return fail("The saved registry login could not be read; save it again.".into()).await;
        }
    };
    let had_auth = auth.is_some();
    // Recorded before the pull: a pull cut short still leaves layers to collect later.
    repo::images::record(pier.db(), &image.local(), now()).await?;
    let telemetry_pier = pier.clone();
    let t_pull = t0.elapsed();
    let pulled = tokio::time::timeout(
        PULL_LIMIT,
        rt.pull(
            &image,
            auth,
            Box::new(move |p| telemetry_pier.telemetry().set_pull(id, p)),
        ),
    )
    .await;
    pier.telemetry().clear_pull(id);
    let pulled = match pulled {
        Err(_) => {
            return fail(format!(
                "Pulling {} took longer than {} minutes; giving up.",
                image.whole(),
                PULL_LIMIT.as_secs() / 60
            ))
            .await
        }
        Ok(p) => p,
    };
    let pulled = match pulled {
        Ok(p) => p,
        Err(e) if e.is_transient() => return Err(e.into()),
        Err(e) => return fail(pull_failure(&image.whole(), had_auth, &e)).await,
    };
    if let Some(d) = &pulled.digest {
        // The digest reference too: when the tag moves on, the old image is only known by it.
        repo::images::record(pier.db(), &image.pinned(d).local(), now()).await?;
        if dep.digest.is_none() {
            repo::deployments::set_digest(pier.db(), id, d).await?;
        }
    }

    // 2. Create (or adopt) and start the container.
    if promote && !repo::deployments::advance(pier.db(), id, DeployStatus::Starting).await? {
        return Ok(true);
    }
    let mut labels = tenant_labels(pier, &instance, app.user_id);
    let network = network_name(&instance, app.user_id);
    rt.ensure_network(&network, &bridge_name(&instance, app.user_id), &labels)
        .await
        .map_err(anyhow::Error::from)?;
    // Volumes: made (once) and attached (again after a reboot) before the container needs them.
    let volumes = repo::volumes::for_app(pier.db(), app.id).await?;
    let mounts = match ensure_volumes(pier, &instance, &volumes, &labels).await {
        Ok(m) => m,
        Err(e) if e.is_transient() => return Err(e.into()),
        Err(e) => return fail(e.to_string()).await,
    };
    labels.insert(LABEL_APP.into(), app.id.to_string());
    labels.insert(LABEL_DEPLOYMENT.into(), id.to_string());
    // Bounded where the storage driver can; elsewhere the admin page says it is not.
    let layer_mb = pier.settings().engine.writable_layer_mb;
    let writable_layer_mb = match rt.info().await {
        Ok(i) if i.layer_limit && layer_mb > 0 => Some(layer_mb),
        _ => None,
    };
    let spec = ContainerSpec {
        writable_layer_mb,
        name: container_name(&instance, &app, id),
        image: pulled.image_id,
        env: match open_env(pier.key(), app.user_id, &app.name, &dep.env) {
            Ok(env) => env,
            Err(e) => {
                tracing::error!(deployment = id, error = %e, "sealed env unreadable");
                return fail(
                    "A secret value could not be decrypted with this Pier's key; set it again."
                        .into(),
                )
                .await;
            }
        },
        port: dep.port,
        memory_bytes: dep.memory_mb * 1024 * 1024,
        nano_cpus: dep.cpus_milli * 1_000_000,
        pids_limit: pier.settings().engine.pids_limit,
        read_only: dep.read_only,
        network,
        alias: app.name.clone(),
        publish: dep.kind == AppKind::Web,
        cap_add: dep
            .capabilities
            .capabilities()
            .iter()
            .map(|c| (*c).to_owned())
            .collect(),
        mounts,
        labels,
    };
    // An app with volumes is replaced stop-first: two copies of a database on one data
    // directory corrupt it. The serving container stops before the new one starts (and starts
    // again if the new one fails); nothing serves in between.
    let serving = app.current_deployment_id.filter(|s| *s != id);
    let _held_for_stop_first = (promote && !volumes.is_empty()).then(|| routing.hold(serving));
    let mut stopped: Option<(Container, std::time::Instant)> = None;
    if promote && !volumes.is_empty() {
        if let Some(old) =
            rt.containers(&instance).await?.into_iter().find(|c| {
                c.deployment_id().is_some() && c.deployment_id() == serving && c.running()
            })
        {
            let t = std::time::Instant::now();
            rt.stop(&old.id, pier.settings().engine.stop_timeout_secs)
                .await
                .map_err(anyhow::Error::from)?;
            stopped = Some((old, t));
        }
    }
    // Puts the old container back when the new one does not make it.
    let restore = |stopped: Option<(Container, std::time::Instant)>| async move {
        if let Some((old, _)) = stopped {
            if let Err(e) = rt.start(&old.id).await {
                tracing::warn!(container = %old.id, error = %e, "restarting the previous container failed; the next pass retries");
            }
        }
    };
    let t_create = t0.elapsed();
    let container = match rt.create(&spec).await {
        Ok(cid) => cid,
        Err(RuntimeError::Conflict(_)) => {
            // Created before a crash: adopt it.
            match rt
                .containers(&instance)
                .await?
                .into_iter()
                .find(|c| c.name == spec.name)
            {
                Some(c) => c.id,
                None => anyhow::bail!("container {} exists but is not listed", spec.name),
            }
        }
        Err(e) if e.is_transient() => {
            restore(stopped).await;
            return Err(e.into());
        }
        Err(e) => {
            restore(stopped).await;
            return fail(format!("Docker refused to create the container: {e}")).await;
        }
    };
    match rt.start(&container).await {
        Ok(()) => {}
        Err(e) if e.is_transient() => {
            restore(stopped).await;
            return Err(e.into());
        }
        Err(e) => {
            let _ = rt.remove(&container).await;
            restore(stopped).await;
            return fail(format!("The container did not start: {e}")).await;
        }
    }
    if !promote {
        repo::apps::set_last_error(pier.db(), app.id, None).await?;
        return Ok(true);
    }

    // 3. Wait until it answers, then let it serve.
    let t_started = t0.elapsed();
    let healthy = match wait_healthy(pier, &instance, &container, &dep).await {
        Ok(h) => h,
        Err(e) => {
            restore(stopped).await;
            return Err(e);
        }
    };
    if let Err(reason) = healthy {
        if reason.is_empty() {
            // Cancelled: a newer deployment was asked for while this one started.
            let _ = rt.remove(&container).await;
            restore(stopped).await;
            pier.metrics().deployment("cancelled");
            return Ok(true);
        }
        let tail = last_lines(pier, &container).await;
        let _ = rt.remove(&container).await;
        restore(stopped).await;
        let mut msg = reason;
        if let Some(hint) = capability_hint(dep.capabilities, &tail) {
            msg = format!("{msg} {hint}");
        }
        if serving.is_none() {
            msg = msg.replace(" The previous deployment keeps serving.", "");
        }
        if !tail.is_empty() {
            msg = format!("{msg}\nLast log lines:\n{tail}");
        }
        return fail(msg).await;
    }
    // The deployment serving until now keeps its container while its routes move and its
    // last requests finish (the planner leaves held deployments alone).
    let serving = repo::apps::by_id(pier.db(), app.id)
        .await?
        .and_then(|a| a.current_deployment_id);
    let _draining = routing.hold(serving);
    let mut tx = pier.db().begin().await?;
    let promoted = repo::deployments::promote(&mut tx, id, now()).await?;
    tx.commit().await?;
    if promoted {
        // Switch: HAProxy sends new requests to the new container from here on.
        if let Err(e) = routing.sync(pier).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "routes not switched yet; the next pass retries"
            );
        }
        if let Some((_, t)) = &stopped {
            let gap = i64::try_from(t.elapsed().as_millis()).unwrap_or(i64::MAX);
            repo::deployments::set_gap(pier.db(), id, gap).await?;
        } else if serving.is_some() {
            tokio::time::sleep(routing.drain(pier)).await;
        }
        tracing::info!(
            app = %app.name,
            deployment = dep.number,
            pull_from_ms = t_pull.as_millis() as u64,
            create_from_ms = t_create.as_millis() as u64,
            started_at_ms = t_started.as_millis() as u64,
            live_at_ms = t0.elapsed().as_millis() as u64,
            "deployment is live"
        );
        pier.metrics().deployment("live");
        if let Some(digest) = dep
            .cause
            .starts_with(TAG_CAUSE)
            .then_some(())
            .and(dep.digest.clone())
        {
            let event = Event::TagDeployed {
                app: app.name.clone(),
                deployment: dep.number,
                digest,
            };
            pier.notify(app.user_id, event).await;
        }
    } else {
        // Cancelled while starting (a newer deployment was asked for).
        let _ = rt.remove(&container).await;
        restore(stopped).await;
        pier.metrics().deployment("cancelled");
    }
    Ok(true)
}

/// The labels of everything made for a tenant: the operator's extra ones, this installation's
/// id and the tenant's.
pub fn tenant_labels(pier: &Pier, instance: &str, tenant: i64) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = pier
        .settings()
        .engine
        .extra_labels
        .iter()
        .cloned()
        .collect();
    labels.insert(LABEL_INSTANCE.into(), instance.to_owned());
    labels.insert(LABEL_TENANT.into(), tenant.to_string());
    labels
}

/// Makes an app's volumes ready to mount (made once, attached again after a reboot): the
/// (engine name, mount path) pairs for its container.
pub async fn ensure_volumes(
    pier: &Pier,
    instance: &str,
    volumes: &[pier_core::model::Volume],
    labels: &HashMap<String, String>,
) -> Result<Vec<(String, String)>, RuntimeError> {
    let mut mounts = Vec::new();
    for v in volumes {
        let name = volume_name(instance, v.id);
        let spec = VolumeSpec {
            id: v.id,
            name: name.clone(),
            size_mb: v.size_mb,
            labels: labels.clone(),
        };
        match pier.runtime().ensure_volume(&spec).await {
            Ok(()) => {}
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                return Err(RuntimeError::Failed(format!(
                    "The volume {} could not be prepared: {e}",
                    v.name
                )))
            }
        }
        mounts.push((name, v.path.clone()));
    }
    Ok(mounts)
}

/// When a container under the strict profile failed with "Operation not permitted", which
/// capability its log says it needed, and what to do.
fn capability_hint(profile: CapProfile, log: &str) -> Option<String> {
    if profile != CapProfile::Strict {
        return None;
    }
    let lower = log.to_ascii_lowercase();
    if !lower.contains("operation not permitted") && !lower.contains("permission denied") {
        return None;
    }
    // Words of the failing call, as images log them, and the capabilities they need.
    let needs: [(&str, &[&str]); 10] = [
        ("chown", &["CHOWN"]),
        ("setgroups", &["SETGID"]),
        ("setgid", &["SETGID"]),
        ("initgroups", &["SETGID"]),
        ("setuid", &["SETUID"]),
        // gosu and su-exec: "failed switching to \"postgres\": operation not permitted".
        ("failed switching to", &["SETUID", "SETGID"]),
        ("chroot", &["SYS_CHROOT"]),
        ("bind", &["NET_BIND_SERVICE"]),
        ("kill", &["KILL"]),
        ("chmod", &["FOWNER"]),
    ];
    let mut found: Vec<&str> = Vec::new();
    for (word, caps) in needs {
        if lower.contains(word) {
            for c in caps {
                if !found.contains(c) {
                    found.push(c);
                }
            }
        }
    }
    let which = match found.len() {
        0 => "a capability".to_string(),
        1 => format!("the {} capability", found[0]),
        _ => format!("the {} capabilities", found.join(" and ")),
    };
    Some(format!(
        "It was refused an operation that needs {which}, which the strict profile drops: choose the default capability profile for this image."
    ))
}

/// The longest a pull may take.
const PULL_LIMIT: Duration = Duration::from_secs(30 * 60);

fn pull_failure(image: &str, had_auth: bool, e: &RuntimeError) -> String {
    let m = e.to_string();
    let lower = m.to_ascii_lowercase();
    let hint = if lower.contains("unauthorized")
        || lower.contains("authentication required")
        || lower.contains("no basic auth")
        || lower.contains("denied")
    {
        if had_auth {
            " The registry refused the saved login: check the user name and password on the Registries page."
        } else {
            " The registry wants a login: add one on the Registries page."
        }
    } else if lower.contains("not found") || lower.contains("manifest unknown") {
        " Check the image name and tag."
    } else {
        ""
    };
    format!("Pulling {image} failed: {m}.{hint}")
}

/// Ok(Ok) once the container answers HTTP (its health path with 2xx/3xx, else anything);
/// Ok(Err(reason)) when it exits or the time is up (an empty reason: the deployment was
/// cancelled meanwhile); Err when the engine does not answer.
async fn wait_healthy(
    pier: &Pier,
    instance: &str,
    container: &str,
    dep: &Deployment,
) -> anyhow::Result<Result<(), String>> {
    let timeout = pier.settings().engine.health_timeout_secs;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let mut last = String::from("no answer yet");
    loop {
        // A newer deployment cancels this one: stop waiting (and holding its memory) at once.
        let still = repo::deployments::by_id(pier.db(), dep.id).await?;
        if !still.is_some_and(|d| d.status.in_progress()) {
            return Ok(Err(String::new()));
        }
        // Pages read this list too: keep it fresh, so the new container shows the moment it serves.
        let listed = pier.observe_containers(pier.runtime().containers(instance).await?);
        let Some(c) = listed.iter().find(|c| c.id == container).cloned() else {
            return Ok(Err("The container disappeared while starting.".into()));
        };
        if matches!(c.state.as_str(), "exited" | "dead" | "restarting") {
            let info = pier.runtime().exit_info(container).await?;
            if !info.running {
                return Ok(Err(format!(
                    "The container stopped while starting: {}.",
                    info.describe()
                )));
            }
        }
        if c.running() {
            let answer = match dep.kind {
                AppKind::Web => match c.host_port {
                    Some(port) => Some(probe(port, dep.health_path.as_deref()).await),
                    None => None,
                },
                // From the host, on the tenant's network: the port takes a connection.
                AppKind::Internal => match c.ip {
                    Some(ip) => Some(probe_tcp(ip, dep.port).await),
                    None => None,
                },
            };
            match answer {
                Some(Ok(())) => return Ok(Ok(())),
                Some(Err(e)) => last = e,
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
            return Ok(Err(format!(
                "The new container never became healthy: {what} within {timeout} s (last: {last}). The previous deployment keeps serving."
            )));
        }
        // Quick polls at first (most apps answer within a second), then gentler ones.
        let waited =
            Duration::from_secs(timeout).saturating_sub(deadline - tokio::time::Instant::now());
        let pause = if waited < Duration::from_secs(3) {
            40
        } else {
            250
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// One HTTP request to the container's loopback port.
pub async fn probe(port: u16, path: Option<&str>) -> Result<(), String> {
    let attempt = async {
        let mut s = TcpStream::connect(("127.0.0.1", port))
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
pub async fn probe_tcp(ip: std::net::IpAddr, port: u16) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect((ip, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("connection failed: {e}")),
        Err(_) => Err("timed out".into()),
    }
}

async fn last_lines(pier: &Pier, container: &str) -> String {
    let lines = pier.runtime().logs(container, 15, false);
    let collected = tokio::time::timeout(Duration::from_secs(3), lines.collect::<Vec<_>>())
        .await
        .unwrap_or_default();
    collected
        .into_iter()
        .filter_map(Result::ok)
        .map(|l| l.text)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_failures_name_the_capability() {
        let chown = "chown: changing ownership of '/data': Operation not permitted";
        let hint = capability_hint(CapProfile::Strict, chown).unwrap();
        assert!(hint.contains("the CHOWN capability"), "{hint}");
        let nginx = "[emerg] 9#9: setuid(33) failed (1: Operation not permitted)";
        assert!(capability_hint(CapProfile::Strict, nginx)
            .unwrap()
            .contains("SETUID"));
        let gosu = "error: failed switching to \"postgres\": operation not permitted";
        let hint = capability_hint(CapProfile::Strict, gosu).unwrap();
        assert!(
            hint.contains("the SETUID and SETGID capabilities"),
            "{hint}"
        );
        // Under the default profile, or without a refusal in the log, there is nothing to say.
        assert_eq!(capability_hint(CapProfile::Default, chown), None);
        assert_eq!(
            capability_hint(CapProfile::Strict, "listening on 8080"),
            None
        );
    }
}
