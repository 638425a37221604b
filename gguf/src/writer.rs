//! `GgufWriter`: writes valid version-3 GGUF files.

use std::io::{BufWriter, Seek, Write};
use std::path::Path;

use crate::error::{GgufError, Result};
use crate::reader::{DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS};
use crate::types::QuantType;
use crate::value::{Value, ValueType};

/// Writes exactly one tensor's bytes into the file.
pub type TensorWriteFn = Box<dyn FnMut(&mut dyn Write) -> std::io::Result<()> + Send>;

/// Where a tensor's bytes come from when the file is written.
pub enum TensorData {
    /// Bytes held in memory.
    Bytes(Vec<u8>),
    /// A function that writes exactly the tensor's bytes; lets tools write
    /// multi-gigabyte synthetic models without holding them in memory.
    Stream(TensorWriteFn),
}

impl std::fmt::Debug for TensorData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TensorData::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            TensorData::Stream(_) => write!(f, "Stream"),
        }
    }
}

struct PendingTensor {
    name: String,
    ty: QuantType,
    dims: Vec<u64>,
    n_bytes: u64,
    data: TensorData,
}

/// Builds a GGUF v3 file: metadata of every type, tensors padded to the
/// alignment.
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a metadata entry. `general.alignment` sets the
    /// alignment used for tensor data. Values are checked when the file is
    /// written.
    pub fn add_metadata(&mut self, key: &str, value: Value) -> &mut Self {
        if let Some(slot) = self.metadata.iter_mut().find(|(k, _)| k == key) {
            slot.1 = value;
        } else {
            self.metadata.push((key.to_string(), value));
        }
        self
    }

    /// Adds a tensor whose bytes are in memory. `dims` are in ggml order
    /// (row length first).
    pub fn add_tensor(&mut self, name: &str, ty: QuantType, dims: &[u64], data: Vec<u8>) -> Result<&mut Self> {
        let n = self.check_tensor(name, ty, dims)?;
        if data.len() as u64 != n {
            return Err(GgufError::Write(format!(
                "tensor \"{name}\": {} bytes given, {ty} {dims:?} needs {n}",
                data.len()
            )));
        }
        self.push(name, ty, dims, n, TensorData::Bytes(data));
        Ok(self)
    }

    /// Adds a tensor whose bytes are produced while writing.
    pub fn add_tensor_stream(
        &mut self,
        name: &str,
        ty: QuantType,
        dims: &[u64],
        f: impl FnMut(&mut dyn Write) -> std::io::Result<()> + Send + 'static,
    ) -> Result<&mut Self> {
        let n = self.check_tensor(name, ty, dims)?;
        self.push(name, ty, dims, n, TensorData::Stream(Box::new(f)));
        Ok(self)
    }

    fn push(&mut self, name: &str, ty: QuantType, dims: &[u64], n_bytes: u64, data: TensorData) {
        self.tensors.push(PendingTensor { name: name.into(), ty, dims: dims.to_vec(), n_bytes, data });
    }

    fn check_tensor(&self, name: &str, ty: QuantType, dims: &[u64]) -> Result<u64> {
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(GgufError::Write(format!("duplicate tensor \"{name}\"")));
        }
        if dims.is_empty() || dims.len() > MAX_DIMS || dims.contains(&0) {
            return Err(GgufError::Write(format!("tensor \"{name}\": bad dimensions {dims:?}")));
        }
        let n: u64 = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).ok_or_else(|| {
            GgufError::Write(format!("tensor \"{name}\": dimensions {dims:?} overflow"))
        })?;
        ty.bytes_for(n).filter(|_| dims[0].is_multiple_of(ty.block_size() as u64)).ok_or_else(|| {
            GgufError::Write(format!(
                "tensor \"{name}\": first dimension {} is not a multiple of the {ty} block size {}",
                dims[0],
                ty.block_size()
            ))
        })
    }

    /// The data alignment, checked the way the reader checks it.
    fn alignment(&self) -> Result<u64> {
        let Some((_, v)) = self.metadata.iter().find(|(k, _)| k == "general.alignment") else {
            return Ok(DEFAULT_ALIGNMENT);
        };
        match v.as_i128().and_then(|a| u32::try_from(a).ok()) {
            Some(a) if a.is_power_of_two() => Ok(a as u64),
            _ => Err(GgufError::Write(format!("general.alignment = {v} is not a power of two that fits in u32"))),
        }
    }

    /// Checks what `write` would otherwise turn into an unreadable file:
    /// the alignment, and arrays whose elements differ from their declared type.
    pub fn validate(&self) -> Result<()> {
        self.alignment()?;
        for (k, v) in &self.metadata {
            check_array_types(k, v)?;
        }
        Ok(())
    }

    /// Writes the file to `path`.
    pub fn write_to_path(self, path: impl AsRef<Path>) -> Result<()> {
        self.validate()?;
        let path = path.as_ref();
        let io = |source| GgufError::Io { path: path.to_path_buf(), source };
        let f = std::fs::File::create(path).map_err(io)?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        self.write(&mut w).map_err(io)?;
        w.flush().map_err(io)
    }

    /// Writes the file into any byte sink.
    pub fn write<W: Write + Seek>(self, w: &mut W) -> std::io::Result<()> {
        self.validate().map_err(std::io::Error::other)?;
        let alignment = self.alignment().map_err(std::io::Error::other)?;
        let mut buf = Vec::new();
        buf.extend_from_slice(&GGUF_MAGIC);
        buf.extend_from_slice(&3u32.to_le_bytes());
        buf.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        buf.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            write_string(&mut buf, k);
            buf.extend_from_slice(&v.value_type().id().to_le_bytes());
            write_value(&mut buf, v);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            write_string(&mut buf, &t.name);
            buf.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                buf.extend_from_slice(&d.to_le_bytes());
            }
            buf.extend_from_slice(&t.ty.id().to_le_bytes());
            buf.extend_from_slice(&offset.to_le_bytes());
            offset = (offset + t.n_bytes).div_ceil(alignment) * alignment;
        }
        let pad = |pos: u64| (alignment - pos % alignment) % alignment;
        buf.resize(buf.len() + pad(buf.len() as u64) as usize, 0);
        let base = w.stream_position()?;
        w.write_all(&buf)?;
        for mut t in self.tensors {
            let start = w.stream_position()? - base;
            match &mut t.data {
                TensorData::Bytes(b) => w.write_all(b)?,
                TensorData::Stream(f) => f(w)?,
            }
            let written = w.stream_position()? - base - start;
            if written != t.n_bytes {
                return Err(std::io::Error::other(format!(
                    "tensor \"{}\": wrote {written} bytes, expected {}",
                    t.name, t.n_bytes
                )));
            }
            w.write_all(&vec![0u8; pad(written) as usize])?;
        }
        Ok(())
    }
}

fn check_array_types(key: &str, v: &Value) -> Result<()> {
    if let Value::Array(t, items) = v {
        for it in items {
            if it.value_type() != *t {
                return Err(GgufError::Write(format!(
                    "metadata \"{key}\": array<{}> holds a {} element",
                    t.name(),
                    it.type_description()
                )));
            }
            check_array_types(key, it)?;
        }
    }
    Ok(())
}

fn write_string(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn write_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => buf.push(*x),
        Value::I8(x) => buf.push(*x as u8),
        Value::U16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => buf.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => buf.push(*x as u8),
        Value::String(s) => write_string(buf, s),
        Value::Array(t, items) => {
            buf.extend_from_slice(&t.id().to_le_bytes());
            buf.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for it in items {
                write_value(buf, it);
            }
        }
    }
}

impl Value {
    /// A string array value.
    pub fn str_array<S: AsRef<str>>(items: &[S]) -> Value {
        Value::Array(ValueType::String, items.iter().map(|s| Value::String(s.as_ref().to_string())).collect())
    }
    /// An f32 array value.
    pub fn f32_array(items: &[f32]) -> Value {
        Value::Array(ValueType::F32, items.iter().map(|&f| Value::F32(f)).collect())
    }
    /// An i32 array value.
    pub fn i32_array(items: &[i32]) -> Value {
        Value::Array(ValueType::I32, items.iter().map(|&f| Value::I32(f)).collect())
    }
}
