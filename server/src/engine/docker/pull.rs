//! Pulls with progress summed over layers, and the registry's digest of a tag.

use std::collections::HashMap;

use bollard::{auth::DockerCredentials, query_parameters::CreateImageOptionsBuilder};
use futures_util::StreamExt;

use pier_core::{
    runtime::{ProgressFn, PullProgress, Pulled, RegistryAuth, RuntimeError},
    validate::ImageRef,
};

use super::{map_err, DockerRuntime};

/// The longest a pull may go without a progress message.
const PULL_IDLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(5 * 60);

impl DockerRuntime {
    pub(super) async fn pull_image(
        &self,
        image: &ImageRef,
        auth: Option<RegistryAuth>,
        progress: ProgressFn,
    ) -> Result<Pulled, RuntimeError> {
        let name = image.name();
        let reference = image
            .digest
            .clone()
            .or_else(|| image.tag.clone())
            .unwrap_or_else(|| "latest".into());
        let opts = CreateImageOptionsBuilder::new()
            .from_image(&name)
            .tag(&reference)
            .build();
        let creds = auth.map(|a| DockerCredentials {
            username: Some(a.username),
            password: Some(a.password),
            serveraddress: Some(a.server),
            ..Default::default()
        });
        let mut stream = self.docker()?.create_image(Some(opts), None, creds);
        let mut tally = PullTally::default();
        loop {
            // A registry that stops sending mid-pull must not hold the deployment forever.
            let next = tokio::time::timeout(PULL_IDLE_LIMIT, stream.next())
                .await
                .map_err(|_| {
                    RuntimeError::Failed(format!(
                        "the registry sent nothing for {} minutes",
                        PULL_IDLE_LIMIT.as_secs() / 60
                    ))
                })?;
            let Some(item) = next else { break };
            let info = item.map_err(map_err)?;
            let status = info.status.unwrap_or_default();
            let (cur, tot) = info
                .progress_detail
                .map(|d| (d.current, d.total))
                .unwrap_or((None, None));
            tally.add(info.id.as_deref(), &status, cur, tot);
            progress(tally.progress(&status));
        }
        let local = image.local();
        let inspect = self
            .docker()?
            .inspect_image(&local)
            .await
            .map_err(map_err)?;
        let digests = inspect.repo_digests.unwrap_or_default();
        let short = name
            .strip_prefix("docker.io/")
            .map(|n| n.strip_prefix("library/").unwrap_or(n).to_owned());
        let digest = digests
            .iter()
            .find(|d| {
                let repo = d.split('@').next().unwrap_or_default();
                repo == name || Some(repo) == short.as_deref()
            })
            .or(digests.first())
            .and_then(|d| d.split_once('@').map(|(_, dg)| dg.to_owned()));
        Ok(Pulled {
            image_id: inspect.id.unwrap_or(local),
            digest,
        })
    }

    pub(super) async fn digest_of(
        &self,
        image: &ImageRef,
        auth: Option<RegistryAuth>,
    ) -> Result<String, RuntimeError> {
        // The engine asks the registry for the manifest (HEAD, then GET where the registry wants
        // it), with the tenant's login: GET /distribution/{name}/json.
        let reference = format!(
            "{}:{}",
            image.name(),
            image.tag.as_deref().unwrap_or("latest")
        );
        let creds = auth.map(|a| DockerCredentials {
            username: Some(a.username),
            password: Some(a.password),
            serveraddress: Some(a.server),
            ..Default::default()
        });
        let found = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            self.docker()?.inspect_registry_image(&reference, creds),
        )
        .await
        .map_err(|_| RuntimeError::Failed("the registry did not answer within 30 s".into()))?
        .map_err(map_err)?;
        found
            .descriptor
            .digest
            .filter(|d| d.starts_with("sha256:"))
            .ok_or_else(|| RuntimeError::Failed("the registry gave no digest".into()))
    }
}

/// Sums a pull's per-layer progress messages.
#[derive(Default)]
pub(super) struct PullTally {
    layers: HashMap<String, (u64, u64, bool)>,
}

impl PullTally {
    pub(super) fn add(
        &mut self,
        id: Option<&str>,
        status: &str,
        current: Option<i64>,
        total: Option<i64>,
    ) {
        let Some(id) = id.filter(|i| i.len() >= 12 && i.chars().all(|c| c.is_ascii_hexdigit()))
        else {
            return;
        };
        let e = self.layers.entry(id.to_owned()).or_default();
        if status == "Downloading" {
            if let Some(t) = total.filter(|t| *t > 0) {
                e.1 = t as u64;
            }
            if let Some(c) = current {
                e.0 = c.max(0) as u64;
            }
        }
        if matches!(
            status,
            "Download complete" | "Pull complete" | "Already exists"
        ) {
            e.0 = e.1;
            e.2 = true;
        }
    }

    pub(super) fn progress(&self, status: &str) -> PullProgress {
        PullProgress {
            done_bytes: self.layers.values().map(|l| l.0).sum(),
            total_bytes: self.layers.values().map(|l| l.1).sum(),
            layers_done: self.layers.values().filter(|l| l.2).count() as u32,
            layers: self.layers.len() as u32,
            status: status.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_progress_sums_layers() {
        let mut t = PullTally::default();
        let a = "aaaaaaaaaaaa";
        let b = "bbbbbbbbbbbb";
        t.add(Some(a), "Pulling fs layer", None, None);
        t.add(Some(b), "Pulling fs layer", None, None);
        t.add(Some(a), "Downloading", Some(50), Some(100));
        t.add(Some(b), "Downloading", Some(10), Some(300));
        let p = t.progress("Downloading");
        assert_eq!(
            (p.done_bytes, p.total_bytes, p.layers_done, p.layers),
            (60, 400, 0, 2)
        );
        t.add(Some(a), "Pull complete", None, None);
        // Messages about the image as a whole carry no layer id.
        t.add(Some("1"), "Pulling from pier-test/hello", None, None);
        let p = t.progress("Pull complete");
        assert_eq!((p.done_bytes, p.layers_done, p.layers), (110, 1, 2));
    }
}
