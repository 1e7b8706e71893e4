//! The decision for one request, in the order of the design: require a snapshot, refuse a path
//! no upstream reads reliably, match the API, let a CORS preflight pass where the API allows
//! it, refuse method overrides where policies restrict methods, find the token (one place
//! only, RFC 6750 §2) and verify it (or find it in the cache), resolve identity, refuse revoked
//! clients, resolve policies, check access, charge limits, allow.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::{NEGATIVE_TTL, NO_EXPIRY_TTL, TokenCache, Verdict, VerifiedCaller};
use crate::crypto::SignatureVerifier;
use crate::denial::Denial;
use crate::policy::{client_ids, granting_policies, held_policies, identity};
use crate::rate_limit::{
    CounterStore, FULL_SHARE, LimitOutcome, LimitState, charge_quota, charge_rate, shared_spec,
};
pub use crate::request::{Request, bearer_token};
use crate::routing::{NormalizedPath, RouteTable};
use crate::snapshot::{
    CompiledApi, CompiledSnapshot, LimitSubject, QuotaSpec, RateLimitSpec, UnmatchedRule,
};
use crate::token::{self, TokenError};
use crate::usage::UsageRecorder;

/// How many distinct unknown policy names are remembered between two reports.
const MAX_UNKNOWN_POLICY_NAMES: usize = 64;

/// The reason of [`Denial::InvalidPath`] for a path holding a NUL byte.
pub const NUL_IN_PATH: &str = "holds a NUL byte (%00)";

/// What to do with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not a protected API: forward untouched (minus client-sent trusted headers).
    PassThrough,
    /// A CORS preflight on an API that lets them pass (`bypass_cors_preflight`): forward
    /// without a token, every token place stripped.
    Preflight {
        /// The API index in the snapshot.
        api: usize,
    },
    /// Forward, telling the upstream who the caller is.
    Allow(Grant),
    /// Refuse.
    Deny {
        /// The matched API, if any.
        api: Option<usize>,
        /// Why.
        denial: Denial,
    },
}

/// An allowed request's caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The API index in the snapshot.
    pub api: usize,
    /// The caller's identity.
    pub identity: Arc<str>,
    /// The ids of the policies that grant the request.
    pub policies: Vec<Arc<str>>,
    /// Where the caller stands against its rate limit, when one applies.
    pub rate_limit: Option<LimitState>,
    /// The API's metadata headers to set upstream, lower-case name and value, each from the
    /// first granting policy whose metadata has the header's key (absent when none has it).
    pub metadata_headers: Vec<(String, String)>,
}

/// The per-VM decision state: the current snapshot and the verification cache.
#[derive(Debug)]
pub struct Gateway {
    snapshot: Option<Arc<CompiledSnapshot>>,
    cache: TokenCache,
    fail_open_until_synced: RouteTable,
    unmatched_override: Option<UnmatchedRule>,
    unknown_policy_names: HashSet<Box<str>>,
    usage: Option<UsageRecorder>,
    rate_share: u32,
}

// === impl Gateway ===

impl Gateway {
    /// A gateway with no snapshot yet. Requests under `fail_open_paths` pass untouched until
    /// the first snapshot arrives; every other request is refused with 503 until then.
    /// `unmatched_override`, from the plugin configuration, replaces the snapshot's rule for
    /// requests that match no API.
    pub fn new(
        cache: TokenCache,
        fail_open_paths: &[String],
        unmatched_override: Option<UnmatchedRule>,
    ) -> Self {
        let mut fail_open_until_synced = RouteTable::default();
        for (index, path) in fail_open_paths.iter().enumerate() {
            // Duplicates are harmless here: any match means "pass".
            let _ = fail_open_until_synced.insert(index, path, &[], true);
        }
        Gateway {
            snapshot: None,
            cache,
            fail_open_until_synced,
            unmatched_override,
            unknown_policy_names: HashSet::new(),
            usage: None,
            rate_share: FULL_SHARE,
        }
    }

    /// Enforces `share` thousandths of every rate limit from now on (1 to
    /// [`FULL_SHARE`], the default: this Envoy's share of the fleet's allowance, as the
    /// control plane answers usage reports; see [`crate::rate_limit::rate_share`]).
    pub fn set_rate_share(&mut self, share: u32) {
        self.rate_share = share.clamp(1, FULL_SHARE);
    }

    /// The share of every rate limit enforced here, in thousandths.
    pub fn rate_share(&self) -> u32 {
        self.rate_share
    }

    /// Records the usage of every decision made for a known caller from now on, for reports
    /// to the control plane as `reporter` (see [`crate::usage`]).
    pub fn report_usage_as(&mut self, reporter: String) {
        self.usage = Some(UsageRecorder::new(reporter));
    }

    /// The usage recorded since reports began, if they did.
    pub fn usage_mut(&mut self) -> Option<&mut UsageRecorder> {
        self.usage.as_mut()
    }

    /// The refusal of a request by a known caller, `client` when it is a registered client
    /// (recorded for its usage).
    fn refuse(&mut self, client: Option<&str>, api: usize, denial: Denial) -> Decision {
        if let (Some(usage), Some(client)) = (&mut self.usage, client) {
            usage.refused(client, denial.code());
        }
        Decision::Deny {
            api: Some(api),
            denial,
        }
    }

    /// Makes `snapshot` current. Cached verification results are dropped when anything they
    /// depend on (APIs, issuers, keys) changed; returns whether they were.
    pub fn apply(&mut self, snapshot: CompiledSnapshot) -> bool {
        let flush = self.snapshot.as_ref().is_none_or(|current| {
            current.verification_fingerprint() != snapshot.verification_fingerprint()
        });
        if flush {
            self.cache.clear();
        }
        self.snapshot = Some(Arc::new(snapshot));
        flush
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Option<&Arc<CompiledSnapshot>> {
        self.snapshot.as_ref()
    }

    /// The verification cache's size.
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }

    /// The verification cache's hits and misses since the last call (for metrics).
    pub fn take_cache_counts(&mut self) -> crate::cache::CacheCounts {
        self.cache.take_counts()
    }

    /// Policy names that tokens claimed but the snapshot lacks, seen since the last call.
    pub fn take_unknown_policy_names(&mut self) -> Vec<String> {
        let mut names: Vec<String> = self
            .unknown_policy_names
            .drain()
            .map(String::from)
            .collect();
        names.sort_unstable();
        names
    }

    /// For a refusal because of an unknown `kid`: the issuer id and the `kid`, so that the
    /// control plane can be asked to refresh that issuer's keys.
    pub fn unknown_kid<'a>(&'a self, decision: &'a Decision) -> Option<(&'a str, &'a str)> {
        let Decision::Deny {
            api: Some(api),
            denial: Denial::InvalidToken(TokenError::UnknownKid { kid, issuer_index }),
        } = decision
        else {
            return None;
        };
        let snapshot = self.snapshot.as_ref()?;
        let issuer = *snapshot.apis.get(*api)?.issuers.get(*issuer_index)?;
        Some((snapshot.issuers.get(issuer)?.id.as_str(), kid.as_str()))
    }

    /// Decides `request` at `now` (time since the Unix epoch).
    pub fn decide(
        &mut self,
        request: &Request<'_>,
        verifier: &dyn SignatureVerifier,
        counters: &mut dyn CounterStore,
        now: Duration,
    ) -> Decision {
        let path = NormalizedPath::new(request.path);
        // Before any exemption: no reading of such a path can be trusted.
        if path.has_nul() {
            return Decision::Deny {
                api: None,
                denial: Denial::InvalidPath(NUL_IN_PATH),
            };
        }
        let Some(snapshot) = self.snapshot.clone() else {
            if self.fail_open_until_synced.exempts(&path) {
                return Decision::PassThrough;
            }
            return Decision::Deny {
                api: None,
                denial: Denial::SnapshotUnavailable,
            };
        };
        let routed = match request.route_api {
            Some(id) => snapshot.api(id).ok_or(Denial::NoApi),
            // A path belongs to an API when either of its readings does: protecting too much
            // is harmless, too little a bypass (`/orders/..%20` is `/` once normalised, and an
            // API's path to an upstream that reads `..%20` as a name). Readings under two
            // different APIs leave whose rules hold to the upstream: refused.
            None => match (
                snapshot.route(&path, request.host),
                path.strict_reading()
                    .and_then(|strict| snapshot.route(strict, request.host)),
            ) {
                (Some(one), Some(other)) if one != other => {
                    return Decision::Deny {
                        api: None,
                        denial: Denial::InvalidPath(
                            "reads as the path of two different APIs (an escaped separator, a \
                             parameter or a dot segment); send it in its plain form",
                        ),
                    };
                }
                (Some(api), _) | (None, Some(api)) => Ok(api),
                (None, None) => Err(Denial::NoApi),
            },
        };
        let api_index = match routed {
            Ok(api_index) => api_index,
            // A route bound to an API the snapshot lacks fails closed.
            Err(denial) if request.route_api.is_some() => {
                return Decision::Deny { api: None, denial };
            }
            Err(denial) => {
                let rule = self
                    .unmatched_override
                    .as_ref()
                    .unwrap_or(&snapshot.unmatched);
                if rule.passes(&path) {
                    return Decision::PassThrough;
                }
                return Decision::Deny { api: None, denial };
            }
        };
        let deny = |denial| Decision::Deny {
            api: Some(api_index),
            denial,
        };
        let api = &snapshot.apis[api_index];
        // Before the preflight pass: a preflight goes upstream without a token, so it must not
        // carry a method override either.
        if api.restricts_methods && request.has_method_override() {
            return deny(Denial::MethodOverride);
        }
        if api.bypass_cors_preflight && request.is_cors_preflight() {
            return Decision::Preflight { api: api_index };
        }
        let token = match request.token(&api.token_sources) {
            Ok(Some(token)) => token,
            Ok(None) => return deny(Denial::MissingToken),
            Err(denial) => return deny(denial),
        };
        let caller = match self.verify(&snapshot, api, &token, verifier, now) {
            Ok(caller) => caller,
            Err(denial) => return deny(denial),
        };
        // A revocation reaches every token of the client, whichever claim names it.
        if snapshot.is_revoked(&caller.identity)
            || caller
                .clients
                .iter()
                .any(|client| snapshot.is_revoked(client))
        {
            return deny(Denial::ClientRevoked);
        }
        let binding = snapshot.caller_binding(&caller.identity);
        let client = binding.client();
        let held = held_policies(
            &snapshot,
            api,
            &caller.claimed_policies,
            &caller.identity,
            now.as_secs(),
        );
        for name in held.unknown {
            if self.unknown_policy_names.len() < MAX_UNKNOWN_POLICY_NAMES {
                self.unknown_policy_names.insert(Box::from(name));
            }
        }
        if held.live.is_empty() && held.expired.is_empty() {
            return self.refuse(client, api_index, Denial::NoPolicy);
        }
        let granting = granting_policies(&snapshot, &held.live, api_index, request.method, &path);
        if granting.is_empty() {
            // Tell an expired registration apart from a plain refusal: would an expired
            // binding have granted this request?
            let expired =
                granting_policies(&snapshot, &held.expired, api_index, request.method, &path);
            if expired.is_empty() && !held.live.is_empty() {
                return self.refuse(client, api_index, Denial::AccessDenied);
            }
            return self.refuse(client, api_index, Denial::AccessExpired);
        }
        let mut rate_limit = None;
        if let Some((policy, spec)) = most_generous_rate(&snapshot, &granting) {
            let policy = &snapshot.policies[policy];
            let subject = binding.limit_subject(&caller.identity, policy.limit_scope);
            let key = counter_key("rate", &policy.id, subject);
            if let Some(usage) = &mut self.usage {
                usage.rate_charged();
            }
            match charge_rate(counters, &key, shared_spec(spec, self.rate_share), now) {
                LimitOutcome::Allowed(state) => rate_limit = Some(state),
                LimitOutcome::Exceeded(state) => {
                    return self.refuse(client, api_index, Denial::RateLimited(state));
                }
            }
        }
        let mut quota_charged = None;
        if let Some((index, spec)) = most_generous_quota(&snapshot, &granting) {
            let policy = &snapshot.policies[index];
            let subject = binding.limit_subject(&caller.identity, policy.limit_scope);
            let subject_key = subject.key();
            let now_seconds = now.as_secs();
            if let Some(until) = snapshot.quota_exhausted_until(index, &subject_key, now_seconds) {
                let wait = Duration::from_secs(until - now_seconds);
                let state = LimitState {
                    limit: spec.max,
                    remaining: 0,
                    reset_after: wait,
                    retry_after: wait,
                };
                return self.refuse(client, api_index, Denial::QuotaExceeded(state));
            }
            let key = counter_key("quota", &policy.id, subject);
            if let LimitOutcome::Exceeded(state) = charge_quota(counters, &key, spec, now) {
                return self.refuse(client, api_index, Denial::QuotaExceeded(state));
            }
            quota_charged = Some((index, subject_key));
        }
        if let Some(usage) = &mut self.usage {
            if let Some(client) = client {
                usage.allowed(client);
            }
            if let Some((index, subject)) = &quota_charged {
                usage.quota_charged(&snapshot.policies[*index].id, subject);
            }
        }
        Decision::Allow(Grant {
            api: api_index,
            identity: Arc::clone(&caller.identity),
            policies: granting
                .iter()
                .map(|index| Arc::clone(&snapshot.policies[*index].id))
                .collect(),
            rate_limit,
            metadata_headers: metadata_headers(&snapshot, api, &granting),
        })
    }

    /// The caller behind `token`, from the cache or by verifying it.
    fn verify(
        &mut self,
        snapshot: &CompiledSnapshot,
        api: &CompiledApi,
        token: &str,
        verifier: &dyn SignatureVerifier,
        now: Duration,
    ) -> Result<Arc<VerifiedCaller>, Denial> {
        let key = self.cache.key(&api.id, token);
        match self.cache.get(key, now) {
            Some(Verdict::Valid(caller)) => return Ok(caller),
            Some(Verdict::Invalid(error)) => return Err(Denial::InvalidToken(error)),
            None => {}
        }
        let issuers = snapshot.api_issuers(api);
        let now_seconds = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let verified = match token::verify(token, &api.rules, &issuers, verifier, now_seconds) {
            Ok(verified) => verified,
            Err(error) => {
                // A bad signature stays bad until the keys change (which clears the cache);
                // remembering it makes a flood of one forged token cheap.
                if error == TokenError::BadSignature {
                    self.cache
                        .insert(key, Verdict::Invalid(error.clone()), now + NEGATIVE_TTL);
                }
                return Err(Denial::InvalidToken(error));
            }
        };
        let identity = identity(api, &verified.claims).ok_or(Denial::MissingIdentity)?;
        let caller = Arc::new(VerifiedCaller {
            identity: Arc::from(identity),
            clients: client_ids(&verified.claims, identity)
                .into_iter()
                .map(Arc::from)
                .collect(),
            claimed_policies: verified
                .claims
                .strings(&api.policy_claim)
                .map(Box::from)
                .collect(),
            issuer_index: verified.issuer_index,
        });
        let expires_at = match verified.expires_at {
            Some(exp) => {
                let skew = i64::try_from(api.rules.clock_skew_seconds).unwrap_or(0);
                Duration::from_secs(u64::try_from(exp.saturating_add(skew)).unwrap_or(0))
            }
            None => now + NO_EXPIRY_TTL,
        };
        self.cache
            .insert(key, Verdict::Valid(Arc::clone(&caller)), expires_at);
        Ok(caller)
    }
}

/// The rate limit that applies when several policies grant a request: the most generous one;
/// a granting policy without a limit means no limit.
fn most_generous_rate(
    snapshot: &CompiledSnapshot,
    granting: &[usize],
) -> Option<(usize, RateLimitSpec)> {
    let mut best: Option<(usize, RateLimitSpec)> = None;
    for index in granting {
        let spec = snapshot.policies[*index].rate_limit?;
        let better = best.is_none_or(|(_, current)| {
            u64::from(spec.requests) * u64::from(current.per_seconds)
                > u64::from(current.requests) * u64::from(spec.per_seconds)
        });
        if better {
            best = Some((*index, spec));
        }
    }
    best
}

/// The quota that applies when several policies grant a request, chosen like the rate limit.
fn most_generous_quota(
    snapshot: &CompiledSnapshot,
    granting: &[usize],
) -> Option<(usize, QuotaSpec)> {
    let mut best: Option<(usize, QuotaSpec)> = None;
    for index in granting {
        let spec = snapshot.policies[*index].quota?;
        let better = best.is_none_or(|(_, current)| {
            u128::from(spec.max) * u128::from(current.renewal_seconds)
                > u128::from(current.max) * u128::from(spec.renewal_seconds)
        });
        if better {
            best = Some((*index, spec));
        }
    }
    best
}

/// The API's metadata headers, each from the first granting policy that has its key.
fn metadata_headers(
    snapshot: &CompiledSnapshot,
    api: &CompiledApi,
    granting: &[usize],
) -> Vec<(String, String)> {
    api.metadata_headers
        .iter()
        .filter_map(|(header, key)| {
            granting.iter().find_map(|index| {
                snapshot.policies[*index]
                    .metadata
                    .get(key)
                    .map(|value| (header.clone(), value.clone()))
            })
        })
        .collect()
}

/// The counter of limit `kind` (`rate`, `quota`) of policy `policy` for `subject`:
/// `portico/<kind>/<policy id>/<subject kind>:<subject id>`, where the subject is whom the
/// policy's `limit_scope` counts ([`crate::snapshot::CallerBinding::limit_subject`]): the
/// developer, the Portico client (the same across secret rotations), or the identity.
fn counter_key(kind: &str, policy: &str, subject: LimitSubject<'_>) -> String {
    let (subject_kind, subject) = subject.key_part();
    let mut key = String::with_capacity(kind.len() + policy.len() + subject.len() + 12);
    key.push_str("portico/");
    key.push_str(kind);
    key.push('/');
    key.push_str(policy);
    key.push('/');
    key.push(subject_kind);
    key.push(':');
    key.push_str(subject);
    key
}

#[cfg(test)]
mod tests;
