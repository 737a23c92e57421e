//! The machines of a Docker Swarm, as the admin sees and steers them. Pier runs on a manager;
//! on a single engine there is no Swarm and nothing here to steer.

use std::collections::HashMap;

use crate::{
    audit::{Action, Change},
    model::Actor,
    notify::Event,
    runtime::{Cluster, Node, NodeAvailability, NodeState, RuntimeError},
    Error, Pier, Result,
};

impl Pier {
    /// The Swarm this panel's engine manages; None on a single engine (admins only).
    pub async fn cluster(&self, actor: &Actor) -> Result<Option<Cluster>> {
        Self::require_admin(actor)?;
        self.runtime().cluster().await.map_err(cluster_error)
    }

    /// Lets a machine take tasks (`Active`), keep only the ones it has (`Pause`), or hand them
    /// all to the others (`Drain`, before maintenance). The last machine taking tasks cannot be
    /// paused or drained: no app could run anywhere.
    pub async fn set_node_availability(
        &self,
        actor: &Actor,
        node: &str,
        availability: NodeAvailability,
    ) -> Result<Node> {
        // An id is 25 lowercase letters and digits; anything else names no node.
        let known = !node.is_empty()
            && node.len() <= 64
            && node
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let object = if known { node } else { "(not a node id)" };
        let what = Change::new(Action::NodeAvailability, object)
            .summary(format!("set to {}", availability.as_str()));
        self.audited(actor, what, async {
            Self::require_admin(actor)?;
            if !known {
                return Err(Error::NotFound);
            }
            let cluster = self
                .runtime()
                .cluster()
                .await
                .map_err(cluster_error)?
                .ok_or(Error::NotFound)?;
            let this = cluster
                .nodes
                .iter()
                .find(|n| n.id == node)
                .ok_or(Error::NotFound)?;
            let others_take_tasks = cluster.nodes.iter().any(|n| {
                n.id != node
                    && n.availability == NodeAvailability::Active
                    && n.state == NodeState::Ready
            });
            if availability != NodeAvailability::Active && !others_take_tasks {
                return Err(Error::Conflict(format!(
                    "{} is the only machine that takes tasks: activate another before you {} it.",
                    this.hostname,
                    if availability == NodeAvailability::Drain {
                        "drain"
                    } else {
                        "pause"
                    }
                )));
            }
            self.runtime()
                .set_node_availability(node, availability)
                .await
                .map_err(cluster_error)?;
            tracing::info!(node, hostname = %this.hostname, availability = availability.as_str(), "node availability set");
            let mut changed = this.clone();
            changed.availability = availability;
            Ok(changed)
        })
        .await
    }
}

/// What changed since the last look at the machines: those newly down (or disconnected), and
/// those back. `down` holds the machines seen down, with since when, and is kept up to date; a
/// machine taken out of the Swarm is forgotten without a word.
pub fn node_events(down: &mut HashMap<String, i64>, nodes: &[Node], now: i64) -> Vec<Event> {
    let mut events = Vec::new();
    for n in nodes {
        let is_down = matches!(n.state, NodeState::Down | NodeState::Disconnected);
        match (is_down, down.get(&n.id).copied()) {
            (true, None) => {
                down.insert(n.id.clone(), now);
                events.push(Event::NodeDown {
                    node: n.id.clone(),
                    hostname: n.hostname.clone(),
                    address: n.address.clone(),
                    since: now,
                    message: n.message.clone(),
                });
            }
            (false, Some(since)) if n.state == NodeState::Ready => {
                down.remove(&n.id);
                events.push(Event::NodeBack {
                    node: n.id.clone(),
                    hostname: n.hostname.clone(),
                    address: n.address.clone(),
                    down_since: since,
                });
            }
            _ => {}
        }
    }
    down.retain(|id, _| nodes.iter().any(|n| &n.id == id));
    events
}

/// As the apps' engine errors (`apps::engine_error`), except that the Swarm's refusals say so and
/// a missing object is a missing node.
fn cluster_error(e: RuntimeError) -> Error {
    match e {
        RuntimeError::NotFound => Error::NotFound,
        RuntimeError::Conflict(m) | RuntimeError::Failed(m) => {
            tracing::warn!(error = %m, "the Swarm refused");
            Error::Conflict(format!("The Swarm refused: {m}"))
        }
        e => crate::apps::engine_error(e),
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        fake_runtime::FakeRuntime,
        runtime::{Cluster, Node, NodeAvailability, NodeRole, NodeState},
        testkit::panel_with_user,
        Error,
    };

    fn node(id: &str, host: &str, state: NodeState, availability: NodeAvailability) -> Node {
        Node {
            id: id.into(),
            hostname: host.into(),
            address: "10.0.0.1".into(),
            role: NodeRole::Worker,
            leader: false,
            state,
            message: String::new(),
            availability,
            cpus_milli: 2000,
            memory_bytes: 1 << 30,
            tasks: 0,
            engine_version: "20.10".into(),
        }
    }

    #[test]
    fn a_machine_down_is_told_once_and_again_when_it_is_back() {
        use std::collections::HashMap;

        use super::node_events;
        use crate::notify::Event;

        let mut down = HashMap::new();
        let up = |id, host| node(id, host, NodeState::Ready, NodeAvailability::Active);
        let mut gone = node("bbb", "two", NodeState::Down, NodeAvailability::Active);
        gone.message = "heartbeat failure".into();
        assert!(node_events(&mut down, &[up("aaa", "one"), up("bbb", "two")], 10).is_empty());
        let e = node_events(&mut down, &[up("aaa", "one"), gone.clone()], 20);
        assert_eq!(e.len(), 1);
        assert!(
            matches!(&e[0], Event::NodeDown { hostname, since: 20, message, .. }
            if hostname == "two" && message == "heartbeat failure")
        );
        assert!(e[0].body().contains("heartbeat failure"), "{}", e[0].body());
        // Still down, or between states: nothing new.
        assert!(node_events(&mut down, &[up("aaa", "one"), gone.clone()], 30).is_empty());
        let unknown = node("bbb", "two", NodeState::Unknown, NodeAvailability::Active);
        assert!(node_events(&mut down, &[up("aaa", "one"), unknown], 35).is_empty());
        let e = node_events(&mut down, &[up("aaa", "one"), up("bbb", "two")], 40);
        assert_eq!(e.len(), 1);
        assert!(
            matches!(&e[0], Event::NodeBack { down_since: 20, .. }),
            "{e:?}"
        );
        assert_eq!(e[0].kind(), "node.back");
        // Down again: a new occurrence (a new key).
        let again = node_events(&mut down, &[gone.clone()], 50);
        assert_ne!(again[0].dedupe_key(), format!("node.down:bbb:20"));
        // Removed from the Swarm while down: forgotten, no word.
        assert!(node_events(&mut down, &[up("aaa", "one")], 60).is_empty());
        assert!(down.is_empty());
    }

    #[tokio::test]
    async fn only_admins_steer_machines_and_one_always_takes_tasks() {
        let engine = FakeRuntime::new();
        let (pier, admin, _dir) =
            panel_with_user(engine.clone(), "admin", Default::default()).await;
        // A single engine: nothing to list, no node to find.
        assert_eq!(pier.cluster(&admin).await.unwrap(), None);
        let r = pier
            .set_node_availability(&admin, "aaaaaaaaaaaaaaaaaaaaaaaaa", NodeAvailability::Drain)
            .await;
        assert!(matches!(r, Err(Error::NotFound)), "{r:?}");

        engine.set_cluster(Some(Cluster {
            nodes: vec![
                node("aaa", "one", NodeState::Ready, NodeAvailability::Active),
                node("bbb", "two", NodeState::Ready, NodeAvailability::Active),
                // Down: its "active" takes no tasks.
                node("ccc", "three", NodeState::Down, NodeAvailability::Active),
            ],
            join_command: "docker swarm join --token T 10.0.0.1:2377".into(),
        }));
        let mut member = admin.clone();
        member.role = crate::model::Role::Member;
        assert!(matches!(pier.cluster(&member).await, Err(Error::Forbidden)));
        assert!(matches!(
            pier.set_node_availability(&member, "aaa", NodeAvailability::Drain)
                .await,
            Err(Error::Forbidden)
        ));
        // Ids outside the grammar are no node (and reach no engine).
        for bad in ["", "AAA", "a/b", "a b", &"a".repeat(65)] {
            let r = pier
                .set_node_availability(&admin, bad, NodeAvailability::Drain)
                .await;
            assert!(matches!(r, Err(Error::NotFound)), "{bad}: {r:?}");
        }

        let drained = pier
            .set_node_availability(&admin, "aaa", NodeAvailability::Drain)
            .await
            .unwrap();
        assert_eq!(drained.availability, NodeAvailability::Drain);
        // "two" is the last ready machine taking tasks: neither drained nor paused.
        for to in [NodeAvailability::Drain, NodeAvailability::Pause] {
            let r = pier.set_node_availability(&admin, "bbb", to).await;
            match r {
                Err(Error::Conflict(m)) => {
                    assert!(
                        m.starts_with("two is the only machine that takes tasks"),
                        "{m}"
                    )
                }
                other => panic!("{other:?}"),
            }
        }
        // Activating is always fine; then "two" may go.
        pier.set_node_availability(&admin, "aaa", NodeAvailability::Active)
            .await
            .unwrap();
        pier.set_node_availability(&admin, "bbb", NodeAvailability::Pause)
            .await
            .unwrap();
        let now = pier.cluster(&admin).await.unwrap().unwrap();
        let of = |id: &str| now.nodes.iter().find(|n| n.id == id).unwrap().availability;
        assert_eq!(of("aaa"), NodeAvailability::Active);
        assert_eq!(of("bbb"), NodeAvailability::Pause);
    }
}
