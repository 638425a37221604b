//! Tokenizer (stub).
