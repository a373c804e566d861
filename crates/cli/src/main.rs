//! The `weft` command line: parses arguments, calls `try_main`, prints errors and exits 2.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use weft::{predict, Error, Experiment};

mod bench;
mod bench_dist;
#[cfg(feature = "gpu")]
mod bench_gpu;
mod bench_stream;
mod devices;
mod progress;
mod serve;
mod spark_task;

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "Declarative deep-learning workflows: one spec, CPU, GPU or cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check everything short of training: the spec, the data, the plan, what this machine
    /// can run; `--resolved` prints the spec with every default filled in instead.
    Check {
        spec: PathBuf,
        /// Override a value: `--set train.optimizer.adam.lr=0.01` (repeatable).
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
        /// Print the resolved spec as JSON.
        #[arg(long)]
        resolved: bool,
        /// Also read, split and preprocess every row (missing values, unseen classes, empty
        /// splits); without it only headers and metadata are read.
        #[arg(long)]
        rows: bool,
    },
    /// Compile a spec and print its plan; given a run directory, print the plan that run
    /// trained with (its plan.json).
    Plan {
        /// A spec file, or a run directory (runs/<name>/<id>).
        spec: PathBuf,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Print the graph after every planner pass first (build, fusion, autodiff, updates).
        #[arg(long)]
        verbose: bool,
    },
    /// Train and evaluate; writes runs/<name>/<id>/.
    Run {
        spec: PathBuf,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
        /// Print one JSON object with the results at the end (and no table).
        #[arg(long)]
        json: bool,
        /// Folder that run directories go into.
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
        /// Continue a run from its last checkpoint, in its own folder (runs/<name>/<id>).
        #[arg(long, value_name = "RUN_DIR")]
        resume: Option<PathBuf>,
    },
    /// Serve as a worker for distributed runs (`parallelism.data`): an HTTP control API for
    /// the driver and a TCP data plane for the other workers. Needs the cluster's token in
    /// WEFT_TOKEN or --token-file. `RUST_LOG=info` logs every job.
    Worker {
        /// Control API address; binds loopback unless told otherwise (`0.0.0.0:7000`).
        #[arg(long, default_value = "127.0.0.1:7000")]
        listen: String,
        /// Data-plane address (default: a free port on the control address's interface).
        #[arg(long)]
        data_listen: Option<String>,
        /// File holding the token (instead of WEFT_TOKEN).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Exit when standard input closes (how a driver's local workers end with it).
        #[arg(long)]
        exit_with_parent: bool,
        /// Seconds a client has to send a request's head (control API) or its hello (data
        /// plane); idle connections are closed after it.
        #[arg(long, default_value_t = 10.0, value_parser = positive_seconds)]
        header_timeout_s: f64,
        /// Open control connections at most; more are closed on arrival.
        #[arg(long, default_value_t = 512)]
        max_connections: usize,
    },
    /// Predict with a trained model (a run directory) on a CSV, Parquet or Arrow file, an IDX
    /// images file or an image folder; with
    /// `--input -`, on an Arrow IPC stream on standard input, writing an Arrow IPC stream of
    /// predictions (`prediction`, `probability`) to standard output, batch for batch.
    Predict {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        input: PathBuf,
        /// Write predictions as CSV here (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Serve the browser viewer: the workflow, compute graph and plan of SPEC (default: the
    /// built-in Iris spec), a spec editor that recompiles as you type, and with --run the
    /// live loss chart of training it. Build the page first: scripts/build-web.sh.
    Serve {
        spec: Option<PathBuf>,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
        /// 0 picks a free port (printed).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Address to bind; loopback unless told otherwise.
        #[arg(long, default_value = "127.0.0.1")]
        listen: String,
        /// Train the spec and stream its epochs to the page.
        #[arg(long)]
        run: bool,
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
    },
    /// One rank of a run whose rows come on standard input as an Arrow IPC stream: what
    /// each Spark barrier task of `weft_spark` runs (RANK, WORLD_SIZE, MASTER_ADDR,
    /// MASTER_PORT and WEFT_TOKEN set by it). Rank 0 prints `weft spark-task: rendezvous
    /// HOST:PORT` when it listens, and the run's JSON result at the end.
    SparkTask {
        spec: PathBuf,
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
        /// Rank 0: continue this run (a retried stage) from its last checkpoint.
        #[arg(long, value_name = "RUN_DIR")]
        resume: Option<PathBuf>,
        /// The spec's name in messages (its path where the user wrote it), not the copy's.
        #[arg(long, value_name = "NAME")]
        spec_name: Option<String>,
    },
    /// Print the JSON Schema of the spec (for editor completion).
    Schema,
    /// Measure training throughput on the benchmark specs.
    Bench {
        /// Benchmark names (default: all): higgs-b32, higgs-b1024, mnist-b128; on their own:
        /// allreduce, traffic, scaling, layout, gpu, stream (a HIGGS-shaped Parquet data set
        /// of `--rows` rows, default 36M ≈ 4.3 GB, streamed against 100k rows in memory).
        names: Vec<String>,
        /// Rows of synthetic data (default: each benchmark's own, 100k / 60k).
        #[arg(long)]
        rows: Option<usize>,
        /// Also run this baseline command per benchmark and print ratios (see BENCHMARKS.md).
        #[arg(long)]
        baseline: Option<String>,
        #[arg(long)]
        json: bool,
        /// Worker counts for allreduce / traffic / scaling (`2,4,8`).
        #[arg(long, value_delimiter = ',')]
        workers: Vec<usize>,
        /// Use these running workers (control addresses, WEFT_TOKEN) instead of local ones.
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
        /// Largest all-reduce in MiB (allreduce; sizes go up by 4× from 1 KiB).
        #[arg(long, default_value_t = 256)]
        max_mib: u64,
        /// The link's rate in Mbit/s for the ratio column (an emulated link); default: one
        /// TCP stream over loopback, measured in the same run.
        #[arg(long)]
        link_mbit: Option<f64>,
        /// Batch size per worker (scaling).
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Square matrix sizes (gpu; default 1024,2048,4096,8192).
        #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..))]
        sizes: Vec<u64>,
        /// Training batch sizes (gpu; default 32,1024,8192).
        #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..))]
        batches: Vec<u64>,
        /// Python with PyTorch, to run the same GPU workloads side by side (gpu).
        #[arg(long)]
        torch: Option<String>,
        /// Folder where `stream` generates its Parquet data set and keeps it for the next run
        /// (default: a folder in the temporary directory).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// List the GPU adapters wgpu finds (name, backend, type, limits) and what
    /// `executor.device: auto` would pick.
    Devices {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Dot,
    Json,
    /// The workflow and compute graph drawn as SVG.
    Svg,
}

fn main() -> ExitCode {
    // Vulkan drivers probe for a Wayland display while wgpu lists adapters; without
    // XDG_RUNTIME_DIR (servers, containers) libwayland prints a bogus "error:" line. Point
    // it at the temp folder, where no display socket answers. Done first, before any thread.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    init_tracing();
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    match try_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.is_user_error() { 2 } else { 1 })
        }
    }
}

/// `weft plan … | head` closes standard output early: like other command-line tools, weft
/// then stops quietly (exit 0) instead of panicking on the broken pipe. (Rust ignores
/// SIGPIPE, which sockets rely on, so a failed print is a panic to catch here.)
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.starts_with("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// A number of seconds in (0, 1 week].
fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 604_800.0 => Ok(v),
        _ => Err(format!("`{s}` is not a number of seconds in (0, 604800]")),
    }
}

fn init_tracing() {
    use tracing_subscriber::filter::Targets;
    let filter: Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::WARN));
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .try_init();
}

// The error is printed once and the process exits; its size does not matter here.
#[allow(clippy::result_large_err)]
fn try_main(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Check {
            spec,
            sets,
            resolved,
            rows,
        } => {
            let exp = Experiment::from_file_with(&spec, &sets)?;
            if resolved {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&exp.resolved()).unwrap_or_default()
                );
            } else {
                // Everything short of training: the spec, that this build and machine can run
                // it (device, workers), that the data loads and the model compiles against it.
                let c = if rows {
                    exp.check_rows()?
                } else {
                    exp.check()?
                };
                println!(
                    "{}: {c} ({} layers, loss {}, optimizer {})",
                    spec.display(),
                    weft::layer_count(exp.spec()),
                    exp.spec().train.loss.name(),
                    exp.spec().train.optimizer.name()
                );
            }
        }
        Command::Plan {
            spec,
            sets,
            format,
            verbose,
        } => {
            let plan = if spec.is_dir() {
                if !sets.is_empty() || verbose {
                    return Err(weft::Error::Io {
                        path: spec.display().to_string(),
                        message: "a run directory's plan is the one it trained with: --set and --verbose take a spec file".into(),
                    });
                }
                weft::PlanView {
                    plan: weft_runtime::rundir::load_plan(&spec)?,
                }
            } else {
                spec_plan(&spec, &sets, verbose)?
            };
            let text = match format {
                Format::Text => weft_planner::display::text(&plan),
                Format::Dot => weft_planner::display::dot(&plan),
                Format::Json => weft_planner::display::json(&plan),
                Format::Svg => plan.svg(),
            };
            print!("{text}");
        }
        Command::Run {
            spec,
            sets,
            json,
            runs_dir,
            resume,
        } => {
            let exp = Experiment::from_file_with(&spec, &sets)?;
            if let Some(role) = weft::distributed::env_worker_role(&exp)? {
                // A launcher started this process as rank > 0: it serves as a worker.
                eprintln!("{role}");
                weft::distributed::serve_env_worker(&exp)?;
                return Ok(());
            }
            let go = |p: &mut dyn weft::Progress| {
                let mut p = progress::Interruptible::new(p);
                match &resume {
                    Some(dir) => exp.resume_with(dir, &mut p),
                    None => exp.run_with(&runs_dir, &mut p),
                }
            };
            let result = if std::io::stderr().is_terminal() {
                let mut bar = progress::Bar::new();
                let r = go(&mut bar);
                bar.finish();
                r
            } else {
                go(&mut weft::progress::Lines::stderr())
            };
            let result = match result {
                Err(Error::NothingToDo(message)) => {
                    eprintln!("{message}");
                    return Ok(());
                }
                r => r?,
            };
            if json {
                println!("{}", serde_json::to_string(&result).unwrap_or_default());
            } else {
                print!("{}", weft::report::table(&result));
            }
        }
        Command::Predict {
            model,
            input,
            output,
        } => {
            if input.as_os_str() == "-" {
                if output.is_some() {
                    return Err(Error::Io {
                        path: "--output".into(),
                        message: "with `--input -` the predictions go to standard output as an Arrow IPC stream; leave --output out".into(),
                    });
                }
                let stdout = std::io::stdout();
                weft::predict_ipc::predict_ipc(
                    &model,
                    &mut std::io::stdin().lock(),
                    &mut stdout.lock(),
                )?;
                return Ok(());
            }
            // Streamed: the input is read, predicted and written a piece at a time.
            let p = match &output {
                Some(path) => {
                    let mut file = weft_runtime::rundir::AtomicFile::create(path)?;
                    let p = predict::predict_stream(&model, &input, &mut file)?;
                    file.commit()?;
                    eprintln!("wrote {} predictions to {}", p.rows, path.display());
                    p
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut out = std::io::BufWriter::new(stdout.lock());
                    predict::predict_stream(&model, &input, &mut out)?
                }
            };
            if let Some(acc) = p.accuracy {
                eprintln!("accuracy on {}: {acc} ({} rows)", input.display(), p.rows);
            }
            if let Some(m) = &p.regression {
                let text: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
                eprintln!(
                    "on {}: {} ({} rows)",
                    input.display(),
                    text.join(", "),
                    p.rows
                );
            }
        }
        Command::Worker {
            listen,
            data_listen,
            token_file,
            exit_with_parent,
            header_timeout_s,
            max_connections,
        } => {
            if let Some(f) = token_file {
                std::env::set_var("WEFT_TOKEN_FILE", f);
            }
            let token = weft::distributed::token(false)?;
            let limits = weft_dist::http::Limits {
                header_timeout: std::time::Duration::from_secs_f64(header_timeout_s),
                max_connections,
            };
            let w = weft_dist::worker::start_worker_with(
                &listen,
                data_listen.as_deref(),
                &token,
                limits,
            )?;
            // The driver reads this line to learn the addresses (keep its format). A driver
            // that died before it was read leaves a closed pipe: this worker is not needed.
            use std::io::Write;
            let ready = format!(
                "weft worker: control {} data {} pid {}\n",
                w.control,
                w.data,
                std::process::id()
            );
            let mut stdout = std::io::stdout();
            if let Err(e) = stdout
                .write_all(ready.as_bytes())
                .and_then(|()| stdout.flush())
            {
                eprintln!("weft worker: cannot report its addresses ({e}); the process that started it is gone, exiting");
                return Ok(());
            }
            if exit_with_parent {
                let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            } else {
                loop {
                    std::thread::park();
                }
            }
        }
        Command::Serve {
            spec,
            sets,
            port,
            listen,
            run,
            runs_dir,
        } => {
            let exp = match spec {
                Some(path) => {
                    // The spec is read (bounded, UTF-8 checked) and validated first.
                    let exp = Experiment::from_file_with(&path, &sets)?;
                    let text = weft::read_spec_text(&path)?;
                    Some((path.display().to_string(), text, exp))
                }
                None => None,
            };
            serve::serve(exp, &listen, port, run, &runs_dir)?;
        }
        Command::SparkTask {
            spec,
            sets,
            runs_dir,
            resume,
            spec_name,
        } => spark_task::run(
            &spec,
            spec_name.as_deref(),
            &sets,
            &runs_dir,
            resume.as_deref(),
        )?,
        Command::Devices { json } => devices::print(json)?,
        Command::Schema => println!(
            "{}",
            serde_json::to_string_pretty(&weft_dsl::json_schema()).unwrap_or_default()
        ),
        Command::Bench {
            names,
            rows,
            baseline,
            json,
            workers,
            hosts,
            max_mib,
            link_mbit,
            batch,
            sizes,
            batches,
            torch,
            data,
        } => {
            let dist = bench::DistOptions {
                workers,
                hosts,
                max_bytes: max_mib << 20,
                link_mbit,
                batch,
                // clap's ranged parser gives u64; 1.. keeps a 0 out (a 0×0 matmul).
                sizes: sizes.into_iter().map(|n| n as usize).collect(),
                batches: batches.into_iter().map(|n| n as usize).collect(),
                torch,
                data_dir: data,
            };
            bench::run(&names, rows, baseline.as_deref(), json, &dist)?
        }
    }
    Ok(())
}

/// The plan `weft plan SPEC` prints; with `verbose`, the graph after every pass first.
fn spec_plan(spec: &Path, sets: &[String], verbose: bool) -> Result<weft::PlanView, weft::Error> {
    let exp = Experiment::from_file_with(spec, sets)?;
    if !verbose {
        return exp.plan();
    }
    let (plan, passes) = exp.plan_traced()?;
    for p in &passes {
        println!("== after {}: {}", p.pass, p.summary);
        for line in p.graph.lines() {
            println!("  {line}");
        }
    }
    let s = &plan.schedules;
    println!(
        "== after dead-code elimination: a training step runs {} of {} nodes, an evaluation {}, a prediction {}",
        s.train.len(),
        plan.nodes.len(),
        s.eval.len(),
        s.predict.len()
    );
    println!("== plan");
    Ok(plan)
}
