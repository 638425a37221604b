//! Any model.safetensors in an otherwise valid tiny HF folder: the model loads or fails with an error.
//! The body is infer_fuzz_targets::readers::safetensors_header.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    infer_fuzz_targets::readers::safetensors_header(data);
});
