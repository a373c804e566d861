//! The wgpu device: finding adapters, opening a device with the adapter's own limits,
//! turning wgpu's errors (validation, out of memory, device lost, hangs) into `ExecError`s
//! instead of panics, buffers with their size checked against the limits, and read-back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use weft_common::units::human_bytes;

use crate::error::ExecError;

/// What `executor.device` asks of the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Want {
    /// A real GPU only (`auto`): no software rasteriser.
    Hardware,
    /// Any adapter, a software one if there is no GPU (`gpu`).
    Any,
}

/// One adapter as `weft devices` lists it.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub software: bool,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroups_per_dimension: u32,
}

fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
    wgpu::Instance::new(desc)
}

fn is_software(info: &wgpu::AdapterInfo) -> bool {
    info.device_type == wgpu::DeviceType::Cpu
}

/// Every adapter wgpu finds (Vulkan, Metal, DX12), real GPUs first.
pub fn adapters() -> Vec<AdapterSummary> {
    all_adapters(&instance())
        .iter()
        .map(|a| {
            let (info, l) = (a.get_info(), a.limits());
            AdapterSummary {
                name: info.name.clone(),
                backend: format!("{:?}", info.backend).to_lowercase(),
                device_type: device_type_name(info.device_type).into(),
                driver: format!("{} {}", info.driver, info.driver_info)
                    .trim()
                    .to_string(),
                software: is_software(&info),
                max_buffer_size: l.max_buffer_size,
                max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
                max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
                max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
                max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
            }
        })
        .collect()
}

/// The adapter a device setting takes (what `weft devices` shows for `auto` and `gpu`).
pub fn chosen(want: Want) -> Option<AdapterSummary> {
    pick(adapters(), |a| a.software, want, 0)
}

/// The `nth` adapter (modulo their number) of those `want` may take: the real GPUs when
/// there are any; software adapters only when there are none and `want` is `Any`. `list`
/// is in `all_adapters` order.
fn pick<T>(list: Vec<T>, software: impl Fn(&T) -> bool, want: Want, nth: usize) -> Option<T> {
    let (hardware, soft): (Vec<T>, Vec<T>) = list.into_iter().partition(|a| !software(a));
    let mut suitable = if hardware.is_empty() && want == Want::Any {
        soft
    } else {
        hardware
    };
    if suitable.is_empty() {
        return None;
    }
    let i = nth % suitable.len();
    Some(suitable.swap_remove(i))
}

fn all_adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    let mut list = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    // Discrete before integrated before virtual before software.
    list.sort_by_key(|a| match a.get_info().device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    });
    list
}

fn device_type_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete GPU",
        wgpu::DeviceType::IntegratedGpu => "integrated GPU",
        wgpu::DeviceType::VirtualGpu => "virtual GPU",
        wgpu::DeviceType::Cpu => "software (CPU)",
        wgpu::DeviceType::Other => "other",
    }
}

/// An open device, shared by every GPU executor of the process (opening one costs tens of
/// milliseconds, and compiled kernels are kept here).
pub struct GpuContext {
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub layout: wgpu::BindGroupLayout,
    pub pipeline_layout: wgpu::PipelineLayout,
    /// Bound where a kernel leaves a read or write binding unused (one per write binding:
    /// a buffer may not be bound writable twice in one dispatch).
    dummy_read: wgpu::Buffer,
    dummy_write: Vec<wgpu::Buffer>,
    pub(crate) pipelines: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
    errors: Arc<Mutex<Vec<String>>>,
    lost: Arc<Mutex<Option<String>>>,
    /// How long a submission may run before it is reported as hung (`WEFT_GPU_TIMEOUT_S`).
    timeout: Duration,
}

impl GpuContext {
    /// The process's shared device for `want` on the `nth` suitable adapter (modulo their
    /// number): `Ok(None)` when there is none.
    pub fn shared(want: Want, nth: usize) -> Result<Option<Arc<GpuContext>>, ExecError> {
        type Shared = Mutex<HashMap<(Want, usize), Arc<GpuContext>>>;
        static SHARED: OnceLock<Shared> = OnceLock::new();
        let map = SHARED.get_or_init(|| Mutex::new(HashMap::new()));
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ctx) = map.get(&(want, nth)) {
            if ctx.lost_reason().is_none() {
                return Ok(Some(ctx.clone()));
            }
        }
        let Some(ctx) = GpuContext::open_nth(want, nth, |_| {})? else {
            return Ok(None);
        };
        let ctx = Arc::new(ctx);
        map.insert((want, nth), ctx.clone());
        Ok(Some(ctx))
    }

    /// Opens a new device on the first adapter that fits `want`, with the adapter's limits
    /// passed through `adjust` (tests lower them to provoke limit errors).
    pub fn open(
        want: Want,
        adjust: impl FnOnce(&mut wgpu::Limits),
    ) -> Result<Option<GpuContext>, ExecError> {
        GpuContext::open_nth(want, 0, adjust)
    }

    /// [`GpuContext::open`] on the `nth` adapter `want` may take (see `pick`).
    pub fn open_nth(
        want: Want,
        nth: usize,
        adjust: impl FnOnce(&mut wgpu::Limits),
    ) -> Result<Option<GpuContext>, ExecError> {
        let adapters = all_adapters(&instance());
        let Some(adapter) = pick(adapters, |a| is_software(&a.get_info()), want, nth) else {
            return Ok(None);
        };
        let info = adapter.get_info();
        let mut limits = adapter.limits();
        adjust(&mut limits);
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("weft"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| ExecError::Gpu(format!("could not open {}: {e}", info.name)))?;
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(e.to_string());
        }));
        let lost: Arc<Mutex<Option<String>>> = Arc::default();
        let sink = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            *sink.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(format!("{reason:?}: {message}"));
        });
        let layout = bind_group_layout(&device);
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("weft kernels"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let timeout = match std::env::var("WEFT_GPU_TIMEOUT_S") {
            Err(_) => Duration::from_secs(120),
            Ok(s) => s
                .parse::<f64>()
                .ok()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .filter(|d| !d.is_zero())
                .unwrap_or_else(|| {
                    tracing::warn!(
                        "WEFT_GPU_TIMEOUT_S={s:?} is not a positive number of seconds; waiting 120 s"
                    );
                    Duration::from_secs(120)
                }),
        };
        let dummy = |label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        Ok(Some(GpuContext {
            dummy_read: dummy("unused read binding"),
            dummy_write: WRITE_BINDINGS
                .iter()
                .map(|_| dummy("unused write binding"))
                .collect(),
            info,
            limits,
            device,
            queue,
            layout,
            pipeline_layout,
            pipelines: Mutex::default(),
            errors,
            lost,
            timeout,
        }))
    }

    pub fn is_software(&self) -> bool {
        is_software(&self.info)
    }

    /// `NVIDIA H100 80GB HBM3 (vulkan)`.
    pub fn name(&self) -> String {
        format!(
            "{} ({})",
            self.info.name,
            format!("{:?}", self.info.backend).to_lowercase()
        )
    }

    fn lost_reason(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The first error wgpu reported since the last check, if any.
    pub fn check(&self) -> Result<(), ExecError> {
        if let Some(reason) = self.lost_reason() {
            return Err(ExecError::Gpu(format!(
                "the GPU device was lost ({reason}); the run stops here, the last checkpoint is kept"
            )));
        }
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.is_empty() {
            return Ok(());
        }
        let first = errors.remove(0);
        let more = errors.len();
        errors.clear();
        Err(ExecError::Gpu(if more > 0 {
            format!("{first} (and {more} more errors)")
        } else {
            first
        }))
    }

    /// Waits for every submitted command, with the hang timeout.
    pub fn wait(&self) -> Result<(), ExecError> {
        let r = self.device.poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: Some(self.timeout),
        });
        self.check()?;
        r.map(|_| ()).map_err(|e| match e {
            wgpu::PollError::Timeout => ExecError::Gpu(format!(
                "the GPU did not finish its work within {:.0} s (hung, or far too slow: set WEFT_GPU_TIMEOUT_S to wait longer)",
                self.timeout.as_secs_f64()
            )),
            other => ExecError::Gpu(format!("waiting for the GPU failed: {other}")),
        })
    }

    /// A device buffer of `bytes` (at least 4) for `what`, checked against the adapter's
    /// limits and created under an out-of-memory error scope.
    pub fn buffer(
        &self,
        what: &str,
        bytes: u64,
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer, ExecError> {
        let bytes = bytes.max(4).next_multiple_of(4);
        let storage_limit = self.limits.max_storage_buffer_binding_size;
        if usage.contains(wgpu::BufferUsages::STORAGE) && bytes > storage_limit {
            return Err(self.too_large(
                what,
                bytes,
                "max_storage_buffer_binding_size",
                storage_limit,
            ));
        }
        if bytes > self.limits.max_buffer_size {
            return Err(self.too_large(
                what,
                bytes,
                "max_buffer_size",
                self.limits.max_buffer_size,
            ));
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size: bytes,
            usage,
            mapped_at_creation: false,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(ExecError::Gpu(format!(
                "out of GPU memory: {what} needs {} on {}: {e}; use a smaller batch_size or model",
                human_bytes(bytes as f64),
                self.info.name
            )));
        }
        Ok(buffer)
    }

    fn too_large(&self, what: &str, bytes: u64, limit: &str, value: u64) -> ExecError {
        ExecError::Gpu(format!(
            "{what} needs {} but {} allows at most {} per buffer ({limit}); use a smaller batch_size or narrower layers",
            human_bytes(bytes as f64),
            self.info.name,
            human_bytes(value as f64)
        ))
    }

    /// Copies `bytes` of `src` back to the host (waits for the GPU).
    pub fn read(&self, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<f32>, ExecError> {
        self.read_at(src, 0, bytes)
    }

    /// Reads `bytes` of `src` from byte `offset` on (both multiples of 4).
    pub fn read_at(
        &self,
        src: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) -> Result<Vec<f32>, ExecError> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.buffer(
            "read-back",
            bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("read"),
            });
        enc.copy_buffer_to_buffer(src, offset, &staging, 0, bytes);
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ExecError::Gpu(format!("reading from the GPU failed: {e}"))),
            Err(_) => {
                return Err(ExecError::Gpu(
                    "reading from the GPU did not complete".into(),
                ))
            }
        }
        let data = staging
            .get_mapped_range(..)
            .map_err(|e| ExecError::Gpu(format!("reading from the GPU failed: {e}")))?;
        // The mapping need not be aligned for f32 in host memory: decode bytes.
        let out: Vec<f32> = data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        drop(data);
        staging.unmap();
        Ok(out)
    }
}

impl GpuContext {
    /// The bind group of one kernel launch in the layout every kernel shares (common.wgsl):
    /// its parameters, the step's scalars, then its read and write buffers in order.
    pub fn bind_group(
        &self,
        label: &str,
        params: wgpu::BufferBinding<'_>,
        step: &wgpu::Buffer,
        reads: &[wgpu::BufferBinding<'_>],
        writes: &[wgpu::BufferBinding<'_>],
    ) -> Result<wgpu::BindGroup, ExecError> {
        if reads.len() > READ_BINDINGS.len() || writes.len() > WRITE_BINDINGS.len() {
            return Err(ExecError::Internal(format!(
                "the kernel {label} has more arguments than the binding layout"
            )));
        }
        let mut entries = vec![
            wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(params),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: step.as_entire_binding(),
            },
        ];
        for (k, binding) in READ_BINDINGS.iter().enumerate() {
            let buf = reads
                .get(k)
                .cloned()
                .unwrap_or_else(|| self.dummy_read.as_entire_buffer_binding());
            entries.push(wgpu::BindGroupEntry {
                binding: *binding,
                resource: wgpu::BindingResource::Buffer(buf),
            });
        }
        for (k, binding) in WRITE_BINDINGS.iter().enumerate() {
            let buf = writes
                .get(k)
                .cloned()
                .unwrap_or_else(|| self.dummy_write[k].as_entire_buffer_binding());
            entries.push(wgpu::BindGroupEntry {
                binding: *binding,
                resource: wgpu::BindingResource::Buffer(buf),
            });
        }
        Ok(self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &self.layout,
            entries: &entries,
        }))
    }
}

fn bind_group_layout(device: &wgpu::Device) -> wgpu::BindGroupLayout {
    let entry = |binding: u32, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    };
    let mut entries = vec![
        entry(0, wgpu::BufferBindingType::Uniform),
        entry(1, wgpu::BufferBindingType::Uniform),
    ];
    for b in READ_BINDINGS {
        entries.push(entry(
            b,
            wgpu::BufferBindingType::Storage { read_only: true },
        ));
    }
    for b in WRITE_BINDINGS {
        entries.push(entry(
            b,
            wgpu::BufferBindingType::Storage { read_only: false },
        ));
    }
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("weft kernel bindings"),
        entries: &entries,
    })
}

/// Read-only storage bindings of every kernel (common.wgsl).
const READ_BINDINGS: [u32; 4] = [2, 3, 4, 5];
/// Read-write storage bindings of every kernel.
const WRITE_BINDINGS: [u32; 3] = [6, 7, 8];
