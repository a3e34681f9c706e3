//! docker's `filters` query parameter: a JSON object from a key to the values
//! asked for, `{"name":{"web":true}}` (or the older `{"name":["web"]}`).
//!
//! Values of one key are alternatives (any may match); keys are all required,
//! but `label` values must all match, as in moby's `filters.Args`. Each list
//! route names the keys it takes; any other key is dockerd's 400
//! `invalid filter 'KEY'`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::ApiError;

/// Most values a `filters` parameter may carry in all: a bound on the work
/// one list request can ask for.
const MAX_VALUES: usize = 256;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filters(BTreeMap<String, BTreeSet<String>>);

fn invalid(detail: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("invalid filter: {detail}"))
}

impl Filters {
    /// Parses the parameter's text and checks its keys against `allowed`.
    pub fn parse(text: Option<&str>, allowed: &[&str]) -> Result<Filters, ApiError> {
        let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
            return Ok(Filters::default());
        };
        let value: Value = serde_json::from_str(text).map_err(invalid)?;
        let Value::Object(map) = value else {
            return Err(invalid("filters must be a JSON object"));
        };
        let mut out = BTreeMap::new();
        let mut count = 0usize;
        for (key, values) in map {
            if !allowed.contains(&key.as_str()) {
                return Err(ApiError::bad_request(format!("invalid filter '{key}'")));
            }
            let set: BTreeSet<String> = match values {
                Value::Object(o) => o
                    .into_iter()
                    .filter(|(_, on)| on.as_bool() != Some(false))
                    .map(|(v, _)| v)
                    .collect(),
                Value::Array(a) => a
                    .into_iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s),
                        other => Err(invalid(format!("{key}: {other} is not a string"))),
                    })
                    .collect::<Result<_, _>>()?,
                other => return Err(invalid(format!("{key}: {other} is not a set of values"))),
            };
            count += set.len();
            if count > MAX_VALUES {
                return Err(invalid(format!("more than {MAX_VALUES} values")));
            }
            out.insert(key, set);
        }
        Ok(Filters(out))
    }

    /// The values asked for under `key` (none if the key is absent).
    pub fn values(&self, key: &str) -> impl Iterator<Item = &str> {
        self.0.get(key).into_iter().flatten().map(String::as_str)
    }

    pub fn has(&self, key: &str) -> bool {
        self.0.get(key).is_some_and(|v| !v.is_empty())
    }

    /// No `key` filter, or `value` starts with one of its values.
    pub fn prefix(&self, key: &str, value: &str) -> bool {
        !self.has(key) || self.values(key).any(|w| value.starts_with(w))
    }

    /// No `key` filter, or `value` equals one of its values.
    pub fn exact(&self, key: &str, value: &str) -> bool {
        !self.has(key) || self.values(key).any(|w| w == value)
    }

    /// No `key` filter, or `value` equals one of its values ignoring case.
    pub fn exact_ci(&self, key: &str, value: &str) -> bool {
        !self.has(key) || self.values(key).any(|w| w.eq_ignore_ascii_case(value))
    }

    /// Every `key` value, `k` or `k=v`, is among `labels`.
    pub fn labels(&self, key: &str, labels: &BTreeMap<String, String>) -> bool {
        self.values(key).all(|w| match w.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
            None => labels.contains_key(w),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_parse_and_match_as_docker_does() {
        let f = Filters::parse(
            Some(r#"{"name":{"web":true},"label":{"a=1":true,"b":true}}"#),
            &["name", "label"],
        )
        .unwrap();
        assert!(f.prefix("name", "web-1"));
        assert!(!f.prefix("name", "db"));
        let mut labels = BTreeMap::from([("a".into(), "1".into())]);
        assert!(!f.labels("label", &labels));
        labels.insert("b".into(), "x".into());
        assert!(f.labels("label", &labels));
        let old = Filters::parse(Some(r#"{"id":["abc"]}"#), &["id"]).unwrap();
        assert!(old.prefix("id", "abcdef"));
        assert!(Filters::parse(None, &[]).unwrap().prefix("name", "x"));
    }

    #[test]
    fn bad_filters_are_refused() {
        let e = Filters::parse(Some(r#"{"colour":{"red":true}}"#), &["name"]).unwrap_err();
        assert_eq!(e.message, "invalid filter 'colour'");
        assert!(Filters::parse(Some("{not json"), &["name"]).is_err());
        assert!(Filters::parse(Some(r#"["name"]"#), &["name"]).is_err());
        assert!(Filters::parse(Some(r#"{"name":[1]}"#), &["name"]).is_err());
        let many: serde_json::Map<String, Value> = (0..300)
            .map(|i| (format!("n{i}"), Value::Bool(true)))
            .collect();
        let text = serde_json::json!({ "name": many }).to_string();
        assert!(Filters::parse(Some(&text), &["name"]).is_err());
    }
}
