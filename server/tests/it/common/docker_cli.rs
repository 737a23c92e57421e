//! The docker CLI, for checks made from outside Pier: on the tests' dockerd (`DOCKER_HOST` comes
//! from the environment `scripts/services.sh` writes, as for the engine under test).

use serde_json::Value;
use std::process::{Command, Output};

/// Runs `docker ARGS` and returns what it printed, whatever its exit status.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("docker {args:?}: {e}"))
}

/// `docker inspect ID`: the one object it describes (`Null` when there is none).
pub fn inspect(id: &str) -> Value {
    let out = docker(&["inspect", id]);
    serde_json::from_slice::<Value>(&out.stdout).expect("inspect JSON")[0].clone()
}

/// `docker exec ID sh -c SCRIPT`: (success, stdout, stderr).
pub fn exec(id: &str, script: &str) -> (bool, String, String) {
    let out = docker(&["exec", id, "sh", "-c", script]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
