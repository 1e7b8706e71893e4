//! Reading an OpenAPI document that an operator uploads: pure functions, no I/O.
//!
//! [`read`] takes the bytes and their format and answers the document as an order-preserving
//! tree ([`yaml_serde::Value`]: JSON is read into it too, so that operations and properties
//! keep the document's order) with a [`Summary`], or a [`DocumentError`] that says where the
//! document is wrong:
//! 1. **Text**: UTF-8, else the line and column of the first bad byte.
//! 2. **Syntax**: JSON by `serde_json`, YAML by `yaml_serde` (YAML merge keys applied), else
//!    the parser's message with its line and column.
//! 3. **Version**: `openapi` must be a string `3.0.x` or `3.1.x` (a Swagger 2.0 document is
//!    named as such).
//! 4. **Structure**: the tree must deserialize into the OpenAPI model of its version, by a
//!    library: `openapiv3` for 3.0.x, `oas3` for 3.1.x; else the path to the part at fault
//!    (e.g. `paths["/orders"].get.responses`) with the library's message.
//! 5. **References**: every local `$ref` (`#/...`) must point at something in the document.
//!
//! Mapping keys are turned into strings (YAML reads `200:` as a number) and YAML tags are
//! dropped, so the tree has the shape of JSON.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use yaml_serde::{Mapping, Value};

/// How an uploaded document is written, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum DocumentFormat {
    /// JSON (`application/json`, or any `application/*+json`).
    #[serde(rename = "application/json")]
    Json,
    /// YAML (`application/yaml`, `application/x-yaml`, `text/yaml`, `text/x-yaml`,
    /// `application/vnd.oai.openapi`, or any `*+yaml`).
    #[serde(rename = "application/yaml")]
    Yaml,
}

impl DocumentFormat {
    /// The format a `Content-Type` header names (parameters such as `charset` ignored), or
    /// `None` for anything but JSON and YAML.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        match essence(content_type).as_str() {
            "application/json" | "application/vnd.oai.openapi+json" => Some(DocumentFormat::Json),
            "application/yaml"
            | "application/x-yaml"
            | "text/yaml"
            | "text/x-yaml"
            | "application/vnd.oai.openapi" => Some(DocumentFormat::Yaml),
            other if other.starts_with("application/") && other.ends_with("+json") => {
                Some(DocumentFormat::Json)
            }
            other if other.ends_with("+yaml") => Some(DocumentFormat::Yaml),
            _ => None,
        }
    }

    /// The media type a stored document is served with: `application/json` or
    /// `application/yaml`.
    pub fn media_type(self) -> &'static str {
        match self {
            DocumentFormat::Json => "application/json",
            DocumentFormat::Yaml => "application/yaml",
        }
    }

    fn name(self) -> &'static str {
        match self {
            DocumentFormat::Json => "JSON",
            DocumentFormat::Yaml => "YAML",
        }
    }
}

/// A media type without its parameters, in lower case: `Application/JSON; charset=utf-8` is
/// `application/json`.
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Why a document was refused: what is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentError {
    /// What is wrong, with the line and column (syntax) or the path (structure).
    pub message: String,
    /// The path to the part at fault (structure and references), e.g. `info.title`.
    pub path: Option<String>,
}

impl DocumentError {
    fn at(path: &str, message: String) -> Self {
        DocumentError {
            message,
            path: Some(path.to_owned()),
        }
    }

    fn whole(message: String) -> Self {
        DocumentError {
            message,
            path: None,
        }
    }
}

/// The OpenAPI versions Portico reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenApiVersion {
    /// 3.0.x (OpenAPI's own schema dialect, `nullable`).
    V3_0,
    /// 3.1.x (JSON Schema 2020-12).
    V3_1,
}

/// What a valid document is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Its `openapi` version string, e.g. `3.1.0`.
    pub openapi: String,
    /// `info.title`.
    pub title: String,
    /// `info.version` (the API's version, not OpenAPI's).
    pub version: String,
    /// How many operations its paths hold.
    pub operations: usize,
}

/// A document that was read and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The document as a JSON-shaped, order-preserving tree.
    pub tree: Value,
    /// What it is about.
    pub summary: Summary,
}

/// The HTTP methods of a path item, in the order the portal shows them.
pub const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Reads and validates a document (see the module docs).
pub fn read(bytes: &[u8], format: DocumentFormat) -> Result<Document, DocumentError> {
    let tree = parse(bytes, format)?;
    let version = version(&tree)?;
    check_structure(&tree, version)?;
    check_references(&tree, &tree, &mut Vec::new())?;
    let text = |parent: &str, field: &str| {
        tree.get(parent)
            .and_then(|parent| parent.get(field))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let summary = Summary {
        openapi: tree
            .get("openapi")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        title: text("info", "title"),
        version: text("info", "version"),
        operations: count_operations(&tree),
    };
    Ok(Document { tree, summary })
}

/// Syntax only: the bytes as a JSON-shaped tree, without any OpenAPI check. Used again when a
/// stored document is shown, so it never needs a second copy.
pub fn parse(bytes: &[u8], format: DocumentFormat) -> Result<Value, DocumentError> {
    let text = std::str::from_utf8(bytes).map_err(|error| {
        let (line, column) = line_and_column(bytes, error.valid_up_to());
        DocumentError::whole(format!(
            "the document is not UTF-8 text: a bad byte at line {line}, column {column}"
        ))
    })?;
    let tree = match format {
        DocumentFormat::Json => serde_json::from_str::<Value>(text).map_err(|error| {
            let message = error.to_string();
            let suffix = format!(" at line {} column {}", error.line(), error.column());
            DocumentError::whole(format!(
                "the document is not valid JSON at line {}, column {}: {}",
                error.line(),
                error.column(),
                message.strip_suffix(&suffix).unwrap_or(&message)
            ))
        })?,
        DocumentFormat::Yaml => {
            let mut tree = yaml_serde::from_str::<Value>(text).map_err(|error| {
                let at = error.location().map_or_else(String::new, |location| {
                    format!(" at line {}, column {}", location.line(), location.column())
                });
                DocumentError::whole(format!("the document is not valid YAML{at}: {error}"))
            })?;
            tree.apply_merge().map_err(|error| {
                DocumentError::whole(format!("the document's YAML merge keys are wrong: {error}"))
            })?;
            tree
        }
    };
    let tree = json_shaped(tree, &mut Vec::new())?;
    if tree.is_mapping() {
        Ok(tree)
    } else {
        Err(DocumentError::whole(format!(
            "the document is not an OpenAPI document: its {} top level is not an object",
            format.name()
        )))
    }
}

/// 1-based line and column of byte `offset`.
fn line_and_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&byte| byte == b'\n').count() + 1;
    let start = before
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |at| at + 1);
    (line, offset - start + 1)
}

/// Mapping keys as strings, tags dropped; a key that is a mapping or a sequence is refused.
fn json_shaped(value: Value, path: &mut Vec<String>) -> Result<Value, DocumentError> {
    Ok(match value {
        Value::Tagged(tagged) => json_shaped(tagged.value, path)?,
        Value::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                path.push(format!("[{index}]"));
                out.push(json_shaped(item, path)?);
                path.pop();
            }
            Value::Sequence(out)
        }
        Value::Mapping(mapping) => {
            let mut out = Mapping::with_capacity(mapping.len());
            for (key, item) in mapping {
                let key = match key {
                    Value::String(key) => key,
                    Value::Number(number) => number.to_string(),
                    Value::Bool(flag) => flag.to_string(),
                    Value::Null => "null".to_owned(),
                    Value::Tagged(tagged) => match tagged.value {
                        Value::String(key) => key,
                        _ => return Err(bad_key(path)),
                    },
                    Value::Sequence(_) | Value::Mapping(_) => return Err(bad_key(path)),
                };
                path.push(segment(&key));
                let item = json_shaped(item, path)?;
                path.pop();
                out.insert(Value::String(key), item);
            }
            Value::Mapping(out)
        }
        scalar => scalar,
    })
}

fn bad_key(path: &[String]) -> DocumentError {
    let at = join(path);
    DocumentError::at(
        &at,
        format!("a key in `{at}` is a list or an object: OpenAPI keys are strings"),
    )
}

/// One step of a path: `.name` for plain names, `["…"]` otherwise (`["200"]`, `["/a"]`).
fn segment(key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '_' | '$'))
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'));
    if plain {
        format!(".{key}")
    } else {
        format!("[{}]", serde_json::Value::String(key.to_owned()))
    }
}

/// A path such as `paths["/orders"].get`; the document itself is `$`.
fn join(steps: &[String]) -> String {
    let joined: String = steps.concat();
    match joined.strip_prefix('.') {
        Some(rest) => rest.to_owned(),
        None if joined.is_empty() => "$".to_owned(),
        None => joined,
    }
}

fn version(tree: &Value) -> Result<OpenApiVersion, DocumentError> {
    let Some(openapi) = tree.get("openapi") else {
        if let Some(swagger) = tree.get("swagger") {
            let swagger = scalar_text(swagger);
            return Err(DocumentError::at(
                "swagger",
                format!(
                    "this is a Swagger {swagger} document: only OpenAPI 3.0.x and 3.1.x are \
                     accepted; convert it to OpenAPI 3 first"
                ),
            ));
        }
        return Err(DocumentError::at(
            "openapi",
            "`openapi` is missing: an OpenAPI document starts with its version, e.g. \
             `openapi: 3.1.0`"
                .to_owned(),
        ));
    };
    let Some(text) = openapi.as_str() else {
        return Err(DocumentError::at(
            "openapi",
            format!(
                "`openapi` must be a string such as \"3.1.0\", not {} (in YAML, quote it)",
                scalar_text(openapi)
            ),
        ));
    };
    let patch_of = |prefix: &str| {
        text.strip_prefix(prefix).is_some_and(|patch| {
            let digits = patch.split(['-', '+']).next().unwrap_or_default();
            !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit())
        })
    };
    if patch_of("3.0.") {
        Ok(OpenApiVersion::V3_0)
    } else if patch_of("3.1.") {
        Ok(OpenApiVersion::V3_1)
    } else {
        Err(DocumentError::at(
            "openapi",
            format!("OpenAPI version `{text}` is not supported: Portico reads 3.0.x and 3.1.x"),
        ))
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Null => "null".to_owned(),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "an object".to_owned(),
        Value::Tagged(tagged) => scalar_text(&tagged.value),
    }
}

/// Deserializes the tree into the library model of its version, naming the path at fault.
fn check_structure(tree: &Value, version: OpenApiVersion) -> Result<(), DocumentError> {
    let (label, fault) = match version {
        OpenApiVersion::V3_0 => (
            "3.0",
            fault::<openapiv3::OpenAPI>(tree, Vec::new()).map(|found| {
                // `openapiv3` reads `paths` as a flattened map, which hides where in it the
                // fault is: read each path item on its own to find it.
                if found.0.len() > 1 || found.0.first().is_some_and(|step| step != ".paths") {
                    return found;
                }
                path_items(tree)
                    .find_map(|(key, item)| {
                        fault::<openapiv3::PathItem>(item, vec![".paths".to_owned(), segment(key)])
                    })
                    .unwrap_or(found)
            }),
        ),
        OpenApiVersion::V3_1 => ("3.1", fault::<oas3::Spec>(tree, Vec::new())),
    };
    match fault {
        None => Ok(()),
        Some((steps, message)) => {
            let path = join(&steps);
            Err(DocumentError::at(
                &path,
                format!(
                    "the document is not a valid OpenAPI {label} document at `{path}`: {message}"
                ),
            ))
        }
    }
}

/// The path items that are not references, with their keys.
fn path_items(tree: &Value) -> impl Iterator<Item = (&str, &Value)> {
    tree.get("paths")
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten()
        .filter(|(_, item)| item.get("$ref").is_none())
        .filter_map(|(key, item)| Some((key.as_str()?, item)))
}

/// Where (below `prefix`) and why `value` is not a `T`, if it is not.
fn fault<T: serde::de::DeserializeOwned>(
    value: &Value,
    prefix: Vec<String>,
) -> Option<(Vec<String>, String)> {
    let error = serde_path_to_error::deserialize::<_, T>(value).err()?;
    let mut steps = prefix;
    steps.extend(error.path().iter().filter_map(|step| match step {
        serde_path_to_error::Segment::Seq { index } => Some(format!("[{index}]")),
        serde_path_to_error::Segment::Map { key } => Some(segment(key)),
        serde_path_to_error::Segment::Enum { variant } => Some(segment(variant)),
        serde_path_to_error::Segment::Unknown => None,
    }));
    Some((steps, error.into_inner().to_string()))
}

/// Every local `$ref` must resolve.
fn check_references(
    tree: &Value,
    value: &Value,
    path: &mut Vec<String>,
) -> Result<(), DocumentError> {
    match value {
        Value::Mapping(mapping) => {
            if let Some(reference) = mapping.get("$ref").and_then(Value::as_str)
                && reference.starts_with('#')
                && resolve(tree, reference).is_none()
            {
                let at = join(path);
                return Err(DocumentError::at(
                    &at,
                    format!("`$ref` `{reference}` at `{at}` points to nothing in this document"),
                ));
            }
            for (key, item) in mapping {
                path.push(segment(key.as_str().unwrap_or_default()));
                check_references(tree, item, path)?;
                path.pop();
            }
            Ok(())
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter().enumerate() {
                path.push(format!("[{index}]"));
                check_references(tree, item, path)?;
                path.pop();
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// What a local reference (`#/components/schemas/Order`, a JSON Pointer in a URI fragment)
/// points at, if anything.
pub fn resolve<'a>(tree: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.is_empty() {
        return Some(tree);
    }
    let pointer = pointer.strip_prefix('/')?;
    pointer.split('/').try_fold(tree, |node, token| {
        let token = percent_decode(token)?.replace("~1", "/").replace("~0", "~");
        match node {
            Value::Mapping(mapping) => mapping.get(token.as_str()),
            Value::Sequence(items) => items.get(token.parse::<usize>().ok()?),
            _ => None,
        }
    })
}

/// `%XX` escapes of a URI fragment decoded (`None` when they do not make UTF-8).
fn percent_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text.get(index + 1..index + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn count_operations(tree: &Value) -> usize {
    tree.get("paths")
        .and_then(Value::as_mapping)
        .map_or(0, |paths| {
            paths
                .values()
                .map(|item| {
                    METHODS
                        .iter()
                        .filter(|method| item.get(**method).is_some())
                        .count()
                })
                .sum()
        })
}

#[cfg(test)]
mod tests;
