//! The CI report files of `stagegate evaluate`: `--junit` replaced atomically (a temporary
//! file in the same directory, synced, then renamed over it: a killed run leaves the old file
//! or the new one, never half of one) and `--summary` appended in one write, as
//! `$GITHUB_STEP_SUMMARY` expects.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use stagegate::engine::Outcome;

use super::{junit, summary};

/// Where the reports go; either may be absent.
#[derive(Debug, Default)]
pub struct Reports {
    pub junit: Option<PathBuf>,
    pub summary: Option<PathBuf>,
}

impl Reports {
    /// Refuse, before anything is evaluated, a report whose directory does not exist: the
    /// verdict should not be lost to a typo found at the end.
    pub fn check(&self) -> anyhow::Result<()> {
        for (flag, path) in self.paths() {
            let dir = parent(path);
            if !dir.is_dir() {
                bail!(
                    "--{flag} {}: directory {} does not exist",
                    path.display(),
                    dir.display()
                );
            }
        }
        Ok(())
    }

    pub fn write(&self, o: &Outcome) -> anyhow::Result<()> {
        self.write_texts(|| junit::render(o), || summary::render(o))
    }

    pub fn write_error(&self, model: &str, version: Option<&str>, msg: &str) -> anyhow::Result<()> {
        self.write_texts(
            || junit::render_error(model, version, msg),
            || summary::render_error(model, version, msg),
        )
    }

    fn write_texts(
        &self,
        junit: impl FnOnce() -> String,
        summary: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        if let Some(path) = &self.junit {
            replace(path, &junit()).with_context(|| format!("--junit {}", path.display()))?;
        }
        if let Some(path) = &self.summary {
            append(path, &summary()).with_context(|| format!("--summary {}", path.display()))?;
        }
        Ok(())
    }

    fn paths(&self) -> impl Iterator<Item = (&'static str, &PathBuf)> {
        [("junit", &self.junit), ("summary", &self.summary)]
            .into_iter()
            .filter_map(|(flag, p)| p.as_ref().map(|p| (flag, p)))
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".stagegate-junit-")
        .tempfile_in(parent(path))?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::test_outcome;

    #[test]
    fn junit_is_replaced_and_summary_appended() {
        let dir = tempfile::tempdir().unwrap();
        let r = Reports {
            junit: Some(dir.path().join("junit.xml")),
            summary: Some(dir.path().join("summary.md")),
        };
        r.check().unwrap();
        std::fs::write(dir.path().join("summary.md"), "# earlier step\n").unwrap();
        let o = test_outcome::failed();
        r.write(&o).unwrap();
        r.write(&o).unwrap();
        let xml = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
        assert_eq!(xml, junit::render(&o));
        let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert_eq!(md, format!("# earlier step\n{0}{0}", summary::render(&o)));
        // No temporary file is left next to the report.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_missing_directory_is_refused_up_front() {
        let r = Reports {
            junit: Some("/nonexistent-dir-xyz/junit.xml".into()),
            summary: None,
        };
        let e = r.check().unwrap_err().to_string();
        assert_eq!(
            e,
            "--junit /nonexistent-dir-xyz/junit.xml: directory /nonexistent-dir-xyz does not exist"
        );
    }
}
