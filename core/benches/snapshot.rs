//! Native microbenchmarks of the snapshot path: decoding JSON against the binary encoding,
//! compiling, and the delta path (digest, diff, apply) for one registration, for a snapshot at
//! the scale target (100,000 client bindings, 1,000 APIs, 1,000 policies). Prints both
//! encodings' sizes and the delta's first.
//!
//! Run with `cargo bench -p portico-core --bench snapshot`.

#![allow(
    clippy::expect_used,
    reason = "benchmark setup: a broken fixture should stop the run"
)]
#![allow(
    clippy::print_stdout,
    reason = "the benchmark reports the encodings' sizes"
)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use portico_core::snapshot::{ClientBinding, CompiledSnapshot, Snapshot, SnapshotDelta};
use portico_core::testing::large_snapshot;

fn snapshot_codecs(c: &mut Criterion) {
    let snapshot = large_snapshot(100_000, 1_000, 1_000);
    let json = serde_json::to_vec(&snapshot).expect("encodes");
    let binary = snapshot.to_binary().expect("encodes");
    println!(
        "snapshot with 100000 bindings, 1000 APIs, 1000 policies: JSON {} bytes, binary {} bytes \
         (binary/JSON = {:.2})",
        json.len(),
        binary.len(),
        binary.len() as f64 / json.len() as f64
    );
    let mut group = c.benchmark_group("snapshot");
    group.sample_size(10);
    group.bench_function("decode_json", |b| {
        b.iter(|| Snapshot::decode(black_box(&json)).expect("decodes"));
    });
    group.bench_function("decode_binary", |b| {
        b.iter(|| Snapshot::decode(black_box(&binary)).expect("decodes"));
    });
    group.bench_function("decode_binary_and_compile", |b| {
        b.iter(|| {
            let decoded = Snapshot::decode(black_box(&binary)).expect("decodes");
            CompiledSnapshot::compile(decoded).expect("valid")
        });
    });
    group.bench_function("compile", |b| {
        b.iter_batched(
            || snapshot.clone(),
            |snapshot| CompiledSnapshot::compile(black_box(snapshot)).expect("valid"),
            criterion::BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn snapshot_deltas(c: &mut Criterion) {
    let base = large_snapshot(100_000, 1_000, 1_000);
    let mut next = base.clone();
    next.version += 1;
    next.clients.push(ClientBinding {
        client_id: "ffffffff-ffff-4fff-8fff-ffffffffffff".to_owned(),
        policies: vec!["policy-1".to_owned()],
        expires_at: std::collections::BTreeMap::new(),
        client: Some(format!("cli_{:032x}", u128::MAX)),
        developer: Some(format!("dev_{:032x}", 7)),
    });
    let delta = SnapshotDelta::diff(&base, &next).expect("diffs");
    println!(
        "one registration on that snapshot: a delta of {} bytes",
        delta.to_binary().expect("encodes").len()
    );
    let mut group = c.benchmark_group("delta");
    group.sample_size(10);
    group.bench_function("digest", |b| {
        b.iter(|| black_box(&next).digest().expect("digests"));
    });
    // What the control plane hashed before the digest: SHA-256 of the JSON encoding.
    group.bench_function("json_sha256", |b| {
        b.iter(|| {
            let json = serde_json::to_vec(black_box(&next)).expect("encodes");
            <sha2::Sha256 as sha2::Digest>::digest(&json)
        });
    });
    group.bench_function("diff", |b| {
        b.iter(|| SnapshotDelta::diff(black_box(&base), black_box(&next)).expect("diffs"));
    });
    group.bench_function("apply", |b| {
        b.iter_batched(
            || (base.clone(), delta.clone()),
            |(base, delta)| delta.apply(black_box(base)).expect("applies"),
            criterion::BatchSize::LargeInput,
        );
    });
    group.bench_function("encode_binary", |b| {
        b.iter(|| black_box(&next).to_binary().expect("encodes"));
    });
    group.finish();
}
criterion_group!(benches, snapshot_codecs, snapshot_deltas);
criterion_main!(benches);
