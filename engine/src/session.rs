//! `Session`: one conversation with a model. Owns the KV cache and the
//! backends; evaluates tokens and generates text.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::arch::{HeadOutput, Logits};
use crate::constraint::ConstraintState;
use crate::backend::Backends;
use crate::error::{EngineError, Result};
use crate::kv_cache::CacheType;
use crate::model::Model;
use crate::offload::exec::{self, ExecParams};
use crate::sampler::{Sampler, SamplerParams};
use crate::tokenizer::StreamDecoder;

/// Session settings.
#[derive(Debug, Clone)]
pub struct SessionParams {
    /// Context length in tokens; 0 = min(4096, the model's training context).
    pub n_ctx: usize,
    /// Most tokens evaluated in one forward step (prefill is split into batches).
    pub n_batch: usize,
    /// When the context is full, drop the oldest half after the first
    /// `n_keep` tokens and go on (llama.cpp's context shift) instead of stopping.
    pub context_shift: bool,
    /// Element type of the KV cache.
    pub cache_type: CacheType,
}

impl Default for SessionParams {
    fn default() -> Self {
        SessionParams { n_ctx: 0, n_batch: 256, context_shift: false, cache_type: CacheType::F16 }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token (EOS, end of turn).
    Eog,
    /// `max_tokens` reached.
    Length,
    /// A stop string appeared.
    Stop,
}

/// Generation settings beside the sampler.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    /// Stop (and cut the text) where one of these appears.
    pub stop: Vec<String>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { max_tokens: 256, stop: Vec::new() }
    }
}

/// One generated token with the text it completes (may be empty while a
/// UTF-8 character or a possible stop string is still incomplete).
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub id: u32,
    pub text: String,
}

/// Time spent and tokens processed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub prompt_tokens: usize,
    pub prompt_time: Duration,
    pub gen_tokens: usize,
    pub gen_time: Duration,
}

impl Timings {
    pub fn prompt_tok_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_time.as_secs_f64().max(1e-9)
    }
    pub fn gen_tok_s(&self) -> f64 {
        self.gen_tokens as f64 / self.gen_time.as_secs_f64().max(1e-9)
    }
}

impl Model {
    /// A new session with its own KV cache.
    pub fn session(self: &Arc<Self>, params: SessionParams) -> Result<Session> {
        Session::new(self.clone(), params, false)
    }

    /// A session that runs every layer on the CPU, ignoring the offload
    /// (the reference side of `infer verify`).
    pub fn session_on_cpu(self: &Arc<Self>, params: SessionParams) -> Result<Session> {
        Session::new(self.clone(), params, true)
    }
}

/// A conversation's state: the tokens in the KV cache and the backends.
pub struct Session {
    model: Arc<Model>,
    backends: Backends,
    params: SessionParams,
    n_ctx: usize,
    /// Tokens whose keys and values are in the cache, in order.
    tokens: Vec<u32>,
    /// Tokens never dropped by a context shift (e.g. the system prompt).
    n_keep: usize,
    logits: Vec<f32>,
    /// The last [`Logits::Greedy`] evaluation's token.
    greedy: Option<u32>,
    /// Scratch for one forward step's output.
    step: HeadOutput,
    timings: Timings,
    cpu_only: bool,
}

impl Session {
    pub(crate) fn new(model: Arc<Model>, params: SessionParams, cpu_only: bool) -> Result<Self> {
        let c = model.config();
        let n_ctx = if params.n_ctx == 0 { c.n_ctx_train.min(4096) } else { params.n_ctx };
        if n_ctx < 2 {
            return Err(EngineError::InvalidParam(format!("context of {n_ctx} tokens is too small")));
        }
        if params.n_batch == 0 {
            return Err(EngineError::InvalidParam("batch size must be at least 1".into()));
        }
        let n_batch = params.n_batch.min(n_ctx);
        let exec = ExecParams { n_seq: 1, n_ctx, n_batch, cache_type: params.cache_type };
        let backends = crate::offload::exec::build_backends(model.exec(cpu_only), exec)?;
        Ok(Session {
            model,
            backends,
            params: SessionParams { n_batch, ..params },
            n_ctx,
            tokens: Vec::new(),
            n_keep: 0,
            logits: Vec::new(),
            greedy: None,
            step: HeadOutput::default(),
            timings: Timings::default(),
            cpu_only,
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }
    /// Context length.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }
    /// Tokens in the cache.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
    pub fn timings(&self) -> Timings {
        self.timings
    }
    /// Keeps the first `n` tokens through context shifts.
    pub fn set_keep(&mut self, n: usize) {
        self.n_keep = n;
    }
    /// Sets a hook that sees every named intermediate (`"{layer}.{stage}"`).
    pub fn set_hook(&mut self, hook: Option<Box<crate::backend::Hook>>) {
        self.backends.hook = hook;
    }
    /// Forgets everything in the cache.
    pub fn clear(&mut self) {
        self.truncate(0);
    }
    /// Keeps only the first `n` cached tokens (a no-op when fewer are cached),
    /// so a new prompt sharing them evaluates only what follows.
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.tokens.len());
        self.tokens.truncate(n);
        self.backends.truncate_cache(n);
    }

    /// Evaluates `tokens` after those already cached and returns the logits:
    /// the last position's (`vocab` values) or, with [`Logits::All`], every
    /// evaluated position's (`tokens.len() * vocab`). With
    /// [`Logits::Greedy`] the slice is empty; use [`Session::eval_greedy`].
    pub fn eval(&mut self, tokens: &[u32], which: Logits) -> Result<&[f32]> {
        if tokens.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if self.tokens.len() + tokens.len() > self.n_ctx {
            return Err(EngineError::ContextFull { n_ctx: self.n_ctx });
        }
        let vocab = self.model.config().vocab;
        // Logits of every batch are appended (All) or overwrite the last (Last);
        // the buffers are reused from call to call.
        self.logits.clear();
        self.greedy = None;
        let mut step = std::mem::take(&mut self.step);
        for chunk in tokens.chunks(self.params.n_batch) {
            let pos0 = self.tokens.len();
            let (model, backends, step_out) = (&self.model, &mut self.backends, &mut step);
            let r = crate::threads::install(|| model.arch().forward(backends, model.weights(), chunk, pos0, which, step_out));
            // A GPU failure mid-run (device lost, timeout): go on on the CPU.
            let r = match r {
                Err(e) if exec::gpu_failed(&e, backends) => {
                    let p = ExecParams { n_seq: 1, n_ctx: self.n_ctx, n_batch: self.params.n_batch, cache_type: self.params.cache_type };
                    let m = model.exec(self.cpu_only);
                    exec::redo_on_cpu(&e, m, p, backends, (&self.tokens, chunk), which, step_out)
                }
                other => other,
            };
            if let Err(e) = r {
                self.step = step;
                return Err(e);
            }
            self.tokens.extend_from_slice(chunk);
            if which != Logits::All {
                self.logits.clear();
            }
            self.logits.extend_from_slice(&step.logits);
            self.greedy = step.token;
        }
        self.step = step;
        debug_assert_eq!(self.logits.len() % vocab, 0);
        Ok(&self.logits)
    }

    /// Evaluates `tokens` and returns the most likely next token (the lowest
    /// id on ties): what greedy sampling picks from [`Session::eval`]'s
    /// logits, but a GPU output head reads back only the id. Leaves
    /// [`Session::logits`] empty.
    ///
    /// ```no_run
    /// # use infer_engine::{Model, ModelOptions, SessionParams};
    /// # fn main() -> infer_engine::Result<()> {
    /// let model = Model::load("model.gguf", ModelOptions::default())?;
    /// let mut session = model.session(SessionParams::default())?;
    /// let mut ids = model.prompt_tokens("The capital of France is")?;
    /// for _ in 0..8 {
    ///     let next = session.eval_greedy(&ids[session.tokens().len()..])?;
    ///     ids.push(next);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn eval_greedy(&mut self, tokens: &[u32]) -> Result<u32> {
        self.eval(tokens, Logits::Greedy)?;
        self.greedy.ok_or_else(|| EngineError::InvalidParam("the greedy step returned no token".into()))
    }

    /// Makes the cache hold exactly `prompt`: reuses the common prefix with
    /// what is cached and evaluates the rest. Returns the last logits.
    pub fn load_prompt(&mut self, prompt: &[u32]) -> Result<&[f32]> {
        if prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if prompt.len() > self.n_ctx {
            return Err(EngineError::PromptTooLong { n_tokens: prompt.len(), n_ctx: self.n_ctx });
        }
        let mut common = self.tokens.iter().zip(prompt).take_while(|(a, b)| a == b).count();
        // At least one token must be evaluated to get logits.
        common = common.min(prompt.len() - 1);
        self.tokens.truncate(common);
        self.backends.truncate_cache(common);
        let start = Instant::now();
        self.eval(&prompt[common..], Logits::Last)?;
        self.timings.prompt_tokens += prompt.len() - common;
        self.timings.prompt_time += start.elapsed();
        Ok(&self.logits)
    }

    /// Appends one token, shifting the context first when it is full and
    /// context shift is on.
    fn push_token(&mut self, id: u32, which: Logits) -> Result<()> {
        if self.tokens.len() + 1 > self.n_ctx {
            if !self.params.context_shift {
                return Err(EngineError::ContextFull { n_ctx: self.n_ctx });
            }
            self.shift_context()?;
        }
        self.eval(&[id], which)?;
        Ok(())
    }

    /// Drops the oldest half of the tokens after `n_keep`, as llama.cpp does,
    /// and rebuilds the cache from the remaining tokens.
    fn shift_context(&mut self) -> Result<()> {
        let n_keep = self.n_keep.min(self.tokens.len().saturating_sub(2));
        let n_discard = (self.tokens.len() - n_keep) / 2;
        if n_discard == 0 {
            return Err(EngineError::ContextFull { n_ctx: self.n_ctx });
        }
        let mut kept: Vec<u32> = self.tokens[..n_keep].to_vec();
        kept.extend_from_slice(&self.tokens[n_keep + n_discard..]);
        self.clear();
        // Re-evaluating is exact for every backend; llama.cpp instead re-ropes the cached keys.
        self.eval(&kept, Logits::Last)?;
        Ok(())
    }

    /// The token the last [`Logits::Greedy`] evaluation picked.
    pub fn greedy_token(&self) -> Option<u32> {
        self.greedy
    }

    /// The last logits computed (empty after a greedy step: greedy generation
    /// reads back only the chosen token).
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Starts generating after `prompt` (the whole conversation so far; a
    /// cached common prefix is reused).
    pub fn generate(
        &mut self,
        prompt: &[u32],
        sampler: SamplerParams,
        options: GenerateOptions,
    ) -> Result<Generation<'_>> {
        let sampler = Sampler::new(sampler)?;
        self.load_prompt(prompt)?;
        Ok(Generation {
            session: self,
            sampler,
            text: StopText::new(options.stop.clone()),
            options,
            generated: Vec::new(),
            finish: None,
            started: false,
            constraint: None,
        })
    }
}

/// An iterator over generated tokens. Ends at an end-of-generation token,
/// `max_tokens`, or a stop string; [`Generation::finish_reason`] says which.
pub struct Generation<'a> {
    session: &'a mut Session,
    sampler: Sampler,
    options: GenerateOptions,
    text: StopText,
    generated: Vec<u32>,
    finish: Option<FinishReason>,
    started: bool,
    /// Structured output: only tokens this grammar allows are sampled.
    constraint: Option<ConstraintState>,
}

impl Generation<'_> {
    /// Samples only what `constraint` allows (greedy or not); generation
    /// ends with [`FinishReason::Eog`] once the grammar is complete.
    ///
    /// ```no_run
    /// # use infer_engine::{Constraint, GenerateOptions, Model, SamplerParams, SessionParams};
    /// # fn main() -> infer_engine::Result<()> {
    /// let model = Model::load("model.gguf", Default::default())?;
    /// let json = Constraint::json_object(model.tokenizer())?;
    /// let mut session = model.session(SessionParams::default())?;
    /// let prompt = model.prompt_tokens("A JSON object about a cat:")?;
    /// let gen = session.generate(&prompt, SamplerParams::greedy(), GenerateOptions::default())?;
    /// let text: String = gen.with_constraint(json.start()).map(|t| t.map(|t| t.text)).collect::<Result<_, _>>()?;
    /// # Ok(()) }
    /// ```
    pub fn with_constraint(mut self, mut constraint: ConstraintState) -> Self {
        constraint.set_max_tokens(self.options.max_tokens);
        self.constraint = Some(constraint);
        self
    }

    /// The constraint's state, if one was set.
    pub fn constraint(&self) -> Option<&ConstraintState> {
        self.constraint.as_ref()
    }

    /// Why generation ended (None while it goes on).
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }
    /// Ids generated so far.
    pub fn ids(&self) -> &[u32] {
        &self.generated
    }

    fn step(&mut self) -> Result<Option<Token>> {
        if self.finish.is_some() {
            return Ok(None);
        }
        if self.generated.len() >= self.options.max_tokens {
            self.finish = Some(FinishReason::Length);
            return Ok(None);
        }
        let start = Instant::now();
        // Greedy without a penalty needs no logits on the host: after the
        // prompt, the head's backend picks the token.
        let p = &self.sampler.params;
        let greedy =
            p.temperature <= 0.0 && (p.repeat_penalty == 1.0 || p.repeat_last_n == 0) && self.constraint.is_none();
        let which = if greedy { Logits::Greedy } else { Logits::Last };
        if self.started {
            let last = *self.generated.last().unwrap_or(&0);
            self.session.push_token(last, which)?;
        }
        self.started = true;
        let id = match (&mut self.constraint, self.session.greedy) {
            (Some(c), _) => self.sampler.sample_constrained(&self.session.logits, &self.session.tokens, c)?,
            (None, Some(id)) if greedy => id,
            (None, _) => self.sampler.sample(&self.session.logits, &self.session.tokens),
        };
        self.session.timings.gen_tokens += 1;
        self.session.timings.gen_time += start.elapsed();
        self.generated.push(id);
        let tok = self.session.model.tokenizer();
        // A grammar closed early for want of tokens ends as if they ran out.
        let cut_short = self.constraint.as_ref().is_some_and(ConstraintState::cut_short);
        if tok.is_eog(id) {
            self.finish = Some(if cut_short { FinishReason::Length } else { FinishReason::Eog });
            // Cache the final token too, so a follow-up turn reuses the prefix.
            if self.session.tokens.len() < self.session.n_ctx {
                self.session.eval(&[id], which)?;
            }
            return Ok(Some(Token { id, text: self.text.finish() }));
        }
        let (text, stopped) = self.text.push(tok, id);
        if stopped {
            self.finish = Some(FinishReason::Stop);
            return Ok(Some(Token { id, text }));
        }
        if self.generated.len() >= self.options.max_tokens {
            self.finish = Some(FinishReason::Length);
            return Ok(Some(Token { id, text: text + &self.text.finish() }));
        }
        Ok(Some(Token { id, text }))
    }
}

/// Generated ids to text for streaming: whole UTF-8 characters only, cut at
/// the first stop string, and holding back any tail that could still grow
/// into one — so text once shown is never taken back.
///
/// ```no_run
/// # use infer_engine::{Model, ModelOptions, session::StopText};
/// # let model = Model::load("model.gguf", ModelOptions::default())?;
/// let mut text = StopText::new(vec!["\n\n".into()]);
/// for id in [1u32, 2, 3] {
///     let (shown, stopped) = text.push(model.tokenizer(), id);
///     print!("{shown}");
///     if stopped { break; }
/// }
/// print!("{}", text.finish());
/// # Ok::<(), infer_engine::EngineError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct StopText {
    decoder: StreamDecoder,
    /// Text held back because it may be the start of a stop string.
    pending: String,
    stop: Vec<String>,
}

impl StopText {
    /// Stops at any of `stop` (empty strings are ignored).
    pub fn new(stop: Vec<String>) -> Self {
        let stop = stop.into_iter().filter(|s| !s.is_empty()).collect();
        StopText { decoder: StreamDecoder::new(), pending: String::new(), stop }
    }

    /// Adds one token. Returns the text now safe to show and whether a stop
    /// string appeared (the text then ends just before it, and nothing more
    /// should be pushed).
    pub fn push(&mut self, tok: &crate::tokenizer::Tokenizer, id: u32) -> (String, bool) {
        self.pending.push_str(&self.decoder.push(tok, id));
        if let Some(cut) = self.stop.iter().filter_map(|s| self.pending.find(s.as_str())).min() {
            self.pending.truncate(cut);
            return (std::mem::take(&mut self.pending), true);
        }
        // Release all text except a tail that could still begin a stop string.
        let hold = self.stop.iter().map(|s| longest_suffix_prefix(&self.pending, s)).max().unwrap_or(0);
        let release = self.pending.len() - hold;
        (self.pending.drain(..release).collect(), false)
    }

    /// What is still held back, at the end of generation (an incomplete
    /// character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending) + &self.decoder.finish()
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`,
/// at a character boundary.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = stop.len().saturating_sub(1).min(text.len());
    (1..=max)
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && stop.as_bytes().starts_with(&text.as_bytes()[text.len() - n..]))
        .unwrap_or(0)
}

impl Iterator for Generation<'_> {
    type Item = Result<Token>;
    fn next(&mut self) -> Option<Self::Item> {
        match self.step() {
            Ok(Some(t)) => Some(Ok(t)),
            Ok(None) => None,
            Err(e) => {
                self.finish = Some(FinishReason::Length);
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::longest_suffix_prefix;

    #[test]
    fn stop_string_prefixes_are_held_back() {
        assert_eq!(longest_suffix_prefix("hello wor", "world"), 3);
        assert_eq!(longest_suffix_prefix("hello", "xyz"), 0);
        assert_eq!(longest_suffix_prefix("ab", "abc"), 2);
    }
}
