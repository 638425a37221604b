//! Turning a recorded [`GpuStep`] into one command buffer and submitting it:
//! waiting for the reads ([`GpuStep::submit`]), or not
//! ([`GpuStep::submit_no_wait`], so the GPU starts on the first layers while
//! the host records the rest). Bind groups come from the step's
//! [`BindCache`](super::BindCache); while profiling, each dispatch runs in
//! its own pass between two timestamps.

use std::time::{Duration, Instant};

use super::{BindKey, Cmd, GpuStep, Readback, MAX_CACHED_BIND_GROUPS, MAX_TIMED_DISPATCHES};
use crate::gpu::shaders::Kernel;
use crate::KernelError;

/// A step turned into a command buffer, with what the submit needs after.
struct Encoded {
    cmd: wgpu::CommandBuffer,
    /// Read-back buffers and their sizes, in the order of the reads
    /// (the kernel times last, when profiling).
    staging: Vec<(wgpu::Buffer, u64)>,
    /// Bytes wanted of each read.
    wanted: Vec<usize>,
    /// The timed dispatches: kernel and weight bytes.
    timed: Option<Vec<(Kernel, u64)>>,
    n_dispatches: usize,
    record: Duration,
    encode: Duration,
}

impl GpuStep {
    /// Whether the step holds reads (which only [`GpuStep::submit`] returns).
    pub fn has_reads(&self) -> bool {
        self.n_reads > 0
    }

    /// Number of dispatches recorded.
    pub fn dispatch_count(&self) -> usize {
        self.n_dispatches
    }

    /// Submits everything recorded, waits for it, and returns the reads.
    pub fn submit(self) -> Result<Vec<Readback>, KernelError> {
        let ctx = self.ctx.clone();
        let inner = &ctx.inner;
        let e = self.encode()?;
        let t_wait = Instant::now();
        let mut bytes = ctx.submit_and_wait(e.cmd, &e.staging)?;
        if let Some(timed) = &e.timed {
            let ticks = bytes.pop().unwrap_or_default();
            let ns_per_tick = inner.queue.get_timestamp_period() as f64;
            if let Ok(mut p) = inner.profile.lock() {
                for ((kernel, wb), t) in timed.iter().zip(ticks.chunks_exact(16)) {
                    let t0 = u64::from_le_bytes(t[..8].try_into().unwrap_or_default());
                    let t1 = u64::from_le_bytes(t[8..].try_into().unwrap_or_default());
                    p.add(
                        format!("{kernel:?}"),
                        t1.saturating_sub(t0) as f64 * ns_per_tick,
                        *wb,
                    );
                }
            }
        }
        ctx.count(e.n_dispatches, e.record, e.encode, t_wait.elapsed());
        Ok(bytes
            .into_iter()
            .zip(e.wanted)
            .map(|(mut b, n)| {
                b.truncate(n);
                Readback { bytes: b }
            })
            .collect())
    }

    /// Submits everything recorded without waiting. The GPU runs submissions
    /// in order, so a later step may use what this one writes. A step with
    /// reads must go through [`GpuStep::submit`].
    pub fn submit_no_wait(self) -> Result<(), KernelError> {
        if self.has_reads() {
            return Err(KernelError::Gpu(
                "a step with reads was submitted without waiting".into(),
            ));
        }
        let ctx = self.ctx.clone();
        if ctx.is_profiling() {
            // Kernel times are read back: wait.
            return self.submit().map(|_| ());
        }
        let e = self.encode()?;
        let t_submit = Instant::now();
        ctx.submit_only(e.cmd)?;
        ctx.count(e.n_dispatches, e.record, e.encode, t_submit.elapsed());
        Ok(())
    }

    fn encode(self) -> Result<Encoded, KernelError> {
        let t_submit = Instant::now();
        let inner = &self.ctx.inner;
        let dev = &inner.device;
        let n_dispatches = self.dispatch_count();
        // Profiling: each dispatch in its own pass between two timestamps.
        let profiling = inner.profile.lock().is_ok_and(|p| p.on) && n_dispatches > 0;
        let n_timed = n_dispatches.min(MAX_TIMED_DISPATCHES);
        let queries = profiling.then(|| {
            dev.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("kernel times"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * n_timed as u32,
            })
        });
        let mut timed: Vec<(Kernel, u64)> = Vec::new();
        let mut binds = self
            .binds
            .inner
            .lock()
            .map_err(|_| KernelError::Gpu("bind group cache lock poisoned".into()))?;
        let binds = &mut *binds;
        if binds.groups.len() > MAX_CACHED_BIND_GROUPS {
            binds.groups.clear();
            binds.by_ordinal.clear();
        }
        // Each part of a token's step (see `submit_no_wait`) has its own params
        // buffer, so a later part's params never overwrite ones still being read.
        let part = self.part;
        let need = (self.params.len().div_ceil(16) * 16).max(16) as u64;
        if binds.params.len() <= part {
            binds.params.resize(part + 1, None);
        }
        if binds.by_ordinal.len() <= part {
            binds.by_ordinal.resize_with(part + 1, Vec::new);
        }
        if binds.params[part].as_ref().is_none_or(|b| b.size() < need) {
            // Groups bind the old params buffer of this part: drop them.
            binds.groups.retain(|k, _| k.part != part);
            binds.by_ordinal[part].clear();
            binds.params[part] = Some(dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params"),
                size: need.next_power_of_two(),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        let params = binds.params[part]
            .clone()
            .ok_or_else(|| KernelError::Gpu("params buffer missing".into()))?;
        if !self.params.is_empty() {
            let mut padded = self.params.clone();
            padded.resize(self.params.len().div_ceil(4) * 4, 0);
            inner.queue.write_buffer(&params, 0, &padded);
        }
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("step"),
        });
        let mut staging = Vec::new();
        let mut wanted = Vec::new();
        // Ordinal of the next dispatch in this part (see `by_ordinal`).
        let mut ordinal = 0;
        let mut i = 0;
        while i < self.cmds.len() {
            match &self.cmds[i] {
                Cmd::Read { src, bytes } => {
                    let size = bytes.div_ceil(4) * 4;
                    let dst = self.ctx.readback_buffer(size.max(4));
                    if size > 0 {
                        enc.copy_buffer_to_buffer(src, 0, &dst, 0, size);
                    }
                    staging.push((dst, size.max(4)));
                    wanted.push(*bytes as usize);
                    i += 1;
                }
                Cmd::Copy {
                    src,
                    src_off,
                    dst,
                    dst_off,
                    bytes,
                } => {
                    enc.copy_buffer_to_buffer(src, *src_off, dst, *dst_off, *bytes);
                    i += 1;
                }
                Cmd::Dispatch { .. } => {
                    // Consecutive dispatches share one pass; each dispatch is
                    // its own usage scope, so wgpu orders their writes and reads.
                    let slot = timed.len() as u32;
                    let timestamps = match &queries {
                        Some(q) if timed.len() < n_timed => {
                            Some(wgpu::ComputePassTimestampWrites {
                                query_set: q,
                                beginning_of_pass_write_index: Some(2 * slot),
                                end_of_pass_write_index: Some(2 * slot + 1),
                            })
                        }
                        _ => None,
                    };
                    let timing = timestamps.is_some();
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes: timestamps,
                    });
                    while let Some(Cmd::Dispatch {
                        kernel,
                        pipeline,
                        buffers,
                        params: (off, size),
                        groups,
                    }) = self.cmds.get(i)
                    {
                        let same_as_last = binds.by_ordinal[part]
                            .get(ordinal)
                            .and_then(Option::as_ref)
                            .filter(|(k, _)| k.matches(&pipeline.layout, *size, buffers))
                            .map(|(_, g)| g.clone());
                        let bg = match same_as_last {
                            Some(g) => g,
                            None => {
                        let key = BindKey {
                            layout: pipeline.layout.clone(),
                            part,
                            params_size: *size,
                            buffers: buffers
                                .iter()
                                .map(|b| (b.binding, b.buffer.clone(), b.offset, b.size))
                                .collect(),
                        };
                        let bg = binds.groups.entry(key.clone()).or_insert_with(|| {
                            let mut entries = vec![wgpu::BindGroupEntry {
                                binding: 0,
                                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                    buffer: &params,
                                    offset: 0,
                                    size: wgpu::BufferSize::new(*size),
                                }),
                            }];
                            entries.extend(buffers.iter().map(|b| wgpu::BindGroupEntry {
                                binding: b.binding,
                                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                    buffer: &b.buffer,
                                    offset: b.offset,
                                    size: b.size,
                                }),
                            }));
                            dev.create_bind_group(&wgpu::BindGroupDescriptor {
                                label: None,
                                layout: &pipeline.layout,
                                entries: &entries,
                            })
                        }).clone();
                        let slots = &mut binds.by_ordinal[part];
                        if slots.len() <= ordinal {
                            slots.resize(ordinal + 1, None);
                        }
                        slots[ordinal] = Some((key, bg.clone()));
                        bg
                            }
                        };
                        ordinal += 1;
                        pass.set_pipeline(&pipeline.pipeline);
                        // Offsets are aligned to min_uniform_buffer_offset_alignment at recording.
                        pass.set_bind_group(0, &bg, &[*off as u32]);
                        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                        i += 1;
                        if timing {
                            timed.push((*kernel, super::weight_bytes(*kernel, buffers)));
                            break;
                        }
                    }
                }
            }
        }
        if let Some(q) = &queries {
            let n = 2 * timed.len() as u64;
            let resolved = dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some("kernel times"),
                size: n * 8,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            enc.resolve_query_set(q, 0..n as u32, &resolved, 0);
            let dst = self.ctx.readback_buffer(n * 8);
            enc.copy_buffer_to_buffer(&resolved, 0, &dst, 0, n * 8);
            staging.push((dst, n * 8));
        }
        let cmd = enc.finish();
        Ok(Encoded {
            cmd,
            staging,
            wanted,
            timed: queries.map(|_| timed),
            n_dispatches,
            record: self
                .started
                .map_or(Duration::ZERO, |s| t_submit.saturating_duration_since(s)),
            encode: t_submit.elapsed(),
        })
    }
}
