//! Training progress for the terminal: an indicatif bar on a TTY, plain lines otherwise.

use indicatif::{ProgressBar, ProgressStyle};
use weft_executors::train::{EpochRecord, Progress};
use weft_executors::ExecError;

pub struct Bar {
    tty: bool,
    bar: Option<ProgressBar>,
    epochs: usize,
}

impl Bar {
    /// `tty`: draw a bar; otherwise print a line every few epochs (to stderr).
    pub fn new(tty: bool) -> Bar {
        Bar {
            tty,
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

impl Progress for Bar {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, steps: usize) {
        self.epochs = epochs;
        if !self.tty {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let b = ProgressBar::new(steps as u64);
            let style = ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
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
        let every = self.epochs.div_ceil(20).max(1);
        let line = format!(
            "epoch {}/{}: loss {:.4}{} lr {:.3e} {:.0} samples/s",
            r.epoch,
            self.epochs,
            r.train_loss,
            r.validation_loss
                .map(|v| format!(" val_loss {v:.4}"))
                .unwrap_or_default(),
            r.lr,
            r.samples_per_sec
        );
        match &self.bar {
            Some(b) => b.println(line),
            None if r.epoch.is_multiple_of(every) || r.epoch == self.epochs || r.epoch == 1 => {
                eprintln!("{line}")
            }
            None => {}
        }
        Ok(())
    }
}
