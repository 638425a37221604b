//! Hostile JSON schemas, GBNF, Lark, regexes and tool lists: compile or fail, then a few constrained steps.
//! The body is infer_fuzz_targets::text::grammar.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    infer_fuzz_targets::text::grammar(data);
});
