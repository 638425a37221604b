//! The retrieval half of RAG, as a program linking the engine would do it:
//! embed a folder of text files in chunks, keep the vectors in memory, and
//! answer a query with the k most similar chunks.
//!
//! ```text
//! cargo run --release -p infer-engine --example rag_retrieve -- DOCS_FOLDER "your question" [K] [MODEL.gguf]
//! ```
//!
//! The model defaults to `models/all-MiniLM-L6-v2.f16.gguf`
//! (`scripts/fetch-models.sh`). Its vectors are L2-normalised, so a dot
//! product is the cosine similarity.

use std::error::Error;
use std::path::{Path, PathBuf};

use infer_engine::{Model, ModelOptions};

/// Words per chunk, and words each chunk shares with the next (so a
/// sentence cut at a boundary is whole in one of them).
const CHUNK_WORDS: usize = 120;
const OVERLAP_WORDS: usize = 20;

/// A piece of a document and where it came from.
struct Chunk {
    file: PathBuf,
    /// Index of its first word in the file.
    word: usize,
    text: String,
}

/// The text files of `dir` and its subfolders (`.txt`, `.md`), sorted.
fn text_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_dir() {
            text_files(&p, out)?;
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("txt" | "md")) {
            out.push(p);
        }
    }
    out.sort();
    Ok(())
}

/// Overlapping windows of `CHUNK_WORDS` words.
fn chunks_of(file: &Path, text: &str) -> Vec<Chunk> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let step = CHUNK_WORDS - OVERLAP_WORDS;
    let mut out = Vec::new();
    let mut at = 0;
    while at < words.len() {
        let end = (at + CHUNK_WORDS).min(words.len());
        out.push(Chunk { file: file.to_path_buf(), word: at, text: words[at..end].join(" ") });
        if end == words.len() {
            break;
        }
        at += step;
    }
    out
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(query)) = (args.first(), args.get(1)) else {
        return Err("usage: rag_retrieve DOCS_FOLDER QUERY [K] [MODEL.gguf]".into());
    };
    let k: usize = match args.get(2) {
        Some(s) => s.parse().map_err(|_| format!("K must be a number, got {s:?}"))?,
        None => 3,
    };
    let model_path = args.get(3).map_or("models/all-MiniLM-L6-v2.f16.gguf", String::as_str);
    let model = Model::load(model_path, ModelOptions::default())?;

    // Index: every chunk of every file, embedded in one call (the engine
    // packs them into batched passes).
    let mut files = Vec::new();
    text_files(Path::new(dir), &mut files)?;
    let mut chunks = Vec::new();
    for f in &files {
        chunks.extend(chunks_of(f, &std::fs::read_to_string(f)?));
    }
    if chunks.is_empty() {
        return Err(format!("no .txt or .md text under {dir}").into());
    }
    let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    let t0 = std::time::Instant::now();
    let vectors = model.embed(&texts)?;
    eprintln!("indexed {} chunks of {} files in {:.2} s", chunks.len(), files.len(), t0.elapsed().as_secs_f64());

    // Query: its vector against every chunk's; the k best.
    let q = model.embed(&[query.as_str()])?.remove(0);
    let mut scored: Vec<(f32, usize)> =
        vectors.iter().enumerate().map(|(i, v)| (v.iter().zip(&q).map(|(a, b)| a * b).sum(), i)).collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (rank, &(score, i)) in scored.iter().take(k).enumerate() {
        let c = &chunks[i];
        let preview: String = c.text.chars().take(160).collect();
        println!("{}. {score:.3}  {} (word {})\n   {preview}…", rank + 1, c.file.display(), c.word);
    }
    Ok(())
}
