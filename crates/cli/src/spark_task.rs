//! `weft spark-task`: one rank of a run whose rows come on standard input as an Arrow IPC
//! stream, as `python/weft_spark` starts it in every Spark barrier task (see weft's
//! `held` module). The lines on standard output are what the task reads: rank 0 prints
//! `weft spark-task: rendezvous HOST:PORT` as soon as it listens, `weft spark-task: progress
//! LINE` for its epoch lines and notes, and the run's JSON result at the end. Progress also
//! goes to standard error (the executor's log).

use std::io::Write;
use std::path::Path;

use weft::{Error, Experiment};

/// The exit status of a rank whose spec or rows are wrong: starting the stage again would
/// fail the same way, so `weft_spark` does not (its `_process.REFUSED`).
const REFUSED: i32 = 4;

/// Runs this rank; on an error, prints it (the spooled rows named as what they are, not
/// by their temporary file) and exits: with [`REFUSED`] when the spec or rows are wrong.
pub fn run(
    spec: &Path,
    spec_name: Option<&str>,
    sets: &[String],
    runs_dir: &Path,
    resume: Option<&Path>,
) -> Result<(), Error> {
    let mut spooled = None;
    let Err(e) = rank(spec, spec_name, sets, runs_dir, resume, &mut spooled) else {
        return Ok(());
    };
    let mut message = e.to_string();
    if let Some(path) = spooled {
        message = message.replace(&path, "the rows of this task's partition");
    }
    eprintln!("error: {message}");
    std::process::exit(if is_definite(&e) {
        REFUSED
    } else if e.is_user_error() {
        2
    } else {
        1
    });
}

/// Whether `e` is in the spec or the rows themselves (not a lost worker, a network failure
/// or a file that could not be read: those may pass on another attempt).
fn is_definite(e: &Error) -> bool {
    use weft_data::DataError;
    match e {
        Error::Spec(_) => true,
        Error::Data(d) => !matches!(d, DataError::Io { .. } | DataError::Parquet { .. }),
        _ => false,
    }
}

fn rank(
    spec: &Path,
    spec_name: Option<&str>,
    sets: &[String],
    runs_dir: &Path,
    resume: Option<&Path>,
    spooled: &mut Option<String>,
) -> Result<(), Error> {
    let exp = match spec_name {
        Some(name) => Experiment::from_file_named(spec, name, sets)?,
        None => Experiment::from_file_with(spec, sets)?,
    };
    // Rank 0 says where it listens first, so the other ranks start while it reads its rows.
    let rank = weft::held::Rank::start(&exp)?;
    if let Some(addr) = rank.rendezvous() {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "weft spark-task: rendezvous {addr}").and_then(|()| out.flush());
    }
    let rows = weft::held::spool(&mut std::io::stdin().lock())?;
    *spooled = Some(rows.path.display().to_string());
    // The task keeps standard input open after the rows' end marker; when it closes, the
    // task is gone (failed, killed, or its stage aborted): so is this process, and no
    // worker outlives its task (Spark does not kill a task's children).
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        eprintln!("weft spark-task: standard input closed (the task that started this process ended); exiting");
        std::process::exit(3);
    });
    // Rank 0's epoch lines also go to standard output: the task relays them to the driver.
    let mut progress = weft::progress::Lines::relayed("weft spark-task: progress ");
    if let Some(result) = rank.run(&exp, rows, runs_dir, resume, &mut progress)? {
        println!("{}", serde_json::to_string(&result).unwrap_or_default());
    }
    Ok(())
}
