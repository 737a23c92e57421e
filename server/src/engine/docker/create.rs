//! A container made with the hardened defaults, whatever the spec says.

use std::collections::HashMap;

use bollard::{
    models::{
        ContainerCreateBody, EndpointSettings, HostConfig, HostConfigLogConfig, Mount, MountType,
        NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
    },
    query_parameters::CreateContainerOptionsBuilder,
};

use pier_core::runtime::{ContainerSpec, RuntimeError};

use super::{info::refuses_layer_size, map_err, DockerRuntime};

/// The CPU period a container starts with (the longest the kernel takes). Docker's own set-up
/// of a container (`runc init`, a Go program) runs inside the container's CPU limit; with 0.1 CPU
/// over 100 ms periods it gets 10 ms at a time and waits out the rest, which adds about 70 ms to
/// every start (`bench/apps.py`). Over 1 s periods the start runs through in one go.
pub(super) const START_PERIOD_US: i64 = 1_000_000;
/// The period a running container settles to (Docker's `--cpus`): a busy app waits at most a
/// tenth of a second at a time.
pub(super) const STEADY_PERIOD_US: i64 = 100_000;

/// The microseconds of CPU time per `period_us` that `nano_cpus` (billionths of a CPU) allow.
pub(super) fn quota_us(nano_cpus: i64, period_us: i64) -> i64 {
    nano_cpus.saturating_mul(period_us) / 1_000_000_000
}

impl DockerRuntime {
    pub(super) async fn create_container(
        &self,
        spec: &ContainerSpec,
    ) -> Result<String, RuntimeError> {
        let port_key = format!("{}/tcp", spec.port);
        let host = HostConfig {
            memory: Some(spec.memory_bytes),
            // Equal to memory: no swap on top of the limit.
            memory_swap: Some(spec.memory_bytes),
            // The CPU share counted over 1 s periods until the container answers, then over
            // Docker's usual 100 ms (`settle_cpu`): same average, but the start is not throttled.
            cpu_period: (spec.nano_cpus > 0).then_some(START_PERIOD_US),
            cpu_quota: (spec.nano_cpus > 0).then(|| quota_us(spec.nano_cpus, START_PERIOD_US)),
            pids_limit: Some(spec.pids_limit),
            init: Some(true),
            privileged: Some(false),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: (!spec.cap_add.is_empty()).then(|| spec.cap_add.clone()),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            readonly_rootfs: Some(spec.read_only),
            storage_opt: spec
                .writable_layer_mb
                .map(|mb| HashMap::from([("size".to_string(), format!("{mb}M"))])),
            tmpfs: spec.read_only.then(|| {
                HashMap::from([("/tmp".to_string(), "rw,noexec,nosuid,size=64m".to_string())])
            }),
            network_mode: Some(spec.network.clone()),
            publish_all_ports: Some(false),
            port_bindings: spec.publish.then(|| {
                HashMap::from([(
                    port_key.clone(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        // Empty: Docker picks a free port.
                        host_port: Some(String::new()),
                    }]),
                )])
            }),
            mounts: (!spec.mounts.is_empty()).then(|| {
                spec.mounts
                    .iter()
                    .map(|(volume, path)| Mount {
                        target: Some(path.clone()),
                        source: Some(volume.clone()),
                        typ: Some(MountType::VOLUME),
                        read_only: Some(false),
                        ..Default::default()
                    })
                    .collect()
            }),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    ("max-size".to_string(), "10m".to_string()),
                    ("max-file".to_string(), "3".to_string()),
                ])),
            }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(spec.labels.clone()),
            exposed_ports: Some(vec![port_key]),
            host_config: Some(host),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    spec.network.clone(),
                    EndpointSettings {
                        aliases: Some(vec![spec.alias.clone()]),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        let created = self
            .docker()?
            .create_container(Some(opts.clone()), body.clone())
            .await
            .map_err(map_err);
        let created = match created {
            // Only the size was refused (no quota support under the driver after all): note it
            // (the admin page then says layers are unbounded) and create without it.
            Err(RuntimeError::Failed(why))
                if spec.writable_layer_mb.is_some() && refuses_layer_size(&why) =>
            {
                tracing::warn!(error = %why, "the engine cannot bound writable layers; containers are created without the bound");
                self.layer_refused
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                let mut body = body;
                if let Some(h) = body.host_config.as_mut() {
                    h.storage_opt = None;
                }
                self.docker()?
                    .create_container(Some(opts), body)
                    .await
                    .map_err(map_err)?
            }
            other => other?,
        };
        Ok(created.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_shares_become_quotas_per_period() {
        // 0.5 CPU: 500 ms a second at the start, 50 ms per 100 ms once settled.
        assert_eq!(quota_us(500_000_000, START_PERIOD_US), 500_000);
        assert_eq!(quota_us(500_000_000, STEADY_PERIOD_US), 50_000);
        // The smallest share an app gets (0.05 CPU) stays above the kernel's 1 ms floor.
        assert_eq!(quota_us(50_000_000, STEADY_PERIOD_US), 5_000);
        assert_eq!(quota_us(2_000_000_000, STEADY_PERIOD_US), 200_000);
    }
}
