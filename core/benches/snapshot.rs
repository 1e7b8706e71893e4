//! Native microbenchmarks of the snapshot path: decoding JSON against the binary encoding, and
//! compiling, for a snapshot at the scale target (100,000 client bindings, 1,000 APIs, 1,000
//! policies). Prints both encodings' sizes first.
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
use portico_core::snapshot::{CompiledSnapshot, Snapshot};
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

criterion_group!(benches, snapshot_codecs);
criterion_main!(benches);
