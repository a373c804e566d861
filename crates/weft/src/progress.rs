//! Training progress as plain lines (notebooks, logs, pipes); the CLI draws a bar on a
//! terminal instead (weft-cli's `progress.rs`).

use std::io::Write;

use weft_runtime::train::{EpochRecord, Progress};
use weft_runtime::RunError;

/// The line printed for an epoch.
pub fn epoch_line(r: &EpochRecord, epochs: usize) -> String {
    // L-BFGS epochs evaluate the whole set several times: no per-sample rate to show.
    let rate = if r.samples_per_sec.is_finite() {
        format!(" {:.0} samples/s", r.samples_per_sec)
    } else {
        String::new()
    };
    format!(
        "epoch {}/{epochs}: loss {:.4}{} lr {:.3e}{rate}",
        r.epoch,
        r.train_loss,
        r.validation_loss
            .map(|v| format!(" val_loss {v:.4}"))
            .unwrap_or_default(),
        r.lr,
    )
}

/// Prints epoch lines: every epoch on standard output (notebooks), about 20 per run on
/// standard error (the first, the last, evenly between), or those 20 on standard output
/// after a prefix as well as on standard error (a Spark task relays them to its driver).
pub struct Lines {
    sink: Sink,
    epochs: usize,
}

enum Sink {
    Stdout,
    Stderr,
    Relay(&'static str),
}

impl Lines {
    /// One line per epoch on standard output (notebooks: evcxr shows a cell's output as it
    /// comes, and cannot redraw a bar).
    pub fn stdout() -> Lines {
        Lines {
            sink: Sink::Stdout,
            epochs: 0,
        }
    }

    /// Lines on standard error (the CLI when its output is not a terminal).
    pub fn stderr() -> Lines {
        Lines {
            sink: Sink::Stderr,
            epochs: 0,
        }
    }

    /// Lines on standard error, each also on standard output after `prefix`.
    pub fn relayed(prefix: &'static str) -> Lines {
        Lines {
            sink: Sink::Relay(prefix),
            epochs: 0,
        }
    }

    fn print(&self, line: &str) {
        match self.sink {
            Sink::Stdout => println!("{line}"),
            Sink::Stderr => eprintln!("{line}"),
            Sink::Relay(prefix) => {
                eprintln!("{line}");
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{prefix}{line}").and_then(|()| out.flush());
            }
        }
    }
}

impl Progress for Lines {
    fn epoch_start(&mut self, _epoch: usize, epochs: usize, _steps: usize) {
        self.epochs = epochs;
    }

    fn epoch_end(&mut self, r: &EpochRecord) -> Result<(), RunError> {
        let every = match self.sink {
            Sink::Stdout => 1,
            _ => self.epochs.div_ceil(20).max(1),
        };
        if r.epoch.is_multiple_of(every) || r.epoch == self.epochs || r.epoch == 1 {
            self.print(&epoch_line(r, self.epochs));
        }
        Ok(())
    }

    fn note(&mut self, message: &str) {
        self.print(&format!("note: {message}"));
    }
}
