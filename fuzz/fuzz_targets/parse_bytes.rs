//! Any byte string must parse as GGUF or fail with an error, never panic or abort.
//! The body is infer_fuzz_targets::readers::parse_bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    infer_fuzz_targets::readers::parse_bytes(data);
});
