//! Helpers shared by the subcommands.

use std::path::{Path, PathBuf};

use anyhow::bail;

/// The model used when `-m` and `INFER_MODEL` are both absent.
pub const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The `-m/--model` option every model-reading subcommand flattens in.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArg {
    /// GGUF model file or Hugging Face folder.
    #[arg(short = 'm', long = "model", env = "INFER_MODEL", default_value = DEFAULT_MODEL)]
    pub model: PathBuf,
}

/// Checks that the model file (or Hugging Face folder) exists; a missing
/// file gets an error that says how to fetch the test models rather than a
/// bare "No such file".
pub fn resolve_model(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_file() || path.join("config.json").is_file() {
        return Ok(path.to_path_buf());
    }
    if path.exists() {
        bail!("{} is neither a GGUF file nor a model folder with a config.json", path.display());
    }
    bail!(
        "model file {} not found; run scripts/fetch-models.sh from the repository root to fetch the test models, \
         or pass another GGUF file with -m/--model (or INFER_MODEL)",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_model_error_says_how_to_fetch() {
        let e = resolve_model(Path::new("/nonexistent/x.gguf")).unwrap_err().to_string();
        assert!(e.contains("scripts/fetch-models.sh"), "{e}");
        assert!(e.contains("/nonexistent/x.gguf"), "{e}");
    }
}
