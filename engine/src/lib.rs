//! # infer-engine
//!
//! Model architectures, KV cache, tokenizer, chat templates, sampler and the
//! session API of infer.

pub mod chat;
mod error;
pub mod tokenizer;

pub use error::{EngineError, Result};
