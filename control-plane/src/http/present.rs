//! The portal's presentation of an issued client: the ready-to-run commands (token request,
//! API calls) with their shell quoting, and the JSON answer of the portal API. The service
//! ([`Issued`]) returns data only; the JSON API and the web pages each render it from here.
//! [`api_doc`] presents a catalogue entry's OpenAPI document.

pub mod api_doc;

use serde::Serialize;
use utoipa::ToSchema;

use crate::secret::Secret;
use crate::service::oauth_clients::OAuthClient;
use crate::service::portal::Grant;
use crate::service::registration::Issued;
use portico_core::snapshot::{QuotaSpec as Quota, RateLimitSpec as RateLimit};

/// What stands in for the secret in commands shown when the secret is not.
pub const SECRET_PLACEHOLDER: &str = "<client_secret>";

/// `text` in single quotes for a POSIX shell (a `'` becomes `'\''`).
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A ready-to-run client_credentials token request: `curl` posting the form to `endpoint`,
/// with the credentials as `client_secret_basic` (`-u`) or in the form, and the scope if any.
pub fn token_request(
    endpoint: &str,
    method: &str,
    client_id: &str,
    secret: &str,
    scope: Option<&str>,
) -> String {
    let mut command = String::from("curl -s -d grant_type=client_credentials");
    if method == "client_secret_basic" {
        command.push_str(&format!(
            " -u {}",
            shell_quote(&format!("{client_id}:{secret}"))
        ));
    } else {
        command.push_str(&format!(
            " --data-urlencode {} --data-urlencode {}",
            shell_quote(&format!("client_id={client_id}")),
            shell_quote(&format!("client_secret={secret}"))
        ));
    }
    if let Some(scope) = scope {
        command.push_str(&format!(
            " --data-urlencode {}",
            shell_quote(&format!("scope={scope}"))
        ));
    }
    command.push(' ');
    command.push_str(&shell_quote(endpoint));
    command
}

/// A call through the gateway with the access token: `method` (default GET) on `path`, both
/// relative to `$GATEWAY`.
pub fn api_call(method: &str, path: &str) -> String {
    let method = if method.eq_ignore_ascii_case("GET") {
        String::new()
    } else {
        format!("-X {} ", method.to_ascii_uppercase())
    };
    format!(
        "curl {method}-H \"Authorization: Bearer $ACCESS_TOKEN\" {}",
        shell_quote_gateway(path)
    )
}

/// `"$GATEWAY<path>"`: double quotes so that `$GATEWAY` expands; characters special inside
/// double quotes are escaped.
fn shell_quote_gateway(path: &str) -> String {
    let mut quoted = String::from("\"$GATEWAY");
    for c in path.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// The token request of an issued client, with its secret when shown, else the placeholder.
pub fn issued_token_request(issued: &Issued) -> Option<String> {
    issued.token_endpoint.as_deref().map(|endpoint| {
        token_request(
            endpoint,
            &issued.token_endpoint_auth_method,
            &issued.client.client_id,
            issued
                .client_secret
                .as_ref()
                .map_or(SECRET_PLACEHOLDER, Secret::expose),
            issued.scope.as_deref(),
        )
    })
}

/// One `GET` call per gateway path of an issued client.
pub fn issued_api_calls(issued: &Issued) -> Vec<String> {
    issued
        .api_paths
        .iter()
        .map(|path| api_call("GET", path))
        .collect()
}

/// A period in words: `second`, `10 seconds`, `minute`, `5 minutes`, `hour`, `30 days`.
pub fn period_in_words(seconds: u64) -> String {
    let (count, unit) = match seconds {
        0 | 1 => return "second".to_owned(),
        s if s % 86_400 == 0 => (s / 86_400, "day"),
        s if s % 3_600 == 0 => (s / 3_600, "hour"),
        s if s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    if count == 1 {
        unit.to_owned()
    } else {
        format!("{count} {unit}s")
    }
}

/// `20 requests per 10 seconds`, `1 request per second`.
pub fn rate_in_words(requests: u64, seconds: u64) -> String {
    let noun = if requests == 1 { "request" } else { "requests" };
    format!("{requests} {noun} per {}", period_in_words(seconds))
}

/// What one grant allows, in words: the API, its methods, its paths.
pub fn grant_in_words(grant: &Grant) -> String {
    let methods = if grant.methods.is_empty() {
        "every method".to_owned()
    } else {
        grant.methods.join(", ")
    };
    let paths = if grant.path_prefixes.is_empty() {
        format!("every path under {}", grant.listen_path)
    } else {
        grant
            .path_prefixes
            .iter()
            .map(|prefix| format!("{prefix}…"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("{}: {methods} on {paths}", grant.api_name)
}

/// A duration left, in words, to the two largest units: `3 days 4 hours`, `1 hour`,
/// `5 minutes 10 seconds`, `1 second`.
pub fn time_left_in_words(seconds: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (86_400, "day"),
        (3_600, "hour"),
        (60, "minute"),
        (1, "second"),
    ];
    let words =
        |count: u64, unit: &str| format!("{count} {unit}{}", if count == 1 { "" } else { "s" });
    let Some(first) = UNITS.iter().position(|(size, _)| seconds >= *size) else {
        return "0 seconds".to_owned();
    };
    let (size, unit) = UNITS[first];
    let mut text = words(seconds / size, unit);
    if let Some((next, unit)) = UNITS.get(first + 1) {
        let count = seconds % size / next;
        if count > 0 {
            text.push(' ');
            text.push_str(&words(count, unit));
        }
    }
    text
}

/// A client's access in words at `now` (seconds since the Unix epoch), by its earliest
/// expiry: `Never expires`, `Expires in 6 days 23 hours (2027-01-01T00:00:00Z)`, `Expired
/// 2027-01-01T00:00:00Z`.
pub fn access_in_words(client: &OAuthClient, now: u64) -> String {
    let Some(at) = client.access_expires_at.values().min().copied() else {
        return "Never expires".to_owned();
    };
    let when = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(at),
    );
    if at <= now {
        format!("Expired {when}")
    } else {
        format!("Expires in {} ({when})", time_left_in_words(at - now))
    }
}

/// How long a registration keeps its access, in words, and who renews it.
pub fn lifetime_in_words(lifetime_seconds: Option<u64>, renewable: bool) -> Option<String> {
    let lifetime = lifetime_seconds?;
    let renewal = if renewable {
        "renew it here in the portal, before or after it ends"
    } else {
        "the operator can extend it"
    };
    Some(format!(
        "Access lasts {} from registration; {renewal}",
        time_left_in_words(lifetime)
    ))
}

/// A policy's rate limit and quota, in words (none: unlimited).
pub fn limits_in_words(rate_limit: Option<RateLimit>, quota: Option<Quota>) -> Vec<String> {
    let mut limits = Vec::new();
    if let Some(limit) = rate_limit {
        limits.push(format!(
            "Rate limit: {}",
            rate_in_words(u64::from(limit.requests), u64::from(limit.per_seconds))
        ));
    }
    if let Some(quota) = quota {
        limits.push(format!(
            "Quota: {}",
            rate_in_words(quota.max, quota.renewal_seconds)
        ));
    }
    if limits.is_empty() {
        limits.push("No rate limit or quota".to_owned());
    }
    limits
}

/// A client with what its developer needs to use it: the portal API's answer. The secret is
/// shown when it was just issued (creation, rotation, a replay within the replay window),
/// never otherwise. Its `Debug` redacts the secret and the token request.
#[derive(Clone, Serialize, ToSchema)]
pub struct IssuedClient {
    /// The client.
    pub client: OAuthClient,
    /// The client secret: shown once, store it now.
    pub client_secret: Option<String>,
    /// The IdP's token endpoint.
    pub token_endpoint: Option<String>,
    /// How the client authenticates at the token endpoint.
    pub token_endpoint_auth_method: String,
    /// A ready-to-run token request (client_credentials).
    pub token_request: Option<String>,
    /// Example API calls with the access token (`$GATEWAY` is the gateway's URL,
    /// `$ACCESS_TOKEN` the token request's `access_token`).
    pub api_calls: Vec<String>,
    /// Whether this answer replays an earlier request with the same `Idempotency-Key`.
    pub replayed: bool,
    /// Time left on each expiring access, catalogue entry id to seconds (0: expired); entries
    /// absent here never expire. `client.access_expires_at` gives the times.
    pub access_seconds_left: std::collections::BTreeMap<String, u64>,
    /// Whether the developer can renew the access (`POST …/{id}/renew`): some catalogue entry
    /// of the client allows renewal and its policy has a lifetime.
    pub renewable: bool,
}

impl std::fmt::Debug for IssuedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedClient")
            .field("client", &self.client)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("token_endpoint", &self.token_endpoint)
            .field("replayed", &self.replayed)
            .finish_non_exhaustive()
    }
}

impl From<Issued> for IssuedClient {
    fn from(issued: Issued) -> Self {
        IssuedClient {
            token_request: issued_token_request(&issued),
            api_calls: issued_api_calls(&issued),
            client_secret: issued
                .client_secret
                .as_ref()
                .map(|secret| secret.expose().to_owned()),
            token_endpoint: issued.token_endpoint,
            token_endpoint_auth_method: issued.token_endpoint_auth_method,
            replayed: issued.replayed,
            access_seconds_left: issued.access_seconds_left,
            renewable: issued.renewable,
            client: issued.client,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_requests_quote_for_the_shell_and_use_basic_auth_when_registered_so() {
        assert_eq!(
            token_request(
                "https://idp.example.com/token",
                "client_secret_post",
                "abc",
                "it's",
                None
            ),
            "curl -s -d grant_type=client_credentials --data-urlencode 'client_id=abc' \
             --data-urlencode 'client_secret=it'\\''s' 'https://idp.example.com/token'"
        );
        assert_eq!(
            token_request(
                "https://idp.example.com/token",
                "client_secret_basic",
                "abc",
                "s3cret",
                Some("orders:read")
            ),
            "curl -s -d grant_type=client_credentials -u 'abc:s3cret' --data-urlencode \
             'scope=orders:read' 'https://idp.example.com/token'"
        );
    }

    #[test]
    fn limits_read_as_words() {
        assert_eq!(rate_in_words(20, 10), "20 requests per 10 seconds");
        assert_eq!(rate_in_words(1, 1), "1 request per second");
        assert_eq!(rate_in_words(100, 60), "100 requests per minute");
        assert_eq!(
            rate_in_words(10_000, 30 * 86_400),
            "10000 requests per 30 days"
        );
        assert_eq!(period_in_words(7200), "2 hours");
        let grant = Grant {
            api_name: "Orders".to_owned(),
            listen_path: "/orders".to_owned(),
            methods: vec!["GET".to_owned(), "POST".to_owned()],
            path_prefixes: vec![],
        };
        assert_eq!(
            grant_in_words(&grant),
            "Orders: GET, POST on every path under /orders"
        );
        assert_eq!(
            limits_in_words(None, None),
            ["No rate limit or quota".to_owned()]
        );
    }

    #[test]
    fn access_reads_as_time_left() {
        assert_eq!(time_left_in_words(0), "0 seconds");
        assert_eq!(time_left_in_words(1), "1 second");
        assert_eq!(time_left_in_words(3_600), "1 hour");
        assert_eq!(time_left_in_words(3_661), "1 hour 1 minute");
        assert_eq!(time_left_in_words(86_400 + 59), "1 day");
        assert_eq!(
            time_left_in_words(3 * 86_400 + 4 * 3_600 + 5),
            "3 days 4 hours"
        );
        assert_eq!(time_left_in_words(310), "5 minutes 10 seconds");
        let client: OAuthClient = serde_json::from_value(serde_json::json!({
            "id": "cli_1", "developer_id": "dev_1", "catalogue_entries": ["a", "b"],
            "client_name": "App", "redirect_uris": [], "client_id": "c",
            "client_secret_set": true, "registration_access_token_set": true,
            "registration_client_uri": null, "client_secret_expires_at": null, "client_id_issued_at": null,
            "created_at": "2026-01-01T00:00:00Z", "state": "active",
            "access_expires_at": {"a": 1_000_000_000, "b": 2_000_000_000}
        }))
        .unwrap();
        assert_eq!(
            access_in_words(&client, 1_000_000_000 - 90),
            "Expires in 1 minute 30 seconds (2001-09-09T01:46:40Z)"
        );
        assert_eq!(
            access_in_words(&client, 1_000_000_000),
            "Expired 2001-09-09T01:46:40Z"
        );
        assert_eq!(
            lifetime_in_words(Some(30 * 86_400), true).unwrap(),
            "Access lasts 30 days from registration; renew it here in the portal, before or \
             after it ends"
        );
        assert_eq!(lifetime_in_words(None, true), None);
    }

    #[test]
    fn api_calls_expand_the_gateway_and_nothing_else() {
        assert_eq!(
            api_call("GET", "/orders"),
            "curl -H \"Authorization: Bearer $ACCESS_TOKEN\" \"$GATEWAY/orders\""
        );
        assert_eq!(
            api_call("post", "/a/$(id)`x`\"q\""),
            "curl -X POST -H \"Authorization: Bearer $ACCESS_TOKEN\" \
             \"$GATEWAY/a/\\$(id)\\`x\\`\\\"q\\\"\""
        );
    }
}
