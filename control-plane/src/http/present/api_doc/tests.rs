use super::*;
use crate::service::api_docs::document::{DocumentFormat, parse};

fn tree(yaml: &str) -> Value {
    parse(yaml.as_bytes(), DocumentFormat::Yaml).unwrap()
}

const SHOP: &str = "openapi: 3.1.0
info: {title: Shop, version: '1.0', description: Orders and items.}
tags:
  - {name: orders, description: Placing orders}
  - {name: unused}
paths:
  /orders/{id}:
    parameters:
      - {name: id, in: path, schema: {type: integer, format: int64}}
      - {name: trace, in: header, schema: {type: string}}
    get:
      tags: [orders]
      summary: Read an order
      parameters:
        - {name: trace, in: header, required: true, schema: {type: string}, description: A trace id}
        - {$ref: '#/components/parameters/Expand'}
      responses:
        '200':
          description: The order
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Order'}
        default: {$ref: '#/components/responses/Problem'}
  /orders:
    post:
      tags: [orders, admin]
      requestBody:
        required: true
        content:
          application/xml: {schema: {type: string}}
          application/json:
            schema: {$ref: '#/components/schemas/NewOrder'}
      responses:
        '201': {description: Created}
  /health:
    get:
      responses: {'200': {description: Up}}
components:
  parameters:
    Expand: {name: expand, in: query, required: true, schema: {type: array, items: {type: string, enum: [items, customer]}}}
  responses:
    Problem:
      description: A problem
      content:
        application/problem+json:
          schema: {type: object, properties: {title: {type: string}}}
  schemas:
    Order:
      type: object
      required: [id]
      properties:
        id: {type: integer, description: The order's number}
        note: {type: [string, 'null']}
        lines: {type: array, items: {$ref: '#/components/schemas/Line'}}
    Line:
      type: object
      properties:
        sku: {type: string}
        quantity: {type: integer}
    NewOrder:
      allOf:
        - {$ref: '#/components/schemas/Line'}
        - {type: object, required: [when], properties: {when: {type: string, format: date-time}}}
";

#[test]
fn operations_are_grouped_by_tag_in_the_documents_order() {
    let view = view(&tree(SHOP), "/shop");
    assert_eq!(view.title, "Shop");
    assert_eq!(view.version, "1.0");
    assert_eq!(view.description.as_deref(), Some("Orders and items."));
    let tags: Vec<(&str, Vec<String>)> = view
        .tags
        .iter()
        .map(|tag| {
            (
                tag.name.as_str(),
                tag.operations
                    .iter()
                    .map(|op| format!("{} {}", op.method, op.path))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        tags,
        [
            (
                "orders",
                vec!["GET /orders/{id}".to_owned(), "POST /orders".to_owned()]
            ),
            ("admin", vec!["POST /orders".to_owned()]),
            ("Other operations", vec!["GET /health".to_owned()]),
        ],
        "a tag without operations is left out; an operation is under each of its tags"
    );
    assert_eq!(view.tags[0].description.as_deref(), Some("Placing orders"));
    let anchors: Vec<&str> = view
        .tags
        .iter()
        .flat_map(|tag| tag.operations.iter().map(|op| op.anchor.as_str()))
        .collect();
    assert_eq!(anchors, ["op-0-0", "op-0-1", "op-1-0", "op-2-0"]);
    assert_eq!(view.omitted, 0);
}

#[test]
fn parameters_merge_the_path_items_with_the_operations_own() {
    let view = view(&tree(SHOP), "/shop");
    let get = &view.tags[0].operations[0];
    assert_eq!(get.summary.as_deref(), Some("Read an order"));
    let parameters: Vec<(&str, &str, bool, &str)> = get
        .parameters
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.location.as_str(),
                p.required,
                p.schema.as_str(),
            )
        })
        .collect();
    assert_eq!(
        parameters,
        [
            ("id", "path", true, "integer (int64)"),
            ("trace", "header", true, "string"),
            (
                "expand",
                "query",
                true,
                "array of string, one of: \"items\", \"customer\""
            ),
        ]
    );
    assert_eq!(get.parameters[1].description.as_deref(), Some("A trace id"));
}

#[test]
fn schemas_unfold_references_with_required_marks() {
    let view = view(&tree(SHOP), "/shop");
    let get = &view.tags[0].operations[0];
    let ok = &get.responses[0];
    assert_eq!(ok.status, "200");
    assert_eq!(ok.media_type.as_deref(), Some("application/json"));
    let lines: Vec<(usize, Option<&str>, &str, bool)> = ok
        .schema
        .iter()
        .map(|line| {
            (
                line.depth,
                line.name.as_deref(),
                line.kind.as_str(),
                line.required,
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            (0, None, "Order", false),
            (1, Some("id"), "integer", true),
            (1, Some("note"), "string or null", false),
            (1, Some("lines"), "array of Line", false),
            (2, Some("sku"), "string", false),
            (2, Some("quantity"), "integer", false),
        ]
    );
    assert_eq!(
        ok.schema[1].description.as_deref(),
        Some("The order's number")
    );
    let problem = &get.responses[1];
    assert_eq!(problem.status, "default");
    assert_eq!(problem.description.as_deref(), Some("A problem"));
    assert_eq!(
        problem.media_type.as_deref(),
        Some("application/problem+json")
    );
    assert_eq!(problem.schema[1].name.as_deref(), Some("title"));
}

#[test]
fn a_request_body_prefers_json_and_merges_all_of() {
    let view = view(&tree(SHOP), "/shop");
    let post = &view.tags[0].operations[1];
    let body = post.request.as_ref().unwrap();
    assert_eq!(body.media_type, "application/json");
    assert!(body.required);
    let names: Vec<(&str, bool)> = body
        .schema
        .iter()
        .skip(1)
        .map(|line| (line.name.as_deref().unwrap(), line.required))
        .collect();
    assert_eq!(names, [("sku", false), ("quantity", false), ("when", true)]);
    assert_eq!(body.schema[0].kind, "NewOrder");
    assert_eq!(
        kind(
            &tree(SHOP),
            &tree(SHOP)["components"]["schemas"]["NewOrder"]
        ),
        "all of: Line | object"
    );
}

#[test]
fn each_operation_has_a_curl_call_through_the_gateway() {
    let view = view(&tree(SHOP), "/shop");
    let get = &view.tags[0].operations[0];
    assert_eq!(
        get.call,
        "curl -H \"Authorization: Bearer $ACCESS_TOKEN\" \"$GATEWAY/shop/orders/{id}?expand={expand}\""
    );
    let post = &view.tags[0].operations[1];
    assert_eq!(
        post.call,
        "curl -X POST -H \"Authorization: Bearer $ACCESS_TOKEN\" -H 'Content-Type: application/json' \
         -d '{\"quantity\":0,\"sku\":\"string\",\"when\":\"2025-01-01T00:00:00Z\"}' \"$GATEWAY/shop/orders\""
    );
}

#[test]
fn paths_go_under_the_apis_listen_path_unless_already_there() {
    assert_eq!(gateway_path("/orders", "/orders/{id}", &[]), "/orders/{id}");
    assert_eq!(gateway_path("/orders", "/orders", &[]), "/orders");
    assert_eq!(gateway_path("/orders", "/ordersx", &[]), "/orders/ordersx");
    assert_eq!(gateway_path("/orders/", "/{id}", &[]), "/orders/{id}");
    assert_eq!(
        gateway_path("", "/health", &["a", "b"]),
        "/health?a={a}&b={b}"
    );
    assert_eq!(gateway_path("/", "/health", &[]), "/health");
}

#[test]
fn a_given_example_is_used_and_other_media_types_get_a_file() {
    let doc = tree(
        "openapi: 3.0.3
info: {title: T, version: '1'}
paths:
  /a:
    put:
      requestBody:
        content:
          application/json:
            example: {name: \"it's\"}
            schema: {type: object}
      responses: {'204': {description: Done}}
  /b:
    post:
      requestBody:
        content:
          multipart/form-data:
            schema: {type: object}
      responses: {'204': {description: Done}}
",
    );
    let view = view(&doc, "/a");
    let calls: Vec<&str> = view.tags[0]
        .operations
        .iter()
        .map(|op| op.call.as_str())
        .collect();
    assert_eq!(
        calls,
        [
            "curl -X PUT -H \"Authorization: Bearer $ACCESS_TOKEN\" -H 'Content-Type: application/json' \
             -d '{\"name\":\"it'\\''s\"}' \"$GATEWAY/a\"",
            "curl -X POST -H \"Authorization: Bearer $ACCESS_TOKEN\" -H 'Content-Type: multipart/form-data' \
             --data-binary @body \"$GATEWAY/a/b\"",
        ]
    );
}

#[test]
fn a_recursive_schema_is_named_not_unfolded_forever() {
    let doc = tree(
        "openapi: 3.0.3
info: {title: T, version: '1'}
paths:
  /tree:
    get:
      responses:
        '200':
          description: ok
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Node'}
components:
  schemas:
    Node:
      type: object
      nullable: true
      properties:
        name: {type: string}
        children: {type: array, items: {$ref: '#/components/schemas/Node'}}
",
    );
    let view = view(&doc, "");
    let lines = &view.tags[0].operations[0].responses[0].schema;
    let kinds: Vec<&str> = lines.iter().map(|line| line.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "Node",
            "string",
            "array of Node",
            "Node (recursive: see above)"
        ]
    );
    assert_eq!(
        kind(&doc, &doc["components"]["schemas"]["Node"]),
        "object or null"
    );
    let call = &view.tags[0].operations[0].call;
    assert_eq!(
        call,
        "curl -H \"Authorization: Bearer $ACCESS_TOKEN\" \"$GATEWAY/tree\""
    );
}

#[test]
fn deep_and_wide_schemas_are_bounded() {
    let mut schema = "{type: string}".to_owned();
    for level in 0..20 {
        schema = format!("{{type: object, properties: {{p{level}: {schema}}}}}");
    }
    let properties: Vec<String> = (0..500)
        .map(|n| format!("f{n}: {{type: integer}}"))
        .collect();
    let doc = tree(&format!(
        "openapi: 3.1.0
info: {{title: T, version: '1'}}
paths:
  /deep:
    get:
      responses:
        '200': {{description: ok, content: {{application/json: {{schema: {schema}}}}}}}
  /wide:
    get:
      responses:
        '200': {{description: ok, content: {{application/json: {{schema: {{type: object, properties: {{{}}}}}}}}}}}
",
        properties.join(", ")
    ));
    let view = view(&doc, "");
    let deep = &view.tags[0].operations[0].responses[0].schema;
    assert!(deep.iter().all(|line| line.depth <= MAX_DEPTH + 1));
    assert_eq!(deep.last().unwrap().kind, "…");
    let wide = &view.tags[0].operations[1].responses[0].schema;
    assert_eq!(wide.len(), MAX_LINES + 1);
    assert_eq!(
        wide.last().unwrap().description.as_deref(),
        Some("more is not shown")
    );
}

#[test]
fn operations_beyond_the_bound_are_counted_not_shown() {
    let paths: String = (0..MAX_OPERATIONS + 5)
        .map(|n| format!("  /r{n}:\n    get: {{responses: {{'200': {{description: ok}}}}}}\n"))
        .collect();
    let doc = tree(&format!(
        "openapi: 3.1.0\ninfo: {{title: T, version: '1'}}\npaths:\n{paths}"
    ));
    let view = view(&doc, "");
    assert_eq!(view.tags[0].operations.len(), MAX_OPERATIONS);
    assert_eq!(view.omitted, 5);
}

#[test]
fn a_tree_of_the_wrong_shape_gives_an_empty_view_not_a_failure() {
    for junk in [
        "{}",
        "paths: [1, 2]",
        "paths: {/a: 3, /b: {get: [1]}, /c: {get: {parameters: {x: 1}, responses: [1], requestBody: 7}}}",
        "info: 5\ntags: {a: 1}\npaths: {/a: {$ref: '#/paths/~1a'}}",
    ] {
        let view = view(&tree(junk), "/x");
        assert!(view.title.is_empty(), "{junk}");
        for tag in &view.tags {
            for op in &tag.operations {
                assert!(op.call.starts_with("curl "), "{junk}");
            }
        }
    }
}
