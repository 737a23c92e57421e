//! Reconciler passes on the in-memory engine: what a pass does with what it finds, without
//! Docker (the real-engine tests in `server/tests/it/engine.rs` show what only Docker can).

use std::time::Duration;

use pier_core::runtime::{ContainerState, Runtime, Usage};
use tokio::task::JoinSet;

use super::{
    pass,
    sampler::{point, Sampler},
    settle,
    testkit::{input, panel, Panel},
    Backoff, Tasks,
};

/// Runs passes, and the rollouts they start, until a pass starts nothing.
async fn converge(p: &Panel) {
    let mut backoff = Backoff::default();
    let mut tasks: Tasks = JoinSet::new();
    for _ in 0..10 {
        pass(&p.pier, &p.routing, &mut backoff, &mut tasks)
            .await
            .expect("a pass");
        if tasks.is_empty() {
            return;
        }
        while let Some(done) = tasks.join_next().await {
            settle(&mut backoff, done);
        }
    }
    panic!("the reconciler did not settle in 10 passes");
}

/// The installation's containers, by name, with their states.
async fn listed(p: &Panel) -> Vec<(String, ContainerState)> {
    let instance = p.pier.instance_id().await.unwrap();
    let mut l: Vec<(String, ContainerState)> = p
        .engine
        .containers(&instance)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.name, c.state))
        .collect();
    l.sort();
    l
}

#[tokio::test]
async fn passes_roll_out_replace_stop_start_and_clean_up() {
    let p = panel(5).await;
    let first = p.create(input("web", "web:1")).await;
    converge(&p).await;
    let c1 = p.container("web", &first).await;
    assert_eq!(listed(&p).await, [(c1.clone(), ContainerState::Running)]);
    assert_eq!(p.serving("web").await, Some(first.id));

    // A new version: once it serves, the old container goes.
    let second = p.update(input("web", "web:2")).await;
    converge(&p).await;
    let c2 = p.container("web", &second).await;
    assert_eq!(listed(&p).await, [(c2.clone(), ContainerState::Running)]);
    assert_eq!(p.engine.history().1, std::slice::from_ref(&c1));

    // Stopped and started as the owner asks; the container is kept.
    p.pier
        .set_app_running(&p.actor, "web", false)
        .await
        .unwrap();
    converge(&p).await;
    assert_eq!(listed(&p).await, [(c2.clone(), ContainerState::Exited)]);
    p.pier.set_app_running(&p.actor, "web", true).await.unwrap();
    converge(&p).await;
    assert_eq!(listed(&p).await, [(c2.clone(), ContainerState::Running)]);

    // A container of this installation that no app wants (an app deleted while the panel was
    // down) goes; one of another installation is not Pier's to touch.
    let instance = p.pier.instance_id().await.unwrap();
    let labels = |inst: &str| {
        std::collections::HashMap::from([
            ("pier.instance".to_string(), inst.to_string()),
            ("pier.tenant".to_string(), p.actor.user_id.to_string()),
            ("pier.app".to_string(), "999".to_string()),
            ("pier.deployment".to_string(), "999".to_string()),
        ])
    };
    p.engine
        .add_container("orphan", labels(&instance), ContainerState::Running);
    p.engine
        .add_container("neighbour", labels("elsewhere"), ContainerState::Running);
    converge(&p).await;
    assert_eq!(listed(&p).await, [(c2.clone(), ContainerState::Running)]);
    assert_eq!(
        p.engine.state_of("neighbour"),
        Some(ContainerState::Running)
    );

    // Deleting the app removes its container, then the tenant's network with its last app.
    assert_eq!(p.engine.networks(&instance).await.unwrap().len(), 1);
    p.pier.delete_app(&p.actor, "web", true).await.unwrap();
    converge(&p).await;
    converge(&p).await;
    assert!(listed(&p).await.is_empty());
    assert!(p.engine.networks(&instance).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_draining_deployment_keeps_its_container_until_released() {
    let p = panel(5).await;
    let first = p.create(input("web", "web:1")).await;
    converge(&p).await;
    let c1 = p.container("web", &first).await;

    // Its requests are still finishing (HAProxy drains it): the planner leaves it alone even
    // after the new deployment serves.
    let draining = p.routing.hold(Some(first.id));
    let second = p.update(input("web", "web:2")).await;
    converge(&p).await;
    let c2 = p.container("web", &second).await;
    assert_eq!(p.serving("web").await, Some(second.id));
    assert_eq!(
        listed(&p).await,
        [
            (c1.clone(), ContainerState::Running),
            (c2.clone(), ContainerState::Running)
        ]
    );

    drop(draining);
    converge(&p).await;
    assert_eq!(listed(&p).await, [(c2, ContainerState::Running)]);
}

#[test]
fn cpu_percent_from_two_readings() {
    let a = Usage {
        cpu_ns: 1_000,
        system_ns: 10_000,
        online_cpus: 2,
        memory_bytes: 1,
        memory_limit: 2,
    };
    let b = Usage {
        cpu_ns: 2_000,
        system_ns: 20_000,
        ..a
    };
    // 10% of all CPU time on a 2-CPU machine = 20% of one CPU.
    assert!((point(&a, &b, 0).cpu_percent - 20.0).abs() < 1e-9);
    assert_eq!(point(&b, &b, 0).cpu_percent, 0.0);
}

#[test]
fn backoff_doubles_and_resets() {
    let mut b = Backoff::default();
    assert!(b.ready(1));
    assert_eq!(b.failed(1), Duration::from_secs(2));
    assert_eq!(b.failed(1), Duration::from_secs(4));
    assert!(!b.ready(1));
    b.succeeded(1);
    assert!(b.ready(1));
    for _ in 0..20 {
        b.failed(2);
    }
    assert_eq!(b.failed(2), Duration::from_secs(300));
}

#[tokio::test]
async fn crash_looks_wait_for_the_engine_to_report_a_change() {
    let p = panel(5).await;
    p.create(input("web", "web:1")).await;
    converge(&p).await;
    let every = Duration::from_secs(15);
    let mut sampler = Sampler::default();
    // Without the engine's events, every round inspects the serving container.
    sampler.round(&p.pier, every).await;
    sampler.round(&p.pier, every).await;
    assert_eq!(p.engine.exit_info_calls(), 2);
    // Events followed and none arriving: after one look at a current list (the reconciler
    // takes one every pass), the next ones are skipped.
    p.pier.following_container_events(true);
    converge(&p).await;
    sampler.round(&p.pier, every).await;
    sampler.round(&p.pier, every).await;
    sampler.round(&p.pier, every).await;
    assert_eq!(p.engine.exit_info_calls(), 3);
    // A change (a container died or started): the next round looks again.
    p.pier.container_changed();
    sampler.round(&p.pier, every).await;
    assert_eq!(p.engine.exit_info_calls(), 4);
    // Events no longer followed: every round looks.
    p.pier.following_container_events(false);
    sampler.round(&p.pier, every).await;
    sampler.round(&p.pier, every).await;
    assert_eq!(p.engine.exit_info_calls(), 6);
}
