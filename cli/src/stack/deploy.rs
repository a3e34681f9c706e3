//! `stack deploy`: docker's client-side deploy (docker/cli
//! `cli/command/stack/deploy_composefile.go`), plus shoal's: an unchanged
//! service is not updated, a changed secret or config file rotates the
//! object in place (docs/secrets.md) so its services roll, `depends_on` is
//! a creation order, the deploy waits for convergence, and `--dry-run`
//! prints the plan and writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::anyhow;
use base64::Engine;
use serde_json::{json, Value};
use shoal_node::api::{views, wire};

use super::convert::{self, Plan, LABEL_IMAGE, LABEL_NAMESPACE};
use super::diff;
use crate::client::{enc, Client, DaemonError};

pub struct Options {
    pub stack: String,
    pub prune: bool,
    pub detach: bool,
    pub dry_run: bool,
    pub quiet: bool,
}

/// The stack's services now in the cluster, by full name.
pub async fn stack_services(
    client: &Client,
    stack: &str,
) -> anyhow::Result<BTreeMap<String, wire::Service>> {
    let filter = json!({"label": {format!("{LABEL_NAMESPACE}={stack}"): true}}).to_string();
    let list: Vec<wire::Service> = client
        .get_as(&format!("/services?filters={}", enc(&filter)))
        .await?;
    Ok(list
        .into_iter()
        .filter(|s| {
            s.spec
                .as_ref()
                .and_then(|s| s.docker.labels.as_ref())
                .and_then(|l| l.get(LABEL_NAMESPACE))
                .is_some_and(|n| n == stack)
        })
        .map(|s| {
            let name = s
                .spec
                .as_ref()
                .and_then(|s| s.docker.name.clone())
                .unwrap_or_default();
            (name, s)
        })
        .collect())
}

/// The stack's objects of one kind (`networks`, `secrets`, `configs`): name -> id.
pub async fn stack_objects(
    client: &Client,
    kind: &str,
    stack: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let filter = json!({"label": {format!("{LABEL_NAMESPACE}={stack}"): true}}).to_string();
    let list: Vec<Value> = client
        .get_as(&format!("/{kind}?filters={}", enc(&filter)))
        .await?;
    Ok(list
        .iter()
        .filter(|o| {
            let labels = if kind == "networks" {
                &o["Labels"]
            } else {
                &o["Spec"]["Labels"]
            };
            labels[LABEL_NAMESPACE] == stack
        })
        .map(|o| {
            let name = if kind == "networks" {
                &o["Name"]
            } else {
                &o["Spec"]["Name"]
            };
            // dockerd's network objects say `Id`, the others `ID`.
            let id = if kind == "networks" {
                &o["Id"]
            } else {
                &o["ID"]
            };
            (
                name.as_str().unwrap_or("").to_string(),
                id.as_str().unwrap_or("").to_string(),
            )
        })
        .collect())
}

/// The id of the object `kind/name`, or `None` if there is none.
async fn find(client: &Client, kind: &str, name: &str) -> anyhow::Result<Option<Value>> {
    match client.get(&format!("/{kind}/{}", enc(name))).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if DaemonError::is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The spec as the cluster would store it: what the daemon's parser and
/// renderer make of it, with networks named by id as the daemon keeps
/// them, so a spec sent and a spec read compare equal.
async fn normalized(client: &Client, spec: &wire::ServiceSpec) -> anyhow::Result<Value> {
    let mut spec = spec.clone();
    let nets = spec
        .task_template
        .as_mut()
        .and_then(|t| t.docker.networks.as_mut());
    for n in nets.into_iter().flatten() {
        if let Some(target) = &n.target {
            if let Some(net) = find(client, "networks", target).await? {
                n.target = net["Id"].as_str().map(str::to_string).or(n.target.take());
            }
        }
    }
    let model = views::service_spec_from_wire(&spec).map_err(|e| anyhow!(e))?;
    Ok(serde_json::to_value(views::service_spec(&model))?)
}

/// Fills each secret and config reference's id, by name, as docker's client does.
async fn resolve_refs(
    client: &Client,
    spec: &mut wire::ServiceSpec,
    dry_run: bool,
) -> anyhow::Result<()> {
    let Some(c) = spec
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
    else {
        return Ok(());
    };
    for r in c.docker.secrets.iter_mut().flatten() {
        let name = r.secret_name.clone().unwrap_or_default();
        match find(client, "secrets", &name).await? {
            Some(o) => r.secret_id = o["ID"].as_str().map(str::to_string),
            None if dry_run => {}
            None => return Err(anyhow!("secret not found: {name}")),
        }
    }
    for r in c.docker.configs.iter_mut().flatten() {
        let name = r.config_name.clone().unwrap_or_default();
        match find(client, "configs", &name).await? {
            Some(o) => r.config_id = o["ID"].as_str().map(str::to_string),
            None if dry_run => {}
            None => return Err(anyhow!("config not found: {name}")),
        }
    }
    Ok(())
}

/// Checks what must exist before anything is written.
async fn check_externals(client: &Client, plan: &Plan) -> anyhow::Result<()> {
    for (n, missing) in &plan.external_networks {
        if matches!(n.as_str(), "host" | "bridge" | "none") {
            continue;
        }
        match find(client, "networks", n).await? {
            None => return Err(anyhow!("{missing}")),
            Some(net) if net["Scope"] != "swarm" => {
                return Err(anyhow!("network {n:?} is declared as external, but it is not in the right scope: {} instead of \"swarm\"", net["Scope"]))
            }
            Some(_) => {}
        }
    }
    for (kind, names) in [
        ("secrets", &plan.external_secrets),
        ("configs", &plan.external_configs),
    ] {
        for (n, missing) in names {
            if find(client, kind, n).await?.is_none() {
                return Err(anyhow!("{missing}"));
            }
        }
    }
    Ok(())
}

pub async fn deploy(client: &Client, plan: Plan, o: &Options) -> anyhow::Result<()> {
    let stack = o.stack.as_str();
    let verb = |doing: &str, would: &str| {
        if o.dry_run {
            would.to_string()
        } else {
            doing.to_string()
        }
    };
    check_externals(client, &plan).await?;
    let existing = stack_services(client, stack).await?;
    let wanted: BTreeSet<String> = plan
        .services
        .keys()
        .map(|n| convert::scope(stack, n))
        .collect();
    if o.prune {
        for (name, svc) in &existing {
            if wanted.contains(name) {
                continue;
            }
            println!("{} service {name}", verb("Removing", "Would remove"));
            if !o.dry_run {
                let id = svc.docker.id.clone().unwrap_or_default();
                client.delete(&format!("/services/{}", enc(&id))).await?;
            }
        }
    }
    let networks = stack_objects(client, "networks", stack).await?;
    for (name, body) in &plan.networks {
        if networks.contains_key(name) || find(client, "networks", name).await?.is_some() {
            continue;
        }
        println!("{} network {name}", verb("Creating", "Would create"));
        if !o.dry_run {
            client
                .post("/networks/create", body.clone())
                .await
                .map_err(|e| anyhow!("failed to create network {name}: {e}"))?;
        }
    }
    for (kind, objects) in [("secret", &plan.secrets), ("config", &plan.configs)] {
        for obj in objects {
            let body = json!({
                "Name": obj.name,
                "Labels": obj.labels,
                "Data": base64::engine::general_purpose::STANDARD.encode(&obj.data),
            });
            match find(client, &format!("{kind}s"), &obj.name).await? {
                Some(cur) => {
                    if o.dry_run {
                        println!(
                            "Would update {kind} {} (only if its file changed: a stored value is not read back)",
                            obj.name
                        );
                        continue;
                    }
                    let id = cur["ID"].as_str().unwrap_or("");
                    let version = cur["Version"]["Index"].as_u64().unwrap_or(0);
                    client
                        .post(
                            &format!("/{kind}s/{}/update?version={version}", enc(id)),
                            body,
                        )
                        .await
                        .map_err(|e| anyhow!("failed to update {kind} {}: {e}", obj.name))?;
                }
                None => {
                    println!("{} {kind} {}", verb("Creating", "Would create"), obj.name);
                    if !o.dry_run {
                        client
                            .post(&format!("/{kind}s/create"), body)
                            .await
                            .map_err(|e| anyhow!("failed to create {kind} {}: {e}", obj.name))?;
                    }
                }
            }
        }
    }
    let mut ids = Vec::new();
    for short in plan.order.clone() {
        let name = convert::scope(stack, &short);
        let mut spec = plan.services[&short].clone();
        resolve_refs(client, &mut spec, o.dry_run)
            .await
            .map_err(|e| anyhow!("service {short}: {e}"))?;
        if let Some(svc) = existing.get(&name) {
            let current = svc.spec.clone().unwrap_or_default();
            let (id, version) = crate::commands::update::id_and_version(svc);
            // As docker's client: the image as the cluster has it when the
            // file names the same one, and the force-update counter kept.
            let same_image = spec.docker.labels.as_ref().and_then(|l| l.get(LABEL_IMAGE))
                == current
                    .docker
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_IMAGE));
            let tt = spec.task_template.get_or_insert_with(Default::default);
            let cur_tt = current.task_template.clone().unwrap_or_default();
            if same_image {
                if let (Some(c), Some(cur)) = (tt.container_spec.as_mut(), cur_tt.container_spec) {
                    c.docker.image = cur.docker.image;
                }
            }
            tt.docker.force_update = cur_tt.docker.force_update;
            let changes = diff::changes(
                &normalized(client, &current).await?,
                &normalized(client, &spec).await?,
            );
            if changes.is_empty() {
                if o.dry_run {
                    println!("Service {name} is up to date");
                }
                ids.push(id);
                continue;
            }
            if o.dry_run {
                println!("Would update service {name} (id: {id}):");
                for c in &changes {
                    println!("  {c}");
                }
                continue;
            }
            println!("Updating service {name} (id: {id})");
            let _: wire::ServiceUpdateResponse = client
                .post_as(
                    &format!("/services/{}/update?version={version}", enc(&id)),
                    &spec,
                )
                .await
                .map_err(|e| anyhow!("failed to update service {name}: {e}"))?;
            ids.push(id);
        } else {
            println!("{} service {name}", verb("Creating", "Would create"));
            if o.dry_run {
                continue;
            }
            for (dep, healthy) in plan.depends_on.get(&short).into_iter().flatten() {
                wait_started(client, &convert::scope(stack, dep), *healthy, o.quiet).await?;
            }
            let created: wire::ServiceCreateResponse = client
                .post_as("/services/create", &spec)
                .await
                .map_err(|e| anyhow!("failed to create service {name}: {e}"))?;
            ids.push(created.id.unwrap_or_default());
        }
    }
    if o.dry_run || o.detach {
        return Ok(());
    }
    super::converge::wait(client, &ids, o.quiet).await
}

/// Waits until `service` has a running task (a healthy one when `healthy`).
async fn wait_started(
    client: &Client,
    service: &str,
    healthy: bool,
    quiet: bool,
) -> anyhow::Result<()> {
    let what = if healthy { "healthy" } else { "running" };
    if !quiet {
        println!("Waiting for service {service} to be {what}");
    }
    loop {
        let tasks: Vec<wire::Task> = client
            .get_as(&format!(
                "/tasks?filters={}",
                enc(&json!({"service": {service: true}}).to_string())
            ))
            .await?;
        let up = tasks.iter().any(|t| {
            let status = t.status.as_ref();
            let running = status
                .and_then(|s| s.docker.state)
                .is_some_and(|s| s == wire::TaskState::RUNNING);
            let health_ok = !healthy
                || status
                    .and_then(|s| s.health.as_deref())
                    .is_some_and(|h| h == "healthy");
            running && health_ok
        });
        if up {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
