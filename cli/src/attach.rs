//! `--network` values, docker's grammar: `NAME`, or the long form
//! `name=NAME,alias=A[,alias=B]` (`target=` is `name=`'s synonym).

use serde_json::{json, Value};

/// One `TaskTemplate.Networks` entry.
pub fn parse(value: &str) -> Result<Value, String> {
    if !value.contains('=') {
        if value.is_empty() {
            return Err("invalid argument \"\" for \"--network\" flag: empty network name".into());
        }
        return Ok(json!({ "Target": value }));
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
    Ok(match aliases.is_empty() {
        true => json!({ "Target": target }),
        false => json!({ "Target": target, "Aliases": aliases }),
    })
}

/// For clap: checks the value and keeps it as given.
pub fn value(s: &str) -> Result<String, String> {
    parse(s).map(|_| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_forms() {
        assert_eq!(parse("web").unwrap(), json!({ "Target": "web" }));
        assert_eq!(
            parse("name=web,alias=a,alias=b").unwrap(),
            json!({ "Target": "web", "Aliases": ["a", "b"] })
        );
        assert!(parse("alias=a").is_err());
        assert!(parse("name=web,bogus=1").is_err());
        assert!(parse("").is_err());
    }
}
