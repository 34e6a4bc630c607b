//! From `state.url` to a connection configuration: the URL's own settings (tokio-postgres
//! reads them, `sslmode` included), a password from `PGPASSWORD` when the URL has none, and
//! TLS by rustls, verifying the server's certificate against the system's roots plus the
//! `sslrootcert` file the URL may name.

use std::sync::Arc;

use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::super::StoreError;

pub(super) struct Target {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    pub shown: String,
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

/// Parse `url` into a connection configuration; a URL that cannot be used is refused with a
/// message naming what is wrong (and never the password).
pub(super) fn parse(url: &str) -> Result<Target, StoreError> {
    let shown = redact_url(url);
    let bad = |why: String| StoreError::Url(format!("{shown}: {why}"));
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
    let base = libpq_sslmode(&base);
    let mut config: tokio_postgres::Config = base
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
    if config.get_password().is_none()
        && let Ok(p) = std::env::var("PGPASSWORD")
    {
        config.password(p);
    }
    config.application_name("stagegate");
    config.connect_timeout(std::time::Duration::from_secs(5));
    let tls = tls(config.get_ssl_mode(), rootcert.as_deref()).map_err(bad)?;
    Ok(Target { config, tls, shown })
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

fn tls(mode: SslMode, rootcert: Option<&str>) -> Result<MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    // `disable` never uses TLS: the system's roots are not worth loading.
    if mode != SslMode::Disable {
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
    }
    if let Some(path) = rootcert {
        let pem = std::fs::read(path).map_err(|e| format!("sslrootcert {path}: {e}"))?;
        let mut found = 0;
        for cert in rustls_pki_types_certs(&pem) {
            let cert = cert.map_err(|e| format!("sslrootcert {path}: not PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            found += 1;
        }
        if found == 0 {
            return Err(format!("sslrootcert {path}: no certificate in the file"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn rustls_pki_types_certs(
    pem: &[u8],
) -> impl Iterator<
    Item = Result<rustls::pki_types::CertificateDer<'static>, rustls::pki_types::pem::Error>,
> + '_ {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
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
        let why = |u: &str| match parse(u) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{u} accepted"),
        };
        assert!(why("mysql://u:pw@h/db").contains("not a postgres://"));
        assert!(why("postgres://u:pw@h/db?bogus=1").contains("bogus"));
        assert!(why("postgres://u:pw@h/").contains("names no database"));
        assert!(why("postgres://u:pw@h/db?sslrootcert=/nonexistent").contains("sslrootcert"));
        for u in ["mysql://u:pw@h/db", "postgres://u:pw@h/db?bogus=1"] {
            assert!(!why(u).contains("pw@"), "{}", why(u));
        }
        assert!(parse("postgres://u:pw@127.0.0.1:5/db?sslmode=disable").is_ok());
    }

    #[test]
    fn libpqs_sslmodes_are_read_as_what_they_ask_here() {
        let mode = |u: &str| parse(u).map(|t| t.config.get_ssl_mode());
        use tokio_postgres::config::SslMode;
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
        let refused = |u: &str| parse(u).err().map(|e| e.to_string()).unwrap_or_default();
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
