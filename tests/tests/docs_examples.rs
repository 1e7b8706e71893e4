//! Every worked example of `docs/admin-api.md` and `docs/portal-api.md`, run in order against
//! the `portico` binary and a real IdP, so that the documentation cannot drift from the
//! product.
//!
//! What an example is, in those files: every ```` ```sh ```` block. Each logical line (joined
//! over trailing `\` and over line breaks inside quotes, as a shell does) is one of
//! - `export NAME=...`: the reader's setup; the test sets these variables itself;
//! - `curl ...`: run (the flags `-s`, `-i`, `-X`, `-H`, `-d`, `-c`, `-b` are understood);
//! - `NAME=$(curl ... | jq -r .path)`: run, and keep the value at `.path` (such as
//!   `.items[0].id`) of the answer as `$NAME`;
//! - `# ...` right after a command: what it answers. `# HTTP/1.1 <status> ...` is the status
//!   (without it, any 2xx); `# name: value` a response header; the other `#` lines, joined, a
//!   JSON value that the answer must contain: objects match when every member shown matches
//!   (members not shown are not compared), arrays element by element, a string `"…"` matches
//!   any value, and in any other string each `…` stands for any run of characters. A ```` ```json ```` block right
//!   after a ```` ```sh ```` block is the answer of its last command, compared the same way.
//!
//! Any other line fails the test, so every example runs. The documents name example hosts;
//! the test maps them to the real IdP it starts (see [`HOSTS`]).

use std::collections::HashMap;

use portico_tests::control_plane::{ADMIN_KEY, DATA_PLANE_TOKEN};
use portico_tests::{ControlPlane, Idp, IdpOptions};
use reqwest::Method;
use serde_json::Value;

/// Example IdP URLs of the documents, all served in the test by one real `oidc-provider`.
const HOSTS: [&str; 4] = [
    "https://sso.example.com/realms/apis",
    "https://gluu.example.com",
    "https://idp.example.com",
    "https://okta.example.com",
];

/// The initial access token the documents show; the test IdP is started with it.
const INITIAL_ACCESS_TOKEN: &str = "eyJraWQiOiJpYXQtZG9jcyJ9.docs-initial-access-token";

/// One command of an example, with what it must answer.
#[derive(Debug)]
struct Step {
    /// `docs/<file>:<line>`, for failure messages.
    at: String,
    /// The command line, as written.
    command: String,
    /// Keep this field of the answer as this variable.
    capture: Option<(String, String)>,
    status: Option<u16>,
    headers: Vec<(String, String)>,
    body: Option<Value>,
}

/// The steps of a document, in order.
fn steps(file: &str) -> Vec<Step> {
    let text = std::fs::read_to_string(portico_tests::paths::workspace_root().join(file))
        .unwrap_or_else(|error| panic!("{file}: {error}"));
    let mut steps: Vec<Step> = Vec::new();
    let mut block: Option<&str> = None;
    let mut pending = String::new();
    let mut pending_line = 0;
    let mut json = String::new();
    let mut expected: Vec<String> = Vec::new();
    let finish_expectations = |steps: &mut Vec<Step>, expected: &mut Vec<String>| {
        if expected.is_empty() {
            return;
        }
        let step = steps.last_mut().expect("expectations follow a command");
        let mut body = String::new();
        for line in expected.drain(..) {
            if let Some(status) = line.strip_prefix("HTTP/1.1 ") {
                step.status = status.split(' ').next().and_then(|code| code.parse().ok());
            } else if let Some((name, value)) = line
                .split_once(": ")
                .filter(|(name, _)| body.is_empty() && !name.starts_with(['{', '[', '"', ' ']))
            {
                step.headers
                    .push((name.to_ascii_lowercase(), value.to_owned()));
            } else {
                body.push_str(&line);
                body.push('\n');
            }
        }
        if !body.trim().is_empty() {
            step.body = Some(serde_json::from_str(&body).unwrap_or_else(|error| {
                panic!(
                    "{}: the expected answer is not JSON ({error}): {body}",
                    step.at
                )
            }));
        }
    };
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        match block {
            None => {
                if line == "```sh" {
                    block = Some("sh");
                } else if line == "```json" && steps.last().is_some_and(|s| s.body.is_none()) {
                    block = Some("json");
                }
                continue;
            }
            Some(_) if line == "```" => {
                if block == Some("json") {
                    let step = steps.last_mut().expect("a command before its answer");
                    step.body = Some(serde_json::from_str(&json).unwrap_or_else(|error| {
                        panic!("{}: the ```json answer is not JSON: {error}", step.at)
                    }));
                    json.clear();
                } else {
                    finish_expectations(&mut steps, &mut expected);
                }
                block = None;
                continue;
            }
            Some("json") => {
                json.push_str(line);
                json.push('\n');
                continue;
            }
            Some(_) => {}
        }
        if let Some(comment) = line.strip_prefix('#') {
            assert!(
                pending.is_empty(),
                "{file}:{number}: a comment inside a command"
            );
            expected.push(comment.strip_prefix(' ').unwrap_or(comment).to_owned());
            continue;
        }
        if pending.is_empty() {
            pending_line = number;
        }
        match line.strip_suffix('\\') {
            Some(start) => {
                pending.push_str(start);
                pending.push(' ');
                continue;
            }
            None => pending.push_str(line),
        }
        if shlex::split(&pending).is_none() {
            // A quoted argument (a JSON body) goes on over the next line.
            pending.push('\n');
            continue;
        }
        let command = std::mem::take(&mut pending);
        let command = command.trim();
        if command.is_empty() || command.starts_with("export ") {
            continue;
        }
        finish_expectations(&mut steps, &mut expected);
        let at = format!("{file}:{pending_line}");
        let (command, capture) = match command.split_once("=$(") {
            Some((name, rest)) if name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') => {
                let (curl, jq) = rest
                    .strip_suffix(')')
                    .and_then(|rest| rest.rsplit_once(" | jq -r "))
                    .unwrap_or_else(|| panic!("{at}: write NAME=$(curl ... | jq -r .path)"));
                (curl.to_owned(), Some((name.to_owned(), jq.to_owned())))
            }
            _ => (command.to_owned(), None),
        };
        assert!(
            command.starts_with("curl "),
            "{at}: an example line that the docs test cannot run: {command}"
        );
        steps.push(Step {
            at,
            command,
            capture,
            status: None,
            headers: Vec::new(),
            body: None,
        });
    }
    assert!(
        block.is_none() && pending.is_empty(),
        "{file}: an unclosed example"
    );
    steps
}

/// `$NAME`, `${NAME}` and `$(uuidgen)` replaced; the documents' example hosts mapped.
fn expand(text: &str, vars: &HashMap<String, String>, idp: &str) -> String {
    let mut out = text.replace("$(uuidgen)", &uuid());
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort_by_key(|name| std::cmp::Reverse(name.len()));
    for name in names {
        out = out
            .replace(&format!("${{{name}}}"), &vars[name])
            .replace(&format!("${name}"), &vars[name]);
    }
    for host in HOSTS {
        out = out.replace(host, idp);
    }
    out
}

/// A fresh value for each `$(uuidgen)` (an idempotency key only has to be new).
fn uuid() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// A curl command line as a request: method, URL, headers and body.
struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    uses_jar: bool,
}

fn parse_curl(command: &str, at: &str) -> Request {
    let words = shlex::split(command).unwrap_or_else(|| panic!("{at}: unbalanced quotes"));
    let mut words = words.into_iter().skip(1);
    let mut request = Request {
        method: Method::GET,
        url: String::new(),
        headers: Vec::new(),
        body: None,
        uses_jar: false,
    };
    let mut method = None;
    while let Some(word) = words.next() {
        let mut value = || {
            words
                .next()
                .unwrap_or_else(|| panic!("{at}: {word} needs a value"))
        };
        match word.as_str() {
            "-s" | "-i" | "-si" | "-is" => {}
            "-X" => method = Some(value()),
            "-H" => {
                let header = value();
                let (name, value) = header
                    .split_once(':')
                    .unwrap_or_else(|| panic!("{at}: bad header {header}"));
                request
                    .headers
                    .push((name.trim().to_owned(), value.trim().to_owned()));
            }
            "-d" => request.body = Some(value()),
            "-c" | "-b" => {
                value();
                request.uses_jar = true;
            }
            url if url.starts_with("http") => request.url = url.to_owned(),
            other => panic!("{at}: the docs test does not know the curl argument {other}"),
        }
    }
    request.method = match (method, &request.body) {
        (Some(method), _) => method
            .parse()
            .unwrap_or_else(|_| panic!("{at}: bad method")),
        (None, Some(_)) => Method::POST,
        (None, None) => Method::GET,
    };
    assert!(!request.url.is_empty(), "{at}: no URL");
    request
}

/// Whether `text` matches `pattern`, where each `…` stands for any run of characters.
fn glob(text: &str, pattern: &str) -> bool {
    let mut parts = pattern.split('…');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (index, part) in parts.iter().enumerate() {
        if index + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// The value at a jq path such as `.items[0].id`.
fn at_path<'v>(value: &'v Value, path: &str) -> &'v Value {
    path.split('.')
        .filter(|step| !step.is_empty())
        .fold(value, |value, step| match step.split_once('[') {
            Some((name, index)) => {
                let index: usize = index.trim_end_matches(']').parse().unwrap_or(usize::MAX);
                let value = if name.is_empty() { value } else { &value[name] };
                &value[index]
            }
            None => &value[step],
        })
}

/// Whether `actual` contains `expected` (see the module docs).
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (_, Value::String(pattern)) if pattern == "…" => true,
        (Value::String(actual), Value::String(pattern)) if pattern.contains('…') => {
            glob(actual, pattern)
        }
        (Value::Object(actual), Value::Object(expected)) => expected.iter().all(|(name, value)| {
            actual
                .get(name)
                .is_some_and(|actual| contains(actual, value))
        }),
        (Value::Array(actual), Value::Array(expected)) => {
            actual.len() == expected.len()
                && actual.iter().zip(expected).all(|(a, e)| contains(a, e))
        }
        _ => actual == expected,
    }
}

async fn run(file: &str, vars: &mut HashMap<String, String>, idp: &str) -> usize {
    let steps = steps(file);
    let client = reqwest::Client::new();
    // curl's cookie jar (`-c jar`, `-b jar`): the session cookie the portal sets.
    let mut jar: Vec<String> = Vec::new();
    for step in &steps {
        let request = parse_curl(&expand(&step.command, vars, idp), &step.at);
        let mut builder = client.request(request.method.clone(), &request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if request.uses_jar && !jar.is_empty() {
            builder = builder.header("cookie", jar.join("; "));
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let response = builder
            .send()
            .await
            .unwrap_or_else(|error| panic!("{}: {error}", step.at));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if request.uses_jar {
            for cookie in headers.get_all("set-cookie") {
                let pair = cookie
                    .to_str()
                    .unwrap_or_default()
                    .split(';')
                    .next()
                    .unwrap_or_default();
                if let Some((name, _)) = pair.split_once('=') {
                    jar.retain(|kept| !kept.starts_with(&format!("{name}=")));
                    jar.push(pair.to_owned());
                }
            }
        }
        let text = response.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match step.status {
            Some(expected) => assert_eq!(status, expected, "{}: {}\n{text}", step.at, step.command),
            None => assert!(
                (200..300).contains(&status),
                "{}: {} answered {status}: {text}",
                step.at,
                step.command
            ),
        }
        for (name, value) in &step.headers {
            let actual = headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default();
            let value = expand(value, vars, idp);
            assert!(
                contains(
                    &Value::String(actual.to_owned()),
                    &Value::String(value.clone())
                ),
                "{}: header {name} is {actual:?}, the docs say {value:?}",
                step.at
            );
        }
        if let Some(expected) = &step.body {
            let expected: Value =
                serde_json::from_str(&expand(&expected.to_string(), vars, idp)).unwrap();
            assert!(
                contains(&body, &expected),
                "{}: {}\nanswered {text}\nthe docs say {expected}",
                step.at,
                step.command
            );
        }
        if let Some((name, field)) = &step.capture {
            let value = at_path(&body, field)
                .as_str()
                .unwrap_or_else(|| panic!("{}: no string `{field}` in {text}", step.at));
            vars.insert(name.clone(), value.to_owned());
        }
    }
    steps.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worked_example_in_the_docs_runs_as_shown() {
    let idp = Idp::start(IdpOptions {
        initial_access_token: Some(INITIAL_ACCESS_TOKEN.to_owned()),
        ..IdpOptions::default()
    })
    .await;
    let control_plane = ControlPlane::start(&[]).await;
    let mut vars: HashMap<String, String> = HashMap::from([
        ("PORTICO".to_owned(), control_plane.url("")),
        ("PORTAL".to_owned(), control_plane.url("/portal/api/v1")),
        ("KEY".to_owned(), ADMIN_KEY.to_owned()),
        ("DATA_PLANE_TOKEN".to_owned(), DATA_PLANE_TOKEN.to_owned()),
        (
            "INITIAL_ACCESS_TOKEN".to_owned(),
            INITIAL_ACCESS_TOKEN.to_owned(),
        ),
    ]);
    let mut ran = 0;
    for file in ["docs/admin-api.md", "docs/portal-api.md"] {
        ran += run(file, &mut vars, &idp.issuer).await;
    }
    assert!(ran > 20, "only {ran} examples ran");
}
