//! The identity provider (IdP) client layer: the only code that talks to an IdP over HTTP.
//!
//! - [`discovery`] reads an issuer's OpenID Connect discovery document (`jwks_uri`,
//!   `registration_endpoint`, `token_endpoint`) and checks that it names the expected issuer.
//! - [`jwks_fetch`] fetches an issuer's key set, keeps the keys Portico can verify with, says
//!   which were skipped and why, and says when to fetch again (`Cache-Control` within bounds).
//! - [`dcr`] registers and manages OAuth clients at the IdP (RFC 7591 and RFC 7592), with one
//!   driver per provider family behind the [`dcr::DcrDriver`] trait.
//!
//! [`client::HttpIdp`] puts these together: built once at start-up, it is what the services
//! call, through the [`client::IdpClient`] trait.
//!
//! Every call goes through [`IdpHttp`] built by [`http_client`], with a bounded connect timeout
//! and a bounded total timeout (the total covers the whole exchange, body included), safe
//! redirects on `GET` only (never `https` to `http`), and a size cap on every response body. Transport
//! failures are classified once, in [`TransportError`], so that an operator can tell a timeout
//! from a refused connection from an oversized answer, whichever module made the call.
//!
//! Secrets (initial access tokens, registration access tokens, client secrets) travel as
//! [`crate::secret::Secret`]: they are put into `Authorization` headers marked sensitive and are
//! never logged, never part of an error message, never part of a response snippet.

pub mod client;
pub mod dcr;
pub mod discovery;
pub mod jwks_fetch;
pub mod metered;

use std::time::Duration;

use reqwest::Method;
use reqwest::header::{HeaderValue, LOCATION};
use url::Url;

use crate::secret::Secret;

/// Default bound on establishing a TCP connection to an IdP.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on a whole exchange with an IdP, from connecting to the end of the body.
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How many redirects a request follows before failing.
pub const MAX_REDIRECTS: usize = 3;
/// The longest excerpt of an IdP's answer kept in an error, in characters.
pub const SNIPPET_CHARS: usize = 200;

/// Timeouts for calls to an IdP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// Bound on establishing the connection.
    pub connect: Duration,
    /// Bound on the whole exchange, body included.
    pub total: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        HttpTimeouts {
            connect: DEFAULT_CONNECT_TIMEOUT,
            total: DEFAULT_TOTAL_TIMEOUT,
        }
    }
}

/// The HTTP clients every IdP call uses: bounded timeouts, a `User-Agent` naming Portico, and
/// a redirect rule per method.
///
/// - `GET` (discovery documents, key sets, RFC 7592 reads) follows at most
///   [`MAX_REDIRECTS`] redirects, never from `https` to `http` ([`redirect_refusal`]): a
///   downgrade would let anyone on the path substitute the keys or read a registration access
///   token.
/// - Every other method follows none: on `301`/`302`/`303` the HTTP library would repeat the
///   request as a `GET`, so a redirected RFC 7592 `DELETE` would read as deleted while the client
///   still exists at the IdP. A redirect answer is then [`TransportError::Redirect`].
///
/// `https://` endpoints need the crate's `rustls` feature; without it only plain HTTP works
/// (which is what tests against `127.0.0.1` use). The two clients are cheap handles: cloning
/// an `IdpHttp` shares their connection pools.
#[derive(Debug, Clone)]
pub struct IdpHttp {
    /// For `GET`: follows safe redirects.
    follows: reqwest::Client,
    /// For every other method: follows none.
    stays: reqwest::Client,
}

// === impl IdpHttp ===

impl IdpHttp {
    /// The clients for these timeouts.
    pub fn new(timeouts: &HttpTimeouts) -> Result<Self, TransportError> {
        let build = |policy| {
            reqwest::Client::builder()
                .connect_timeout(timeouts.connect)
                .timeout(timeouts.total)
                .redirect(policy)
                .user_agent(concat!("portico/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|err| TransportError::Build {
                    reason: err.to_string(),
                })
        };
        let safe = reqwest::redirect::Policy::custom(|attempt| {
            match redirect_refusal(attempt.previous(), attempt.url()) {
                Some(reason) => attempt.error(reason),
                None => attempt.follow(),
            }
        });
        Ok(IdpHttp {
            follows: build(safe)?,
            stays: build(reqwest::redirect::Policy::none())?,
        })
    }

    /// A `GET` of `url`.
    pub(crate) fn get(&self, url: Url) -> reqwest::RequestBuilder {
        self.follows.get(url)
    }

    /// A request with `method`, following redirects only for `GET`.
    pub(crate) fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let client = if method == Method::GET {
            &self.follows
        } else {
            &self.stays
        };
        client.request(method, url)
    }

    /// Sends `request` (from [`IdpHttp::get`] or [`IdpHttp::request`]) to `url` and logs one
    /// line for the exchange at `info` (target `portico::idp`): method, URL with userinfo and
    /// query values redacted ([`crate::redact::url`]), status, and the time to the answer's
    /// headers in milliseconds; a failure logs at `warn` with its class instead of a status.
    /// Errors: the exchange's [`TransportError`].
    pub(crate) async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &Url,
    ) -> Result<reqwest::Response, TransportError> {
        let (client, built) = request.build_split();
        let request = built.map_err(|err| TransportError::from_reqwest(&err, url))?;
        let method = request.method().clone();
        let started = crate::service::monotonic_now();
        let outcome = client.execute(request).await;
        let duration_ms = crate::service::monotonic_now()
            .saturating_duration_since(started)
            .as_millis();
        let logged_url = crate::redact::url(url);
        match outcome {
            Ok(response) => {
                tracing::info!(
                    target: "portico::idp",
                    %method,
                    url = %logged_url,
                    status = response.status().as_u16(),
                    duration_ms,
                    "identity provider call"
                );
                Ok(response)
            }
            Err(err) => {
                let error = TransportError::from_reqwest(&err, url);
                tracing::warn!(
                    target: "portico::idp",
                    %method,
                    url = %logged_url,
                    failure = error.class(),
                    duration_ms,
                    "identity provider call failed"
                );
                Err(error)
            }
        }
    }
}

/// Why a redirect from the chain `previous` (the first request's URL first) to `next` must not
/// be followed, or `None` to follow it: more than [`MAX_REDIRECTS`] redirects, or a step from
/// `https` down to `http`.
pub fn redirect_refusal(previous: &[Url], next: &Url) -> Option<&'static str> {
    if previous.len() > MAX_REDIRECTS {
        return Some("too many redirects");
    }
    let downgrade =
        previous.last().is_some_and(|from| from.scheme() == "https") && next.scheme() == "http";
    downgrade.then_some("a redirect from https to http is never followed")
}

/// The clients every IdP call uses (see [`IdpHttp`]).
pub fn http_client(timeouts: &HttpTimeouts) -> Result<IdpHttp, TransportError> {
    IdpHttp::new(timeouts)
}

/// How a call to an IdP ended, as the `outcome` label of the metrics: a small fixed set, so
/// that an IdP's answers cannot grow the number of series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// The call did what was asked (a deletion of a client already gone included).
    Ok,
    /// The IdP answered with an error status other than 401, 403, 404 and 410.
    Refused,
    /// The IdP did not accept Portico's token (401 or 403).
    Unauthorized,
    /// The IdP has no such client (404 or 410).
    NotFound,
    /// The IdP did not answer within the configured time.
    Timeout,
    /// No connection could be made, or it broke before the answer.
    Unreachable,
    /// The IdP answered, but with something Portico cannot use (not JSON, too large, a
    /// redirect Portico does not follow, no usable key, a missing member).
    InvalidResponse,
    /// Nothing was sent: the request or the settings were unusable as they stood.
    NotSent,
}

// === impl CallOutcome ===

impl CallOutcome {
    /// Every outcome, in the order of the enum.
    pub const ALL: [CallOutcome; 8] = [
        CallOutcome::Ok,
        CallOutcome::Refused,
        CallOutcome::Unauthorized,
        CallOutcome::NotFound,
        CallOutcome::Timeout,
        CallOutcome::Unreachable,
        CallOutcome::InvalidResponse,
        CallOutcome::NotSent,
    ];

    /// The label value: `ok`, `refused`, `unauthorized`, `not_found`, `timeout`,
    /// `unreachable`, `invalid_response` or `not_sent`.
    pub fn label(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Refused => "refused",
            CallOutcome::Unauthorized => "unauthorized",
            CallOutcome::NotFound => "not_found",
            CallOutcome::Timeout => "timeout",
            CallOutcome::Unreachable => "unreachable",
            CallOutcome::InvalidResponse => "invalid_response",
            CallOutcome::NotSent => "not_sent",
        }
    }

    /// The outcome of an answer with the error `status`.
    pub fn of_status(status: u16) -> CallOutcome {
        match status {
            401 | 403 => CallOutcome::Unauthorized,
            404 | 410 => CallOutcome::NotFound,
            _ => CallOutcome::Refused,
        }
    }
}

/// Why an exchange with an IdP failed below the level of HTTP semantics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The HTTP client could not be built (e.g. the TLS backend failed to start).
    #[error("the HTTP client for IdP calls could not be built: {reason}")]
    Build {
        /// What the HTTP library said.
        reason: String,
    },
    /// The IdP did not answer (connect, headers and body) within the configured time.
    #[error("the identity provider at {url} did not answer in time")]
    Timeout {
        /// The URL that was called.
        url: String,
    },
    /// No connection could be made: refused, unreachable, DNS failure, TLS failure.
    #[error("could not connect to the identity provider at {url}: {reason}")]
    Connect {
        /// The URL that was called.
        url: String,
        /// What the HTTP library said.
        reason: String,
    },
    /// The exchange failed after connecting (connection reset, malformed HTTP, too many
    /// redirects, unsupported URL scheme).
    #[error("the request to the identity provider at {url} failed: {reason}")]
    Request {
        /// The URL that was called.
        url: String,
        /// What the HTTP library said.
        reason: String,
    },
    /// The IdP answered with a redirect Portico does not follow (see [`IdpHttp`]).
    #[error(
        "the identity provider at {url} answered with a redirect that Portico does not follow: {reason}"
    )]
    Redirect {
        /// The URL that was called.
        url: String,
        /// Why it was not followed, and where it pointed when known.
        reason: String,
    },
    /// The answer's body is larger than Portico accepts from this endpoint.
    #[error("the answer from {url} is larger than the {limit} bytes Portico accepts")]
    TooLarge {
        /// The URL that was called.
        url: String,
        /// The cap, in bytes.
        limit: usize,
    },
}

// === impl TransportError ===

impl TransportError {
    /// The failure's class for logs and metrics: `build`, `timeout`, `connect`, `request`,
    /// `redirect` or `too_large`.
    pub fn class(&self) -> &'static str {
        match self {
            TransportError::Build { .. } => "build",
            TransportError::Timeout { .. } => "timeout",
            TransportError::Connect { .. } => "connect",
            TransportError::Request { .. } => "request",
            TransportError::Redirect { .. } => "redirect",
            TransportError::TooLarge { .. } => "too_large",
        }
    }

    /// The failure as a [`CallOutcome`]: a timeout, no connection (or one that broke, or a
    /// client that could not be built), or an answer Portico does not take (a redirect it
    /// does not follow, an oversized body).
    pub fn outcome(&self) -> CallOutcome {
        match self {
            TransportError::Timeout { .. } => CallOutcome::Timeout,
            TransportError::Build { .. }
            | TransportError::Connect { .. }
            | TransportError::Request { .. } => CallOutcome::Unreachable,
            TransportError::Redirect { .. } | TransportError::TooLarge { .. } => {
                CallOutcome::InvalidResponse
            }
        }
    }

    /// Classifies an error of the HTTP library for `url`.
    pub(crate) fn from_reqwest(err: &reqwest::Error, url: &Url) -> Self {
        let url = url.to_string();
        if err.is_timeout() {
            TransportError::Timeout { url }
        } else if err.is_redirect() {
            TransportError::Redirect {
                url,
                reason: source_chain(err),
            }
        } else if err.is_connect() {
            TransportError::Connect {
                url,
                reason: source_chain(err),
            }
        } else {
            TransportError::Request {
                url,
                reason: source_chain(err),
            }
        }
    }
}

/// The error and its causes on one line (reqwest's own message is often just "error sending
/// request"; the cause says "connection refused").
fn source_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Refuses a redirect answer to a request that does not follow redirects (every method but
/// `GET`, see [`IdpHttp`]): the request was not repeated at the new location, so reading the
/// answer as the outcome would be wrong.
pub(crate) fn refuse_redirect(
    response: &reqwest::Response,
    method: &Method,
    url: &Url,
) -> Result<(), TransportError> {
    let status = response.status();
    if !status.is_redirection() || *method == Method::GET {
        return Ok(());
    }
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("nowhere");
    Err(TransportError::Redirect {
        url: url.to_string(),
        reason: format!(
            "HTTP {} to {} on a {method}: Portico follows redirects on GET only, because the \
             request would be repeated as a GET",
            status.as_u16(),
            excerpt(location, SNIPPET_CHARS)
        ),
    })
}

/// A JSON document's bytes without a leading UTF-8 byte order mark (`EF BB BF`), which
/// RFC 8259 §8.1 lets a parser ignore and which static files written on Windows carry.
pub(crate) fn without_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body)
}

/// Reads a response body, failing as soon as it would exceed `limit` bytes (before reading it
/// when `Content-Length` already says so).
pub(crate) async fn read_body_limited(
    mut response: reqwest::Response,
    url: &Url,
    limit: usize,
) -> Result<Vec<u8>, TransportError> {
    let too_large = || TransportError::TooLarge {
        url: url.to_string(),
        limit,
    };
    if let Some(length) = response.content_length()
        && length > limit as u64
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| TransportError::from_reqwest(&err, url))?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A bounded, printable excerpt of an answer for an error message: at most [`SNIPPET_CHARS`]
/// characters, control characters replaced, whitespace collapsed, `…` when cut.
pub(crate) fn snippet(body: &[u8]) -> String {
    excerpt(&String::from_utf8_lossy(body), SNIPPET_CHARS)
}

/// `text` with whitespace and control characters collapsed to single spaces, cut to at most
/// `max_chars` characters (then ending in `…`).
pub(crate) fn excerpt(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut last_space = true;
    for c in text.chars() {
        let c = if c.is_whitespace() || c.is_control() {
            ' '
        } else {
            c
        };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        if count == max_chars {
            let mut cut = out.trim_end().to_owned();
            cut.push('…');
            return cut;
        }
        out.push(c);
        count += 1;
    }
    out.trim_end().to_owned()
}

/// `Authorization: <scheme> <token>`, marked sensitive so that no debug output shows it.
pub(crate) fn authorization(scheme: &str, token: &Secret) -> Option<HeaderValue> {
    let value = zeroize::Zeroizing::new(format!("{scheme} {}", token.expose()));
    let mut header = HeaderValue::from_str(&value).ok()?;
    header.set_sensitive(true);
    Some(header)
}

#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_keeps_short_text_and_flattens_whitespace() {
        assert_eq!(
            snippet(b"<html>\n  <b>Service\tUnavailable</b>\r\n</html>"),
            "<html> <b>Service Unavailable</b> </html>"
        );
    }

    #[test]
    fn snippet_cuts_long_text_at_a_character_boundary() {
        let text = "é".repeat(SNIPPET_CHARS + 50);
        let cut = snippet(text.as_bytes());
        assert_eq!(cut.chars().count(), SNIPPET_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn snippet_of_invalid_utf8_is_lossy_not_an_error() {
        assert_eq!(snippet(&[0x66, 0xff, 0x6f]), "f\u{fffd}o");
    }

    #[test]
    fn authorization_header_is_sensitive_and_rejects_line_breaks() {
        let header = authorization("Bearer", &Secret::new("abc")).unwrap();
        assert!(header.is_sensitive());
        assert_eq!(header.to_str().unwrap(), "Bearer abc");
        assert!(!format!("{header:?}").contains("abc"));
        assert!(authorization("Bearer", &Secret::new("a\r\nb")).is_none());
    }

    fn urls(texts: &[&str]) -> Vec<Url> {
        texts.iter().map(|text| Url::parse(text).unwrap()).collect()
    }

    #[test]
    fn redirects_never_go_from_https_down_to_http() {
        let next = Url::parse("http://idp.example.com/jwks").unwrap();
        assert_eq!(
            redirect_refusal(&urls(&["https://idp.example.com/keys"]), &next),
            Some("a redirect from https to http is never followed")
        );
        // A downgrade later in the chain counts too.
        let chain = urls(&["http://idp.example.com/a", "https://idp.example.com/b"]);
        assert!(redirect_refusal(&chain, &next).is_some());
        let secure = Url::parse("https://cdn.example.com/jwks").unwrap();
        assert_eq!(redirect_refusal(&chain, &secure), None);
        assert_eq!(
            redirect_refusal(&urls(&["http://idp.example.com/a"]), &next),
            None
        );
    }

    #[test]
    fn redirects_stop_after_the_limit() {
        let next = Url::parse("https://idp.example.com/next").unwrap();
        let chain: Vec<Url> = (0..=MAX_REDIRECTS)
            .map(|i| Url::parse(&format!("https://idp.example.com/{i}")).unwrap())
            .collect();
        assert_eq!(redirect_refusal(&chain[..MAX_REDIRECTS], &next), None);
        assert_eq!(redirect_refusal(&chain, &next), Some("too many redirects"));
    }

    #[test]
    fn a_byte_order_mark_is_dropped_and_nothing_else() {
        assert_eq!(without_bom(b"\xEF\xBB\xBF{}"), b"{}");
        assert_eq!(without_bom(b"{}"), b"{}");
        assert_eq!(without_bom(b"\xEF\xBB{}"), b"\xEF\xBB{}");
    }

    #[test]
    fn default_timeouts_bound_the_whole_exchange_to_ten_seconds() {
        let timeouts = HttpTimeouts::default();
        assert_eq!(timeouts.total, Duration::from_secs(10));
        assert!(timeouts.connect <= timeouts.total);
        assert!(http_client(&timeouts).is_ok());
    }
}
