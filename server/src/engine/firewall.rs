//! Egress rules for tenants' containers. Every tenant network's bridge is named `pb…` (see
//! [`pier_core::apps::bridge_name`]), so a handful of rules in chains Pier owns cover them all:
//!
//! - `PIER-INPUT`, jumped to from `INPUT` for packets from a `pb…` bridge: only replies to
//!   connections the host opened (health checks, the published ports) get through, and new
//!   connections to HAProxy's public ports (so an app can call a site served here by its
//!   domain, as anyone on the internet can). A container reaches nothing else on the host: not
//!   the panel, not whatever listens on the bridge gateway's address or the host's others.
//! - `PIER-EGRESS`, jumped to from Docker's `DOCKER-USER` (in `FORWARD`) for packets from a
//!   `pb…` bridge: link-local addresses (cloud metadata at 169.254.169.254) are dropped, and
//!   with the operator's option every private range outside Pier's bridges too. Another
//!   tenant's network is kept apart by Docker's own isolation chains.
//!
//! Each pass of the reconciler checks the rules and puts back what is missing (after a dockerd
//! or host restart, or someone's `iptables -F`). Nothing here comes from user input.

use pier_core::runtime::{EgressPolicy, EgressStatus};
use tokio::process::Command;

const INPUT_CHAIN: &str = "PIER-INPUT";
const EGRESS_CHAIN: &str = "PIER-EGRESS";
/// Every Pier bridge's name starts so (iptables' `+` is a prefix match).
const BRIDGES: &str = "pb+";

const PRIVATE: [&str; 4] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
];

async fn iptables(args: &[&str]) -> Result<String, String> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("iptables could not run: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// The rules of Pier's chains as `iptables -S` prints them.
pub fn input_rules(open_ports: &[u16]) -> Vec<String> {
    let mut rules = vec![format!(
        "-A {INPUT_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
    )];
    if !open_ports.is_empty() {
        let mut ports: Vec<u16> = open_ports.to_vec();
        ports.sort_unstable();
        ports.dedup();
        let list = ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        rules.push(format!(
            "-A {INPUT_CHAIN} -p tcp -m multiport --dports {list} -j RETURN"
        ));
    }
    rules.push(format!("-A {INPUT_CHAIN} -j DROP"));
    rules
}

pub fn egress_rules(block_private: bool) -> Vec<String> {
    let mut rules = vec![format!("-A {EGRESS_CHAIN} -d 169.254.0.0/16 -j DROP")];
    if block_private {
        for net in PRIVATE {
            rules.push(format!("-A {EGRESS_CHAIN} -d {net} ! -o {BRIDGES} -j DROP"));
        }
    }
    rules
}

/// Whether the filter table as `iptables -S` prints it already has everything: both chains
/// with exactly their rules, Docker's `DOCKER-USER`, and both jumps. Every pass asks this with
/// one process instead of five; only when something is missing are the chains checked and
/// mended one by one.
pub fn all_in_place(dump: &str, input: &[String], egress: &[String]) -> bool {
    let lines: Vec<&str> = dump.lines().map(str::trim).collect();
    let has = |line: String| lines.contains(&line.as_str());
    let rules_of = |chain: &str| -> Vec<&str> {
        let prefix = format!("-A {chain} ");
        lines
            .iter()
            .filter(|l| l.starts_with(&prefix))
            .copied()
            .collect()
    };
    has(format!("-N {INPUT_CHAIN}"))
        && has(format!("-N {EGRESS_CHAIN}"))
        && has("-N DOCKER-USER".to_string())
        && rules_of(INPUT_CHAIN) == input.iter().map(String::as_str).collect::<Vec<_>>()
        && rules_of(EGRESS_CHAIN) == egress.iter().map(String::as_str).collect::<Vec<_>>()
        && has(format!("-A INPUT -i {BRIDGES} -j {INPUT_CHAIN}"))
        && has(format!("-A DOCKER-USER -i {BRIDGES} -j {EGRESS_CHAIN}"))
}

/// Makes `chain` hold exactly `rules` (rewritten only when it differs).
async fn chain(chain: &str, rules: &[String]) -> Result<bool, String> {
    let current = match iptables(&["-S", chain]).await {
        Ok(text) => text,
        Err(_) => {
            iptables(&["-N", chain]).await?;
            String::new()
        }
    };
    let have: Vec<&str> = current.lines().filter(|l| l.starts_with("-A ")).collect();
    if have == rules.iter().map(String::as_str).collect::<Vec<_>>() {
        return Ok(false);
    }
    iptables(&["-F", chain]).await?;
    for rule in rules {
        let words: Vec<&str> = rule.split_whitespace().collect();
        iptables(&words).await?;
    }
    Ok(true)
}

/// Makes `from` send packets from Pier's bridges to `to`, first thing.
async fn jump(from: &str, to: &str) -> Result<bool, String> {
    let rule = ["-i", BRIDGES, "-j", to];
    let mut check = vec!["-C", from];
    check.extend(rule);
    if iptables(&check).await.is_ok() {
        return Ok(false);
    }
    let mut insert = vec!["-I", from, "1"];
    insert.extend(rule);
    iptables(&insert).await?;
    Ok(true)
}

/// Puts the rules in place (idempotent) and says how they stand.
pub async fn enforce(policy: &EgressPolicy) -> EgressStatus {
    let block_private = policy.block_private;
    let input = input_rules(&policy.open_ports);
    let egress = egress_rules(block_private);
    let result = async {
        if iptables(&["-S"])
            .await
            .is_ok_and(|dump| all_in_place(&dump, &input, &egress))
        {
            return Ok(false);
        }
        let mut changed = chain(INPUT_CHAIN, &input).await?;
        changed |= chain(EGRESS_CHAIN, &egress).await?;
        changed |= jump("INPUT", INPUT_CHAIN).await?;
        // DOCKER-USER is Docker's: it exists once dockerd has started.
        iptables(&["-S", "DOCKER-USER"])
            .await
            .map_err(|_| "Docker's DOCKER-USER chain does not exist (is dockerd running with its iptables rules?)".to_string())?;
        changed |= jump("DOCKER-USER", EGRESS_CHAIN).await?;
        Ok::<bool, String>(changed)
    }
    .await;
    match result {
        Ok(changed) => {
            if changed {
                tracing::info!(block_private, "egress rules put in place");
            }
            EgressStatus {
                enforced: true,
                policy: policy.clone(),
                problem: None,
            }
        }
        Err(problem) => {
            tracing::warn!(%problem, "egress rules are not in place");
            EgressStatus {
                enforced: false,
                policy: policy.clone(),
                problem: Some(problem),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_dump_tells_whether_anything_is_missing() {
        let input = input_rules(&[443]);
        let egress = egress_rules(false);
        let complete = "-P INPUT ACCEPT\n-N DOCKER-USER\n-N PIER-EGRESS\n-N PIER-INPUT\n\
            -A INPUT -i pb+ -j PIER-INPUT\n-A INPUT -j ACCEPT\n\
            -A DOCKER-USER -i pb+ -j PIER-EGRESS\n-A DOCKER-USER -j RETURN\n\
            -A PIER-EGRESS -d 169.254.0.0/16 -j DROP\n\
            -A PIER-INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n\
            -A PIER-INPUT -p tcp -m multiport --dports 443 -j RETURN\n\
            -A PIER-INPUT -j DROP\n";
        assert!(all_in_place(complete, &input, &egress));
        // Each missing or different piece sends the pass down the slow path.
        for gone in [
            "-N DOCKER-USER\n",
            "-A INPUT -i pb+ -j PIER-INPUT\n",
            "-A DOCKER-USER -i pb+ -j PIER-EGRESS\n",
            "-A PIER-INPUT -j DROP\n",
            "-A PIER-EGRESS -d 169.254.0.0/16 -j DROP\n",
        ] {
            assert!(
                !all_in_place(&complete.replace(gone, ""), &input, &egress),
                "{gone}"
            );
        }
        assert!(!all_in_place(complete, &input_rules(&[80, 443]), &egress));
        assert!(!all_in_place(complete, &input, &egress_rules(true)));
        assert!(!all_in_place("", &input, &egress));
    }

    #[test]
    fn rules_as_iptables_prints_them() {
        assert_eq!(
            input_rules(&[]),
            [
                "-A PIER-INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
                "-A PIER-INPUT -j DROP"
            ]
        );
        assert_eq!(
            input_rules(&[443, 80, 443])[1],
            "-A PIER-INPUT -p tcp -m multiport --dports 80,443 -j RETURN"
        );
        assert_eq!(
            egress_rules(false),
            ["-A PIER-EGRESS -d 169.254.0.0/16 -j DROP"]
        );
        let strict = egress_rules(true);
        assert_eq!(strict.len(), 5);
        assert!(strict.contains(&"-A PIER-EGRESS -d 10.0.0.0/8 ! -o pb+ -j DROP".to_string()));
    }
}
