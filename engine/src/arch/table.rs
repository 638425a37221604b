//! Tensor tables: what each architecture reads from a file, by role.
//!
//! An architecture lists its tensors once ([`TensorSpec`]: name, role, shape
//! rule, whether it may be absent or is tied to another); the loader here
//! registers them in the [`WeightTable`], splits fused tensors into the
//! matrices the forward pass uses, and the offload plan reads the same
//! [`LayerWeights`] to know what a layer holds. No second list exists.

use super::ModelConfig;
pub use crate::backend::ExpertWeights;
use crate::error::{EngineError, Result};
use crate::weights::{WeightId, WeightTable};

/// What a tensor is for. Model-wide roles come first, then per-layer ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    TokenEmbd,
    OutputNorm,
    /// The output head (tied to `TokenEmbd` when absent).
    Output,
    /// llama3-style per-pair RoPE frequency divisors.
    RopeFreqs,
    /// Phi-3 LongRoPE divisors, used past the original context.
    RopeFactorsLong,
    RopeFactorsShort,
    /// Encoders: learned position embeddings, one row per position.
    PosEmbd,
    /// Encoders: token-type (segment) embeddings.
    TokenTypes,
    /// Encoders: the LayerNorm of the summed embeddings, weight and bias.
    TokenEmbdNorm,
    TokenEmbdNormB,
    AttnNorm,
    Wq,
    Wk,
    Wv,
    /// Fused `q | k | v` rows; split into `Wq`, `Wk`, `Wv` at load.
    Wqkv,
    Bq,
    Bk,
    Bv,
    Wo,
    /// Per-head RMSNorm of queries and keys (over `head_dim`).
    QNorm,
    KNorm,
    PostAttnNorm,
    FfnNorm,
    Gate,
    Up,
    /// Fused `gate | up` rows; split into `Gate` and `Up` at load.
    GateUp,
    Down,
    PostFfnNorm,
    /// Encoders (post-norm): attention output bias, the LayerNorm after the
    /// attention residual, FFN biases, the LayerNorm after the FFN residual.
    Bo,
    AttnOutNorm,
    AttnOutNormB,
    UpB,
    DownB,
    LayerOutNorm,
    LayerOutNormB,
    /// MoE router: one row of logits weights per expert.
    Router,
    /// 3-D expert tensors `[cols, rows, n_experts]`, split per expert at load.
    GateExps,
    UpExps,
    DownExps,
}

/// Number of [`Role`]s.
pub const N_ROLES: usize = Role::DownExps as usize + 1;

impl Role {
    /// Whether the tensor is one per layer (`blk.{l}.…`).
    pub fn per_layer(self) -> bool {
        self as usize >= Role::AttnNorm as usize
    }
    /// Whether the tensor is a vector (norm weight, bias, RoPE factors)
    /// rather than a matrix a matmul reads.
    pub fn is_vector(self) -> bool {
        use Role::*;
        matches!(
            self,
            OutputNorm
                | RopeFreqs
                | RopeFactorsLong
                | RopeFactorsShort
                | AttnNorm
                | Bq
                | Bk
                | Bv
                | QNorm
                | KNorm
                | PostAttnNorm
                | FfnNorm
                | PostFfnNorm
                | TokenEmbdNorm
                | TokenEmbdNormB
                | Bo
                | AttnOutNorm
                | AttnOutNormB
                | UpB
                | DownB
                | LayerOutNorm
                | LayerOutNormB
        )
    }
    /// Whether the tensor is an MoE expert tensor.
    pub fn is_expert(self) -> bool {
        matches!(self, Role::GateExps | Role::UpExps | Role::DownExps)
    }
}

/// A size in a shape rule, resolved against the [`ModelConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// Residual width.
    Model,
    /// `n_heads * head_dim`.
    Q,
    /// `n_kv_heads * head_dim`.
    Kv,
    /// `q + 2 kv` (fused qkv).
    Qkv,
    Ffn,
    /// `2 ffn` (fused gate|up).
    Ffn2,
    Vocab,
    Head,
    /// Rotated pairs per head (`n_rot / 2`).
    RopePairs,
    Experts,
    ExpertFfn,
    /// Trained context length (an encoder's position table).
    Ctx,
    /// BERT's two token types (sentence A and B).
    TypeVocab,
}

impl Dim {
    fn size(self, c: &ModelConfig) -> u64 {
        let moe = c.moe.as_ref();
        (match self {
            Dim::Model => c.dim,
            Dim::Q => c.q_dim(),
            Dim::Kv => c.kv_dim(),
            Dim::Qkv => c.q_dim() + 2 * c.kv_dim(),
            Dim::Ffn => c.ffn_dim,
            Dim::Ffn2 => 2 * c.ffn_dim,
            Dim::Vocab => c.vocab,
            Dim::Head => c.head_dim,
            Dim::RopePairs => c.rope.n_rot / 2,
            Dim::Experts => moe.map_or(0, |m| m.n_experts),
            Dim::ExpertFfn => moe.map_or(0, |m| m.expert_ffn),
            Dim::Ctx => c.n_ctx_train,
            Dim::TypeVocab => 2,
        }) as u64
    }
}

/// Whether a tensor must be in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Required,
    Optional,
    /// Absent means: use this role's tensor (a tied output head).
    TiedTo(Role),
}

/// One row of an architecture's tensor table.
#[derive(Debug, Clone, Copy)]
pub struct TensorSpec {
    pub role: Role,
    /// The GGUF name; per-layer names omit the `blk.{l}.` prefix.
    pub name: &'static str,
    /// Shape in ggml order (`ne0` first).
    pub shape: &'static [Dim],
    pub need: Need,
}

impl TensorSpec {
    /// The tensor's shape (ggml order) for config `c`.
    pub fn shape(&self, c: &ModelConfig) -> Vec<u64> {
        self.shape.iter().map(|d| d.size(c)).collect()
    }
}

/// Shorthand for table rows.
pub const fn t(role: Role, name: &'static str, shape: &'static [Dim], need: Need) -> TensorSpec {
    TensorSpec { role, name, shape, need }
}

/// The weights of one scope (the whole model, or one transformer block),
/// by role; MoE experts split out per expert.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    /// The layer's index (`None` for the model-wide scope), for messages.
    pub layer: Option<usize>,
    ids: [Option<WeightId>; N_ROLES],
    pub experts: Vec<ExpertWeights>,
}

impl LayerWeights {
    fn new(layer: Option<usize>) -> Self {
        LayerWeights { layer, ids: [None; N_ROLES], experts: Vec::new() }
    }
    /// The tensor of `role`, when the file has it.
    pub fn get(&self, role: Role) -> Option<WeightId> {
        self.ids[role as usize]
    }
    /// The tensor of `role`; an error naming the role and layer when absent
    /// (the table marks it required, so this only fails on a table bug).
    pub fn req(&self, role: Role) -> Result<WeightId> {
        self.get(role).ok_or_else(|| {
            let at = self.layer.map_or("the model".to_string(), |l| format!("layer {l}"));
            EngineError::InvalidParam(format!("{at} has no {role:?} tensor"))
        })
    }
    /// Every tensor of the scope with its role: vectors and matrices, the
    /// experts' matrices included (as `GateExps`/`UpExps`/`DownExps`).
    pub fn all(&self) -> Vec<(Role, WeightId)> {
        let mut v: Vec<(Role, WeightId)> =
            ROLES.iter().filter_map(|&r| self.ids[r as usize].map(|id| (r, id))).collect();
        for e in &self.experts {
            v.extend([(Role::GateExps, e.gate), (Role::UpExps, e.up), (Role::DownExps, e.down)]);
        }
        v
    }
    fn set(&mut self, role: Role, id: WeightId) {
        self.ids[role as usize] = Some(id);
    }
}

const ROLES: [Role; N_ROLES] = {
    use Role::*;
    [
        TokenEmbd, OutputNorm, Output, RopeFreqs, RopeFactorsLong, RopeFactorsShort, PosEmbd, TokenTypes, TokenEmbdNorm,
        TokenEmbdNormB, AttnNorm, Wq, Wk, Wv, Wqkv, Bq, Bk, Bv, Wo, QNorm, KNorm, PostAttnNorm, FfnNorm, Gate, Up, GateUp,
        Down, PostFfnNorm, Bo, AttnOutNorm, AttnOutNormB, UpB, DownB, LayerOutNorm, LayerOutNormB, Router, GateExps,
        UpExps, DownExps,
    ]
};

/// All weights of a model.
#[derive(Debug, Clone)]
pub struct ModelWeights {
    /// Model-wide tensors: embeddings, output norm and head, RoPE factors.
    pub global: LayerWeights,
    pub layers: Vec<LayerWeights>,
    pub token_embd: WeightId,
    pub output_norm: WeightId,
    /// The output head; `token_embd` when the file has no `output.weight` (tied).
    pub output: WeightId,
}

impl ModelWeights {
    /// The tensors of layer `l` (`n_layers` = the output head and what it
    /// reads), as the offload plan places them.
    pub fn layer_tensors(&self, l: usize) -> Vec<(Role, WeightId)> {
        match self.layers.get(l) {
            Some(lw) => lw.all(),
            None => vec![(Role::OutputNorm, self.output_norm), (Role::Output, self.output)],
        }
    }
}

/// Registers the tensors of `table` for config `c`: checks every shape,
/// splits fused and expert tensors, resolves tied ones.
pub fn load(arch: &str, table: &[TensorSpec], c: &ModelConfig, w: &mut WeightTable) -> Result<ModelWeights> {
    let mut global = LayerWeights::new(None);
    for spec in table.iter().filter(|s| !s.role.per_layer()) {
        register(arch, spec, spec.name.to_string(), c, w, &mut global)?;
    }
    for spec in table.iter().filter(|s| !s.role.per_layer()) {
        if let (Need::TiedTo(to), None) = (spec.need, global.get(spec.role)) {
            let id = global.req(to)?;
            global.set(spec.role, id);
        }
    }
    let mut layers = Vec::with_capacity(c.n_layers);
    for l in 0..c.n_layers {
        let mut lw = LayerWeights::new(Some(l));
        for spec in table.iter().filter(|s| s.role.per_layer()) {
            register(arch, spec, format!("blk.{l}.{}", spec.name), c, w, &mut lw)?;
        }
        layers.push(lw);
    }
    Ok(ModelWeights {
        token_embd: global.req(Role::TokenEmbd)?,
        output_norm: global.req(Role::OutputNorm)?,
        output: global.req(Role::Output)?,
        global,
        layers,
    })
}

fn register(
    arch: &str,
    spec: &TensorSpec,
    name: String,
    c: &ModelConfig,
    w: &mut WeightTable,
    into: &mut LayerWeights,
) -> Result<()> {
    let shape: Vec<u64> = spec.shape.iter().map(|d| d.size(c)).collect();
    let id = match spec.need {
        Need::Required => Some(w.require(arch, &name, &shape)?),
        Need::Optional | Need::TiedTo(_) => w.optional(&name, &shape)?,
    };
    let Some(id) = id else { return Ok(()) };
    let (q, kv, f) = (c.q_dim(), c.kv_dim(), c.ffn_dim);
    match spec.role {
        Role::Wqkv => {
            into.set(Role::Wq, w.view(id, 0, q, format!("{name}[q]"))?);
            into.set(Role::Wk, w.view(id, q, kv, format!("{name}[k]"))?);
            into.set(Role::Wv, w.view(id, q + kv, kv, format!("{name}[v]"))?);
        }
        Role::GateUp => {
            into.set(Role::Gate, w.view(id, 0, f, format!("{name}[gate]"))?);
            into.set(Role::Up, w.view(id, f, f, format!("{name}[up]"))?);
        }
        r if r.is_expert() => {
            let moe = c.moe.as_ref().ok_or_else(|| EngineError::Config {
                path: w.gguf().path().display().to_string(),
                detail: format!("tensor \"{name}\" holds experts but the model has no expert count"),
            })?;
            let rows = w.info(id).rows / moe.n_experts;
            if into.experts.is_empty() {
                into.experts = vec![ExpertWeights { gate: id, up: id, down: id }; moe.n_experts];
            }
            for (e, ex) in into.experts.iter_mut().enumerate() {
                let v = w.view(id, e * rows, rows, format!("{name}[{e}]"))?;
                match r {
                    Role::GateExps => ex.gate = v,
                    Role::UpExps => ex.up = v,
                    _ => ex.down = v,
                }
            }
        }
        r => into.set(r, id),
    }
    Ok(())
}
