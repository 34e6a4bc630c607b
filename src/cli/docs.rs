//! `stagegate completions SHELL` and `stagegate man [--out DIR]`: shell completion scripts
//! (clap_complete) and roff man pages (clap_mangen), generated from the same clap definition
//! that parses the command line, so they never drift from it.

use std::path::Path;

use anyhow::Context;
use clap_complete::Shell;

/// The completion script for `shell`, on stdout.
pub fn completions(mut cmd: clap::Command, shell: Shell) -> anyhow::Result<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "stagegate", &mut script);
    super::stdout::write(&script)?;
    Ok(0)
}

/// `stagegate.1` on stdout; with `out`, `stagegate.1` and one `stagegate-<command>.1` per
/// subcommand (nested ones too) written into that directory, which is created if missing.
pub fn man(cmd: clap::Command, out: Option<&Path>) -> anyhow::Result<u8> {
    let cmd = cmd.name("stagegate");
    match out {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .context("rendering the man page")?;
            super::stdout::write(&page)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
            eprintln!(
                "wrote stagegate.1 and its commands' pages into {}",
                dir.display()
            );
        }
    }
    Ok(0)
}
