//! `service inspect --pretty`: docker 28's `serviceInspectPrettyTemplate`
//! (docker/cli `cli/command/service/formatter.go`), line for line, over the
//! typed service. Go's template trims decide where the newlines go: every
//! block below starts its own line, the text ends with one newline, and
//! docker's formatter adds another after each service.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use shoal_node::api::wire;

use crate::output::{ago_at, go_duration};
use crate::pretty::bytes_size;

/// A count or duration of the swagger's int64, as docker's unsigned one.
fn n(v: Option<i64>) -> u64 {
    u64::try_from(v.unwrap_or(0)).unwrap_or(0)
}

/// Go's `%v` of a float64 (`0.5`, `2`).
fn go_float(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e21 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// `service inspect --pretty` of one service; `networks` names the
/// networks its spec names by id (docker's `resolveNetworks`).
pub fn service(svc: &wire::Service, networks: &HashMap<String, String>) -> String {
    let mut out = String::from("\n");
    let empty = wire::ServiceSpec::default();
    let spec = svc.spec.as_ref().unwrap_or(&empty);
    let d = &spec.docker;
    let tt = spec.task_template.clone().unwrap_or_default();
    let c = tt.container_spec.clone().unwrap_or_default();
    let cd = &c.docker;
    let _ = write!(out, "ID:\t\t{}", svc.docker.id.as_deref().unwrap_or(""));
    let _ = write!(out, "\nName:\t\t{}", d.name.as_deref().unwrap_or(""));
    map_block(&mut out, "Labels", d.labels.as_ref(), "=");
    out.push_str("\nService Mode:");
    let mode = d.mode.clone().unwrap_or_default();
    if mode.global.is_some() {
        out.push_str("\tGlobal");
    } else if let Some(r) = &mode.replicated {
        out.push_str("\tReplicated");
        if let Some(replicas) = r.replicas {
            let _ = write!(out, "\n Replicas:\t{replicas}");
        }
    }
    update_status(&mut out, svc);
    placement(&mut out, tt.docker.placement.as_ref());
    rollout(&mut out, spec);
    container(&mut out, cd);
    resources(&mut out, tt.docker.resources.as_ref());
    if let Some(list) = tt.docker.networks.as_ref().filter(|l| !l.is_empty()) {
        out.push_str("\nNetworks:");
        for net in list {
            let target = net.target.clone().unwrap_or_default();
            let _ = write!(out, " {}", networks.get(&target).cloned().unwrap_or(target));
        }
        out.push(' ');
    }
    let mode = spec
        .endpoint_spec
        .as_ref()
        .and_then(|e| e.docker.mode)
        .map(|m| m.to_string())
        .unwrap_or_default();
    let _ = write!(out, "\nEndpoint Mode:\t{mode}");
    let ports = svc
        .endpoint
        .as_ref()
        .and_then(|e| e.ports.clone())
        .unwrap_or_default();
    if !ports.is_empty() {
        out.push_str("\nPorts:");
        for p in &ports {
            let p = &p.docker;
            let text = |x: Option<String>| x.unwrap_or_default();
            let _ = write!(
                out,
                "\n PublishedPort = {}\n  Protocol = {}\n  TargetPort = {}\n  PublishMode = {}",
                p.published_port.unwrap_or(0),
                text(p.protocol.map(|x| x.to_string())),
                p.target_port.unwrap_or(0),
                text(p.publish_mode.map(|x| x.to_string())),
            );
        }
        out.push(' ');
    }
    if let Some(h) = &c.healthcheck {
        let _ = write!(
            out,
            "\n Healthcheck:\n  Interval = {}\n  Retries = {}\n  StartPeriod =\t{}\n  Timeout =\t{}",
            go_duration(n(h.interval)),
            h.retries.unwrap_or(0),
            go_duration(n(h.start_period)),
            go_duration(n(h.timeout)),
        );
        if let Some(tests) = h.test.as_ref().filter(|t| !t.is_empty()) {
            out.push_str("\n  Tests:");
            for t in tests {
                let _ = write!(out, "\n\t Test = {t}");
            }
            out.push(' ');
        }
    }
    out.push('\n');
    out
}

fn update_status(out: &mut String, svc: &wire::Service) {
    let Some(st) = svc.docker.update_status.as_ref() else {
        return;
    };
    let Some(state) = st.state.map(|s| s.to_string()).filter(|s| !s.is_empty()) else {
        return;
    };
    let _ = write!(out, "\nUpdateStatus:\n State:\t\t{state}");
    if st.started_at.is_some() {
        let _ = write!(out, "\n Started:\t{}", ago_at(st.started_at.as_deref()));
    }
    if state == "completed" && st.completed_at.is_some() {
        let _ = write!(out, "\n Completed:\t{}", ago_at(st.completed_at.as_deref()));
    }
    let _ = write!(out, "\n Message:\t{}", st.message.as_deref().unwrap_or(""));
}

fn placement(out: &mut String, p: Option<&wire::TaskSpecPlacement>) {
    out.push_str("\nPlacement:");
    let Some(p) = p else {
        return;
    };
    if let Some(c) = p.constraints.as_ref().filter(|c| !c.is_empty()) {
        let _ = write!(out, "\n Constraints:\t[{}]", c.join(" "));
    }
    let prefs: Vec<String> = p
        .preferences
        .iter()
        .flatten()
        .filter_map(|pref| pref.spread.as_ref())
        .map(|s| format!("spread={}", s.spread_descriptor.as_deref().unwrap_or("")))
        .collect();
    if !prefs.is_empty() {
        let _ = write!(out, "\n Preferences:   [{}]", prefs.join(" "));
    }
    let max = n(p.max_replicas);
    if max > 0 {
        let _ = write!(out, "\n Max Replicas Per Node:   {max}");
    }
}

/// `UpdateConfig:` and `RollbackConfig:`.
fn rollout(out: &mut String, spec: &wire::ServiceSpec) {
    let d = &spec.docker;
    // bollard has one type for each, with the same fields.
    macro_rules! fields {
        ($config:expr) => {
            $config.as_ref().map(|u| {
                (
                    u.parallelism,
                    u.delay,
                    u.failure_action.map(|a| a.to_string()),
                    u.monitor,
                    u.max_failure_ratio,
                    u.order.map(|o| o.to_string()),
                )
            })
        };
    }
    let update = fields!(d.update_config);
    let rollback = fields!(d.rollback_config);
    for (title, order, config) in [
        ("UpdateConfig", "Update order:      ", update),
        ("RollbackConfig", "Rollback order:    ", rollback),
    ] {
        let Some((parallelism, delay, action, monitor, ratio, how)) = config else {
            continue;
        };
        let _ = write!(out, "\n{title}:\n Parallelism:\t{}", n(parallelism));
        if n(delay) > 0 {
            let _ = write!(out, "\n Delay:\t\t{}", go_duration(n(delay)));
        }
        let _ = write!(out, "\n On failure:\t{}", action.unwrap_or_default());
        if n(monitor) > 0 {
            let _ = write!(out, "\n Monitoring Period: {}", go_duration(n(monitor)));
        }
        // docker's ratio is a float32.
        let _ = write!(
            out,
            "\n Max failure ratio: {}",
            ratio.map_or(0.0, |r| r as f32)
        );
        let _ = write!(out, "\n {order}{}", how.unwrap_or_default());
    }
}

fn container(out: &mut String, c: &wire::docker::TaskSpecContainerSpec) {
    let _ = write!(
        out,
        "\nContainerSpec:\n Image:\t\t{}",
        c.image.as_deref().unwrap_or("")
    );
    let words = |list: &Option<Vec<String>>| {
        list.as_ref()
            .filter(|l| !l.is_empty())
            .map(|l| l.iter().map(|x| format!("{x} ")).collect::<String>())
    };
    if let Some(args) = words(&c.args) {
        let _ = write!(out, "\n Args:\t\t{args}");
    }
    if let Some(env) = words(&c.env) {
        let _ = write!(out, "\n Env:\t\t{env}");
    }
    if let Some(dir) = c.dir.as_deref().filter(|d| !d.is_empty()) {
        let _ = write!(out, "\n Dir:\t\t{dir}");
    }
    if let Some(init) = c.init {
        let _ = write!(out, "\n Init:\t\t{init}");
    }
    if let Some(user) = c.user.as_deref().filter(|u| !u.is_empty()) {
        let _ = write!(out, "\n User: {user}");
    }
    let add = c.capability_add.clone().unwrap_or_default();
    let drop = c.capability_drop.clone().unwrap_or_default();
    if !add.is_empty() || !drop.is_empty() {
        out.push_str("\nCapabilities:");
        if !add.is_empty() {
            let _ = write!(out, "\n Add: {}", add.join(", "));
        }
        if !drop.is_empty() {
            let _ = write!(out, "\n Drop: {}", drop.join(", "));
        }
    }
    map_block(out, "SysCtls", c.sysctls.as_ref(), ": ");
    if let Some(ulimits) = c.ulimits.as_ref().filter(|u| !u.is_empty()) {
        out.push_str("\nUlimits:");
        let by_name: BTreeMap<String, String> = ulimits
            .iter()
            .map(|u| {
                (
                    u.name.clone().unwrap_or_default(),
                    format!("{}:{}", u.soft.unwrap_or(0), u.hard.unwrap_or(0)),
                )
            })
            .collect();
        for (k, v) in by_name {
            let _ = write!(out, "\n {k}: {v}");
        }
    }
    let mounts = c.mounts.clone().unwrap_or_default();
    if !mounts.is_empty() {
        out.push_str("\nMounts:");
    }
    for m in &mounts {
        let _ = write!(
            out,
            "\n Target:\t{}\n  Source:\t{}\n  ReadOnly:\t{}\n  Type:\t\t{}",
            m.target.as_deref().unwrap_or(""),
            m.source.as_deref().unwrap_or(""),
            m.read_only.unwrap_or(false),
            m.typ.map(|t| t.to_string()).unwrap_or_default(),
        );
    }
    let configs = c.configs.as_deref().unwrap_or_default().iter().map(|r| {
        let target = r.file.as_ref().and_then(|f| f.name.as_deref());
        (target, r.config_name.as_deref())
    });
    files(out, "Configs", configs);
    let secrets = c.secrets.as_deref().unwrap_or_default().iter().map(|r| {
        let target = r.file.as_ref().and_then(|f| f.name.as_deref());
        (target, r.secret_name.as_deref())
    });
    files(out, "Secrets", secrets);
}

/// docker's `Configs:`/`Secrets:` block: each file's target, then its source.
fn files<'a>(
    out: &mut String,
    title: &str,
    list: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>,
) {
    let mut list = list.peekable();
    if list.peek().is_none() {
        return;
    }
    let _ = write!(out, "\n{title}:");
    for (target, source) in list {
        let _ = write!(
            out,
            "\n Target:\t{}\n  Source:\t{}",
            target.unwrap_or(""),
            source.unwrap_or("")
        );
    }
}

fn resources(out: &mut String, r: Option<&wire::TaskSpecResources>) {
    let Some(r) = r else {
        return;
    };
    out.push_str("\nResources:");
    let reservations = r.reservations.clone().unwrap_or_default();
    let (cpu, memory) = (n(reservations.nano_cpus), n(reservations.memory_bytes));
    if cpu > 0 || memory > 0 {
        out.push_str("\n Reservations:");
        if cpu > 0 {
            let _ = write!(out, "\n  CPU:\t\t{}", go_float(cpu as f64 / 1e9));
        }
        if memory > 0 {
            let _ = write!(out, "\n  Memory:\t{}", bytes_size(memory));
        }
    }
    let limits = r.limits.clone().unwrap_or_default();
    let (cpu, memory, pids) = (n(limits.nano_cpus), n(limits.memory_bytes), n(limits.pids));
    if cpu > 0 || memory > 0 || pids > 0 {
        out.push_str("\n Limits:");
        if cpu > 0 {
            let _ = write!(out, "\n  CPU:\t\t{}", go_float(cpu as f64 / 1e9));
        }
        if memory > 0 {
            let _ = write!(out, "\n  Memory:\t{}", bytes_size(memory));
        }
    }
    if pids > 0 {
        let _ = write!(out, "\n  PIDs:\t\t{pids}");
    }
}

/// docker's block of a string map (`Labels:`, `SysCtls:`): one key a line,
/// sorted, `KEY{sep}VALUE` or the key alone when its value is empty.
fn map_block(out: &mut String, title: &str, map: Option<&HashMap<String, String>>, sep: &str) {
    let Some(map) = map.filter(|m| !m.is_empty()) else {
        return;
    };
    let _ = write!(out, "\n{title}:");
    for (k, v) in map.iter().collect::<BTreeMap<_, _>>() {
        if v.is_empty() {
            let _ = write!(out, "\n {k}");
        } else {
            let _ = write!(out, "\n {k}{sep}{v}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_go_prints_them() {
        assert_eq!(go_float(0.5), "0.5");
        assert_eq!(go_float(2.0), "2");
        assert_eq!(go_float(0.25), "0.25");
    }

    #[test]
    fn a_bare_service_reads_as_docker_s_template_renders_it() {
        let svc: wire::Service = serde_json::from_value(serde_json::json!({
            "ID": "abc",
            "Spec": {"Name": "web", "Mode": {"Replicated": {"Replicas": 1}},
                     "TaskTemplate": {"ContainerSpec": {"Image": "nginx"}},
                     "EndpointSpec": {"Mode": "vip"}},
        }))
        .expect("a service");
        assert_eq!(
            service(&svc, &HashMap::new()),
            "\nID:\t\tabc\nName:\t\tweb\nService Mode:\tReplicated\n Replicas:\t1\nPlacement:\nContainerSpec:\n Image:\t\tnginx\nEndpoint Mode:\tvip\n"
        );
    }

    /// What docker 28 printed for a service shoal served (ports and a
    /// health check: the blocks the end-to-end comparison has no port for).
    #[test]
    fn ports_and_the_health_check_read_as_docker_printed_them() {
        let svc: wire::Service = serde_json::from_value(serde_json::json!({
            "ID": "pbjxm7ahud9z9prfwy5vcqbl6",
            "Spec": {"Name": "pw", "Mode": {"Replicated": {"Replicas": 2}},
                     "TaskTemplate": {"ContainerSpec": {"Image": "/bin/sleep", "Args": ["1000"],
                         "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000u64,
                                         "Timeout": 0, "StartPeriod": 0, "Retries": 0}},
                                      "Placement": {"Constraints": ["node.role==manager"],
                                                    "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}]}},
                     "UpdateConfig": {"Parallelism": 2, "Delay": 3_000_000_000u64, "FailureAction": "pause",
                                      "Monitor": 5_000_000_000u64, "MaxFailureRatio": 0, "Order": "stop-first"},
                     "EndpointSpec": {"Mode": "vip"}},
            "Endpoint": {"Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080,
                                    "PublishMode": "ingress"}]},
        }))
        .expect("a service");
        assert_eq!(
            service(&svc, &HashMap::new()),
            "\nID:\t\tpbjxm7ahud9z9prfwy5vcqbl6\nName:\t\tpw\nService Mode:\tReplicated\n Replicas:\t2\n\
             Placement:\n Constraints:\t[node.role==manager]\n Preferences:   [spread=node.labels.zone]\n\
             UpdateConfig:\n Parallelism:\t2\n Delay:\t\t3s\n On failure:\tpause\n Monitoring Period: 5s\n\
             \x20Max failure ratio: 0\n Update order:      stop-first\n\
             ContainerSpec:\n Image:\t\t/bin/sleep\n Args:\t\t1000 \n\
             Endpoint Mode:\tvip\nPorts:\n PublishedPort = 8080\n  Protocol = tcp\n  TargetPort = 80\n\
             \x20 PublishMode = ingress \n Healthcheck:\n  Interval = 5s\n  Retries = 0\n\
             \x20 StartPeriod =\t0s\n  Timeout =\t0s\n  Tests:\n\t Test = CMD-SHELL\n\t Test = true \n"
        );
    }
}
