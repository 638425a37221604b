//! The KV cache of the layers a backend runs, preallocated for the context.

use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::error::{EngineError, Result};

/// Element type of the cache (`--cache-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheType {
    /// Half precision, as llama.cpp's default: half the memory.
    #[default]
    F16,
    F32,
}

impl std::str::FromStr for CacheType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f16" => Ok(CacheType::F16),
            "f32" => Ok(CacheType::F32),
            o => Err(format!("cache type \"{o}\" is not one of f16, f32")),
        }
    }
}

/// A cache element: f32 or f16. Conversions work on slices so the f16 case
/// uses the CPU's vector conversion instructions.
pub trait KvElem: Copy + Send + Sync + 'static {
    /// `dst = src` in this precision.
    fn store(dst: &mut [Self], src: &[f32]);
    /// `dst = src` as f32.
    fn load(src: &[Self], dst: &mut [f32]);
    /// `dst = src` rounded to this precision and back.
    fn round_trip(src: &[f32], dst: &mut [f32]);
}

impl KvElem for f32 {
    fn store(dst: &mut [Self], src: &[f32]) {
        dst.copy_from_slice(src);
    }
    fn load(src: &[Self], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
    fn round_trip(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
}

impl KvElem for f16 {
    fn store(dst: &mut [Self], src: &[f32]) {
        dst.convert_from_f32_slice(src);
    }
    fn load(src: &[Self], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst);
    }
    fn round_trip(src: &[f32], dst: &mut [f32]) {
        let mut tmp = [f16::ZERO; 64];
        for (s, d) in src.chunks(64).zip(dst.chunks_mut(64)) {
            tmp[..s.len()].convert_from_f32_slice(s);
            tmp[..s.len()].convert_to_f32_slice(d);
        }
    }
}

/// One layer's keys and values: `n_ctx` rows of `kv_dim` values each.
pub enum LayerKv {
    F16 { k: Vec<f16>, v: Vec<f16> },
    F32 { k: Vec<f32>, v: Vec<f32> },
}

/// Keys and values of every cached position, per layer. Layers that another
/// backend runs hold nothing. Each of `n_seq` sequences owns one region of
/// `n_ctx` rows (its position `p` is row `seq * n_ctx + p`): sequences are
/// freed, truncated or forked without touching the others, and a step's
/// attention reads one contiguous range per sequence.
pub struct KvCache {
    n_seq: usize,
    n_ctx: usize,
    kv_dim: usize,
    layers: Vec<Option<LayerKv>>,
}

impl KvCache {
    /// A cache of `n_seq` regions of `n_ctx` rows for the layers where `held[l]` is true.
    pub fn new(n_seq: usize, n_ctx: usize, kv_dim: usize, held: &[bool], ty: CacheType) -> Self {
        let n = n_seq * n_ctx * kv_dim;
        let layers = held
            .iter()
            .map(|&h| {
                h.then(|| match ty {
                    // Zeroed allocations stay unresident until positions are written.
                    CacheType::F16 => LayerKv::F16 { k: bytemuck::zeroed_vec(n), v: bytemuck::zeroed_vec(n) },
                    CacheType::F32 => LayerKv::F32 { k: vec![0.0; n], v: vec![0.0; n] },
                })
            })
            .collect();
        KvCache { n_seq, n_ctx, kv_dim, layers }
    }

    /// Rows per sequence.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    pub fn n_seq(&self) -> usize {
        self.n_seq
    }

    /// Copies positions `0..n` of sequence `src` to sequence `dst` in every layer.
    pub fn copy_seq(&mut self, src: usize, dst: usize, n: usize) -> Result<()> {
        if src >= self.n_seq || dst >= self.n_seq || n > self.n_ctx {
            return Err(EngineError::InvalidParam(format!(
                "copying {n} positions from sequence {src} to {dst} of {} (context {})",
                self.n_seq, self.n_ctx
            )));
        }
        let (w, c) = (self.kv_dim, self.n_ctx);
        let (s0, d0) = (src * c * w, dst * c * w);
        if src == dst {
            return Ok(());
        }
        for l in self.layers.iter_mut().flatten() {
            match l {
                LayerKv::F16 { k, v } => {
                    k.copy_within(s0..s0 + n * w, d0);
                    v.copy_within(s0..s0 + n * w, d0);
                }
                LayerKv::F32 { k, v } => {
                    k.copy_within(s0..s0 + n * w, d0);
                    v.copy_within(s0..s0 + n * w, d0);
                }
            }
        }
        Ok(())
    }

    pub fn kv_dim(&self) -> usize {
        self.kv_dim
    }

    /// Bytes held by this cache.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .map(|l| match l {
                LayerKv::F16 { k, v } => (k.len() + v.len()) * 2,
                LayerKv::F32 { k, v } => (k.len() + v.len()) * 4,
            })
            .sum()
    }

    pub fn layer_mut(&mut self, layer: usize) -> Result<&mut LayerKv> {
        match self.layers.get_mut(layer) {
            Some(Some(l)) => Ok(l),
            _ => Err(EngineError::InvalidParam(format!("layer {layer} has no KV cache on this backend"))),
        }
    }
}
