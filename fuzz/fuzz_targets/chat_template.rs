//! Hostile messages and tools rendered with every test model's chat template.
//! The body is infer_fuzz_targets::text::chat_template.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    infer_fuzz_targets::text::chat_template(data);
});
