//! A field-level difference of two specs as JSON: what `stack deploy`
//! compares to leave an unchanged service alone, and what `--dry-run`
//! prints for a changed one (`TaskTemplate.ContainerSpec.Image: a -> b`).
//! A missing value and an empty one (null, "", 0, false, [] or {}) are the same.

use serde_json::Value;

use shoal_node::api::unhonoured::is_empty as empty;

fn show(v: &Value) -> String {
    if empty(v) {
        "(none)".into()
    } else {
        v.to_string()
    }
}

/// Each changed leaf, as `path: old -> new`, in key order.
pub fn changes(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(old, new, String::new(), &mut out);
    out
}

fn walk(old: &Value, new: &Value, path: String, out: &mut Vec<String>) {
    let at = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                walk(
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    at(k),
                    out,
                );
            }
        }
        // An object against nothing: each of its leaves against nothing.
        (Value::Object(_), n) if empty(n) => {
            walk(old, &Value::Object(Default::default()), path, out)
        }
        (o, Value::Object(_)) if empty(o) => {
            walk(&Value::Object(Default::default()), new, path, out)
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                walk(x, y, format!("{path}[{i}]"), out);
            }
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        (a, b) if a == b || empty(a) && empty(b) => {}
        (a, b) => out.push(format!("{path}: {} -> {}", show(a), show(b))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn leaves_only() {
        let a = json!({"Name": "x", "Labels": {"a": "1"}, "Env": ["A=1"], "Empty": null});
        let b = json!({"Name": "x", "Labels": {"a": "2"}, "Env": ["A=1", "B=2"], "Empty": {}});
        assert_eq!(
            changes(&a, &b),
            vec![
                r#"Env: ["A=1"] -> ["A=1","B=2"]"#.to_string(),
                r#"Labels.a: "1" -> "2""#.to_string(),
            ]
        );
        assert!(changes(&a, &a).is_empty());
    }
}
