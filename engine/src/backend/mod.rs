//! The op-level backend trait that model code is written against.
//!
//! A backend owns the activation buffers of a forward step (named by
//! [`Slot`]) and the KV cache of the layers it runs. Model code calls ops on
//! slots; the offload plan decides which backend runs each layer, and the
//! hidden state crosses between backends only at a boundary
//! ([`Backends::for_layer`]).

pub mod cpu;
pub mod gpu;

use crate::error::Result;
use crate::weights::{WeightId, WeightTable};

/// A named activation buffer. Each holds up to `n_batch` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The residual stream, `dim` per token.
    X,
    /// Normed input of a block, `dim` per token.
    Xn,
    /// Queries, `n_heads * head_dim` per token.
    Q,
    /// New keys, `n_kv_heads * head_dim` per token.
    K,
    /// New values, `n_kv_heads * head_dim` per token.
    V,
    /// Attention output, `n_heads * head_dim` per token.
    Att,
    /// Block output before the residual add, `dim` per token.
    Out,
    /// Feed-forward gate, `ffn_dim` per token.
    Gate,
    /// Feed-forward up projection, `ffn_dim` per token.
    Up,
    /// Output logits, `vocab` per token.
    Logits,
}

impl Slot {
    pub const ALL: [Slot; 10] =
        [Slot::X, Slot::Xn, Slot::Q, Slot::K, Slot::V, Slot::Att, Slot::Out, Slot::Gate, Slot::Up, Slot::Logits];
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Per-token buffer widths, used to size slots.
#[derive(Debug, Clone, Copy)]
pub struct SlotWidths {
    pub dim: usize,
    pub q_dim: usize,
    pub kv_dim: usize,
    pub ffn_dim: usize,
    pub vocab: usize,
}

impl SlotWidths {
    pub fn width(&self, s: Slot) -> usize {
        match s {
            Slot::X | Slot::Xn | Slot::Out => self.dim,
            Slot::Q | Slot::Att => self.q_dim,
            Slot::K | Slot::V => self.kv_dim,
            Slot::Gate | Slot::Up => self.ffn_dim,
            Slot::Logits => self.vocab,
        }
    }
}

/// Consecutive tokens of one sequence in a step's batch, at consecutive
/// positions: rows `start..start + len` of the batch at positions
/// `pos0..pos0 + len` of sequence `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub seq: usize,
    pub pos0: usize,
    pub start: usize,
    pub len: usize,
}

impl Segment {
    /// Each batch row's `(sequence, position)`.
    pub fn rows(segs: &[Segment]) -> impl Iterator<Item = (usize, usize)> + '_ {
        segs.iter().flat_map(|s| (0..s.len).map(move |i| (s.seq, s.pos0 + i)))
    }
}

/// Rotary position embedding parameters of one layer. Pair `i` of a head
/// rotates by `pos · base^(-2i/n_rot) · freq_scale · mult[i]`, its cosine and
/// sine scaled by `mscale`; dimensions past `n_rot` are left as they are.
#[derive(Debug, Clone, Copy)]
pub struct RopeParams<'a> {
    pub n_heads: usize,
    pub head_dim: usize,
    /// Rotated dimensions (≤ head_dim, even).
    pub n_rot: usize,
    pub base: f32,
    /// Linear position scaling (1.0 = none).
    pub freq_scale: f32,
    /// NEOX ordering (rotate `i` with `i + n_rot/2`) instead of adjacent pairs.
    pub neox: bool,
    /// Per-pair frequency multipliers (`n_rot / 2`), e.g. llama3's `rope_freqs`.
    pub mult: Option<&'a [f32]>,
    /// Magnitude of cosine and sine (YaRN attention factor; 1.0 = none).
    pub mscale: f32,
}

impl RopeParams<'_> {
    /// Whether `self` and `o` rotate a pair at a position the same way.
    pub fn same_rotation(&self, o: &RopeParams) -> bool {
        let same_mult = match (self.mult, o.mult) {
            (None, None) => true,
            (Some(a), Some(b)) => std::ptr::eq(a, b) || a == b,
            _ => false,
        };
        self.head_dim == o.head_dim
            && self.n_rot == o.n_rot
            && self.base == o.base
            && self.freq_scale == o.freq_scale
            && self.neox == o.neox
            && self.mscale == o.mscale
            && same_mult
    }
}

/// Attention parameters of one layer.
#[derive(Debug, Clone, Copy)]
pub struct AttnParams {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
    /// Sliding window: a query at position p sees keys in `p-window+1..=p`; 0 = all.
    pub window: usize,
}

/// Kinds of op, for asking a backend whether it runs them on a weight type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A matmul (or an expert's) on a quantized matrix.
    Matmul,
    /// A norm, bias or factor vector read as f32.
    Vector,
}

/// The gating activation of a feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `silu(gate) * up` (llama).
    SwiGlu,
    /// `gelu_tanh(gate) * up` (gemma).
    GeGlu,
}

/// The three matrices of one MoE expert (views of the 3-D expert tensors).
#[derive(Debug, Clone, Copy)]
pub struct ExpertWeights {
    pub gate: WeightId,
    pub up: WeightId,
    pub down: WeightId,
}

/// The weights of one MoE feed-forward.
#[derive(Debug, Clone, Copy)]
pub struct MoeWeights<'a> {
    /// `[n_experts, dim]`: one row of router weights per expert.
    pub router: WeightId,
    pub experts: &'a [ExpertWeights],
}

/// How an MoE feed-forward routes and gates.
#[derive(Debug, Clone, Copy)]
pub struct MoeParams {
    /// Experts per token (top-k of the router's softmax).
    pub n_used: usize,
    /// Renormalise the selected weights to sum to 1.
    pub renorm: bool,
    pub act: Activation,
    /// Hidden width of one expert.
    pub expert_ffn: usize,
}

/// The tokens routed to each expert, from the router logits (`n_experts`
/// per token): softmax over all experts, each token's top `n_used` by
/// weight (lower index first on ties), optionally renormalised. Returns,
/// per expert, its `(token, weight)` pairs, so each expert's rows are read
/// once for all its tokens: the routing every backend shares.
pub fn route(logits: &[f32], n_experts: usize, p: &MoeParams) -> Vec<Vec<(usize, f32)>> {
    let mut by_expert = vec![Vec::new(); n_experts];
    let mut probs = vec![0.0f32; n_experts];
    let mut order: Vec<usize> = (0..n_experts).collect();
    for (t, row) in logits.chunks(n_experts.max(1)).enumerate() {
        probs.copy_from_slice(row);
        infer_kernels::ops::softmax_ref(&mut probs);
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        let chosen = &order[..p.n_used.min(n_experts)];
        let sum: f32 = chosen.iter().map(|&e| probs[e]).sum();
        for &e in chosen {
            let w = if p.renorm && sum > 0.0 { probs[e] / sum } else { probs[e] };
            by_expert[e].push((t, w));
        }
    }
    by_expert
}

/// A hook that sees named intermediates (`"{layer}.{stage}"`), one row per token.
pub type Hook = dyn FnMut(&str, &[f32]) + Send;

/// The ops a forward pass needs. Ops act on the current batch of `n_tokens`
/// tokens, made of segments of sequences (each with its own positions and
/// KV cache region), set by [`Backend::begin`].
pub trait Backend: Send {
    /// A short name for messages (`cpu`, `gpu (…)`).
    fn name(&self) -> String;
    /// Starts a batch of `n_tokens` rows in `segments` (which cover them in order).
    fn begin(&mut self, n_tokens: usize, segments: &[Segment]) -> Result<()>;
    /// Number of tokens in the current batch.
    fn n_tokens(&self) -> usize;
    /// Copies host values into `dst` (`n_tokens * width` values).
    fn load(&mut self, dst: Slot, host: &[f32]) -> Result<()>;
    /// Copies `src` to the host (`host.len()` values), finishing pending work.
    fn read(&mut self, src: Slot, host: &mut [f32]) -> Result<()>;
    /// Keeps only rows `rows` (increasing) of `slot`, moved to the front,
    /// and makes the batch that many tokens long (before the output head).
    fn keep_rows(&mut self, slot: Slot, width: usize, rows: &[usize]) -> Result<()>;
    /// `out = x · Wᵀ` for every token: `x` has `W.cols`, `out` gets `W.rows` values per token.
    fn matmul(&mut self, w: WeightId, x: Slot, out: Slot) -> Result<()>;
    /// Several products on the same input (q/k/v, gate/up): `out_i = x · W_iᵀ`.
    /// Backends that can share work across them (one quantization of `x`,
    /// one parallel pass) override this.
    fn matmul_multi(&mut self, ws: &[(WeightId, Slot)], x: Slot) -> Result<()> {
        for &(w, out) in ws {
            self.matmul(w, x, out)?;
        }
        Ok(())
    }
    /// [`Backend::matmul_multi`] plus, where given, a bias per output
    /// (`(bias, width)`, as [`Backend::add_bias`]): `out_i = x · W_iᵀ + b_i`
    /// (qwen2's q/k/v). A GPU adds them in the fused product's epilogue.
    fn matmul_multi_bias(&mut self, ws: &[(WeightId, Slot)], biases: &[Option<(WeightId, usize)>], x: Slot) -> Result<()> {
        self.matmul_multi(ws, x)?;
        add_biases(self, ws, biases)
    }
    /// The gated feed-forward input: `gate_out = act(x · Gateᵀ) * (x · Upᵀ)`,
    /// `width` values per token (`up_out` may be used on the way). A GPU
    /// runs gate|up as one product with the activation as its epilogue.
    #[allow(clippy::too_many_arguments)]
    fn matmul_gated(
        &mut self,
        gate: WeightId,
        up: WeightId,
        x: Slot,
        (gate_out, up_out): (Slot, Slot),
        act: Activation,
        width: usize,
    ) -> Result<()> {
        self.matmul_multi(&[(gate, gate_out), (up, up_out)], x)?;
        self.gated(gate_out, up_out, act, width)
    }
    /// `dst += x · Wᵀ` (`width` values per token) through `scratch`, which
    /// a GPU does not need: the residual add is its product's epilogue.
    fn matmul_add(&mut self, w: WeightId, x: Slot, dst: Slot, scratch: Slot, width: usize) -> Result<()> {
        self.matmul(w, x, scratch)?;
        self.add(dst, scratch, width)
    }
    /// RMSNorm of `x` into `out` over rows of `dim` values (`width / dim` rows per token).
    fn rmsnorm(&mut self, x: Slot, w: WeightId, out: Slot, width: usize, dim: usize, eps: f32) -> Result<()>;
    /// The output norm and the head: `out = rmsnorm(x) · Wᵀ` over rows of
    /// `dim` (`norm` the norm weight, `w` the head), the normed rows in `xn`
    /// on the way. A GPU fuses the norm into the head's matvec for one
    /// token (`xn` is then left as it was).
    #[allow(clippy::too_many_arguments)]
    fn rmsnorm_matmul(&mut self, x: Slot, norm: WeightId, w: WeightId, (xn, out): (Slot, Slot), dim: usize, eps: f32) -> Result<()> {
        self.rmsnorm(x, norm, xn, dim, dim, eps)?;
        self.matmul(w, xn, out)
    }
    /// RoPE in place on `x` (`n_heads * head_dim` per token).
    fn rope(&mut self, x: Slot, p: &RopeParams) -> Result<()>;
    /// `x[t] += bias` for every token (`width` values, the bias's length).
    fn add_bias(&mut self, x: Slot, bias: WeightId, width: usize) -> Result<()>;
    /// A mixture-of-experts feed-forward of `x` (`dim` per token) into
    /// `out`: route each token ([`route`]), run its experts'
    /// `down(act(gate(x)) * up(x))`, sum them by weight. Multiplies only the
    /// selected experts' rows, each expert once for all its tokens.
    fn moe_ffn(&mut self, x: Slot, out: Slot, w: &MoeWeights, p: &MoeParams) -> Result<()>;
    /// RoPE on queries and keys (the same rotation, their own head counts).
    /// A GPU does both in one dispatch.
    fn rope_qk(&mut self, q: Slot, k: Slot, pq: &RopeParams, pk: &RopeParams) -> Result<()> {
        self.rope(q, pq)?;
        self.rope(k, pk)
    }
    /// Stores `k`, `v` in layer `layer`'s cache at the batch positions, then
    /// attends each query (causal, windowed) into `out`.
    fn attention(&mut self, layer: usize, q: Slot, k: Slot, v: Slot, out: Slot, p: &AttnParams) -> Result<()>;
    /// [`Backend::rope_qk`] then [`Backend::attention`]; `q` and `k` hold
    /// the rotated values after. A GPU rotates the keys as it stores them.
    #[allow(clippy::too_many_arguments)]
    fn rope_attention(
        &mut self,
        layer: usize,
        (q, k, v): (Slot, Slot, Slot),
        out: Slot,
        pq: &RopeParams,
        pk: &RopeParams,
        p: &AttnParams,
    ) -> Result<()> {
        self.rope_qk(q, k, pq, pk)?;
        self.attention(layer, q, k, v, out, p)
    }
    /// `gate = act(gate) * up` over `width` values per token.
    fn gated(&mut self, gate: Slot, up: Slot, act: Activation, width: usize) -> Result<()>;
    /// `dst += src` over `width` values per token.
    fn add(&mut self, dst: Slot, src: Slot, width: usize) -> Result<()>;
    /// The residual add and the next norm: `x += src`, then
    /// `out = rmsnorm(x)` over rows of `dim` (`dim` values per token).
    /// A GPU does both in one dispatch.
    fn add_rmsnorm(&mut self, x: Slot, src: Slot, w: WeightId, out: Slot, dim: usize, eps: f32) -> Result<()> {
        self.add(x, src, dim)?;
        self.rmsnorm(x, w, out, dim, dim, eps)
    }
    /// `x *= s` over `width` values per token.
    fn scale(&mut self, x: Slot, s: f32, width: usize) -> Result<()>;
    /// LayerNorm with bias of `x`, in place, `dim` values per token:
    /// `(x - mean) / sqrt(var + eps) * w + b` (encoders).
    fn layernorm(&mut self, x: Slot, w: WeightId, b: WeightId, dim: usize, eps: f32) -> Result<()> {
        let _ = (x, w, b, dim, eps);
        Err(no_op(self.name(), "layernorm"))
    }
    /// Bidirectional attention of an encoder: each query sees every key of
    /// its own segment of the batch, none of another's; no KV cache.
    fn attention_full(&mut self, q: Slot, k: Slot, v: Slot, out: Slot, p: &AttnParams) -> Result<()> {
        let _ = (q, k, v, out, p);
        Err(no_op(self.name(), "attention_full"))
    }
    /// `x = gelu(x)` (the exact, erf form) over `width` values per token.
    fn gelu(&mut self, x: Slot, width: usize) -> Result<()> {
        let _ = (x, width);
        Err(no_op(self.name(), "gelu"))
    }
    /// For every token, the index of the largest of its `width` values of
    /// `src` (the lowest index on ties) into `out`. The default reads `src`
    /// back; a GPU backend picks on the device and reads back only the ids.
    fn argmax(&mut self, src: Slot, width: usize, out: &mut Vec<u32>) -> Result<()> {
        argmax_on_host(self, src, width, out)
    }
    /// Forgets cached positions `from..` of every layer.
    fn truncate_cache(&mut self, from: usize);
    /// Copies positions `0..n` of sequence `src`'s cache to sequence `dst`
    /// in every layer this backend holds (a forked prefix).
    fn copy_seq(&mut self, src: usize, dst: usize, n: usize) -> Result<()>;
    /// Shows `slot` to the hook under `name` when a hook is set (tests, `infer verify`).
    fn record(&mut self, name: &str, slot: Slot, width: usize, hook: &mut Option<Box<Hook>>) -> Result<()> {
        if let Some(h) = hook.as_mut() {
            let mut host = vec![0.0; self.n_tokens() * width];
            self.read(slot, &mut host)?;
            h(name, &host);
        }
        Ok(())
    }
}

/// The error of an op a backend does not run.
fn no_op(backend: String, op: &str) -> crate::error::EngineError {
    crate::error::EngineError::InvalidParam(format!("the {backend} backend has no {op} op (encoder models run on the CPU)"))
}

/// [`Backend::argmax`] by reading `src` back: the spec every backend matches.
pub fn argmax_on_host<B: Backend + ?Sized>(b: &mut B, src: Slot, width: usize, out: &mut Vec<u32>) -> Result<()> {
    let mut host = vec![0.0; b.n_tokens() * width];
    b.read(src, &mut host)?;
    out.clear();
    out.extend(host.chunks(width.max(1)).map(crate::sampler::argmax_row));
    Ok(())
}

/// The backends of one session and the layer → backend plan.
pub struct Backends {
    pub list: Vec<Box<dyn Backend>>,
    /// `plan[l]` = index in `list` of the backend running layer `l`;
    /// `plan[n_layers]` runs the output head.
    pub plan: Vec<usize>,
    /// `moe_plan[l]` = the backend running layer `l`'s experts (the CPU
    /// when `--cpu-moe` keeps them there); empty = the layer's backend.
    pub moe_plan: Vec<usize>,
    current: usize,
    host: Vec<f32>,
    /// The batch's embeddings, reused from step to step.
    embed: Vec<f32>,
    pub hook: Option<Box<Hook>>,
}

impl Backends {
    pub fn new(list: Vec<Box<dyn Backend>>, plan: Vec<usize>) -> Self {
        Backends { list, plan, moe_plan: Vec::new(), current: 0, host: Vec::new(), embed: Vec::new(), hook: None }
    }

    /// Starts a batch on every backend: looks up the embedding rows of
    /// `tokens` (on the CPU, from the mmap), multiplies them by `scale`, and
    /// loads them into the backend of layer 0.
    pub fn begin(&mut self, table: &WeightTable, w: WeightId, tokens: &[u32], segs: &[Segment], scale: f32) -> Result<()> {
        let mut embed = std::mem::take(&mut self.embed);
        table.embed_rows(w, tokens, scale, &mut embed)?;
        let r = self.begin_embedded(&embed, tokens.len(), segs);
        self.embed = embed;
        r
    }

    /// Starts a batch of `n_tokens` rows whose input `x` the caller computed
    /// (an encoder adds position and token-type embeddings), loaded into the
    /// backend of layer 0.
    pub fn begin_embedded(&mut self, x: &[f32], n_tokens: usize, segs: &[Segment]) -> Result<()> {
        for b in self.list.iter_mut() {
            b.begin(n_tokens, segs)?;
        }
        self.current = self.plan[0];
        self.list[self.current].load(Slot::X, x)
    }

    /// The backend for `layer` (`n_layers` = the output head); moves the
    /// residual stream `X` (`width` per token) across when the backend changes.
    pub fn for_layer(&mut self, layer: usize, width: usize) -> Result<Active<'_>> {
        let next = self.plan[layer];
        if next != self.current {
            move_slot(&mut self.list, &mut self.host, self.current, next, Slot::X, width)?;
            self.current = next;
        }
        let moe = self.moe_plan.get(layer).copied().unwrap_or(next);
        Ok(Active { list: &mut self.list, cur: next, moe, host: &mut self.host, hook: &mut self.hook })
    }

    pub fn truncate_cache(&mut self, from: usize) {
        for b in self.list.iter_mut() {
            b.truncate_cache(from);
        }
    }

    /// Copies positions `0..n` of sequence `src` to sequence `dst` on every backend.
    pub fn copy_seq(&mut self, src: usize, dst: usize, n: usize) -> Result<()> {
        for b in self.list.iter_mut() {
            b.copy_seq(src, dst, n)?;
        }
        Ok(())
    }
}

/// Copies `slot` (`width` per token) from backend `from` to backend `to`.
fn move_slot(
    list: &mut [Box<dyn Backend>],
    host: &mut Vec<f32>,
    from: usize,
    to: usize,
    slot: Slot,
    width: usize,
) -> Result<()> {
    let n = list[from].n_tokens() * width;
    host.resize(n, 0.0);
    list[from].read(slot, host)?;
    list[to].load(slot, host)
}

/// The biases of [`Backend::matmul_multi_bias`] added one by one, each
/// after its product.
pub(crate) fn add_biases<B: Backend + ?Sized>(b: &mut B, ws: &[(WeightId, Slot)], biases: &[Option<(WeightId, usize)>]) -> Result<()> {
    for (&(_, slot), bias) in ws.iter().zip(biases) {
        if let Some((bias, width)) = *bias {
            b.add_bias(slot, bias, width)?;
        }
    }
    Ok(())
}

/// The backend running the current layer, with the session's hook.
pub struct Active<'a> {
    list: &'a mut [Box<dyn Backend>],
    cur: usize,
    /// The backend of this layer's experts.
    moe: usize,
    host: &'a mut Vec<f32>,
    hook: &'a mut Option<Box<Hook>>,
}

impl Active<'_> {
    /// Shows `slot` to the hook as `"{layer}.{stage}"`; free when no hook is set.
    pub fn record(&mut self, layer: usize, stage: &str, slot: Slot, width: usize) -> Result<()> {
        if self.hook.is_some() {
            self.list[self.cur].record(&format!("{layer}.{stage}"), slot, width, self.hook)?;
        }
        Ok(())
    }

    /// [`Backend::moe_ffn`] on the backend that holds the layer's experts:
    /// `x` (`dim` per token) goes there and `out` comes back when that is
    /// not the layer's backend (`--cpu-moe`).
    pub fn moe_ffn(&mut self, x: Slot, out: Slot, dim: usize, w: &MoeWeights, p: &MoeParams) -> Result<()> {
        if self.moe == self.cur {
            return self.list[self.cur].moe_ffn(x, out, w, p);
        }
        move_slot(self.list, self.host, self.cur, self.moe, x, dim)?;
        self.list[self.moe].moe_ffn(x, out, w, p)?;
        move_slot(self.list, self.host, self.moe, self.cur, out, dim)
    }
}

impl std::ops::Deref for Active<'_> {
    type Target = dyn Backend + 'static;
    fn deref(&self) -> &Self::Target {
        &*self.list[self.cur]
    }
}

impl std::ops::DerefMut for Active<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut *self.list[self.cur]
    }
}
