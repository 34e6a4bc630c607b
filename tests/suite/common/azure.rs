//! A real Azure Blob Storage for one test: Azurite (from npm, installed by
//! `scripts/setup.sh`; its path in `STAGEGATE_AZURITE`) on its own free loopback port with its
//! own directory, stopped on drop. Blobs are uploaded with Microsoft's Python client and the
//! emulator's well-known account.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::daemon::free_port;
use super::{eventually, venv};

pub struct Azurite {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Azurite {
    pub fn start() -> Azurite {
        let bin = std::env::var("STAGEGATE_AZURITE")
            .expect("STAGEGATE_AZURITE: Azurite's azurite-blob (scripts/setup.sh installs it)");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--skipApiVersionCheck", "--silent", "--location"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("azurite-blob starts");
        let az = Azurite {
            child,
            port,
            _dir: dir,
        };
        let up = eventually(Duration::from_secs(60), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "Azurite did not listen on {port}");
        az
    }

    /// The environment a reader of this emulator needs: object_store's own switches for
    /// Azurite, with its well-known account.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AZURE_STORAGE_USE_EMULATOR", "true".into()),
            (
                "AZURITE_BLOB_STORAGE_URL",
                format!("http://127.0.0.1:{}", self.port),
            ),
        ]
    }

    /// Create `container` and upload each `(name, file)` into it, with Microsoft's own
    /// client (azure-storage-blob, in the project's venv).
    pub fn upload(&self, container: &str, files: &[(&str, &Path)]) {
        let conn = format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};\
             BlobEndpoint=http://127.0.0.1:{}/devstoreaccount1;",
            self.port
        );
        let mut cmd = Command::new(venv().join("bin/python"));
        cmd.args(["-c", UPLOAD, &conn, container]);
        for (name, file) in files {
            cmd.arg(name).arg(file);
        }
        let out = cmd.output().expect("the venv's python");
        assert!(
            out.status.success(),
            "upload to Azurite: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The emulator's well-known account key (public: Azurite documents it).
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

const UPLOAD: &str = r#"
import sys
from azure.storage.blob import BlobServiceClient
service = BlobServiceClient.from_connection_string(sys.argv[1])
container = service.create_container(sys.argv[2])
for name, path in zip(sys.argv[3::2], sys.argv[4::2]):
    with open(path, "rb") as f:
        container.upload_blob(name, f, overwrite=True)
"#;

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
