//! Plain-Rust reference ops: the specification that the CPU fast path and the
//! WGSL kernels are tested against. Written for clarity, not speed.

/// RMSNorm of one row: `out[i] = x[i] / sqrt(mean(x²) + eps) * weight[i]`.
///
/// ```
/// let mut out = [0.0; 2];
/// infer_kernels::ops::rmsnorm_ref(&[3.0, 4.0], &[1.0, 1.0], 0.0, &mut out);
/// assert!((out[0] - 3.0 / 12.5f32.sqrt()).abs() < 1e-6);
/// ```
pub fn rmsnorm_ref(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let ss: f32 = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let inv = 1.0 / (ss + eps).sqrt();
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * inv * w;
    }
}

/// The rotation angle step of RoPE: `theta_i = pos * base^(-2i / n_rot)`.
/// Computed as llama.cpp does (repeated multiplication in f32) so the angles
/// round the same way.
pub fn rope_thetas(pos: usize, n_rot: usize, base: f32, out: &mut [f32]) {
    let theta_scale = base.powf(-2.0 / n_rot as f32);
    let mut theta = pos as f32;
    for t in out.iter_mut().take(n_rot / 2) {
        *t = theta;
        theta *= theta_scale;
    }
}

/// RoPE on one token's heads, in place. `x` holds `n_heads * head_dim`
/// values; every head is rotated over its full `head_dim`.
/// `neox = false` rotates adjacent pairs `(x[2i], x[2i+1])` (llama);
/// `neox = true` rotates `(x[i], x[i + head_dim/2])` (gemma, qwen, …).
pub fn rope_ref(x: &mut [f32], head_dim: usize, pos: usize, base: f32, neox: bool) {
    let half = head_dim / 2;
    let mut thetas = vec![0.0f32; half];
    rope_thetas(pos, head_dim, base, &mut thetas);
    for head in x.chunks_exact_mut(head_dim) {
        for (i, &theta) in thetas.iter().enumerate() {
            let (s, c) = theta.sin_cos();
            let (a, b) = if neox { (i, i + half) } else { (2 * i, 2 * i + 1) };
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * c - x1 * s;
            head[b] = x0 * s + x1 * c;
        }
    }
}

/// Scaled, partial RoPE on one token's heads, in place: pair `i` of the
/// first `n_rot` dims of each head turns by
/// `pos · base^(-2i/n_rot) · freq_scale · mult[i]` (`mult` 1 when `None`)
/// with cosine and sine scaled by `mscale`; dims past `n_rot` stay as they
/// are. NEOX pairs are `(i, i + n_rot/2)`.
#[allow(clippy::too_many_arguments)]
pub fn rope_scaled_ref(
    x: &mut [f32],
    head_dim: usize,
    n_rot: usize,
    pos: usize,
    base: f32,
    freq_scale: f32,
    mult: Option<&[f32]>,
    mscale: f32,
    neox: bool,
) {
    let half = n_rot / 2;
    let mut thetas = vec![0.0f32; half];
    rope_thetas(pos, n_rot, base, &mut thetas);
    for (i, t) in thetas.iter_mut().enumerate() {
        *t *= freq_scale * mult.map_or(1.0, |m| m[i]);
    }
    for head in x.chunks_exact_mut(head_dim) {
        for (i, &theta) in thetas.iter().enumerate() {
            let (s, c) = theta.sin_cos();
            let (s, c) = (s * mscale, c * mscale);
            let (a, b) = if neox { (i, i + half) } else { (2 * i, 2 * i + 1) };
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * c - x1 * s;
            head[b] = x0 * s + x1 * c;
        }
    }
}

/// LayerNorm of one row with bias:
/// `out[i] = (x[i] - mean) / sqrt(var + eps) * weight[i] + bias[i]`
/// (the population variance, as BERT and PyTorch compute it).
///
/// ```
/// let mut out = [0.0; 2];
/// infer_kernels::ops::layernorm_ref(&[1.0, 3.0], &[1.0, 1.0], &[0.5, 0.5], 0.0, &mut out);
/// assert_eq!(out, [-0.5, 1.5]);
/// ```
pub fn layernorm_ref(x: &[f32], weight: &[f32], bias: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    for (((o, &v), &w), &b) in out.iter_mut().zip(x).zip(weight).zip(bias) {
        *o = (v - mean) * inv * w + b;
    }
}

/// GELU in its exact form, `x · Φ(x) = x/2 · (1 + erf(x/√2))`, as BERT's
/// `hidden_act: gelu` (the tanh form of [`gelu_tanh`] differs by up to 1e-3).
#[inline]
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_ref(x as f64 * std::f64::consts::FRAC_1_SQRT_2) as f32)
}

/// The error function by its Maclaurin series in f64,
/// `erf(x) = 2/√π · Σ (-1)ⁿ x²ⁿ⁺¹ / (n! (2n+1))`, accurate to 1e-9 for
/// |x| < 4; beyond, erf is ±1 to within 2e-8.
pub fn erf_ref(x: f64) -> f64 {
    if x.abs() >= 4.0 {
        return x.signum();
    }
    let (x2, mut term, mut sum) = (x * x, x, x);
    let mut n = 0.0;
    while term.abs() > 1e-17 * sum.abs().max(1e-300) {
        n += 1.0;
        term *= -x2 / n;
        sum += term / (2.0 * n + 1.0);
    }
    sum * std::f64::consts::FRAC_2_SQRT_PI
}

/// Bidirectional attention over a batch of sequences (an encoder): the
/// batch's rows are cut into `segments` (`(start, len)` row ranges, in
/// order); each query attends to every key of its own segment and to no
/// other. `q`, `out`: `n_heads * head_dim` per row; `k`, `v`:
/// `n_kv_heads * head_dim` per row. Each query is [`attention_ref`] over its
/// segment's keys.
#[allow(clippy::too_many_arguments)]
pub fn attention_segments_ref(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    segments: &[(usize, usize)],
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    scale: f32,
    out: &mut [f32],
) {
    let (q_dim, kv_dim) = (n_heads * head_dim, n_kv_heads * head_dim);
    for &(start, len) in segments {
        let (ks, vs) = (&k[start * kv_dim..(start + len) * kv_dim], &v[start * kv_dim..(start + len) * kv_dim]);
        for t in start..start + len {
            let o = &mut out[t * q_dim..(t + 1) * q_dim];
            attention_ref(&q[t * q_dim..(t + 1) * q_dim], ks, vs, len, n_heads, n_kv_heads, head_dim, scale, o);
        }
    }
}

/// Numerically stable softmax in place.
pub fn softmax_ref(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// SiLU: `x * sigmoid(x)`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GELU, tanh approximation (as ggml's `gelu`).
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + 0.044715 * x * x)).tanh())
}

/// SwiGLU gating: `out = silu(gate) * up`.
pub fn swiglu_ref(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = silu(g) * u;
    }
}

/// GeGLU gating (gemma): `out = gelu_tanh(gate) * up`.
pub fn geglu_ref(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = gelu_tanh(g) * u;
    }
}

/// Residual add: `a += b`.
pub fn add_ref(a: &mut [f32], b: &[f32]) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// Attention for one query over `n_kv` visible positions.
///
/// `q`: `n_heads * head_dim`; `k`, `v`: `n_kv` rows of `n_kv_heads * head_dim`
/// (the keys and values the query may see, oldest first); `out`:
/// `n_heads * head_dim`. Query head `h` reads key/value head
/// `h / (n_heads / n_kv_heads)` (grouped-query attention).
#[allow(clippy::too_many_arguments)]
pub fn attention_ref(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n_kv: usize,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    scale: f32,
    out: &mut [f32],
) {
    let group = n_heads / n_kv_heads;
    let kv_stride = n_kv_heads * head_dim;
    let mut scores = vec![0.0f32; n_kv];
    for h in 0..n_heads {
        let kvh = h / group;
        let qh = &q[h * head_dim..(h + 1) * head_dim];
        for (t, s) in scores.iter_mut().enumerate() {
            let kt = &k[t * kv_stride + kvh * head_dim..][..head_dim];
            *s = qh.iter().zip(kt).map(|(a, b)| a * b).sum::<f32>() * scale;
        }
        softmax_ref(&mut scores);
        let oh = &mut out[h * head_dim..(h + 1) * head_dim];
        oh.fill(0.0);
        for (t, &p) in scores.iter().enumerate() {
            let vt = &v[t * kv_stride + kvh * head_dim..][..head_dim];
            for (o, &x) in oh.iter_mut().zip(vt) {
                *o += p * x;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_preserves_norm_and_is_identity_at_zero() {
        let orig: Vec<f32> = (0..16).map(|i| i as f32 * 0.1 - 0.5).collect();
        for neox in [false, true] {
            let mut x = orig.clone();
            rope_ref(&mut x, 8, 0, 10000.0, neox);
            assert_eq!(x, orig);
            rope_ref(&mut x, 8, 7, 10000.0, neox);
            let n0: f32 = orig.iter().map(|v| v * v).sum();
            let n1: f32 = x.iter().map(|v| v * v).sum();
            assert!((n0 - n1).abs() < 1e-4);
            assert_ne!(x, orig);
        }
    }

    #[test]
    fn attention_with_one_position_returns_its_value() {
        let q = [1.0, 0.0, 0.0, 1.0];
        let k = [0.5, 0.5];
        let v = [2.0, -3.0];
        let mut out = [0.0; 4];
        attention_ref(&q, &k, &v, 1, 2, 1, 2, 1.0, &mut out);
        assert_eq!(out, [2.0, -3.0, 2.0, -3.0]);
    }

    #[test]
    fn softmax_sums_to_one_and_gates_are_right() {
        let mut x = [1.0, 2.0, 3.0, 1000.0];
        softmax_ref(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((silu(0.0)).abs() < 1e-7 && (gelu_tanh(0.0)).abs() < 1e-7);
        assert!((gelu_tanh(3.0) - 2.9963627).abs() < 1e-4);
        // Φ(1) = 0.8413447, Φ(-2) = 0.0227501.
        assert!((erf_ref(0.5) - 0.520_499_877_813_046_5).abs() < 1e-12 && erf_ref(-5.0) == -1.0);
        assert!((gelu_erf(1.0) - 0.8413447).abs() < 1e-6 && (gelu_erf(-2.0) + 0.0455003).abs() < 1e-6);
    }

    #[test]
    fn segments_do_not_see_each_other() {
        // Two one-head segments: [0, 1] and [2]. Row 2 sees only its own value.
        let q = [1.0, 0.0, 1.0];
        let k = [1.0, 1.0, 5.0];
        let v = [2.0, 4.0, -7.0];
        let mut out = [0.0; 3];
        attention_segments_ref(&q, &k, &v, &[(0, 2), (2, 1)], 1, 1, 1, 1.0, &mut out);
        assert_eq!(out, [3.0, 3.0, -7.0]);
    }
}
