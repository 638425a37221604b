//! `infer devices`: the GPU adapters wgpu finds, the one the offload would
//! use (after `INFER_GPU_BACKEND` / `INFER_GPU_ADAPTER`), their limits, and
//! optionally the chosen device's copy bandwidth — the ceiling that decode
//! speed on a fully offloaded model is measured against.

use infer_kernels::gpu::GpuContext;

#[derive(clap::Args, Debug)]
pub struct DevicesArgs {
    /// Also measure the chosen device's copy bandwidth (GB/s, read + write)
    #[arg(long)]
    pub bandwidth: bool,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DevicesArgs) -> anyhow::Result<()> {
    let (adapters, chosen) = GpuContext::list_adapters()?;
    let bandwidth = if args.bandwidth && chosen.is_some() { Some(GpuContext::new()?.copy_bandwidth()?) } else { None };
    if args.json {
        let list: Vec<_> = adapters
            .iter()
            .enumerate()
            .map(|(i, a)| {
                serde_json::json!({
                    "name": a.name,
                    "backend": a.backend,
                    "device_type": a.device_type,
                    "driver": a.driver,
                    "chosen": Some(i) == chosen,
                    "shader_f16": a.shader_f16,
                    "timestamps": a.timestamps,
                    "subgroups": a.subgroups,
                    "max_buffer_bytes": a.max_buffer_bytes,
                    "max_storage_binding_bytes": a.max_storage_binding_bytes,
                    "max_workgroup_storage_bytes": a.max_workgroup_storage_bytes,
                    "cooperative_matrix": a.cooperative_matrix,
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "adapters": list, "copy_bandwidth_gb_s": bandwidth }));
    } else {
        if adapters.is_empty() {
            println!(
                "no GPU adapter found (install a Vulkan/Metal/DX12 driver; on Linux without a GPU, mesa's lavapipe)"
            );
        }
        for (i, a) in adapters.iter().enumerate() {
            let mark = if Some(i) == chosen { "*" } else { " " };
            println!("{mark} {a}, driver {}", a.driver);
            println!(
                "    shader-f16 {}, subgroups {}, timestamps {}, max buffer {} MiB, max storage binding {} MiB, workgroup memory {} KiB",
                a.shader_f16,
                a.subgroups,
                a.timestamps,
                a.max_buffer_bytes >> 20,
                a.max_storage_binding_bytes >> 20,
                a.max_workgroup_storage_bytes >> 10
            );
            if !a.cooperative_matrix.is_empty() {
                println!("    cooperative matrices: {}", a.cooperative_matrix.join(", "));
            }
        }
        match (chosen, bandwidth) {
            (Some(_), Some(bw)) => println!("copy bandwidth of the chosen (*) device: {bw:.1} GB/s (read + write)"),
            (None, _) if !adapters.is_empty() => {
                println!("no adapter matches INFER_GPU_ADAPTER: the offload would fall back to the CPU")
            }
            _ => {}
        }
    }
    Ok(())
}
