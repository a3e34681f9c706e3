//! Living beside a local Docker engine. The engine sets the FORWARD
//! policy to DROP (through iptables, often iptables-nft) and passes bridged
//! frames through it; in nftables a packet another base chain drops is
//! dropped whatever shoal's own table says, so what this node routes for
//! its tasks (their veths, the overlay bridges and devices) would vanish
//! on such a host. Docker's documented place for a host's own rules is the
//! `DOCKER-USER` chain; this node adds its accepts there when the chain
//! exists, and removes them when it closes. No engine, no chain: nothing
//! is done.

use super::ip;

/// The rules for this tag: what leaves the tasks' veths (and comes back
/// on its connections), and everything on the overlay links.
fn rules(tag: &str) -> [Vec<String>; 4] {
    let (bridge, overlay) = (
        format!("sv{tag}+"),
        format!("{}+", super::overlay::link_prefix(tag)),
    );
    let accept = |dir: &str, dev: &str| {
        vec![
            dir.to_string(),
            dev.to_string(),
            "-j".into(),
            "ACCEPT".into(),
        ]
    };
    let mut back = vec!["-o".to_string(), bridge.clone()];
    back.extend(
        [
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        ]
        .map(String::from),
    );
    [
        accept("-i", &bridge),
        back,
        accept("-i", &overlay),
        accept("-o", &overlay),
    ]
}

/// Adds the accepts at the top of `DOCKER-USER`, once each.
pub(super) fn allow(tag: &str) {
    if ip::iptables(&["-n", "-L", "DOCKER-USER"]).is_err() {
        return;
    }
    for rule in rules(tag) {
        let args = |op: &'static str| -> Vec<&str> {
            let mut a = vec![op, "DOCKER-USER"];
            a.extend(rule.iter().map(String::as_str));
            a
        };
        if ip::iptables(&args("-C")).is_err() {
            if let Err(e) = ip::iptables(&args("-I")) {
                tracing::warn!(error = %e, "cannot add an accept rule to DOCKER-USER: tasks' traffic may be dropped by the engine's FORWARD policy");
            }
        }
    }
}

/// Removes this tag's rules (every copy).
pub(super) fn remove(tag: &str) {
    for rule in rules(tag) {
        let mut args = vec!["-D", "DOCKER-USER"];
        args.extend(rule.iter().map(String::as_str));
        for _ in 0..8 {
            if ip::iptables(&args).is_err() {
                break;
            }
        }
    }
}
