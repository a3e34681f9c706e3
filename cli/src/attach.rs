//! `--network` values, docker's grammar: `NAME`, or the long form
//! `name=NAME,alias=A[,alias=B]` (`target=` is `name=`'s synonym).

use shoal_node::api::wire::NetworkAttachmentConfig;

/// One `TaskTemplate.Networks` entry.
pub fn parse(value: &str) -> Result<NetworkAttachmentConfig, String> {
    if !value.contains('=') {
        if value.is_empty() {
            return Err("invalid argument \"\" for \"--network\" flag: empty network name".into());
        }
        return Ok(NetworkAttachmentConfig {
            target: Some(value.to_string()),
            ..Default::default()
        });
    }
    let mut target = None;
    let mut aliases = Vec::new();
    for part in value.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("invalid field '{part}' must be a key=value pair"))?;
        match k.trim().to_ascii_lowercase().as_str() {
            "name" | "target" => target = Some(v.to_string()),
            "alias" => aliases.push(v.to_string()),
            "driver-opt" => {
                return Err("network driver options are not supported".into());
            }
            other => return Err(format!("invalid field key {other}")),
        }
    }
    let target = target.filter(|t| !t.is_empty()).ok_or_else(|| {
        format!("invalid argument \"{value}\" for \"--network\" flag: network name is required")
    })?;
    Ok(NetworkAttachmentConfig {
        target: Some(target),
        aliases: (!aliases.is_empty()).then_some(aliases),
        driver_opts: None,
    })
}

/// For clap: checks the value and keeps it as given.
pub fn value(s: &str) -> Result<String, String> {
    parse(s).map(|_| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn short_and_long_forms() {
        assert_eq!(json!(parse("web").unwrap()), json!({ "Target": "web" }));
        assert_eq!(
            json!(parse("name=web,alias=a,alias=b").unwrap()),
            json!({ "Target": "web", "Aliases": ["a", "b"] })
        );
        assert!(parse("alias=a").is_err());
        assert!(parse("name=web,bogus=1").is_err());
        assert!(parse("").is_err());
    }
}
