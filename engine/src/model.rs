//! `Model`: a loaded model (a GGUF file or a Hugging Face folder),
//! shareable across threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use infer_gguf::{Gguf, QuantType};

use crate::arch::{Arch, ModelConfig};
use crate::chat::{ChatMessage, ChatTemplate};
use crate::error::Result;
pub use crate::offload::{CpuMoe, GpuLayers};
use crate::offload::{GpuOffload, OffloadEstimate, OffloadRequest};
use crate::tokenizer::Tokenizer;
use crate::weights::WeightTable;

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct ModelOptions {
    /// Touch every weight page once at load time (so the first token is not
    /// slowed by page faults) and report progress as a fraction 0..=1.
    pub prefault: bool,
    /// How many layers run on the GPU (the output head counts as one layer).
    pub gpu_layers: GpuLayers,
    /// GPU memory the offload may use, in bytes (`GpuLayers::Auto`); default:
    /// what the adapter reports, minus a margin.
    pub vram_budget: Option<u64>,
    /// Context length the offload estimate assumes for each session's KV
    /// cache (0 = min(4096, the model's), as [`SessionParams::n_ctx`]).
    pub n_ctx: usize,
    /// MoE layers whose experts stay on the CPU while the rest is offloaded.
    pub cpu_moe: CpuMoe,
    /// Quantize F32/F16/BF16 matrices to this type (Q8_0, Q4_0) while
    /// loading, one tensor at a time; `None` runs them as stored.
    pub quantize: Option<QuantType>,
}

/// A model: the mapped file (or a folder's safetensors files), its
/// architecture and weights, tokenizer and chat template. Weights stay in
/// the mmap; nothing is expanded to f32.
///
/// ```no_run
/// use infer_engine::{Model, ModelOptions, SessionParams, SamplerParams, GenerateOptions};
/// let model = Model::load("models/SmolLM2-135M-Instruct.Q4_1.gguf", ModelOptions::default())?;
/// let mut session = model.session(SessionParams::default())?;
/// let prompt = model.tokenizer().encode("The capital of France is", true, true)?;
/// let opts = GenerateOptions { max_tokens: 16, ..Default::default() };
/// for tok in session.generate(&prompt, SamplerParams::greedy(), opts)? {
///     print!("{}", tok?.text);
/// }
/// # Ok::<(), infer_engine::EngineError>(())
/// ```
pub struct Model {
    path: PathBuf,
    table: Arc<WeightTable>,
    arch: Arch,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    /// The GPU side of an offload: uploaded weights and the layer plan.
    gpu: Option<GpuOffload>,
    /// What the load could not do as asked (e.g. no GPU: every layer on the CPU).
    warnings: Vec<String>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("path", &self.path).field("config", &self.arch.config).finish()
    }
}

impl Model {
    /// Opens and checks a model: architecture, every tensor it needs,
    /// tokenizer, template. `path` is a GGUF file or a Hugging Face folder
    /// (`config.json`, safetensors, `tokenizer.json`; see [`crate::hf`]).
    pub fn load(path: impl AsRef<Path>, options: ModelOptions) -> Result<Arc<Self>> {
        Self::load_with_progress(path, options, |_| {})
    }

    /// As [`Model::load`], calling `progress` with the fraction loaded.
    pub fn load_with_progress(path: impl AsRef<Path>, options: ModelOptions, progress: impl FnMut(f32)) -> Result<Arc<Self>> {
        Self::load_with(path, options, |_| {}, progress)
    }

    /// As [`Model::load_with_progress`], showing `on_estimate` the offload
    /// estimate (GPU/CPU memory) before any weight is uploaded.
    pub fn load_with(
        path: impl AsRef<Path>,
        options: ModelOptions,
        mut on_estimate: impl FnMut(&OffloadEstimate),
        mut progress: impl FnMut(f32),
    ) -> Result<Arc<Self>> {
        let path = path.as_ref().to_path_buf();
        let folder = crate::hf::is_folder(&path);
        let (gguf, mut table, folder_tokenizer) = if folder {
            let (gguf, table, tokenizer) = crate::hf::Folder::open(&path)?.into_parts()?;
            (gguf, table, Some(tokenizer))
        } else {
            let gguf = Arc::new(Gguf::open(&path)?);
            (gguf.clone(), WeightTable::new(gguf), None)
        };
        table.set_quantize(options.quantize);
        // The architecture first: an unknown one is the error to report.
        let mut arch = Arch::load(&gguf, &mut table, options.n_ctx)?;
        // An encoder's embeddings keep their bound with f16 sums; decoders'
        // logits are compared to the last bit and keep f32.
        table.set_half_math(arch.def.name == crate::arch::bert::ARCH.name);
        let tokenizer = match folder_tokenizer {
            Some(t) => t,
            None => Tokenizer::from_gguf(&gguf)?,
        };
        if folder && arch.def.name == "llama" {
            // HF keeps llama's q/k rows in rotate-half order (the GGUF
            // converter permutes them to adjacent pairs): rotate halves.
            arch.config.rope.neox = true;
        }
        let template = ChatTemplate::from_gguf(&gguf, &tokenizer)?;
        progress(0.1);
        if options.prefault {
            // Read one byte per page so later steps do not stall on page faults.
            let n = table.infos().len().max(1);
            let mut sink = 0u8;
            for i in 0..table.infos().len() {
                let bytes = table.bytes(crate::weights::WeightId(i));
                sink ^= bytes.iter().step_by(4096).fold(0u8, |a, &b| a ^ b);
                progress(0.1 + 0.9 * (i + 1) as f32 / n as f32);
            }
            std::hint::black_box(sink);
        }
        let req = OffloadRequest {
            gpu_layers: options.gpu_layers,
            vram_budget: options.vram_budget,
            n_ctx: options.n_ctx,
            cpu_moe: options.cpu_moe,
        };
        let mut warnings = Vec::new();
        let gpu = crate::offload::upload::prepare(&table, &arch, &req, &mut on_estimate, &mut progress, &mut warnings)?;
        progress(1.0);
        Ok(Arc::new(Model { path, table: Arc::new(table), arch, tokenizer, template, gpu, warnings }))
    }

    /// The file or folder the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Hyper-parameters.
    pub fn config(&self) -> &ModelConfig {
        &self.arch.config
    }
    pub fn arch(&self) -> &Arch {
        &self.arch
    }
    pub fn weights(&self) -> &Arc<WeightTable> {
        &self.table
    }
    /// The model's metadata as GGUF keys (for a folder: llama.cpp's keys
    /// for its config, and no tensors).
    pub fn gguf(&self) -> &Arc<Gguf> {
        self.table.gguf()
    }
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
    pub fn chat_template(&self) -> &ChatTemplate {
        &self.template
    }

    /// Renders `messages` with the chat template and tokenizes the result
    /// (special tokens parsed, BOS per the model, unless the text already
    /// starts with it).
    pub fn chat_tokens(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        let text = self.template.render(messages, true)?;
        self.prompt_tokens(&text)
    }

    /// Tokenizes a prompt with special tokens parsed and BOS added per the
    /// model, without doubling a BOS the text already has.
    pub fn prompt_tokens(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.tokenizer.encode(text, true, true)?;
        if let Some(bos) = self.tokenizer.bos_id() {
            if ids.len() >= 2 && ids[0] == bos && ids[1] == bos {
                ids.remove(0);
            }
        }
        Ok(ids)
    }

    /// Total bytes of the model's weights.
    pub fn weight_bytes(&self) -> usize {
        self.table.infos().iter().map(|w| w.n_bytes).sum()
    }

    /// What the load could not do as asked (no GPU adapter, a failed
    /// upload): the model runs, on the CPU.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// One vector per text, pooled per the model (`{arch}.pooling_type`) and
    /// L2-normalised: sentence embeddings for search and RAG. Texts of any
    /// lengths go through together; a text past the context is cut to it
    /// (see [`Model::embed_with`] to be told, or to refuse instead). Takes
    /// `&self`, so threads can embed with one model at once. A model whose
    /// file names no pooling (a chat model) is an error.
    ///
    /// ```no_run
    /// use infer_engine::{Model, ModelOptions};
    /// let model = Model::load("models/all-MiniLM-L6-v2.f16.gguf", ModelOptions::default())?;
    /// let v = model.embed(&["The cat sits on the mat.", "A cat is resting on a rug."])?;
    /// let cos: f32 = v[0].iter().zip(&v[1]).map(|(a, b)| a * b).sum();
    /// println!("{} dims, cosine {cos:.3}", v[0].len());
    /// # Ok::<(), infer_engine::EngineError>(())
    /// ```
    pub fn embed<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>> {
        Ok(self.embed_with(texts, &crate::embed::EmbedOptions::default())?.vectors)
    }

    /// [`Model::embed`] with options (pooling, normalisation, truncation,
    /// pass size); also returns the token count and which texts were cut.
    pub fn embed_with<S: AsRef<str>>(&self, texts: &[S], opts: &crate::embed::EmbedOptions) -> Result<crate::embed::Embeddings> {
        crate::embed::embed(self, texts, opts)
    }

    /// The offload, when layers run on a GPU.
    pub fn offload(&self) -> Option<&GpuOffload> {
        self.gpu.as_ref()
    }

    /// What a session's backends are built from (`cpu_only` ignores the offload).
    pub(crate) fn exec(&self, cpu_only: bool) -> crate::offload::exec::ExecModel<'_> {
        crate::offload::exec::ExecModel {
            arch: &self.arch,
            table: &self.table,
            gpu: if cpu_only { None } else { self.gpu.as_ref() },
        }
    }
}
