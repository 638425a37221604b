//! Reference dequantization (stub; filled by the dequant work).
