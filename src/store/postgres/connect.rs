//! From `state.url` to a connection configuration: the URL's own settings as the config read
//! them ([`StateUrl`], `sslmode` included), a password from `PGPASSWORD` when the URL has
//! none, and TLS by rustls, verifying the server's certificate against the system's roots
//! plus the `sslrootcert` file the URL may name.

use std::sync::Arc;

use tokio_postgres_rustls::MakeRustlsConnect;

use super::super::StoreError;
use crate::config::StateUrl;

pub(super) struct Target {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    pub shown: String,
}

/// Everything needed to connect to `url`; a URL that cannot be used is refused with a message
/// naming what is wrong (and never the password).
pub(super) fn parse(url: &str) -> Result<Target, StoreError> {
    let url = StateUrl::parse(url).map_err(StoreError::Url)?;
    let tls = tls(&url).map_err(|why| StoreError::Url(format!("{}: {why}", url.shown)))?;
    let StateUrl {
        mut config, shown, ..
    } = url;
    if config.get_password().is_none()
        && let Ok(p) = std::env::var("PGPASSWORD")
    {
        config.password(p);
    }
    config.application_name("stagegate");
    config.connect_timeout(std::time::Duration::from_secs(5));
    Ok(Target { config, tls, shown })
}

fn tls(url: &StateUrl) -> Result<MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    // `disable` never uses TLS: the system's roots are not worth loading.
    if url.may_use_tls() {
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
    }
    roots.extend(url.root_certs.roots.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
