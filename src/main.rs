//! The `weft` command line: parses arguments, calls `try_main`, prints errors and exits 2.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use weft::{bench, predict, Error, Experiment};

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
    /// Validate a spec and print it with every default filled in.
    Check {
        spec: PathBuf,
        /// Override a value: `--set train.optimizer.adam.lr=0.01` (repeatable).
        #[arg(long = "set", value_name = "PATH=VALUE")]
        sets: Vec<String>,
        /// Print the resolved spec as JSON.
        #[arg(long)]
        resolved: bool,
    },
    /// Compile a spec and print its plan.
    Plan {
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
    },
    /// Predict with a trained model (a run directory) on a CSV or Parquet file.
    Predict {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        input: PathBuf,
        /// Write predictions as CSV here (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Print the JSON Schema of the spec (for editor completion).
    Schema,
    /// Measure training throughput on the benchmark specs.
    Bench {
        /// Benchmark names (default: all): higgs-b32, higgs-b1024, mnist-b128.
        names: Vec<String>,
        /// Rows of synthetic data (default: each benchmark's own, 100k / 60k).
        #[arg(long)]
        rows: Option<usize>,
        /// Also run this baseline command per benchmark and print ratios (see BENCHMARKS.md).
        #[arg(long)]
        baseline: Option<String>,
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
    init_tracing();
    let cli = Cli::parse();
    match try_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.is_user_error() { 2 } else { 1 })
        }
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
        } => {
            let exp = Experiment::from_file_with(&spec, &sets)?;
            if resolved {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&exp.resolved()).unwrap_or_default()
                );
            } else {
                println!(
                    "{}: ok ({} layers, loss {}, optimizer {})",
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
            let exp = Experiment::from_file_with(&spec, &sets)?;
            let plan = if !verbose {
                exp.plan()?
            } else {
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
                plan
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
        } => {
            let exp = Experiment::from_file_with(&spec, &sets)?;
            let result = if std::io::stderr().is_terminal() {
                let mut bar = weft::progress::Bar::new();
                let r = exp.run_with(&runs_dir, &mut bar);
                bar.finish();
                r?
            } else {
                exp.run_with(&runs_dir, &mut weft::progress::Lines::stderr())?
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
            let p = predict::predict(&model, &input)?;
            let csv = p.to_csv();
            match output {
                Some(path) => {
                    weft_executors::rundir::write_atomic(&path, csv.as_bytes())?;
                    eprintln!("wrote {} predictions to {}", p.rows(), path.display());
                }
                None => print!("{csv}"),
            }
            if let Some(acc) = p.accuracy() {
                eprintln!("accuracy on {}: {acc} ({} rows)", input.display(), p.rows());
            }
        }
        Command::Schema => println!(
            "{}",
            serde_json::to_string_pretty(&weft_dsl::json_schema()).unwrap_or_default()
        ),
        Command::Bench {
            names,
            rows,
            baseline,
            json,
        } => bench::run(&names, rows, baseline.as_deref(), json)?,
    }
    Ok(())
}
