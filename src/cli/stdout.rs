//! Data goes to stdout through here. A reader that stops early (`stagegate status | head`)
//! closes the pipe; that ends the output quietly, where `println!` would panic. Any other
//! write error (a full disk behind a redirect) is an error, never a silently short report.

use std::io::Write;

use anyhow::Context;

pub fn write(bytes: impl AsRef<[u8]>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(bytes.as_ref())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to stdout")
        }
        _ => Ok(()),
    }
}

/// `print!` through [`write`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::stdout::write(format!($($arg)*)) };
}

/// `println!` through [`write`].
macro_rules! outln {
    () => { $crate::cli::stdout::write("\n") };
    ($($arg:tt)*) => { $crate::cli::stdout::write(format!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use {out, outln};
