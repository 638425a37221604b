//! Any tokenizer.json: it parses (and encodes) or fails with an error, alone and in the tiny HF folder.
//! The body is infer_fuzz_targets::readers::tokenizer_json.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    infer_fuzz_targets::readers::tokenizer_json(data);
});
