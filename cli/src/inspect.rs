//! `infer inspect`: a GGUF file's header, metadata and tensor table, as text
//! or as one JSON object.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use infer_gguf::{Gguf, QuantType, Value};
use serde_json::{json, Map, Value as Json};

use crate::common::{resolve_model, ModelArg};

/// Arrays longer than this are summarized as type, length and first entries.
const ARRAY_HEAD: usize = 8;
/// Strings longer than this are cut in text output (chat templates run to KBs).
const TEXT_STRING_MAX: usize = 120;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArg,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let path = resolve_model(&args.model.model)?;
    // The reader's errors already name the file.
    let g = Gguf::open(&path)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&g))?);
    } else {
        print!("{}", to_text(&g));
    }
    Ok(())
}

/// Count, bytes and parameters of each tensor type, in type-id order.
fn by_type(g: &Gguf) -> BTreeMap<u32, (QuantType, usize, u64, u64)> {
    let mut m = BTreeMap::new();
    for t in g.tensors() {
        let e = m.entry(t.ty.id()).or_insert((t.ty, 0, 0, 0));
        e.1 += 1;
        e.2 += t.n_bytes;
        e.3 += t.n_elements();
    }
    m
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F32(x) => json!(x),
        Value::F64(x) => json!(x),
        Value::Bool(x) => json!(x),
        Value::String(s) => json!(s),
        Value::Array(_, items) if items.len() > ARRAY_HEAD => json!({
            "type": v.type_description(),
            "len": items.len(),
            "head": items[..ARRAY_HEAD].iter().map(value_json).collect::<Vec<_>>(),
        }),
        Value::Array(_, items) => Json::Array(items.iter().map(value_json).collect()),
    }
}

fn to_json(g: &Gguf) -> Json {
    let metadata: Map<String, Json> = g.metadata().iter().map(|(k, v)| (k.clone(), value_json(v))).collect();
    let tensors: Vec<Json> = g
        .tensors()
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "type": t.ty.name(),
                "shape": t.dims,
                "offset": t.offset,
                "bytes": t.n_bytes,
            })
        })
        .collect();
    let types: Vec<Json> = by_type(g)
        .values()
        .map(|(ty, n, bytes, params)| json!({"type": ty.name(), "tensors": n, "bytes": bytes, "params": params}))
        .collect();
    json!({
        "path": g.path().display().to_string(),
        "version": g.version(),
        "alignment": g.alignment(),
        "data_offset": g.data_offset(),
        "file_size": g.file_size(),
        "architecture": g.architecture().ok(),
        "n_params": g.tensors().iter().map(|t| t.n_elements()).sum::<u64>(),
        "tensor_bytes": g.tensors().iter().map(|t| t.n_bytes).sum::<u64>(),
        "by_type": types,
        "metadata": metadata,
        "tensors": tensors,
    })
}

/// A value for text output: long strings cut, long arrays summarized.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) if s.chars().count() > TEXT_STRING_MAX => {
            let head: String = s.chars().take(TEXT_STRING_MAX).collect();
            format!("{head:?}… ({} bytes)", s.len())
        }
        Value::Array(_, items) if items.len() > ARRAY_HEAD => {
            let head: Vec<String> = items[..ARRAY_HEAD].iter().map(value_text).collect();
            format!("{} len {} [{}, …]", v.type_description(), items.len(), head.join(", "))
        }
        Value::Array(_, items) => {
            let all: Vec<String> = items.iter().map(value_text).collect();
            format!("[{}]", all.join(", "))
        }
        v => v.to_string(),
    }
}

fn to_text(g: &Gguf) -> String {
    let mut o = String::new();
    // Writing to a String cannot fail.
    let _ = write_text(g, &mut o);
    o
}

fn write_text(g: &Gguf, o: &mut String) -> std::fmt::Result {
    writeln!(o, "file:         {}", g.path().display())?;
    writeln!(o, "file size:    {} bytes ({})", g.file_size(), human(g.file_size()))?;
    writeln!(o, "GGUF version: {}", g.version())?;
    writeln!(o, "alignment:    {}", g.alignment())?;
    writeln!(o, "data offset:  {}", g.data_offset())?;

    let arch = g.architecture().ok();
    let prefix = arch.map(|a| format!("{a}."));
    writeln!(o, "\narchitecture: {}", arch.unwrap_or("(general.architecture missing)"))?;
    let is_arch = |k: &str| prefix.as_deref().is_some_and(|p| k.starts_with(p));
    for (k, v) in g.metadata().iter().filter(|(k, _)| is_arch(k)) {
        writeln!(o, "  {k} = {}", value_text(v))?;
    }

    writeln!(o, "\ntokenizer:")?;
    let kind = g.get("tokenizer.ggml.model").map_or("(none)".into(), value_text);
    writeln!(o, "  kind:          {kind}")?;
    let vocab = g.get("tokenizer.ggml.tokens").and_then(|v| match v {
        Value::Array(_, items) => Some(items.len()),
        _ => None,
    });
    writeln!(o, "  vocab size:    {}", vocab.map_or("(no tokenizer.ggml.tokens)".into(), |n| n.to_string()))?;
    let template = g.get("tokenizer.chat_template").is_some();
    writeln!(o, "  chat template: {}", if template { "present" } else { "absent" })?;

    writeln!(o, "\nother metadata:")?;
    for (k, v) in g.metadata().iter().filter(|(k, _)| !is_arch(k)) {
        writeln!(o, "  {k} = {}", value_text(v))?;
    }

    writeln!(o, "\ntensors ({}):", g.tensors().len())?;
    let w = g.tensors().iter().map(|t| t.name.len()).max().unwrap_or(4).max(4);
    writeln!(o, "  {:<w$}  {:<7}  {:<22}  {:>12}  {:>12}", "name", "type", "shape", "bytes", "offset")?;
    for t in g.tensors() {
        let shape = format!("{:?}", t.dims);
        writeln!(o, "  {:<w$}  {:<7}  {:<22}  {:>12}  {:>12}", t.name, t.ty.name(), shape, t.n_bytes, t.offset)?;
    }

    writeln!(o, "\nby type:")?;
    writeln!(o, "  {:<7}  {:>7}  {:>14}  {:>14}", "type", "tensors", "bytes", "params")?;
    let (mut bytes, mut params) = (0u64, 0u64);
    for (ty, n, b, p) in by_type(g).values() {
        writeln!(o, "  {:<7}  {:>7}  {:>14}  {:>14}", ty.name(), n, b, p)?;
        bytes += b;
        params += p;
    }
    writeln!(o, "  {:<7}  {:>7}  {:>14}  {:>14}", "total", g.tensors().len(), bytes, params)?;
    writeln!(o, "\nparameters:   {params} ({})", human_count(params))?;
    writeln!(o, "tensor bytes: {bytes} ({})", human(bytes))?;
    writeln!(o, "file size:    {} ({})", g.file_size(), human(g.file_size()))
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", b / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", b / 1_048_576.0),
        _ => format!("{:.2} GiB", b / 1_073_741_824.0),
    }
}

fn human_count(n: u64) -> String {
    let f = n as f64;
    match n {
        0..1_000_000 => format!("{:.1} K", f / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} M", f / 1e6),
        _ => format!("{:.2} B", f / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use infer_gguf::ValueType;

    #[test]
    fn long_arrays_are_summarized() {
        let v = Value::str_array(&(0..20).map(|i| i.to_string()).collect::<Vec<_>>());
        let j = value_json(&v);
        assert_eq!(j["type"], "array<string>");
        assert_eq!(j["len"], 20);
        assert_eq!(j["head"].as_array().map(Vec::len), Some(ARRAY_HEAD));
        assert!(value_text(&v).starts_with("array<string> len 20 [\"0\""));
        let short = Value::Array(ValueType::U8, vec![Value::U8(1)]);
        assert_eq!(value_json(&short), json!([1]));
    }
}
