//! Shared by the router tests: the model they serve, loaded once per test binary.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use infer_engine::{Model, ModelOptions};

/// SmolLM2 from the project's models/ (scripts/fetch-models.sh).
pub fn model() -> Arc<Model> {
    static MODEL: OnceLock<Arc<Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
            Model::load(path, ModelOptions::default()).unwrap()
        })
        .clone()
}
