//! Where a gate's input lives, as the config writes it: a local path, an object-store or web
//! URL (`s3://`, `gs://`, `az://`, `abfs[s]://`, `https://`), or an MLflow artifact URI
//! (`runs:/<run_id>/<path>`, `mlflow-artifacts:/<path>`). Parsing only: [`crate::objects`]
//! does the reading.
//!
//! A location is shown redacted everywhere (logs, errors, reports, `/status`): a URL may
//! carry a password or a signed query (an Azure SAS token), and neither is ever printed.
//!
//! Pure: no IO.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

/// A gate's input, as written in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A file on this machine; a relative path resolves against the policy's workdir.
    Path(PathBuf),
    /// An object in a store or on a web server, read with range requests.
    Object(Url),
    /// An artifact in MLflow, read through the tracking server (or the store behind it).
    Artifact(String),
}

/// The object-store schemes, each with its cloud's name (for messages).
const OBJECT_SCHEMES: &[(&str, &str)] = &[
    ("s3", "Amazon S3 (or an S3-compatible store)"),
    ("s3a", "Amazon S3 (or an S3-compatible store)"),
    ("gs", "Google Cloud Storage"),
    ("az", "Azure Blob Storage"),
    ("azure", "Azure Blob Storage"),
    ("abfs", "Azure Data Lake Storage"),
    ("abfss", "Azure Data Lake Storage"),
    ("https", "a web server"),
    ("http", "a web server"),
];

impl Location {
    pub fn parse(s: &str) -> Result<Location, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("is empty".into());
        }
        if s.starts_with("runs:/") || s.starts_with("mlflow-artifacts:") {
            return Location::artifact(s);
        }
        let Some((scheme, _)) = s.split_once("://") else {
            return Ok(Location::Path(PathBuf::from(s)));
        };
        let scheme = scheme.to_ascii_lowercase();
        if scheme == "file" {
            let url = Url::parse(s).map_err(|e| format!("{s:?} is not a valid file URL: {e}"))?;
            return url
                .to_file_path()
                .map(Location::Path)
                .map_err(|()| format!("{s:?} is not a local file URL"));
        }
        if !OBJECT_SCHEMES.iter().any(|(k, _)| *k == scheme) {
            return Err(format!(
                "{:?}: the scheme `{scheme}` is not one stagegate reads (a local path, \
                 s3://, gs://, az://, abfs[s]://, https://, runs:/ or mlflow-artifacts:/)",
                redact_str(s)
            ));
        }
        let url =
            Url::parse(s).map_err(|e| format!("{:?} is not a valid URL: {e}", redact_str(s)))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!(
                "{:?} names no bucket, container or host",
                redact_str(s)
            ));
        }
        if url.path().trim_matches('/').is_empty() {
            return Err(format!("{:?} names no object", redact_str(s)));
        }
        Ok(Location::Object(url))
    }

    fn artifact(s: &str) -> Result<Location, String> {
        if let Some(rest) = s.strip_prefix("runs:/") {
            let rest = rest.trim_start_matches('/');
            let (run, path) = rest.split_once('/').unwrap_or((rest, ""));
            if run.is_empty() || path.trim_matches('/').is_empty() {
                return Err(format!(
                    "{s:?}: a run artifact is written runs:/<run_id>/<path to the file>"
                ));
            }
        } else if s
            .trim_start_matches("mlflow-artifacts:")
            .trim_matches('/')
            .is_empty()
        {
            return Err(format!("{s:?} names no artifact"));
        }
        Ok(Location::Artifact(s.to_string()))
    }

    /// The file's name, for the format (`.csv`, `.parquet`).
    pub fn extension(&self) -> String {
        let last = match self {
            Location::Path(p) => return ext_of(p),
            Location::Object(u) => u.path().rsplit('/').next().unwrap_or(""),
            Location::Artifact(s) => s.rsplit('/').next().unwrap_or(""),
        };
        ext_of(Path::new(last))
    }

    /// What the store or cloud is called, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Location::Path(_) => "a local file",
            Location::Artifact(_) => "an MLflow artifact",
            Location::Object(u) => OBJECT_SCHEMES
                .iter()
                .find(|(k, _)| *k == u.scheme())
                .map_or("an object store", |(_, name)| name),
        }
    }
}

/// A path's extension, lower case (`""` if none).
pub fn ext_of(p: &Path) -> String {
    p.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// `url` without what must never be shown: the user's name and password, and the query
/// (signed URLs carry their credential there). The rest names the object.
pub fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    let signed = shown.query().is_some();
    shown.set_query(None);
    shown.set_fragment(None);
    let mut s = shown.to_string();
    if signed {
        s.push_str("?…");
    }
    s
}

/// `text` (an error message) with every URL in it redacted as [`redact`] does: HTTP client
/// errors quote the URL they requested, signed query included.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The URL starts at its scheme, just before `://`.
        let start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.'))
            .map_or(0, |i| i + 1);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>' | ','))
            .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        out.push_str(&redact_str(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// [`redact`] for a URL as text; text that is no URL is cut at anything that could hold a
/// secret.
pub fn redact_str(s: &str) -> String {
    match Url::parse(s) {
        Ok(u) => redact(&u),
        // Not a URL: cut at anything that could hold a secret.
        Err(_) => s.split(['?', '@']).next().unwrap_or_default().to_string(),
    }
}

impl fmt::Display for Location {
    /// Redacted: safe in any log, error, report or page.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Path(p) => write!(f, "{}", p.display()),
            Location::Object(u) => f.write_str(&redact(u)),
            Location::Artifact(s) => f.write_str(s),
        }
    }
}

impl Serialize for Location {
    /// As written (the policy digest is taken over this): a path stays the string it was.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Location::Path(p) => p.serialize(s),
            Location::Object(u) => s.serialize_str(u.as_str()),
            Location::Artifact(a) => s.serialize_str(a),
        }
    }
}

impl<'de> Deserialize<'de> for Location {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Location, D::Error> {
        let s = String::deserialize(d)?;
        Location::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl From<PathBuf> for Location {
    fn from(p: PathBuf) -> Location {
        Location::Path(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_urls_and_artifacts_are_told_apart() {
        assert_eq!(
            Location::parse("data/holdout.csv").unwrap(),
            Location::Path("data/holdout.csv".into())
        );
        assert_eq!(
            Location::parse("file:///srv/h.parquet").unwrap(),
            Location::Path("/srv/h.parquet".into())
        );
        for u in [
            "s3://bucket/holdout.parquet",
            "gs://b/x/y.csv",
            "az://container/h.parquet",
            "abfss://fs@account.dfs.core.windows.net/h.parquet",
            "https://example.com/data/h.csv",
        ] {
            assert!(
                matches!(Location::parse(u).unwrap(), Location::Object(_)),
                "{u}"
            );
        }
        for a in [
            "runs:/abc123/eval/holdout.parquet",
            "mlflow-artifacts:/1/abc/h.csv",
        ] {
            assert!(matches!(Location::parse(a).unwrap(), Location::Artifact(_)));
        }
        assert_eq!(
            Location::parse("s3://b/dir/H.Parquet").unwrap().extension(),
            "parquet"
        );
    }

    #[test]
    fn bad_locations_are_refused_with_the_reason() {
        let e = Location::parse("ftp://host/h.csv").unwrap_err();
        assert!(e.contains("scheme `ftp`"), "{e}");
        assert!(
            Location::parse("s3://bucket")
                .unwrap_err()
                .contains("names no object")
        );
        assert!(Location::parse("s3:///key.csv").is_err());
        assert!(
            Location::parse("runs:/abc")
                .unwrap_err()
                .contains("runs:/<run_id>")
        );
        assert!(Location::parse("mlflow-artifacts:/").is_err());
        assert!(Location::parse("  ").is_err());
    }

    #[test]
    fn secrets_in_urls_are_never_shown() {
        let l = Location::parse("https://user:hunter2@host/h.csv?sig=SECRET&se=2027").unwrap();
        let shown = l.to_string();
        assert!(
            !shown.contains("hunter2") && !shown.contains("SECRET"),
            "{shown}"
        );
        assert!(!shown.contains("user"), "{shown}");
        assert_eq!(shown, "https://host/h.csv?…");
        let e = Location::parse("ftp://u:hunter2@host/x?sig=SECRET").unwrap_err();
        assert!(!e.contains("hunter2") && !e.contains("SECRET"), "{e}");
        let msg = "error sending request for url (https://acct.blob.core.windows.net/c/h.csv?sv=1&sig=SECRET): timed out";
        assert_eq!(
            redact_text(msg),
            "error sending request for url (https://acct.blob.core.windows.net/c/h.csv?…): timed out"
        );
    }

    #[test]
    fn a_path_serializes_as_written() {
        let l = Location::parse("data/h.csv").unwrap();
        assert_eq!(serde_json::to_string(&l).unwrap(), "\"data/h.csv\"");
        let u = Location::parse("s3://b/k.csv").unwrap();
        assert_eq!(serde_json::to_string(&u).unwrap(), "\"s3://b/k.csv\"");
    }
}
