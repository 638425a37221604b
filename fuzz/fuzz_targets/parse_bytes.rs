//! Any byte string must parse or fail with an error, never panic or abort.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = infer_gguf::parse_bytes(data);
});
