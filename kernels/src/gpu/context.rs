//! The device: adapter choice, limits and features, error capture, the
//! pipeline cache and the activation buffer pool.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::shaders::{assemble, Bind, Kernel, Variant};
use super::GpuBuffer;
use super::int_dot::IntDot;
use crate::KernelError;

/// Bytes of the uniform array through which the CPU-device matmul kernels
/// read activations (`xu` in `matvec_rows.wgsl`): llvmpipe loads uniforms
/// with vector gathers or broadcasts, storage buffers one lane at a time.
pub(crate) const UNIFORM_WINDOW: u64 = 65536;

/// The lowest storage binding limit a context takes (WebGPU guarantees 128 MiB;
/// tests go far lower, but a kernel's params and small tables must fit).
pub const MIN_BINDING: u64 = 4096;

/// The error for a buffer of `bytes` over the binding limit `max`.
pub(crate) fn over_binding(what: &str, bytes: u64, max: u64) -> KernelError {
    KernelError::Gpu(format!(
        "{what} needs {bytes} bytes ({}), over the device's max storage binding of {max} bytes ({})",
        human_bytes(bytes),
        human_bytes(max)
    ))
}

/// `bytes` in KiB, MiB or GiB, one decimal.
fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..=0xF_FFFF => format!("{:.1} KiB", b / 1024.0),
        0x10_0000..=0x3FFF_FFFF => format!("{:.1} MiB", b / (1u64 << 20) as f64),
        _ => format!("{:.1} GiB", b / (1u64 << 30) as f64),
    }
}

/// How long a submission may run before we report the device as stuck.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(120);

type PipelineCache = HashMap<(Kernel, Variant), Arc<Pipeline>>;
/// Where a `map_async` callback leaves its outcome.
type MapSlot = Arc<Mutex<Option<Result<(), wgpu::BufferAsyncError>>>>;

/// A compiled kernel and the layout its bind groups are made with.
pub(crate) struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

pub(crate) struct Inner {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub has_f16: bool,
    pub has_subgroup: bool,
    /// Whether the kernels for CPU-emulated devices (lavapipe: no barriers,
    /// uniform activations) are chosen; starts as whether the adapter is a
    /// CPU, tests flip it to run both kernel sets on one adapter.
    pub cpu_kernels: std::sync::atomic::AtomicBool,
    /// Forces the portable kernels even where f16/subgroups are offered.
    pub portable: std::sync::atomic::AtomicBool,
    /// Weight parts are split so that none exceeds this many bytes.
    pub max_part_bytes: std::sync::atomic::AtomicU64,
    /// Largest buffer bound as one storage binding: the device's limit, or
    /// lower (`INFER_GPU_MAX_BINDING`, [`GpuContext::set_max_storage_binding`]).
    pub max_binding: std::sync::atomic::AtomicU64,
    pipelines: Mutex<PipelineCache>,
    layouts: Mutex<HashMap<&'static [(u32, Bind)], wgpu::BindGroupLayout>>,
    /// Free activation buffers by byte size.
    pub pool: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
    /// The first error wgpu reported outside an error scope.
    pub uncaptured: Arc<Mutex<Option<String>>>,
    pub has_timestamps: bool,
    /// Shaders keep wgpu's runtime bounds checks (`INFER_GPU_CHECKED=1`).
    pub checked_shaders: bool,
    /// Free read-back (MAP_READ) buffers by byte size.
    pub readback: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
    pub stats: Mutex<super::GpuStats>,
    pub profile: Mutex<super::profile::Profile>,
    /// A small read-only buffer bound where a kernel's optional input is absent.
    pub dummy: wgpu::Buffer,
    /// The shape of the real-GPU matvec kernels (`matvec.wgsl`).
    pub matvec: Mutex<MatvecShape>,
    /// Whether WGSL's packed_4x8_integer_dot_product is available (wgpu
    /// lowers dot4I8Packed to the device's integer dot product where it has
    /// one, to shifts and multiplies elsewhere).
    pub has_int_dot: bool,
    /// When the real-GPU matvec runs Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 on int8
    /// activations ([`IntDot`] as a u8; `INFER_GPU_INT_DOT=0|1`, or
    /// [`GpuContext::set_int_dot_mode`]).
    pub int_dot: std::sync::atomic::AtomicU8,
}

/// Lanes per workgroup and rows per workgroup of the real-GPU matvec
/// kernels, set as pipeline constants (`WG`, `NR` of `matvec.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatvecShape {
    /// Lanes per workgroup: a power of two in 4..=256.
    pub lanes: u32,
    /// Rows per workgroup: 1..=4.
    pub rows: u32,
}

impl MatvecShape {
    /// The default for an adapter: one subgroup per workgroup where the
    /// subgroup size is fixed and 16..=128 lanes (32 on NVIDIA, 64 on older
    /// AMD), else 64 lanes; 2 rows, as ggml-vulkan's mul_mat_vec uses on
    /// most devices (more rows per workgroup reuse each activation more but
    /// leave fewer workgroups for small matrices).
    fn for_adapter(info: &wgpu::AdapterInfo) -> Self {
        let (lo, hi) = (info.subgroup_min_size, info.subgroup_max_size);
        let lanes = if lo == hi && (16..=128).contains(&lo) && lo.is_power_of_two() { lo } else { 64 };
        Self { lanes, rows: 2 }
    }
}

/// A GPU device with its queue, compiled kernels and buffer pool.
/// Cheap to clone (shared handle).
#[derive(Clone)]
pub struct GpuContext {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.info())
    }
}

fn parse_backend(s: &str) -> Result<wgpu::Backends, KernelError> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => wgpu::Backends::VULKAN,
        "metal" => wgpu::Backends::METAL,
        "dx12" | "d3d12" => wgpu::Backends::DX12,
        "gl" | "gles" | "opengl" => wgpu::Backends::GL,
        other => {
            return Err(KernelError::Gpu(format!(
                "INFER_GPU_BACKEND=\"{other}\" is not one of vulkan, metal, dx12, gl"
            )))
        }
    })
}

/// One adapter as `infer devices` lists it.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub shader_f16: bool,
    /// GPU timestamps (`infer bench --gpu-profile`).
    pub timestamps: bool,
    pub subgroups: bool,
    pub max_buffer_bytes: u64,
    pub max_storage_binding_bytes: u64,
    pub max_workgroup_storage_bytes: u32,
    /// The cooperative-matrix configurations the adapter lists, as
    /// `MxNxK A/B→C` (`16x16x16 f16→f32`); empty on most adapters.
    pub cooperative_matrix: Vec<String>,
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {})", self.name, self.backend, self.device_type)
    }
}

/// What adapter discovery found: the adapters, their summaries, and the
/// best one passing the name filter.
struct Found {
    backends: wgpu::Backends,
    int_dot: bool,
    name_filter: Option<String>,
    adapters: Vec<wgpu::Adapter>,
    summaries: Vec<AdapterSummary>,
    chosen: Option<usize>,
}

fn find_adapters() -> Result<Found, KernelError> {
    let backends = match std::env::var("INFER_GPU_BACKEND") {
        Ok(s) if !s.is_empty() => parse_backend(&s)?,
        // GL is left out by default: it lacks compute features we rely on.
        _ => wgpu::Backends::PRIMARY,
    };
    let name_filter = std::env::var("INFER_GPU_ADAPTER")
        .ok()
        .filter(|s| !s.is_empty());
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    let instance = wgpu::Instance::new(desc);
    let adapters = pollster::block_on(instance.enumerate_adapters(backends));
    let summaries: Vec<AdapterSummary> = adapters
        .iter()
        .map(|a| {
            let (i, l, f) = (a.get_info(), a.limits(), a.features());
            AdapterSummary {
                name: i.name,
                backend: format!("{:?}", i.backend),
                device_type: format!("{:?}", i.device_type),
                driver: format!("{} {}", i.driver, i.driver_info).trim().to_string(),
                shader_f16: f.contains(wgpu::Features::SHADER_F16),
                timestamps: f.contains(wgpu::Features::TIMESTAMP_QUERY),
                subgroups: f.contains(wgpu::Features::SUBGROUP),
                max_buffer_bytes: l.max_buffer_size,
                max_storage_binding_bytes: l.max_storage_buffer_binding_size,
                max_workgroup_storage_bytes: l.max_compute_workgroup_storage_size,
                cooperative_matrix: a
                    .cooperative_matrix_properties()
                    .iter()
                    .map(|c| format!("{}x{}x{} {:?}→{:?}", c.m_size, c.n_size, c.k_size, c.ab_type, c.cr_type).to_lowercase())
                    .collect(),
            }
        })
        .collect();
    let chosen = adapters
        .iter()
        .enumerate()
        .filter(|(_, a)| {
            name_filter
                .as_ref()
                .is_none_or(|f| a.get_info().name.to_lowercase().contains(&f.to_lowercase()))
        })
        .min_by_key(|(_, a)| adapter_rank(a.get_info().device_type))
        .map(|(i, _)| i);
    let int_dot = instance
        .wgsl_language_features()
        .contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct);
    Ok(Found {
        backends,
        int_dot,
        name_filter,
        adapters,
        summaries,
        chosen,
    })
}

/// Lower is better: discrete, integrated, virtual, then software.
fn adapter_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

impl GpuContext {
    /// Opens the best adapter: discrete > integrated > software. The env
    /// variables `INFER_GPU_BACKEND` (`vulkan|metal|dx12|gl`) and
    /// `INFER_GPU_ADAPTER` (substring of the adapter name, any case) narrow
    /// the choice. Fails with [`KernelError::Gpu`] when no adapter is found.
    pub fn new() -> Result<Self, KernelError> {
        let found = find_adapters()?;
        let name_filter = found.name_filter.clone();
        let int_dot = found.int_dot;
        let (backends, seen) = (
            found.backends,
            found
                .summaries
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>(),
        );
        let adapter = found
            .chosen
            .and_then(|i| found.adapters.into_iter().nth(i))
            .ok_or_else(|| {
                KernelError::Gpu(format!(
                "no GPU adapter found for backends {backends:?}{} (adapters seen: [{}]); install a \
                 Vulkan/Metal/DX12 driver (on Linux without a GPU, mesa's lavapipe) or change \
                 INFER_GPU_BACKEND / INFER_GPU_ADAPTER",
                name_filter.as_ref().map(|f| format!(" matching \"{f}\"")).unwrap_or_default(),
                seen.join(", ")
            ))
            })?;
        Self::from_adapter(adapter, int_dot)
    }

    /// Every adapter wgpu finds for the backends `INFER_GPU_BACKEND` allows,
    /// and the index of the one [`GpuContext::new`] would open (none when
    /// nothing matches `INFER_GPU_ADAPTER`), for `infer devices`.
    pub fn list_adapters() -> Result<(Vec<AdapterSummary>, Option<usize>), KernelError> {
        let found = find_adapters()?;
        Ok((found.summaries, found.chosen))
    }

    /// Device-to-device copy bandwidth in GB/s (bytes read plus bytes
    /// written, per second): the ceiling a memory-bound kernel can approach.
    /// Copies a buffer of up to 128 MiB (larger than the caches of today's
    /// GPUs) again and again; the median of five timed submits.
    pub fn copy_bandwidth(&self) -> Result<f64, KernelError> {
        let max = self
            .inner
            .limits
            .max_storage_buffer_binding_size
            .min(self.inner.limits.max_buffer_size);
        let len = ((128u64 << 20).min(max / 2) / 4) as usize;
        let (src, dst) = (self.buffer(len)?, self.buffer(len)?);
        let run = |reps: usize| -> Result<f64, KernelError> {
            let mut step = self.step();
            for _ in 0..reps {
                step.copy(&src, 0, &dst, 0, len)?;
            }
            let t = std::time::Instant::now();
            step.submit()?;
            Ok(t.elapsed().as_secs_f64())
        };
        // Warm-up, then enough copies per submit for ~50 ms.
        let once = run(4)? / 4.0;
        let reps = ((0.05 / once.max(1e-6)) as usize).clamp(4, 256);
        let mut secs = (0..5).map(|_| run(reps)).collect::<Result<Vec<_>, _>>()?;
        secs.sort_by(f64::total_cmp);
        Ok(2.0 * (len * 4 * reps) as f64 / secs[2] / 1e9)
    }

    fn from_adapter(adapter: wgpu::Adapter, has_int_dot: bool) -> Result<Self, KernelError> {
        let info = adapter.get_info();
        // `INFER_GPU_KERNELS=gpu|cpu` overrides the kernel set chosen by device type
        // (`rows` and `subgroup` name the same two sets by their matvec kernels.)
        let cpu_device = match std::env::var("INFER_GPU_KERNELS").as_deref() {
            Ok("cpu" | "rows") => true,
            Ok("gpu" | "subgroup") => false,
            _ => info.device_type == wgpu::DeviceType::Cpu,
        };
        // `INFER_GPU_CHECKED=1` keeps wgpu's runtime bounds checks in the shaders.
        let checked_shaders = std::env::var("INFER_GPU_CHECKED").is_ok_and(|v| v == "1");
        let offered = adapter.features();
        let wanted =
            wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY;
        let features = offered & wanted;
        // The adapter's own limits: big storage bindings and buffers matter for weights.
        let mut limits = adapter.limits();
        // `INFER_GPU_MAX_BINDING=BYTES` asks the device for a lower storage
        // binding limit (tests of the over-the-limit paths on any adapter).
        if let Ok(v) = std::env::var("INFER_GPU_MAX_BINDING") {
            let cap: u64 = v.trim().parse().map_err(|_| {
                KernelError::Gpu(format!("INFER_GPU_MAX_BINDING=\"{v}\" is not a number of bytes"))
            })?;
            let cap = (cap / 16 * 16).max(MIN_BINDING);
            limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(cap);
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("infer"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| KernelError::Gpu(format!("request_device on {}: {e}", info.name)))?;
        let uncaptured = Arc::new(Mutex::new(None::<String>));
        let sink = uncaptured.clone();
        // wgpu panics on errors nobody captures; keep the first one and report it
        // from the next submit instead.
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut slot) = sink.lock() {
                slot.get_or_insert_with(|| e.to_string());
            }
        }));
        let limits = device.limits();
        let max_part = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let max_binding = limits.max_storage_buffer_binding_size;
        let matvec = Mutex::new(MatvecShape::for_adapter(&info));
        let int_dot = (IntDot::from_env() as u8).into();
        Ok(Self {
            inner: Arc::new(Inner {
                matvec,
                has_int_dot,
                int_dot,
                dummy: device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("dummy"),
                    size: 16,
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                }),
                device,
                queue,
                info,
                has_f16: features.contains(wgpu::Features::SHADER_F16),
                has_subgroup: features.contains(wgpu::Features::SUBGROUP),
                cpu_kernels: cpu_device.into(),
                limits,
                portable: false.into(),
                max_part_bytes: max_part.into(),
                max_binding: max_binding.into(),
                pipelines: Mutex::new(HashMap::new()),
                layouts: Mutex::new(HashMap::new()),
                pool: Mutex::new(HashMap::new()),
                uncaptured,
                checked_shaders,
                readback: Mutex::new(HashMap::new()),
                has_timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
                stats: Mutex::default(),
                profile: Mutex::default(),
            }),
        })
    }

    /// Adapter name, backend, device type and the optional features in use.
    pub fn info(&self) -> String {
        let i = &self.inner.info;
        format!(
            "{} ({:?}, {:?}, driver {} {}); shader-f16: {}, subgroups: {}, max storage binding {}",
            i.name,
            i.backend,
            i.device_type,
            i.driver,
            i.driver_info,
            self.uses_f16(),
            self.uses_subgroups(),
            human_bytes(self.max_storage_binding())
        )
    }

    /// The device limits in force (the adapter's own).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.limits
    }

    /// Forces the portable kernels (no shader-f16, no subgroups) when `on`;
    /// kernels already compiled stay cached for both paths.
    pub fn set_portable(&self, on: bool) {
        self.inner
            .portable
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether kernels use shader-f16 (offered and not forced off).
    pub fn uses_f16(&self) -> bool {
        self.inner.has_f16
            && !self
                .inner
                .portable
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether kernels use subgroup operations (offered and not forced off).
    pub fn uses_subgroups(&self) -> bool {
        self.inner.has_subgroup
            && !self
                .inner
                .portable
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Chooses the kernels made for CPU-emulated devices (one thread per
    /// output row, no barriers, activations read through a uniform binding)
    /// when `on`, the workgroup-per-row and tiled kernels for real GPUs when
    /// off. Defaults to whether the adapter is a CPU; tests flip it to check
    /// both sets on whatever adapter exists.
    pub fn set_cpu_device_kernels(&self, on: bool) {
        self.inner
            .cpu_kernels
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the kernels for CPU-emulated devices are in use.
    pub fn uses_cpu_device_kernels(&self) -> bool {
        self.inner
            .cpu_kernels
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Caps the bytes of one weight buffer below the device's storage binding
    /// limit (tests use it to exercise row splitting on small tensors).
    pub fn set_max_weight_part_bytes(&self, bytes: u64) {
        let cap = self.max_storage_binding().min(self.inner.limits.max_buffer_size);
        self.inner
            .max_part_bytes
            .store(bytes.clamp(4, cap), std::sync::atomic::Ordering::Relaxed);
    }

    /// Lowers the largest storage binding this context allocates below the
    /// device's limit (at least [`MIN_BINDING`] bytes), weight parts
    /// included: tests use it to reach the over-the-limit paths with small
    /// models.
    pub fn set_max_storage_binding(&self, bytes: u64) {
        let cap = (bytes / 16 * 16).clamp(MIN_BINDING, self.inner.limits.max_storage_buffer_binding_size);
        self.inner.max_binding.store(cap, std::sync::atomic::Ordering::Relaxed);
        let part = self.max_part_bytes().min(cap);
        self.inner.max_part_bytes.store(part, std::sync::atomic::Ordering::Relaxed);
    }

    /// The largest buffer, in bytes, this context binds as one storage
    /// binding (the device's limit unless lowered).
    pub fn max_storage_binding(&self) -> u64 {
        self.inner.max_binding.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The adapter's subgroup size when it is fixed (one size for every
    /// kernel) and subgroups are in use.
    pub fn fixed_subgroup_size(&self) -> Option<u32> {
        let i = &self.inner.info;
        (self.uses_subgroups() && i.subgroup_min_size == i.subgroup_max_size).then_some(i.subgroup_min_size)
    }

    /// The shape of the real-GPU matvec kernels in use.
    pub fn matvec_shape(&self) -> MatvecShape {
        self.inner.matvec.lock().map(|s| *s).unwrap_or(MatvecShape { lanes: 64, rows: 2 })
    }

    /// Sets the shape of the real-GPU matvec kernels (tests and tuning);
    /// compiled matvec kernels are dropped so the next use rebuilds them.
    pub fn set_matvec_shape(&self, shape: MatvecShape) -> Result<(), KernelError> {
        if !(4..=256).contains(&shape.lanes) || !shape.lanes.is_power_of_two() || !(1..=4).contains(&shape.rows) {
            return Err(KernelError::Gpu(format!(
                "matvec shape {shape:?}: lanes must be a power of two in 4..=256, rows in 1..=4"
            )));
        }
        *self.inner.matvec.lock().map_err(|_| KernelError::Gpu("matvec shape lock poisoned".into()))? = shape;
        self.lock_pipelines()?.retain(|(k, _), _| !matches!(k, Kernel::Matvec(..) | Kernel::MatvecI8(..)));
        Ok(())
    }

    pub(crate) fn max_part_bytes(&self) -> u64 {
        self.inner
            .max_part_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The compiled pipeline of `kernel`, built on first use.
    pub(crate) fn pipeline(&self, kernel: Kernel) -> Result<Arc<Pipeline>, KernelError> {
        // Keyed by what the context offers, so that a cached kernel is found
        // without assembling its spec (this runs for every dispatch).
        let key = (kernel, Variant { subgroup: self.uses_subgroups(), f16: self.uses_f16() });
        if let Some(p) = self.lock_pipelines()?.get(&key) {
            return Ok(p.clone());
        }
        let spec = kernel.spec()?;
        let variant = Variant {
            subgroup: spec.uses_subgroup && key.1.subgroup,
            f16: spec.uses_f16 && key.1.f16,
        };
        let source = assemble(&spec, variant)?;
        let dev = &self.inner.device;
        let layout = self.layout(spec.bindings)?;
        let scope = dev.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(spec.label),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        };
        let module = if self.inner.checked_shaders {
            dev.create_shader_module(desc)
        } else {
            // SAFETY: every kernel keeps its own indices in bounds (each
            // thread checks its row/element against the params, and the
            // ops check those params against the buffer sizes before
            // recording), and every loop runs to a bound taken from the params.
            unsafe { dev.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
        };
        let pl = dev.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(spec.label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let shape = self.matvec_shape();
        let info = &self.inner.info;
        let one_subgroup = variant.subgroup
            && info.subgroup_min_size == info.subgroup_max_size
            && info.subgroup_min_size == shape.lanes;
        let shape_constants = [
            ("WG", shape.lanes as f64),
            ("NR", shape.rows as f64),
            ("ONE_SUBGROUP", if one_subgroup { 1.0 } else { 0.0 }),
        ];
        let constants: &[(&str, f64)] = if spec.matvec_shape { &shape_constants } else { &[] };
        let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(spec.label),
            layout: Some(&pl),
            module: &module,
            entry_point: Some(spec.entry),
            // Every kernel writes its workgroup memory before reading it.
            compilation_options: wgpu::PipelineCompilationOptions {
                zero_initialize_workgroup_memory: false,
                constants,
                ..Default::default()
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(KernelError::Gpu(format!(
                "compiling kernel {} {kernel:?} {variant:?}: {e}",
                spec.label
            )));
        }
        let p = Arc::new(Pipeline { pipeline, layout });
        self.lock_pipelines()?.insert(key, p.clone());
        Ok(p)
    }

    fn lock_pipelines(&self) -> Result<std::sync::MutexGuard<'_, PipelineCache>, KernelError> {
        self.inner
            .pipelines
            .lock()
            .map_err(|_| KernelError::Gpu("pipeline cache lock poisoned".into()))
    }

    fn layout(
        &self,
        bindings: &'static [(u32, Bind)],
    ) -> Result<wgpu::BindGroupLayout, KernelError> {
        let mut layouts = self
            .inner
            .layouts
            .lock()
            .map_err(|_| KernelError::Gpu("layout cache lock poisoned".into()))?;
        let layout = layouts.entry(bindings).or_insert_with(|| {
            let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
                .iter()
                .map(|&(binding, kind)| wgpu::BindGroupLayoutEntry {
                    binding,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: match kind {
                            Bind::Uniform => wgpu::BufferBindingType::Uniform,
                            Bind::Read => wgpu::BufferBindingType::Storage { read_only: true },
                            Bind::ReadWrite => {
                                wgpu::BufferBindingType::Storage { read_only: false }
                            }
                        },
                        // Binding 0 holds every kernel's params, bound at a dynamic offset.
                        has_dynamic_offset: binding == 0,
                        min_binding_size: None,
                    },
                    count: None,
                })
                .collect();
            self.inner
                .device
                .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: None,
                    entries: &entries,
                })
        });
        Ok(layout.clone())
    }

    /// A raw storage buffer of `bytes` (rounded up to 16), reused from the
    /// pool. With the CPU-device kernels every buffer also has a uniform
    /// window's worth of slack ([`UNIFORM_WINDOW`] bytes) past its end, so
    /// that any offset into it can be bound as the kernels' uniform `x`.
    /// Errors, naming the buffer as `what`, past the max storage binding.
    fn raw_buffer_for(&self, what: &str, bytes: u64) -> Result<wgpu::Buffer, KernelError> {
        let max = self.max_storage_binding();
        let mut size = bytes.max(16).div_ceil(16) * 16;
        if size > max {
            return Err(over_binding(what, bytes, max));
        }
        if self.uses_cpu_device_kernels() && size + UNIFORM_WINDOW <= max {
            size += UNIFORM_WINDOW;
        }
        if let Some(b) = self
            .inner
            .pool
            .lock()
            .ok()
            .and_then(|mut p| p.get_mut(&size).and_then(Vec::pop))
        {
            return Ok(b);
        }
        Ok(self.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("activation"),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::UNIFORM
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// A pooled buffer of `len` 32-bit elements (contents undefined).
    pub fn buffer(&self, len: usize) -> Result<GpuBuffer, KernelError> {
        self.buffer_for("an activation buffer", len)
    }

    /// [`GpuContext::buffer`] whose error, when `len` values exceed the
    /// max storage binding, names the buffer as `what` (e.g. `"slot Up of 512 tokens"`).
    pub fn buffer_for(&self, what: &str, len: usize) -> Result<GpuBuffer, KernelError> {
        let raw = self.raw_buffer_for(what, len as u64 * 4)?;
        Ok(GpuBuffer::new(raw, len, self.clone()))
    }

    /// Uploads f32 values into a new pooled buffer.
    pub fn upload_f32(&self, data: &[f32]) -> Result<GpuBuffer, KernelError> {
        let b = self.buffer(data.len())?;
        self.write_f32(&b, data)?;
        Ok(b)
    }

    /// Uploads u32 values (token ids) into a new pooled buffer.
    pub fn upload_u32(&self, data: &[u32]) -> Result<GpuBuffer, KernelError> {
        let b = self.buffer(data.len())?;
        self.write_bytes(&b, bytemuck::cast_slice(data))?;
        Ok(b)
    }

    /// Overwrites the start of `buf` with `data` (queued before the next submit).
    pub fn write_f32(&self, buf: &GpuBuffer, data: &[f32]) -> Result<(), KernelError> {
        self.write_bytes(buf, bytemuck::cast_slice(data))
    }

    /// Overwrites the start of `buf` with u32 `data`.
    pub fn write_u32(&self, buf: &GpuBuffer, data: &[u32]) -> Result<(), KernelError> {
        self.write_bytes(buf, bytemuck::cast_slice(data))
    }

    fn write_bytes(&self, buf: &GpuBuffer, bytes: &[u8]) -> Result<(), KernelError> {
        if bytes.len() > buf.len() * 4 {
            return Err(KernelError::Shape {
                op: "gpu upload",
                detail: format!(
                    "{} bytes into a buffer of {} elements",
                    bytes.len(),
                    buf.len()
                ),
            });
        }
        if !bytes.is_empty() {
            self.inner.queue.write_buffer(buf.raw(), 0, bytes);
        }
        Ok(())
    }

    /// Copies `buf` back to the CPU as f32 (one submit and wait).
    pub fn download_f32(&self, buf: &GpuBuffer) -> Result<Vec<f32>, KernelError> {
        let mut step = self.step();
        step.read(buf);
        Ok(step.submit()?.pop().map(|r| r.f32()).unwrap_or_default())
    }

    /// Copies `buf` back to the CPU as u32.
    pub fn download_u32(&self, buf: &GpuBuffer) -> Result<Vec<u32>, KernelError> {
        let mut step = self.step();
        step.read(buf);
        Ok(step.submit()?.pop().map(|r| r.u32()).unwrap_or_default())
    }

    /// Submits `cmd` without waiting; errors show at the next submit.
    pub(crate) fn submit_only(&self, cmd: wgpu::CommandBuffer) -> Result<(), KernelError> {
        let scope = self
            .inner
            .device
            .push_error_scope(wgpu::ErrorFilter::Validation);
        self.inner.queue.submit(Some(cmd));
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(KernelError::Gpu(format!("submit: {e}")));
        }
        self.take_uncaptured()
    }

    /// Adds one submit to the host-side counters.
    pub(crate) fn count(
        &self,
        dispatches: usize,
        record: Duration,
        encode: Duration,
        wait: Duration,
    ) {
        if let Ok(mut st) = self.inner.stats.lock() {
            st.submits += 1;
            st.dispatches += dispatches as u64;
            st.record += record;
            st.encode += encode;
            st.wait += wait;
        }
    }

    /// Submits `cmd` and waits for it (bounded by a timeout), then maps and
    /// copies out `staging` buffers. Reports any error wgpu raised meanwhile.
    pub(crate) fn submit_and_wait(
        &self,
        cmd: wgpu::CommandBuffer,
        staging: &[(wgpu::Buffer, u64)],
    ) -> Result<Vec<Vec<u8>>, KernelError> {
        let dev = &self.inner.device;
        let scope = dev.push_error_scope(wgpu::ErrorFilter::Validation);
        let index = self.inner.queue.submit(Some(cmd));
        let mapped: Vec<MapSlot> = staging
            .iter()
            .map(|(b, len)| {
                let slot = Arc::new(Mutex::new(None));
                let s = slot.clone();
                b.slice(..*len).map_async(wgpu::MapMode::Read, move |r| {
                    if let Ok(mut g) = s.lock() {
                        *g = Some(r);
                    }
                });
                slot
            })
            .collect();
        let polled = dev.poll(wgpu::PollType::Wait {
            submission_index: Some(index),
            timeout: Some(SUBMIT_TIMEOUT),
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(KernelError::Gpu(format!("submit: {e}")));
        }
        self.take_uncaptured()?;
        polled.map_err(|e| KernelError::Gpu(format!("waiting for the GPU: {e}")))?;
        // Rarely (parallel tests on lavapipe) a map callback has not run yet
        // when the wait returns: poll again until every read is mapped.
        let deadline = std::time::Instant::now() + SUBMIT_TIMEOUT;
        let all_mapped = || {
            mapped
                .iter()
                .all(|s| s.lock().map_or(true, |g| g.is_some()))
        };
        while !all_mapped() && std::time::Instant::now() < deadline {
            dev.poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: Some(SUBMIT_TIMEOUT),
            })
            .map_err(|e| KernelError::Gpu(format!("waiting for read-back buffers: {e}")))?;
            if !all_mapped() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let mut out = Vec::with_capacity(staging.len());
        for ((b, len), slot) in staging.iter().zip(mapped) {
            let state = slot
                .lock()
                .map_err(|_| KernelError::Gpu("map lock poisoned".into()))?
                .take();
            match state {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    return Err(KernelError::Gpu(format!("mapping a read-back buffer: {e}")))
                }
                None => {
                    return Err(KernelError::Gpu(
                        "read-back buffer was not mapped after the wait".into(),
                    ))
                }
            }
            let view = b
                .slice(..*len)
                .get_mapped_range()
                .map_err(|e| KernelError::Gpu(format!("reading a mapped buffer: {e}")))?;
            out.push(view.to_vec());
            drop(view);
            b.unmap();
            self.put_readback(b.clone());
        }
        Ok(out)
    }

    /// A read-back buffer of `size` bytes, reused from earlier submits.
    pub(crate) fn readback_buffer(&self, size: u64) -> wgpu::Buffer {
        let pooled = self.inner.readback.lock().ok().and_then(|mut p| p.get_mut(&size).and_then(Vec::pop));
        pooled.unwrap_or_else(|| {
            self.inner.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("read-back"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
    }

    /// Returns an unmapped read-back buffer to the pool (a few per size).
    fn put_readback(&self, b: wgpu::Buffer) {
        if let Ok(mut p) = self.inner.readback.lock() {
            let free = p.entry(b.size()).or_default();
            if free.len() < 8 {
                free.push(b);
            }
        }
    }

    fn take_uncaptured(&self) -> Result<(), KernelError> {
        let msg = self.inner.uncaptured.lock().ok().and_then(|mut g| g.take());
        match msg {
            Some(m) => Err(KernelError::Gpu(m)),
            None => Ok(()),
        }
    }
}
