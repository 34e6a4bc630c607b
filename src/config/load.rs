//! Finding the config file (`--config`, `$STAGEGATE_CONFIG`, `./stagegate.toml`,
//! `/etc/stagegate/stagegate.toml`), reading it, overriding keys from `STAGEGATE_<SECTION>__<KEY>`
//! variables, with errors that name the file (or variable), the key path and the reason.

use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};

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
    let env = std::env::vars_os().map(|(k, v)| {
        (
            k.to_string_lossy().into_owned(),
            v.to_string_lossy().into_owned(),
        )
    });
    let config = from_text(&text, &file_name, env)?;
    Ok(Loaded { config, path })
}

/// Parse, override and validate a config text, with the environment given as a list of
/// `(name, value)` pairs: what [`load`] does after reading the file, without touching the
/// process environment (the fuzzer and tests pass their own overrides; setting variables in
/// a multi-threaded process would race). Names not of the form `STAGEGATE_<SECTION>__<KEY>`
/// are ignored, as in the real environment.
pub fn from_text(
    text: &str,
    file_name: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut figment = Figment::new().merge(Toml::string(text));
    for (name, value) in env {
        if let Some(key) = override_key(&name) {
            figment = figment.merge(EnvOverride { key, value });
        }
    }
    let mut config: Config = figment.extract().map_err(|e| from_figment(e, file_name))?;
    super::validate::validate(&mut config)
        .map_err(|(key, reason)| ConfigError::new(file_name, key, reason))?;
    Ok(config)
}

const ENV_PREFIX: &str = "STAGEGATE_";

/// Keys whose override is taken as its text, never read as a number, boolean or list.
const TEXT_KEYS: &[&str] = &["server.api_token"];

/// The dotted, lower-case key path an environment variable overrides, or `None` when it is
/// not an override. The rules are figment's `Env::prefixed("STAGEGATE_")`, filtered to
/// names with `__` and split on it, which this replaces so the variables can come from a
/// list: the name is trimmed, the prefix matched in any case; only `SECTION__KEY` names count
/// (STAGEGATE_CONFIG and friends do not); a path with an empty segment is dropped.
fn override_key(name: &str) -> Option<String> {
    let name = name.trim();
    let rest = name
        .get(..ENV_PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(ENV_PREFIX))
        .map(|_| &name[ENV_PREFIX.len()..])?;
    if !rest.contains("__") {
        return None;
    }
    let key = rest.replace("__", ".");
    let key = key.trim();
    if key.split('.').any(str::is_empty) {
        return None;
    }
    Some(key.to_ascii_lowercase())
}

/// One `STAGEGATE_…__…` variable as a figment provider. Merged one after another in the
/// environment's order, they give what figment's `Env` gives (it merges its variables in that
/// order too), and carry the same metadata name, which [`from_figment`] relies on to blame the
/// variable rather than the file.
struct EnvOverride {
    key: String,
    value: String,
}

impl Provider for EnvOverride {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("`{ENV_PREFIX}` environment variable(s)")).interpolater(
            |_: &Profile, k: &[&str]| {
                k.iter()
                    .map(|k| k.to_ascii_uppercase())
                    .collect::<Vec<_>>()
                    .join(".")
            },
        )
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        // A token is text whatever it looks like: figment would read `12345` as a number
        // (refused by a string key) and `007` as 7 (a different token). Quoted, it is read
        // as before.
        let value = if TEXT_KEYS.contains(&self.key.as_str()) && !self.value.starts_with('"') {
            figment::value::Value::from(self.value.clone())
        } else {
            env_value(&self.value)
        };
        let dict = figment::util::nest(&self.key, value)
            .into_dict()
            .expect("a non-empty key nests into a dict");
        Ok(Profile::Default.collect(dict))
    }
}

/// An override's value, read as figment reads environment values: `8` is a number, `[a, b]`
/// a list, `"a\tb"` a string with escapes, anything it cannot read the text itself.
///
/// figment's escape decoder indexes by characters where it means bytes, so a quoted value
/// with a non-ASCII character before a backslash (`"tök\n"`) panicked the process at start-up
/// (or dropped characters, when the index happened to land on a character boundary): found by
/// the config fuzz target. Whether a backslash falls inside a quoted string depends on
/// figment's whole grammar (unquoted words may hold quotes), so a value with both a backslash
/// and a non-ASCII character is not given to that parser: it is taken as its text, as figment
/// takes any value it cannot read.
///
/// figment's value parser also recurses once per `[` or `{`, without a limit: a value of a few
/// thousand brackets overflowed the stack (also found by the fuzz target). No config key
/// takes a value nested deeper than two levels, so a value nested past
/// [`MAX_VALUE_NESTING`] is taken as its text too, and then refused by the key it overrides.
/// Every other value is read exactly as before.
fn env_value(raw: &str) -> figment::value::Value {
    let escapes_unsafe = !raw.is_ascii() && raw.contains('\\');
    if escapes_unsafe || nesting(raw) > MAX_VALUE_NESTING {
        return figment::value::Value::from(raw.to_string());
    }
    raw.parse().expect("infallible")
}

/// Far more than any config value needs, far less than what overflows a thread's stack.
const MAX_VALUE_NESTING: usize = 64;

/// The deepest run of open brackets in `raw`, counted as figment's parser would descend
/// (quotes ignored: an overestimate only makes a silly value text).
fn nesting(raw: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for b in raw.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
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

    const POLICY: &str = "[[policies]]\nname = \"p\"\ncandidate = { stage = \"Staging\" }\npromote = { stage = \"Production\" }\n";

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn name_prefixes_cover_every_glob_or_give_up() {
        let prefixes = |globs: &[&[&str]]| {
            let text: String = globs
                .iter()
                .enumerate()
                .map(|(i, g)| POLICY.replace("\"p\"", &format!("\"p{i}\"\nmodels = {g:?}")))
                .collect();
            from_text(&text, "stagegate.toml", env(&[]))
                .unwrap()
                .name_prefixes()
        };
        let owned = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            prefixes(&[&["fraud-*", "churn_v?"], &["fraud-eu-[ab]*", "exact"]]),
            owned(&["churn_v", "exact", "fraud-"]),
            "sorted, and fraud-eu- left to fraud-"
        );
        assert_eq!(prefixes(&[&["a{b,c}"], &["ab"]]), owned(&["a"]));
        // The default policy matches every model; so does any glob that starts with a wildcard.
        assert_eq!(prefixes(&[&["*"]]), None);
        assert_eq!(prefixes(&[&["fraud-*"], &["*-eu"]]), None);
        assert_eq!(prefixes(&[&["it's-*"]]), None);
        assert_eq!(prefixes(&[&["a\\*b"]]), None);
    }

    #[test]
    fn override_names_follow_figments_env_rules() {
        assert_eq!(
            override_key("STAGEGATE_WORKERS__COUNT").as_deref(),
            Some("workers.count")
        );
        // The prefix in any case, the name trimmed, the rest lower-cased.
        assert_eq!(
            override_key(" stagegate_Server__API_TOKEN ").as_deref(),
            Some("server.api_token")
        );
        for ignored in [
            "STAGEGATE_CONFIG",
            "PATH",
            "STAGEGATE___X",
            "STAGEGATE_A__",
            "STAGE",
            "STAGEGATE_a.__b",
        ] {
            assert_eq!(override_key(ignored), None, "{ignored}");
        }
    }

    #[test]
    fn overrides_from_a_list_apply_in_order_and_are_blamed() {
        let c = from_text(
            POLICY,
            "stagegate.toml",
            env(&[
                ("STAGEGATE_WORKERS__COUNT", "3"),
                ("STAGEGATE_CONFIG", "elsewhere.toml"),
                ("STAGEGATE_WORKERS__COUNT", "5"),
                ("STAGEGATE_SERVER__API_TOKEN", "t0ken"),
            ]),
        )
        .unwrap();
        assert_eq!(c.workers.count, 5);
        assert_eq!(
            c.server.api_token.as_ref().map(|s| s.expose()),
            Some("t0ken")
        );
        let e = from_text(
            POLICY,
            "stagegate.toml",
            env(&[("STAGEGATE_WORKERS__COUNT", "abc")]),
        )
        .unwrap_err();
        assert_eq!(
            e.source_name,
            "environment variable STAGEGATE_WORKERS__COUNT"
        );
        assert!(e.reason.contains("invalid type"), "{e}");
        let e = from_text("[mlflow\nx", "stagegate.toml", []).unwrap_err();
        assert_eq!(e.source_name, "stagegate.toml");
    }

    /// figment's escape decoder panicked on a non-ASCII character before a backslash in a
    /// quoted value (the config fuzz target's finding).
    #[test]
    fn override_values_with_non_ascii_and_a_backslash_are_text() {
        let token = |v: &str| {
            from_text(
                POLICY,
                "stagegate.toml",
                env(&[("STAGEGATE_SERVER__API_TOKEN", v)]),
            )
            .unwrap()
            .server
            .api_token
            .map(|s| s.expose().to_string())
        };
        // Panicked: the backslash's character index fell inside the 4-byte emoji.
        assert_eq!(token(r#""🙂é\"x""#).as_deref(), Some(r#""🙂é\"x""#));
        // Lost the `k`: the index landed on a boundary, one byte short.
        assert_eq!(token(r#""tök\ten""#).as_deref(), Some(r#""tök\ten""#));
        // A token of digits is the token, not a number (nor a shorter one).
        assert_eq!(token("12345").as_deref(), Some("12345"));
        assert_eq!(token("007").as_deref(), Some("007"));
        assert_eq!(token("true").as_deref(), Some("true"));
        // Values without both are read as before.
        assert_eq!(token(r#""tok\ten""#).as_deref(), Some("tok\ten"));
        assert_eq!(token(r#""tök""#).as_deref(), Some("tök"));
        assert_eq!(token("plain-ü").as_deref(), Some("plain-ü"));
        let secrets = |v: &str| {
            from_text(
                POLICY,
                "stagegate.toml",
                env(&[("STAGEGATE_WEBHOOKS__SECRETS", v)]),
            )
            .map(|c| {
                c.webhooks
                    .secrets_of("secrets")
                    .iter()
                    .map(|s| s.expose().to_string())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(secrets(r#"["a\tb", c]"#).unwrap(), ["a\tb", "c"]);
        assert_eq!(secrets(r#"["ß", c]"#).unwrap(), ["ß", "c"]);
        // The fuzzer's second input: the quoted string starts after an unquoted word that
        // holds a quote. Now a list expected, text given: an error naming the variable.
        let e = from_text(
            POLICY,
            "stagegate.toml",
            env(&[("STAGEGATE_WEBHOOKS__SECRETS", "[a,b\", \"\u{fffd}s\\\\T\\]")]),
        )
        .unwrap_err();
        assert!(e.source_name.contains("STAGEGATE_WEBHOOKS__SECRETS"), "{e}");
    }

    /// figment's value parser recursed once per bracket and overflowed the stack on a value
    /// of a few thousand (the config fuzz target's second finding).
    #[test]
    fn override_values_nested_past_the_limit_are_text() {
        let secrets = |v: &str| {
            from_text(
                POLICY,
                "stagegate.toml",
                env(&[("STAGEGATE_WEBHOOKS__SECRETS", v)]),
            )
        };
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let e = secrets(&deep).unwrap_err();
        assert!(e.source_name.contains("STAGEGATE_WEBHOOKS__SECRETS"), "{e}");
        // Unbalanced and mixed brackets too; a token is text whatever it holds.
        let token = "{[".repeat(50_000);
        let c = from_text(
            POLICY,
            "stagegate.toml",
            env(&[("STAGEGATE_SERVER__API_TOKEN", &token)]),
        )
        .unwrap();
        assert_eq!(c.server.api_token.map(|s| s.expose().len()), Some(100_000));
        // Shallow nesting is still read as a list.
        assert_eq!(nesting("[[a], [b]]"), 2);
        assert!(secrets("[a, b]").is_ok());
    }
}
