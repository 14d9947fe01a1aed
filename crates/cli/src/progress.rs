//! Progress of long operations (backups, key rotation, audit verification),
//! on stderr so that stdout stays the command's result. On a terminal: a bar
//! redrawn at most five times a second. Otherwise (a log, cron): one line at
//! each tenth, so that a log shows it is moving without filling up.

use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant};

pub use confidant_app::Unit;

/// The app's progress, drawn on stderr: notes as lines, counted tasks as bars.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl confidant_app::Progress for Stderr {
    fn note(&self, line: &str) {
        eprintln!("{line}");
    }

    fn start(&self, label: &str, total: u64, unit: Unit) -> Box<dyn confidant_app::Counter> {
        Box::new(Progress::new(label, total, unit))
    }
}

impl confidant_app::Counter for Progress {
    fn set(&mut self, done: u64) {
        Progress::set(self, done);
    }

    fn finish(self: Box<Self>) {
        Progress::finish(*self);
    }
}

#[derive(Debug)]
pub struct Progress {
    label: String,
    unit: Unit,
    total: u64,
    done: u64,
    tty: bool,
    drawn: Option<Instant>,
    tenth: u64,
}

const REDRAW: Duration = Duration::from_millis(200);
const WIDTH: u64 = 30;

impl Progress {
    pub fn new(label: &str, total: u64, unit: Unit) -> Progress {
        let p = Progress {
            label: label.to_owned(),
            unit,
            total,
            done: 0,
            tty: std::io::stderr().is_terminal(),
            drawn: None,
            tenth: 0,
        };
        p.draw();
        p
    }

    fn amount(&self, n: u64) -> String {
        match self.unit {
            Unit::Items(_) => n.to_string(),
            Unit::Bytes => format!("{:.1}", n as f64 / 1_000_000.0),
        }
    }

    /// How much of `scale` is done (all of it when there is nothing to do).
    fn fraction_of(&self, scale: u64) -> u64 {
        (self.done.min(self.total) * scale).checked_div(self.total).unwrap_or(scale)
    }

    fn line(&self) -> String {
        let pct = self.fraction_of(100);
        let filled = self.fraction_of(WIDTH);
        let unit = match self.unit {
            Unit::Items(name) => name,
            Unit::Bytes => "MB",
        };
        format!(
            "  {} [{}{}] {pct:>3}%  {} / {} {unit}",
            self.label,
            "#".repeat(filled as usize),
            "-".repeat((WIDTH - filled) as usize),
            self.amount(self.done),
            self.amount(self.total)
        )
    }

    fn draw(&self) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r{}", self.line());
        } else {
            let _ = writeln!(err, "{}", self.line());
        }
        let _ = err.flush();
    }

    /// Set how much is done.
    pub fn set(&mut self, done: u64) {
        self.done = done;
        if self.tty {
            if self.drawn.is_none_or(|t| t.elapsed() >= REDRAW) {
                self.drawn = Some(Instant::now());
                self.draw();
            }
        } else {
            let tenth = self.fraction_of(10);
            if tenth > self.tenth && tenth < 10 {
                self.tenth = tenth;
                self.draw();
            }
        }
    }

    /// Draw the final state and end the line.
    pub fn finish(self) {
        let mut err = std::io::stderr().lock();
        let _ = if self.tty { writeln!(err, "\r{}", self.line()) } else { writeln!(err, "{}", self.line()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_says_how_far() {
        let mut p = Progress {
            label: "x".into(),
            unit: Unit::Items("keys"),
            total: 8,
            done: 0,
            tty: false,
            drawn: None,
            tenth: 0,
        };
        assert!(p.line().contains("[------------------------------]   0%  0 / 8 keys"), "{}", p.line());
        p.done = 4;
        assert!(p.line().contains("[###############---------------]  50%  4 / 8 keys"), "{}", p.line());
        p.done = 9;
        assert!(p.line().contains(" 100%  9 / 8 keys"), "{}", p.line());
        let b = Progress { unit: Unit::Bytes, total: 2_500_000, done: 1_250_000, ..p };
        assert!(b.line().ends_with(" 50%  1.2 / 2.5 MB") || b.line().ends_with(" 50%  1.3 / 2.5 MB"), "{}", b.line());
        let empty = Progress { total: 0, done: 0, ..b };
        assert!(empty.line().contains("100%"), "{}", empty.line());
    }
}
