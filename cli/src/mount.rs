//! docker's `--mount` value: comma-separated `key=value` fields (CSV, so a
//! field may be quoted), read as docker/cli's `opts.MountOpt` reads them,
//! with its messages, into the Engine API's `Mount`.

use std::collections::HashMap;

use bollard::models::{
    Mount, MountBindOptions, MountBindOptionsPropagationEnum, MountTmpfsOptions, MountType,
    MountVolumeOptions, MountVolumeOptionsDriverConfig,
};

/// The CSV fields of one value (docker reads it with Go's csv reader).
fn fields(value: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' if quoted => quoted = false,
            '"' if cur.is_empty() => quoted = true,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if quoted {
        return Err(
            "parse error on line 1, column 1: extraneous or missing \" in quoted-field".into(),
        );
    }
    out.push(cur);
    Ok(out)
}

fn parse_bool(key: &str, val: &str, has_value: bool) -> Result<bool, String> {
    if !has_value {
        return Ok(true);
    }
    match val.to_lowercase().as_str() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(format!(
            "invalid value for '{key}': invalid boolean value ({val:?}): must be one of \"true\", \"1\", \"false\", or \"0\" (default \"true\")"
        )),
    }
}

fn set_map(map: &mut Option<HashMap<String, String>>, val: &str) {
    let (k, v) = val.split_once('=').unwrap_or((val, ""));
    map.get_or_insert_with(HashMap::new)
        .insert(k.to_string(), v.to_string());
}

/// A size as docker's `units.RAMInBytes` reads it (`64m`, `1g`, `512`).
fn ram_bytes(val: &str) -> Option<i64> {
    let lower = val.trim().to_lowercase();
    let digits_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(digits_end);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return None,
    };
    let bytes = n * mult;
    (bytes >= 0.0 && bytes < i64::MAX as f64).then_some(bytes as i64)
}

fn bind(m: &mut Mount) -> &mut MountBindOptions {
    m.bind_options.get_or_insert_with(Default::default)
}

fn volume(m: &mut Mount) -> &mut MountVolumeOptions {
    m.volume_options.get_or_insert_with(Default::default)
}

fn driver(m: &mut Mount) -> &mut MountVolumeOptionsDriverConfig {
    volume(m).driver_config.get_or_insert_with(Default::default)
}

fn tmpfs(m: &mut Mount) -> &mut MountTmpfsOptions {
    m.tmpfs_options.get_or_insert_with(Default::default)
}

/// One `--mount` value.
pub fn parse(value: &str) -> Result<Mount, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("value is empty".into());
    }
    let mut m = Mount {
        typ: Some(MountType::VOLUME),
        ..Mount::default()
    };
    let mut type_word = "volume".to_string();
    for field in fields(value)? {
        let (key, val, has_value) = match field.split_once('=') {
            Some((k, v)) => (k, v, true),
            None => (field.as_str(), "", false),
        };
        if key.trim() != key {
            return Err(format!(
                "invalid option '{}' in '{field}': option should not have whitespace",
                key.trim()
            ));
        }
        if has_value {
            if val.trim().is_empty() {
                return Err(format!("invalid value for '{key}': value is empty"));
            }
            if val.trim() != val {
                return Err(format!(
                    "invalid value for '{key}' in '{field}': value should not have whitespace"
                ));
            }
        }
        let key = key.to_lowercase();
        if !has_value
            && !matches!(
                key.as_str(),
                "readonly" | "ro" | "volume-nocopy" | "bind-nonrecursive" | "bind-create-src"
            )
        {
            return Err(format!("invalid field '{field}' must be a key=value pair"));
        }
        match key.as_str() {
            "type" => {
                type_word = val.to_lowercase();
                m.typ = type_word.parse().ok();
            }
            "source" | "src" => {
                let mut source = val.to_string();
                if !source.starts_with('/') && source.starts_with('.') {
                    if let Ok(abs) = std::path::absolute(&source) {
                        source = abs.to_string_lossy().into_owned();
                    }
                }
                m.source = Some(source);
            }
            "target" | "dst" | "destination" => m.target = Some(val.to_string()),
            "readonly" | "ro" => m.read_only = Some(parse_bool(&key, val, has_value)?),
            "consistency" => m.consistency = Some(val.to_lowercase()),
            "bind-propagation" => {
                bind(&mut m).propagation = Some(
                    val.to_lowercase()
                        .parse::<MountBindOptionsPropagationEnum>()
                        .map_err(|_| format!("invalid propagation mode: {val}"))?,
                )
            }
            "bind-nonrecursive" => {
                return Err(
                    "bind-nonrecursive is deprecated, use bind-recursive=disabled instead".into(),
                )
            }
            "bind-recursive" => match val {
                "enabled" => {}
                "disabled" => bind(&mut m).non_recursive = Some(true),
                "writable" | "readonly" => {
                    return Err(format!(
                        "bind-recursive={val} is not supported by shoal (enabled or disabled)"
                    ))
                }
                _ => {
                    return Err(format!(
                        "invalid value for {key}: {val} (must \"enabled\", \"disabled\", \"writable\", or \"readonly\")"
                    ))
                }
            },
            "volume-nocopy" => volume(&mut m).no_copy = Some(parse_bool(&key, val, has_value)?),
            "volume-label" => set_map(&mut volume(&mut m).labels, val),
            "volume-driver" => driver(&mut m).name = Some(val.to_string()),
            "volume-opt" => set_map(&mut driver(&mut m).options, val),
            "tmpfs-size" => {
                tmpfs(&mut m).size_bytes =
                    Some(ram_bytes(val).ok_or_else(|| format!("invalid value for {key}: {val}"))?)
            }
            "tmpfs-mode" => {
                tmpfs(&mut m).mode = Some(
                    i64::from_str_radix(val, 8)
                        .ok()
                        .filter(|m| (0..=0o7777).contains(m))
                        .ok_or_else(|| format!("invalid value for {key}: {val}"))?,
                )
            }
            _ => return Err(format!("unknown option '{key}' in '{field}'")),
        }
    }
    validate(&m, &type_word)?;
    Ok(m)
}

/// docker/cli's `validateMountOptions` (a missing target is the daemon's to say).
fn validate(m: &Mount, type_word: &str) -> Result<(), String> {
    // The daemon's words: docker's client leaves the type to the daemon.
    let kind = m
        .typ
        .filter(|k| matches!(k, MountType::BIND | MountType::VOLUME | MountType::TMPFS))
        .ok_or_else(|| {
            format!("invalid mount config for type {type_word:?}: mount type unknown")
        })?;
    let only = |set: bool, opts: &str| -> Result<(), String> {
        if set {
            Err(format!(
                "cannot mix '{opts}-*' options with mount type '{type_word}'"
            ))
        } else {
            Ok(())
        }
    };
    only(m.bind_options.is_some() && kind != MountType::BIND, "bind")?;
    only(
        m.volume_options.is_some() && kind != MountType::VOLUME,
        "volume",
    )?;
    only(
        m.tmpfs_options.is_some() && kind != MountType::TMPFS,
        "tmpfs",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockers_grammar_and_messages() {
        let m = parse("type=bind,src=/srv,dst=/data,ro,bind-propagation=rslave").expect("bind");
        assert_eq!(m.typ, Some(MountType::BIND));
        assert_eq!(m.read_only, Some(true));
        assert_eq!(
            m.bind_options.and_then(|b| b.propagation),
            Some(MountBindOptionsPropagationEnum::RSLAVE)
        );
        let v =
            parse("source=db,target=/var/lib/db,volume-label=a=b,volume-nocopy").expect("volume");
        assert_eq!(v.typ, Some(MountType::VOLUME));
        let opts = v.volume_options.expect("options");
        assert_eq!(opts.no_copy, Some(true));
        assert_eq!(
            opts.labels.and_then(|l| l.get("a").cloned()),
            Some("b".into())
        );
        let t = parse("type=tmpfs,dst=/scratch,tmpfs-size=64m,tmpfs-mode=1770").expect("tmpfs");
        let t = t.tmpfs_options.expect("tmpfs options");
        assert_eq!(t.size_bytes, Some(64 << 20));
        assert_eq!(t.mode, Some(0o1770));
        assert_eq!(
            parse("type=tmpfs,dst=/a,volume-nocopy").unwrap_err(),
            "cannot mix 'volume-*' options with mount type 'tmpfs'"
        );
        assert_eq!(
            parse("type=bind,dst=/a,color=red").unwrap_err(),
            "unknown option 'color' in 'color=red'"
        );
        assert_eq!(
            parse("type=bind,dst").unwrap_err(),
            "invalid field 'dst' must be a key=value pair"
        );
        assert_eq!(
            parse("type=nfs,dst=/a").unwrap_err(),
            "invalid mount config for type \"nfs\": mount type unknown"
        );
    }
}
