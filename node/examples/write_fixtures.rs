//! Writes the golden fixtures: one small file for each kind of record a
//! node persists or sends (a Raft entry, a packed entry, a snapshot of a
//! small state, each record of the state tree, the cluster protocol's
//! requests and answers, a mesh tunnel's header, `node.json`), as this build
//! writes them. `node/tests/golden.rs` decodes every one of them forever
//! after (docs/upgrades.md, "Golden fixtures"):
//!
//! ```sh
//! cargo run -p shoal-node --example write_fixtures -- node/tests/fixtures/format-N
//! ```
//!
//! Only public API that every format's build has: the fixtures of format 1
//! were written by this file at the commit before formats existed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use shoal_actors::packing::pack_proposals;
use shoal_actors::store::StateMachine;
use shoal_core::codec;
use shoal_core::command::{Command, Proposal, TaskUpdate};
use shoal_core::model::network::{Network, NetworkCommand, NetworkSpec};
use shoal_core::model::secret::{Kind, Object, Sealed, SecretCommand, Stored};
use shoal_core::model::{
    Cluster, ClusterSpec, DriverInfo, Node, NodeRole, NodeState, Service, Task, TaskState,
    TaskStatus,
};
use shoal_node::api::views;
use shoal_node::cluster::wire::{
    Joined, OneWay, Refusal, Request, Response, ToAgent, ToDispatcher,
};

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_764_547_200, 0).unwrap_or_default()
}

/// Built from the samples and JSON, not struct literals, so that this file
/// compiles on every build, whatever fields later formats added.
fn node(id: &str, role: NodeRole) -> Node {
    let mut n = shoal_core::model::sample_node(id, &format!("host-{id}"), role);
    n.labels = BTreeMap::from([("zone".to_string(), "a".to_string())]);
    n.state = NodeState::Ready;
    n.addr = "10.0.0.1:2377".into();
    n.drivers = vec![DriverInfo {
        name: "process".into(),
        version: "1".into(),
    }];
    n.cert_generation = 1;
    n.created_at = at();
    n.updated_at = at();
    n
}

fn cluster() -> anyhow::Result<Cluster> {
    Ok(serde_json::from_value(serde_json::json!({
        "id": "clusterid0000000000000001",
        "spec": serde_json::to_value(ClusterSpec::default())?,
        "join_tokens": {"worker": "SWMTKN-1-a-w", "manager": "SWMTKN-1-a-m"},
        "ca_cert_pem": "-----BEGIN CERTIFICATE-----",
        "removed_nodes": ["gone00000000000000000001"],
        "unlock_key": null,
        "created_at": at(),
        "updated_at": at(),
        "version": 0,
    }))?)
}

fn service() -> anyhow::Result<Service> {
    let spec = views::parse_service_spec(&serde_json::json!({
        "Name": "web",
        "Labels": {"tier": "front"},
        "Mode": {"Replicated": {"Replicas": 2}},
        "TaskTemplate": {
            "ContainerSpec": {"Image": "/bin/sleep", "Args": ["100"], "Env": ["A=1"]},
            "RestartPolicy": {"Condition": "on-failure", "MaxAttempts": 2}
        },
        "EndpointSpec": {"Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080}]}
    }))
    .map_err(|e| anyhow!("{e}"))?;
    Ok(Service::new("serviceid0000000000000001".into(), spec, at()))
}

fn task(service: &Service, slot: u64) -> Task {
    let mut t = Task::for_slot(
        format!("taskid00000000000000000{slot:02}"),
        service,
        slot,
        vec![at()],
        TaskState::Running,
        at(),
    );
    t.node_id = Some("workerid0000000000000001".into());
    t
}

fn object(kind: Kind, name: &str, data: Stored) -> Object {
    Object {
        id: format!("{}id000000000000000000001", kind.as_str()),
        kind,
        name: name.into(),
        labels: BTreeMap::new(),
        size: 6,
        data,
        data_version: 1,
        version: 0,
        created_at: at(),
        updated_at: at(),
    }
}

fn network() -> Network {
    Network::proposed(
        "networkid0000000000000001".into(),
        NetworkSpec {
            name: "backend".into(),
            labels: BTreeMap::new(),
            driver: "overlay".into(),
            subnet: None,
            gateway: None,
            attachable: true,
            internal: false,
            encrypted: true,
            options: BTreeMap::new(),
        },
        at(),
    )
}

/// The writes of the small state the snapshot and the state tree hold.
fn commands() -> anyhow::Result<Vec<Command>> {
    let svc = service()?;
    Ok(vec![
        Command::InitCluster {
            cluster: cluster()?,
            node: node("managerid000000000000001", NodeRole::Manager),
        },
        Command::UpsertNode(node("workerid0000000000000001", NodeRole::Worker)),
        Command::Networks(NetworkCommand::Create(Box::new(network()))),
        Command::Secrets(SecretCommand::Create(Box::new(object(
            Kind::Secret,
            "db-password",
            Stored::Sealed(Sealed {
                nonce: vec![1; 12],
                ciphertext: vec![2; 22],
            }),
        )))),
        Command::Secrets(SecretCommand::Create(Box::new(object(
            Kind::Config,
            "site",
            Stored::Plain(b"hello\n".to_vec()),
        )))),
        Command::CreateService(Box::new(svc.clone())),
        Command::CreateTasks(vec![task(&svc, 1), task(&svc, 2)]),
        Command::UpdateTasks {
            updates: vec![TaskUpdate::Status {
                task_id: "taskid0000000000000000001".into(),
                node_id: "workerid0000000000000001".into(),
                status: TaskStatus::new(TaskState::Running, "started", at()),
            }],
            at: at(),
        },
    ])
}

struct Out(PathBuf);

impl Out {
    fn write(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("write {}", path.display()))?;
        println!("{name}: {} bytes", bytes.len());
        Ok(())
    }

    fn encode<T: serde::Serialize>(&self, name: &str, value: &T) -> anyhow::Result<()> {
        self.write(name, &codec::encode(value)?)
    }
}

fn raft(out: &Out) -> anyhow::Result<()> {
    let proposal = |id: u128, command: Command| codec::encode(&Proposal { id, command });
    out.write(
        "raft-entry.bin",
        &proposal(
            0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
            Command::UpdateService {
                service: "web".into(),
                spec: service()?.spec,
                expected_version: Some(4),
                at: at(),
            },
        )?,
    )?;
    let parts = [
        proposal(1, Command::RemoveNode { id: "gone".into() })?,
        proposal(
            u128::MAX,
            Command::SetNodeState {
                node_id: "workerid0000000000000001".into(),
                state: NodeState::Down,
                message: "heartbeat failure".into(),
                at: at(),
            },
        )?,
        proposal(
            7,
            Command::DeleteTasks(vec!["taskid0000000000000000001".into()]),
        )?,
    ];
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    out.write("raft-entry-packed.bin", &pack_proposals(&refs)?)
}

fn state(out: &Out) -> anyhow::Result<()> {
    let db = sled::Config::new().temporary(true).open()?;
    let sm = StateMachine::open(&db)?;
    for (i, command) in commands()?.into_iter().enumerate() {
        let index = i as u64 + 1;
        let data = codec::encode(&Proposal {
            id: index.into(),
            command,
        })?;
        let outcome = sm
            .apply_entry(index, 1, &data)?
            .ok_or_else(|| anyhow!("entry {index} not applied"))?;
        for (_, result) in &outcome.results {
            result.clone().map_err(|e| anyhow!("entry {index}: {e}"))?;
        }
    }
    out.write("snapshot.bin", &sm.snapshot_data().1)?;
    // One record of each kind the state tree holds.
    let mut seen = std::collections::BTreeSet::new();
    for kv in db.open_tree("state")?.iter() {
        let (key, value) = kv?;
        let key = String::from_utf8_lossy(&key).into_owned();
        let kind = key.split('/').next().unwrap_or(&key).to_string();
        if seen.insert(kind.clone()) {
            out.write(&format!("state-{kind}.bin"), &value)?;
        }
    }
    Ok(())
}

fn wire(out: &Out) -> anyhow::Result<()> {
    let svc = service()?;
    let drivers = serde_json::to_value(vec![DriverInfo {
        name: "process".into(),
        version: "1".into(),
    }])?;
    out.encode(
        "wire-oneway-raft.bin",
        &OneWay::Raft {
            from: 1,
            from_addr: "10.0.0.1:2377".into(),
            msg: vec![8, 3, 16, 1, 24, 2],
        },
    )?;
    out.encode(
        "wire-oneway-assignments.bin",
        &OneWay::ToAgent {
            term: 3,
            msg: ToAgent::Assignments(vec![task(&svc, 1)], Vec::new()),
        },
    )?;
    // From JSON, so that fields later formats add take their defaults.
    let join: Request = serde_json::from_value(serde_json::json!({"Join": {
        "token": "SWMTKN-1-a-w",
        "hostname": "host-2",
        "addr": "10.0.0.2:2377",
        "drivers": drivers,
        "availability": "Active",
    }}))?;
    out.encode("wire-request-join.bin", &join)?;
    let register: ToDispatcher = serde_json::from_value(serde_json::json!({"Register": {
        "node_id": "workerid0000000000000001",
        "hostname": "host-2",
        "addr": "10.0.0.2:2377",
        "drivers": drivers,
        "sandbox_error": "not root",
        "machine": shoal_core::model::sample_machine(),
    }}))?;
    out.encode("wire-request-register.bin", &Request::Dispatcher(register))?;
    out.encode(
        "wire-request-propose.bin",
        &Request::Propose(Box::new(Command::CreateService(Box::new(svc)))),
    )?;
    out.encode(
        "wire-request-propose-many.bin",
        &Request::ProposeMany(vec![
            Command::RemoveNode { id: "gone".into() },
            Command::DeleteTasks(vec!["taskid0000000000000000001".into()]),
        ]),
    )?;
    out.encode(
        "wire-response-joined.bin",
        &Response::Joined(Box::new(Joined {
            node_id: "workerid0000000000000002".into(),
            raft_id: 0,
            role: NodeRole::Worker,
            cluster_id: "clusterid0000000000000001".into(),
            ca_cert_pem: "ca".into(),
            ca_key_pem: None,
            cert_pem: "cert".into(),
            key_pem: "key".into(),
            managers: vec!["10.0.0.1:2377".into()],
        })),
    )?;
    out.encode(
        "wire-response-each-applied.bin",
        &Response::EachApplied(
            vec![
                Ok(()),
                Err(Refusal::Rejected(
                    shoal_core::state::ApplyError::NodeNotFound("gone".into()),
                )),
            ],
            42,
        ),
    )?;
    out.encode(
        "wire-response-refused.bin",
        &Response::Refused(Refusal::NotLeader { leader: Some(2) }),
    )?;
    out.encode(
        "mesh-tunnel-header.bin",
        &shoal_node::mesh::tunnel::Header {
            task_id: "taskid0000000000000000001".into(),
            port: 80,
            client: "192.0.2.7:40000".parse()?,
            dest: "10.0.0.1:8080".parse()?,
            proxy: Some(shoal_core::model::port::ProxyProtocol::V2),
            protocol: shoal_core::model::port::Protocol::Tcp,
        },
    )
}

fn node_files(dir: &Path) -> anyhow::Result<()> {
    shoal_node::identity::save(
        dir,
        &shoal_node::identity::Identity {
            node_id: "managerid000000000000001".into(),
            raft_id: 1,
            manager: true,
            cluster_id: "clusterid0000000000000001".into(),
            managers: vec!["10.0.0.1:2377".into()],
            listen_addr: Some("0.0.0.0:2377".parse()?),
            advertise_addr: Some("10.0.0.1".into()),
        },
    )?;
    println!("node.json");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("usage: write_fixtures DIR"))?;
    std::fs::create_dir_all(&dir)?;
    let out = Out(dir.clone());
    raft(&out)?;
    state(&out)?;
    wire(&out)?;
    node_files(&dir)
}
