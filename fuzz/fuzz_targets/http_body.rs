//! Any request body on every POST endpoint of the router: 2xx or 4xx in OpenAI's shape, never a 5xx or a panic.
//! The body is infer_fuzz_targets::http::http_body.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    infer_fuzz_targets::http::http_body(data);
});
