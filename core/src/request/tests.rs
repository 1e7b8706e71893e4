use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::decision::Grant;
use crate::snapshot::Snapshot;

fn request<'a>(path: &'a str, headers: &'a [(&'a str, &'a str)]) -> Request<'a> {
    Request {
        method: "GET",
        path,
        host: None,
        headers,
        route_api: None,
    }
}

fn header_only() -> TokenSources {
    TokenSources::default()
}

fn all_sources() -> TokenSources {
    TokenSources {
        header: true,
        query: Some("token".to_owned()),
        cookie: Some("session".to_owned()),
    }
}

fn token<'a>(request: &Request<'a>, sources: &TokenSources) -> Result<Option<String>, Denial> {
    request
        .token(sources)
        .map(|token| token.map(|token| token.into_owned()))
}

#[test]
fn the_header_is_the_default_source() {
    let headers = [("authorization", "Bearer abc")];
    assert_eq!(
        token(&request("/orders", &headers), &header_only()),
        Ok(Some("abc".to_owned()))
    );
    assert_eq!(token(&request("/orders", &[]), &header_only()), Ok(None));
    let basic = [("authorization", "Basic dXNlcjpwYXNz")];
    assert_eq!(token(&request("/orders", &basic), &header_only()), Ok(None));
}

#[test]
fn configured_query_parameters_and_cookies_carry_tokens() {
    let sources = all_sources();
    assert_eq!(
        token(&request("/orders?x=1&token=abc", &[]), &sources),
        Ok(Some("abc".to_owned()))
    );
    assert_eq!(
        token(&request("/orders?TOKEN=a%2Bc", &[]), &sources),
        Ok(Some("a+c".to_owned()))
    );
    let cookies = [("cookie", "theme=dark; session=\"abc\"")];
    assert_eq!(
        token(&request("/orders", &cookies), &sources),
        Ok(Some("abc".to_owned()))
    );
}

#[test]
fn a_token_in_a_place_the_api_does_not_read_is_no_token() {
    assert_eq!(
        token(&request("/orders?access_token=abc", &[]), &header_only()),
        Ok(None)
    );
    let cookie_only = TokenSources {
        header: false,
        query: None,
        cookie: Some("session".to_owned()),
    };
    let headers = [("authorization", "Bearer abc")];
    assert_eq!(token(&request("/orders", &headers), &cookie_only), Ok(None));
}

/// A target, its headers and the API's token sources.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], TokenSources);

/// Every way of sending two tokens (RFC 6750 §2: one method per request) is refused.
#[test]
fn a_token_in_more_than_one_place_is_an_invalid_request() {
    let bearer = ("authorization", "Bearer abc");
    let cases: &[Case<'_>] = &[
        ("/orders/1?access_token=other", &[bearer], header_only()),
        ("/orders/1?Access_Token=other", &[bearer], header_only()),
        ("/orders/1?access%5Ftoken=other", &[bearer], header_only()),
        ("/orders/1?access.token=other", &[bearer], header_only()),
        ("/orders/1?a=1;access_token=other", &[bearer], header_only()),
        ("/orders/1?token=other", &[bearer], all_sources()),
        (
            "/orders/1",
            &[bearer, ("cookie", "session=other")],
            all_sources(),
        ),
        (
            "/orders/1",
            &[bearer, ("authorization", "Bearer other")],
            header_only(),
        ),
        (
            "/orders/1",
            &[bearer, ("authorization", "Basic dXNlcjpwYXNz")],
            header_only(),
        ),
        ("/orders/1?token=a&token=b", &[], all_sources()),
        (
            "/orders/1?access_token=a&access_token=b",
            &[],
            header_only(),
        ),
        ("/orders/1?token=a&access_token=b", &[], all_sources()),
        (
            "/orders/1",
            &[("cookie", "session=a"), ("cookie", "session=b")],
            all_sources(),
        ),
        (
            "/orders/1",
            &[("cookie", "session=a; session=b")],
            all_sources(),
        ),
        // One cookie to an upstream that reads names as PHP or ASP.NET do.
        (
            "/orders/1",
            &[("cookie", "session=a; SESSION=b")],
            all_sources(),
        ),
        (
            "/orders/1?token=a",
            &[("cookie", "session=b")],
            all_sources(),
        ),
    ];
    for (path, headers, sources) in cases {
        let result = token(&request(path, headers), sources);
        assert!(
            matches!(result, Err(Denial::InvalidRequest(_))),
            "{path} {headers:?}: {result:?}"
        );
    }
}

#[test]
fn empty_copies_are_not_tokens() {
    let headers = [("authorization", "Bearer abc")];
    assert_eq!(
        token(&request("/orders?access_token=", &headers), &header_only()),
        Ok(Some("abc".to_owned()))
    );
}

#[test]
fn method_overrides_are_found_in_any_spelling() {
    for headers in [
        [("x-http-method-override", "DELETE")],
        [("x-http-method", "DELETE")],
        [("x-method-override", "DELETE")],
        [("x_http_method_override", "DELETE")],
        [("X-HTTP-Method-Override", "DELETE")],
    ] {
        assert!(
            request("/orders", &headers).has_method_override(),
            "{headers:?}"
        );
    }
    assert!(request("/orders?_method=DELETE", &[]).has_method_override());
    assert!(request("/orders?a=1&_METHOD=DELETE", &[]).has_method_override());
    assert!(request("/orders?%5Fmethod=DELETE", &[]).has_method_override());
    assert!(!request("/orders?method=x", &[("x-method", "y")]).has_method_override());
}

#[test]
fn cors_preflights_need_origin_and_the_requested_method() {
    let preflight = [
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "POST"),
    ];
    let options = |headers| Request {
        method: "OPTIONS",
        ..request("/orders", headers)
    };
    assert!(options(&preflight).is_cors_preflight());
    assert!(!options(&preflight[..1]).is_cors_preflight());
    assert!(!request("/orders", &preflight).is_cors_preflight());
}

#[test]
fn requests_are_read_from_envoy_header_maps() {
    let headers = [
        (":method", "POST"),
        (":path", "/orders?x=1"),
        (":authority", "api.example.com"),
        ("authorization", "Bearer abc"),
    ];
    let request = Request::from_headers(&headers, Some("orders"));
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/orders?x=1");
    assert_eq!(request.host, Some("api.example.com"));
    assert_eq!(request.route_api, Some("orders"));
}

#[test]
fn stripping_keeps_the_other_parameters_as_written() {
    let strip =
        |target: &str| strip_parameters(target, |name| name == "access_token", |_, _| false);
    assert_eq!(strip("/a?access_token=x"), Some("/a".to_owned()));
    assert_eq!(
        strip("/a?x=%20&access_token=&y=2"),
        Some("/a?x=%20&y=2".to_owned())
    );
    assert_eq!(strip("/a?access_token=1;y=2"), Some("/a?y=2".to_owned()));
    assert_eq!(strip("/a?x=1;ACCESS.TOKEN=2"), Some("/a?x=1".to_owned()));
    assert_eq!(strip("/a?x=1"), None);
    assert_eq!(strip("/a"), None);
}

fn snapshot() -> CompiledSnapshot {
    let snapshot: Snapshot = serde_json::from_value(json!({
        "apis": [
            {"id": "orders", "listen_path": "/orders", "issuers": ["idp"],
             "accept_any_audience": true, "policies_header": "x-portico-policies",
             "metadata_headers": {"x-plan": "{policy.metadata.plan}"},
             "bypass_cors_preflight": true,
             "token_sources": {"query": "token", "cookie": "session"}},
            {"id": "plain", "listen_path": "/plain", "issuers": ["idp"],
             "accept_any_audience": true}
        ],
        "issuers": [{"id": "idp", "issuer": "https://idp.example.com"}]
    }))
    .unwrap();
    CompiledSnapshot::compile(snapshot).unwrap()
}

fn grant(api: usize) -> Decision {
    Decision::Allow(Grant {
        api,
        identity: Arc::from("client-1"),
        policies: vec![Arc::from("gold")],
        rate_limit: None,
        metadata_headers: Vec::new(),
    })
}

#[test]
fn every_spelling_of_a_trusted_header_is_removed_on_every_forwarded_path() {
    let snapshot = snapshot();
    let headers = [
        (":path", "/x"),
        ("x_portico_client_id", "spoofed"),
        ("x-portico-client-id", "spoofed"),
        ("x-portico_policies", "spoofed"),
        ("X_Plan", "spoofed"),
        ("x-other", "kept"),
    ];
    let request = request("/x", &headers);
    for decision in [
        Decision::PassThrough,
        grant(1),
        Decision::Preflight { api: 0 },
    ] {
        let edits = edits(Some(&snapshot), &decision, &request);
        for spoofed in [
            "x_portico_client_id",
            "x-portico-client-id",
            "x-portico_policies",
            "X_Plan",
        ] {
            assert!(
                edits.remove.iter().any(|n| n == spoofed),
                "{decision:?}: {edits:?}"
            );
        }
        assert!(!edits.remove.iter().any(|n| n == "x-other"));
    }
    let refused = Decision::Deny {
        api: None,
        denial: Denial::MissingToken,
    };
    assert_eq!(edits(Some(&snapshot), &refused, &request), Edits::default());
}

#[test]
fn allowed_requests_lose_unread_token_places_and_gain_the_identity() {
    let snapshot = snapshot();
    let headers = [("authorization", "Bearer abc")];
    let edits = edits(
        Some(&snapshot),
        &grant(1),
        &request("/plain/1?access_token=&x=1", &headers),
    );
    assert_eq!(edits.path.as_deref(), Some("/plain/1?x=1"));
    assert_eq!(
        edits.set,
        [("x-portico-client-id".to_owned(), "client-1".to_owned())]
    );
    // The API's own parameter, which carried the verified token, stays.
    let kept = super::edits(
        Some(&snapshot),
        &grant(0),
        &request("/orders?token=abc", &[]),
    );
    assert_eq!(kept.path, None);
    assert!(
        kept.set
            .contains(&("x-portico-policies".to_owned(), "gold".to_owned()))
    );
}

#[test]
fn preflights_lose_every_token_place() {
    let snapshot = snapshot();
    let headers = [
        ("authorization", "Bearer abc"),
        ("cookie", "theme=dark; session=abc"),
        ("cookie", "lang=en"),
    ];
    let edits = edits(
        Some(&snapshot),
        &Decision::Preflight { api: 0 },
        &request("/orders?token=a&access_token=b&x=1", &headers),
    );
    assert_eq!(edits.path.as_deref(), Some("/orders?x=1"));
    assert!(edits.remove.contains(&"authorization".to_owned()));
    assert!(edits.remove.contains(&"cookie".to_owned()));
    assert_eq!(
        edits.set,
        [("cookie".to_owned(), "theme=dark; lang=en".to_owned())]
    );
}

#[test]
fn allowed_requests_gain_the_plan_metadata_the_grant_carries() {
    let snapshot = snapshot();
    let mut decision = grant(0);
    if let Decision::Allow(grant) = &mut decision {
        grant.metadata_headers = vec![("x-plan".to_owned(), "gold".to_owned())];
    }
    let headers = [("x-plan", "spoofed")];
    let edits = edits(Some(&snapshot), &decision, &request("/orders", &headers));
    assert!(edits.remove.contains(&"x-plan".to_owned()));
    assert!(
        edits
            .set
            .contains(&("x-plan".to_owned(), "gold".to_owned()))
    );
    // A grant without the key sets nothing: the client's copy is only removed.
    let edits = super::edits(Some(&snapshot), &grant(0), &request("/orders", &headers));
    assert!(edits.remove.contains(&"x-plan".to_owned()));
    assert!(!edits.set.iter().any(|(name, _)| name == "x-plan"));
}

#[test]
fn a_log_line_shows_the_path_never_the_query() {
    for (target, path) in [
        ("/orders/1?access_token=eyJ.x.y", "/orders/1"),
        ("/orders/1#frag?x", "/orders/1"),
        ("/orders/1", "/orders/1"),
        ("?access_token=t", ""),
    ] {
        assert_eq!(request(target, &[]).path_without_query(), path, "{target}");
    }
}

#[test]
fn only_a_visible_bounded_request_id_is_echoed() {
    let long = "a".repeat(rules::MAX_REQUEST_ID_BYTES + 1);
    for (value, echoed) in [
        ("0d2c5e3a-8f1b-4c6d-9e7f-123456789abc", true),
        ("", false),
        ("has space", false),
        ("line\r\nbreak", false),
        ("caf\u{e9}", false),
        (long.as_str(), false),
    ] {
        let headers = [("x-request-id", value)];
        let expected = echoed.then_some(value);
        assert_eq!(request("/", &headers).request_id(), expected, "{value:?}");
    }
    assert_eq!(request("/", &[]).request_id(), None);
}

#[test]
fn a_cookie_spelled_as_php_reads_the_token_cookie_is_a_second_token() {
    let dotted = TokenSources {
        header: false,
        query: None,
        cookie: Some("sess.tok".to_owned()),
    };
    let forged = [("cookie", "sess_tok=forged; sess.tok=valid")];
    assert_eq!(
        token(&request("/orders", &forged), &dotted),
        Err(Denial::InvalidRequest("a cookie, twice"))
    );
    let plain = [("cookie", "theme=dark; sess.tok=valid")];
    assert_eq!(
        token(&request("/orders", &plain), &dotted),
        Ok(Some("valid".to_owned()))
    );
}
