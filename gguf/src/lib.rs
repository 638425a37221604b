//! # infer-gguf
//!
//! A hand-written reader and writer for GGUF, the model file format of
//! llama.cpp. The reader memory-maps the file and parses the header, metadata
//! and tensor table without copying tensor data; [`Gguf::tensor`] hands out
//! borrowed bytes. The crate is format only: no math.
//!
//! ```
//! use infer_gguf::{Gguf, GgufWriter, QuantType, Value};
//! let path = std::env::temp_dir().join("infer-gguf-doc.gguf");
//! let mut w = GgufWriter::new();
//! w.add_metadata("general.architecture", Value::String("llama".into()));
//! w.add_metadata("llama.block_count", Value::U32(2));
//! w.add_tensor("w", QuantType::F32, &[4], bytemuck::cast_slice(&[1.0f32, 2.0, 3.0, 4.0]).to_vec())?;
//! w.write_to_path(&path)?;
//! let g = Gguf::open(&path)?;
//! assert_eq!(g.arch_u32("block_count")?, 2);
//! assert_eq!(g.tensor("w")?.data.len(), 16);
//! # Ok::<(), infer_gguf::GgufError>(())
//! ```

pub mod blocks;
mod error;
mod reader;
mod types;
mod value;
mod writer;

pub use error::{GgufError, Result};
pub use reader::{parse_bytes, Gguf, Metadata, TensorInfo, TensorView, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS};
pub use types::{QuantType, QK_K};
pub use value::{Value, ValueType};
pub use writer::{GgufWriter, TensorData, TensorWriteFn};
