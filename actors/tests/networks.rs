//! Address management on the in-process harness (real leader actors, fake
//! agents, a paused clock): addresses under churn, a VIP that stays, a full
//! network that keeps tasks pending, and what removal gives back.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use chrono::Utc;
use shoal_actors::harness::{running_in, Harness};
use shoal_core::command::Command;
use shoal_core::model::network::{Network, NetworkCommand, NetworkRef, NetworkSpec, Subnet};
use shoal_core::model::{Service, TaskState};
use shoal_core::state::ClusterState;

const LIMIT: Duration = Duration::from_secs(120);

fn create_network(h: &mut Harness, name: &str, subnet: &str) -> String {
    let id = format!("net{name}");
    let net = Network::proposed(
        id.clone(),
        NetworkSpec {
            name: name.into(),
            labels: Default::default(),
            driver: "overlay".into(),
            subnet: Some(Subnet::parse(subnet).expect("subnet")),
            gateway: None,
            attachable: false,
            internal: false,
            encrypted: true,
            options: Default::default(),
        },
        Utc::now(),
    );
    h.propose(Command::Networks(NetworkCommand::Create(Box::new(net))))
        .expect("network create");
    id
}

/// Addresses held by the tasks of `service` meant to run and not ended.
fn live_addrs(s: &ClusterState, service: &str) -> Vec<Ipv4Addr> {
    s.tasks
        .values()
        .filter(|t| t.service_name == service && !t.status.state.is_terminal())
        .flat_map(|t| t.attachments.iter().map(|a| a.addr))
        .collect()
}

fn vip(s: &ClusterState, service: &str) -> Option<Ipv4Addr> {
    s.service_by_name(service)
        .and_then(|svc: &Service| svc.virtual_ips.first())
        .map(|v| v.addr)
}

#[test]
fn churn_never_hands_an_address_out_twice_and_the_vip_stays() {
    let mut h = Harness::new(7, 2).expect("harness");
    let net = create_network(&mut h, "churn", "10.0.9.0/24");
    let mut spec = Harness::spec("server", 10, "img");
    spec.task_template.networks = vec![NetworkRef::named(&net)];
    h.create_service(spec).expect("create");
    h.drive_until("10 running", LIMIT, |s| running_in(s, "server") == 10)
        .expect("converges");
    let first_vip = h.state(|s| vip(s, "server")).expect("a VIP");
    let subnet = Subnet::parse("10.0.9.0/24").expect("subnet");
    assert!(subnet.contains(first_vip));
    let mut seen = BTreeSet::new();
    // 10 and 6 rounds of 40 new tasks: 250 tasks through one /24.
    for round in 0..12 {
        let n = if round % 2 == 0 { 50 } else { 10 };
        h.scale("server", n).expect("scale");
        h.drive_until("scaled", LIMIT, |s| {
            running_in(s, "server") == n as usize
                && s.tasks
                    .values()
                    .filter(|t| t.service_name == "server")
                    .all(|t| t.desired_state == TaskState::Running || t.status.state.is_terminal())
        })
        .expect("scaled");
        h.state(|s| {
            let live = live_addrs(s, "server");
            let distinct: BTreeSet<_> = live.iter().collect();
            assert_eq!(
                distinct.len(),
                live.len(),
                "an address held twice: {live:?}"
            );
            assert!(live.iter().all(|a| subnet.contains(*a) && *a != first_vip));
            assert!(!live.contains(&subnet.nth(1)), "the gateway handed out");
            assert_eq!(vip(s, "server"), Some(first_vip), "the VIP moved");
            seen.extend(
                s.tasks
                    .values()
                    .filter(|t| t.service_name == "server")
                    .map(|t| t.id.clone()),
            );
        });
        // Old tasks go (history limit), and with them their addresses.
        for t in h.tasks("server") {
            if t.status.state.is_terminal() {
                h.propose(Command::DeleteTasks(vec![t.id.clone()]))
                    .expect("delete");
            }
        }
    }
    assert!(seen.len() >= 200, "only {} tasks went through", seen.len());
    // An update keeps the VIP too.
    let mut spec = h
        .state(|s| s.service_by_name("server").map(|s| s.spec.clone()))
        .expect("spec");
    spec.task_template.env.push("V=2".into());
    h.propose(Command::UpdateService {
        service: "server".into(),
        spec,
        expected_version: None,
        at: h.now(),
    })
    .expect("update");
    h.drive_until("updated", LIMIT, |s| {
        running_in(s, "server") == 10
            && s.tasks
                .values()
                .filter(|t| t.service_name == "server" && t.desired_state == TaskState::Running)
                .all(|t| t.spec.env.contains(&"V=2".to_string()))
    })
    .expect("rolled");
    assert_eq!(h.state(|s| vip(s, "server")), Some(first_vip));
    for t in h.tasks("server") {
        if t.status.state.is_terminal() {
            h.propose(Command::DeleteTasks(vec![t.id.clone()]))
                .expect("delete");
        }
    }
    h.state(|s| {
        let held = s.networks[&net].ipam.used.len();
        // gateway + VIP + the 10 live tasks.
        assert_eq!(held, 12, "{:?}", s.networks[&net].ipam.used);
    });
}

#[test]
fn a_full_network_keeps_tasks_pending_and_says_why() {
    let mut h = Harness::new(3, 1).expect("harness");
    // A /29: 6 host addresses, the gateway and the VIP take 2: 4 tasks fit.
    let net = create_network(&mut h, "small", "10.0.7.0/29");
    let mut spec = Harness::spec("web", 6, "img");
    spec.task_template.networks = vec![NetworkRef::named(&net)];
    h.create_service(spec).expect("create");
    h.drive_until("4 running, 2 pending", LIMIT, |s| {
        running_in(s, "web") == 4
            && s.tasks
                .values()
                .filter(|t| t.status.state == TaskState::Pending)
                .all(|t| {
                    t.status
                        .err
                        .as_deref()
                        .is_some_and(|e| e.contains("no address left"))
                })
            && s.tasks
                .values()
                .filter(|t| t.status.state == TaskState::Pending)
                .count()
                == 2
    })
    .expect("pending with a reason");
    h.scale("web", 4).expect("scale down");
    h.drive_until("4 running", LIMIT, |s| {
        running_in(s, "web") == 4 && live_addrs(s, "web").len() == 4
    })
    .expect("settles");
}

#[test]
fn removing_a_service_gives_its_addresses_back_and_frees_the_network() {
    let mut h = Harness::new(5, 1).expect("harness");
    let net = create_network(&mut h, "app", "10.0.8.0/24");
    let mut spec = Harness::spec("api", 3, "img");
    spec.task_template.networks = vec![NetworkRef::named(&net)];
    h.create_service(spec).expect("create");
    h.drive_until("3 running", LIMIT, |s| running_in(s, "api") == 3)
        .expect("converges");
    let rm = Command::Networks(NetworkCommand::Remove { key: "app".into() });
    let refused = h.state(|s| s.check(&rm)).expect_err("in use");
    assert!(
        refused.to_string().contains("is in use by service"),
        "{refused}"
    );
    h.propose(Command::RemoveService {
        service: "api".into(),
        at: h.now(),
    })
    .expect("remove");
    h.drive_until("tasks gone", LIMIT, |s| {
        s.tasks.is_empty() && s.networks[&net].ipam.used.len() == 1
    })
    .expect("addresses back");
    h.propose(rm).expect("network rm");
    assert!(h.state(|s| !s.networks.contains_key(&net)));
}
