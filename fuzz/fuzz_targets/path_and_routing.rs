//! Path normalisation (`NormalizedPath::new`) and API matching (`RouteTable`), as the filter
//! routes each request.
//!
//! Input, as UTF-8 lines: the request target, the request's `Host` (empty: none), then up to
//! eight listen paths, each optionally starting with `!` (case-sensitive) and followed by a
//! tab and comma-separated host patterns.
//!
//! Checks: normalising a key again changes nothing (exact key, folded key) and finds no NUL
//! the target did not have (the key may drop one, within a `;` parameter); keys are
//! ASCII; routing the raw target, its normalised form and its exact key give the same API;
//! and every accepted listen path for any host routes to its own API.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico_core::routing::{NormalizedPath, RouteTable};

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let mut lines = text.split('\n');
    let target = lines.next().unwrap_or("");
    let host = lines.next().filter(|host| !host.is_empty());

    let path = NormalizedPath::new(target);
    assert!(path.exact().is_ascii(), "exact key not ASCII: {path:?}");
    assert!(path.folded().is_ascii(), "folded key not ASCII: {path:?}");
    let again = NormalizedPath::new(path.exact());
    assert_eq!(
        again.exact(),
        path.exact(),
        "exact key not idempotent for {target:?}"
    );
    assert_eq!(
        again.folded(),
        path.folded(),
        "folded key differs on {target:?}"
    );
    assert_eq!(
        again.has_nul(),
        path.has_nul(),
        "NUL flag differs on {target:?}"
    );
    let folded_again = NormalizedPath::new(path.folded());
    assert_eq!(
        folded_again.folded(),
        path.folded(),
        "folded key not idempotent for {target:?}"
    );

    let mut table = RouteTable::for_apis();
    let mut hostless = Vec::new();
    for (api, line) in lines.take(8).enumerate() {
        let (listen_path, hosts) = line.split_once('\t').unwrap_or((line, ""));
        let (listen_path, case_sensitive) = match listen_path.strip_prefix('!') {
            Some(rest) => (rest, true),
            None => (listen_path, false),
        };
        if !listen_path.starts_with('/') {
            continue;
        }
        let hosts: Vec<_> = hosts
            .split(',')
            .filter(|host| !host.is_empty())
            .filter_map(|host| portico_core::rules::host(host).ok())
            .collect();
        if table
            .insert(api, listen_path, &hosts, case_sensitive)
            .is_ok()
            && hosts.is_empty()
        {
            hostless.push((api, listen_path));
        }
    }

    let found = table.find(target, host);
    assert_eq!(
        table.find(&path, host),
        found,
        "normalised path routes elsewhere: {target:?}"
    );
    assert_eq!(
        table.find(path.exact(), host),
        found,
        "exact key routes elsewhere: {target:?}"
    );
    for (api, listen_path) in hostless {
        assert_eq!(
            table.find(listen_path, None),
            Some(api),
            "listen path {listen_path:?} does not route to its own API"
        );
    }
});
