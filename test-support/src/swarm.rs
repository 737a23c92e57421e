//! The three-engine Docker Swarm of `scripts/swarm.sh up`, as the tests that use it see it: where
//! its manager and nodes are, and the manager's `docker` command line.

use std::process::Command;

pub struct Swarm {
    /// The manager's engine, `unix://…`.
    pub manager: String,
    /// The nodes' addresses, node 1 (the manager) first.
    pub addrs: Vec<String>,
    /// The registry the nodes pull from (`host:port` on the harness's bridge).
    pub registry: String,
}

impl Swarm {
    /// From the harness's env file; panics with what to run when it is not there.
    pub fn from_env() -> Swarm {
        let var = |k: &str| {
            std::env::var(k).unwrap_or_else(|_| {
                panic!(
                    "{k} is not set: run scripts/swarm.sh up and source \"$(scripts/swarm.sh env)\""
                )
            })
        };
        Swarm {
            manager: var("PIER_SWARM_MANAGER"),
            addrs: var("PIER_SWARM_ADDRS")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            registry: var("PIER_SWARM_REGISTRY"),
        }
    }

    /// The manager's socket as a file path.
    pub fn socket(&self) -> &str {
        self.manager.trim_start_matches("unix://")
    }

    /// `docker -H MANAGER args…`.
    pub fn docker(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.args(["-H", &self.manager]).args(args);
        c
    }

    /// Every node back to active (what a failed run of a test may have left drained).
    pub fn reactivate_all(&self) {
        let out = self.docker(&["node", "ls", "-q"]).output().unwrap();
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self
                .docker(&["node", "update", "--availability", "active", id])
                .output();
        }
    }

    /// A node's availability as the Swarm has it ("active", "pause", "drain").
    pub fn availability(&self, node: &str) -> String {
        let out = self
            .docker(&[
                "node",
                "inspect",
                node,
                "--format",
                "{{.Spec.Availability}}",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// `scripts/swarm.sh cut N` (node N's link down: it is lost to the others) on creation,
/// `heal N` when dropped, whatever the test did. Runs from the `server` package's directory.
pub struct Cut(usize);

impl Cut {
    pub fn new(node: usize) -> Cut {
        swarm_sh("cut", node);
        Cut(node)
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        swarm_sh("heal", self.0);
    }
}

fn swarm_sh(what: &str, node: usize) {
    let out = Command::new("../scripts/swarm.sh")
        .args([what, &node.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "swarm.sh {what} {node}: {out:?}");
}
