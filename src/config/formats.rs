//! Our own [`config::Format`]s for YAML and TOML: one file's text into the `config` crate's
//! untyped tree, every value tagged with the file it came from.
//!
//! Why not the `config` crate's own formats: their errors quote the offending line, and that
//! line may hold a secret. Ours say only where (line and column) and what kind of mistake.
//! They also refuse hostile structure before the parser sees it: nesting deeper than
//! [`MAX_DEPTH`] and more than [`MAX_NODES`] values, so a 100,000-deep file fails at once
//! instead of after a minute of parsing.

use std::error::Error;
use std::sync::Arc;

use config::{FileStoredFormat, Format, Map, Value, ValueKind};

/// Deepest nesting accepted. The schema is three levels deep (`opsgenie.rate_limits.alert`,
/// plus one for a map entry); anything far past that is a mistake or an attack.
pub(super) const MAX_DEPTH: usize = 32;

/// Most values (scalars, lists and tables together) accepted in one file.
pub(super) const MAX_NODES: usize = 10_000;

/// Why one file could not be parsed. Never quotes the file's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(super) struct ParseError {
    /// The file, as the operator named it.
    pub origin: String,
    /// What is wrong and where, e.g. "invalid TOML at line 2 column 11: …".
    pub message: String,
}

/// Which of our two formats a file is in, chosen by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Yaml,
    Toml,
}

impl Kind {
    /// The format for a file name; `None` for an extension we do not read.
    pub(super) fn of(path: &std::path::Path) -> Option<Self> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("yaml" | "yml") => Some(Self::Yaml),
            Some("toml") => Some(Self::Toml),
            _ => None,
        }
    }
}

/// A [`config::Format`] for one file: knows the file's name (to tag values and errors) and the
/// schema's sections (so that `teleport:` with nothing under it is an empty section, which
/// layers as "nothing set", rather than a null that would wipe the section of an earlier file).
#[derive(Debug, Clone)]
pub(super) struct FileFormat {
    pub kind: Kind,
    pub origin: String,
    pub sections: Arc<Vec<String>>,
}

impl Format for FileFormat {
    fn parse(
        &self,
        _uri: Option<&String>,
        text: &str,
    ) -> Result<Map<String, Value>, Box<dyn Error + Send + Sync>> {
        self.parse_text(text)
            .map_err(|message| -> Box<dyn Error + Send + Sync> {
                Box::new(ParseError {
                    origin: self.origin.clone(),
                    message,
                })
            })
    }
}

impl FileStoredFormat for FileFormat {
    fn file_extensions(&self) -> &'static [&'static str] {
        match self.kind {
            Kind::Yaml => &["yaml", "yml"],
            Kind::Toml => &["toml"],
        }
    }
}

/// A plain tree, the common shape of both formats before it becomes `config` values.
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    List(Vec<Node>),
    Table(Vec<(String, Node)>),
}

impl FileFormat {
    fn parse_text(&self, text: &str) -> Result<Map<String, Value>, String> {
        let node = match self.kind {
            Kind::Yaml => {
                check_flow_depth(text, "YAML")?;
                yaml_node(text)?
            }
            Kind::Toml => {
                check_flow_depth(text, "TOML")?;
                check_toml_key_depth(text)?;
                toml_node(text)?
            }
        };
        let mut budget = MAX_NODES;
        match node {
            Node::Table(entries) => {
                let mut map = Map::new();
                for (key, child) in entries {
                    let value = self.value(child, &key, 1, &mut budget)?;
                    map.insert(key, value);
                }
                Ok(map)
            }
            // An empty file, or one holding only comments.
            Node::Null => Ok(Map::new()),
            other => Err(format!(
                "expected a mapping of sections at the top level, got {}",
                other.kind()
            )),
        }
    }

    fn value(
        &self,
        node: Node,
        path: &str,
        depth: usize,
        budget: &mut usize,
    ) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "nested deeper than {MAX_DEPTH} levels (at `{}`…); the configuration is at most 4 levels deep",
                path.split('.').take(4).collect::<Vec<_>>().join(".")
            ));
        }
        *budget = budget.checked_sub(1).ok_or_else(|| {
            format!("holds more than {MAX_NODES} values; a configuration needs far fewer")
        })?;
        let origin = Some(&self.origin);
        let kind = match node {
            Node::Null if self.sections.iter().any(|s| s == path) => ValueKind::Table(Map::new()),
            Node::Null => ValueKind::Nil,
            Node::Bool(b) => ValueKind::Boolean(b),
            Node::Int(i) => ValueKind::I64(i),
            Node::UInt(u) => ValueKind::U64(u),
            Node::Float(f) => ValueKind::Float(f),
            Node::Str(s) => ValueKind::String(s),
            Node::List(items) => ValueKind::Array(
                items
                    .into_iter()
                    .map(|item| self.value(item, path, depth + 1, budget))
                    .collect::<Result<_, _>>()?,
            ),
            Node::Table(entries) => {
                let mut map = Map::new();
                for (key, child) in entries {
                    let child_path = format!("{path}.{key}");
                    let value = self.value(child, &child_path, depth + 1, budget)?;
                    map.insert(key, value);
                }
                ValueKind::Table(map)
            }
        };
        Ok(Value::new(origin, kind))
    }
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Self::Null => "an empty value",
            Self::Bool(_) => "a boolean",
            Self::Int(_) | Self::UInt(_) | Self::Float(_) => "a number",
            Self::Str(_) => "a string",
            Self::List(_) => "a list",
            Self::Table(_) => "a table",
        }
    }
}

/// Refuses flow nesting (`[[[[…` or `{{{{…`) deeper than [`MAX_DEPTH`] before the parser runs:
/// parsers take time (and stack) in proportion to the depth for every level. Brackets inside
/// quotes and comments do not count; the count is conservative, the parser is the judge of the
/// rest.
fn check_flow_depth(text: &str, what: &str) -> Result<(), String> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut line = 1usize;
    let mut column = 0usize;
    let mut comment = false;
    let mut prev = '\n';
    for c in text.chars() {
        column += 1;
        if c == '\n' {
            line += 1;
            column = 0;
            comment = false;
            // YAML and TOML basic strings do not span lines unless triple-quoted; a stray quote
            // must not hide the rest of the file from the count.
            quote = None;
            prev = c;
            continue;
        }
        if comment {
            continue;
        }
        match quote {
            Some(q) if c == q && prev != '\\' => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' => quote = Some(c),
                '#' if prev.is_whitespace() => comment = true,
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(format!(
                            "invalid {what} at line {line} column {column}: nested deeper than {MAX_DEPTH} levels"
                        ));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        prev = c;
    }
    Ok(())
}

fn yaml_node(text: &str) -> Result<Node, String> {
    // Block nesting is bounded by indentation: in a file of bounded size it cannot go deep
    // enough to hurt, and the conversion below stops at MAX_DEPTH.
    let mut value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
        // The YAML library's message names the kind of mistake and the position, not the text.
        match e.location() {
            Some(at) => format!(
                "invalid YAML at line {} column {}: {}",
                at.line(),
                at.column(),
                yaml_reason(&e.to_string())
            ),
            None => format!("invalid YAML: {}", yaml_reason(&e.to_string())),
        }
    })?;
    value
        .apply_merge()
        .map_err(|e| format!("invalid YAML merge key: {}", yaml_reason(&e.to_string())))?;
    yaml_to_node(value, 0)
}

/// The library's message without its own position suffix (we give ours) and cut short: it
/// names the kind of mistake, never more than that.
fn yaml_reason(message: &str) -> String {
    let reason = message.split(" at line ").next().unwrap_or(message).trim();
    super::safe::cut(reason, 120)
}

fn yaml_to_node(value: serde_yaml::Value, depth: usize) -> Result<Node, String> {
    use serde_yaml::Value as Y;
    if depth > MAX_DEPTH {
        return Err(format!(
            "invalid YAML: nested deeper than {MAX_DEPTH} levels"
        ));
    }
    Ok(match value {
        Y::Null => Node::Null,
        Y::Bool(b) => Node::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Node::Int(i)
            } else if let Some(u) = n.as_u64() {
                Node::UInt(u)
            } else {
                // NaN and infinities have no JSON form; as a string they fail the type check.
                match n.as_f64().filter(|f| f.is_finite()) {
                    Some(f) => Node::Float(f),
                    None => Node::Str(n.to_string()),
                }
            }
        }
        Y::String(s) => Node::Str(s),
        Y::Sequence(items) => Node::List(
            items
                .into_iter()
                .map(|item| yaml_to_node(item, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(entries) => {
            let mut table = Vec::with_capacity(entries.len());
            for (key, value) in entries {
                let key = match key {
                    Y::String(s) => s,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    _ => return Err("invalid YAML: keys must be plain scalars".into()),
                };
                table.push((key, yaml_to_node(value, depth + 1)?));
            }
            Node::Table(table)
        }
        Y::Tagged(tagged) => yaml_to_node(tagged.value, depth)?,
    })
}

fn toml_node(text: &str) -> Result<Node, String> {
    match text.parse::<toml::Table>() {
        Ok(table) => toml_to_node(toml::Value::Table(table), 0),
        Err(e) => {
            // toml's Display quotes the offending line, which may hold a secret: report only
            // the message and the position.
            let position = e
                .span()
                .map(|span| {
                    let before = text.get(..span.start).unwrap_or(text);
                    let line = before.matches('\n').count() + 1;
                    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                    format!(" at line {line} column {column}")
                })
                .unwrap_or_default();
            Err(format!(
                "invalid TOML{position}: {}",
                super::safe::cut(e.message().trim(), 120)
            ))
        }
    }
}

fn toml_to_node(value: toml::Value, depth: usize) -> Result<Node, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "invalid TOML: nested deeper than {MAX_DEPTH} levels"
        ));
    }
    Ok(match value {
        toml::Value::String(s) => Node::Str(s),
        toml::Value::Integer(i) => Node::Int(i),
        toml::Value::Float(f) if f.is_finite() => Node::Float(f),
        toml::Value::Float(f) => Node::Str(f.to_string()),
        toml::Value::Boolean(b) => Node::Bool(b),
        toml::Value::Datetime(d) => Node::Str(d.to_string()),
        toml::Value::Array(items) => Node::List(
            items
                .into_iter()
                .map(|item| toml_to_node(item, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(table) => Node::Table(
            table
                .into_iter()
                .map(|(k, v)| Ok((k, toml_to_node(v, depth + 1)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// Refuses TOML keys and table headers with more than [`MAX_DEPTH`] dotted parts
/// (`[a.b.c.…]`), which nest as deep as brackets do.
fn check_toml_key_depth(text: &str) -> Result<(), String> {
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let key_part = if trimmed.starts_with('[') {
            trimmed
        } else {
            match trimmed.split_once('=') {
                Some((key, _)) => key,
                None => continue,
            }
        };
        if key_part.matches('.').count() >= MAX_DEPTH {
            return Err(format!(
                "invalid TOML at line {}: a key with more than {MAX_DEPTH} dotted parts",
                i + 1
            ));
        }
    }
    Ok(())
}
