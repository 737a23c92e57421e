//! An engine in memory, for tests of the rules above the [`Runtime`] trait that need no Docker:
//! containers are created, started, stopped and removed as Docker would (names unique, state
//! strings as Docker's, a host port on start when published), networks and volumes are kept by
//! name. Tests can hold the container list (a gate) and count calls.
//!
//! What a container does once started is chosen per image with [`FakeRuntime::behave`]: by
//! default a published container answers HTTP on a real loopback port (so health checks and
//! routes are exercised as with Docker); it can also stay silent, exit, crash-loop or fail to
//! start, with log lines of its own.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use async_trait::async_trait;
use futures_util::stream::{self, BoxStream};

use crate::{runtime::*, validate::ImageRef};

/// What a container of some image does when started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Runs; when published, answers every HTTP request on its loopback port with this status.
    Answers(u16),
    /// Runs, but nothing listens on its published port.
    Silent,
    /// Exits at once with this code; the engine's restart policy restarts it again and again.
    /// Listed as restarting (waiting for its next restart).
    CrashLoop(i64),
    /// The same, first caught just after a restart: listed as running (its exit code
    /// forgotten, as Docker does), nothing listening, the restart count up; each listing
    /// after that finds it crashed (with this code) or restarted again, in turn.
    Flapping(i64),
    /// The engine refuses to start it, with this message.
    StartFails(String),
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour::Answers(200)
    }
}

#[derive(Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
    /// (image reference, behaviour, log lines) — the first whose reference the container's image
    /// contains applies.
    behaviours: Mutex<Vec<(String, Behaviour, Vec<String>)>>,
    /// Errors the next calls of an operation ("create", "start", "pull") answer with, once each.
    faults: Mutex<Vec<(&'static str, RuntimeError)>>,
    /// While set, `containers` waits until the test adds a permit.
    list_gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    /// The Swarm it pretends to manage (None: a single engine).
    cluster: Mutex<Option<Cluster>>,
    list_calls: AtomicU64,
    list_running: AtomicU64,
    exit_info_calls: AtomicU64,
}

#[derive(Default)]
struct State {
    next: u64,
    containers: BTreeMap<String, Container>,
    networks: HashMap<String, HashMap<String, String>>,
    volumes: BTreeMap<String, VolumeSpec>,
    /// What the engine knows of each container beyond its listing.
    inner: HashMap<String, Inner>,
    /// Containers created and removed, by name, in order.
    created: Vec<String>,
    removed: Vec<String>,
}

#[derive(Default)]
struct Inner {
    behaviour: Behaviour,
    logs: Vec<String>,
    restarts: u64,
    exit_code: i64,
    /// Listed since it was last started.
    listed: bool,
    /// The volumes it mounts.
    mounts: Vec<String>,
    /// Its CPU limit was put in its steady form (`settle_cpu`), with this share.
    cpu_settled: Option<i64>,
    /// The task answering HTTP for a running published container.
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}

impl FakeRuntime {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Makes it a Swarm manager of these nodes (None: a single engine again).
    pub fn set_cluster(&self, cluster: Option<Cluster>) {
        *self.cluster.lock().expect("cluster lock") = cluster;
    }

    /// Makes `containers` wait for a permit from the returned semaphore (`add_permits(1)` lets
    /// one call through); `None` lets every call through again.
    pub fn gate_listing(&self, on: bool) -> Option<Arc<tokio::sync::Semaphore>> {
        let gate = on.then(|| Arc::new(tokio::sync::Semaphore::new(0)));
        *self.list_gate.lock().expect("gate lock") = gate.clone();
        gate
    }

    /// `exit_info` calls so far.
    pub fn exit_info_calls(&self) -> u64 {
        self.exit_info_calls.load(Ordering::SeqCst)
    }

    /// `containers` calls begun so far, and of those, the ones not finished.
    pub fn list_calls(&self) -> (u64, u64) {
        (
            self.list_calls.load(Ordering::SeqCst),
            self.list_running.load(Ordering::SeqCst),
        )
    }

    /// From now on, containers whose image contains `image` (or whose name ends with it, like
    /// "-d7-r2" for one copy of a deployment) behave so and log `logs`.
    pub fn behave(&self, image: &str, behaviour: Behaviour, logs: &[&str]) {
        self.behaviours.lock().expect("behaviours lock").insert(
            0,
            (
                image.to_owned(),
                behaviour,
                logs.iter().map(|l| (*l).to_owned()).collect(),
            ),
        );
    }

    /// The next call of `op` ("create", "start" or "pull") fails with `error`.
    pub fn fail_next(&self, op: &'static str, error: RuntimeError) {
        self.faults.lock().expect("faults lock").push((op, error));
    }

    fn fault(&self, op: &str) -> Result<(), RuntimeError> {
        let mut faults = self.faults.lock().expect("faults lock");
        match faults.iter().position(|(o, _)| *o == op) {
            Some(i) => Err(faults.remove(i).1),
            None => Ok(()),
        }
    }

    /// The names of the containers created so far, and of those removed, in order.
    pub fn history(&self) -> (Vec<String>, Vec<String>) {
        let s = self.state.lock().expect("fake state");
        (s.created.clone(), s.removed.clone())
    }

    /// A container's state as the engine lists it, by name.
    pub fn state_of(&self, name: &str) -> Option<ContainerState> {
        let s = self.state.lock().expect("fake state");
        s.containers
            .values()
            .find(|c| c.name == name)
            .map(|c| c.state)
    }

    /// The CPU share (nano CPUs) the container of that name was settled to, if it was.
    pub fn cpu_settled(&self, name: &str) -> Option<i64> {
        let s = self.state.lock().expect("fake state");
        let (id, _) = s.containers.iter().find(|(_, c)| c.name == name)?;
        s.inner.get(id).and_then(|i| i.cpu_settled)
    }

    /// Puts a container in place as if made by an earlier panel run (or by hand).
    pub fn add_container(
        &self,
        name: &str,
        labels: HashMap<String, String>,
        state: ContainerState,
    ) -> String {
        let mut s = self.state.lock().expect("fake state");
        s.next += 1;
        let n = s.next;
        let id = format!("fake{n:012}");
        s.containers.insert(
            id.clone(),
            Container {
                id: id.clone(),
                name: name.to_owned(),
                labels,
                state,
                host_port: None,
                host: None,
                ip: None,
                created: n as i64,
            },
        );
        s.inner.insert(id.clone(), Inner::default());
        id
    }

    fn with<T>(&self, id: &str, f: impl FnOnce(&mut Container) -> T) -> Result<T, RuntimeError> {
        let mut s = self.state.lock().expect("fake state");
        s.containers
            .get_mut(id)
            .map(f)
            .ok_or(RuntimeError::NotFound)
    }
}

/// A free loopback port with nothing listening on it.
async fn free_port() -> Result<u16, RuntimeError> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| RuntimeError::Failed(e.to_string()))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| RuntimeError::Failed(e.to_string()))
}

/// Answers every HTTP request on a new loopback port with `status`, until aborted.
async fn answer_http(status: u16) -> Result<(u16, tokio::task::JoinHandle<()>), RuntimeError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| RuntimeError::Failed(e.to_string()))?;
    let port = l
        .local_addr()
        .map_err(|e| RuntimeError::Failed(e.to_string()))?
        .port();
    let server = tokio::spawn(async move {
        while let Ok((mut conn, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 512];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 {status} Fake\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    Ok((port, server))
}

/// Counts a running `containers` call until dropped.
struct Running<'a>(&'a AtomicU64);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    async fn containers(&self, instance: &str) -> Result<Vec<Container>, RuntimeError> {
        self.list_calls.fetch_add(1, Ordering::SeqCst);
        self.list_running.fetch_add(1, Ordering::SeqCst);
        let _running = Running(&self.list_running);
        let gate = self.list_gate.lock().expect("gate lock").clone();
        if let Some(gate) = gate {
            gate.acquire()
                .await
                .map_err(|_| RuntimeError::Unavailable("gate closed".into()))?
                .forget();
        }
        let mut s = self.state.lock().expect("fake state");
        let State {
            containers, inner, ..
        } = &mut *s;
        // Flapping containers crash and come back between two listings (the first listing
        // after a start finds them running).
        for (id, c) in containers.iter_mut() {
            let Some(i) = inner.get_mut(id) else { continue };
            let Behaviour::Flapping(code) = i.behaviour else {
                continue;
            };
            if std::mem::replace(&mut i.listed, true) {
                match c.state {
                    ContainerState::Running => {
                        c.state = ContainerState::Restarting;
                        i.exit_code = code;
                    }
                    ContainerState::Restarting => {
                        c.state = ContainerState::Running;
                        i.restarts += 1;
                        i.exit_code = 0;
                    }
                    _ => {}
                }
            }
        }
        let listed = containers
            .values()
            .filter(|c| c.labels.get(LABEL_INSTANCE).map(String::as_str) == Some(instance))
            .cloned()
            .collect();
        Ok(listed)
    }

    async fn remote_digest(
        &self,
        image: &ImageRef,
        _auth: Option<RegistryAuth>,
    ) -> Result<String, RuntimeError> {
        // The fake registry: a tag names the digest of its own name.
        let name = format!(
            "{}:{}",
            image.name(),
            image.tag.as_deref().unwrap_or("latest")
        );
        Ok(format!("sha256:{}", crate::service::sha256_hex(&name)))
    }

    async fn pull(
        &self,
        image: &ImageRef,
        _auth: Option<RegistryAuth>,
        progress: ProgressFn,
    ) -> Result<Pulled, RuntimeError> {
        self.fault("pull")?;
        progress(PullProgress {
            status: "Downloaded newer image".into(),
            ..Default::default()
        });
        Ok(Pulled {
            image_id: format!("sha256:fake-{}", image.local()),
            digest: image.digest.clone(),
        })
    }

    async fn networks(&self, _instance: &str) -> Result<Vec<Network>, RuntimeError> {
        let s = self.state.lock().expect("fake state");
        Ok(s.networks
            .iter()
            .map(|(name, labels)| Network {
                name: name.clone(),
                tenant: labels.get(LABEL_TENANT).and_then(|t| t.parse().ok()),
            })
            .collect())
    }

    async fn ensure_network(
        &self,
        name: &str,
        _bridge: &str,
        labels: &HashMap<String, String>,
    ) -> Result<String, RuntimeError> {
        let mut s = self.state.lock().expect("fake state");
        s.networks
            .entry(name.to_owned())
            .or_insert_with(|| labels.clone());
        Ok(format!("net-{name}"))
    }

    async fn remove_network(&self, name: &str) -> Result<(), RuntimeError> {
        let mut s = self.state.lock().expect("fake state");
        s.networks
            .remove(name)
            .map(|_| ())
            .ok_or(RuntimeError::NotFound)
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        self.fault("create")?;
        {
            let s = self.state.lock().expect("fake state");
            if s.containers.values().any(|c| c.name == spec.name) {
                return Err(RuntimeError::Conflict(format!(
                    "the container name \"/{}\" is already in use",
                    spec.name
                )));
            }
            if !s.networks.contains_key(&spec.network) {
                return Err(RuntimeError::Failed(format!(
                    "network {} not found",
                    spec.network
                )));
            }
        }
        let mut labels = spec.labels.clone();
        if spec.publish {
            labels.insert("fake.publish".into(), spec.port.to_string());
        }
        let (behaviour, logs) = self
            .behaviours
            .lock()
            .expect("behaviours lock")
            .iter()
            .find(|(key, _, _)| {
                spec.image.contains(key.as_str()) || spec.name.ends_with(key.as_str())
            })
            .map(|(_, b, l)| (b.clone(), l.clone()))
            .unwrap_or_default();
        let id = self.add_container(&spec.name, labels, ContainerState::Created);
        let mut s = self.state.lock().expect("fake state");
        s.created.push(spec.name.clone());
        s.inner.insert(
            id.clone(),
            Inner {
                behaviour,
                logs,
                mounts: spec.mounts.iter().map(|(v, _)| v.clone()).collect(),
                restarts: 0,
                exit_code: 0,
                listed: false,
                server: None,
                cpu_settled: None,
            },
        );
        Ok(id)
    }

    async fn settle_cpu(&self, id: &str, nano_cpus: i64) -> Result<(), RuntimeError> {
        self.fault("settle_cpu")?;
        let mut s = self.state.lock().expect("fake state");
        let inner = s.inner.get_mut(id).ok_or(RuntimeError::NotFound)?;
        inner.cpu_settled = Some(nano_cpus);
        Ok(())
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.fault("start")?;
        let (behaviour, publish) = {
            let s = self.state.lock().expect("fake state");
            let c = s.containers.get(id).ok_or(RuntimeError::NotFound)?;
            if c.running() {
                return Ok(());
            }
            let inner = s.inner.get(id).ok_or(RuntimeError::NotFound)?;
            (
                inner.behaviour.clone(),
                c.labels.contains_key("fake.publish"),
            )
        };
        // Like Docker's ephemeral ports: a free loopback port, answering or not.
        let (port, server) = match (&behaviour, publish) {
            (Behaviour::Answers(status), true) => {
                let (port, server) = answer_http(*status).await?;
                (Some(port), Some(server))
            }
            (Behaviour::Silent | Behaviour::Flapping(_), true) => (Some(free_port().await?), None),
            _ => (None, None),
        };
        let mut s = self.state.lock().expect("fake state");
        let State {
            containers, inner, ..
        } = &mut *s;
        let (Some(c), Some(inner)) = (containers.get_mut(id), inner.get_mut(id)) else {
            return Err(RuntimeError::NotFound);
        };
        match behaviour {
            Behaviour::StartFails(msg) => Err(RuntimeError::Failed(msg)),
            Behaviour::CrashLoop(code) => {
                // Between two restarts, as Docker lists it.
                c.state = ContainerState::Restarting;
                inner.restarts += 1;
                inner.exit_code = code;
                Ok(())
            }
            Behaviour::Flapping(_) => {
                c.state = ContainerState::Running;
                c.host_port = port;
                inner.restarts += 1;
                inner.exit_code = 0;
                inner.listed = false;
                Ok(())
            }
            Behaviour::Answers(_) | Behaviour::Silent => {
                c.state = ContainerState::Running;
                c.host_port = port;
                if let Some(old) = std::mem::replace(&mut inner.server, server) {
                    old.abort();
                }
                Ok(())
            }
        }
    }

    async fn stop(&self, id: &str, _timeout_secs: i64) -> Result<(), RuntimeError> {
        let mut s = self.state.lock().expect("fake state");
        if let Some(server) = s.inner.get_mut(id).and_then(|i| i.server.take()) {
            server.abort();
        }
        let c = s.containers.get_mut(id).ok_or(RuntimeError::NotFound)?;
        c.state = ContainerState::Exited;
        c.host_port = None;
        Ok(())
    }

    async fn restart(&self, id: &str, timeout_secs: i64) -> Result<(), RuntimeError> {
        self.stop(id, timeout_secs).await?;
        self.start(id).await
    }

    /// A missing container is not an error, as with Docker.
    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let mut s = self.state.lock().expect("fake state");
        s.inner.remove(id);
        if let Some(c) = s.containers.remove(id) {
            s.removed.push(c.name);
        }
        Ok(())
    }

    async fn exit_info(&self, id: &str) -> Result<ExitInfo, RuntimeError> {
        self.exit_info_calls.fetch_add(1, Ordering::SeqCst);
        let s = self.state.lock().expect("fake state");
        let c = s.containers.get(id).ok_or(RuntimeError::NotFound)?;
        let inner = s.inner.get(id).ok_or(RuntimeError::NotFound)?;
        Ok(ExitInfo {
            running: c.running(),
            restarts: inner.restarts,
            exit_code: inner.exit_code,
            oom_killed: false,
            error: String::new(),
        })
    }

    /// The container's log lines (its behaviour's), the last `tail` of them; never follows.
    fn logs(
        &self,
        id: &str,
        tail: usize,
        _follow: bool,
    ) -> BoxStream<'static, Result<LogLine, RuntimeError>> {
        let s = self.state.lock().expect("fake state");
        let lines = s.inner.get(id).map(|i| i.logs.clone()).unwrap_or_default();
        let skip = lines.len().saturating_sub(tail);
        Box::pin(stream::iter(lines.into_iter().skip(skip).map(|text| {
            Ok(LogLine {
                stream: "stdout".into(),
                text,
            })
        })))
    }

    async fn usage(&self, id: &str) -> Result<Usage, RuntimeError> {
        self.with(id, |_| Usage {
            online_cpus: 1,
            ..Default::default()
        })
    }

    async fn cluster(&self) -> Result<Option<Cluster>, RuntimeError> {
        Ok(self.cluster.lock().expect("cluster lock").clone())
    }

    async fn set_node_availability(
        &self,
        node: &str,
        availability: NodeAvailability,
    ) -> Result<(), RuntimeError> {
        let mut c = self.cluster.lock().expect("cluster lock");
        let n = c
            .as_mut()
            .and_then(|c| c.nodes.iter_mut().find(|n| n.id == node))
            .ok_or(RuntimeError::NotFound)?;
        n.availability = availability;
        Ok(())
    }

    async fn info(&self) -> Result<EngineInfo, RuntimeError> {
        Ok(EngineInfo {
            root_dir: String::new(),
            version: "fake".into(),
            userland_proxy: Some(false),
            ..Default::default()
        })
    }

    async fn volumes(&self, _instance: &str) -> Result<Vec<VolumeInfo>, RuntimeError> {
        let s = self.state.lock().expect("fake state");
        Ok(s.volumes
            .values()
            .map(|v| VolumeInfo {
                name: v.name.clone(),
                id: Some(v.id),
            })
            .collect())
    }

    async fn ensure_volume(&self, spec: &VolumeSpec) -> Result<(), RuntimeError> {
        let mut s = self.state.lock().expect("fake state");
        s.volumes
            .entry(spec.name.clone())
            .or_insert_with(|| spec.clone());
        Ok(())
    }

    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        let mut s = self.state.lock().expect("fake state");
        if s.inner.values().any(|i| i.mounts.iter().any(|m| m == name)) {
            return Err(RuntimeError::Conflict(format!("volume {name} is in use")));
        }
        s.volumes.remove(name);
        Ok(())
    }

    async fn volume_usage(&self, _name: &str) -> Result<Option<VolumeUsage>, RuntimeError> {
        Ok(None)
    }

    fn stored_volumes(&self) -> Vec<String> {
        Vec::new()
    }

    async fn remove_image(&self, _reference: &str) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn enforce_egress(&self, policy: &EgressPolicy) -> EgressStatus {
        EgressStatus {
            enforced: false,
            policy: policy.clone(),
            problem: Some("the fake engine has no firewall".into()),
        }
    }

    async fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.with(id, |c| c.state = ContainerState::Paused)
    }

    async fn unpause(&self, id: &str) -> Result<(), RuntimeError> {
        self.with(id, |c| c.state = ContainerState::Running)
    }

    /// The fake's volumes have no data: a mount is an empty directory.
    async fn mount_volume(&self, name: &str, at: &std::path::Path) -> Result<(), RuntimeError> {
        if !self
            .state
            .lock()
            .expect("fake state")
            .volumes
            .contains_key(name)
        {
            return Err(RuntimeError::NotFound);
        }
        std::fs::create_dir_all(at).map_err(|e| RuntimeError::Failed(e.to_string()))
    }

    async fn unmount_volume(&self, _at: &std::path::Path) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// The fake's commands read their input to the end and print their own argument list;
    /// `false` fails.
    async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        stdin: Option<ExecInput>,
        mut stdout: ExecOutput,
    ) -> Result<ExecOutcome, RuntimeError> {
        use tokio::io::AsyncWriteExt;
        let running = self
            .state
            .lock()
            .expect("fake state")
            .containers
            .get(id)
            .map(|c| c.running());
        match running {
            None => return Err(RuntimeError::NotFound),
            Some(false) => {
                return Err(RuntimeError::Conflict(
                    "the container is not running".into(),
                ))
            }
            Some(true) => {}
        }
        if let Some(mut input) = stdin {
            tokio::io::copy(&mut input, &mut tokio::io::sink())
                .await
                .map_err(|e| RuntimeError::Failed(e.to_string()))?;
        }
        let line = format!("{}\n", cmd.join(" "));
        stdout
            .write_all(line.as_bytes())
            .await
            .map_err(|e| RuntimeError::Failed(e.to_string()))?;
        stdout
            .shutdown()
            .await
            .map_err(|e| RuntimeError::Failed(e.to_string()))?;
        let failed = cmd.first().is_some_and(|c| c == "false");
        Ok(ExecOutcome {
            exit_code: i64::from(failed),
            stderr: if failed {
                "false: failed".into()
            } else {
                String::new()
            },
            stdout_bytes: line.len() as u64,
        })
    }
}
