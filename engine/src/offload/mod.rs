//! GPU offload, in one direction of use: [`plan`] decides which layers
//! (and experts) run on the GPU from the architecture's tensor table,
//! [`upload`] puts their weights there at model load, and [`exec`] builds a
//! session's backends from the plan.
//!
//! As in llama.cpp, the last layers go to the GPU first and the output head
//! counts as one layer: with `N` blocks there are `N + 1` layers, `-ngl 1`
//! puts only the head on the GPU and `-ngl N+1` puts everything there. The
//! first layers run on the CPU, so the hidden state crosses once per step.

pub mod exec;
pub mod plan;
pub mod upload;

pub use plan::{choose_gpu_layers, session_ctx, CpuMoe, GpuLayers, MemSplit, OffloadEstimate, OffloadPlan};
pub use upload::{GpuOffload, OffloadRequest};
