#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| works_fuzz::relayed_envelope(data));
