//! Binary snapshot decoding (what a filter does with the control plane's answer), then the
//! round-trip and compile checks of `portico_fuzz::check_decoded_snapshot`.
//!
//! The input is the postcard payload: the target puts the magic prefix in front, so that
//! every input reaches the binary decoder rather than the JSON one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico_core::snapshot::Snapshot;

fuzz_target!(|payload: &[u8]| {
    let mut bytes = b"PSN\x07".to_vec();
    bytes.extend_from_slice(payload);
    if let Ok(snapshot) = Snapshot::decode(&bytes) {
        portico_fuzz::check_decoded_snapshot(snapshot);
    }
});
