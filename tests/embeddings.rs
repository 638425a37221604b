//! Sentence embeddings against sentence-transformers' reference
//! (tests/data/embed/minilm.json, all-MiniLM-L6-v2): token ids, vectors,
//! the similarity matrix; batching, pooling variants, truncation, decoder
//! embedders and models that cannot embed.

mod common;

use std::sync::Arc;

use common::{ids, model_path, reference};
use infer_engine::embed::cosine;
use infer_engine::{EmbedOptions, EngineError, Model, ModelOptions, Pooling, SessionParams};

const MINILM_GGUF: &str = "all-MiniLM-L6-v2.f16.gguf";

fn minilm() -> Arc<Model> {
    Model::load(model_path(MINILM_GGUF), ModelOptions::default()).expect("loading all-MiniLM-L6-v2 (scripts/fetch-models.sh)")
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().expect("array of floats").iter().map(|x| x.as_f64().expect("float") as f32).collect()
}

/// The reference sentences: (text, ids, embedding, mean_pooled).
fn sentences() -> Vec<(String, Vec<u32>, Vec<f32>, Vec<f32>)> {
    let r = reference("embed/minilm.json");
    r["sentences"]
        .as_array()
        .expect("sentences")
        .iter()
        .map(|s| {
            let text = s["text"].as_str().expect("text").to_string();
            (text, ids(&s["ids"]), floats(&s["embedding"]), floats(&s["mean_pooled"]))
        })
        .collect()
}

#[test]
fn wordpiece_ids_equal_sentence_transformers() {
    let m = minilm();
    for (text, want, _, _) in sentences() {
        let got = m.tokenizer().encode(&text, true, true).expect("encoding");
        assert_eq!(got, want, "ids of {text:?}");
    }
}

#[test]
fn vectors_and_similarity_match_sentence_transformers() {
    let m = minilm();
    let s = sentences();
    let texts: Vec<&str> = s.iter().map(|x| x.0.as_str()).collect();
    let got = m.embed(&texts).expect("embedding");
    let mut worst = 1.0f32;
    for ((text, _, want, _), v) in s.iter().zip(&got) {
        assert_eq!(v.len(), 384);
        let c = cosine(v, want);
        worst = worst.min(c);
        assert!(c >= 0.999, "cosine {c} for {text:?}");
    }
    eprintln!("lowest cosine with sentence-transformers (F16 GGUF): {worst}");
    let r = reference("embed/minilm.json");
    let matrix = r["cosine_matrix"].as_array().expect("cosine_matrix");
    for (i, row) in matrix.iter().enumerate() {
        for (j, want) in floats(row).iter().enumerate() {
            let c = cosine(&got[i], &got[j]);
            assert!((c - want).abs() < 1e-3, "similarity [{i}][{j}] {c} vs {want}");
        }
    }
    // Without normalisation: the mean-pooled vectors themselves.
    let opts = EmbedOptions { normalize: false, ..Default::default() };
    let raw = m.embed_with(&texts, &opts).expect("embedding").vectors;
    for ((text, _, _, mean), v) in s.iter().zip(&raw) {
        let diff = v.iter().zip(mean).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff < 0.01, "mean-pooled {text:?} differs by {diff}");
    }
}

#[test]
fn a_batch_of_mixed_lengths_equals_one_by_one() {
    let m = minilm();
    let s = sentences();
    let texts: Vec<&str> = s.iter().map(|x| x.0.as_str()).collect();
    // Small passes, so the texts split over several of them too.
    let opts = EmbedOptions { batch_tokens: 40, ..Default::default() };
    let together = m.embed_with(&texts, &opts).expect("batch").vectors;
    for (t, v) in texts.iter().zip(&together) {
        let alone = m.embed(&[*t]).expect("one text");
        let diff = v.iter().zip(&alone[0]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "{t:?}: batch and alone differ by {diff}");
    }
}

#[test]
fn pooling_variants_agree_on_a_two_token_text() {
    // "" is [CLS] [SEP]: its mean is the average of its first and last rows.
    let m = minilm();
    let raw = |p| {
        let o = EmbedOptions { pooling: Some(p), normalize: false, ..Default::default() };
        m.embed_with(&[""], &o).expect("embedding").vectors.remove(0)
    };
    let (mean, cls, last) = (raw(Pooling::Mean), raw(Pooling::Cls), raw(Pooling::Last));
    assert_ne!(cls, last);
    for ((m, c), l) in mean.iter().zip(&cls).zip(&last) {
        assert!((m - (c + l) / 2.0).abs() < 1e-5, "{m} vs ({c} + {l}) / 2");
    }
    let n = cls.iter().map(|x| x * x).sum::<f32>().sqrt();
    let unit = m.embed_with(&[""], &EmbedOptions { pooling: Some(Pooling::Cls), ..Default::default() }).expect("cls");
    for (a, b) in unit.vectors[0].iter().zip(&cls) {
        assert!((a - b / n).abs() < 1e-6);
    }
}

#[test]
fn texts_past_the_context_are_cut_or_refused() {
    let m = minilm();
    let long = "word ".repeat(600);
    let e = m.embed_with(&[long.as_str(), "short"], &EmbedOptions::default()).expect("embedding");
    assert_eq!((e.truncated.clone(), e.n_ctx, e.vectors.len()), (vec![0], 512, 2));
    assert_eq!(e.n_tokens, 512 + 3);
    let refuse = EmbedOptions { truncate: false, ..Default::default() };
    match m.embed_with(&[long.as_str()], &refuse) {
        Err(EngineError::PromptTooLong { n_tokens: 602, n_ctx: 512 }) => {}
        other => panic!("expected PromptTooLong, got {other:?}"),
    }
}

#[test]
fn a_decoder_embeds_with_last_token_and_mean_pooling() {
    // The tiny qwen3 names no pooling, so it is asked for (as a
    // Qwen3-Embedding file would say pooling_type 3).
    let m = Model::load(model_path("archs/qwen3.gguf"), ModelOptions::default()).expect("loading qwen3");
    let opts = EmbedOptions { pooling: Some(Pooling::Last), normalize: false, ..Default::default() };
    let texts = ["hello world", "a somewhat longer text than the first one", "x"];
    let got = m.embed_with(&texts, &opts).expect("embedding").vectors;
    let mean_opts = EmbedOptions { pooling: Some(Pooling::Mean), ..opts.clone() };
    let means = m.embed_with(&texts, &mean_opts).expect("mean embedding").vectors;
    // The plain reference: one session per text, the last layer's output
    // caught by the hook, its last row RMS-normed by hand.
    let c = m.config().clone();
    let norm = m.weights().f32s(m.arch().weights.output_norm).expect("output_norm");
    for ((t, v), mean) in texts.iter().zip(&got).zip(&means) {
        let ids = m.tokenizer().encode(t, true, true).expect("ids");
        let mut s = m.session_on_cpu(SessionParams::default()).expect("session");
        let caught = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = caught.clone();
        let want = format!("{}.ffn_residual", c.n_layers - 1);
        s.set_hook(Some(Box::new(move |name: &str, rows: &[f32]| {
            if name == want {
                *sink.lock().expect("hook") = rows.to_vec();
            }
        })));
        s.eval(&ids, infer_engine::Logits::Last).expect("eval");
        let rows = caught.lock().expect("rows").clone();
        let last = &rows[(ids.len() - 1) * c.dim..];
        let mut r = vec![0.0; c.dim];
        infer_kernels::ops::rmsnorm_ref(last, &norm, c.rms_eps, &mut r);
        let diff = v.iter().zip(&r).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff < 1e-3 * r.iter().fold(1.0f32, |a, b| a.max(b.abs())), "{t:?}: differs by {diff}");
        // Mean pooling: every row normed, then averaged.
        let mut want = vec![0.0f32; c.dim];
        for row in rows.chunks_exact(c.dim) {
            infer_kernels::ops::rmsnorm_ref(row, &norm, c.rms_eps, &mut r);
            want.iter_mut().zip(&r).for_each(|(w, x)| *w += x / ids.len() as f32);
        }
        let diff = mean.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff < 1e-3 * want.iter().fold(1.0f32, |a, b| a.max(b.abs())), "{t:?}: mean differs by {diff}");
    }
}

#[test]
fn a_model_without_pooling_cannot_embed() {
    let m = Model::load(model_path("archs/llama3.gguf"), ModelOptions::default()).expect("loading llama3");
    let err = m.embed(&["hello"]).expect_err("llama3 names no pooling");
    assert!(err.to_string().contains("pooling_type"), "{err}");
    // And an encoder cannot generate.
    let bert = minilm();
    let mut s = bert.session(SessionParams::default()).expect("session");
    let err = s.eval(&[101, 102], infer_engine::Logits::Last).expect_err("bert does not generate");
    assert!(err.to_string().contains("encoder"), "{err}");
}

#[test]
fn threads_share_one_model() {
    let m = minilm();
    let want = m.embed(&["The cat sits on the mat."]).expect("embedding");
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| assert_eq!(m.embed(&["The cat sits on the mat."]).expect("embedding"), want));
        }
    });
}

/// The Hugging Face folder (F32 safetensors, `tokenizer.json` through the
/// `tokenizers` crate, pooling from `1_Pooling/config.json`): the same ids
/// as the reference and as the GGUF's WordPiece, and vectors at cosine
/// ≥ 0.9999 with sentence-transformers.
#[test]
fn folder_ids_and_vectors_match_sentence_transformers() {
    let folder = Model::load(model_path("all-MiniLM-L6-v2"), ModelOptions::default()).expect("loading the MiniLM folder (scripts/fetch-models.sh)");
    let gguf = minilm();
    let s = sentences();
    for (text, want, _, _) in &s {
        let got = folder.tokenizer().encode(text, true, true).expect("encoding with tokenizer.json");
        assert_eq!(&got, want, "tokenizer.json ids of {text:?}");
        assert_eq!(got, gguf.tokenizer().encode(text, true, true).expect("encoding"), "folder and GGUF ids of {text:?}");
    }
    let texts: Vec<&str> = s.iter().map(|x| x.0.as_str()).collect();
    let got = folder.embed(&texts).expect("embedding from the folder");
    let mut worst = 1.0f32;
    for ((text, _, want, _), v) in s.iter().zip(&got) {
        let c = cosine(v, want);
        worst = worst.min(c);
        assert!(c >= 0.9999, "cosine {c} for {text:?} from the F32 folder");
    }
    eprintln!("lowest cosine with sentence-transformers (F32 folder): {worst}");
}

/// A folder truncates at sentence-transformers' `max_seq_length` (256 in
/// `sentence_bert_config.json`), not at the 512 positions of `config.json`:
/// the cut text is exactly its first 254 words between `[CLS]` and `[SEP]`.
#[test]
fn a_folder_cuts_at_sentence_transformers_max_seq_length() {
    let folder = Model::load(model_path("all-MiniLM-L6-v2"), ModelOptions::default()).expect("loading the MiniLM folder");
    let long = "word ".repeat(600);
    let e = folder.embed_with(&[long.as_str(), "short"], &EmbedOptions::default()).expect("embedding");
    assert_eq!((e.truncated.clone(), e.n_ctx, e.n_tokens), (vec![0], 256, 256 + 3));
    let kept = folder.embed(&["word ".repeat(254)]).expect("embedding 254 words");
    let diff = e.vectors[0].iter().zip(&kept[0]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff < 1e-5, "the cut text and its first 254 words differ by {diff}");
    let refuse = EmbedOptions { truncate: false, ..Default::default() };
    match folder.embed_with(&[long.as_str()], &refuse) {
        Err(EngineError::PromptTooLong { n_tokens: 602, n_ctx: 256 }) => {}
        other => panic!("expected PromptTooLong at 256, got {other:?}"),
    }
}

/// `infer convert` of the MiniLM folder: the F16 GGUF gives the folder's
/// ids and vectors (cosine ≥ 0.9999), Q8_0 stays close (≥ 0.997; 0.998 measured), and
/// both keep the folder's 256-token cut.
#[test]
fn a_converted_folder_embeds_as_the_folder() {
    let dir = model_path("all-MiniLM-L6-v2");
    let folder = Model::load(&dir, ModelOptions::default()).expect("loading the MiniLM folder");
    let s = sentences();
    let texts: Vec<&str> = s.iter().map(|x| x.0.as_str()).collect();
    let want = folder.embed(&texts).expect("embedding from the folder");
    for (ty, bound) in [(infer_gguf::QuantType::F16, 0.9999f32), (infer_gguf::QuantType::Q8_0, 0.997)] {
        let out = std::env::temp_dir().join(format!("infer-embed-convert-{}-{ty}.gguf", std::process::id()));
        infer_engine::hf::convert::convert(&dir, &out, ty).expect("converting the folder");
        let m = Model::load(&out, ModelOptions::default()).expect("loading the converted GGUF");
        for (text, ids, _, _) in &s {
            assert_eq!(&m.tokenizer().encode(text, true, true).expect("encoding"), ids, "{ty} ids of {text:?}");
        }
        let e = m.embed_with(&texts, &EmbedOptions::default()).expect("embedding from the converted GGUF");
        let worst = e.vectors.iter().zip(&want).map(|(a, b)| cosine(a, b)).fold(1.0f32, f32::min);
        eprintln!("{ty} GGUF vs folder: lowest cosine {worst}");
        assert!(worst >= bound, "{ty}: cosine {worst} with the folder's vectors (want ≥ {bound})");
        assert_eq!(infer_engine::embed::max_tokens(&m).expect("max tokens"), 256);
        std::fs::remove_file(&out).ok();
    }
}

/// The MiniLM folder with every layer on the GPU (lavapipe in CI): the
/// encoder kernels and the float matmuls give the CPU's vectors.
#[test]
fn gpu_offload_embeds_as_the_cpu() {
    let dir = model_path("all-MiniLM-L6-v2");
    let cpu = Model::load(&dir, ModelOptions::default()).expect("loading the MiniLM folder");
    let opts = ModelOptions { gpu_layers: infer_engine::GpuLayers::All, ..Default::default() };
    let gpu = Model::load(&dir, opts).expect("loading the MiniLM folder onto the GPU");
    let plan = &gpu.offload().expect("an offload").plan;
    assert!((0..6).all(|l| plan.on_gpu(l)), "every block on the GPU: {plan:?}");
    let s = sentences();
    let texts: Vec<&str> = s.iter().map(|x| x.0.as_str()).collect();
    let (want, got) = (cpu.embed(&texts).expect("CPU"), gpu.embed(&texts).expect("GPU"));
    let worst = got.iter().zip(&want).map(|(a, b)| cosine(a, b)).fold(1.0f32, f32::min);
    let diff = got.iter().flatten().zip(want.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    eprintln!("GPU vs CPU: lowest cosine {worst}, largest |difference| {diff:e}");
    assert!(diff > 0.0, "the GPU vectors are the CPU's bit for bit: did the GPU run?");
    assert!(worst >= 0.9999, "GPU vectors at cosine {worst} with the CPU's");
}
