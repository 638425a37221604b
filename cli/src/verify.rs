//! `infer verify`: runs a prompt on the CPU and with the GPU offload and
//! compares every named intermediate; exits non-zero at the first stage
//! over its tolerance. The comparison lives in `infer_engine::verify`.

use crate::gen_args::ModelArgs;

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Greedy decode steps compared after the prompt
    #[arg(long = "decode", default_value_t = 2)]
    pub decode: usize,
    /// The prompt
    #[arg(value_name = "PROMPT")]
    pub prompt: String,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    if args.prompt.is_empty() {
        anyhow::bail!("the prompt is empty");
    }
    let mut margs = args.model.clone();
    if margs.gpu_layers.is_none() && margs.offload.is_none() {
        margs.gpu_layers = Some(infer_engine::GpuLayers::All);
    }
    let model = margs.load()?;
    let ids = model.prompt_tokens(&args.prompt)?;
    let report = infer_engine::verify::verify(&model, &ids, args.decode)?;
    if let Some(i) = report.first_divergent {
        print!("{report}");
        let s = &report.stages[i];
        anyhow::bail!("{} diverges: max rel error {:.3e} over its tolerance {:.1e}", s.name, s.rel, s.tol);
    }
    println!("{}/{} layers on the GPU: every stage within tolerance", report.n_gpu, report.n_total);
    println!("{:<16} {:>14} {:>10}", "stage", "max rel error", "tolerance");
    for (kind, rel, tol) in report.by_kind() {
        println!("{kind:<16} {rel:>14.3e} {tol:>10.1e}");
    }
    Ok(())
}
