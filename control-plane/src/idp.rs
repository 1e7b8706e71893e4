//! The identity provider (IdP) client layer: the only code that talks to an IdP over HTTP.
//!
//! - [`discovery`] reads an issuer's OpenID Connect discovery document (`jwks_uri`,
//!   `registration_endpoint`, `token_endpoint`) and checks that it names the expected issuer.
//! - [`jwks_fetch`] fetches an issuer's key set, keeps the keys Portico can verify with, says
//!   which were skipped and why, and says when to fetch again (`Cache-Control` within bounds).
//! - [`dcr`] registers and manages OAuth clients at the IdP (RFC 7591 and RFC 7592), with one
//!   driver per provider family behind the [`dcr::DcrDriver`] trait.
//!
//! Every call goes through one [`reqwest::Client`] built by [`http_client`], with a bounded
//! connect timeout and a bounded total timeout (the total covers the whole exchange, body
//! included), a small redirect limit, and a size cap on every response body. Transport
//! failures are classified once, in [`TransportError`], so that an operator can tell a timeout
//! from a refused connection from an oversized answer, whichever module made the call.
//!
//! Secrets (initial access tokens, registration access tokens, client secrets) travel as
//! [`crate::secret::Secret`]: they are put into `Authorization` headers marked sensitive and are
//! never logged, never part of an error message, never part of a response snippet.

pub mod dcr;
pub mod discovery;
pub mod jwks_fetch;

use std::time::Duration;

use reqwest::header::HeaderValue;
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

/// Builds the HTTP client every IdP call uses: bounded timeouts, at most [`MAX_REDIRECTS`]
/// redirects, and a `User-Agent` naming Portico.
///
/// `https://` endpoints need the crate's `rustls` feature; without it only plain HTTP works
/// (which is what tests against `127.0.0.1` use).
pub fn http_client(timeouts: &HttpTimeouts) -> Result<reqwest::Client, TransportError> {
    reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .timeout(timeouts.total)
        .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
        .user_agent(concat!("portico/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|err| TransportError::Build {
            reason: err.to_string(),
        })
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
    /// Classifies an error of the HTTP library for `url`.
    pub(crate) fn from_reqwest(err: &reqwest::Error, url: &Url) -> Self {
        let url = url.to_string();
        if err.is_timeout() {
            TransportError::Timeout { url }
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

    #[test]
    fn default_timeouts_bound_the_whole_exchange_to_ten_seconds() {
        let timeouts = HttpTimeouts::default();
        assert_eq!(timeouts.total, Duration::from_secs(10));
        assert!(timeouts.connect <= timeouts.total);
        assert!(http_client(&timeouts).is_ok());
    }
}
