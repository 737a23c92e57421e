//! The pure half of the reconciler: given what the database wants and what the engine has,
//! the list of steps that make them match. No I/O, so every rule has a unit test.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::SocketAddr,
};

use pier_core::runtime::{Container, ContainerState, Network, VolumeInfo};

use crate::proxy::RouteTable;

/// One app as the database wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub app_id: i64,
    pub tenant: i64,
    pub running: bool,
    /// The deployment that serves.
    pub current: Option<i64>,
    /// How many copies of it run (1 for apps from before replicas).
    pub replicas: i64,
    /// The deployment being rolled out.
    pub target: Option<i64>,
    /// A backup or restore has the app's container: nothing is started, stopped, replaced or
    /// removed until it lets go.
    pub held: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Pull, create, start, wait until healthy, then make it current.
    Rollout {
        app_id: i64,
        deployment_id: i64,
    },
    /// The serving deployment lacks a container (or, with replicas, some): create and start
    /// the missing ones again.
    Recreate {
        app_id: i64,
        deployment_id: i64,
    },
    Start {
        app_id: i64,
        container: String,
    },
    Stop {
        app_id: i64,
        container: String,
    },
    Remove {
        container: String,
        why: &'static str,
    },
    RemoveNetwork {
        name: String,
    },
    /// A volume whose row is gone (its app was deleted with its data, or the tenant deleted
    /// it): the engine's volume and the data go.
    RemoveVolume {
        name: String,
    },
}

/// Volumes to remove: this installation's volumes, as the engine lists them or as data on disk
/// (`stored`, every installation's), whose name is not among the `wanted` (those with a row).
/// The engine's list and the disk must be read before the database, so that a volume made
/// meanwhile always has its row in the read.
pub fn volumes(
    instance: &str,
    wanted: &HashSet<String>,
    listed: &[VolumeInfo],
    stored: &[String],
) -> Vec<Step> {
    let prefix = format!("pier-{instance}-v");
    let mut gone: Vec<String> = listed
        .iter()
        .map(|v| v.name.clone())
        .chain(stored.iter().cloned())
        .filter(|n| {
            n.strip_prefix(&prefix)
                .is_some_and(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()))
        })
        .filter(|n| !wanted.contains(n))
        .collect();
    gone.sort();
    gone.dedup();
    gone.into_iter()
        .map(|name| Step::RemoveVolume { name })
        .collect()
}

/// `busy`: deployments whose rollout is running right now; their containers are left alone.
pub fn plan(
    wants: &[Want],
    containers: &[Container],
    networks: &[Network],
    busy: &HashSet<i64>,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let by_app: HashMap<i64, &Want> = wants.iter().map(|w| (w.app_id, w)).collect();

    // Containers of each (app, deployment, replica) we keep; everything else goes.
    let mut kept: HashMap<(i64, i64, i64), &Container> = HashMap::new();
    let mut sorted: Vec<&Container> = containers.iter().collect();
    // Running first, then newest: when there are duplicates, that is the one kept.
    sorted.sort_by_key(|c| (!c.running(), -c.created));
    for c in sorted {
        let (Some(app_id), Some(dep)) = (c.app_id(), c.deployment_id()) else {
            steps.push(Step::Remove {
                container: c.id.clone(),
                why: "unlabelled",
            });
            continue;
        };
        if busy.contains(&dep) {
            continue;
        }
        // A dead container cannot be started again: it goes, and is recreated if still wanted.
        if c.state == ContainerState::Dead {
            steps.push(Step::Remove {
                container: c.id.clone(),
                why: "dead",
            });
            continue;
        }
        let Some(w) = by_app.get(&app_id) else {
            steps.push(Step::Remove {
                container: c.id.clone(),
                why: "app deleted",
            });
            continue;
        };
        if w.held {
            continue;
        }
        let wanted = Some(dep) == w.current || (w.running && Some(dep) == w.target);
        if !wanted {
            steps.push(Step::Remove {
                container: c.id.clone(),
                why: "old deployment",
            });
        } else if Some(dep) == w.current && c.replica() >= w.replicas.max(1) {
            steps.push(Step::Remove {
                container: c.id.clone(),
                why: "replica beyond the deployment's count",
            });
        } else {
            match kept.entry((app_id, dep, c.replica())) {
                std::collections::hash_map::Entry::Occupied(_) => steps.push(Step::Remove {
                    container: c.id.clone(),
                    why: "duplicate",
                }),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(c);
                }
            }
        }
    }

    for w in wants.iter().filter(|w| !w.held) {
        if w.running {
            if let Some(t) = w.target.filter(|t| !busy.contains(t)) {
                steps.push(Step::Rollout {
                    app_id: w.app_id,
                    deployment_id: t,
                });
            }
            if let Some(cur) = w.current.filter(|c| !busy.contains(c)) {
                let mut missing = false;
                for r in 0..w.replicas.max(1) {
                    match kept.get(&(w.app_id, cur, r)) {
                        None => missing = true,
                        // Docker's restart policy revives crashes; a container that is merely
                        // exited (stopped by hand, or the engine restarted) is started again.
                        Some(c)
                            if matches!(
                                c.state,
                                ContainerState::Exited | ContainerState::Created
                            ) =>
                        {
                            steps.push(Step::Start {
                                app_id: w.app_id,
                                container: c.id.clone(),
                            })
                        }
                        Some(_) => {}
                    }
                }
                // One run makes every missing copy.
                if missing {
                    steps.push(Step::Recreate {
                        app_id: w.app_id,
                        deployment_id: cur,
                    });
                }
            }
        } else if let Some(cur) = w.current {
            for r in 0..w.replicas.max(1) {
                if let Some(c) = kept.get(&(w.app_id, cur, r)) {
                    if c.running() || c.state == ContainerState::Restarting {
                        steps.push(Step::Stop {
                            app_id: w.app_id,
                            container: c.id.clone(),
                        });
                    }
                }
            }
        }
    }

    // A tenant's network goes with their last app.
    let tenants: HashSet<i64> = wants.iter().map(|w| w.tenant).collect();
    for n in networks {
        if n.tenant.is_none_or(|t| !tenants.contains(&t)) {
            steps.push(Step::RemoveNetwork {
                name: n.name.clone(),
            });
        }
    }
    steps
}

/// One app as routing sees it: its host names and the deployment that should serve them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub app_id: i64,
    pub running: bool,
    pub current: Option<i64>,
    /// How many copies the app runs (wanted): several are balanced with retries.
    pub replicas: i64,
    pub hosts: Vec<String>,
}

/// What HAProxy should route: every web app gets a backend (adding one needs a reload, so it
/// stays while the app is stopped), with the loopback ports of its serving deployment's running
/// containers. A host goes to its app only while the app has an address: one whose app is
/// stopped, still deploying its first version or whose container is down is left out (HAProxy
/// answers it with its "no site" page).
pub fn routes(apps: &[Served], containers: &[Container]) -> RouteTable {
    let mut ports: HashMap<(i64, i64), BTreeSet<SocketAddr>> = HashMap::new();
    for c in containers
        .iter()
        // A paused container (a backup is reading its files) keeps its routes: requests wait
        // for it instead of failing.
        .filter(|c| c.running() || c.state == ContainerState::Paused)
    {
        if let (Some(app), Some(d), Some(addr)) = (c.app_id(), c.deployment_id(), c.endpoint()) {
            ports.entry((app, d)).or_default().insert(addr);
        }
    }
    let mut out = RouteTable::default();
    for a in apps {
        let addrs = match a.current.filter(|_| a.running) {
            Some(d) => ports.remove(&(a.app_id, d)).unwrap_or_default(),
            None => BTreeSet::new(),
        };
        if !addrs.is_empty() {
            for h in &a.hosts {
                out.hosts.insert(h.clone(), a.app_id);
            }
        }
        out.backends.insert(a.app_id, addrs);
        if a.replicas > 1 {
            out.spread.insert(a.app_id);
        }
    }
    out
}

/// The image references Pier pulled that no kept deployment needs (`kept`: their image as
/// typed and the digest it resolved to), leaving alone any pulled since `grace_from` (a
/// rollout may be between its pull and its container).
pub fn images(
    pulled: &[(String, i64)],
    kept: &[(String, Option<String>)],
    grace_from: i64,
) -> Vec<String> {
    let mut keep = HashSet::new();
    for (image, digest) in kept {
        let Ok(r) = pier_core::validate::image(image) else {
            continue;
        };
        keep.insert(r.local());
        if let Some(d) = digest {
            keep.insert(r.pinned(d).local());
        }
    }
    pulled
        .iter()
        .filter(|(reference, at)| *at < grace_from && !keep.contains(reference))
        .map(|(reference, _)| reference.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn images_no_kept_deployment_needs_are_collected() {
        let d = "sha256:".to_owned() + &"a".repeat(64);
        let e = "sha256:".to_owned() + &"b".repeat(64);
        let pulled = vec![
            ("r.example/app:1".to_owned(), 10),
            (format!("r.example/app@{d}"), 10),
            ("r.example/app:2".to_owned(), 10),
            (format!("r.example/app@{e}"), 10),
            ("r.example/other:latest".to_owned(), 10),
            ("r.example/new:1".to_owned(), 100),
        ];
        // Kept: app:2 (resolved to e) and other (as typed, no tag).
        let kept = vec![
            ("r.example/app:2".to_owned(), Some(e.clone())),
            ("r.example/other".to_owned(), None),
        ];
        assert_eq!(
            images(&pulled, &kept, 50),
            vec!["r.example/app:1".to_owned(), format!("r.example/app@{d}")]
        );
        // A rollback pins #1's digest: kept again under that reference.
        let kept = vec![("r.example/app:1".to_owned(), Some(d.clone()))];
        let gone = images(&pulled, &kept, 50);
        assert!(!gone.contains(&format!("r.example/app@{d}")));
        assert!(!gone.contains(&"r.example/app:1".to_owned()));
        // Pulled within the grace period: never.
        assert!(!gone.contains(&"r.example/new:1".to_owned()));
    }
    use pier_core::runtime::{LABEL_APP, LABEL_DEPLOYMENT, LABEL_TENANT};

    #[test]
    fn volumes_without_a_row_go_and_only_ours() {
        let wanted: HashSet<String> = ["pier-aa-v1".to_string()].into();
        let listed = vec![
            VolumeInfo {
                name: "pier-aa-v1".into(),
                id: Some(1),
            },
            VolumeInfo {
                name: "pier-aa-v2".into(),
                id: Some(2),
            },
        ];
        // On disk: a leftover of ours with no engine volume, another installation's, junk.
        let stored = vec![
            "pier-aa-v3".to_string(),
            "pier-bb-v9".to_string(),
            "pier-aa-v1".to_string(),
            "pier-aa-vx".to_string(),
            "pier-aa-v2".to_string(),
        ];
        assert_eq!(
            volumes("aa", &wanted, &listed, &stored),
            vec![
                Step::RemoveVolume {
                    name: "pier-aa-v2".into()
                },
                Step::RemoveVolume {
                    name: "pier-aa-v3".into()
                },
            ]
        );
        assert!(volumes("aa", &wanted, &listed[..1], &[]).is_empty());
    }

    fn c(id: &str, app: i64, dep: i64, state: &str, created: i64) -> Container {
        Container {
            id: id.into(),
            name: id.into(),
            labels: HashMap::from([
                (LABEL_TENANT.to_string(), "1".to_string()),
                (LABEL_APP.to_string(), app.to_string()),
                (LABEL_DEPLOYMENT.to_string(), dep.to_string()),
            ]),
            state: ContainerState::from_docker(state),
            host_port: Some(40000),
            host: None,
            ip: None,
            created,
        }
    }

    fn want(app: i64, running: bool, current: Option<i64>, target: Option<i64>) -> Want {
        Want {
            app_id: app,
            tenant: 1,
            running,
            current,
            replicas: 1,
            target,
            held: false,
        }
    }

    fn replica(mut c: Container, r: i64) -> Container {
        c.labels
            .insert(pier_core::runtime::LABEL_REPLICA.into(), r.to_string());
        c
    }

    #[test]
    fn every_replica_runs_and_one_run_makes_the_missing_ones() {
        let mut w = want(1, true, Some(10), None);
        w.replicas = 3;
        // Copy 0 runs (no label, as before replicas), copy 1 exited, copy 2 missing.
        let actual = [
            c("r0", 1, 10, "running", 1),
            replica(c("r1", 1, 10, "exited", 1), 1),
        ];
        let steps = plan(std::slice::from_ref(&w), &actual, &[], &none());
        assert_eq!(
            steps,
            vec![
                Step::Start {
                    app_id: 1,
                    container: "r1".into()
                },
                Step::Recreate {
                    app_id: 1,
                    deployment_id: 10
                }
            ]
        );
        // All three: nothing to do. A fourth copy (from a larger count) goes.
        let mut all = vec![
            c("r0", 1, 10, "running", 1),
            replica(c("r1", 1, 10, "running", 1), 1),
            replica(c("r2", 1, 10, "running", 1), 2),
        ];
        assert!(plan(std::slice::from_ref(&w), &all, &[], &none()).is_empty());
        all.push(replica(c("r3", 1, 10, "running", 1), 3));
        assert_eq!(
            plan(std::slice::from_ref(&w), &all, &[], &none()),
            vec![Step::Remove {
                container: "r3".into(),
                why: "replica beyond the deployment's count"
            }]
        );
        // Two containers of one copy: the running one stays.
        let dup = [
            c("r0", 1, 10, "running", 1),
            c("r0b", 1, 10, "exited", 2),
            replica(c("r1", 1, 10, "running", 1), 1),
            replica(c("r2", 1, 10, "running", 1), 2),
        ];
        assert_eq!(
            plan(std::slice::from_ref(&w), &dup, &[], &none()),
            vec![Step::Remove {
                container: "r0b".into(),
                why: "duplicate"
            }]
        );
        // Stopped: every running copy is stopped.
        w.running = false;
        let steps = plan(std::slice::from_ref(&w), &all[..3], &[], &none());
        assert_eq!(
            steps
                .iter()
                .filter(|s| matches!(s, Step::Stop { .. }))
                .count(),
            3,
            "{steps:?}"
        );
    }

    #[test]
    fn every_running_replica_is_routed() {
        let mut a = c("a", 1, 10, "running", 1);
        a.host_port = Some(40001);
        let mut b = replica(c("b", 1, 10, "running", 1), 1);
        b.host_port = Some(40002);
        let mut down = replica(c("x", 1, 10, "exited", 1), 2);
        down.host_port = Some(40003);
        let served = Served {
            app_id: 1,
            running: true,
            current: Some(10),
            replicas: 3,
            hosts: vec!["a.io".into()],
        };
        let r = routes(&[served], &[a, b, down]);
        assert_eq!(r.spread, BTreeSet::from([1]));
        assert_eq!(
            r.backends[&1],
            BTreeSet::from([
                SocketAddr::from(([127, 0, 0, 1], 40001)),
                SocketAddr::from(([127, 0, 0, 1], 40002))
            ])
        );
    }

    fn none() -> HashSet<i64> {
        HashSet::new()
    }

    #[test]
    fn in_sync_means_nothing_to_do() {
        let steps = plan(
            &[want(1, true, Some(10), None)],
            &[c("a", 1, 10, "running", 1)],
            &[],
            &none(),
        );
        assert!(steps.is_empty(), "{steps:?}");
    }

    #[test]
    fn a_held_app_is_left_alone_until_it_is_let_go() {
        // Stopped by a restore, a newer deployment waiting, an old container about: while held,
        // nothing is started, rolled out or removed.
        let mut w = want(1, true, Some(10), Some(11));
        w.held = true;
        let actual = [c("a", 1, 10, "exited", 2), c("old", 1, 9, "exited", 1)];
        assert_eq!(plan(&[w.clone()], &actual, &[], &none()), []);
        w.held = false;
        let steps = plan(&[w], &actual, &[], &none());
        assert!(steps.contains(&Step::Start {
            app_id: 1,
            container: "a".into()
        }));
        assert!(steps.contains(&Step::Rollout {
            app_id: 1,
            deployment_id: 11
        }));
        assert!(steps
            .iter()
            .any(|s| matches!(s, Step::Remove { container, .. } if container == "old")));
    }

    #[test]
    fn new_app_is_rolled_out() {
        let steps = plan(&[want(1, true, None, Some(10))], &[], &[], &none());
        assert_eq!(
            steps,
            [Step::Rollout {
                app_id: 1,
                deployment_id: 10
            }]
        );
    }

    #[test]
    fn a_busy_rollout_is_not_started_twice_and_its_container_is_left_alone() {
        let busy = HashSet::from([11]);
        let steps = plan(
            &[want(1, true, Some(10), Some(11))],
            &[c("old", 1, 10, "running", 1), c("new", 1, 11, "created", 2)],
            &[],
            &busy,
        );
        assert!(steps.is_empty(), "{steps:?}");
    }

    #[test]
    fn interrupted_rollout_resumes_and_keeps_its_container() {
        // Panel killed after creating the new container: the rollout runs again (and will
        // adopt the container), the old one keeps serving meanwhile.
        let steps = plan(
            &[want(1, true, Some(10), Some(11))],
            &[c("old", 1, 10, "running", 1), c("new", 1, 11, "created", 2)],
            &[],
            &none(),
        );
        assert_eq!(
            steps,
            [Step::Rollout {
                app_id: 1,
                deployment_id: 11
            }]
        );
    }

    #[test]
    fn superseded_and_orphaned_containers_are_removed() {
        let steps = plan(
            &[want(1, true, Some(11), None)],
            &[
                c("old", 1, 10, "running", 1),
                c("new", 1, 11, "running", 2),
                c("gone", 2, 20, "running", 1),
            ],
            &[],
            &none(),
        );
        assert!(steps.contains(&Step::Remove {
            container: "old".into(),
            why: "old deployment"
        }));
        assert!(steps.contains(&Step::Remove {
            container: "gone".into(),
            why: "app deleted"
        }));
        assert_eq!(steps.len(), 2);
    }

    #[test]
    fn duplicates_keep_the_running_one() {
        let steps = plan(
            &[want(1, true, Some(10), None)],
            &[c("x", 1, 10, "exited", 5), c("y", 1, 10, "running", 1)],
            &[],
            &none(),
        );
        assert_eq!(
            steps,
            [Step::Remove {
                container: "x".into(),
                why: "duplicate"
            }]
        );
    }

    #[test]
    fn missing_container_is_recreated_and_exited_one_started() {
        let steps = plan(
            &[want(1, true, Some(10), None), want(2, true, Some(20), None)],
            &[c("b", 2, 20, "exited", 1)],
            &[],
            &none(),
        );
        assert_eq!(
            steps,
            [
                Step::Recreate {
                    app_id: 1,
                    deployment_id: 10
                },
                Step::Start {
                    app_id: 2,
                    container: "b".into()
                }
            ]
        );
    }

    #[test]
    fn stopped_app_is_stopped_and_its_rollout_waits() {
        let steps = plan(
            &[want(1, false, Some(10), Some(11))],
            &[c("a", 1, 10, "running", 1), c("b", 1, 11, "created", 2)],
            &[],
            &none(),
        );
        assert!(steps.contains(&Step::Stop {
            app_id: 1,
            container: "a".into()
        }));
        assert!(steps.contains(&Step::Remove {
            container: "b".into(),
            why: "old deployment"
        }));
        assert_eq!(steps.len(), 2);
        // Already stopped: nothing more.
        let steps = plan(
            &[want(1, false, Some(10), None)],
            &[c("a", 1, 10, "exited", 1)],
            &[],
            &none(),
        );
        assert!(steps.is_empty());
    }

    #[test]
    fn a_dead_container_is_replaced() {
        let steps = plan(
            &[want(1, true, Some(10), None)],
            &[c("d", 1, 10, "dead", 1)],
            &[],
            &none(),
        );
        assert_eq!(
            steps,
            [
                Step::Remove {
                    container: "d".into(),
                    why: "dead"
                },
                Step::Recreate {
                    app_id: 1,
                    deployment_id: 10
                }
            ]
        );
    }

    #[test]
    fn networks_of_tenants_without_apps_are_removed() {
        let nets = [
            Network {
                name: "n1".into(),
                tenant: Some(1),
            },
            Network {
                name: "n2".into(),
                tenant: Some(2),
            },
        ];
        let steps = plan(
            &[want(1, true, Some(10), None)],
            &[c("a", 1, 10, "running", 1)],
            &nets,
            &none(),
        );
        assert_eq!(steps, [Step::RemoveNetwork { name: "n2".into() }]);
    }

    #[test]
    fn unlabelled_containers_of_this_instance_are_removed() {
        let mut odd = c("odd", 1, 10, "running", 1);
        odd.labels.remove(LABEL_DEPLOYMENT);
        let steps = plan(&[], &[odd], &[], &none());
        assert_eq!(
            steps,
            [Step::Remove {
                container: "odd".into(),
                why: "unlabelled"
            }]
        );
    }

    #[test]
    fn routes_go_to_the_serving_container_only() {
        let served = |app, running, current, hosts: &[&str]| Served {
            app_id: app,
            running,
            current,
            replicas: 1,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        };
        let mut old = c("old", 1, 10, "running", 1);
        old.host_port = Some(40010);
        let mut new = c("new", 1, 11, "running", 2);
        new.host_port = Some(40011);
        let mut down = c("down", 2, 20, "exited", 1);
        down.host_port = Some(40020);
        let containers = [old, new, down];
        let r = routes(
            &[
                served(1, true, Some(11), &["a.io", "a-x.pier.test"]),
                served(2, true, Some(20), &["b.io"]),
                served(3, false, Some(30), &["c.io"]),
                served(4, true, None, &["d.io"]),
            ],
            &containers,
        );
        let at = |port: u16| BTreeSet::from([SocketAddr::from(([127, 0, 0, 1], port))]);
        assert_eq!(
            r.hosts,
            BTreeMap::from([("a-x.pier.test".to_string(), 1), ("a.io".to_string(), 1)])
        );
        // Every app has its backend; only the serving deployment's running container is in it.
        assert_eq!(
            r.backends,
            BTreeMap::from([
                (1, at(40011)),
                (2, BTreeSet::new()),
                (3, BTreeSet::new()),
                (4, BTreeSet::new())
            ])
        );
        // Before the switch, the old deployment serves.
        let r = routes(&[served(1, true, Some(10), &["a.io"])], &containers);
        assert_eq!(r.backends[&1], at(40010));
        // Paused for a backup: still routed (requests wait); exited: not.
        let mut paused = c("p", 5, 50, "paused", 1);
        paused.host_port = Some(40050);
        let r = routes(&[served(5, true, Some(50), &["p.io"])], &[paused]);
        assert_eq!(r.hosts.get("p.io"), Some(&5));
        assert_eq!(r.backends[&5], at(40050));
    }
}
