//! How a long operation (a backup, a rotation, an audit verification) tells
//! the operator how far it is. The app calls these; the CLI draws them on
//! stderr; [`Quiet`] shows nothing (the drill's inner backup, tests).

use std::io::{Read as _, Write as _};
use std::path::Path;

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Things, named in the plural ("data keys", "entries").
    Items(&'static str),
    Bytes,
}

/// Receives an operation's news and counted steps.
pub trait Progress: Send + Sync {
    /// A line of news for the operator ("[1/3] taking a snapshot…").
    fn note(&self, line: &str);
    /// A counted task begins: `total` of `unit`.
    fn start(&self, label: &str, total: u64, unit: Unit) -> Box<dyn Counter>;
}

/// One counted task.
pub trait Counter: Send {
    /// How much is done so far.
    fn set(&mut self, done: u64);
    /// The task is over.
    fn finish(self: Box<Self>);
}

/// Shows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

struct Uncounted;

impl Counter for Uncounted {
    fn set(&mut self, _: u64) {}
    fn finish(self: Box<Self>) {}
}

impl Progress for Quiet {
    fn note(&self, _: &str) {}
    fn start(&self, _: &str, _: u64, _: Unit) -> Box<dyn Counter> {
        Box::new(Uncounted)
    }
}

/// Chunks in which files are read and written with progress.
const CHUNK: usize = 1 << 20;

/// Read a whole file, counting bytes.
pub fn read_file(path: &Path, label: &str, progress: &dyn Progress) -> std::io::Result<zeroize::Zeroizing<Vec<u8>>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(usize::try_from(len).unwrap_or(0)));
    let mut p = progress.start(label, len, Unit::Bytes);
    let mut buf = zeroize::Zeroizing::new(vec![0u8; CHUNK]);
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        p.set(out.len() as u64);
    }
    p.finish();
    Ok(out)
}

/// Write `bytes` to a new file (never over an existing one), readable by its
/// owner only, synced to disk, counting bytes.
pub fn write_new_private(path: &Path, bytes: &[u8], label: &str, progress: &dyn Progress) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    let mut p = progress.start(label, bytes.len() as u64, Unit::Bytes);
    let mut done = 0u64;
    for chunk in bytes.chunks(CHUNK) {
        f.write_all(chunk)?;
        done += chunk.len() as u64;
        p.set(done);
    }
    f.sync_all()?;
    p.finish();
    Ok(())
}
