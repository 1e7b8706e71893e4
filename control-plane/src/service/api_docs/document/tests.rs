use super::*;

const ORDERS_30_JSON: &str = r##"{
  "openapi": "3.0.3",
  "info": {"title": "Orders", "version": "1.2.0"},
  "paths": {
    "/orders/{id}": {
      "get": {"responses": {"200": {"description": "The order",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Order"}}}}}},
      "delete": {"responses": {"204": {"description": "Deleted"}}}
    }
  },
  "components": {"schemas": {"Order": {"type": "object", "nullable": true,
    "properties": {"id": {"type": "integer", "exclusiveMinimum": true, "minimum": 0}}}}}
}"##;

const ORDERS_31_YAML: &str = "openapi: 3.1.0
info:
  title: Orders
  version: '2'
paths:
  /orders:
    post:
      requestBody:
        content:
          application/json:
            schema:
              $ref: '#/components/schemas/New'
      responses:
        201:
          description: Created
components:
  schemas:
    New:
      type: [object, 'null']
      properties:
        item: {type: string, examples: [book]}
";

fn refused(text: &str, format: DocumentFormat) -> DocumentError {
    read(text.as_bytes(), format).unwrap_err()
}

#[test]
fn reads_a_3_0_json_document_with_its_summary() {
    let document = read(ORDERS_30_JSON.as_bytes(), DocumentFormat::Json).unwrap();
    assert_eq!(
        document.summary,
        Summary {
            openapi: "3.0.3".to_owned(),
            title: "Orders".to_owned(),
            version: "1.2.0".to_owned(),
            operations: 2,
        }
    );
}

#[test]
fn reads_a_3_1_yaml_document_with_numeric_status_keys() {
    let document = read(ORDERS_31_YAML.as_bytes(), DocumentFormat::Yaml).unwrap();
    assert_eq!(document.summary.openapi, "3.1.0");
    assert_eq!(document.summary.version, "2");
    assert_eq!(document.summary.operations, 1);
    let responses = &document.tree["paths"]["/orders"]["post"]["responses"];
    assert!(responses.get("201").is_some(), "{responses:?}");
}

#[test]
fn keeps_the_documents_order() {
    let text = r#"{"openapi": "3.1.0", "info": {"title": "T", "version": "1"},
        "paths": {"/z": {"get": {}}, "/a": {"get": {}}, "/m": {"get": {}}}}"#;
    let tree = parse(text.as_bytes(), DocumentFormat::Json).unwrap();
    let paths: Vec<&str> = tree["paths"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|key| key.as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/z", "/a", "/m"]);
}

#[test]
fn a_json_syntax_error_gives_its_line_and_column() {
    let broken =
        "{\n  \"openapi\": \"3.1.0\",\n  \"info\": {\"title\": \"T\" \"version\": \"1\"}\n}";
    let error = refused(broken, DocumentFormat::Json);
    assert!(
        error
            .message
            .starts_with("the document is not valid JSON at line 3, column 25: "),
        "{}",
        error.message
    );
    assert!(!error.message.ends_with("column 25"), "{}", error.message);
    assert_eq!(error.path, None);
}

#[test]
fn a_yaml_syntax_error_gives_its_line_and_column() {
    let broken = "openapi: 3.1.0\ninfo:\n  title: [unclosed\n  version: 1\n";
    let error = refused(broken, DocumentFormat::Yaml);
    assert!(
        error
            .message
            .starts_with("the document is not valid YAML at line "),
        "{}",
        error.message
    );
    assert!(error.message.contains(", column "), "{}", error.message);
}

#[test]
fn bytes_that_are_not_utf8_are_placed() {
    let error = read(b"openapi: 3.1.0\ninfo: \xff\n", DocumentFormat::Yaml).unwrap_err();
    assert_eq!(
        error.message,
        "the document is not UTF-8 text: a bad byte at line 2, column 7"
    );
}

#[test]
fn the_version_must_be_3_0_or_3_1_and_a_string() {
    let cases = [
        (
            "info: {title: T, version: '1'}\npaths: {}\n",
            "openapi",
            "`openapi` is missing",
        ),
        (
            "swagger: '2.0'\ninfo: {title: T, version: '1'}\n",
            "swagger",
            "Swagger 2.0",
        ),
        (
            "openapi: 3.1\ninfo: {title: T, version: '1'}\n",
            "openapi",
            "in YAML, quote it",
        ),
        (
            "openapi: 4.0.0\ninfo: {title: T, version: '1'}\n",
            "openapi",
            "`4.0.0` is not supported",
        ),
        (
            "openapi: 3.2.0\ninfo: {title: T, version: '1'}\n",
            "openapi",
            "reads 3.0.x and 3.1.x",
        ),
    ];
    for (text, path, words) in cases {
        let error = refused(text, DocumentFormat::Yaml);
        assert_eq!(error.path.as_deref(), Some(path), "{text}");
        assert!(error.message.contains(words), "{text}: {}", error.message);
    }
    let error = refused("[1, 2]", DocumentFormat::Json);
    assert!(
        error.message.contains("top level is not an object"),
        "{}",
        error.message
    );
}

#[test]
fn structural_errors_name_the_path_in_both_versions() {
    let no_title = r#"{"openapi": "3.0.0", "info": {"version": "1"}, "paths": {}}"#;
    let error = refused(no_title, DocumentFormat::Json);
    assert_eq!(error.path.as_deref(), Some("info"), "{}", error.message);
    assert!(
        error.message.contains("missing field `title`"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("OpenAPI 3.0 document at `info`"),
        "{}",
        error.message
    );

    let title_not_text = "openapi: 3.1.0\ninfo:\n  title: [1, 2]\n  version: '1'\n";
    let error = refused(title_not_text, DocumentFormat::Yaml);
    assert_eq!(
        error.path.as_deref(),
        Some("info.title"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("OpenAPI 3.1 document"),
        "{}",
        error.message
    );

    let no_responses = r#"{"openapi": "3.0.1", "info": {"title": "T", "version": "1"},
        "paths": {"/orders": {"get": {"summary": "List"}}}}"#;
    let error = refused(no_responses, DocumentFormat::Json);
    assert_eq!(
        error.path.as_deref(),
        Some(r#"paths["/orders"].get"#),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("missing field `responses`"),
        "{}",
        error.message
    );
}

#[test]
fn a_local_reference_must_point_at_something() {
    let dangling = r##"{"openapi": "3.1.0", "info": {"title": "T", "version": "1"},
        "paths": {"/a": {"get": {"responses": {"200": {"description": "ok",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Nope"}}}}}}}}}"##;
    let error = refused(dangling, DocumentFormat::Json);
    assert_eq!(
        error.path.as_deref(),
        Some(r#"paths["/a"].get.responses["200"].content["application/json"].schema"#)
    );
    assert!(
        error.message.contains("`#/components/schemas/Nope`"),
        "{}",
        error.message
    );
}

#[test]
fn references_are_json_pointers_in_uri_fragments() {
    let tree = parse(
        br#"{"paths": {"/a/{id}": {"get": 1}}, "list": [10, 20], "t~x": 3}"#,
        DocumentFormat::Json,
    )
    .unwrap();
    let number = |reference: &str| resolve(&tree, reference).and_then(Value::as_u64);
    assert_eq!(number("#/paths/~1a~1%7Bid%7D/get"), Some(1));
    assert_eq!(number("#/list/1"), Some(20));
    assert_eq!(number("#/t~0x"), Some(3));
    assert_eq!(number("#/list/9"), None);
    assert_eq!(number("#/paths/%ZZ"), None);
    assert_eq!(number("other.yaml#/a"), None);
    assert!(resolve(&tree, "#").is_some());
}

#[test]
fn yaml_merge_keys_and_aliases_are_applied() {
    let text = "openapi: 3.1.0
info: {title: T, version: '1'}
paths:
  /a:
    get: &op
      responses: {'200': {description: ok}}
    put:
      <<: *op
      summary: Replace
";
    let document = read(text.as_bytes(), DocumentFormat::Yaml).unwrap();
    assert_eq!(document.summary.operations, 2);
    assert_eq!(
        document.tree["paths"]["/a"]["put"]["summary"].as_str(),
        Some("Replace")
    );
    assert!(
        document.tree["paths"]["/a"]["put"]
            .get("responses")
            .is_some()
    );
}

#[test]
fn content_types_name_the_format() {
    for (content_type, format) in [
        ("application/json", Some(DocumentFormat::Json)),
        (
            "application/json; charset=utf-8",
            Some(DocumentFormat::Json),
        ),
        (
            "application/vnd.oai.openapi+json;version=3.1",
            Some(DocumentFormat::Json),
        ),
        ("application/yaml", Some(DocumentFormat::Yaml)),
        ("Application/X-YAML", Some(DocumentFormat::Yaml)),
        ("text/yaml", Some(DocumentFormat::Yaml)),
        ("application/vnd.oai.openapi", Some(DocumentFormat::Yaml)),
        ("text/plain", None),
        ("", None),
    ] {
        assert_eq!(
            DocumentFormat::from_content_type(content_type),
            format,
            "{content_type}"
        );
    }
}

#[test]
fn an_alias_bomb_is_refused_by_the_parser() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..10 {
        let previous = level - 1;
        text.push_str(&format!(
            "a{level}: &a{level} [*a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}]\n"
        ));
    }
    let error = refused(&text, DocumentFormat::Yaml);
    assert!(
        error.message.contains("not valid YAML"),
        "{}",
        error.message
    );
}
