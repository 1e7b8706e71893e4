//! Every way a request is refused, with its status, stable code, message and headers: the one
//! place where decisions become HTTP.

use std::time::Duration;

use crate::rate_limit::LimitState;
use crate::token::TokenError;

/// The realm named in `WWW-Authenticate` challenges.
pub const REALM: &str = "portico";
/// Attacker-controlled text (an `alg`, a `kid`, an issuer) is cut to this many characters
/// before it is echoed in a message.
const MAX_ECHO_CHARS: usize = 96;

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// No snapshot has arrived yet from the control plane (fail closed).
    SnapshotUnavailable,
    /// The request matches no API and unmatched requests are denied (`unmatched: deny`), or
    /// its Envoy route names an API the snapshot lacks.
    NoApi,
    /// The path cannot be read one way: it holds a NUL byte (`%00`), which upstreams written in
    /// C cut short, or its readings fall under two different APIs (see
    /// [`crate::routing`]); the reason says which.
    InvalidPath(&'static str),
    /// The request carries a token in more than one place (RFC 6750 §2 allows one method per
    /// request): the reason names the places.
    InvalidRequest(&'static str),
    /// The request asks the upstream to replace its method (`X-HTTP-Method-Override` and its
    /// kin, or a `_method` query parameter) on an API whose policies restrict methods.
    MethodOverride,
    /// The request carries no bearer token.
    MissingToken,
    /// The token failed verification.
    InvalidToken(TokenError),
    /// The token names no caller in any of the API's identity claims.
    MissingIdentity,
    /// The caller's registration was revoked.
    ClientRevoked,
    /// The caller holds no known policy.
    NoPolicy,
    /// The caller's registration would grant this request, but its binding expired (the
    /// developer can renew it in the portal, or an operator can extend it).
    AccessExpired,
    /// No active policy of the caller grants this API, method and path.
    AccessDenied,
    /// The caller's rate limit is spent.
    RateLimited(LimitState),
    /// The caller's quota is spent.
    QuotaExceeded(LimitState),
}

// === impl Denial ===

impl Denial {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Denial::SnapshotUnavailable => 503,
            Denial::NoApi => 404,
            Denial::InvalidPath(_) | Denial::InvalidRequest(_) | Denial::MethodOverride => 400,
            Denial::MissingToken
            | Denial::InvalidToken(_)
            | Denial::MissingIdentity
            | Denial::ClientRevoked => 401,
            Denial::NoPolicy | Denial::AccessExpired | Denial::AccessDenied => 403,
            Denial::RateLimited(_) | Denial::QuotaExceeded(_) => 429,
        }
    }

    /// The stable error code of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::SnapshotUnavailable => "snapshot_unavailable",
            Denial::NoApi => "no_api",
            Denial::InvalidPath(_) => "invalid_path",
            Denial::InvalidRequest(_) => "invalid_request",
            Denial::MethodOverride => "method_override",
            Denial::MissingToken => "missing_token",
            Denial::InvalidToken(error) => error.code(),
            Denial::MissingIdentity => "missing_identity",
            Denial::ClientRevoked => "client_revoked",
            Denial::NoPolicy => "no_policy",
            Denial::AccessExpired => "access_expired",
            Denial::AccessDenied => "access_denied",
            Denial::RateLimited(_) => "rate_limited",
            Denial::QuotaExceeded(_) => "quota_exceeded",
        }
    }

    /// A message for people: what happened and, where it helps, what to do.
    pub fn message(&self) -> String {
        let text = match self {
            Denial::SnapshotUnavailable => {
                "the gateway has not received its configuration yet; retry shortly".to_owned()
            }
            Denial::NoApi => "no API is served at this path".to_owned(),
            Denial::InvalidPath(reason) => format!("the path {reason}"),
            Denial::InvalidRequest(places) => format!(
                "the request carries a token in more than one place ({places}); send it one way \
                 only (RFC 6750 section 2)"
            ),
            Denial::MethodOverride => "this API does not accept method overrides \
                (X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override, _method); send the \
                method itself"
                .to_owned(),
            Denial::MissingToken => {
                "a bearer token is required (Authorization: Bearer <token>)".to_owned()
            }
            Denial::InvalidToken(error) => error.to_string(),
            Denial::MissingIdentity => "the token does not identify a client".to_owned(),
            Denial::ClientRevoked => "the client's registration has been revoked".to_owned(),
            Denial::NoPolicy => "the client holds no access policy".to_owned(),
            Denial::AccessExpired => {
                "the client's access has expired; renew it in the developer portal".to_owned()
            }
            Denial::AccessDenied => {
                "the client's policies do not grant access to this resource".to_owned()
            }
            Denial::RateLimited(state) => format!(
                "rate limit exceeded; retry in {} s",
                whole_seconds(state.retry_after)
            ),
            Denial::QuotaExceeded(state) => format!(
                "quota exhausted; it renews in {} s",
                whole_seconds(state.retry_after)
            ),
        };
        sanitize(&text)
    }

    /// The response headers besides `content-type`.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Denial::MissingToken => vec![("www-authenticate", format!("Bearer realm=\"{REALM}\""))],
            Denial::InvalidToken(_) | Denial::MissingIdentity | Denial::ClientRevoked => {
                vec![("www-authenticate", self.challenge("invalid_token"))]
            }
            Denial::InvalidRequest(_) => {
                vec![("www-authenticate", self.challenge("invalid_request"))]
            }
            Denial::NoPolicy | Denial::AccessExpired | Denial::AccessDenied => {
                vec![("www-authenticate", self.challenge("insufficient_scope"))]
            }
            Denial::RateLimited(state) | Denial::QuotaExceeded(state) => {
                let mut headers =
                    vec![("retry-after", whole_seconds(state.retry_after).to_string())];
                headers.extend(rate_limit_headers(state));
                headers
            }
            Denial::SnapshotUnavailable => vec![("retry-after", "1".to_owned())],
            Denial::NoApi | Denial::InvalidPath(_) | Denial::MethodOverride => Vec::new(),
        }
    }

    /// The JSON body: `{"error": code, "message": text}`, with `"request_id"` when the request
    /// has one ([`crate::request::Request::request_id`]).
    pub fn body(&self, request_id: Option<&str>) -> String {
        let mut body = serde_json::json!({"error": self.code(), "message": self.message()});
        if let Some(id) = request_id {
            body["request_id"] = id.into();
        }
        body.to_string()
    }

    fn challenge(&self, error: &str) -> String {
        // RFC 6750 §3: error_description must avoid `"` and `\`; `sanitize` removes them.
        format!(
            "Bearer realm=\"{REALM}\", error=\"{error}\", error_description=\"{}\"",
            self.message()
        )
    }
}

/// `X-RateLimit-*` headers describing `state` (also sent on allowed responses).
pub fn rate_limit_headers(state: &LimitState) -> [(&'static str, String); 3] {
    [
        ("x-ratelimit-limit", state.limit.to_string()),
        ("x-ratelimit-remaining", state.remaining.to_string()),
        (
            "x-ratelimit-reset",
            whole_seconds(state.reset_after).to_string(),
        ),
    ]
}

fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// Keeps messages safe to echo in a header and short: printable ASCII without `"` and `\`,
/// backquoted fragments cut to [`MAX_ECHO_CHARS`].
fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(256));
    let mut quoted_len = 0usize;
    let mut in_quote = false;
    for ch in text.chars() {
        if ch == '`' {
            if in_quote && quoted_len > MAX_ECHO_CHARS {
                out.push_str("...");
            }
            in_quote = !in_quote;
            quoted_len = 0;
            out.push(ch);
            continue;
        }
        if in_quote {
            quoted_len += 1;
            if quoted_len > MAX_ECHO_CHARS {
                continue;
            }
        }
        match ch {
            '"' | '\\' => out.push('\''),
            ' '..='~' => out.push(ch),
            _ => out.push('?'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alg::Algorithm;

    fn state(retry_after: Duration) -> LimitState {
        LimitState {
            limit: 10,
            remaining: 0,
            reset_after: Duration::from_millis(59_500),
            retry_after,
        }
    }

    #[test]
    fn statuses_follow_the_design() {
        assert_eq!(Denial::MissingToken.status(), 401);
        assert_eq!(Denial::InvalidToken(TokenError::Expired).status(), 401);
        assert_eq!(Denial::ClientRevoked.status(), 401);
        assert_eq!(Denial::NoPolicy.status(), 403);
        assert_eq!(Denial::AccessExpired.status(), 403);
        assert_eq!(Denial::AccessExpired.code(), "access_expired");
        assert_eq!(Denial::AccessDenied.status(), 403);
        assert_eq!(Denial::RateLimited(state(Duration::ZERO)).status(), 429);
        assert_eq!(Denial::SnapshotUnavailable.status(), 503);
    }

    #[test]
    fn invalid_token_answers_with_a_bearer_challenge_naming_the_reason() {
        let denial = Denial::InvalidToken(TokenError::Expired);
        assert_eq!(
            denial.headers(),
            [(
                "www-authenticate",
                "Bearer realm=\"portico\", error=\"invalid_token\", \
                 error_description=\"token has expired\""
                    .to_owned()
            )]
        );
        let body: serde_json::Value = serde_json::from_str(&denial.body(None)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": "token_expired", "message": "token has expired"})
        );
        let body: serde_json::Value = serde_json::from_str(&denial.body(Some("0a1b-2c"))).unwrap();
        assert_eq!(body["request_id"], "0a1b-2c");
    }

    #[test]
    fn missing_token_challenge_has_no_error_code() {
        assert_eq!(
            Denial::MissingToken.headers(),
            [("www-authenticate", "Bearer realm=\"portico\"".to_owned())]
        );
    }

    #[test]
    fn attacker_text_cannot_break_out_of_the_challenge() {
        let denial = Denial::InvalidToken(TokenError::AlgNotAllowed(
            "x\", error=\"none\r\nSet-Cookie: a=b".to_owned(),
        ));
        let (_, challenge) = &denial.headers()[0];
        assert!(
            !challenge.contains('\r') && !challenge.contains('\n'),
            "{challenge}"
        );
        assert_eq!(challenge.matches('"').count(), 6, "{challenge}");
    }

    #[test]
    fn long_attacker_text_is_cut() {
        let denial = Denial::InvalidToken(TokenError::AlgNotAllowed("A".repeat(10_000)));
        let message = denial.message();
        assert!(message.len() < 200, "{} chars", message.len());
        assert!(message.contains("...`"), "{message}");
    }

    #[test]
    fn rate_limited_carries_retry_after_and_rate_limit_headers() {
        let denial = Denial::RateLimited(state(Duration::from_millis(5_200)));
        assert_eq!(
            denial.headers(),
            [
                ("retry-after", "6".to_owned()),
                ("x-ratelimit-limit", "10".to_owned()),
                ("x-ratelimit-remaining", "0".to_owned()),
                ("x-ratelimit-reset", "60".to_owned()),
            ]
        );
        assert_eq!(denial.message(), "rate limit exceeded; retry in 6 s");
    }

    #[test]
    fn a_token_sent_two_ways_is_a_bad_request_with_an_invalid_request_challenge() {
        let denial = Denial::InvalidRequest("header and query");
        assert_eq!(denial.status(), 400);
        assert_eq!(denial.code(), "invalid_request");
        let (name, challenge) = &denial.headers()[0];
        assert_eq!(*name, "www-authenticate");
        assert!(
            challenge.starts_with("Bearer realm=\"portico\", error=\"invalid_request\""),
            "{challenge}"
        );
        assert_eq!(Denial::MethodOverride.status(), 400);
        assert_eq!(Denial::MethodOverride.code(), "method_override");
        assert_eq!(
            Denial::InvalidPath("holds a NUL byte").code(),
            "invalid_path"
        );
    }

    #[test]
    fn codes_are_stable() {
        assert_eq!(
            Denial::InvalidToken(TokenError::NoMatchingKey(Algorithm::ES256)).code(),
            "no_matching_key"
        );
        assert_eq!(
            Denial::QuotaExceeded(state(Duration::ZERO)).code(),
            "quota_exceeded"
        );
        assert_eq!(Denial::MissingIdentity.code(), "missing_identity");
    }
}
