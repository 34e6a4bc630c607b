//! `state.url`, read without connecting: a PostgreSQL URL as tokio-postgres understands it,
//! with libpq's `sslmode` values and `sslrootcert` (the CA file, whose certificates are read
//! here). The config checks it at load, so a bad URL is refused with its reason before
//! anything runs; the store connects with what it yields. No message ever shows the password.

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use tokio_postgres::config::SslMode;

/// A usable `state.url`.
pub struct StateUrl {
    /// The URL's own settings; `sslmode` in tokio-postgres's terms, `sslrootcert` taken out.
    pub config: tokio_postgres::Config,
    /// The certificates of the `sslrootcert` file, trusted besides the system's roots.
    pub root_certs: RootCertStore,
    /// The URL without its password, for messages.
    pub shown: String,
}

impl StateUrl {
    /// Read `url`; a URL that cannot be used is refused with a message naming what is wrong
    /// (after the URL, its password replaced by `***`).
    pub fn parse(url: &str) -> Result<StateUrl, String> {
        let shown = redact_url(url);
        let bad = |why: String| format!("{shown}: {why}");
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(bad(
                "not a postgres:// or postgresql:// URL (only PostgreSQL is supported)".into(),
            ));
        }
        // tokio-postgres refuses parameters it does not know; `sslrootcert` is libpq's, and ours.
        let (base, rootcert) = take_param(url, "sslrootcert");
        for key in ["sslcert", "sslkey"] {
            if take_param(&base, key).1.is_some() {
                return Err(bad(format!(
                    "{key}: client certificates are not supported; authenticate with a password"
                )));
            }
        }
        let config: tokio_postgres::Config = libpq_sslmode(&base)
            .parse()
            .map_err(|e: tokio_postgres::Error| bad(e.to_string()))?;
        if config.get_hosts().is_empty() {
            return Err(bad("names no host".into()));
        }
        if config.get_user().is_none() {
            return Err(bad("names no user (postgres://USER@host/db)".into()));
        }
        if config.get_dbname().is_none() {
            return Err(bad(
                "names no database (postgres://user@host/DATABASE)".into()
            ));
        }
        let root_certs = match rootcert {
            Some(path) => read_root_certs(&path).map_err(bad)?,
            None => RootCertStore::empty(),
        };
        Ok(StateUrl {
            config,
            root_certs,
            shown,
        })
    }

    /// Whether the connection may use TLS at all (`sslmode=disable` never does).
    pub fn may_use_tls(&self) -> bool {
        self.config.get_ssl_mode() != SslMode::Disable
    }
}

/// The URL with its password (in the authority or a `password=` parameter) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            let userinfo = &out[rest..rest + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest + colon + 1..rest + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

/// libpq's `sslmode` values tokio-postgres does not know, as the ones that do the same or
/// more here: certificates are always verified, host name included, so `verify-ca` and
/// `verify-full` are `require`; `allow` (plain first, TLS if refused) is `prefer`.
fn libpq_sslmode(url: &str) -> String {
    let (rest, mode) = take_param(url, "sslmode");
    let mode = match mode.as_deref() {
        None => return url.to_string(),
        Some("verify-ca" | "verify-full") => "require".to_string(),
        Some("allow") => "prefer".to_string(),
        Some(other) => other.to_string(),
    };
    let sep = if rest.contains('?') { '&' } else { '?' };
    format!("{rest}{sep}sslmode={mode}")
}

/// `url` without the query parameter `key`, and that parameter's value.
fn take_param(url: &str, key: &str) -> (String, Option<String>) {
    let Some((head, query)) = url.split_once('?') else {
        return (url.to_string(), None);
    };
    let mut value = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.split_once('=') {
            Some((k, v)) if k == key => {
                value = Some(v.to_string());
                false
            }
            _ => true,
        })
        .collect();
    if kept.is_empty() {
        (head.to_string(), value)
    } else {
        (format!("{head}?{}", kept.join("&")), value)
    }
}

/// The PEM certificates of the `sslrootcert` file: at least one, each usable as a root.
fn read_root_certs(path: &str) -> Result<RootCertStore, String> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| format!("sslrootcert {path}: {e}"))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("sslrootcert {path}: not PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("sslrootcert {path}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("sslrootcert {path}: no certificate in the file"));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("postgres://sg:s3cret@db:5432/stagegate?sslmode=require"),
            "postgres://sg:***@db:5432/stagegate?sslmode=require"
        );
        assert_eq!(
            redact_url("postgresql://sg@db/x?password=s3cret&sslmode=disable"),
            "postgresql://sg@db/x?password=***&sslmode=disable"
        );
        assert_eq!(redact_url("postgres://db/x"), "postgres://db/x");
    }

    #[test]
    fn unusable_urls_are_refused_with_the_reason_and_no_password() {
        let why = |u: &str| match StateUrl::parse(u) {
            Err(e) => e,
            Ok(_) => panic!("{u} accepted"),
        };
        assert!(why("mysql://u:pw@h/db").contains("not a postgres://"));
        assert!(why("postgres://u:pw@h/db?bogus=1").contains("bogus"));
        assert!(why("postgres://u:pw@h/").contains("names no database"));
        assert!(why("postgres://u:pw@h/db?sslrootcert=/nonexistent").contains("sslrootcert"));
        for u in ["mysql://u:pw@h/db", "postgres://u:pw@h/db?bogus=1"] {
            assert!(!why(u).contains("pw@"), "{}", why(u));
        }
        assert!(StateUrl::parse("postgres://u:pw@127.0.0.1:5/db?sslmode=disable").is_ok());
    }

    #[test]
    fn libpqs_sslmodes_are_read_as_what_they_ask_here() {
        let mode = |u: &str| StateUrl::parse(u).map(|t| t.config.get_ssl_mode());
        for (given, read) in [
            ("verify-full", SslMode::Require),
            ("verify-ca", SslMode::Require),
            ("require", SslMode::Require),
            ("allow", SslMode::Prefer),
            ("disable", SslMode::Disable),
        ] {
            let u = format!("postgres://u@h/d?application_name=x&sslmode={given}");
            assert_eq!(mode(&u).ok(), Some(read), "{given}");
        }
        let refused = |u: &str| StateUrl::parse(u).err().unwrap_or_default();
        assert!(refused("postgres://u@h/d?sslmode=bogus").contains("sslmode"));
        assert!(refused("postgres://u:pw@h/d?sslcert=/c.pem").contains("client certificates"));
        assert!(!refused("postgres://u:pw@h/d?sslcert=/c.pem").contains("pw@"));
    }

    #[test]
    fn sslrootcert_is_taken_out_of_the_url() {
        let (u, v) = take_param(
            "postgres://u@h/d?sslmode=require&sslrootcert=/ca.pem",
            "sslrootcert",
        );
        assert_eq!(u, "postgres://u@h/d?sslmode=require");
        assert_eq!(v.as_deref(), Some("/ca.pem"));
        let (u, v) = take_param("postgres://u@h/d?sslrootcert=/ca.pem", "sslrootcert");
        assert_eq!(
            (u.as_str(), v.as_deref()),
            ("postgres://u@h/d", Some("/ca.pem"))
        );
    }
}
