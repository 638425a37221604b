//! Quantized weights on the GPU: uploaded once, still quantized, re-laid so
//! the shaders read aligned `u32`s, and split by rows into parts that each fit
//! one storage binding.

use super::GpuContext;
use crate::{KernelError, QuantType};

/// Where the bytes of one block go at upload: the byte range copied to the
/// quants region, and the byte offsets of the f16 scales moved to the scales
/// region. Offsets follow the block structs of ggml-common.h (see
/// `infer_gguf::blocks`).
struct Relayout {
    quants: std::ops::Range<usize>,
    halves: &'static [usize],
}

fn relayout(ty: QuantType) -> Option<Relayout> {
    let r = |quants, halves| Some(Relayout { quants, halves });
    match ty {
        // d at 0, qs at 2..18.
        QuantType::Q4_0 => r(2..18, &[0]),
        // d, m at 0 and 2, qs at 4..20.
        QuantType::Q4_1 => r(4..20, &[0, 2]),
        // d at 0, qh at 2..6, qs at 6..22: qh and qs stay together (5 words).
        QuantType::Q5_0 => r(2..22, &[0]),
        // d, m, then qh at 4..8 and qs at 8..24.
        QuantType::Q5_1 => r(4..24, &[0, 2]),
        // d at 0, qs at 2..34.
        QuantType::Q8_0 => r(2..34, &[0]),
        // d at 0, qs at 2..18 (as Q4_0).
        QuantType::IQ4_NL => r(2..18, &[0]),
        // d, scales_h at 0 and 2 (scales_h rides in the scales region as raw
        // bits), scales_l and qs at 4..136.
        QuantType::IQ4_XS => r(4..136, &[0, 2]),
        // scales, qs at 0..80, d, dmin at 80 and 82.
        QuantType::Q2K => r(0..80, &[80, 82]),
        // hmask, qs, scales at 0..108, d at 108.
        QuantType::Q3K => r(0..108, &[108]),
        // Already 4-byte multiples with aligned fields: kept whole.
        QuantType::Q4K => r(0..144, &[]),
        QuantType::Q5K => r(0..176, &[]),
        // ql, qh, scales at 0..208, d at 208.
        QuantType::Q6K => r(0..208, &[208]),
        QuantType::F32 => r(0..4, &[]),
        QuantType::F16 | QuantType::BF16 => r(0..2, &[]),
        _ => None,
    }
}

/// One buffer holding rows `row0..row0 + rows` of a weight.
#[derive(Debug)]
pub(crate) struct WeightPart {
    pub buffer: wgpu::Buffer,
    pub row0: u32,
    pub rows: u32,
    /// Word offset of the scales region in `buffer`.
    pub scale_off: u32,
}

/// A weight matrix of `rows` rows of `cols` values, quantized as in the file.
#[derive(Debug)]
pub struct GpuWeight {
    pub(crate) ty: QuantType,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) parts: Vec<WeightPart>,
}

impl GpuWeight {
    /// Uploads a `rows x cols` tensor of type `ty` (GGUF order: `cols` =
    /// `dims[0]`, the row length). `bytes` must hold exactly `rows * cols`
    /// values of `ty`.
    pub fn upload(
        ctx: &GpuContext,
        ty: QuantType,
        bytes: &[u8],
        rows: usize,
        cols: usize,
    ) -> Result<Self, KernelError> {
        let lay = relayout(ty).ok_or(KernelError::Unsupported(ty, "GPU weights"))?;
        let bs = ty.block_size();
        let bb = ty.block_bytes();
        // Shaders work on quads of 4 values; block types are multiples of 32.
        if cols == 0 || cols % bs != 0 || cols % 4 != 0 {
            return Err(KernelError::Shape {
                op: "gpu weight upload",
                detail: format!(
                    "row length {cols} is not a multiple of 4 and of {ty}'s block size {bs}"
                ),
            });
        }
        let expected = ty.bytes_for(rows as u64 * cols as u64);
        if expected != Some(bytes.len() as u64) {
            return Err(KernelError::Shape {
                op: "gpu weight upload",
                detail: format!(
                    "{rows}x{cols} {ty} needs {expected:?} bytes, got {}",
                    bytes.len()
                ),
            });
        }
        let blocks_per_row = cols / bs;
        let qbytes = lay.quants.len();
        let row_bytes = (blocks_per_row * (qbytes + 2 * lay.halves.len())) as u64;
        // Leave room for the padding of both regions to whole words.
        let rows_per_part = (ctx.max_part_bytes().saturating_sub(8) / row_bytes) as usize;
        if rows_per_part == 0 {
            return Err(KernelError::Gpu(format!(
                "one row of {cols} {ty} values ({row_bytes} bytes) exceeds the max storage binding"
            )));
        }
        if rows > u32::MAX as usize {
            return Err(KernelError::Shape {
                op: "gpu weight upload",
                detail: format!("{rows} rows"),
            });
        }
        let mut parts = Vec::new();
        let src_row = blocks_per_row * bb;
        let mut row0 = 0;
        while row0 < rows {
            let n = rows_per_part.min(rows - row0);
            let src = &bytes[row0 * src_row..(row0 + n) * src_row];
            let n_blocks = n * blocks_per_row;
            let quant_len = (n_blocks * qbytes).div_ceil(4) * 4;
            let n_halves = n_blocks * lay.halves.len();
            let mut data = vec![0u8; quant_len + n_halves.div_ceil(2) * 4];
            let (qdst, sdst) = data.split_at_mut(quant_len);
            for (i, blk) in src.chunks_exact(bb).enumerate() {
                qdst[i * qbytes..(i + 1) * qbytes].copy_from_slice(&blk[lay.quants.clone()]);
                for (j, &off) in lay.halves.iter().enumerate() {
                    let h = i * lay.halves.len() + j;
                    sdst[2 * h..2 * h + 2].copy_from_slice(&blk[off..off + 2]);
                }
            }
            let buffer = ctx.inner.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("weight"),
                size: data.len().max(4) as u64,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            ctx.inner.queue.write_buffer(&buffer, 0, &data);
            parts.push(WeightPart {
                buffer,
                row0: row0 as u32,
                rows: n as u32,
                scale_off: (quant_len / 4) as u32,
            });
            row0 += n;
        }
        Ok(Self {
            ty,
            rows,
            cols,
            parts,
        })
    }

    /// The tensor type as stored.
    pub fn ty(&self) -> QuantType {
        self.ty
    }

    /// Number of rows (output features).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Row length (input features).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// How many buffers the rows are split over (1 unless the tensor is
    /// larger than the device's max storage binding).
    pub fn n_parts(&self) -> usize {
        self.parts.len()
    }

    /// Bytes held on the GPU.
    pub fn gpu_bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.buffer.size()).sum()
    }
}

/// Whether [`GpuWeight::upload`] takes tensors of type `ty`.
pub fn supports(ty: QuantType) -> bool {
    relayout(ty).is_some()
}
