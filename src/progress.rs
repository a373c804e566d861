//! Training progress: plain lines (notebooks, logs, pipes) or, in the CLI on a terminal, an
//! indicatif bar.

use weft_executors::train::{EpochRecord, Progress};
use weft_executors::ExecError;

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

    fn epoch_end(&mut self, r: &EpochRecord) -> Result<(), ExecError> {
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

/// A terminal progress bar per epoch, with one printed line per epoch above it.
#[cfg(feature = "cli")]
pub struct Bar {
    bar: Option<indicatif::ProgressBar>,
    epochs: usize,
}

#[cfg(feature = "cli")]
impl Bar {
    pub fn new() -> Bar {
        Bar {
            bar: None,
            epochs: 0,
        }
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

#[cfg(feature = "cli")]
impl Default for Bar {
    fn default() -> Self {
        Bar::new()
    }
}

#[cfg(feature = "cli")]
impl Progress for Bar {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, steps: usize) {
        self.epochs = epochs;
        let bar = self.bar.get_or_insert_with(|| {
            let b = indicatif::ProgressBar::new(steps as u64);
            let style = indicatif::ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            b.set_style(style);
            b
        });
        bar.set_length(steps as u64);
        bar.set_position(0);
        bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    }

    fn step(&mut self, done: usize, loss: f32) {
        if let Some(b) = &self.bar {
            b.set_position(done as u64);
            b.set_message(format!("loss {loss:.4}"));
        }
    }

    fn epoch_end(&mut self, r: &EpochRecord) -> Result<(), ExecError> {
        if let Some(b) = &self.bar {
            b.println(epoch_line(r, self.epochs));
        }
        Ok(())
    }

    fn note(&mut self, message: &str) {
        match &self.bar {
            Some(b) => b.println(format!("note: {message}")),
            None => eprintln!("note: {message}"),
        }
    }
}
