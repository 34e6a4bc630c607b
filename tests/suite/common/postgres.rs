//! A throwaway PostgreSQL cluster for one test: its own `initdb` data directory in a fresh
//! temp dir, its own free loopback port and socket directory, stopped and deleted on drop
//! (also when the test panics). Never the system's cluster, never port 5432.
//!
//! The server binaries are found, in order, in `STAGEGATE_PG_BIN`, `pg_config --bindir`, the
//! newest `/usr/lib/postgresql/*/bin` and `PATH`; `scripts/test.sh` installs Debian's
//! `postgresql` package and sets `STAGEGATE_PG_BIN`. PostgreSQL refuses to run as root, so when
//! the test is root (as CI is) `initdb` and `pg_ctl` run as the `postgres` user (or `nobody`)
//! through `runuser`. Clients (`psql`, `createdb`) connect over TCP as the trusted superuser
//! `stagegate`, so they can run as whoever the test is.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::daemon::free_port;

/// The superuser `initdb` creates; every connection uses it (trust auth, loopback only).
const SUPERUSER: &str = "stagegate";

pub struct PgCluster {
    /// Holds `data/` (the cluster), `s/` (its Unix socket) and `log`; deleted on drop.
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The unprivileged user `initdb` and `pg_ctl` run as (through `runuser`) when we are root.
    run_as: Option<String>,
}

impl PgCluster {
    /// initdb a fresh cluster and start it on a free loopback port.
    pub fn start() -> PgCluster {
        let bin = bin_dir();
        let run_as = unprivileged_user();
        let base = std::env::var_os("STAGEGATE_TEST_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix("pg.")
            .tempdir_in(&base)
            .unwrap_or_else(|e| panic!("cannot make a temp dir in {}: {e}", base.display()));
        let sock = dir.path().join("s");
        std::fs::create_dir(&sock).expect("create the socket dir");
        if let Some(user) = &run_as {
            give_to(user, &[dir.path(), &sock]);
            // The base may be root's alone (mktemp -d makes 0700): say which directory is in
            // the way rather than let initdb fail on a bare "Permission denied".
            let ok = Command::new("runuser")
                .args(["-u", user, "--", "test", "-w"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "user {user} cannot reach {}: a parent directory denies it search (x) \
                 permission; `chmod o+x` it or point STAGEGATE_TEST_TMP elsewhere",
                dir.path().display()
            );
        }
        let mut pg = PgCluster {
            dir,
            bin,
            port: 0,
            run_as,
        };
        let out = pg
            .server_cmd("initdb")
            .arg("-D")
            .arg(pg.data())
            .args(["--auth=trust", "-U", SUPERUSER, "--no-sync", "-E", "UTF8"])
            .arg("--locale=C")
            .output()
            .expect("run initdb");
        check("initdb", &out);
        // free_port() lets the port go before postgres binds it, so another process may take
        // it meanwhile: try a few ports before calling it a failure.
        for attempt in 1..=3 {
            pg.port = free_port();
            let before = pg.log().len();
            let out = pg.pg_ctl_start();
            if out.status.success() {
                return pg;
            }
            // Only this attempt's part of the log tells why it failed.
            let log = pg.log().get(before..).unwrap_or_default().to_string();
            let taken = log.contains("Address already in use") || log.contains("could not bind");
            if !taken || attempt == 3 {
                panic!(
                    "pg_ctl start failed: {}\n{}\nserver log:\n{log}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            eprintln!(
                "postgres: port {} was taken meanwhile, trying another",
                pg.port
            );
        }
        unreachable!("the loop returns or panics")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` (as the superuser, over TCP).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Create database `name` (a plain identifier, so the URL needs no escaping); its URL.
    pub fn create_database(&self, name: &str) -> String {
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "database name {name:?}: use letters, digits, _ and -"
        );
        let out = self
            .client("createdb")
            .arg(name)
            .output()
            .expect("run createdb");
        check(&format!("createdb {name}"), &out);
        self.url(name)
    }

    /// A login role `user` that owns database `db` and must give `password` (scram-sha-256
    /// over TCP; every other role keeps trust). The URL of `db` as `user`, without the
    /// password. `user` and `password` are plain words (no quoting is done).
    pub fn create_password_user(&self, user: &str, password: &str, db: &str) -> String {
        for word in [user, password] {
            assert!(
                word.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                "{word:?}: use letters, digits, _ and -"
            );
        }
        self.psql(
            "postgres",
            &format!("CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}'"),
        );
        self.psql(
            "postgres",
            &format!("ALTER DATABASE \"{db}\" OWNER TO \"{user}\""),
        );
        // The first matching line wins: this one goes before initdb's trust lines. Written in
        // place, so the file keeps its owner (the server's user).
        let hba = self.data().join("pg_hba.conf");
        let old = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
        std::fs::write(
            &hba,
            format!("host all {user} 127.0.0.1/32 scram-sha-256\n{old}"),
        )
        .expect("write pg_hba.conf");
        self.psql("postgres", "SELECT pg_reload_conf()");
        format!("postgres://{user}@127.0.0.1:{}/{db}", self.port)
    }

    /// Run `sql` in `db` with `psql -At` (rows only, `|`-separated); its stdout. Panics with
    /// psql's stderr if it fails, including when the server is down.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql)
            .unwrap_or_else(|e| panic!("psql {db}: {sql}\n{e}"))
    }

    /// [`PgCluster::psql`] that returns psql's stderr (and exit status) when it fails.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        // -X: no ~/.psqlrc; -q: no command tags ("INSERT 0 1"), so stdout is just rows.
        let out = self
            .client("psql")
            .args([
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "psql exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Shut the server down cleanly (`-m fast`: sessions are cut, a checkpoint is written).
    pub fn stop(&self) {
        let out = self.pg_ctl(&["stop", "-m", "fast", "-w"]);
        check("pg_ctl stop", &out);
    }

    /// Start the stopped server again: same data directory, same port.
    pub fn start_again(&self) {
        let out = self.pg_ctl_start();
        check(&format!("pg_ctl start\nserver log:\n{}", self.log()), &out);
    }

    /// Turn TLS on: a throwaway CA and a server certificate it signs for `127.0.0.1` (and
    /// `localhost`), made by openssl in the data directory as the server's user, then a
    /// restart. Returns the CA certificate, which a client names as `sslrootcert`.
    pub fn enable_tls(&self) -> PathBuf {
        const MAKE: &str = "set -e
            openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=stagegate-test-ca \
                -keyout ca.key -out ca.crt
            openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' > server.ext
            openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \
                -extfile server.ext -out server.crt
            chmod 600 server.key";
        let mut sh = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--", "sh", "-c", MAKE]);
                c
            }
            None => {
                let mut c = Command::new("sh");
                c.args(["-c", MAKE]);
                c
            }
        };
        let out = sh.current_dir(self.data()).output().expect("run openssl");
        check("openssl (CA and server certificate)", &out);
        self.psql("postgres", "ALTER SYSTEM SET ssl = on");
        self.stop();
        self.start_again();
        self.data().join("ca.crt")
    }

    /// The postmaster's PID, from the first line of `postmaster.pid` (None when it is down).
    pub fn pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn pg_ctl_start(&self) -> Output {
        let sock = self.dir.path().join("s");
        // pg_ctl hands -o to the server through /bin/sh: quote the path.
        let sock = sock.to_string_lossy();
        assert!(!sock.contains('\''), "temp path {sock} has a quote");
        let opts = format!(
            "-p {} -k '{sock}' -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port
        );
        let log = self.dir.path().join("log");
        let log = log.to_string_lossy();
        self.pg_ctl(&["-o", &opts, "-l", &log, "-w", "start"])
    }

    /// `pg_ctl -D <our data dir> ARGS`: pg_ctl signals only the PID in that dir's
    /// postmaster.pid, so it can stop nothing but this cluster.
    fn pg_ctl(&self, args: &[&str]) -> Output {
        self.server_cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(args)
            .output()
            .expect("run pg_ctl")
    }

    /// A server tool of our bin dir, run as the unprivileged user when we are root.
    fn server_cmd(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        // The user may not be able to enter the test's working directory.
        cmd.current_dir(self.dir.path());
        scrub_env(&mut cmd);
        cmd
    }

    /// A client tool (ours, else PATH's) connecting to this cluster over TCP.
    fn client(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        let mut cmd = Command::new(if exe.is_file() {
            exe
        } else {
            PathBuf::from(tool)
        });
        scrub_env(&mut cmd);
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", SUPERUSER])
            // A down server refuses at once on loopback; this only bounds a hang.
            .env("PGCONNECT_TIMEOUT", "10");
        cmd
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Runs while a failed test unwinds too: no panics here, and no postgres left behind.
        if let Some(pid) = self.pid() {
            let stopped = self
                .server_cmd("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["stop", "-m", "immediate", "-w"])
                .output();
            let why = match &stopped {
                Ok(o) if o.status.success() => None,
                Ok(o) => Some(String::from_utf8_lossy(&o.stderr).trim().to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = why {
                eprintln!("postgres: pg_ctl stop failed ({why}); killing postmaster {pid}");
                kill_postmaster(pid, &self.data());
            }
        }
        // The TempDir field then deletes the directory (root may delete postgres's files).
    }
}

/// SIGKILL `pid` only if it is still the postmaster of `data` (a stale postmaster.pid may
/// name a PID reused by an unrelated process); its backends exit when it dies.
fn kill_postmaster(pid: u32, data: &Path) {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return; // already gone
    };
    let data = data.to_string_lossy();
    let ours = cmdline.split(|b| *b == 0).any(|arg| arg == data.as_bytes());
    if !ours {
        eprintln!("postgres: PID {pid} is not the postmaster of {data}; not killing it");
        return;
    }
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) with a PID checked above to be our own postmaster, and a valid signal.
    if unsafe { libc::kill(raw, libc::SIGKILL) } != 0 {
        eprintln!("postgres: kill {pid}: {}", std::io::Error::last_os_error());
        return;
    }
    // Let it die before its directory is deleted under it. It is not our child (pg_ctl
    // daemonized it), so it is gone or a zombie until init reaps it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let dead = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit(") ").next().is_some_and(|r| r.starts_with('Z'))
        });
        if dead {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    eprintln!("postgres: postmaster {pid} still alive 5 s after SIGKILL");
}

/// Drop the developer's PG* variables (PGDATA, PGHOST, PGOPTIONS…): they must not steer the
/// throwaway cluster or its clients.
fn scrub_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
}

/// Panic with the tool's output unless it succeeded.
fn check(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The user to run the server as: none (ourselves) unless we are root, which PostgreSQL
/// refuses; then Debian's `postgres` user, or `nobody` where the package did not make one.
fn unprivileged_user() -> Option<String> {
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let exists = |u: &str| {
        Command::new("id")
            .args(["-u", u])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    Some(
        if exists("postgres") {
            "postgres"
        } else {
            "nobody"
        }
        .to_string(),
    )
}

/// chown `paths` to `user` (and its primary group).
fn give_to(user: &str, paths: &[&Path]) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, user])
            .output()
            .expect("run id");
        check(&format!("id {flag} {user}"), &out);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("id {flag} {user}: {e}"))
    };
    let (uid, gid) = (id("-u"), id("-g"));
    for p in paths {
        std::os::unix::fs::chown(p, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {} to {user}: {e}", p.display()));
    }
}

/// The directory of `initdb`, `pg_ctl` and `postgres` (see the module doc for the order).
pub fn bin_dir() -> PathBuf {
    let complete = |d: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|t| d.join(t).is_file())
    };
    if let Some(dir) = std::env::var_os("STAGEGATE_PG_BIN").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        assert!(
            complete(&dir),
            "STAGEGATE_PG_BIN={} lacks initdb, pg_ctl or postgres",
            dir.display()
        );
        return dir;
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|d| complete(d)) {
        return dir;
    }
    if let Some(dir) = newest_debian_bin().filter(|d| complete(d)) {
        return dir;
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|d| complete(d));
    on_path.unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server binaries (initdb, pg_ctl, postgres) were not found in \
             STAGEGATE_PG_BIN, pg_config --bindir, /usr/lib/postgresql/*/bin or PATH: run the \
             suite with `bash scripts/test.sh`, which installs Debian's postgresql package"
        )
    })
}

/// `/usr/lib/postgresql/<version>/bin` of the highest version (Debian's layout).
fn newest_debian_bin() -> Option<PathBuf> {
    let version =
        |name: &str| -> Option<Vec<u32>> { name.split('.').map(|p| p.parse().ok()).collect() };
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| Some((version(&e.file_name().to_string_lossy())?, e.path())))
        .max()
        .map(|(_, path)| path.join("bin"))
}
