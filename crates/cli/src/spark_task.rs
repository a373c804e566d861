//! `weft spark-task`: one rank of a run whose rows come on standard input as an Arrow IPC
//! stream, as `python/weft_spark` starts it in every Spark barrier task (see weft's
//! `held` module). The lines on standard output are what the task reads: rank 0 prints
//! `weft spark-task: rendezvous HOST:PORT` as soon as it listens, and the run's JSON result
//! at the end. Progress goes to standard error.

use std::io::Write;
use std::path::Path;

use weft::{Error, Experiment};

pub fn run(
    spec: &Path,
    sets: &[String],
    runs_dir: &Path,
    resume: Option<&Path>,
) -> Result<(), Error> {
    let exp = Experiment::from_file_with(spec, sets)?;
    // Rank 0 says where it listens first, so the other ranks start while it reads its rows.
    let rank = weft::held::Rank::start(&exp)?;
    if let Some(addr) = rank.rendezvous() {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "weft spark-task: rendezvous {addr}").and_then(|()| out.flush());
    }
    let rows = weft::held::spool(&mut std::io::stdin().lock())?;
    // The task keeps standard input open after the rows' end marker; when it closes, the
    // task is gone (failed, killed, or its stage aborted): so is this process, and no
    // worker outlives its task (Spark does not kill a task's children).
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        eprintln!("weft spark-task: standard input closed (the task that started this process ended); exiting");
        std::process::exit(3);
    });
    let mut progress = weft::progress::Lines::stderr();
    if let Some(result) = rank.run(&exp, rows, runs_dir, resume, &mut progress)? {
        println!("{}", serde_json::to_string(&result).unwrap_or_default());
    }
    Ok(())
}
