//! Variable substitution in compose values, as compose does it
//! (docker/cli `cli/compose/template`): `$VAR`, `${VAR}`,
//! `${VAR:-default}` (unset or empty), `${VAR-default}` (unset),
//! `${VAR:?error}` (unset or empty fails), `${VAR?error}` (unset fails),
//! and `$$` for a literal `$`.

use std::collections::BTreeMap;

/// Where variables come from: this shell's environment first, then the
/// `.env` file beside the first compose file.
pub struct Vars {
    pub env: BTreeMap<String, String>,
}

impl Vars {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
    }
}

/// Why a value could not be substituted (docker's words).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InterpolateError {
    #[error("required variable {name} is missing a value: {message}")]
    Required { name: String, message: String },
    #[error(
        "invalid interpolation format for {value:?}: you may need to escape any $ with another $"
    )]
    Format { value: String },
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `value` with every variable substituted.
pub fn substitute(value: &str, vars: &Vars) -> Result<String, InterpolateError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r.find('}').ok_or_else(|| InterpolateError::Format {
                value: value.to_string(),
            })?;
            out.push_str(&braced(&r[..end], value, vars)?);
            rest = &r[end + 1..];
        } else {
            let len = after.find(|c| !is_name_char(c)).unwrap_or(after.len());
            if len == 0 {
                return Err(InterpolateError::Format {
                    value: value.to_string(),
                });
            }
            out.push_str(vars.get(&after[..len]).unwrap_or(""));
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The inside of `${...}`.
fn braced(inner: &str, whole: &str, vars: &Vars) -> Result<String, InterpolateError> {
    let len = inner.find(|c| !is_name_char(c)).unwrap_or(inner.len());
    let (name, op) = inner.split_at(len);
    if name.is_empty() {
        return Err(InterpolateError::Format {
            value: whole.to_string(),
        });
    }
    let value = vars.get(name);
    let set_nonempty = value.is_some_and(|v| !v.is_empty());
    let required = |message: &str| InterpolateError::Required {
        name: name.to_string(),
        message: message.to_string(),
    };
    // A default or message may itself hold variables.
    let nested = |text: &str| substitute(text, vars);
    match op {
        "" => Ok(value.unwrap_or("").to_string()),
        _ if op.starts_with(":-") => match value {
            Some(v) if set_nonempty => Ok(v.to_string()),
            _ => nested(&op[2..]),
        },
        _ if op.starts_with('-') => match value {
            Some(v) => Ok(v.to_string()),
            None => nested(&op[1..]),
        },
        _ if op.starts_with(":?") => match value {
            Some(v) if set_nonempty => Ok(v.to_string()),
            _ => Err(required(&nested(&op[2..])?)),
        },
        _ if op.starts_with('?') => match value {
            Some(v) => Ok(v.to_string()),
            None => Err(required(&nested(&op[1..])?)),
        },
        _ => Err(InterpolateError::Format {
            value: whole.to_string(),
        }),
    }
}

/// A `.env` file's variables: `KEY=VALUE` lines, `#` comments and blank
/// lines skipped, `export ` allowed, one pair of matching quotes taken off.
pub fn parse_dotenv(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!(
                "line {}: expected KEY=VALUE, found {line:?}",
                i + 1
            ));
        };
        let k = k.trim();
        if k.is_empty() || !k.chars().all(is_name_char) {
            return Err(format!("line {}: invalid variable name {k:?}", i + 1));
        }
        let v = v.trim();
        let v = match (v.chars().next(), v.chars().last()) {
            (Some(q @ ('"' | '\'')), Some(e)) if v.len() >= 2 && q == e => &v[1..v.len() - 1],
            _ => v,
        };
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars {
            env: [("A", "1"), ("E", "")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn forms() {
        let v = vars();
        let s = |t: &str| substitute(t, &v);
        assert_eq!(s("x$A-${A}").unwrap(), "x1-1");
        assert_eq!(s("$$A").unwrap(), "$A");
        assert_eq!(s("${E:-d}/${E-d}/${U-d}").unwrap(), "d//d");
        assert_eq!(s("${U:-$A}").unwrap(), "1");
        assert_eq!(s("${A:?no}").unwrap(), "1");
        assert_eq!(
            s("${E:?must be set}"),
            Err(InterpolateError::Required {
                name: "E".into(),
                message: "must be set".into()
            })
        );
        assert_eq!(s("${E?x}").unwrap(), "");
        assert!(matches!(s("${A"), Err(InterpolateError::Format { .. })));
        assert!(matches!(s("a $ b"), Err(InterpolateError::Format { .. })));
    }

    #[test]
    fn dotenv() {
        let m = parse_dotenv("# c\n\nexport A=1\nB=\"two words\"\nC='x'\n").unwrap();
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "x");
        assert!(parse_dotenv("no equals").is_err());
    }
}
