//! A real S3-compatible server for one test: moto's server mode (`moto_server`, installed in
//! the project's venv from requirements.txt) on its own free loopback port, stopped on drop
//! (also when the test panics). Objects are put with the `object_store` crate, as any S3
//! client would.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::daemon::free_port;
use super::{block, eventually, venv};

pub const KEY_ID: &str = "testing";
pub const SECRET: &str = "sg-canary-9f3k2";

const PUBLIC_READ: &str = r#"
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
s3.put_object_acl(Bucket=sys.argv[1], Key=sys.argv[2], ACL="public-read")
"#;

pub struct S3 {
    child: Child,
    pub port: u16,
}

impl S3 {
    /// A fresh server. `no_auth_actions`: moto then checks credentials after that many
    /// requests (its `INITIAL_NO_AUTH_ACTION_COUNT`); `None`: it never checks.
    pub fn start(no_auth_actions: Option<u32>) -> S3 {
        let port = free_port();
        let mut cmd = Command::new(venv().join("bin/moto_server"));
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(n) = no_auth_actions {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
        }
        let child = cmd
            .spawn()
            .expect("moto_server (scripts/setup.sh installs it)");
        let s3 = S3 { child, port };
        let up = eventually(Duration::from_secs(60), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "moto_server did not listen on {port}");
        s3
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a reader of this server needs (`AWS_ENDPOINT_URL` over plain http).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ]
    }

    fn store(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(self.endpoint())
                .with_allow_http(true)
                .with_bucket_name(bucket)
                .with_region("us-east-1")
                .with_access_key_id(KEY_ID)
                .with_secret_access_key(SECRET)
                .build()
                .unwrap(),
        )
    }

    pub fn create_bucket(&self, bucket: &str) {
        let r = reqwest::blocking::Client::new()
            .put(format!("{}/{bucket}", self.endpoint()))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "create bucket {bucket}: {r:?}");
    }

    /// Let anyone read `key` (a canned `public-read` ACL, set with the AWS SDK), as a plain web
    /// URL.
    pub fn make_public(&self, bucket: &str, key: &str) {
        let out = std::process::Command::new(venv().join("bin/python"))
            .args(["-c", PUBLIC_READ, bucket, key])
            .envs(self.env())
            .output()
            .expect("the venv's python");
        assert!(
            out.status.success(),
            "public-read {bucket}/{key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) {
        let store = self.store(bucket);
        block(store.put(&ObjPath::from(key), PutPayload::from(bytes))).unwrap();
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
