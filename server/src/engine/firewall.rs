//! Firewall rules for tenants' containers. Every tenant network's bridge is named `pb…` (see
//! [`pier_core::apps::bridge_name`]), so a handful of rules in chains Pier owns cover them all:
//!
//! - `PIER-INPUT` (filter table), jumped to from `INPUT` for packets from a `pb…` bridge: only
//!   replies to connections the host opened (health checks, the published ports) get through,
//!   and new connections to HAProxy's public ports (so an app can call a site served here by its
//!   domain, as anyone on the internet can). A container reaches nothing else on the host: not
//!   the panel, not whatever listens on the bridge gateway's address or the host's others.
//! - `PIER-EGRESS` (mangle table), jumped to from the mangle table's `FORWARD` for packets from a
//!   `pb…` bridge: a packet routed into another `pb…` bridge (another tenant's network) is
//!   dropped — traffic inside one network is bridged, not routed, and passes — as are packets
//!   to link-local addresses (cloud metadata at 169.254.169.254) and, with the operator's
//!   option, to every private range outside Pier's bridges.
//!
//! Why the mangle table: dockerd owns the filter table's `FORWARD` chain and rewrites it. Each
//! time it makes a network it deletes its jumps to `DOCKER-USER` and to its isolation chains and
//! inserts them again on top, so for a few milliseconds neither its isolation of networks nor
//! anything hung from `DOCKER-USER` applies, and one tenant's container could open a connection
//! to another's (seen in CI while other tests made networks). The mangle table's `FORWARD` comes
//! before the filter table's and dockerd never touches it, so tenants stay apart by Pier's rule
//! alone, whatever dockerd does to its own.
//!
//! Each pass of the reconciler reads the rules (`iptables-save`, one process) and, when anything
//! is missing or different (after a dockerd or host restart, or someone's `iptables -F`), writes
//! both chains and their jumps in one `iptables-restore --noflush` transaction: a chain being
//! rewritten is never seen empty. Nothing here comes from user input.

use pier_core::runtime::{EgressPolicy, EgressStatus};
use tokio::{io::AsyncWriteExt, process::Command};

const INPUT_CHAIN: &str = "PIER-INPUT";
const EGRESS_CHAIN: &str = "PIER-EGRESS";
/// Every Pier bridge's name starts so (iptables' `+` is a prefix match).
const BRIDGES: &str = "pb+";
/// Where Pier hung `PIER-EGRESS` before it moved to the mangle table: taken down on upgrade.
const RETIRED_JUMP: [&str; 5] = ["DOCKER-USER", "-i", BRIDGES, "-j", EGRESS_CHAIN];

const PRIVATE: [&str; 4] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
];

async fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{program} could not run: {e}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .map_err(|e| format!("{program} did not take its input: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("{program} did not finish: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

async fn iptables(args: &[&str]) -> Result<String, String> {
    let mut all = vec!["-w"];
    all.extend(args);
    run("iptables", &all, None).await
}

/// The rules of `PIER-INPUT` as `iptables-save` prints them.
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

/// The rules of `PIER-EGRESS` as `iptables-save` prints them.
pub fn egress_rules(block_private: bool) -> Vec<String> {
    let mut rules = vec![
        // Routed (not bridged) into a Pier bridge: from one tenant's network into another's.
        format!("-A {EGRESS_CHAIN} -o {BRIDGES} -m physdev ! --physdev-is-bridged -j DROP"),
        format!("-A {EGRESS_CHAIN} -d 169.254.0.0/16 -j DROP"),
    ];
    if block_private {
        for net in PRIVATE {
            rules.push(format!("-A {EGRESS_CHAIN} -d {net} ! -o {BRIDGES} -j DROP"));
        }
    }
    rules
}

/// One table of an `iptables-save` dump: its chain declarations and rules, trimmed.
fn table<'a>(dump: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("*{name}");
    dump.lines()
        .map(str::trim)
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| *l != "COMMIT")
        .collect()
}

fn declares(lines: &[&str], chain: &str) -> bool {
    let prefix = format!(":{chain} ");
    lines.iter().any(|l| l.starts_with(&prefix))
}

fn rules_of<'a>(lines: &[&'a str], chain: &str) -> Vec<&'a str> {
    let prefix = format!("-A {chain} ");
    lines
        .iter()
        .filter(|l| l.starts_with(&prefix))
        .copied()
        .collect()
}

/// What an `iptables-restore --noflush` must do to put the rules in place, given the rules as
/// `iptables-save` printed them; `None` when everything is already so (the usual pass). Each
/// chain that differs is declared (which empties it within the transaction) and written whole;
/// a missing jump is inserted first in its chain. The retired `DOCKER-USER` jump is left to
/// [`retire`], as a chain cannot be removed in the transaction that removes its last jump.
pub fn repair(dump: &str, input: &[String], egress: &[String]) -> Option<String> {
    let filter = table(dump, "filter");
    let mangle = table(dump, "mangle");
    let mut script = String::new();
    for (name, lines, chain, rules, from) in [
        ("filter", &filter, INPUT_CHAIN, input, "INPUT"),
        ("mangle", &mangle, EGRESS_CHAIN, egress, "FORWARD"),
    ] {
        let mut part = String::new();
        let want: Vec<&str> = rules.iter().map(String::as_str).collect();
        if !declares(lines, chain) || rules_of(lines, chain) != want {
            part.push_str(&format!(":{chain} - [0:0]\n"));
            for rule in rules {
                part.push_str(rule);
                part.push('\n');
            }
        }
        let jump = format!("-A {from} -i {BRIDGES} -j {chain}");
        if !lines.contains(&jump.as_str()) {
            part.push_str(&format!("-I {from} 1 -i {BRIDGES} -j {chain}\n"));
        }
        if !part.is_empty() {
            script.push_str(&format!("*{name}\n{part}COMMIT\n"));
        }
    }
    (!script.is_empty()).then_some(script)
}

/// Whether the dump still holds what Pier hung from Docker's `DOCKER-USER` before.
pub fn holds_retired(dump: &str) -> bool {
    let filter = table(dump, "filter");
    let jump = format!("-A {}", RETIRED_JUMP.join(" "));
    filter.contains(&jump.as_str()) || declares(&filter, EGRESS_CHAIN)
}

/// Takes down the retired jump and the filter table's `PIER-EGRESS` (the mangle table's is
/// in place by then).
async fn retire() -> Result<(), String> {
    let mut check = vec!["-C"];
    check.extend(RETIRED_JUMP);
    while iptables(&check).await.is_ok() {
        let mut delete = vec!["-D"];
        delete.extend(RETIRED_JUMP);
        iptables(&delete).await?;
    }
    if iptables(&["-S", EGRESS_CHAIN]).await.is_ok() {
        iptables(&["-F", EGRESS_CHAIN]).await?;
        iptables(&["-X", EGRESS_CHAIN]).await?;
    }
    Ok(())
}

/// Puts the rules in place (idempotent) and says how they stand.
pub async fn enforce(policy: &EgressPolicy) -> EgressStatus {
    let block_private = policy.block_private;
    let input = input_rules(&policy.open_ports);
    let egress = egress_rules(block_private);
    let result = async {
        let dump = run("iptables-save", &[], None).await?;
        let mut changed = false;
        if let Some(script) = repair(&dump, &input, &egress) {
            run("iptables-restore", &["-w", "--noflush"], Some(&script)).await?;
            changed = true;
        }
        if holds_retired(&dump) {
            retire().await?;
            changed = true;
        }
        Ok::<bool, String>(changed)
    }
    .await;
    match result {
        Ok(changed) => {
            if changed {
                tracing::info!(block_private, "firewall rules put in place");
            }
            EgressStatus {
                enforced: true,
                policy: policy.clone(),
                problem: None,
            }
        }
        Err(problem) => {
            tracing::warn!(%problem, "firewall rules are not in place");
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

    /// A dump as `iptables-save` prints one with Pier's rules in place (open port 443, private
    /// ranges allowed), beside Docker's.
    fn complete() -> String {
        "# Generated by iptables-save v1.8.9 (nf_tables)\n\
         *mangle\n:PREROUTING ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:PIER-EGRESS - [0:0]\n\
         -A FORWARD -i pb+ -j PIER-EGRESS\n\
         -A PIER-EGRESS -o pb+ -m physdev ! --physdev-is-bridged -j DROP\n\
         -A PIER-EGRESS -d 169.254.0.0/16 -j DROP\nCOMMIT\n\
         *filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:DOCKER-USER - [0:0]\n\
         :PIER-INPUT - [0:0]\n\
         -A INPUT -i pb+ -j PIER-INPUT\n-A INPUT -j ACCEPT\n\
         -A FORWARD -j DOCKER-USER\n-A DOCKER-USER -j RETURN\n\
         -A PIER-INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n\
         -A PIER-INPUT -p tcp -m multiport --dports 443 -j RETURN\n\
         -A PIER-INPUT -j DROP\nCOMMIT\n"
            .to_string()
    }

    #[test]
    fn a_dump_with_everything_in_place_needs_nothing() {
        let (input, egress) = (input_rules(&[443]), egress_rules(false));
        assert_eq!(repair(&complete(), &input, &egress), None);
        assert!(!holds_retired(&complete()));
    }

    #[test]
    fn a_missing_jump_is_inserted_first_and_nothing_else_is_touched() {
        let (input, egress) = (input_rules(&[443]), egress_rules(false));
        let dump = complete().replace("-A FORWARD -i pb+ -j PIER-EGRESS\n", "");
        assert_eq!(
            repair(&dump, &input, &egress).unwrap(),
            "*mangle\n-I FORWARD 1 -i pb+ -j PIER-EGRESS\nCOMMIT\n"
        );
        let dump = complete().replace("-A INPUT -i pb+ -j PIER-INPUT\n", "");
        assert_eq!(
            repair(&dump, &input, &egress).unwrap(),
            "*filter\n-I INPUT 1 -i pb+ -j PIER-INPUT\nCOMMIT\n"
        );
        // A jump of the same name in the other table does not count.
        let dump = complete().replace("-A FORWARD -i pb+ -j PIER-EGRESS\n", "")
            + "*filter\n-A FORWARD -i pb+ -j PIER-EGRESS\nCOMMIT\n";
        assert!(repair(&dump, &input, &egress)
            .unwrap()
            .contains("-I FORWARD 1 -i pb+ -j PIER-EGRESS"));
    }

    #[test]
    fn a_chain_that_differs_is_written_whole_in_one_transaction() {
        let (input, egress) = (input_rules(&[443]), egress_rules(false));
        // Someone's `iptables -t mangle -F PIER-EGRESS`: the isolation rule is gone.
        let dump = complete().replace(
            "-A PIER-EGRESS -o pb+ -m physdev ! --physdev-is-bridged -j DROP\n",
            "",
        );
        assert_eq!(
            repair(&dump, &input, &egress).unwrap(),
            "*mangle\n:PIER-EGRESS - [0:0]\n\
             -A PIER-EGRESS -o pb+ -m physdev ! --physdev-is-bridged -j DROP\n\
             -A PIER-EGRESS -d 169.254.0.0/16 -j DROP\nCOMMIT\n"
        );
        // Another open port and the private ranges: both chains, each in its table.
        let script = repair(&complete(), &input_rules(&[80, 443]), &egress_rules(true)).unwrap();
        assert!(
            script.starts_with("*filter\n:PIER-INPUT - [0:0]\n"),
            "{script}"
        );
        assert!(script.contains("--dports 80,443 -j RETURN\n-A PIER-INPUT -j DROP\nCOMMIT\n*mangle\n:PIER-EGRESS - [0:0]\n"), "{script}");
        assert!(script.contains("-A PIER-EGRESS -d 10.0.0.0/8 ! -o pb+ -j DROP\n"));
        assert!(!script.contains("-I "), "{script}");
    }

    #[test]
    fn after_a_flush_or_on_a_new_host_everything_is_written() {
        let (input, egress) = (input_rules(&[]), egress_rules(false));
        // iptables-nft prints no mangle table until something uses it.
        let bare =
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
        for dump in [bare, ""] {
            let script = repair(dump, &input, &egress).unwrap();
            assert_eq!(
                script,
                "*filter\n:PIER-INPUT - [0:0]\n\
                 -A PIER-INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n\
                 -A PIER-INPUT -j DROP\n-I INPUT 1 -i pb+ -j PIER-INPUT\nCOMMIT\n\
                 *mangle\n:PIER-EGRESS - [0:0]\n\
                 -A PIER-EGRESS -o pb+ -m physdev ! --physdev-is-bridged -j DROP\n\
                 -A PIER-EGRESS -d 169.254.0.0/16 -j DROP\n\
                 -I FORWARD 1 -i pb+ -j PIER-EGRESS\nCOMMIT\n"
            );
        }
    }

    #[test]
    fn the_hook_in_docker_user_is_retired() {
        let old = complete().replace(
            "-A DOCKER-USER -j RETURN\n",
            "-A DOCKER-USER -i pb+ -j PIER-EGRESS\n-A DOCKER-USER -j RETURN\n",
        );
        assert!(holds_retired(&old));
        let old_chain = complete().replace(
            ":PIER-INPUT - [0:0]\n",
            ":PIER-INPUT - [0:0]\n:PIER-EGRESS - [0:0]\n",
        );
        assert!(holds_retired(&old_chain));
        // The mangle table's chain of that name is the one in use.
        assert!(!holds_retired(&complete()));
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
        let open = egress_rules(false);
        assert_eq!(open.len(), 2);
        assert!(open[0].contains("-o pb+ -m physdev ! --physdev-is-bridged -j DROP"));
        let strict = egress_rules(true);
        assert_eq!(strict.len(), 6);
        assert!(strict.contains(&"-A PIER-EGRESS -d 10.0.0.0/8 ! -o pb+ -j DROP".to_string()));
    }
}
