//! When the real-GPU decode matvec runs on int8 activations ([`IntDot`]):
//! the mode, and the per-vendor choice of [`IntDot::Auto`].

use super::GpuContext;
use crate::QuantType;

/// When the real-GPU decode matvec multiplies int8-quantized activations
/// (dot4I8Packed) instead of f32 ones. The activations come quantized from
/// the norm that produces them (attention norm → q|k|v, FFN norm →
/// gate|up), so no product waits on a dispatch of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntDot {
    /// Never (`INFER_GPU_INT_DOT=0`).
    Off,
    /// Per vendor, weight type and row length, as llama.cpp's Vulkan
    /// backend decides (`ggml_vk_should_use_mmvq`), on adapters of a vendor
    /// known to have integer dot products; the default.
    Auto,
    /// For every supported weight type (`INFER_GPU_INT_DOT=1`).
    On,
}

/// PCI vendor ids of [`wgpu::AdapterInfo::vendor`].
const VENDOR_NVIDIA: u32 = 0x10de;
const VENDOR_AMD: u32 = 0x1002;
const VENDOR_INTEL: u32 = 0x8086;

impl IntDot {
    pub(crate) fn from_env() -> Self {
        match std::env::var("INFER_GPU_INT_DOT").as_deref() {
            Ok("1") => IntDot::On,
            Ok("0") => IntDot::Off,
            _ => IntDot::Auto,
        }
    }

    /// The [`IntDot::Auto`] choice for a product of `cols`-long rows of `ty`
    /// (one of the int-dot types) on `info`'s adapter. As llama.cpp's rules
    /// for one token: the quantization pays only for long rows, and Q8_0
    /// weights (already 8-bit) gain nothing on recent NVIDIA and AMD parts.
    /// Other vendors and CPU adapters stay on f32: wgpu lowers dot4I8Packed
    /// to shifts and multiplies where the device lacks integer dot products,
    /// and it does not say which devices have them.
    fn auto((vendor, device_type): (u32, wgpu::DeviceType), ty: QuantType, cols: usize) -> bool {
        if device_type == wgpu::DeviceType::Cpu {
            return false;
        }
        match vendor {
            VENDOR_NVIDIA => cols > 4096 && ty != QuantType::Q8_0,
            VENDOR_AMD => cols >= 2048 && ty != QuantType::Q8_0,
            // llama.cpp measured the Windows driver slower with int8 for these types.
            VENDOR_INTEL => !cfg!(windows) && cols >= 2048 && !matches!(ty, QuantType::Q4_0 | QuantType::Q5_1),
            _ => false,
        }
    }
}

impl GpuContext {
    /// [`GpuContext::set_int_dot_mode`] with [`IntDot::On`] or [`IntDot::Off`].
    pub fn set_int_dot(&self, on: bool) {
        self.set_int_dot_mode(if on { IntDot::On } else { IntDot::Off });
    }

    /// When Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 products of the real-GPU matvec
    /// take int8-quantized activations (where WGSL offers dot4I8Packed):
    /// [`IntDot::Auto`] unless `INFER_GPU_INT_DOT` says otherwise.
    pub fn set_int_dot_mode(&self, mode: IntDot) {
        self.inner.int_dot.store(mode as u8, std::sync::atomic::Ordering::Relaxed);
    }

    /// The [`IntDot`] mode in force.
    pub fn int_dot_mode(&self) -> IntDot {
        match self.inner.int_dot.load(std::sync::atomic::Ordering::Relaxed) {
            0 => IntDot::Off,
            1 => IntDot::Auto,
            _ => IntDot::On,
        }
    }

    /// Whether some product may run on int8 activations (forced on, or
    /// chosen for some type and row length) with the kernels in use.
    pub fn uses_int_dot(&self) -> bool {
        self.int_dot_for_cols(usize::MAX)
    }

    /// Whether the one-token product of `ty` weights with `cols`-long rows
    /// runs on int8 activations (when they come quantized; see [`IntDot`]).
    pub fn int_dot_for(&self, ty: QuantType, cols: usize) -> bool {
        let usable = self.inner.has_int_dot && !self.uses_cpu_device_kernels() && super::shaders::int_dot_supports(ty);
        usable
            && match self.int_dot_mode() {
                IntDot::Off => false,
                IntDot::Auto => IntDot::auto((self.inner.info.vendor, self.inner.info.device_type), ty, cols),
                IntDot::On => true,
            }
    }

    /// Whether a product of some int-dot type on `cols`-long rows would
    /// run on int8 activations: a norm producing such rows writes them.
    pub(crate) fn int_dot_for_cols(&self, cols: usize) -> bool {
        const TYPES: [QuantType; 5] = [QuantType::Q4_0, QuantType::Q4_1, QuantType::Q5_0, QuantType::Q5_1, QuantType::Q8_0];
        TYPES.iter().any(|&ty| self.int_dot_for(ty, cols))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wgpu::DeviceType::{Cpu, DiscreteGpu};

    #[test]
    fn auto_follows_the_vendor_rules() {
        let auto = |vendor, ty, cols| IntDot::auto((vendor, DiscreteGpu), ty, cols);
        // NVIDIA: long rows only, not Q8_0.
        assert!(!auto(VENDOR_NVIDIA, QuantType::Q4_0, 4096));
        assert!(auto(VENDOR_NVIDIA, QuantType::Q4_0, 8192));
        assert!(!auto(VENDOR_NVIDIA, QuantType::Q8_0, 8192));
        // AMD: from 2048, not Q8_0.
        assert!(auto(VENDOR_AMD, QuantType::Q4_1, 2048));
        assert!(!auto(VENDOR_AMD, QuantType::Q4_1, 1024));
        assert!(!auto(VENDOR_AMD, QuantType::Q8_0, 4096));
        // Intel: from 2048, not Q4_0 or Q5_1.
        assert_eq!(auto(VENDOR_INTEL, QuantType::Q5_0, 4096), !cfg!(windows));
        assert!(!auto(VENDOR_INTEL, QuantType::Q4_0, 4096));
        // Other vendors and CPU adapters: f32.
        assert!(!auto(0x106b, QuantType::Q4_0, 8192));
        assert!(!IntDot::auto((VENDOR_NVIDIA, Cpu), QuantType::Q4_0, 8192));
    }
}
