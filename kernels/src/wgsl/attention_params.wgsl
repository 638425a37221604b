// The params of the attention kernels (attention.wgsl, attention_tiled.wgsl,
// attention_reduce.wgsl), the twin of `AttnParams` in gpu/ops.rs, at binding 0.
struct AttnParams {
    n_q: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    pos0: u32,
    window: u32,
    n_splits: u32,
    span: u32,
    scale: f32,
    tok0: u32,
    kv_base: u32,
    // attention_tiled.wgsl: heads of a group per workgroup, chunks of a
    // group, query tokens per workgroup.
    hg: u32,
    head_chunks: u32,
    qt: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: AttnParams;
