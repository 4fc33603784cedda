//! A clock the test moves: `latchd serve` runs with libfaketime (Debian's `faketime`
//! package) preloaded, reading its offset from a file this harness rewrites, so a test can
//! send the server 300 s ahead without waiting for it. Only the wall clock moves; the
//! monotonic clock (tokio's timers) stays real.

use std::cell::Cell;
use std::path::PathBuf;

use tempfile::TempDir;

/// The offset of a faked wall clock.
pub struct FakeClock {
    file: PathBuf,
    offset: Cell<i64>,
    library: PathBuf,
    _dir: TempDir,
}

impl FakeClock {
    /// A clock at the real time, or `None` when libfaketime is not installed (a panic instead
    /// when `CI` is set).
    pub fn new() -> Option<Self> {
        if !super::require("faketime", "faketime") {
            return None;
        }
        let library = std::fs::read_dir("/usr/lib")
            .expect("read /usr/lib")
            .filter_map(Result::ok)
            .map(|entry| entry.path().join("faketime/libfaketime.so.1"))
            .find(|path| path.is_file())
            .expect("the faketime package installs libfaketime.so.1 under /usr/lib/<arch>/");
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = Self {
            file: dir.path().join("offset"),
            offset: Cell::new(0),
            library,
            _dir: dir,
        };
        clock.write();
        Some(clock)
    }

    /// The environment that runs a process on this clock.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LD_PRELOAD", self.library.display().to_string()),
            ("FAKETIME_TIMESTAMP_FILE", self.file.display().to_string()),
            // Read the file on every call, so a change reaches the running server at once.
            ("FAKETIME_NO_CACHE", "1".to_owned()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
        ]
    }

    /// Moves the clock `secs` ahead.
    pub fn advance(&self, secs: i64) {
        self.offset.set(self.offset.get() + secs);
        self.write();
    }

    /// How far ahead of the real clock this one is, in seconds.
    pub fn offset(&self) -> i64 {
        self.offset.get()
    }

    /// The faked time, in whole seconds.
    pub fn now(&self) -> i64 {
        super::otp::now_secs() + self.offset.get()
    }

    fn write(&self) {
        // Written whole and renamed into place, so the server never reads half a line.
        let staged = self.file.with_extension("new");
        std::fs::write(&staged, format!("{:+}\n", self.offset.get())).expect("write offset");
        std::fs::rename(&staged, &self.file).expect("move offset into place");
    }
}
