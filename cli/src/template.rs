//! docker's `--format`: Go's text/template (the `gtmpl` crate) with docker's
//! template functions, Go's way of printing values, and docker's `table` and
//! `json` formats.
//!
//! gtmpl prints a list or a map with Rust's `Debug`; Go prints `[a b]` and
//! `map[k:v]`. So every action that prints is rewritten to end in the
//! pipeline stage `__print`, which renders its value as Go's `%v` does.

use std::collections::HashMap;
use std::fmt::Write as _;

use gtmpl::{Context, FuncError, Value};
use serde_json::Value as Json;

/// A `--format` value, parsed once.
pub enum Format {
    /// The command's own table (`--format table` or no `--format`).
    Table,
    /// One JSON object a line (`--format json`, docker 24+).
    Json,
    /// A Go template; `table` when it began with `table `, so a header row
    /// comes first and the columns (split at tabs) are aligned.
    Template {
        table: bool,
        template: Box<Template>,
    },
}

/// What can go wrong with a template, in docker's words.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// gtmpl's message already begins with `template: `.
    #[error("template parsing error: {0}")]
    Parse(String),
    #[error("template parsing error: template: :1:{column}: executing \"\" at <{path}>: map has no entry for key \"{key}\"")]
    NoKey {
        column: usize,
        path: String,
        key: String,
    },
    #[error("template parsing error: template: executing \"\": {0}")]
    Exec(String),
}

pub struct Template {
    text: String,
    inner: gtmpl::Template,
}

impl Format {
    pub fn parse(format: Option<&str>) -> Result<Format, TemplateError> {
        match format {
            None | Some("" | "table") => Ok(Format::Table),
            Some("json") => Ok(Format::Json),
            Some(text) => {
                let (table, body) = match text.strip_prefix("table") {
                    Some(rest) if rest.starts_with(char::is_whitespace) => (true, &rest[1..]),
                    _ => (false, text),
                };
                // docker turns a typed `\t` into a tab, so shells need no $'...'.
                let body = body.replace("\\t", "\t").replace("\\n", "\n");
                Ok(Format::Template {
                    table,
                    template: Box::new(Template::parse(&body)?),
                })
            }
        }
    }
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut inner = gtmpl::Template::default();
        for (name, func) in FUNCS {
            inner.add_func(name, *func);
        }
        inner
            .parse(rewrite_actions(text))
            .map_err(|e| TemplateError::Parse(e.to_string()))?;
        Ok(Template {
            text: text.to_string(),
            inner,
        })
    }

    /// The template applied to `data` (a JSON object: a field is a key).
    pub fn render(&self, data: &Json) -> Result<String, TemplateError> {
        self.inner
            .render(&Context::from(to_value(data)))
            .map_err(|e| self.exec_error(&e.to_string()))
    }

    fn exec_error(&self, message: &str) -> TemplateError {
        // gtmpl says "no field Nope for {...}"; docker names the key and where.
        let key = message
            .split("no field ")
            .nth(1)
            .and_then(|rest| rest.split(" for ").next());
        let Some(key) = key else {
            return TemplateError::Exec(message.to_string());
        };
        let (column, path) = field_path(&self.text, key);
        TemplateError::NoKey {
            column,
            path,
            key: key.to_string(),
        }
    }
}

/// The column of the action naming `key` and the field chain it names
/// (`.Spec.Nope`), as Go's error shows them.
fn field_path(text: &str, key: &str) -> (usize, String) {
    let needle = format!(".{key}");
    let mut from = 0;
    while let Some(found) = text[from..].find(&needle) {
        let end = from + found + needle.len();
        let next = text[end..].chars().next();
        if !next.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            let start = text[..end]
                .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '$'))
                .map_or(0, |i| i + 1);
            let column = text[..start].rfind("{{").map_or(start, |i| i + 2);
            return (column, text[start..end].to_string());
        }
        from = end;
    }
    (0, needle)
}

/// Appends `| __print` to every action that prints its value. Keywords
/// (`if`, `range`, `end`, ...), comments and variable declarations print
/// nothing and stay as they are.
fn rewrite_actions(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = action_end(after) else {
            out.push_str(&rest[open..]);
            return out;
        };
        let inner = &after[..close];
        out.push_str("{{");
        out.push_str(&rewrite_one(inner));
        out.push_str("}}");
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

/// Where the action's closing `}}` starts, skipping quoted strings.
fn action_end(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn rewrite_one(inner: &str) -> String {
    let (lead, body) = match inner.strip_prefix('-') {
        Some(b) if b.starts_with(char::is_whitespace) => ("-", b),
        _ => ("", inner),
    };
    let (body, trail) = match body.strip_suffix('-') {
        Some(b) if b.ends_with(char::is_whitespace) => (b, "-"),
        _ => (body, ""),
    };
    let word = body.split_whitespace().next().unwrap_or("");
    let silent = matches!(
        word,
        "if" | "else"
            | "end"
            | "range"
            | "with"
            | "define"
            | "template"
            | "block"
            | "break"
            | "continue"
    ) || body.trim_start().starts_with("/*")
        || body.trim().is_empty()
        || (word.starts_with('$') && {
            let after = body.trim_start()[word.len()..].trim_start();
            after.starts_with(":=") || after.starts_with('=') || word.ends_with(":=")
        })
        || word.contains(":=")
        || (word.starts_with('$') && word.contains(','));
    if silent {
        inner.to_string()
    } else {
        format!("{lead} ({body}) | __print {trail}")
    }
}

/// JSON as template data: an object's keys are its fields, and a missing one
/// is an error (docker's `missingkey=error`).
pub fn to_value(v: &Json) -> Value {
    match v {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => Value::Array(a.iter().map(to_value).collect()),
        Json::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), to_value(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

fn to_json(v: &Value) -> Json {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Json::from(u)
            } else if let Some(i) = n.as_i64() {
                Json::from(i)
            } else {
                n.as_f64().map_or(Json::Null, Json::from)
            }
        }
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Object(o) | Value::Map(o) => {
            Json::Object(o.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

/// Go's `%v`: `[a b]` for a list, `map[k:v]` (keys sorted) for a map.
pub fn go_print(v: &Value) -> String {
    let mut out = String::new();
    go_print_into(v, &mut out);
    out
}

fn go_print_into(v: &Value, out: &mut String) {
    match v {
        Value::NoValue => out.push_str("<no value>"),
        Value::Nil => out.push_str("<nil>"),
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::String(s) => out.push_str(s),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Function(_) => out.push_str("<func>"),
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                go_print_into(item, out);
            }
            out.push(']');
        }
        Value::Object(o) | Value::Map(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            out.push_str("map[");
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                go_print_into(&o[*k], out);
            }
            out.push(']');
        }
    }
}

const FUNCS: &[(&str, gtmpl::Func)] = &[
    ("__print", print_value),
    ("json", json),
    ("join", join),
    ("split", split),
    ("upper", upper),
    ("lower", lower),
    ("title", title),
    ("pad", pad),
    ("truncate", truncate),
    ("println", println),
];

fn arg<'a>(args: &'a [Value], i: usize, name: &str, want: usize) -> Result<&'a Value, FuncError> {
    if args.len() != want {
        return Err(FuncError::ExactlyXArgs(name.into(), want));
    }
    Ok(&args[i])
}

fn string_arg(args: &[Value], i: usize, name: &str, want: usize) -> Result<String, FuncError> {
    match arg(args, i, name, want)? {
        Value::String(s) => Ok(s.clone()),
        other => Ok(go_print(other)),
    }
}

fn int_arg(args: &[Value], i: usize, name: &str, want: usize) -> Result<usize, FuncError> {
    match arg(args, i, name, want)? {
        Value::Number(n) => n
            .as_u64()
            .map(|n| n as usize)
            .ok_or(FuncError::UnableToConvertFromValue),
        _ => Err(FuncError::UnableToConvertFromValue),
    }
}

fn print_value(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(go_print(arg(args, 0, "print", 1)?)))
}

/// docker's `json`: compact, no HTML escaping.
fn json(args: &[Value]) -> Result<Value, FuncError> {
    let v = to_json(arg(args, 0, "json", 1)?);
    serde_json::to_string(&v)
        .map(Value::String)
        .map_err(|e| FuncError::Generic(e.to_string()))
}

fn join(args: &[Value]) -> Result<Value, FuncError> {
    let sep = string_arg(args, 1, "join", 2)?;
    let parts: Vec<String> = match &args[0] {
        Value::Array(a) => a.iter().map(go_print).collect(),
        other => vec![go_print(other)],
    };
    Ok(Value::String(parts.join(&sep)))
}

fn split(args: &[Value]) -> Result<Value, FuncError> {
    let text = string_arg(args, 0, "split", 2)?;
    let sep = string_arg(args, 1, "split", 2)?;
    let parts: Vec<Value> = if sep.is_empty() {
        text.chars().map(|c| Value::String(c.to_string())).collect()
    } else {
        text.split(sep.as_str())
            .map(|p| Value::String(p.to_string()))
            .collect()
    };
    Ok(Value::Array(parts))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(
        string_arg(args, 0, "upper", 1)?.to_uppercase(),
    ))
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(
        string_arg(args, 0, "lower", 1)?.to_lowercase(),
    ))
}

/// Go's strings.Title: the first letter of every word in upper case.
fn title(args: &[Value]) -> Result<Value, FuncError> {
    let text = string_arg(args, 0, "title", 1)?;
    let mut out = String::with_capacity(text.len());
    let mut at_start = true;
    for c in text.chars() {
        if at_start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        at_start = !c.is_alphanumeric() && c != '_' && c != '\'';
    }
    Ok(Value::String(out))
}

/// docker's `pad`: `prefix` spaces before and `suffix` after.
fn pad(args: &[Value]) -> Result<Value, FuncError> {
    let text = string_arg(args, 0, "pad", 3)?;
    let before = int_arg(args, 1, "pad", 3)?;
    let after = int_arg(args, 2, "pad", 3)?;
    Ok(Value::String(format!(
        "{}{text}{}",
        " ".repeat(before),
        " ".repeat(after)
    )))
}

/// docker's `truncate`: at most `length` characters.
fn truncate(args: &[Value]) -> Result<Value, FuncError> {
    let text = string_arg(args, 0, "truncate", 2)?;
    let length = int_arg(args, 1, "truncate", 2)?;
    Ok(Value::String(text.chars().take(length).collect()))
}

/// Go's fmt.Sprintln: operands separated by spaces, and a newline.
fn println(args: &[Value]) -> Result<Value, FuncError> {
    let parts: Vec<String> = args.iter().map(go_print).collect();
    Ok(Value::String(format!("{}\n", parts.join(" "))))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::template::{Format, Template, TemplateError};

    fn render(text: &str, data: serde_json::Value) -> Result<String, TemplateError> {
        Template::parse(text)?.render(&data)
    }

    #[test]
    fn fields_functions_and_go_printing() {
        let data = json!({"Name": "web", "Spec": {"Name": "web", "Labels": {"b": "2", "a": "1"}},
            "Endpoint": {"VirtualIPs": []}, "Args": ["x", "y"], "N": 3, "Self": true});
        let cases = [
            ("{{.Name}}", "web"),
            ("{{.Spec.Name}}", "web"),
            ("{{.Endpoint.VirtualIPs}}", "[]"),
            ("{{.Args}}", "[x y]"),
            ("{{.Spec.Labels}}", "map[a:1 b:2]"),
            ("{{json .Args}}", "[\"x\",\"y\"]"),
            ("{{join .Args \",\"}}", "x,y"),
            (
                "{{upper .Name}}/{{lower \"AB\"}}/{{title \"hello world\"}}",
                "WEB/ab/Hello World",
            ),
            ("{{split \"a:b\" \":\"}}", "[a b]"),
            ("[{{pad .Name 1 2}}]", "[ web  ]"),
            ("{{truncate .Name 2}}", "we"),
            ("{{println .Name .N}}", "web 3\n"),
            ("{{.N}} {{.Self}}", "3 true"),
            ("{{if .Self}}me{{else}}other{{end}}", "me"),
            ("{{range .Args}}<{{.}}>{{end}}", "<x><y>"),
            ("{{$n := .Name}}{{$n}}", "web"),
            ("{{- .Name -}}  ", "web"),
            ("{{.Name | printf \"%s!\"}}", "web!"),
        ];
        for (text, want) in cases {
            assert_eq!(render(text, data.clone()).expect(text), want, "{text}");
        }
    }

    #[test]
    fn an_unknown_field_is_docker_s_error() {
        let e = render("{{.Spec.Nope}}", json!({"Spec": {}})).expect_err("no such key");
        assert_eq!(
            e.to_string(),
            "template parsing error: template: :1:2: executing \"\" at <.Spec.Nope>: map has no entry for key \"Nope\""
        );
    }

    #[test]
    fn table_and_json_formats() {
        assert!(matches!(Format::parse(None), Ok(Format::Table)));
        assert!(matches!(Format::parse(Some("json")), Ok(Format::Json)));
        assert!(matches!(
            Format::parse(Some("table {{.ID}}")),
            Ok(Format::Template { table: true, .. })
        ));
        assert!(matches!(
            Format::parse(Some("{{.ID}}")),
            Ok(Format::Template { table: false, .. })
        ));
        assert!(Format::parse(Some("{{.ID")).is_err());
    }
}
