//! Random bytes through the test models' tokenizers: ids in range, byte-level BPE round-trips.
//! The body is infer_fuzz_targets::text::tokenizer.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    infer_fuzz_targets::text::tokenizer(data);
});
