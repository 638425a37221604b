//! The one error type of the engine crate.

/// Everything that can fail while loading a model or generating text.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Gguf(#[from] infer_gguf::GgufError),
    #[error(transparent)]
    Kernel(#[from] infer_kernels::KernelError),
    #[error("{path}: unsupported architecture \"{arch}\" (supported: {supported})")]
    UnknownArchitecture { path: String, arch: String, supported: String },
    #[error("{path}: missing tensor \"{name}\" (shape {shape:?}) needed by the {arch} architecture")]
    MissingTensor { path: String, arch: String, name: String, shape: Vec<u64> },
    #[error("{path}: tensor \"{name}\" has shape {got:?}, expected {expected:?}")]
    TensorShape { path: String, name: String, expected: Vec<u64>, got: Vec<u64> },
    #[error("{path}: bad model configuration: {detail}")]
    Config { path: String, detail: String },
    /// A file of a Hugging Face folder that is missing, malformed or lies.
    #[error("{path}: {detail}")]
    Folder { path: String, detail: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the prompt has {n_tokens} tokens but the context holds only {n_ctx}; raise -c/--ctx or shorten the prompt")]
    PromptTooLong { n_tokens: usize, n_ctx: usize },
    #[error("the context of {n_ctx} tokens is full; start a new session, raise -c/--ctx, or enable context shift")]
    ContextFull { n_ctx: usize },
    #[error("invalid parameter: {0}")]
    InvalidParam(String),
    #[error("the request queue is full ({max_queue} waiting); retry later")]
    QueueFull { max_queue: usize },
    #[error("the request ran past its time limit of {secs} s")]
    Timeout { secs: f64 },
    /// A sequence's logits came out NaN: its request is stopped, the others go on.
    #[error("the model produced NaN logits for this request (at generated token {at}); the request was stopped")]
    BadLogits { at: usize },
    /// A slot's KV cache could not take another position.
    #[error("the KV cache of slot {slot} cannot grow: {detail}")]
    KvCache { slot: usize, detail: String },
    #[error("the engine has stopped")]
    EngineStopped,
    #[error("GPU: {0}")]
    Gpu(String),
    /// A JSON schema that is invalid or uses what the constraint engine does not support.
    #[error("JSON schema: {0}")]
    Schema(String),
    /// A GBNF or Lark grammar that does not parse or compile.
    #[error("grammar: {0}")]
    Grammar(String),
    /// Constrained sampling could not go on (a token the grammar forbids, no allowed token).
    #[error("constraint: {0}")]
    Constraint(String),
}

/// Shorthand result type of this crate.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
