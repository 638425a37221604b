//! One test per malformed-file case: each asserts the specific error variant
//! and that the message names the value at fault and its byte offset.
//!
//! Files are built by hand with [`Raw`] so each test can break exactly one
//! field of an otherwise valid file.

use infer_gguf::{parse_bytes, GgufError, MAX_ARRAY_DEPTH};

/// Little-endian GGUF bytes, built field by field.
struct Raw(Vec<u8>);

impl Raw {
    /// Magic, version and the two counts (24 bytes).
    fn new(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        Raw(b"GGUF".to_vec()).u32(version).u64(n_tensors).u64(n_kv)
    }
    fn u32(mut self, v: u32) -> Raw {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Raw {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(mut self, b: &[u8]) -> Raw {
        self.0.extend_from_slice(b);
        self
    }
    fn str(self, s: &str) -> Raw {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }
    /// A metadata entry of type u32 (id 4).
    fn kv_u32(self, key: &str, v: u32) -> Raw {
        self.str(key).u32(4).u32(v)
    }
    /// A tensor-table entry.
    fn tensor(self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> Raw {
        let mut r = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            r = r.u64(d);
        }
        r.u32(type_id).u64(offset)
    }
    /// Pads to `align` and appends `n` bytes of tensor data.
    fn data(mut self, align: usize, n: usize) -> Raw {
        let len = self.0.len().div_ceil(align) * align + n;
        self.0.resize(len, 0);
        self
    }
    fn pos(&self) -> u64 {
        self.0.len() as u64
    }
}

fn parse_err(r: &Raw) -> GgufError {
    match parse_bytes(&r.0) {
        Ok(_) => panic!("malformed file was accepted"),
        Err(e) => e,
    }
}

fn assert_mentions(e: &GgufError, parts: &[&str]) {
    let msg = e.to_string();
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} does not mention {p:?}");
    }
}

#[test]
fn valid_baseline_parses() {
    // The files below are this one with one field broken.
    let r = Raw::new(3, 1, 1).kv_u32("a.b", 7).tensor("t", &[8], 0, 0).data(32, 32);
    let (meta, tensors) = parse_bytes(&r.0).unwrap();
    assert_eq!(meta.len(), 1);
    assert_eq!(tensors[0].n_bytes, 32);
}

#[test]
fn version_2_is_accepted() {
    let r = Raw::new(2, 0, 1).kv_u32("a.b", 7);
    parse_bytes(&r.0).unwrap();
}

#[test]
fn bad_magic() {
    let mut r = Raw::new(3, 0, 0);
    r.0[..4].copy_from_slice(b"GGML");
    let e = parse_err(&r);
    assert!(matches!(e, GgufError::BadMagic { found, .. } if &found == b"GGML"), "{e}");
    assert_mentions(&e, &["magic", "offset 0"]);
}

#[test]
fn version_1_is_rejected() {
    let e = parse_err(&Raw::new(1, 0, 0));
    assert!(matches!(e, GgufError::UnsupportedVersion { version: 1, .. }), "{e}");
    assert_mentions(&e, &["version 1", "obsolete"]);
}

#[test]
fn big_endian_is_rejected() {
    let e = parse_err(&Raw::new(3u32.swap_bytes(), 0, 0));
    assert!(matches!(e, GgufError::BigEndian { raw: 0x0300_0000, .. }), "{e}");
    assert_mentions(&e, &["big-endian", "0x03000000", "offset 4"]);
}

#[test]
fn truncated_header() {
    let mut r = Raw::new(3, 0, 0);
    r.0.truncate(12);
    let e = parse_err(&r);
    assert!(matches!(e, GgufError::Truncated { offset: 8, needed: 8, left: 4, .. }), "{e}");
    assert_mentions(&e, &["tensor count", "offset 8"]);
}

#[test]
fn huge_tensor_count() {
    let e = parse_err(&Raw::new(3, 1 << 60, 0));
    assert!(matches!(&e, GgufError::CountTooLarge { offset: 8, value, .. } if *value == 1 << 60), "{e}");
    assert_mentions(&e, &["tensor count", "offset 8", &(1u64 << 60).to_string()]);
}

#[test]
fn huge_kv_count() {
    // 13 bytes is the smallest metadata entry; 2 entries cannot fit in 20 bytes.
    let r = Raw::new(3, 0, 2).bytes(&[0; 20]);
    let e = parse_err(&r);
    assert!(matches!(&e, GgufError::CountTooLarge { offset: 16, value: 2, left: 20, .. }), "{e}");
    assert_mentions(&e, &["metadata count", "offset 16"]);
}

#[test]
fn huge_string_length() {
    let r = Raw::new(3, 0, 1).u64(u64::MAX).bytes(b"key").u32(4).u32(1);
    let e = parse_err(&r);
    assert!(matches!(&e, GgufError::CountTooLarge { offset: 24, value: u64::MAX, .. }), "{e}");
    assert_mentions(&e, &["metadata key length", "offset 24", &u64::MAX.to_string()]);
}

#[test]
fn huge_array_count() {
    // An array of u32 claiming a billion elements, with 8 bytes after it.
    let r = Raw::new(3, 0, 1).str("arr").u32(9).u32(4);
    let at = r.pos();
    let r = r.u64(1_000_000_000).u64(0);
    let e = parse_err(&r);
    assert!(matches!(&e, GgufError::CountTooLarge { offset, value: 1_000_000_000, left: 8, .. } if *offset == at), "{e}");
    assert_mentions(&e, &["element count of array \"arr\"", &format!("offset {at}")]);
}

#[test]
fn unknown_value_type() {
    let r = Raw::new(3, 0, 1).str("k");
    let at = r.pos();
    let e = parse_err(&r.u32(13).u32(0));
    assert!(matches!(&e, GgufError::UnknownValueType { type_id: 13, key, offset, .. } if key == "k" && *offset == at), "{e}");
    assert_mentions(&e, &["13", "\"k\"", &format!("offset {at}")]);
}

#[test]
fn unknown_array_element_type() {
    let r = Raw::new(3, 0, 1).str("k").u32(9);
    let at = r.pos();
    let e = parse_err(&r.u32(99).u64(0));
    assert!(matches!(&e, GgufError::UnknownValueType { type_id: 99, offset, .. } if *offset == at), "{e}");
}

#[test]
fn nesting_too_deep() {
    // Array of array of ... one level more than allowed, each with one element.
    let mut r = Raw::new(3, 0, 1).str("deep").u32(9);
    for _ in 0..=MAX_ARRAY_DEPTH {
        r = r.u32(9).u64(1);
    }
    let r = r.u32(0).u64(0);
    let e = parse_err(&r);
    assert!(matches!(&e, GgufError::NestingTooDeep { key, max, .. } if key == "deep" && *max == MAX_ARRAY_DEPTH), "{e}");
    assert_mentions(&e, &["deep", "offset"]);
}

#[test]
fn duplicate_key() {
    let r = Raw::new(3, 0, 2).kv_u32("a.b", 1);
    let at = r.pos();
    let e = parse_err(&r.kv_u32("a.b", 2));
    assert!(matches!(&e, GgufError::DuplicateKey { key, offset, .. } if key == "a.b" && *offset == at), "{e}");
    assert_mentions(&e, &["\"a.b\"", &format!("offset {at}")]);
}

#[test]
fn duplicate_tensor() {
    let r = Raw::new(3, 2, 0).tensor("t", &[8], 0, 0);
    let at = r.pos();
    let e = parse_err(&r.tensor("t", &[8], 0, 32).data(32, 64));
    assert!(matches!(&e, GgufError::DuplicateTensor { name, offset, .. } if name == "t" && *offset == at), "{e}");
    assert_mentions(&e, &["\"t\"", &format!("offset {at}")]);
}

fn bad_alignment(value: u32) {
    let r = Raw::new(3, 0, 1).str("general.alignment").u32(4);
    let at = r.pos();
    let e = parse_err(&r.u32(value));
    assert!(matches!(&e, GgufError::BadAlignment { value: v, offset, .. } if *v == value.to_string() && *offset == at), "{e}");
    assert_mentions(&e, &["general.alignment", &value.to_string(), &format!("offset {at}")]);
}

#[test]
fn bad_alignment_3() {
    bad_alignment(3);
}

#[test]
fn bad_alignment_0() {
    bad_alignment(0);
}

#[test]
fn bad_alignment_not_an_integer() {
    let r = Raw::new(3, 0, 1).str("general.alignment").u32(8).str("32");
    let e = parse_err(&r);
    assert!(matches!(&e, GgufError::BadAlignment { .. }), "{e}");
    assert_mentions(&e, &["string"]);
}

#[test]
fn non_default_alignment_is_used() {
    // Offset 32 suits the default alignment but not general.alignment = 64.
    let r = Raw::new(3, 1, 1).kv_u32("general.alignment", 64).tensor("t", &[8], 0, 64).data(64, 96);
    parse_bytes(&r.0).unwrap();
    let r = Raw::new(3, 1, 1).kv_u32("general.alignment", 64).tensor("t", &[8], 0, 32).data(64, 64);
    assert!(matches!(parse_err(&r), GgufError::MisalignedTensor { alignment: 64, .. }));
}

#[test]
fn too_many_dims() {
    let r = Raw::new(3, 1, 0).str("t");
    let at = r.pos();
    let e = parse_err(&r.tensor_tail(&[1, 1, 1, 1, 1]));
    assert!(matches!(&e, GgufError::TooManyDims { n_dims: 5, offset, .. } if *offset == at), "{e}");
    assert_mentions(&e, &["\"t\"", "5 dimensions", &format!("offset {at}")]);
}

#[test]
fn zero_dim() {
    let r = Raw::new(3, 1, 0).str("t").u32(2).u64(8);
    let at = r.pos();
    let e = parse_err(&r.u64(0).u32(0).u64(0).data(32, 32));
    assert!(matches!(&e, GgufError::BadDim { index: 1, value: 0, offset, why: "zero", .. } if *offset == at), "{e}");
    assert_mentions(&e, &["\"t\"", "dimension 1 = 0", &format!("offset {at}")]);
}

#[test]
fn overflowing_dims() {
    let r = Raw::new(3, 1, 0).str("t").u32(2).u64(1 << 32);
    let at = r.pos();
    let e = parse_err(&r.u64(1 << 32).u32(0).u64(0));
    assert!(
        matches!(&e, GgufError::BadDim { index: 1, offset, why: "element count overflows", .. } if *offset == at),
        "{e}"
    );
    assert_mentions(&e, &["\"t\"", &(1u64 << 32).to_string(), &format!("offset {at}")]);
}

#[test]
fn byte_size_overflow() {
    // 2^62 f32 elements fit in the element count but not in bytes.
    let r = Raw::new(3, 1, 0).tensor("t", &[1 << 62], 0, 0);
    let e = parse_err(&r);
    assert!(matches!(&e, GgufError::BadDim { why: "byte size overflows", .. }), "{e}");
}

#[test]
fn unknown_tensor_type_id() {
    let r = Raw::new(3, 1, 0).str("t").u32(1).u64(32);
    let at = r.pos();
    let e = parse_err(&r.u32(4).u64(0).data(32, 32));
    assert!(matches!(&e, GgufError::UnknownTensorType { type_id: 4, name, offset, .. } if name == "t" && *offset == at), "{e}");
    assert_mentions(&e, &["\"t\"", "type id 4", &format!("offset {at}")]);
}

#[test]
fn first_dim_not_block_multiple() {
    // q4_0 (id 2) has 32-element blocks: [33, 32] has 1056 = 33 blocks worth
    // of elements but its rows do not split into blocks.
    let r = Raw::new(3, 1, 0).str("t").u32(2);
    let at = r.pos();
    let e = parse_err(&r.u64(33).u64(32).u32(2).u64(0).data(32, 33 * 18));
    assert!(
        matches!(&e, GgufError::NotBlockMultiple { ne0: 33, block: 32, ty: "q4_0", offset, .. } if *offset == at),
        "{e}"
    );
    assert_mentions(&e, &["\"t\"", "33", "32", &format!("offset {at}")]);
}

#[test]
fn misaligned_offset() {
    let r = Raw::new(3, 1, 0).str("t").u32(1).u64(8).u32(0);
    let at = r.pos();
    let e = parse_err(&r.u64(16).data(32, 64));
    assert!(matches!(&e, GgufError::MisalignedTensor { value: 16, alignment: 32, offset, .. } if *offset == at), "{e}");
    assert_mentions(&e, &["\"t\"", "16", "32", &format!("offset {at}")]);
}

#[test]
fn overlapping_tensors() {
    // a: 64 bytes at 0; b: 32 bytes at 32.
    let r = Raw::new(3, 2, 0).tensor("a", &[16], 0, 0).tensor("b", &[8], 0, 32).data(32, 64);
    let data = r.0.len() as u64 - 64;
    let e = parse_err(&r);
    assert!(
        matches!(&e, GgufError::TensorOverlap { name, other, start, .. } if name == "b" && other == "a" && *start == data + 32),
        "{e}"
    );
    assert_mentions(&e, &["\"a\"", "\"b\"", &format!("{}..{}", data + 32, data + 64)]);
}

#[test]
fn tensor_past_end() {
    let r = Raw::new(3, 1, 0).tensor("t", &[8], 0, 0).data(32, 31);
    let len = r.pos();
    let e = parse_err(&r);
    assert!(matches!(&e, GgufError::TensorPastEnd { name, file_len, .. } if name == "t" && *file_len == len), "{e}");
    assert_mentions(&e, &["\"t\"", "past the end", &len.to_string()]);
}

#[test]
fn tensor_offset_overflows() {
    let r = Raw::new(3, 1, 0).tensor("t", &[8], 0, u64::MAX - 31).data(32, 32);
    assert!(matches!(parse_err(&r), GgufError::TensorPastEnd { .. }));
}

#[test]
fn invalid_utf8() {
    let r = Raw::new(3, 0, 1).u64(2);
    let at = r.pos();
    let e = parse_err(&r.bytes(&[0xC3, 0x28]).u32(4).u32(1));
    assert!(matches!(&e, GgufError::BadUtf8 { offset, .. } if *offset == at), "{e}");
    assert_mentions(&e, &["UTF-8", &format!("offset {at}")]);
}

#[test]
fn every_prefix_of_a_valid_file_is_rejected_cleanly() {
    let r = Raw::new(3, 1, 2)
        .kv_u32("a.b", 7)
        .str("arr")
        .u32(9)
        .u32(8)
        .u64(2)
        .str("x")
        .str("yz")
        .tensor("t", &[8], 0, 0)
        .data(32, 32);
    parse_bytes(&r.0).unwrap();
    for n in 0..r.0.len() {
        assert!(parse_bytes(&r.0[..n]).is_err(), "prefix of {n} bytes accepted");
    }
}

impl Raw {
    /// The part of a tensor entry after its name: `dims.len()` dims, f32, offset 0.
    fn tensor_tail(self, dims: &[u64]) -> Raw {
        let mut r = self.u32(dims.len() as u32);
        for &d in dims {
            r = r.u64(d);
        }
        r.u32(0).u64(0)
    }
}
