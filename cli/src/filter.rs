//! docker's `-f/--filter key=value`: values of one key are alternatives,
//! different keys must all hold.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FilterError {
    #[error("bad format of filter (expected name=value)")]
    Format,
    #[error("Invalid filter '{0}'")]
    Key(String),
    #[error("Invalid filter '{key}={value}'")]
    Value { key: String, value: String },
}

#[derive(Debug, Default)]
pub struct Filters(BTreeMap<String, BTreeSet<String>>);

impl Filters {
    /// Parses `key=value` pairs; a key outside `keys` is docker's "Invalid filter".
    pub fn parse(list: &[String], keys: &[&str]) -> Result<Filters, FilterError> {
        let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for item in list {
            let (key, value) = item.split_once('=').ok_or(FilterError::Format)?;
            let key = key.trim().to_lowercase();
            if !keys.contains(&key.as_str()) {
                return Err(FilterError::Key(key));
            }
            map.entry(key).or_default().insert(value.trim().to_string());
        }
        Ok(Filters(map))
    }

    /// The values given for `key`, to be checked against a fixed set.
    pub fn check_values(&self, key: &str, allowed: &[&str]) -> Result<(), FilterError> {
        for value in self.0.get(key).into_iter().flatten() {
            if !allowed.contains(&value.to_lowercase().as_str()) {
                return Err(FilterError::Value {
                    key: key.to_string(),
                    value: value.clone(),
                });
            }
        }
        Ok(())
    }

    /// True when `key` was not given, or one of its values passes `test`.
    pub fn allows(&self, key: &str, test: impl Fn(&str) -> bool) -> bool {
        self.0
            .get(key)
            .is_none_or(|values| values.iter().any(|v| test(v)))
    }

    /// `label=KEY` (the label exists) or `label=KEY=VALUE` (it has that
    /// value); every label filter given must hold, as docker's do.
    pub fn allows_labels(
        &self,
        key: &str,
        labels: Option<&std::collections::HashMap<String, String>>,
    ) -> bool {
        let label = |k: &str| labels.and_then(|l| l.get(k));
        self.0.get(key).is_none_or(|values| {
            values.iter().all(|v| match v.split_once('=') {
                Some((k, want)) => label(k).map(String::as_str) == Some(want),
                None => label(v.as_str()).is_some(),
            })
        })
    }
}

/// docker's id and name filters match a whole value or its prefix.
pub fn prefix(value: &str) -> impl Fn(&str) -> bool + '_ {
    move |want| value.starts_with(want)
}

#[cfg(test)]
mod tests {
    use crate::filter::{prefix, FilterError, Filters};

    fn parse(list: &[&str]) -> Result<Filters, FilterError> {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        Filters::parse(&list, &["id", "name", "label", "role"])
    }

    #[test]
    fn one_key_is_any_of_its_values_and_keys_all_hold() {
        let f = parse(&["name=web", "name=api", "role=manager"]).expect("filters");
        assert!(f.allows("name", prefix("webapp")));
        assert!(f.allows("name", prefix("api")));
        assert!(!f.allows("name", prefix("db")));
        assert!(f.allows("id", prefix("anything")));
        assert!(!f.allows("role", |r| r == "worker"));
    }

    #[test]
    fn labels_by_key_or_key_and_value() {
        let labels: std::collections::HashMap<String, String> =
            [("tier", "front"), ("env", "prod")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let labels = Some(&labels);
        assert!(parse(&["label=tier"])
            .expect("f")
            .allows_labels("label", labels));
        assert!(parse(&["label=tier=front", "label=env"])
            .expect("f")
            .allows_labels("label", labels));
        assert!(!parse(&["label=tier=back"])
            .expect("f")
            .allows_labels("label", labels));
    }

    #[test]
    fn bad_filters_say_so_as_docker_does() {
        assert_eq!(parse(&["nothing"]).err(), Some(FilterError::Format));
        assert_eq!(
            parse(&["bogus=1"]).err().map(|e| e.to_string()),
            Some("Invalid filter 'bogus'".into())
        );
    }
}
