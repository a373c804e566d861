//! Training progress as plain lines (notebooks, logs, pipes); the CLI draws a bar on a
//! terminal instead (weft-cli's `progress.rs`).

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
/// standard error (the first, the last, evenly between).
pub struct Lines {
    stdout: bool,
    epochs: usize,
}

impl Lines {
    /// One line per epoch on standard output (notebooks: evcxr shows a cell's output as it
    /// comes, and cannot redraw a bar).
    pub fn stdout() -> Lines {
        Lines {
            stdout: true,
            epochs: 0,
        }
    }

    /// Lines on standard error (the CLI when its output is not a terminal).
    pub fn stderr() -> Lines {
        Lines {
            stdout: false,
            epochs: 0,
        }
    }
}

impl Progress for Lines {
    fn epoch_start(&mut self, _epoch: usize, epochs: usize, _steps: usize) {
        self.epochs = epochs;
    }

    fn epoch_end(&mut self, r: &EpochRecord) -> Result<(), RunError> {
        let every = if self.stdout {
            1
        } else {
            self.epochs.div_ceil(20).max(1)
        };
        if r.epoch.is_multiple_of(every) || r.epoch == self.epochs || r.epoch == 1 {
            let line = epoch_line(r, self.epochs);
            if self.stdout {
                println!("{line}");
            } else {
                eprintln!("{line}");
            }
        }
        Ok(())
    }

    fn note(&mut self, message: &str) {
        if self.stdout {
            println!("note: {message}");
        } else {
            eprintln!("note: {message}");
        }
    }
}
