//! Folder → GGUF (`infer convert`): llama.cpp's tensor names, metadata keys
//! and tokenizer arrays, the tensors written one row at a time (F16, Q8_0
//! or Q4_0 for matrices, F32 for vectors, as llama.cpp's converter does).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use infer_gguf::{GgufWriter, QuantType, Value};

use super::{vocab, Folder};
use crate::error::{EngineError, Result};
use crate::weights::{ByteSource, ExternalTensor};

/// What a conversion wrote.
#[derive(Debug, Clone)]
pub struct ConvertReport {
    pub arch: &'static str,
    pub n_tensors: usize,
    pub n_metadata: usize,
}

/// Matrices llama.cpp's converter keeps in F32 whatever the type asked:
/// its CPU backend adds position and token-type rows only as F32, and the
/// MoE router stays exact.
const KEPT_F32: &[&str] = &["position_embd.weight", "token_types.weight", "ffn_gate_inp.weight"];

/// llama.cpp's `general.file_type` for a conversion to `ty`.
fn file_type(ty: QuantType) -> u32 {
    match ty {
        QuantType::F32 => 0,
        QuantType::Q4_0 => 2,
        QuantType::Q8_0 => 7,
        _ => 1,
    }
}

/// The order llama.cpp writes tensors in: globals, then layer by layer.
fn order_key(name: &str) -> (usize, String) {
    match name.strip_prefix("blk.").and_then(|r| r.split_once('.')) {
        Some((n, rest)) => (n.parse::<usize>().map_or(usize::MAX - 1, |n| n + 1), rest.to_string()),
        None if name.starts_with("output") => (usize::MAX, name.to_string()),
        None => (0, name.to_string()),
    }
}

/// Converts the folder at `dir` into a GGUF at `out` whose matrices are
/// `ty` (F16, Q8_0 or Q4_0; a matrix whose rows do not split into blocks
/// stays F16).
pub fn convert(dir: &Path, out: &Path, ty: QuantType) -> Result<ConvertReport> {
    if !matches!(ty, QuantType::F16 | QuantType::F32 | QuantType::Q8_0 | QuantType::Q4_0) {
        return Err(EngineError::InvalidParam(format!("convert writes f32, f16, q8_0 or q4_0, not {ty}")));
    }
    let folder = Folder::open(dir)?;
    let tok = folder.tokenizer()?;
    let mut w = GgufWriter::new();
    for (k, v) in &folder.metadata {
        w.add_metadata(k, v.clone());
    }
    w.add_metadata("general.file_type", Value::U32(file_type(ty)));
    if ty.is_quantized() {
        w.add_metadata("general.quantization_version", Value::U32(2));
    }
    for (k, v) in Folder::tokenizer_keys(&tok) {
        w.add_metadata(&k, v);
    }
    let special: Vec<(&str, Option<String>)> =
        folder.special_tokens.iter().map(|(k, v)| (*k, v.clone())).collect();
    let tok_keys = vocab::tokenizer_metadata(&folder.tokenizer_json, &tok, &special)
        .map_err(|e| super::config::bad(&dir.join("tokenizer.json"), e.to_string()))?;
    for (k, v) in tok_keys {
        w.add_metadata(&k, v);
    }

    let mut names: Vec<&String> = folder.tensors.keys().collect();
    names.sort_by_key(|n| order_key(n));
    let sources: Arc<Vec<ByteSource>> = Arc::new(folder.sources);
    let n_tensors = names.len();
    for name in names {
        let t = folder.tensors[name].clone();
        let matrix = t.dims.len() >= 2;
        let target = match () {
            _ if !matrix || KEPT_F32.iter().any(|k| name.ends_with(k)) => QuantType::F32,
            _ if t.dims[0].is_multiple_of(ty.block_size() as u64) => ty,
            _ => QuantType::F16,
        };
        // llama's q/k rows go from HF's rotate-half order to adjacent pairs.
        let heads = match name.rsplit_once('.').map(|(stem, _)| stem.rsplit('.').next()) {
            _ if folder.arch != "llama" => None,
            Some(Some("attn_q")) => Some(folder.n_heads),
            Some(Some("attn_k")) => Some(folder.n_kv_heads),
            _ => None,
        };
        let rows = t.dims[1..].iter().product::<u64>() as usize;
        let perm = match heads {
            Some(h) => Some(rope_permutation(rows, h).ok_or_else(|| {
                EngineError::Folder { path: t.origin.clone(), detail: format!("{rows} rows do not split into {h} heads of pairs") }
            })?),
            None => None,
        };
        let src = sources.clone();
        let dims = t.dims.clone();
        w.add_tensor_stream(name, target, &dims, move |out| write_rows(&src, &t, target, perm.as_deref(), out))?;
    }
    let n_metadata = folder.metadata.len();
    w.write_to_path(out)?;
    Ok(ConvertReport { arch: folder.arch, n_tensors, n_metadata })
}

/// `perm[r]`: the HF row that becomes row `r`, as llama.cpp's
/// `LlamaModel.permute` (per head, pair `i` of the two halves → rows
/// `2i`, `2i + 1`).
pub fn rope_permutation(rows: usize, n_heads: usize) -> Option<Vec<usize>> {
    if n_heads == 0 || !rows.is_multiple_of(n_heads * 2) {
        return None;
    }
    let hd = rows / n_heads;
    Some((0..rows).map(|r| {
        let (h, j) = (r / hd, r % hd);
        h * hd + (j % 2) * (hd / 2) + j / 2
    }).collect())
}

/// Writes tensor `t` as `target`, row by row (in `perm` order when given).
fn write_rows(
    sources: &[ByteSource],
    t: &ExternalTensor,
    target: QuantType,
    perm: Option<&[usize]>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let cols = t.dims[0] as usize;
    let rows = t.dims[1..].iter().product::<u64>() as usize;
    let bytes = &sources[t.source].bytes()[t.start..t.start + t.n_bytes];
    let row_bytes = t.n_bytes / rows.max(1);
    let mut row = vec![0.0f32; cols];
    let mut buf = Vec::new();
    for r in 0..rows {
        let from = perm.map_or(r, |p| p[r]);
        infer_kernels::dequant::dequantize(t.ty, &bytes[from * row_bytes..(from + 1) * row_bytes], &mut row)
            .map_err(std::io::Error::other)?;
        buf.clear();
        infer_kernels::cpu::quantize_row(target, &row, &mut buf).map_err(std::io::Error::other)?;
        out.write_all(&buf)?;
    }
    Ok(())
}
