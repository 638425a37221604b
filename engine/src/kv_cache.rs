//! The KV cache of the layers a backend runs, preallocated for the context.

use crate::error::{EngineError, Result};

/// Keys and values of every cached position, per layer: `n_ctx` rows of
/// `kv_dim` f32 each. Layers that another backend runs hold nothing.
pub struct KvCache {
    n_ctx: usize,
    kv_dim: usize,
    layers: Vec<Option<(Vec<f32>, Vec<f32>)>>,
}

impl KvCache {
    /// A cache for the layers where `held[l]` is true.
    pub fn new(n_ctx: usize, kv_dim: usize, held: &[bool]) -> Self {
        let layers = held
            .iter()
            .map(|&h| h.then(|| (vec![0.0; n_ctx * kv_dim], vec![0.0; n_ctx * kv_dim])))
            .collect();
        KvCache { n_ctx, kv_dim, layers }
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    pub fn kv_dim(&self) -> usize {
        self.kv_dim
    }

    /// Bytes held by this cache.
    pub fn bytes(&self) -> usize {
        self.layers.iter().flatten().map(|(k, v)| (k.len() + v.len()) * 4).sum()
    }

    fn missing(layer: usize) -> EngineError {
        EngineError::InvalidParam(format!("layer {layer} has no KV cache on this backend"))
    }

    pub fn layer(&self, layer: usize) -> Result<(&[f32], &[f32])> {
        match self.layers.get(layer) {
            Some(Some((k, v))) => Ok((k, v)),
            _ => Err(Self::missing(layer)),
        }
    }

    pub fn layer_mut(&mut self, layer: usize) -> Result<(&mut [f32], &mut [f32])> {
        match self.layers.get_mut(layer) {
            Some(Some((k, v))) => Ok((k, v)),
            _ => Err(Self::missing(layer)),
        }
    }
}
