//! `weft devices`: the adapters wgpu finds, and which one each `executor.device` takes.

use serde_json::json;

use weft::Result;

#[cfg(feature = "gpu")]
pub fn print(json_out: bool) -> Result<()> {
    use weft_common::units::human_bytes;
    use weft_exec::gpu::{adapters, chosen, Want};
    let list = adapters();
    let auto = chosen(Want::Hardware).map_or("cpu".to_string(), |a| format!("gpu: {}", a.name));
    let gpu = chosen(Want::Any).map_or("none (an error)".to_string(), |a| {
        format!(
            "gpu: {}{}",
            a.name,
            if a.software { " (software)" } else { "" }
        )
    });
    if json_out {
        let rows: Vec<_> = list
            .iter()
            .map(|a| {
                json!({"name": a.name, "backend": a.backend, "type": a.device_type, "driver": a.driver,
                       "software": a.software, "max_buffer_size": a.max_buffer_size,
                       "max_storage_buffer_binding_size": a.max_storage_buffer_binding_size,
                       "max_compute_workgroup_storage_size": a.max_compute_workgroup_storage_size,
                       "max_compute_invocations_per_workgroup": a.max_compute_invocations_per_workgroup,
                       "max_compute_workgroups_per_dimension": a.max_compute_workgroups_per_dimension})
            })
            .collect();
        println!("{}", json!({"adapters": rows, "auto": auto, "gpu": gpu}));
        return Ok(());
    }
    if list.is_empty() {
        println!("no GPU adapters found (wgpu: Vulkan, Metal, DX12)");
    }
    for (i, a) in list.iter().enumerate() {
        println!("[{i}] {} ({}, {})", a.name, a.backend, a.device_type);
        if !a.driver.is_empty() {
            println!("    driver: {}", a.driver);
        }
        println!(
            "    limits: buffer {}, storage binding {}, workgroup memory {}, {} invocations per workgroup, {} workgroups per dimension",
            human_bytes(a.max_buffer_size as f64),
            human_bytes(a.max_storage_buffer_binding_size as f64),
            human_bytes(f64::from(a.max_compute_workgroup_storage_size)),
            a.max_compute_invocations_per_workgroup,
            a.max_compute_workgroups_per_dimension
        );
    }
    println!("executor.device: auto → {auto}");
    println!("executor.device: gpu  → {gpu}");
    Ok(())
}

#[cfg(not(feature = "gpu"))]
pub fn print(json_out: bool) -> Result<()> {
    if json_out {
        println!(
            "{}",
            json!({"adapters": [], "auto": "cpu", "gpu": "none (built without the gpu feature)"})
        );
    } else {
        println!("this build of weft has no GPU executor (built without the `gpu` feature)");
    }
    Ok(())
}
