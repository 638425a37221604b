//! The weight table: every tensor a model uses, by id, borrowed from the
//! mmap of a GGUF or of a folder's safetensors files (or, for tensors
//! quantized while loading, from a buffer made for them).

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use infer_gguf::{Gguf, QuantType};
use infer_kernels::cpu::{Isa, PackedMatrix, QMatrix};
use memmap2::Mmap;

use crate::error::{EngineError, Result};

/// Index of a tensor in a [`WeightTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WeightId(pub usize);

/// One weight tensor, viewed as a matrix of `rows` rows of `cols` elements.
#[derive(Debug, Clone)]
pub struct WeightInfo {
    pub name: String,
    pub ty: QuantType,
    /// Row length (ggml's `ne[0]`).
    pub cols: usize,
    /// Number of rows (product of the other dimensions).
    pub rows: usize,
    /// Which of the table's byte sources holds it (0: the GGUF file).
    pub source: usize,
    /// Absolute byte offset in that source.
    pub start: usize,
    pub n_bytes: usize,
}

/// A tensor that lives outside the GGUF (a safetensors file of a folder),
/// described in ggml's terms.
#[derive(Debug, Clone)]
pub struct ExternalTensor {
    /// Dimensions in ggml order (row length first).
    pub dims: Vec<u64>,
    pub ty: QuantType,
    /// Index into the sources given to [`WeightTable::with_sources`] (0 is the first).
    /// (The table numbers them from 1: its source 0 is the GGUF.)
    pub source: usize,
    /// Absolute byte offset in that source.
    pub start: usize,
    pub n_bytes: usize,
    /// The file and name it was read from, for messages.
    pub origin: String,
}

/// Bytes that weights are borrowed from.
#[derive(Debug)]
pub enum ByteSource {
    /// A mapped file (a safetensors shard).
    Map { path: PathBuf, map: Mmap },
    /// Bytes made at load time (a tensor quantized or rearranged while loading).
    Owned(Vec<u8>),
}

impl ByteSource {
    /// All of the source's bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            ByteSource::Map { map, .. } => map,
            ByteSource::Owned(v) => v,
        }
    }

    /// Lets the kernel drop the mapped pages of `offset..offset + len` (whole
    /// pages inside it) once a repacked copy holds them; they are re-read
    /// from the file if touched again. Owned bytes stay.
    fn release(&self, offset: usize, len: usize) {
        #[cfg(unix)]
        if let ByteSource::Map { map, .. } = self {
            const PAGE: usize = 4096;
            let end = offset.saturating_add(len).min(map.len()) / PAGE * PAGE;
            let start = offset.div_ceil(PAGE) * PAGE;
            if end > start {
                // SAFETY: a read-only, shared mapping of the file: dropped
                // pages are re-read from the file, never lost.
                let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
            }
        }
        #[cfg(not(unix))]
        let _ = (offset, len);
    }
}

/// The model's tensors, looked up once at load time. Data stays in the mmap.
#[derive(Debug)]
pub struct WeightTable {
    gguf: Arc<Gguf>,
    /// Byte sources after the GGUF file (source `i + 1`).
    sources: Vec<ByteSource>,
    /// Tensors not in the GGUF, by llama.cpp name (a folder's weights).
    external: HashMap<String, ExternalTensor>,
    /// Matrices in F32/F16/BF16 are quantized to this type as they are registered.
    quantize: Option<QuantType>,
    infos: Vec<WeightInfo>,
    /// Repacked copies for the CPU kernels, made on first CPU use (so layers
    /// that live on the GPU never get one).
    packed: Vec<OnceLock<Option<PackedMatrix>>>,
    repack: bool,
    /// F16 matrices may sum in f16 ([`WeightTable::set_half_math`]).
    half_math: bool,
}

impl WeightTable {
    /// `INFER_CPU_REPACK=0` keeps every matrix in its file layout (for
    /// measuring what repacking buys).
    pub fn new(gguf: Arc<Gguf>) -> Self {
        let repack = std::env::var("INFER_CPU_REPACK").map_or(true, |v| v != "0");
        WeightTable {
            gguf,
            sources: Vec::new(),
            external: HashMap::new(),
            quantize: None,
            infos: Vec::new(),
            packed: Vec::new(),
            repack,
            half_math: false,
        }
    }

    /// Lets the F16 matrices packed from now on sum in f16 where the CPU has
    /// AVX-512 FP16 (twice the multiply-adds per instruction), unless
    /// `INFER_CPU_HALF_MATH=0`. For models whose results tolerate it: the
    /// encoders' embeddings keep their cosine bound (tests/embeddings.rs).
    pub fn set_half_math(&mut self, on: bool) {
        self.half_math = on && std::env::var("INFER_CPU_HALF_MATH").map_or(true, |v| v != "0");
    }

    /// A table whose tensors live in `sources` (tensor name → place in
    /// `external`); `gguf` holds only the metadata (a Hugging Face folder).
    pub fn with_sources(gguf: Arc<Gguf>, sources: Vec<ByteSource>, external: HashMap<String, ExternalTensor>) -> Self {
        let mut t = Self::new(gguf);
        t.sources = sources;
        t.external = external;
        t
    }

    /// Matrices stored as F32, F16 or BF16 are quantized to `ty` (Q8_0,
    /// Q4_0) as they are registered, one tensor at a time.
    pub fn set_quantize(&mut self, ty: Option<QuantType>) {
        self.quantize = ty;
    }

    /// The file the weights live in.
    pub fn gguf(&self) -> &Arc<Gguf> {
        &self.gguf
    }

    fn path(&self) -> String {
        self.gguf.path().display().to_string()
    }

    /// Registers a required tensor, checking its shape (`[cols, rows]` in ggml order).
    pub fn require(&mut self, arch: &str, name: &str, shape: &[u64]) -> Result<WeightId> {
        self.optional(name, shape)?.ok_or_else(|| EngineError::MissingTensor {
            path: self.path(),
            arch: arch.to_string(),
            name: name.to_string(),
            shape: shape.to_vec(),
        })
    }

    /// Registers a tensor that may be absent (tied output head, optional norms).
    pub fn optional(&mut self, name: &str, shape: &[u64]) -> Result<Option<WeightId>> {
        let (dims, ty, source, start, n_bytes, origin) = if let Some(t) = self.gguf.tensor_info(name) {
            let start = (self.gguf.data_offset() + t.offset) as usize;
            (t.dims.clone(), t.ty, 0, start, t.n_bytes as usize, self.path())
        } else if let Some(t) = self.external.get(name) {
            (t.dims.clone(), t.ty, t.source + 1, t.start, t.n_bytes, t.origin.clone())
        } else {
            return Ok(None);
        };
        let mut got = dims.clone();
        while got.len() > 1 && got.last() == Some(&1) {
            got.pop();
        }
        if got != shape {
            return Err(EngineError::TensorShape { path: origin, name: name.to_string(), expected: shape.to_vec(), got: dims });
        }
        if !infer_kernels::dequant::supports(ty) {
            return Err(EngineError::Config {
                path: origin,
                detail: format!("tensor \"{name}\" has type {ty} which infer cannot compute with"),
            });
        }
        let cols = dims[0] as usize;
        let rows = dims[1..].iter().product::<u64>() as usize;
        let mut info = WeightInfo { name: name.to_string(), ty, cols, rows, source, start, n_bytes };
        if let Some(target) = self.quantize_target(&info, shape) {
            let mut out = Vec::with_capacity(target.bytes_for((rows * cols) as u64).unwrap_or(0) as usize);
            let mut row = vec![0.0f32; cols];
            let row_bytes = n_bytes / rows.max(1);
            let src = &self.source_bytes(source)[start..start + n_bytes];
            for r in src.chunks_exact(row_bytes) {
                infer_kernels::dequant::dequantize(ty, r, &mut row)?;
                infer_kernels::cpu::quantize_row(target, &row, &mut out)?;
            }
            self.sources.push(ByteSource::Owned(out));
            let n_bytes = self.sources.last().map_or(0, |s| s.bytes().len());
            info = WeightInfo { ty: target, source: self.sources.len(), start: 0, n_bytes, ..info };
        }
        self.infos.push(info);
        self.packed.push(OnceLock::new());
        Ok(Some(WeightId(self.infos.len() - 1)))
    }

    /// The type a matrix is quantized to at registration: with
    /// [`set_quantize`](Self::set_quantize), a 2-D float matrix whose rows
    /// split into the target's blocks (norms, biases and vectors stay).
    fn quantize_target(&self, w: &WeightInfo, shape: &[u64]) -> Option<QuantType> {
        let target = self.quantize?;
        let float = matches!(w.ty, QuantType::F32 | QuantType::F16 | QuantType::BF16);
        (float && shape.len() == 2 && w.rows > 1 && w.cols.is_multiple_of(target.block_size()) && w.ty != target)
            .then_some(target)
    }

    fn source_bytes(&self, source: usize) -> &[u8] {
        match source {
            0 => self.gguf.bytes(),
            i => self.sources[i - 1].bytes(),
        }
    }

    /// Registers rows `row0..row0 + rows` of `parent` as a weight of its
    /// own, named `name` (no copy: the view's bytes are the parent's). A
    /// fused tensor (phi3's `attn_qkv`, a 3-D expert tensor) becomes the
    /// matrices the forward pass multiplies by.
    pub fn view(&mut self, parent: WeightId, row0: usize, rows: usize, name: String) -> Result<WeightId> {
        let p = self.infos[parent.0].clone();
        if row0 + rows > p.rows {
            return Err(EngineError::Config {
                path: self.path(),
                detail: format!("tensor \"{}\" has {} rows; rows {row0}..{} were asked for {name}", p.name, p.rows, row0 + rows),
            });
        }
        let row_bytes = p.cols / p.ty.block_size() * p.ty.block_bytes();
        self.infos.push(WeightInfo {
            name,
            ty: p.ty,
            cols: p.cols,
            rows,
            source: p.source,
            start: p.start + row0 * row_bytes,
            n_bytes: rows * row_bytes,
        });
        self.packed.push(OnceLock::new());
        Ok(WeightId(self.infos.len() - 1))
    }

    /// The embedding rows of `tokens` (`cols` values each, on the CPU from
    /// the mmap), multiplied by `scale`, into `out`.
    pub fn embed_rows(&self, id: WeightId, tokens: &[u32], scale: f32, out: &mut Vec<f32>) -> Result<()> {
        let m = self.matrix(id);
        let dim = m.cols;
        out.resize(tokens.len() * dim, 0.0);
        for (i, &tok) in tokens.iter().enumerate() {
            if tok as usize >= m.rows {
                return Err(EngineError::InvalidParam(format!("token id {tok} is outside the vocabulary of {}", m.rows)));
            }
            infer_kernels::cpu::get_row(&m, tok as usize, &mut out[i * dim..(i + 1) * dim])?;
        }
        if scale != 1.0 {
            out.iter_mut().for_each(|v| *v *= scale);
        }
        Ok(())
    }

    pub fn info(&self, id: WeightId) -> &WeightInfo {
        &self.infos[id.0]
    }

    pub fn infos(&self) -> &[WeightInfo] {
        &self.infos
    }

    /// The tensor's bytes in the mmap.
    pub fn bytes(&self, id: WeightId) -> &[u8] {
        let i = &self.infos[id.0];
        &self.source_bytes(i.source)[i.start..i.start + i.n_bytes]
    }

    /// The tensor as a quantized matrix for the CPU kernels.
    pub fn matrix(&self, id: WeightId) -> QMatrix<'_> {
        let i = &self.infos[id.0];
        QMatrix { ty: i.ty, data: self.bytes(id), rows: i.rows, cols: i.cols, packed: None }
    }

    /// The tensor for the CPU matmuls: with a repacked copy where the CPU
    /// kernels have a faster layout for it (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K on x86; F32,
    /// F16 and BF16 in 32-row panels on AVX-512; made on the first call).
    pub fn cpu_matrix(&self, id: WeightId) -> QMatrix<'_> {
        let m = self.matrix(id);
        if !self.repack || !PackedMatrix::worth_packing(m.ty, m.rows, Isa::best()) {
            return m;
        }
        // The CPU reads the copy from now on; the file's pages can go as
        // they are copied (an embedding lookup faults its rows back in).
        let (source, start) = (self.infos[id.0].source, self.infos[id.0].start);
        let release = |off: usize, len: usize| match source {
            0 => self.gguf.release(start + off, len),
            i => self.sources[i - 1].release(start + off, len),
        };
        let packed = self.packed[id.0].get_or_init(|| {
            let mut p = PackedMatrix::pack_releasing(&m, &release)?;
            p.set_half_math(self.half_math);
            Some(p)
        });
        QMatrix { packed: packed.as_ref(), ..m }
    }

    /// Bytes of the repacked copies made so far.
    pub fn packed_bytes(&self) -> usize {
        self.packed.iter().filter_map(|p| p.get().and_then(|p| p.as_ref())).map(|p| p.bytes()).sum()
    }

    /// The tensor as f32 values: borrowed when it is F32 and aligned, else dequantized.
    pub fn f32s(&self, id: WeightId) -> Result<Cow<'_, [f32]>> {
        let i = &self.infos[id.0];
        let bytes = self.bytes(id);
        if i.ty == QuantType::F32 {
            if let Ok(s) = bytemuck::try_cast_slice(bytes) {
                return Ok(Cow::Borrowed(s));
            }
        }
        let mut out = vec![0.0f32; i.rows * i.cols];
        infer_kernels::dequant::dequantize(i.ty, bytes, &mut out)?;
        Ok(Cow::Owned(out))
    }
}
