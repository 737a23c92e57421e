//! Apps as Swarm services (`pier::engine::swarm::services`) on the real three-engine Swarm of
//! `scripts/swarm.sh up`: three replicas spread over the three machines, each answering on its
//! machine's address; a rolling update reaches every replica; an update that cannot start rolls
//! back by itself and says so, and the previous version keeps answering.

use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, Instant},
};

use bollard::{auth::DockerCredentials, Docker, API_DEFAULT_VERSION};
use pier::engine::swarm::services::{
    deploy, endpoints, ensure_overlay, remove, status, Endpoint, Order, Rollout, ServiceSpec,
};
use test_support::swarm::Swarm;

use crate::common::SWARM;

/// The service and network of one test, removed when dropped (also when the test fails).
struct Made {
    swarm: Swarm,
    service: String,
    network: String,
}

impl Drop for Made {
    fn drop(&mut self) {
        let _ = self
            .swarm
            .docker(&["service", "rm", &self.service])
            .output();
        // The network goes once the tasks have left it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let out = self
                .swarm
                .docker(&["network", "rm", &self.network])
                .output()
                .unwrap();
            if out.status.success() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Made {
    /// Swarm's table of the service's tasks, for a failure's message.
    fn tasks(&self) -> String {
        let format =
            "{{.Name}} {{.Image}} {{.Node}} {{.DesiredState}} {{.CurrentState}} {{.Error}}";
        self.swarm
            .docker(&["service", "ps", "--format", format, &self.service])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

/// One HTTP GET to a task's address (a harness namespace address): the body.
async fn get(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: t\r\n\r\n")
            .await
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        Some(
            out.split("\r\n\r\n")
                .nth(1)
                .unwrap_or_default()
                .trim()
                .to_owned(),
        )
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Waits (up to `secs`) until the rollout is what `done` accepts; the last status otherwise.
async fn until(
    docker: &Docker,
    name: &str,
    secs: u64,
    done: impl Fn(&Rollout, u64) -> bool,
) -> (Rollout, u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = status(docker, name).await.unwrap();
        if done(&s.rollout, s.running) || Instant::now() > deadline {
            return (s.rollout, s.running);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn replicas_spread_roll_forward_and_roll_back() {
    let _one = SWARM.lock().await;
    let swarm = Swarm::from_env();
    swarm.reactivate_all();
    let docker = Docker::connect_with_unix(swarm.socket(), 120, API_DEFAULT_VERSION).unwrap();
    let tag = format!("{:08x}", rand::random::<u32>());
    let made = Made {
        swarm: Swarm::from_env(),
        service: format!("pier-test-{tag}-a1"),
        network: format!("pier-test-{tag}-t1"),
    };
    let labels = HashMap::from([("pier.test".to_string(), "1".to_string())]);
    ensure_overlay(&docker, &made.network, &labels, false)
        .await
        .unwrap();
    // Made once: asking again finds it.
    ensure_overlay(&docker, &made.network, &labels, false)
        .await
        .unwrap();
    let auth = || {
        Some(DockerCredentials {
            username: std::env::var("PIER_TEST_REGISTRY_USER").ok(),
            password: std::env::var("PIER_TEST_REGISTRY_PASSWORD").ok(),
            serveraddress: Some(swarm.registry.clone()),
            ..Default::default()
        })
    };
    let mut spec = ServiceSpec {
        name: made.service.clone(),
        image: format!("{}/pier-test/hello:1", swarm.registry),
        env: vec!["GREETING=first".into()],
        labels: labels.clone(),
        port: 8080,
        replicas: 3,
        memory_bytes: 64 << 20,
        nano_cpus: 250_000_000,
        pids_limit: 64,
        // The image writes its greeting into its web root when it starts.
        read_only: false,
        cap_add: Vec::new(),
        network: made.network.clone(),
        alias: None,
        order: Order::StartFirst,
        node: None,
        mounts: Vec::new(),
    };

    // Three replicas, one on each machine, each answering on its machine's address.
    let t = Instant::now();
    deploy(&docker, &spec, auth()).await.unwrap();
    let (rollout, running) = until(&docker, &spec.name, 90, |r, n| {
        *r == Rollout::Done && n == 3
    })
    .await;
    assert_eq!((rollout, running), (Rollout::Done, 3));
    println!("3 replicas running after {:?}", t.elapsed());
    let answer_all = |eps: Vec<Endpoint>| async move {
        let mut bodies = BTreeSet::new();
        for e in &eps {
            bodies.insert(get(e.addr).await);
        }
        bodies
    };
    let eps = endpoints(&docker, &spec.name, spec.port).await.unwrap();
    assert_eq!(eps.len(), 3, "{eps:?}");
    let hosts: BTreeSet<String> = eps.iter().map(|e| e.addr.ip().to_string()).collect();
    let expected: BTreeSet<String> = swarm.addrs.iter().cloned().collect();
    assert_eq!(hosts, expected, "one replica per machine");
    assert_eq!(answer_all(eps).await, BTreeSet::from(["first".to_string()]));

    // A rolling update (start-first) reaches every replica.
    spec.env = vec!["GREETING=second".into()];
    let t = Instant::now();
    deploy(&docker, &spec, auth()).await.unwrap();
    // Swarm clears the update status when it takes the update: the three old tasks must not
    // pass for a finished rollout.
    let at_once = status(&docker, &spec.name).await.unwrap();
    assert_eq!(at_once.rollout, Rollout::Updating, "{at_once:?}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = status(&docker, &spec.name).await.unwrap();
        let eps = endpoints(&docker, &spec.name, spec.port).await.unwrap();
        if s.rollout == Rollout::Done
            && eps.len() == 3
            && answer_all(eps).await == BTreeSet::from(["second".to_string()])
        {
            break;
        }
        assert!(Instant::now() < deadline, "update never finished: {s:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("rolling update of 3 replicas done after {:?}", t.elapsed());

    // An update whose image does not exist: Swarm rolls it back, and says so.
    let good = spec.image.clone();
    spec.image = format!("{}/pier-test/no-such-image:1", swarm.registry);
    let t = Instant::now();
    deploy(&docker, &spec, auth()).await.unwrap();
    let (rollout, _) = until(&docker, &spec.name, 120, |r, _| {
        matches!(r, Rollout::RolledBack(_) | Rollout::Stuck(_))
    })
    .await;
    assert!(matches!(rollout, Rollout::RolledBack(_)), "{rollout:?}");
    println!("rolled back after {:?}: {rollout:?}", t.elapsed());
    let (rollout, running) = until(&docker, &spec.name, 60, |_, n| n == 3).await;
    assert_eq!(running, 3, "{rollout:?}\n{}", made.tasks());
    let eps = endpoints(&docker, &spec.name, spec.port).await.unwrap();
    assert_eq!(
        answer_all(eps).await,
        BTreeSet::from(["second".to_string()])
    );
    spec.image = good;

    remove(&docker, &spec.name).await.unwrap();
    // Removing what is gone is fine.
    remove(&docker, &spec.name).await.unwrap();
    drop(made);
}
