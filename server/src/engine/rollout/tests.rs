//! Rollouts on an engine in memory: every way a run can end, without Docker. The fake's
//! containers answer HTTP on real loopback ports, so health checks run as they do for real.

use std::time::Duration;

use pier_core::{
    apps::{AppSpec, VolumeInput},
    fake_runtime::Behaviour,
    model::{CapProfile, DeployStatus},
    runtime::{ContainerState, Runtime, RuntimeError},
};

use super::{capability_hint, recreate, rollout, Outcome};
use crate::engine::testkit::{input, panel};

fn failed(o: Outcome) -> String {
    match o {
        Outcome::Failed(why) => why,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_healthy_deployment_serves_and_supersedes_the_one_before() {
    let p = panel(5).await;
    let first = p.create(input("web", "web:1")).await;
    assert_eq!(p.rollout(&first).await, Outcome::Live);
    assert_eq!(p.deployment(first.id).await.status, DeployStatus::Running);
    assert_eq!(p.serving("web").await, Some(first.id));

    let second = p.update(input("web", "web:2")).await;
    assert_eq!(p.rollout(&second).await, Outcome::Live);
    assert_eq!(p.deployment(second.id).await.status, DeployStatus::Running);
    assert_eq!(
        p.deployment(first.id).await.status,
        DeployStatus::Superseded
    );
    assert_eq!(p.serving("web").await, Some(second.id));
    // Both containers run: the old one goes with the planner, after its requests drain.
    for d in [&first, &second] {
        let c = p.container("web", d).await;
        assert_eq!(p.engine.state_of(&c), Some(ContainerState::Running), "{c}");
    }
    // A rollout of a deployment that already serves has nothing to do.
    assert_eq!(p.rollout(&second).await, Outcome::Cancelled);
}

#[tokio::test]
async fn every_replica_answers_before_a_deployment_serves() {
    let p = panel(1).await;
    let mut three = input("web", "web:1");
    three.1.replicas = Some(3);
    let first = p.create(three).await;
    assert_eq!(first.replicas, 3);
    assert_eq!(p.rollout(&first).await, Outcome::Live);
    let mut names = Vec::new();
    for r in 0..3 {
        let c = p.replica("web", &first, r).await;
        assert_eq!(p.engine.state_of(&c), Some(ContainerState::Running), "{c}");
        names.push(c);
    }
    assert!(
        names[1].ends_with(&format!("-d{}-r1", first.id)),
        "{names:?}"
    );

    // The next deployment's third copy never answers: the deployment fails as a whole, its
    // copies go, and the three of the first one go on serving.
    let second = p.update(input("web", "web:2")).await;
    assert_eq!(second.replicas, 3, "kept from the app");
    p.engine.behave(
        &format!("-d{}-r2", second.id),
        Behaviour::Silent,
        &["stuck on copy three"],
    );
    let why = failed(p.rollout(&second).await);
    assert!(
        why.starts_with("Replica 3: The new container never became healthy"),
        "{why}"
    );
    assert!(
        why.ends_with("Last log lines:\nstuck on copy three"),
        "{why}"
    );
    for r in 0..3 {
        let c = p.replica("web", &second, r).await;
        assert_eq!(p.engine.state_of(&c), None, "{c} is gone");
    }
    assert_eq!(p.serving("web").await, Some(first.id));
    for c in &names {
        assert_eq!(p.engine.state_of(c), Some(ContainerState::Running), "{c}");
    }

    // A copy removed by hand: a recreate makes that one only.
    p.remove_container(&names[1]).await;
    let before = p.engine.history().0.len();
    assert_eq!(
        recreate(&p.pier, &p.routing, first.id).await.unwrap(),
        Outcome::Live
    );
    let created = p.engine.history().0;
    assert_eq!(&created[before..], std::slice::from_ref(&names[1]));
    // Nothing missing: nothing made.
    assert_eq!(
        recreate(&p.pier, &p.routing, first.id).await.unwrap(),
        Outcome::Live
    );
    assert_eq!(p.engine.history().0.len(), before + 1);
}

#[tokio::test]
async fn a_network_removed_under_a_rollout_is_made_again_by_the_retry() {
    // The planner removed the tenant's network with their last app just as this one was made.
    let p = panel(5).await;
    let gone = || RuntimeError::Failed("network pier-x-t1 not found".into());
    // Gone once: made again, and the run goes on.
    let first = p.create(input("web", "web:1")).await;
    p.engine.fail_next("create", gone());
    assert_eq!(p.rollout(&first).await, Outcome::Live);
    // Gone for longer than the run waits: retried later, not failed.
    let second = p.update(input("web", "web:2")).await;
    for _ in 0..=super::NETWORK_RETRIES {
        p.engine.fail_next("create", gone());
    }
    assert!(
        rollout(&p.pier, &p.routing, second.id).await.is_err(),
        "retried, not failed"
    );
    assert!(p.deployment(second.id).await.status.in_progress());
    assert_eq!(p.rollout(&second).await, Outcome::Live);
}

#[tokio::test]
async fn a_container_that_never_answers_fails_and_is_removed() {
    let p = panel(1).await;
    p.engine
        .behave("web:2", Behaviour::Silent, &["listening on 9999"]);
    let first = p.create(input("web", "web:1")).await;
    assert_eq!(p.rollout(&first).await, Outcome::Live);

    let second = p.update(input("web", "web:2")).await;
    let why = failed(p.rollout(&second).await);
    assert!(
        why.starts_with("The new container never became healthy: it did not answer HTTP on port 8080 within 1 s (last: connection failed"),
        "{why}"
    );
    assert!(
        why.contains("The previous deployment keeps serving."),
        "{why}"
    );
    assert!(why.ends_with("Last log lines:\nlistening on 9999"), "{why}");
    let d = p.deployment(second.id).await;
    assert_eq!(d.status, DeployStatus::Failed);
    assert_eq!(d.error.as_deref(), Some(why.as_str()));
    assert_eq!(p.serving("web").await, Some(first.id));
    let c = p.container("web", &second).await;
    assert_eq!(p.engine.state_of(&c), None, "the failed container is gone");
    assert!(p.engine.history().1.contains(&c));

    // A first deployment has nothing that keeps serving, and does not say so.
    p.engine.behave("solo:1", Behaviour::Silent, &[]);
    let solo = p.create(input("solo", "solo:1")).await;
    let why = failed(p.rollout(&solo).await);
    assert!(why.contains("never became healthy"), "{why}");
    assert!(!why.contains("keeps serving"), "{why}");
    assert_eq!(p.serving("solo").await, None);
}

#[tokio::test]
async fn a_crash_loop_fails_at_once_with_its_last_lines() {
    // The wait would be a minute; a crash loop must not take it.
    let p = panel(60).await;
    p.engine.behave(
        "db:1",
        Behaviour::CrashLoop(1),
        &[
            "initdb: starting",
            "chown: changing ownership of '/data': Operation not permitted",
        ],
    );
    let started = std::time::Instant::now();
    let mut strict = input("db", "db:1");
    strict.1.capabilities = Some(CapProfile::Strict);
    let first = p.create(strict).await;
    let why = failed(p.rollout(&first).await);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        why.starts_with(
            "The container keeps crashing while starting (restarts so far: 1); the last time it exited with code 1."
        ),
        "{why}"
    );
    assert!(why.contains("the CHOWN capability"), "{why}");
    assert!(
        why.ends_with("Last log lines:\ninitdb: starting\nchown: changing ownership of '/data': Operation not permitted"),
        "{why}"
    );
    assert!(!why.contains("never became healthy"), "{why}");
    assert!(!why.contains("keeps serving"), "{why}");
    assert_eq!(p.deployment(first.id).await.status, DeployStatus::Failed);

    // Caught running just after a restart: the restart count gives it away.
    p.engine.behave(
        "flaky:1",
        Behaviour::Flapping(3),
        &["panic: no DATABASE_URL"],
    );
    let started = std::time::Instant::now();
    let flaky = p.create(input("flaky", "flaky:1")).await;
    let why = failed(p.rollout(&flaky).await);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        why.starts_with(
            "The container keeps crashing while starting (restarts so far: 1); the last time it exited with code 3."
        ),
        "{why}"
    );
    assert!(
        why.ends_with("Last log lines:\npanic: no DATABASE_URL"),
        "{why}"
    );
}

#[tokio::test]
async fn a_newer_deployment_cancels_one_still_starting() {
    let p = panel(30).await;
    p.engine.behave("web:2", Behaviour::Silent, &[]);
    let first = p.create(input("web", "web:1")).await;
    assert_eq!(p.rollout(&first).await, Outcome::Live);
    let second = p.update(input("web", "web:2")).await;
    let waiting = tokio::spawn({
        let (pier, routing, id) = (p.pier.clone(), p.routing.clone(), second.id);
        async move { rollout(&pier, &routing, id).await.unwrap() }
    });
    let c2 = p.container("web", &second).await;
    for _ in 0..100 {
        if p.engine.state_of(&c2) == Some(ContainerState::Running) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(p.engine.state_of(&c2), Some(ContainerState::Running));
    let started = std::time::Instant::now();
    let third = p.update(input("web", "web:3")).await;
    let outcome = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the cancelled rollout stopped waiting")
        .unwrap();
    assert_eq!(outcome, Outcome::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        p.deployment(second.id).await.status,
        DeployStatus::Cancelled
    );
    assert_eq!(p.engine.state_of(&c2), None, "its container is gone");
    assert_eq!(p.serving("web").await, Some(first.id));
    assert_eq!(p.rollout(&third).await, Outcome::Live);
    assert_eq!(p.serving("web").await, Some(third.id));
}

#[tokio::test]
async fn cpu_limits_settle_once_containers_answer_and_after_a_recreate() {
    let p = panel(5).await;
    let mut two = input("web", "web:1");
    two.1.replicas = Some(2);
    two.1.cpus_milli = Some(250);
    let first = p.create(two).await;
    let copies = [
        p.replica("web", &first, 0).await,
        p.replica("web", &first, 1).await,
    ];
    // The engine did not answer the settling: the run is retried, not failed, and the retry
    // adopts both copies and settles them.
    p.rollout_interrupted_at(&first, "settle_cpu").await;
    assert_eq!(p.rollout(&first).await, Outcome::Live);
    for c in &copies {
        assert_eq!(p.engine.cpu_settled(c), Some(250_000_000), "{c}");
    }
    assert_eq!(
        p.engine.history().0.len(),
        2,
        "made once, adopted on the retry"
    );

    // A copy made again by a recreate settles too.
    p.remove_container(&copies[1]).await;
    assert_eq!(p.engine.cpu_settled(&copies[1]), None);
    assert_eq!(
        recreate(&p.pier, &p.routing, first.id).await.unwrap(),
        Outcome::Live
    );
    assert_eq!(p.engine.cpu_settled(&copies[1]), Some(250_000_000));

    // A refusal leaves the start form (the same average share) and the deployment serves.
    let second = p.update(input("web", "web:2")).await;
    p.engine
        .fail_next("settle_cpu", RuntimeError::Failed("no such cgroup".into()));
    assert_eq!(p.rollout(&second).await, Outcome::Live);
    assert_eq!(p.serving("web").await, Some(second.id));
}

#[tokio::test]
async fn an_engine_that_stops_answering_is_retried_and_the_container_adopted() {
    let p = panel(5).await;
    let first = p.create(input("web", "web:1")).await;
    // Nothing failed: the deployment waits for the retry, its container stays.
    p.rollout_interrupted_at(&first, "start").await;
    let c = p.container("web", &first).await;
    assert_eq!(p.engine.state_of(&c), Some(ContainerState::Created));

    assert_eq!(p.rollout(&first).await, Outcome::Live);
    assert_eq!(p.engine.state_of(&c), Some(ContainerState::Running));
    let (created, removed) = p.engine.history();
    assert_eq!(created, vec![c.clone()], "made once, adopted on the retry");
    assert!(removed.is_empty());

    // A refusal is no reason to retry: the deployment fails with the engine's words.
    let second = p.update(input("web", "web:2")).await;
    p.engine
        .fail_next("pull", RuntimeError::Failed("manifest unknown".into()));
    let why = failed(p.rollout(&second).await);
    assert_eq!(
        why,
        "Pulling registry.example/web:2 failed: manifest unknown. Check the image name and tag."
    );
    assert_eq!(p.serving("web").await, Some(first.id));
}

#[tokio::test]
async fn volume_apps_stop_first_and_get_the_old_container_back_on_failure() {
    let p = panel(1).await;
    let with_volume = |image: &str| {
        let (name, spec) = input("db", image);
        let spec = AppSpec {
            volumes: Some(vec![VolumeInput {
                name: "data".into(),
                path: "/data".into(),
                size_mb: Some(64),
            }]),
            ..spec
        };
        (name, spec)
    };
    let first = p.create(with_volume("db:1")).await;
    assert_eq!(p.rollout(&first).await, Outcome::Live);
    let c1 = p.container("db", &first).await;

    // A new version that never answers: the old container was stopped for it, and runs again.
    p.engine.behave("db:2", Behaviour::Silent, &[]);
    let second = p.update(with_volume("db:2")).await;
    let why = failed(p.rollout(&second).await);
    assert!(why.contains("keeps serving"), "{why}");
    assert_eq!(p.engine.state_of(&c1), Some(ContainerState::Running));
    assert_eq!(p.serving("db").await, Some(first.id));

    // One that answers: the old container is stopped before it starts (never two on one
    // volume), and the gap is recorded.
    let third = p.update(with_volume("db:3")).await;
    assert_eq!(p.rollout(&third).await, Outcome::Live);
    assert_eq!(p.engine.state_of(&c1), Some(ContainerState::Exited));
    assert!(p.deployment(third.id).await.gap_ms.is_some());
    assert_eq!(p.serving("db").await, Some(third.id));
}

#[tokio::test]
async fn a_recreate_brings_back_the_serving_container_or_says_why_not() {
    let p = panel(5).await;
    let first = p.create(input("web", "web:1")).await;
    assert_eq!(p.rollout(&first).await, Outcome::Live);
    let c = p.container("web", &first).await;
    let id = p
        .engine
        .containers(&p.pier.instance_id().await.unwrap())
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.name == c)
        .unwrap()
        .id;
    p.engine.remove(&id).await.unwrap();

    p.engine.fail_next(
        "start",
        RuntimeError::Failed("no space left on device".into()),
    );
    let why = failed(recreate(&p.pier, &p.routing, first.id).await.unwrap());
    assert_eq!(why, "The container did not start: no space left on device");
    let app = p.pier.own_app(&p.actor, "web").await.unwrap();
    assert_eq!(app.last_error.as_deref(), Some(why.as_str()));
    // The deployment still serves (its container is what failed).
    assert_eq!(p.deployment(first.id).await.status, DeployStatus::Running);
    assert_eq!(
        p.engine.state_of(&c),
        None,
        "the half-made container is gone"
    );

    assert_eq!(
        recreate(&p.pier, &p.routing, first.id).await.unwrap(),
        Outcome::Live
    );
    assert_eq!(p.engine.state_of(&c), Some(ContainerState::Running));
    let app = p.pier.own_app(&p.actor, "web").await.unwrap();
    assert_eq!(app.last_error, None);
}

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
