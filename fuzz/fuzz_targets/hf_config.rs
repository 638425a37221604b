//! Any config.json in an otherwise valid tiny HF folder: the model loads or fails with an error.
//! The body is infer_fuzz_targets::readers::hf_config.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    infer_fuzz_targets::readers::hf_config(data);
});
