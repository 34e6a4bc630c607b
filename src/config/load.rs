//! Finding, reading and overriding the config file (SPEC §2), with errors that name the file,
//! the key path and the reason.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};

use super::Config;

/// Where the configuration came from, and the directory relative paths resolve against.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub path: PathBuf,
}

impl Loaded {
    /// The directory of the config file: relative paths in policies resolve against it.
    pub fn base_dir(&self) -> PathBuf {
        self.path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

/// Bad configuration: always names where, which key and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{source_name}: {}{reason}", key_prefix(.key))]
pub struct ConfigError {
    /// The file (or "environment variable STAGEGATE_…") the bad value came from.
    pub source_name: String,
    /// Dotted key path, e.g. `policies[0].gates[1].min`; empty for whole-file problems.
    pub key: String,
    pub reason: String,
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    }
}

impl ConfigError {
    pub fn new(
        source_name: impl Into<String>,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            source_name: source_name.into(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// The config file to use: `--config`, else `$STAGEGATE_CONFIG`, else `./stagegate.toml`,
/// else `/etc/stagegate/stagegate.toml`.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if let Some(p) = explicit {
        return existing(p, "--config");
    }
    if let Some(p) = std::env::var_os("STAGEGATE_CONFIG").filter(|p| !p.is_empty()) {
        return existing(Path::new(&p), "STAGEGATE_CONFIG");
    }
    for candidate in ["stagegate.toml", "/etc/stagegate/stagegate.toml"] {
        let p = Path::new(candidate);
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
    }
    Err(ConfigError::new(
        "config",
        "",
        "no config file found: pass --config FILE, set STAGEGATE_CONFIG, or create ./stagegate.toml \
         or /etc/stagegate/stagegate.toml",
    ))
}

fn existing(p: &Path, via: &str) -> Result<PathBuf, ConfigError> {
    if p.is_file() {
        Ok(p.to_path_buf())
    } else {
        Err(ConfigError::new(
            p.display().to_string(),
            "",
            format!("config file (from {via}) does not exist or is not a file"),
        ))
    }
}

/// Locate, read, override from `STAGEGATE_<SECTION>__<KEY>` and validate.
pub fn load(explicit: Option<&Path>) -> Result<Loaded, ConfigError> {
    let path = locate(explicit)?;
    let file_name = path.display().to_string();
    // Read it ourselves first so an unreadable file is reported as such, not as "empty".
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError::new(&file_name, "", format!("cannot read: {e}")))?;
    let figment = Figment::new().merge(Toml::string(&text)).merge(
        Env::prefixed("STAGEGATE_")
            // Only `SECTION__KEY` names are overrides; STAGEGATE_CONFIG and friends are not.
            .filter(|k| k.as_str().contains("__"))
            .split("__"),
    );
    let mut config: Config = figment.extract().map_err(|e| from_figment(e, &file_name))?;
    super::validate::validate(&mut config)
        .map_err(|(key, reason)| ConfigError::new(&file_name, key, reason))?;
    Ok(Loaded { config, path })
}

fn from_figment(err: figment::Error, file_name: &str) -> ConfigError {
    use figment::error::Kind;
    // figment may carry several errors; the first is the one to fix first.
    let err = err
        .into_iter()
        .next()
        .unwrap_or_else(|| figment::Error::from("invalid configuration".to_string()));
    let source_name = match &err.metadata {
        Some(md) if md.name.contains("environment") => {
            format!(
                "environment variable STAGEGATE_{}",
                err.path.join("__").to_uppercase()
            )
        }
        _ => file_name.to_string(),
    };
    let mut key = dotted(&err.path);
    let reason = match &err.kind {
        Kind::UnknownField(field, expected) => {
            if err.path.last() != Some(field) {
                key = join(&key, field);
            }
            if expected.is_empty() {
                format!("unknown key `{field}`")
            } else {
                format!(
                    "unknown key `{field}` (expected one of: {})",
                    expected.join(", ")
                )
            }
        }
        Kind::MissingField(field) => {
            key = join(&key, field);
            "required key is missing".to_string()
        }
        Kind::Message(m) if m.contains("TOML parse error") => {
            format!("invalid TOML: {}", one_line_toml_error(m))
        }
        other => other.to_string(),
    };
    ConfigError::new(source_name, key, reason)
}

/// The toml crate's error draws the offending line with a caret; keep the position and the
/// explanation on one line.
fn one_line_toml_error(m: &str) -> String {
    m.lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with('|')
                && !l
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit() && l.contains(" |"))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `policies.0.gates.1` → `policies[0].gates[1]`.
fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if part.chars().all(|c| c.is_ascii_digit()) && !part.is_empty() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

fn join(key: &str, field: &str) -> String {
    if key.is_empty() {
        field.to_string()
    } else {
        format!("{key}.{field}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_paths_show_indices() {
        let p: Vec<String> = ["policies", "0", "gates", "2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(dotted(&p), "policies[0].gates[2]");
    }
}
