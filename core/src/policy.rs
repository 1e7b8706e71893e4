//! Identity, then policies, then access: who the caller is, which policies they hold, and
//! whether one of them grants this request.

use crate::routing::NormalizedPath;
use crate::snapshot::{CompiledApi, CompiledSnapshot};
use crate::token::Claims;

/// The caller's identity: the first of the API's identity claims that is a non-empty string.
pub fn identity<'c>(api: &CompiledApi, claims: &'c Claims) -> Option<&'c str> {
    api.identity_claims
        .iter()
        .find_map(|claim| claims.str(claim).filter(|value| !value.is_empty()))
}

/// The claims that name the OAuth client a token was issued to: `client_id` (RFC 9068 §2.2,
/// RFC 8693 §4.3), `azp` (OpenID Connect Core 1.0 §2, the authorized party of a user's token),
/// `cid` (Okta's access tokens) and `clientId` (Keycloak's service-account tokens).
pub const CLIENT_CLAIMS: [&str; 4] = ["client_id", "azp", "cid", "clientId"];

/// The distinct non-empty string values of the token's [`CLIENT_CLAIMS`] other than
/// `identity`: the clients a revocation must reach, whichever claim an API identifies callers
/// by (a revoked client's user tokens carry the user in `sub` and the client in `azp`).
pub fn client_ids<'c>(claims: &'c Claims, identity: &str) -> Vec<&'c str> {
    let mut clients: Vec<&str> = Vec::new();
    for value in CLIENT_CLAIMS.iter().filter_map(|claim| claims.str(claim)) {
        if !value.is_empty() && value != identity && !clients.contains(&value) {
            clients.push(value);
        }
    }
    clients
}

/// The policies a caller holds, as indices into the snapshot's policies.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Held<'n> {
    /// Those named by the token's policy claim that exist, then the caller's live bindings;
    /// when there are none of either (and no expired binding), the API's default policies.
    pub live: Vec<usize>,
    /// Policies bound to the caller whose binding expired at or before `now`.
    pub expired: Vec<usize>,
    /// Names the policy claim gave that the snapshot lacks, for logging.
    pub unknown: Vec<&'n str>,
}

/// The policies a caller holds at `now_seconds` (since the Unix epoch). A caller whose
/// bindings all expired and who holds nothing else gets no default policies: its registration
/// ran out, which [`Held::expired`] tells.
pub fn held_policies<'n>(
    snapshot: &CompiledSnapshot,
    api: &CompiledApi,
    claimed: &'n [Box<str>],
    identity: &str,
    now_seconds: u64,
) -> Held<'n> {
    let mut held = Held {
        live: Vec::with_capacity(claimed.len() + 1),
        ..Held::default()
    };
    for name in claimed {
        match snapshot.policy(name) {
            Some(index) => push_unique(&mut held.live, index),
            None => held.unknown.push(&**name),
        }
    }
    for bound in snapshot.bindings(identity) {
        if bound.live_at(now_seconds) {
            push_unique(&mut held.live, bound.policy);
        } else {
            push_unique(&mut held.expired, bound.policy);
        }
    }
    held.expired.retain(|policy| !held.live.contains(policy));
    if held.live.is_empty() && held.expired.is_empty() {
        held.live.extend_from_slice(&api.default_policies);
    }
    held
}

fn push_unique(list: &mut Vec<usize>, value: usize) {
    if !list.contains(&value) {
        list.push(value);
    }
}

/// The held policies that grant `method` on `path` of API `api`: active, with an access right
/// for the API whose method and path restrictions (if any) admit the request. A right that
/// grants `GET` also grants `HEAD` (RFC 9110 §9.3.2: `HEAD` is `GET` without the content).
/// A path prefix grants only when both readings of the path fall under it, letter case as
/// written: the normalised key ([`NormalizedPath::exact`]) and the strict one
/// ([`NormalizedPath::strict`]), without format suffixes. So a grant never reaches further than
/// its prefix for any upstream: not through a spelling that only normalisation brings under it
/// (`/orders/private/..%20/public`, `/orders/private/%252e%252e/public`), nor through letter
/// case or Unicode folding (`/orders/PUBLIC` is another resource to a case-sensitive upstream),
/// even on an API that matches paths case-insensitively for protection.
pub fn granting_policies<'p>(
    snapshot: &CompiledSnapshot,
    held: &[usize],
    api: usize,
    method: &str,
    path: impl Into<NormalizedPath<'p>>,
) -> Vec<usize> {
    let path = path.into();
    let (exact, strict) = (path.exact(), path.strict());
    let head = method.eq_ignore_ascii_case("HEAD");
    held.iter()
        .copied()
        .filter(|index| {
            let policy = &snapshot.policies[*index];
            policy.active
                && policy.access.iter().any(|access| {
                    access.api == api
                        && (access.methods.is_empty()
                            || access
                                .methods
                                .iter()
                                .any(|m| m.eq_ignore_ascii_case(method) || (head && m == "GET")))
                        && (access.path_prefixes.is_empty()
                            || access.path_prefixes.iter().any(|prefix| {
                                under_prefix(exact, prefix) && under_prefix(strict, prefix)
                            }))
                })
        })
        .collect()
}

/// Whether `path` is `prefix` or below it (at a segment boundary). `prefix` has no trailing
/// slash; the empty prefix is the root.
fn under_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests;
