//! Measures one commit on each store, the way the services make it: a 1 KiB resource put and
//! its ~300-byte audit record, committed on the current revision, then acknowledged durable.
//! sled in a temporary directory; PostgreSQL on a throwaway local server
//! (`portico_tests::postgres`, `fsync=on`, `synchronous_commit=on`) through the pool, over
//! TCP on 127.0.0.1. Prints, as markdown, p50/p90/p99/max per store, and the same for a read
//! of one key.
//!
//! Usage: `portico-store-bench [COMMITS]` (default 500). Never part of the tests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use portico_control_plane::store::postgres::PgStore;
use portico_control_plane::store::sled::SledStore;
use portico_control_plane::store::{Commit, Store, Tree, Write};

#[tokio::main]
async fn main() {
    let commits: usize = match std::env::args().nth(1).map(|arg| arg.parse()) {
        None => 500,
        Some(Ok(count)) if count > 0 => count,
        Some(_) => {
            eprintln!("usage: portico-store-bench [COMMITS]");
            std::process::exit(64);
        }
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sled: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).expect("the sled store"));
    let server = portico_tests::Postgres::start().await;
    let url = server.database().await;
    let postgres: Arc<dyn Store> = Arc::new(PgStore::open(&url, 4).expect("the PostgreSQL store"));
    println!("{commits} commits per store (1 KiB value, 300-byte audit record), one at a time");
    println!();
    println!("| store | operation | p50 | p90 | p99 | max |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    for (name, store) in [("sled", sled), ("PostgreSQL", postgres)] {
        let (writes, reads) = tokio::task::spawn_blocking(move || measure(&*store, commits))
            .await
            .expect("the measurement");
        println!("| {name} | commit | {} |", row(writes));
        println!("| {name} | get | {} |", row(reads));
    }
    drop(server);
}

/// Commit and read latencies, `count` of each.
fn measure(store: &dyn Store, count: usize) -> (Vec<Duration>, Vec<Duration>) {
    let value = vec![b'x'; 1024];
    let audit = vec![b'a'; 300];
    let mut writes = Vec::with_capacity(count);
    let mut reads = Vec::with_capacity(count);
    for i in 0..count {
        let key = format!("client-{i:06}");
        let started = Instant::now();
        let base = store.revision().expect("the revision");
        store
            .commit(&Commit {
                base_revision: base,
                writes: vec![Write::put(Tree::OAuthClients, key.clone(), value.clone())],
                audit: audit.clone(),
            })
            .expect("a commit");
        writes.push(started.elapsed());
        let started = Instant::now();
        store
            .get(Tree::OAuthClients, key.as_bytes())
            .expect("a read");
        reads.push(started.elapsed());
    }
    (writes, reads)
}

/// `p50 | p90 | p99 | max` in milliseconds.
fn row(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |quantile: f64| {
        let index = ((samples.len() as f64 * quantile).ceil() as usize).clamp(1, samples.len());
        samples[index - 1].as_secs_f64() * 1000.0
    };
    format!(
        "{:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    )
}
