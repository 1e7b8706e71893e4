//! JSON snapshot decoding (static plugin configurations, people's files), then the round-trip
//! and compile checks of `portico_fuzz::check_decoded_snapshot`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico_core::snapshot::Snapshot;

fuzz_target!(|bytes: &[u8]| {
    match Snapshot::decode(bytes) {
        Ok(snapshot) => portico_fuzz::check_decoded_snapshot(snapshot),
        Err(error) => assert!(!error.message.is_empty()),
    }
});
