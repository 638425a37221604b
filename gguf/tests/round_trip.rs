//! GgufWriter → Gguf::open round trips, and the typed accessors.

use infer_gguf::{parse_bytes, Gguf, GgufError, GgufWriter, QuantType, Value, ValueType};

/// One value of every type, including nested and empty arrays.
fn every_value() -> Vec<(String, Value)> {
    let nested = Value::Array(
        ValueType::Array,
        vec![
            Value::Array(ValueType::I32, vec![Value::I32(-1), Value::I32(2)]),
            Value::Array(ValueType::I32, vec![]),
            Value::Array(ValueType::String, vec![Value::String("deep".into())]),
        ],
    );
    let v = vec![
        ("t.u8", Value::U8(250)),
        ("t.i8", Value::I8(-120)),
        ("t.u16", Value::U16(65000)),
        ("t.i16", Value::I16(-32000)),
        ("t.u32", Value::U32(4_000_000_000)),
        ("t.i32", Value::I32(-2_000_000_000)),
        ("t.u64", Value::U64(u64::MAX)),
        ("t.i64", Value::I64(i64::MIN)),
        ("t.f32", Value::F32(1.5e-7)),
        ("t.f64", Value::F64(-2.25e300)),
        ("t.bool_true", Value::Bool(true)),
        ("t.bool_false", Value::Bool(false)),
        ("t.string", Value::String("héllo ▁wörld\n".into())),
        ("t.empty_string", Value::String(String::new())),
        ("t.arr_u8", Value::Array(ValueType::U8, vec![Value::U8(0), Value::U8(255)])),
        ("t.arr_bool", Value::Array(ValueType::Bool, vec![Value::Bool(true), Value::Bool(false)])),
        ("t.arr_f64", Value::Array(ValueType::F64, vec![Value::F64(0.1)])),
        ("t.arr_u64", Value::Array(ValueType::U64, vec![Value::U64(1 << 40)])),
        ("t.arr_f32", Value::f32_array(&[0.5, -1.0])),
        ("t.arr_i32", Value::i32_array(&[1, -2, 3])),
        ("t.arr_str", Value::str_array(&["a", "", "ç"])),
        ("t.arr_empty", Value::Array(ValueType::String, vec![])),
        ("t.nested", nested),
        ("general.alignment", Value::U32(64)),
        ("general.architecture", Value::String("test".into())),
        ("test.block_count", Value::U32(3)),
    ];
    v.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("infer-gguf-{}-{name}.gguf", std::process::id()))
}

/// Deterministic filler bytes so each tensor's data is distinct.
fn filler(seed: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn round_trip_metadata_and_tensors() {
    let meta = every_value();
    let tensors: Vec<(&str, QuantType, Vec<u64>)> = vec![
        ("a.f32", QuantType::F32, vec![3]),
        ("b.q4_0", QuantType::Q4_0, vec![64, 2]),
        ("c.q6_k", QuantType::Q6K, vec![256, 1, 2]),
        ("d.f16", QuantType::F16, vec![5, 1, 1, 3]),
        ("e.q8_0", QuantType::Q8_0, vec![32]),
    ];
    let mut w = GgufWriter::new();
    for (k, v) in &meta {
        w.add_metadata(k, v.clone());
    }
    let mut expected = Vec::new();
    for (i, (name, ty, dims)) in tensors.iter().enumerate() {
        let n = ty.bytes_for(dims.iter().product()).unwrap() as usize;
        let bytes = filler(i as u8, n);
        w.add_tensor(name, *ty, dims, bytes.clone()).unwrap();
        expected.push(bytes);
    }
    let streamed = filler(9, 34);
    let s2 = streamed.clone();
    w.add_tensor_stream("f.stream", QuantType::Q8_0, &[32], move |out| out.write_all(&s2)).unwrap();

    let path = tmp("round-trip");
    w.write_to_path(&path).unwrap();
    let g = Gguf::open(&path).unwrap();
    std::fs::remove_file(&path).ok();

    assert_eq!(g.version(), 3);
    assert_eq!(g.alignment(), 64);
    assert_eq!(g.data_offset() % 64, 0);
    assert_eq!(g.metadata(), &meta[..]);
    for (i, (name, ty, dims)) in tensors.iter().enumerate() {
        let t = g.tensor(name).unwrap();
        assert_eq!(t.ty(), *ty, "{name}");
        assert_eq!(t.dims(), &dims[..], "{name}");
        assert_eq!(t.info.offset % 64, 0, "{name}");
        assert_eq!(t.data, &expected[i][..], "{name}");
    }
    assert_eq!(g.tensor("f.stream").unwrap().data, &streamed[..]);
    assert_eq!(g.tensors().len(), 6);
}

#[test]
fn round_trip_default_alignment_in_memory() {
    let mut w = GgufWriter::new();
    w.add_metadata("k", Value::Bool(true));
    w.add_tensor("x", QuantType::F32, &[1], vec![1, 2, 3, 4]).unwrap();
    w.add_tensor("y", QuantType::F32, &[1], vec![5, 6, 7, 8]).unwrap();
    let mut out = std::io::Cursor::new(Vec::new());
    w.write(&mut out).unwrap();
    let (meta, tensors) = parse_bytes(out.get_ref()).unwrap();
    assert_eq!(meta, vec![("k".to_string(), Value::Bool(true))]);
    assert_eq!(tensors[0].offset, 0);
    assert_eq!(tensors[1].offset, 32);
}

#[test]
fn writer_rejects_bad_input() {
    let mut w = GgufWriter::new();
    w.add_tensor("x", QuantType::F32, &[2], vec![0; 8]).unwrap();
    assert!(w.add_tensor("x", QuantType::F32, &[2], vec![0; 8]).is_err(), "duplicate");
    assert!(w.add_tensor("q", QuantType::Q4_0, &[33], vec![0; 18]).is_err(), "not a block multiple");
    assert!(w.add_tensor("z", QuantType::F32, &[0], vec![]).is_err(), "zero dim");
    assert!(w.add_tensor("s", QuantType::F32, &[2], vec![0; 7]).is_err(), "wrong size");

    for bad in [Value::U32(3), Value::U32(0), Value::I64(-32), Value::String("32".into())] {
        let mut w = GgufWriter::new();
        w.add_metadata("general.alignment", bad.clone());
        let e = w.write_to_path(tmp("bad-align")).unwrap_err();
        assert!(matches!(e, GgufError::Write(_)), "{bad}: {e}");
    }
    let mut w = GgufWriter::new();
    w.add_metadata("mixed", Value::Array(ValueType::U8, vec![Value::U32(1)]));
    let e = w.write_to_path(tmp("mixed")).unwrap_err();
    assert!(e.to_string().contains("mixed"), "{e}");
}

#[test]
fn typed_accessors() {
    let mut w = GgufWriter::new();
    for (k, v) in every_value() {
        w.add_metadata(&k, v);
    }
    let path = tmp("accessors");
    w.write_to_path(&path).unwrap();
    let g = Gguf::open(&path).unwrap();
    std::fs::remove_file(&path).ok();

    assert_eq!(g.u32("t.u8").unwrap(), 250);
    assert_eq!(g.i64("t.i64").unwrap(), i64::MIN);
    assert_eq!(g.u64("t.u64").unwrap(), u64::MAX);
    assert_eq!(g.f32("t.f64").unwrap(), -f32::INFINITY);
    assert!(g.bool("t.bool_true").unwrap());
    assert_eq!(g.str("t.string").unwrap(), "héllo ▁wörld\n");
    assert_eq!(g.str_array("t.arr_str").unwrap(), vec!["a", "", "ç"]);
    assert_eq!(g.i32_array("t.arr_i32").unwrap(), vec![1, -2, 3]);
    assert_eq!(g.f32_array("t.arr_f32").unwrap(), vec![0.5, -1.0]);
    assert_eq!(g.array("t.nested").unwrap().len(), 3);
    assert_eq!(g.arch_u32("block_count").unwrap(), 3);
    assert_eq!(g.arch_u32_opt("missing").unwrap(), None);

    let e = g.u32("nope").unwrap_err();
    assert!(matches!(&e, GgufError::MissingKey { key, .. } if key == "nope"), "{e}");
    assert!(e.to_string().contains("\"nope\""), "{e}");

    let e = g.u32("t.string").unwrap_err();
    assert!(matches!(&e, GgufError::WrongType { expected: "u32", actual, .. } if actual == "string"), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("t.string") && msg.contains("u32") && msg.contains("string"), "{msg}");

    let e = g.str_array("t.arr_i32").unwrap_err();
    assert!(e.to_string().contains("array<i32>") && e.to_string().contains("array<string>"), "{e}");
    assert!(matches!(g.i32_array("t.arr_f32").unwrap_err(), GgufError::WrongType { .. }));

    let e = g.u32("t.i8").unwrap_err();
    assert!(matches!(&e, GgufError::OutOfRange { value, .. } if value == "-120"), "{e}");

    let e = g.tensor("missing.weight").unwrap_err();
    assert!(matches!(&e, GgufError::MissingTensor { name, .. } if name == "missing.weight"), "{e}");
}
