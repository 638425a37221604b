//! # infer-engine
//!
//! Model architectures, KV cache, tokenizer, chat templates, sampler and the
//! session API of infer.
//!
//! ```no_run
//! use infer_engine::{GenerateOptions, Model, ModelOptions, SamplerParams, SessionParams};
//! let model = Model::load("models/SmolLM2-135M-Instruct.Q4_1.gguf", ModelOptions::default())?;
//! let mut session = model.session(SessionParams::default())?;
//! let prompt = model.prompt_tokens("Once upon a time")?;
//! let text: String = session
//!     .generate(&prompt, SamplerParams::greedy(), GenerateOptions { max_tokens: 8, ..Default::default() })?
//!     .map(|t| t.map(|t| t.text))
//!     .collect::<Result<_, _>>()?;
//! println!("{text}");
//! # Ok::<(), infer_engine::EngineError>(())
//! ```

pub mod arch;
pub mod backend;
pub mod batch;
pub mod chat;
pub mod constraint;
pub mod embed;
mod error;
pub mod fault;
pub mod hf;
pub mod kv_cache;
pub mod model;
pub mod offload;
pub mod perplexity;
pub mod sampler;
pub mod scoring;
pub mod scheduler;
pub mod session;
pub mod synth;
pub mod synth_family;
pub mod threads;
pub mod tokenizer;
pub mod tools;
pub mod verify;
pub mod weights;

pub use arch::{Logits, ModelConfig};
pub use chat::{ChatMessage, ChatTemplate};
pub use constraint::{Constraint, ConstraintState};
pub use embed::{EmbedOptions, Embeddings, Pooling};
pub use error::{EngineError, Result};
pub use model::{CpuMoe, GpuLayers, Model, ModelOptions};
pub use sampler::{Sampler, SamplerParams};
pub use scheduler::{Engine, EngineHandle, EngineParams, EngineStats, Event, Request, RequestStream};
pub use session::{FinishReason, GenerateOptions, Generation, Session, SessionParams, Timings, Token};
pub use tokenizer::{StreamDecoder, Tokenizer};
