//! `--secret`/`--config` of `service create`, and `--secret-add/-rm`,
//! `--config-add/-rm` of `service update`, in docker's grammar: `NAME` or
//! `source=NAME,target=PATH,uid=0,gid=0,mode=0444`.

use serde_json::{json, Map, Value};

#[derive(clap::Args, Default)]
pub struct CreateFileFlags {
    /// Specify secrets to expose to the service
    #[arg(long = "secret")]
    pub secret: Vec<String>,
    /// Specify configurations to expose to the service
    #[arg(long = "config")]
    pub config: Vec<String>,
}

#[derive(clap::Args, Default)]
pub struct UpdateFileFlags {
    /// Add or update a secret on a service
    #[arg(long = "secret-add")]
    pub secret_add: Vec<String>,
    /// Remove a secret
    #[arg(long = "secret-rm")]
    pub secret_rm: Vec<String>,
    /// Add or update a config file on a service
    #[arg(long = "config-add")]
    pub config_add: Vec<String>,
    /// Remove a configuration file
    #[arg(long = "config-rm")]
    pub config_rm: Vec<String>,
}

fn keys(secret: bool) -> (&'static str, &'static str) {
    match secret {
        true => ("SecretName", "SecretID"),
        false => ("ConfigName", "ConfigID"),
    }
}

/// One reference in the Engine API's shape.
pub fn parse(text: &str, secret: bool) -> anyhow::Result<Value> {
    let what = if secret { "secret" } else { "config" };
    let mut source = String::new();
    let mut target = String::new();
    let (mut uid, mut gid, mut mode) = ("0".to_string(), "0".to_string(), 0o444u32);
    if !text.contains('=') {
        source = text.to_string();
    } else {
        for part in text.split(',') {
            let Some((k, v)) = part.split_once('=') else {
                anyhow::bail!("invalid field '{part}' must be a key=value pair");
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "source" | "src" => source = v.to_string(),
                "target" => target = v.to_string(),
                "uid" => uid = v.to_string(),
                "gid" => gid = v.to_string(),
                "mode" => {
                    mode = u32::from_str_radix(v, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| anyhow::anyhow!("invalid mode specified: {v}"))?
                }
                other => anyhow::bail!("invalid field key: {other}"),
            }
        }
    }
    if source.is_empty() {
        anyhow::bail!("invalid {what}: source is required");
    }
    if target.is_empty() {
        target = source.clone();
    }
    let (name_key, _) = keys(secret);
    Ok(json!({
        name_key: source,
        "File": { "Name": target, "UID": uid, "GID": gid, "Mode": mode },
    }))
}

impl CreateFileFlags {
    pub fn apply(&self, container_spec: &mut Value) -> anyhow::Result<()> {
        let secrets: Vec<Value> = self
            .secret
            .iter()
            .map(|s| parse(s, true))
            .collect::<anyhow::Result<_>>()?;
        let configs: Vec<Value> = self
            .config
            .iter()
            .map(|s| parse(s, false))
            .collect::<anyhow::Result<_>>()?;
        container_spec["Secrets"] = json!(secrets);
        container_spec["Configs"] = json!(configs);
        Ok(())
    }
}

fn edit(
    c: &mut Map<String, Value>,
    secret: bool,
    add: &[String],
    rm: &[String],
) -> anyhow::Result<()> {
    let (list_key, (name_key, id_key)) = match secret {
        true => ("Secrets", keys(true)),
        false => ("Configs", keys(false)),
    };
    let mut list = c
        .get(list_key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let named = |r: &Value, n: &str| {
        r.get(name_key).and_then(Value::as_str) == Some(n)
            || r.get(id_key).and_then(Value::as_str) == Some(n)
    };
    list.retain(|r| !rm.iter().any(|n| named(r, n)));
    for text in add {
        let new = parse(text, secret)?;
        let name = new[name_key].as_str().unwrap_or("").to_string();
        list.retain(|r| !named(r, &name));
        list.push(new);
    }
    c.insert(list_key.into(), json!(list));
    Ok(())
}

impl UpdateFileFlags {
    pub fn apply(&self, container_spec: &mut Map<String, Value>) -> anyhow::Result<()> {
        edit(container_spec, true, &self.secret_add, &self.secret_rm)?;
        edit(container_spec, false, &self.config_add, &self.config_rm)
    }
}
