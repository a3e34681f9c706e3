//! `--secret`/`--config` of `service create`, and `--secret-add/-rm`,
//! `--config-add/-rm` of `service update`, in docker's grammar: `NAME` or
//! `source=NAME,target=PATH,uid=0,gid=0,mode=0444`.

use shoal_node::api::wire::{
    self, TaskSpecContainerSpecConfigs, TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1,
    TaskSpecContainerSpecSecrets,
};

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

/// One `--secret`/`--config` value: the object's name and its file.
pub struct FileRef {
    pub source: String,
    pub file: TaskSpecContainerSpecFile,
}

impl FileRef {
    fn secret(self) -> TaskSpecContainerSpecSecrets {
        TaskSpecContainerSpecSecrets {
            secret_name: Some(self.source),
            file: Some(self.file),
            secret_id: None,
        }
    }

    fn config(self) -> TaskSpecContainerSpecConfigs {
        let f = self.file;
        TaskSpecContainerSpecConfigs {
            config_name: Some(self.source),
            file: Some(TaskSpecContainerSpecFile1 {
                name: f.name,
                uid: f.uid,
                gid: f.gid,
                mode: f.mode,
            }),
            ..Default::default()
        }
    }
}

/// One reference, in docker's grammar.
pub fn parse(text: &str, secret: bool) -> anyhow::Result<FileRef> {
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
    Ok(FileRef {
        source,
        file: TaskSpecContainerSpecFile {
            name: Some(target),
            uid: Some(uid),
            gid: Some(gid),
            mode: Some(mode),
        },
    })
}

impl CreateFileFlags {
    pub fn apply(&self, c: &mut wire::ContainerSpec) -> anyhow::Result<()> {
        let secrets = self
            .secret
            .iter()
            .map(|s| parse(s, true).map(FileRef::secret))
            .collect::<anyhow::Result<_>>()?;
        let configs = self
            .config
            .iter()
            .map(|s| parse(s, false).map(FileRef::config))
            .collect::<anyhow::Result<_>>()?;
        c.docker.secrets = Some(secrets);
        c.docker.configs = Some(configs);
        Ok(())
    }
}

/// `--X-rm` then `--X-add` on a list of references: a removal matches the
/// object's name or id; an addition replaces the reference of its name.
fn edit<R>(
    list: &mut Vec<R>,
    names: impl Fn(&R) -> [Option<&String>; 2],
    make: impl Fn(FileRef) -> R,
    secret: bool,
    add: &[String],
    rm: &[String],
) -> anyhow::Result<()> {
    let named = |r: &R, n: &str| names(r).iter().any(|x| x.is_some_and(|x| x == n));
    list.retain(|r| !rm.iter().any(|n| named(r, n)));
    for text in add {
        let new = parse(text, secret)?;
        list.retain(|r| !named(r, &new.source));
        list.push(make(new));
    }
    Ok(())
}

impl UpdateFileFlags {
    pub fn apply(&self, c: &mut wire::ContainerSpec) -> anyhow::Result<()> {
        let mut secrets = c.docker.secrets.take().unwrap_or_default();
        edit(
            &mut secrets,
            |r: &TaskSpecContainerSpecSecrets| [r.secret_name.as_ref(), r.secret_id.as_ref()],
            FileRef::secret,
            true,
            &self.secret_add,
            &self.secret_rm,
        )?;
        c.docker.secrets = Some(secrets);
        let mut configs = c.docker.configs.take().unwrap_or_default();
        edit(
            &mut configs,
            |r: &TaskSpecContainerSpecConfigs| [r.config_name.as_ref(), r.config_id.as_ref()],
            FileRef::config,
            false,
            &self.config_add,
            &self.config_rm,
        )?;
        c.docker.configs = Some(configs);
        Ok(())
    }
}
