//! An engine in memory, for tests of the rules above the [`Runtime`] trait that need no Docker:
//! containers are created, started, stopped and removed as Docker would (names unique, state
//! strings as Docker's, a host port on start when published), networks and volumes are kept by
//! name. Tests can hold the container list (a gate) and count calls.

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

#[derive(Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
    /// While set, `containers` waits until the test adds a permit.
    list_gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    list_calls: AtomicU64,
    list_running: AtomicU64,
}

#[derive(Default)]
struct State {
    next: u64,
    containers: BTreeMap<String, Container>,
    networks: HashMap<String, HashMap<String, String>>,
    volumes: BTreeMap<String, VolumeSpec>,
}

impl FakeRuntime {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Makes `containers` wait for a permit from the returned semaphore (`add_permits(1)` lets
    /// one call through); `None` lets every call through again.
    pub fn gate_listing(&self, on: bool) -> Option<Arc<tokio::sync::Semaphore>> {
        let gate = on.then(|| Arc::new(tokio::sync::Semaphore::new(0)));
        *self.list_gate.lock().expect("gate lock") = gate.clone();
        gate
    }

    /// `containers` calls begun so far, and of those, the ones not finished.
    pub fn list_calls(&self) -> (u64, u64) {
        (
            self.list_calls.load(Ordering::SeqCst),
            self.list_running.load(Ordering::SeqCst),
        )
    }

    /// Puts a container in place as if made by an earlier panel run (or by hand).
    pub fn add_container(
        &self,
        name: &str,
        labels: HashMap<String, String>,
        state: &str,
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
                state: state.to_owned(),
                host_port: None,
                ip: None,
                created: n as i64,
            },
        );
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
        let s = self.state.lock().expect("fake state");
        Ok(s.containers
            .values()
            .filter(|c| c.labels.get(LABEL_INSTANCE).map(String::as_str) == Some(instance))
            .cloned()
            .collect())
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
        Ok(self.add_container(&spec.name, labels, "created"))
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.with(id, |c| {
            c.state = "running".into();
            if c.labels.contains_key("fake.publish") && c.host_port.is_none() {
                // Like Docker's ephemeral ports: unique per container.
                c.host_port = Some(40_000 + (c.created % 20_000) as u16);
            }
        })
    }

    async fn stop(&self, id: &str, _timeout_secs: i64) -> Result<(), RuntimeError> {
        self.with(id, |c| {
            c.state = "exited".into();
            c.host_port = None;
        })
    }

    async fn restart(&self, id: &str, timeout_secs: i64) -> Result<(), RuntimeError> {
        self.stop(id, timeout_secs).await?;
        self.start(id).await
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let mut s = self.state.lock().expect("fake state");
        s.containers
            .remove(id)
            .map(|_| ())
            .ok_or(RuntimeError::NotFound)
    }

    async fn exit_info(&self, id: &str) -> Result<ExitInfo, RuntimeError> {
        self.with(id, |c| ExitInfo {
            running: c.running(),
            restarts: 0,
            exit_code: 0,
            oom_killed: false,
            error: String::new(),
        })
    }

    fn logs(
        &self,
        _id: &str,
        _tail: usize,
        _follow: bool,
    ) -> BoxStream<'static, Result<LogLine, RuntimeError>> {
        Box::pin(stream::empty())
    }

    async fn usage(&self, id: &str) -> Result<Usage, RuntimeError> {
        self.with(id, |_| Usage {
            online_cpus: 1,
            ..Default::default()
        })
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
        if s.containers
            .values()
            .any(|c| c.labels.get(LABEL_VOLUME).map(String::as_str) == Some(name))
        {
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
        self.with(id, |c| c.state = "paused".into())
    }

    async fn unpause(&self, id: &str) -> Result<(), RuntimeError> {
        self.with(id, |c| c.state = "running".into())
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
