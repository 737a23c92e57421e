//! A panel on the in-memory engine, for the engine's unit tests (rollouts, reconciler passes).

use std::{sync::Arc, time::Duration};

use pier_core::{
    apps::AppSpec,
    fake_runtime::FakeRuntime,
    model::{Actor, Deployment},
    service::Settings,
    testkit::{panel_with_user, TempDir},
    Pier,
};

use super::{
    rollout::{rollout, Outcome},
    routing::Routing,
};

pub struct Panel {
    pub pier: Pier,
    pub engine: Arc<FakeRuntime>,
    pub routing: Routing,
    pub actor: Actor,
    _dir: TempDir,
}

/// A panel on a database of its own, a member with room for a few apps, and health checks that
/// give up after `health_secs`.
pub async fn panel(health_secs: u64) -> Panel {
    let mut settings = Settings::default();
    settings.engine.health_timeout_secs = health_secs;
    settings.engine.drain_ms = 0;
    let engine = FakeRuntime::new();
    let (pier, actor, dir) = panel_with_user(engine.clone(), "member", settings).await;
    Panel {
        pier,
        engine,
        routing: Routing::new(None),
        actor,
        _dir: dir,
    }
}

/// Settings of an app named `name` running `image`.
pub fn input(name: &str, image: &str) -> (String, AppSpec) {
    let spec = AppSpec {
        image: Some(format!("registry.example/{image}")),
        port: Some(8080),
        ..AppSpec::default()
    };
    (name.to_owned(), spec)
}

impl Panel {
    /// Creates the app; its first deployment.
    pub async fn create(&self, (name, spec): (String, AppSpec)) -> Deployment {
        self.pier
            .create_app(&self.actor, &name, spec)
            .await
            .unwrap();
        self.latest(&name).await
    }

    /// Saves new settings; the deployment that rolls them out.
    pub async fn update(&self, (name, spec): (String, AppSpec)) -> Deployment {
        self.pier
            .update_app(&self.actor, &name, spec)
            .await
            .unwrap();
        self.latest(&name).await
    }

    pub async fn latest(&self, name: &str) -> Deployment {
        let list = self
            .pier
            .deployments(&self.actor, name, 1, 0)
            .await
            .unwrap();
        list.into_iter().next().unwrap()
    }

    pub async fn deployment(&self, id: i64) -> Deployment {
        pier_core::repo::deployments::by_id(self.pier.db(), id)
            .await
            .unwrap()
            .unwrap()
    }

    pub async fn serving(&self, name: &str) -> Option<i64> {
        self.pier
            .own_app(&self.actor, name)
            .await
            .unwrap()
            .current_deployment_id
    }

    pub async fn rollout(&self, d: &Deployment) -> Outcome {
        tokio::time::timeout(
            Duration::from_secs(30),
            rollout(&self.pier, &self.routing, d.id),
        )
        .await
        .expect("the rollout ended")
        .unwrap()
    }

    /// The rollout of `d` when the engine stops answering `op` once: it ends with an error to
    /// retry (saying the engine's words), not a failure, and the deployment waits, starting.
    pub async fn rollout_interrupted_at(&self, d: &Deployment, op: &'static str) {
        self.engine.fail_next(
            op,
            pier_core::runtime::RuntimeError::Unavailable("connection reset".into()),
        );
        let err = rollout(&self.pier, &self.routing, d.id).await.unwrap_err();
        assert!(err.to_string().contains("connection reset"), "{err:#}");
        assert_eq!(
            self.deployment(d.id).await.status,
            pier_core::model::DeployStatus::Starting
        );
    }

    /// Removes the container of that engine name behind the panel's back.
    pub async fn remove_container(&self, container: &str) {
        use pier_core::runtime::Runtime;
        let instance = self.pier.instance_id().await.unwrap();
        let listed = self.engine.containers(&instance).await.unwrap();
        let c = listed.iter().find(|c| c.name == container).unwrap();
        self.engine.remove(&c.id).await.unwrap();
    }

    /// The engine's name of a deployment's container.
    pub async fn container(&self, name: &str, d: &Deployment) -> String {
        self.replica(name, d, 0).await
    }

    /// The engine's name of one copy of a deployment.
    pub async fn replica(&self, name: &str, d: &Deployment, replica: i64) -> String {
        let app = self.pier.own_app(&self.actor, name).await.unwrap();
        let instance = self.pier.instance_id().await.unwrap();
        pier_core::apps::container_name(&instance, &app, d.id, replica)
    }
}
