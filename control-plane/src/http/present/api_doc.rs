//! An API's OpenAPI document as the portal shows it: a pure transformation of the document's
//! tree (see [`crate::service::api_docs::document`]) into a view model of tags, operations,
//! parameters and schemas, with a ready-to-run `curl` call through the gateway for each
//! operation. It reads 3.0.x and 3.1.x alike (`nullable` and `type` lists both read as "or
//! null"), never fails (whatever it cannot read it leaves out), and is bounded: at most
//! [`MAX_OPERATIONS`] operations, schemas [`MAX_DEPTH`] levels deep and [`MAX_LINES`] lines
//! long, local `$ref`s followed with cycle protection (a schema met again inside itself is
//! named, not expanded). Every text is plain text: the templates escape it.

use serde_json::json;
use yaml_serde::Value;

use super::{api_call, shell_quote};
use crate::service::api_docs::document::{DocumentFormat, METHODS, resolve};

/// The most operations shown; the rest are counted in [`DocView::omitted`].
pub const MAX_OPERATIONS: usize = 300;
/// How deep a schema is unfolded.
pub const MAX_DEPTH: usize = 6;
/// The most lines one schema takes.
pub const MAX_LINES: usize = 120;
/// How many `$ref` hops are followed before giving up (a chain of references).
const MAX_HOPS: usize = 16;
/// How many enum values are listed.
const MAX_ENUM_VALUES: usize = 12;

/// A document, as shown on an API's page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocView {
    /// `info.title`.
    pub title: String,
    /// `info.version`.
    pub version: String,
    /// `info.description`.
    pub description: Option<String>,
    /// The operations by tag: the document's `tags` order, then tags first met in
    /// operations, then untagged operations under "Other operations".
    pub tags: Vec<TagView>,
    /// Operations left out beyond [`MAX_OPERATIONS`].
    pub omitted: usize,
}

/// The operations of one tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagView {
    /// The tag's name.
    pub name: String,
    /// The tag's description.
    pub description: Option<String>,
    /// Its operations, in the document's order.
    pub operations: Vec<OperationView>,
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationView {
    /// A unique HTML id for it on the page (`op-<tag>-<n>`).
    pub anchor: String,
    /// The method in upper case, e.g. `GET`.
    pub method: String,
    /// The path as the document writes it, e.g. `/orders/{id}`.
    pub path: String,
    /// `summary`.
    pub summary: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// Whether it is marked deprecated.
    pub deprecated: bool,
    /// Its parameters (the path item's, overridden by the operation's own).
    pub parameters: Vec<ParameterView>,
    /// Its request body.
    pub request: Option<BodyView>,
    /// Its responses, in the document's order.
    pub responses: Vec<ResponseView>,
    /// A `curl` call through the gateway (`$GATEWAY`, `$ACCESS_TOKEN`).
    pub call: String,
}

/// One parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterView {
    /// Its name.
    pub name: String,
    /// Where it goes: `path`, `query`, `header` or `cookie`.
    pub location: String,
    /// Whether it is required.
    pub required: bool,
    /// Its schema in words, e.g. `integer (int64)`.
    pub schema: String,
    /// `description`.
    pub description: Option<String>,
}

/// A request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyView {
    /// The media type shown (JSON when offered, else the first).
    pub media_type: String,
    /// Whether a body is required.
    pub required: bool,
    /// `description`.
    pub description: Option<String>,
    /// Its schema, line by line.
    pub schema: Vec<SchemaLine>,
}

/// One response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseView {
    /// The status, e.g. `200`, `4XX` or `default`.
    pub status: String,
    /// `description`.
    pub description: Option<String>,
    /// The media type shown, if the response has content.
    pub media_type: Option<String>,
    /// Its schema, line by line.
    pub schema: Vec<SchemaLine>,
}

/// One line of a schema: a property (or the schema itself, at depth 0, without a name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaLine {
    /// Nesting level, from 0.
    pub depth: usize,
    /// The property's name (none for the schema itself and for alternatives).
    pub name: Option<String>,
    /// Its type in words, e.g. `array of Order`, `string (date-time) or null`.
    pub kind: String,
    /// Whether the enclosing object requires it.
    pub required: bool,
    /// `description` (or `title`).
    pub description: Option<String>,
}

/// The view of a document's tree; `gateway_base` is the listen path of the entry's API on the
/// gateway (an operation's path is put under it unless it already starts with it).
pub fn view(tree: &Value, gateway_base: &str) -> DocView {
    let info = tree.get("info");
    let mut tags: Vec<TagView> = tree
        .get("tags")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|tag| {
            Some(TagView {
                name: text(tag, "name")?,
                description: text(tag, "description"),
                operations: Vec::new(),
            })
        })
        .collect();
    let mut untagged = Vec::new();
    let mut shown = 0;
    let mut omitted = 0;
    let paths = tree.get("paths").and_then(Value::as_mapping);
    for (path, item) in paths.into_iter().flatten() {
        let (Some(path), item) = (path.as_str(), deref(tree, item)) else {
            continue;
        };
        for method in METHODS {
            let Some(operation) = item.get(method).map(|operation| deref(tree, operation)) else {
                continue;
            };
            if shown == MAX_OPERATIONS {
                omitted += 1;
                continue;
            }
            shown += 1;
            let names: Vec<String> = operation
                .get("tags")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(|tag| tag.as_str().map(str::to_owned))
                .collect();
            let view = operation_view(tree, (path, item), (method, operation), gateway_base);
            if names.is_empty() {
                untagged.push(view);
                continue;
            }
            for name in names {
                let index = match tags.iter().position(|tag| tag.name == name) {
                    Some(index) => index,
                    None => {
                        tags.push(TagView {
                            name,
                            description: None,
                            operations: Vec::new(),
                        });
                        tags.len() - 1
                    }
                };
                tags[index].operations.push(view.clone());
            }
        }
    }
    if !untagged.is_empty() {
        tags.push(TagView {
            name: "Other operations".to_owned(),
            description: None,
            operations: untagged,
        });
    }
    tags.retain(|tag| !tag.operations.is_empty());
    for (tag_index, tag) in tags.iter_mut().enumerate() {
        for (index, operation) in tag.operations.iter_mut().enumerate() {
            operation.anchor = format!("op-{tag_index}-{index}");
        }
    }
    DocView {
        title: info
            .and_then(|info| text(info, "title"))
            .unwrap_or_default(),
        version: info
            .and_then(|info| text(info, "version"))
            .unwrap_or_default(),
        description: info.and_then(|info| text(info, "description")),
        tags,
        omitted,
    }
}

/// A string member, if present and not blank.
fn text(value: &Value, member: &str) -> Option<String> {
    value
        .get(member)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
}

/// Follows `$ref`s (a bounded number of hops); an unresolved reference stays as it is.
fn deref<'a>(tree: &'a Value, mut value: &'a Value) -> &'a Value {
    for _ in 0..MAX_HOPS {
        match value
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|reference| resolve(tree, reference))
        {
            Some(target) => value = target,
            None => break,
        }
    }
    value
}

/// The last segment of a reference: `#/components/schemas/Order` names `Order`.
fn ref_name(value: &Value) -> Option<&str> {
    value
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|reference| reference.rsplit('/').next())
        .filter(|name| !name.is_empty())
}

fn operation_view(
    tree: &Value,
    (path, item): (&str, &Value),
    (method, operation): (&str, &Value),
    gateway_base: &str,
) -> OperationView {
    let mut parameters: Vec<ParameterView> = Vec::new();
    for source in [item, operation] {
        for parameter in source
            .get("parameters")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let parameter = deref(tree, parameter);
            let (Some(name), Some(location)) = (text(parameter, "name"), text(parameter, "in"))
            else {
                continue;
            };
            let schema = parameter.get("schema").or_else(|| {
                parameter
                    .get("content")
                    .and_then(Value::as_mapping)
                    .and_then(|content| content.values().next())
                    .and_then(|media| media.get("schema"))
            });
            let view = ParameterView {
                required: location == "path"
                    || parameter.get("required").and_then(Value::as_bool) == Some(true),
                schema: schema.map_or_else(|| "any".to_owned(), |schema| kind(tree, schema)),
                description: text(parameter, "description"),
                name,
                location,
            };
            match parameters
                .iter_mut()
                .find(|known| known.name == view.name && known.location == view.location)
            {
                Some(known) => *known = view,
                None => parameters.push(view),
            }
        }
    }
    let request = operation
        .get("requestBody")
        .map(|body| deref(tree, body))
        .and_then(|body| {
            let (media_type, media) = pick_media(body)?;
            Some((
                BodyView {
                    media_type: media_type.clone(),
                    required: body.get("required").and_then(Value::as_bool) == Some(true),
                    description: text(body, "description"),
                    schema: media
                        .get("schema")
                        .map(|schema| schema_lines(tree, schema))
                        .unwrap_or_default(),
                },
                example_body(tree, &media_type, media),
            ))
        });
    let responses = operation
        .get("responses")
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten()
        .filter_map(|(status, response)| {
            let response = deref(tree, response);
            let media = pick_media(response);
            Some(ResponseView {
                status: status.as_str()?.to_owned(),
                description: text(response, "description"),
                media_type: media.as_ref().map(|(media_type, _)| media_type.clone()),
                schema: media
                    .and_then(|(_, media)| media.get("schema"))
                    .map(|schema| schema_lines(tree, schema))
                    .unwrap_or_default(),
            })
        })
        .collect();
    let required_query: Vec<&str> = parameters
        .iter()
        .filter(|parameter| parameter.location == "query" && parameter.required)
        .map(|parameter| parameter.name.as_str())
        .collect();
    let target = gateway_path(gateway_base, path, &required_query);
    let call = operation_call(
        method,
        &target,
        request
            .as_ref()
            .map(|(body, example)| (body.media_type.as_str(), example.as_deref())),
    );
    OperationView {
        anchor: String::new(),
        method: method.to_ascii_uppercase(),
        path: path.to_owned(),
        summary: text(operation, "summary"),
        description: text(operation, "description"),
        deprecated: operation.get("deprecated").and_then(Value::as_bool) == Some(true),
        parameters,
        request: request.map(|(body, _)| body),
        responses,
        call,
    }
}

/// The media type shown for a body: JSON when offered, else the first.
fn pick_media(body: &Value) -> Option<(String, &Value)> {
    let all: Vec<(&str, &Value)> = body
        .get("content")?
        .as_mapping()?
        .iter()
        .filter_map(|(media_type, media)| Some((media_type.as_str()?, media)))
        .collect();
    let chosen = all
        .iter()
        .find(|(media_type, _)| is_json(media_type))
        .or_else(|| all.first())?;
    Some((chosen.0.to_owned(), chosen.1))
}

fn is_json(media_type: &str) -> bool {
    DocumentFormat::from_content_type(media_type) == Some(DocumentFormat::Json)
}

/// `base` + `path` unless `path` already starts with `base` at a segment boundary; required
/// query parameters as `name={name}` placeholders.
pub fn gateway_path(base: &str, path: &str, required_query: &[&str]) -> String {
    let base = base.trim_end_matches('/');
    let under_base = path == base
        || path
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'));
    let mut target = if base.is_empty() || under_base {
        path.to_owned()
    } else if path.starts_with('/') {
        format!("{base}{path}")
    } else {
        format!("{base}/{path}")
    };
    for (index, name) in required_query.iter().enumerate() {
        target.push(if index == 0 { '?' } else { '&' });
        target.push_str(&format!("{name}={{{name}}}"));
    }
    target
}

/// A call through the gateway: [`api_call`] plus, for a body, its `Content-Type` and either
/// the JSON example (`-d '…'`) or a file to fill in (`--data-binary @body`).
pub fn operation_call(method: &str, target: &str, body: Option<(&str, Option<&str>)>) -> String {
    let call = api_call(method, target);
    let Some((media_type, example)) = body else {
        return call;
    };
    let data = match example {
        Some(example) => format!("-d {}", shell_quote(example)),
        None => "--data-binary @body".to_owned(),
    };
    let headers = format!(
        "-H {} {data} ",
        shell_quote(&format!("Content-Type: {media_type}"))
    );
    // `api_call` ends with the quoted target: put the body options before it.
    match call.rfind(" \"$GATEWAY") {
        Some(at) => format!("{} {headers}{}", &call[..at], &call[at + 1..]),
        None => call,
    }
}

/// A compact JSON example of a JSON body: the media type's `example` or first of `examples`,
/// else one made from the schema (members in name order). `None` for other media types.
fn example_body(tree: &Value, media_type: &str, media: &Value) -> Option<String> {
    if !is_json(media_type) {
        return None;
    }
    let given = media.get("example").or_else(|| {
        media
            .get("examples")
            .and_then(Value::as_mapping)
            .and_then(|examples| examples.values().next())
            .map(|example| deref(tree, example))
            .and_then(|example| example.get("value"))
    });
    let example = match given {
        Some(example) => serde_json::to_value(example).ok()?,
        None => example_of(tree, media.get("schema")?, 0, &mut Vec::new()),
    };
    serde_json::to_string(&example).ok()
}

/// An example value made from a schema (bounded depth, cycles cut with `null`).
fn example_of(
    tree: &Value,
    schema: &Value,
    depth: usize,
    stack: &mut Vec<String>,
) -> serde_json::Value {
    let name = ref_name(schema).map(str::to_owned);
    if depth > MAX_DEPTH || name.as_ref().is_some_and(|name| stack.contains(name)) {
        return serde_json::Value::Null;
    }
    let schema = deref(tree, schema);
    for member in ["example", "default", "const"] {
        if let Some(value) = schema
            .get(member)
            .and_then(|value| serde_json::to_value(value).ok())
        {
            return value;
        }
    }
    if let Some(first) = schema
        .get("examples")
        .and_then(Value::as_sequence)
        .and_then(|examples| examples.first())
        .or_else(|| {
            schema
                .get("enum")
                .and_then(Value::as_sequence)
                .and_then(|values| values.first())
        })
        .and_then(|value| serde_json::to_value(value).ok())
    {
        return first;
    }
    if let Some(name) = &name {
        stack.push(name.clone());
    }
    let alternative = ["oneOf", "anyOf"]
        .iter()
        .find_map(|key| schema.get(*key)?.as_sequence()?.first());
    let value = if let Some(alternative) = alternative {
        example_of(tree, alternative, depth + 1, stack)
    } else if let Some(parts) = schema.get("allOf").and_then(Value::as_sequence) {
        let mut merged = serde_json::Map::new();
        for part in parts {
            if let serde_json::Value::Object(members) = example_of(tree, part, depth + 1, stack) {
                merged.extend(members);
            }
        }
        serde_json::Value::Object(merged)
    } else {
        match types(schema).first().map(String::as_str) {
            Some("object") | None if schema.get("properties").is_some() => {
                let mut members = serde_json::Map::new();
                for (key, property) in schema
                    .get("properties")
                    .and_then(Value::as_mapping)
                    .into_iter()
                    .flatten()
                {
                    if let Some(key) = key.as_str() {
                        members
                            .insert(key.to_owned(), example_of(tree, property, depth + 1, stack));
                    }
                }
                serde_json::Value::Object(members)
            }
            Some("object") => json!({}),
            Some("array") => match schema.get("items") {
                Some(items) => json!([example_of(tree, items, depth + 1, stack)]),
                None => json!([]),
            },
            Some("integer" | "number") => json!(0),
            Some("boolean") => json!(false),
            Some("string") => json!(string_example(schema)),
            _ => serde_json::Value::Null,
        }
    };
    if name.is_some() {
        stack.pop();
    }
    value
}

fn string_example(schema: &Value) -> &'static str {
    match schema.get("format").and_then(Value::as_str) {
        Some("date-time") => "2025-01-01T00:00:00Z",
        Some("date") => "2025-01-01",
        Some("email") => "user@example.com",
        Some("uuid") => "00000000-0000-0000-0000-000000000000",
        Some("uri" | "url") => "https://example.com",
        _ => "string",
    }
}

/// The schema's types, without `null`: `type` as a string or a list (3.1).
fn types(schema: &Value) -> Vec<String> {
    match schema.get("type") {
        Some(Value::String(name)) if name != "null" => vec![name.clone()],
        Some(Value::Sequence(names)) => names
            .iter()
            .filter_map(Value::as_str)
            .filter(|name| *name != "null")
            .map(str::to_owned)
            .collect(),
        _ if schema.get("properties").is_some() => vec!["object".to_owned()],
        _ if schema.get("items").is_some() => vec!["array".to_owned()],
        _ => Vec::new(),
    }
}

/// Whether the schema admits `null`: 3.0's `nullable`, or `null` among 3.1's types.
fn nullable(schema: &Value) -> bool {
    schema.get("nullable").and_then(Value::as_bool) == Some(true)
        || match schema.get("type") {
            Some(Value::String(name)) => name == "null",
            Some(Value::Sequence(names)) => names.iter().any(|name| name.as_str() == Some("null")),
            _ => false,
        }
}

/// A schema in words: `Order`, `array of Order`, `string (date-time) or null`,
/// `string, one of: "a", "b"`, `one of: Card | Transfer`, `any`.
pub fn kind(tree: &Value, schema: &Value) -> String {
    kind_at(tree, schema, 0)
}

fn kind_at(tree: &Value, schema: &Value, depth: usize) -> String {
    if let Some(name) = ref_name(schema) {
        return name.to_owned();
    }
    if depth > MAX_DEPTH {
        return "…".to_owned();
    }
    let schema = deref(tree, schema);
    for (key, word) in [
        ("oneOf", "one of"),
        ("anyOf", "any of"),
        ("allOf", "all of"),
    ] {
        if let Some(parts) = schema.get(key).and_then(Value::as_sequence) {
            let names: Vec<String> = parts
                .iter()
                .map(|part| kind_at(tree, part, depth + 1))
                .collect();
            return format!("{word}: {}", names.join(" | "));
        }
    }
    let mut words: Vec<String> = types(schema)
        .into_iter()
        .map(|name| match name.as_str() {
            "array" => format!(
                "array of {}",
                schema
                    .get("items")
                    .map_or_else(|| "any".to_owned(), |items| kind_at(tree, items, depth + 1))
            ),
            _ => match schema.get("format").and_then(Value::as_str) {
                Some(format) => format!("{name} ({format})"),
                None => name,
            },
        })
        .collect();
    if words.is_empty() {
        words.push(if schema.get("const").is_some() {
            "constant".to_owned()
        } else {
            "any".to_owned()
        });
    }
    let mut text = words.join(" or ");
    if nullable(schema) {
        text.push_str(" or null");
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_sequence) {
        let shown: Vec<String> = values
            .iter()
            .take(MAX_ENUM_VALUES)
            .filter_map(|value| serde_json::to_string(value).ok())
            .collect();
        let more = if values.len() > MAX_ENUM_VALUES {
            ", …"
        } else {
            ""
        };
        text.push_str(&format!(", one of: {}{more}", shown.join(", ")));
    }
    if let Some(value) = schema
        .get("const")
        .and_then(|value| serde_json::to_string(value).ok())
    {
        text.push_str(&format!(" {value}"));
    }
    text
}

/// A schema line by line: the schema itself, then its properties (and those of array items,
/// `allOf` parts and `oneOf`/`anyOf` alternatives), unfolded to [`MAX_DEPTH`].
pub fn schema_lines(tree: &Value, schema: &Value) -> Vec<SchemaLine> {
    let mut lines = vec![SchemaLine {
        depth: 0,
        name: None,
        kind: kind(tree, schema),
        required: false,
        description: describe(deref(tree, schema)),
    }];
    let mut stack = Vec::new();
    children(tree, schema, 1, &mut stack, &mut lines);
    lines
}

fn describe(schema: &Value) -> Option<String> {
    text(schema, "description").or_else(|| text(schema, "title"))
}

fn push(lines: &mut Vec<SchemaLine>, line: SchemaLine) -> bool {
    if lines.len() < MAX_LINES {
        lines.push(line);
        true
    } else {
        if lines.last().is_some_and(|last| last.kind != "…") {
            lines.push(SchemaLine {
                depth: 0,
                name: None,
                kind: "…".to_owned(),
                required: false,
                description: Some("more is not shown".to_owned()),
            });
        }
        false
    }
}

/// The lines under a schema: its properties, its items' properties, its parts.
fn children(
    tree: &Value,
    schema: &Value,
    depth: usize,
    stack: &mut Vec<String>,
    lines: &mut Vec<SchemaLine>,
) {
    let name = ref_name(schema).map(str::to_owned);
    if let Some(name) = &name {
        if stack.contains(name) {
            push(
                lines,
                SchemaLine {
                    depth,
                    name: None,
                    kind: format!("{name} (recursive: see above)"),
                    required: false,
                    description: None,
                },
            );
            return;
        }
        stack.push(name.clone());
    }
    let resolved = deref(tree, schema);
    if depth > MAX_DEPTH {
        push(
            lines,
            SchemaLine {
                depth,
                name: None,
                kind: "…".to_owned(),
                required: false,
                description: Some(format!("nested deeper than {MAX_DEPTH} levels")),
            },
        );
    } else {
        unfold(tree, resolved, depth, stack, lines);
    }
    if name.is_some() {
        stack.pop();
    }
}

fn unfold(
    tree: &Value,
    schema: &Value,
    depth: usize,
    stack: &mut Vec<String>,
    lines: &mut Vec<SchemaLine>,
) {
    if let Some(parts) = schema.get("allOf").and_then(Value::as_sequence) {
        for part in parts {
            children(tree, part, depth, stack, lines);
        }
    }
    for key in ["oneOf", "anyOf"] {
        for (index, alternative) in schema
            .get(key)
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let line = SchemaLine {
                depth,
                name: Some(format!("option {}", index + 1)),
                kind: kind(tree, alternative),
                required: false,
                description: describe(deref(tree, alternative)),
            };
            if !push(lines, line) {
                return;
            }
            children(tree, alternative, depth + 1, stack, lines);
        }
    }
    if let Some(items) = schema.get("items") {
        children(tree, items, depth, stack, lines);
    }
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for (key, property) in schema
        .get("properties")
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten()
    {
        let Some(key) = key.as_str() else {
            continue;
        };
        let line = SchemaLine {
            depth,
            name: Some(key.to_owned()),
            kind: kind(tree, property),
            required: required.contains(&key),
            description: describe(deref(tree, property)),
        };
        if !push(lines, line) {
            return;
        }
        children(tree, property, depth + 1, stack, lines);
    }
    if let Some(extra) = schema
        .get("additionalProperties")
        .filter(|extra| extra.is_mapping())
    {
        let line = SchemaLine {
            depth,
            name: Some("<any name>".to_owned()),
            kind: kind(tree, extra),
            required: false,
            description: describe(deref(tree, extra)),
        };
        if push(lines, line) {
            children(tree, extra, depth + 1, stack, lines);
        }
    }
}

#[cfg(test)]
mod tests;
