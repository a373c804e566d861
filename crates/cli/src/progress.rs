//! The terminal's progress: an indicatif bar per epoch, with one printed line per epoch
//! above it (the notebook prints lines instead: `weft::progress::Lines`).

use weft::progress::epoch_line;
use weft::{EpochRecord, Progress};
use weft_runtime::RunError;

/// A terminal progress bar per epoch, with one printed line per epoch above it.
pub struct Bar {
    bar: Option<indicatif::ProgressBar>,
    epochs: usize,
}

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

impl Default for Bar {
    fn default() -> Self {
        Bar::new()
    }
}

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

    fn epoch_end(&mut self, r: &EpochRecord) -> Result<(), RunError> {
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

/// Ctrl-C (SIGINT) and SIGTERM ask a run to stop: the loop checkpoints where it stands and
/// the error prints the resume command. A second Ctrl-C exits at once (code 130).
pub struct Interruptible<'a> {
    pub inner: &'a mut dyn Progress,
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<'a> Interruptible<'a> {
    pub fn new(inner: &'a mut dyn Progress) -> Interruptible<'a> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it sees the flag before this signal sets it: the second
            // signal exits.
            let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone());
            let _ = signal_hook::flag::register(sig, flag.clone());
        }
        Interruptible { inner, flag }
    }
}

impl Progress for Interruptible<'_> {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, steps: usize) {
        self.inner.epoch_start(epoch, epochs, steps);
    }
    fn step(&mut self, done: usize, loss: f32) {
        self.inner.step(done, loss);
    }
    fn epoch_end(&mut self, record: &EpochRecord) -> Result<(), RunError> {
        self.inner.epoch_end(record)
    }
    fn note(&mut self, message: &str) {
        self.inner.note(message);
    }
    fn stop_requested(&self) -> Option<String> {
        if self.flag.load(std::sync::atomic::Ordering::Relaxed) {
            return Some("interrupted (Ctrl-C)".into());
        }
        self.inner.stop_requested()
    }
}
