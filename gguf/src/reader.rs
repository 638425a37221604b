//! The GGUF reader: parses a memory-mapped file without copying tensor data.
//!
//! Every count and length is checked against the bytes left in the file
//! before anything is allocated, so a hostile file fails with an error that
//! names the value and its offset instead of exhausting memory.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{GgufError, Result};
use crate::types::QuantType;
use crate::value::{Value, ValueType};

/// "GGUF" as it appears at offset 0.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Default `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Arrays nested deeper than this are rejected (real files nest at most once).
pub const MAX_ARRAY_DEPTH: usize = 8;
/// The most dimensions a tensor may have.
pub const MAX_DIMS: usize = 4;
/// Pre-allocation cap for counts read from the file: a count that passed the
/// bytes-left check can still claim far more memory than the file's size once
/// each entry becomes a `Value` or `TensorInfo`, so vectors grow past this
/// only as entries are actually parsed.
const MAX_PREALLOC: usize = 4096;

/// Metadata entries in file order.
pub type Metadata = Vec<(String, Value)>;

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the row length (contiguous).
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: QuantType,
    /// Offset of the first byte relative to the start of the data section.
    pub offset: u64,
    /// Size of the tensor's data in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
    /// Row length (`dims[0]`) and number of rows (product of the rest).
    pub fn rows_cols(&self) -> (usize, usize) {
        let cols = self.dims.first().copied().unwrap_or(1) as usize;
        let rows = self.dims.get(1..).unwrap_or(&[]).iter().product::<u64>() as usize;
        (rows, cols)
    }
}

/// A tensor's bytes, borrowed from the mmap.
#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a> {
    pub info: &'a TensorInfo,
    /// Exactly the tensor's bytes.
    pub data: &'a [u8],
}

impl<'a> TensorView<'a> {
    pub fn ty(&self) -> QuantType {
        self.info.ty
    }
    pub fn dims(&self) -> &'a [u64] {
        &self.info.dims
    }
    pub fn name(&self) -> &'a str {
        &self.info.name
    }
}

/// An open GGUF file.
///
/// ```no_run
/// let g = infer_gguf::Gguf::open("models/SmolLM2-135M-Instruct.Q4_1.gguf")?;
/// let layers = g.arch_u32("block_count")?;
/// let emb = g.tensor("token_embd.weight")?;
/// println!("{layers} layers, embedding {:?} {}", emb.dims(), emb.ty());
/// # Ok::<(), infer_gguf::GgufError>(())
/// ```
pub struct Gguf {
    path: PathBuf,
    mmap: Mmap,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, Value)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("n_metadata", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .finish()
    }
}

impl Gguf {
    /// Memory-maps and parses the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io { path: path.clone(), source };
        let file = std::fs::File::open(&path).map_err(io)?;
        // SAFETY: the map is read-only; like every mmap-based reader we rely on
        // the file not being truncated by another process while it is open.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        Self::from_mmap(path, mmap)
    }

    /// A GGUF that holds `metadata` and no tensors, built in memory (an
    /// anonymous map) and parsed like a file, so its keys pass the same
    /// checks. Lets a model read from another format (a Hugging Face folder)
    /// be described with llama.cpp's keys; `path` names it in messages.
    pub fn from_metadata(path: impl AsRef<Path>, metadata: Metadata) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut w = crate::writer::GgufWriter::new();
        for (k, v) in metadata {
            w.add_metadata(&k, v);
        }
        let mut bytes = std::io::Cursor::new(Vec::new());
        w.write(&mut bytes).map_err(|e| GgufError::Write(format!("{}: {e}", path.display())))?;
        let bytes = bytes.into_inner();
        let io = |source| GgufError::Io { path: path.clone(), source };
        let mut map = memmap2::MmapMut::map_anon(bytes.len()).map_err(io)?;
        map.copy_from_slice(&bytes);
        let mmap = map.make_read_only().map_err(io)?;
        Self::from_mmap(path, mmap)
    }

    fn from_mmap(path: PathBuf, mmap: Mmap) -> Result<Self> {
        let parsed = parse(&path, &mmap)?;
        Ok(Gguf {
            path,
            mmap,
            version: parsed.version,
            alignment: parsed.alignment,
            data_offset: parsed.data_offset,
            meta_index: parsed.metadata.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect(),
            metadata: parsed.metadata,
            tensor_index: parsed.tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect(),
            tensors: parsed.tensors,
        })
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }
    /// Data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }
    /// Absolute offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }
    /// Total file size in bytes.
    pub fn file_size(&self) -> u64 {
        self.mmap.len() as u64
    }
    /// The whole mapped file.
    pub fn bytes(&self) -> &[u8] {
        &self.mmap
    }
    /// Lets the OS drop the resident pages of `bytes()[offset..offset + len]`
    /// (e.g. a tensor that was copied into another layout); a later read
    /// loads them from the file again. Only whole pages inside the range go.
    /// A hint: failures are ignored.
    pub fn release(&self, offset: usize, len: usize) {
        #[cfg(unix)]
        {
            const PAGE: usize = 4096;
            let end = offset.saturating_add(len).min(self.mmap.len()) / PAGE * PAGE;
            let start = offset.div_ceil(PAGE) * PAGE;
            if end > start {
                // SAFETY: the map is a read-only, shared mapping of the file:
                // dropped pages are re-read from the file, never lost.
                let _ =
                    unsafe { self.mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
            }
        }
        #[cfg(not(unix))]
        let _ = (offset, len);
    }
    /// All metadata in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }
    /// All tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// A metadata value, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| GgufError::MissingKey { path: self.path.clone(), key: key.to_string() })
    }

    fn wrong_type(&self, key: &str, expected: &'static str, v: &Value) -> GgufError {
        GgufError::WrongType { path: self.path.clone(), key: key.into(), expected, actual: v.type_description() }
    }

    fn int_of<T: TryFrom<i128>>(&self, key: &str, v: &Value, expected: &'static str) -> Result<T> {
        let i = v.as_i128().ok_or_else(|| self.wrong_type(key, expected, v))?;
        T::try_from(i).map_err(|_| GgufError::OutOfRange {
            path: self.path.clone(),
            key: key.into(),
            value: i.to_string(),
            expected,
        })
    }

    /// An unsigned integer (any integer type that fits in u32).
    pub fn u32(&self, key: &str) -> Result<u32> {
        self.int_of(key, self.require(key)?, "u32")
    }
    /// An unsigned integer (any integer type that fits in u64).
    pub fn u64(&self, key: &str) -> Result<u64> {
        self.int_of(key, self.require(key)?, "u64")
    }
    /// A signed integer (any integer type that fits in i64).
    pub fn i64(&self, key: &str) -> Result<i64> {
        self.int_of(key, self.require(key)?, "i64")
    }
    /// A float (F32 or F64).
    pub fn f32(&self, key: &str) -> Result<f32> {
        let v = self.require(key)?;
        v.as_f64().map(|f| f as f32).ok_or_else(|| self.wrong_type(key, "f32", v))
    }
    /// A bool.
    pub fn bool(&self, key: &str) -> Result<bool> {
        match self.require(key)? {
            Value::Bool(b) => Ok(*b),
            v => Err(self.wrong_type(key, "bool", v)),
        }
    }
    /// A string.
    pub fn str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| self.wrong_type(key, "string", v))
    }
    /// An array of any element type.
    pub fn array(&self, key: &str) -> Result<&[Value]> {
        match self.require(key)? {
            Value::Array(_, items) => Ok(items),
            v => Err(self.wrong_type(key, "array", v)),
        }
    }
    /// An array of strings.
    pub fn str_array(&self, key: &str) -> Result<Vec<&str>> {
        match self.require(key)? {
            Value::Array(ValueType::String, items) => Ok(items.iter().filter_map(Value::as_str).collect()),
            v => Err(self.wrong_type(key, "array<string>", v)),
        }
    }
    /// An array of floats (F32 or F64 elements).
    pub fn f32_array(&self, key: &str) -> Result<Vec<f32>> {
        match self.require(key)? {
            Value::Array(ValueType::F32 | ValueType::F64, items) => {
                Ok(items.iter().filter_map(|v| v.as_f64().map(|f| f as f32)).collect())
            }
            v => Err(self.wrong_type(key, "array<f32>", v)),
        }
    }
    /// An array of integers that fit in i32.
    pub fn i32_array(&self, key: &str) -> Result<Vec<i32>> {
        let v = self.require(key)?;
        match v {
            Value::Array(
                ValueType::U8
                | ValueType::I8
                | ValueType::U16
                | ValueType::I16
                | ValueType::U32
                | ValueType::I32
                | ValueType::U64
                | ValueType::I64,
                items,
            ) => items.iter().map(|x| self.int_of(key, x, "i32")).collect(),
            v => Err(self.wrong_type(key, "array<i32>", v)),
        }
    }

    /// `Ok(None)` when the key is missing; the typed value otherwise.
    pub fn opt<T>(&self, key: &str, f: impl FnOnce(&Self, &str) -> Result<T>) -> Result<Option<T>> {
        if self.get(key).is_none() {
            return Ok(None);
        }
        f(self, key).map(Some)
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str> {
        self.str("general.architecture")
    }
    /// The architecture-prefixed key: `arch_key("block_count")` → `llama.block_count`.
    pub fn arch_key(&self, suffix: &str) -> Result<String> {
        Ok(format!("{}.{}", self.architecture()?, suffix))
    }
    /// `{arch}.{suffix}` as u32.
    pub fn arch_u32(&self, suffix: &str) -> Result<u32> {
        self.u32(&self.arch_key(suffix)?)
    }
    /// `{arch}.{suffix}` as f32.
    pub fn arch_f32(&self, suffix: &str) -> Result<f32> {
        self.f32(&self.arch_key(suffix)?)
    }
    /// `{arch}.{suffix}` as u32 when present.
    pub fn arch_u32_opt(&self, suffix: &str) -> Result<Option<u32>> {
        self.opt(&self.arch_key(suffix)?, Self::u32)
    }
    /// `{arch}.{suffix}` as f32 when present.
    pub fn arch_f32_opt(&self, suffix: &str) -> Result<Option<f32>> {
        self.opt(&self.arch_key(suffix)?, Self::f32)
    }

    /// The info of a tensor, if present.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// A tensor's type, shape and bytes.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| GgufError::MissingTensor { path: self.path.clone(), name: name.to_string() })?;
        // Bounds were checked when the file was parsed.
        let start = (self.data_offset + info.offset) as usize;
        let data = &self.mmap[start..start + info.n_bytes as usize];
        Ok(TensorView { info, data })
    }
}

struct Parsed {
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorInfo>,
}

/// Parses GGUF bytes held in memory (used by [`Gguf::open`], tests and fuzzing).
pub fn parse_bytes(bytes: &[u8]) -> Result<(Metadata, Vec<TensorInfo>)> {
    let p = parse(Path::new("<memory>"), bytes)?;
    Ok((p.metadata, p.tensors))
}

/// What a cursor read is for, formatted only when an error needs it: building
/// the text eagerly cost two allocations per vocabulary string.
#[derive(Clone, Copy)]
enum What<'k> {
    /// A fixed field, e.g. "tensor count".
    Field(&'static str),
    /// The length prefix of a string field, e.g. "metadata key length".
    Length(&'static str),
    /// A string value of metadata key `k`, and its length prefix.
    StrValue(&'k str),
    StrValueLength(&'k str),
    /// The element count of array `k`.
    ArrayCount(&'k str),
}

impl std::fmt::Display for What<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            What::Field(w) => f.write_str(w),
            What::Length(w) => write!(f, "{w} length"),
            What::StrValue(k) => write!(f, "string value of \"{k}\""),
            What::StrValueLength(k) => write!(f, "string value of \"{k}\" length"),
            What::ArrayCount(k) => write!(f, "element count of array \"{k}\""),
        }
    }
}

impl<'k> From<&'static str> for What<'k> {
    fn from(s: &'static str) -> Self {
        What::Field(s)
    }
}

struct Cursor<'a> {
    path: &'a Path,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn left(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take<'k>(&mut self, n: usize, what: impl Into<What<'k>>) -> Result<&'a [u8]> {
        if (n as u64) > self.left() {
            return Err(GgufError::Truncated {
                path: self.path.into(),
                offset: self.pos as u64,
                what: what.into().to_string(),
                needed: n as u64,
                left: self.left(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<'k, const N: usize>(&mut self, what: impl Into<What<'k>>) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    fn u8<'k>(&mut self, what: impl Into<What<'k>>) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16<'k>(&mut self, what: impl Into<What<'k>>) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32<'k>(&mut self, what: impl Into<What<'k>>) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64<'k>(&mut self, what: impl Into<What<'k>>) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Reads a count and checks that `count * min_each` bytes remain.
    fn count<'k>(&mut self, what: impl Into<What<'k>>, min_each: u64) -> Result<usize> {
        let what = what.into();
        let offset = self.pos as u64;
        let n = self.u64(what)?;
        let left = self.left();
        if n.checked_mul(min_each).is_none_or(|b| b > left) {
            return Err(GgufError::CountTooLarge {
                path: self.path.into(),
                offset,
                what: what.to_string(),
                value: n,
                left,
            });
        }
        Ok(n as usize)
    }

    /// A length-prefixed UTF-8 string; `what` is `Field` or `StrValue`.
    fn string(&mut self, what: What<'_>) -> Result<String> {
        let len_what = match what {
            What::Field(w) => What::Length(w),
            What::StrValue(k) => What::StrValueLength(k),
            other => other,
        };
        let len = self.count(len_what, 1)?;
        let offset = self.pos as u64;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GgufError::BadUtf8 { path: self.path.into(), offset })
    }

    fn value(&mut self, key: &str, ty: ValueType, depth: usize) -> Result<Value> {
        let w = "metadata value";
        Ok(match ty {
            ValueType::U8 => Value::U8(self.u8(w)?),
            ValueType::I8 => Value::I8(self.u8(w)? as i8),
            ValueType::U16 => Value::U16(self.u16(w)?),
            ValueType::I16 => Value::I16(self.u16(w)? as i16),
            ValueType::U32 => Value::U32(self.u32(w)?),
            ValueType::I32 => Value::I32(self.u32(w)? as i32),
            ValueType::U64 => Value::U64(self.u64(w)?),
            ValueType::I64 => Value::I64(self.u64(w)? as i64),
            ValueType::F32 => Value::F32(f32::from_bits(self.u32(w)?)),
            ValueType::F64 => Value::F64(f64::from_bits(self.u64(w)?)),
            ValueType::Bool => Value::Bool(self.u8(w)? != 0),
            ValueType::String => Value::String(self.string(What::StrValue(key))?),
            ValueType::Array => {
                let offset = self.pos as u64;
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::NestingTooDeep {
                        path: self.path.into(),
                        key: key.into(),
                        max: MAX_ARRAY_DEPTH,
                        offset,
                    });
                }
                let type_id = self.u32("array element type")?;
                let elem = ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
                    path: self.path.into(),
                    key: key.into(),
                    type_id,
                    offset,
                })?;
                let n = self.count(What::ArrayCount(key), elem.min_encoded_len())?;
                let mut items = Vec::with_capacity(n.min(MAX_PREALLOC));
                for _ in 0..n {
                    items.push(self.value(key, elem, depth + 1)?);
                }
                Value::Array(elem, items)
            }
        })
    }
}

fn parse(path: &Path, buf: &[u8]) -> Result<Parsed> {
    let mut c = Cursor { path, buf, pos: 0 };
    let magic: [u8; 4] = c.array("magic")?;
    if magic != GGUF_MAGIC {
        return Err(GgufError::BadMagic { path: path.into(), found: magic });
    }
    let version = c.u32("version")?;
    if version != 2 && version != 3 {
        // A big-endian writer stores 3 as 0x03000000: the low 16 bits are zero.
        if version & 0xFFFF == 0 && version != 0 {
            return Err(GgufError::BigEndian { path: path.into(), raw: version });
        }
        return Err(GgufError::UnsupportedVersion { path: path.into(), version });
    }
    // Minimal encoded sizes: tensor info = name len + n_dims + type + offset.
    let n_tensors = c.count("tensor count", 8 + 4 + 4 + 8)?;
    // Metadata entry = key len + type id + at least one byte of value.
    let n_kv = c.count("metadata count", 8 + 4 + 1)?;

    let mut metadata = Vec::with_capacity(n_kv.min(MAX_PREALLOC));
    let mut seen = HashSet::with_capacity(n_kv.min(MAX_PREALLOC));
    let mut alignment_offset = 0u64;
    for _ in 0..n_kv {
        let offset = c.pos as u64;
        let key = c.string(What::Field("metadata key"))?;
        if !seen.insert(key.clone()) {
            return Err(GgufError::DuplicateKey { path: path.into(), key, offset });
        }
        let type_offset = c.pos as u64;
        let type_id = c.u32("metadata value type")?;
        let ty = ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
            path: path.into(),
            key: key.clone(),
            type_id,
            offset: type_offset,
        })?;
        if key == "general.alignment" {
            alignment_offset = c.pos as u64;
        }
        let value = c.value(&key, ty, 0)?;
        metadata.push((key, value));
    }

    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        // The spec stores it as u32; any integer type in range is accepted.
        Some((_, v)) => match v.as_i128().and_then(|a| u32::try_from(a).ok()) {
            Some(a) if a.is_power_of_two() => a as u64,
            _ => {
                let value = match v.as_i128() {
                    Some(a) => a.to_string(),
                    None => format!("{v} ({})", v.type_description()),
                };
                return Err(GgufError::BadAlignment { path: path.into(), value, offset: alignment_offset });
            }
        },
    };

    let mut tensors = Vec::with_capacity(n_tensors.min(MAX_PREALLOC));
    let mut names = HashSet::with_capacity(n_tensors.min(MAX_PREALLOC));
    for _ in 0..n_tensors {
        let offset = c.pos as u64;
        let name = c.string(What::Field("tensor name"))?;
        if !names.insert(name.clone()) {
            return Err(GgufError::DuplicateTensor { path: path.into(), name, offset });
        }
        let dims_offset = c.pos as u64;
        let n_dims = c.u32("tensor dimension count")?;
        if n_dims as usize > MAX_DIMS {
            return Err(GgufError::TooManyDims { path: path.into(), name, n_dims, offset: dims_offset });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        let mut n_elements: u64 = 1;
        for index in 0..n_dims as usize {
            let d_off = c.pos as u64;
            let d = c.u64("tensor dimension")?;
            let bad =
                |why| GgufError::BadDim { path: path.into(), name: name.clone(), index, value: d, offset: d_off, why };
            if d == 0 {
                return Err(bad("zero"));
            }
            n_elements = n_elements
                .checked_mul(d)
                .filter(|&n| n <= i64::MAX as u64)
                .ok_or_else(|| bad("element count overflows"))?;
            dims.push(d);
        }
        if dims.is_empty() {
            // A zero-dimensional tensor is a scalar in ggml.
            dims.push(1);
        }
        let type_offset = c.pos as u64;
        let type_id = c.u32("tensor type")?;
        let ty = QuantType::from_id(type_id).ok_or_else(|| GgufError::UnknownTensorType {
            path: path.into(),
            name: name.clone(),
            type_id,
            offset: type_offset,
        })?;
        if !dims[0].is_multiple_of(ty.block_size() as u64) {
            return Err(GgufError::NotBlockMultiple {
                path: path.into(),
                name,
                ty: ty.name(),
                ne0: dims[0],
                block: ty.block_size() as u64,
                offset: dims_offset + 4,
            });
        }
        let n_bytes = ty.bytes_for(n_elements).ok_or_else(|| GgufError::BadDim {
            path: path.into(),
            name: name.clone(),
            index: 0,
            value: dims[0],
            offset: dims_offset,
            why: "byte size overflows",
        })?;
        let field_offset = c.pos as u64;
        let data_off = c.u64("tensor data offset")?;
        if !data_off.is_multiple_of(alignment) {
            return Err(GgufError::MisalignedTensor {
                path: path.into(),
                name,
                value: data_off,
                alignment,
                offset: field_offset,
            });
        }
        tensors.push(TensorInfo { name, dims, ty, offset: data_off, n_bytes });
    }

    let header_end = c.pos as u64;
    let data_offset = header_end.div_ceil(alignment) * alignment;
    let file_len = buf.len() as u64;

    // Each tensor must lie inside the file, and no two may share bytes.
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by_key(|&i| tensors[i].offset);
    let mut prev: Option<(usize, u64)> = None;
    for &i in &order {
        let t = &tensors[i];
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes));
        match (start, end) {
            (Some(s), Some(e)) if e <= file_len => {
                if let Some((p, prev_end)) = prev {
                    if s < prev_end {
                        return Err(GgufError::TensorOverlap {
                            path: path.into(),
                            name: t.name.clone(),
                            other: tensors[p].name.clone(),
                            start: s,
                            end: e,
                        });
                    }
                }
                prev = Some((i, e));
            }
            _ => {
                return Err(GgufError::TensorPastEnd {
                    path: path.into(),
                    name: t.name.clone(),
                    start: start.unwrap_or(u64::MAX),
                    end: end.unwrap_or(u64::MAX),
                    file_len,
                })
            }
        }
    }

    Ok(Parsed { version, alignment, data_offset, metadata, tensors })
}
