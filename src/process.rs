//! Child processes that never outlive stagegate, whatever ends it. Each child (a served model,
//! a command gate) runs in a process group of its own, because `mlflow models serve` execs
//! uvicorn through `bash -c` and a command gate may fork anything: only the group reaches the
//! grandchildren.
//!
//! Two mechanisms kill the group:
//! - dropping the [`Group`] handle kills it at once — on completion, timeout, cancellation (a
//!   dropped future), daemon shutdown and panic alike;
//! - a *guard* covers every way stagegate can die without running destructors (`kill -9`, an
//!   abort, `exit` from another thread). The guard is a tiny `/bin/sh` that leads the group and
//!   blocks reading a pipe whose only write end stagegate holds (close-on-exec, so no other
//!   child inherits it). When stagegate dies, the kernel closes that end, the read hits EOF, and
//!   the guard sends SIGTERM to its group, waits two seconds (long enough for uvicorn or a test
//!   suite to shut down cleanly), then SIGKILLs it, itself included.
//!
//! The guard starts first and the child is spawned straight into the guard's group (the
//! `setpgid` happens in the forked child before `exec`), so there is no moment when the child
//! runs outside a guarded group: if stagegate dies before the child is spawned, the guard only
//! kills itself; if it dies mid-spawn, the forked child still holds the write end until its
//! `exec` closes it, so the guard wakes only once the child is in the group (or gone).
//!
//! No `PR_SET_PDEATHSIG`: it fires when the *thread* that forked the child exits, and tokio
//! retires idle blocking-pool threads, which would kill a healthy server mid-evaluation. The
//! pipe's EOF depends on the process alone. A shell rather than a re-exec of our own binary, so
//! the library behaves the same in any host (the CLI, tests, examples).

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// The guard: ignore the signals meant for the group (and a hang-up of the terminal), say it
/// is ready, then wait for EOF on stdin — the pipe only stagegate writes to. `read` returns
/// non-zero at EOF (stagegate never writes), and then the whole group goes.
const GUARD_SCRIPT: &str = "trap '' TERM INT HUP
echo ready
exec >/dev/null 2>&1
while read -r _; do :; done
kill -TERM 0
sleep 2
kill -KILL 0
";

/// How long a guard may take to say it is ready (a shell starts in milliseconds).
const GUARD_READY: Duration = Duration::from_secs(10);

pub struct Group {
    child: Child,
    /// The guard leads the group; it is our child and never reaped while this handle lives,
    /// so the group's id cannot be reused and `kill(-pgid)` never reaches a stranger.
    guard: Child,
    pgid: i32,
    /// The write end of the guard's pipe; closed after `drop` has killed the group.
    _lifeline: Option<std::io::PipeWriter>,
}

impl Group {
    /// Spawn `cmd` in a new process group led by a guard (see the module doc). `label` goes in
    /// the guard's environment as `STAGEGATE_GUARD`, so a guard can be found like its group.
    pub async fn spawn(mut cmd: Command, label: &str) -> std::io::Result<Group> {
        let (guard, pgid, lifeline) = start_guard(label).await?;
        cmd.process_group(pgid).kill_on_drop(true);
        // On failure `guard` is dropped, which kills it (kill_on_drop).
        let child = cmd.spawn()?;
        Ok(Group {
            child,
            guard,
            pgid,
            _lifeline: Some(lifeline),
        })
    }

    pub fn id(&self) -> i32 {
        self.pgid
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The exit status, if the (guarded) child has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Kill every process of the group, the guard included.
    pub fn kill(&mut self) {
        // SAFETY: kill(2) takes no pointers; a negative pid addresses the process group we
        // created, whose id our unreaped guard holds, so nothing outside it can be hit.
        unsafe {
            libc::kill(-self.pgid, libc::SIGKILL);
        }
        let _ = self.child.start_kill();
        let _ = self.guard.start_kill();
    }

    /// Let go of the pipe as stagegate's death would, keeping the handles (tests).
    #[cfg(test)]
    fn sever(&mut self) {
        self._lifeline = None;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Start a guard leading a new process group; returns it, the group's id, and the pipe's
/// write end.
async fn start_guard(label: &str) -> std::io::Result<(Child, i32, std::io::PipeWriter)> {
    // std's pipe is close-on-exec at both ends: only the guard gets the read end (as its
    // stdin, which `dup2` makes inheritable), and no child ever gets the write end.
    let (reader, writer) = std::io::pipe()?;
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", GUARD_SCRIPT, "stagegate-guard"])
        // Nothing of ours (credentials included) needs to be in the guard's environment.
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("STAGEGATE_GUARD", label)
        .stdin(reader)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut guard = cmd.spawn()?;
    // Our copy of the read end goes with the command.
    drop(cmd);
    let pgid = guard
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .ok_or_else(|| std::io::Error::other("the process guard exited at once"))?;
    let mut ready = [0u8; 6];
    let said = match guard.stdout.take() {
        Some(mut out) => tokio::time::timeout(GUARD_READY, out.read_exact(&mut ready)).await,
        None => return Err(std::io::Error::other("the process guard has no stdout")),
    };
    match said {
        Ok(Ok(_)) if &ready == b"ready\n" => Ok((guard, pgid, writer)),
        _ => Err(std::io::Error::other(
            "the process guard (/bin/sh) did not start",
        )),
    }
}

/// Whether any process of group `pgid` is still alive (tests, diagnostics).
pub fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence; no pointers are involved.
    pgid > 0 && unsafe { libc::kill(-pgid, 0) } == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `pid` runs (a zombie does not: it waits only to be reaped).
    fn running(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit(") ").next().is_some_and(|r| !r.starts_with('Z')))
    }

    #[tokio::test]
    async fn dropping_the_handle_kills_the_grandchildren_too() {
        let mut cmd = Command::new("sh");
        // The shell forks a long sleep and waits for it.
        cmd.args(["-c", "sleep 300 & wait"]);
        let g = Group::spawn(cmd, "test").await.unwrap();
        let pgid = g.id();
        assert!(group_alive(pgid));
        drop(g);
        for _ in 0..100 {
            if !group_alive(pgid) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("process group {pgid} outlived its handle");
    }

    /// What `kill -9` of stagegate does to the pipe, without killing the test: the guard must
    /// stop the group, politely first (the child's TERM trap runs), grandchildren included.
    #[tokio::test]
    async fn when_the_owner_goes_the_guard_stops_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("terminated");
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "trap 'echo term > \"$1\"; exit 0' TERM; sleep 300 & echo $!; wait",
            "sh",
        ])
        .arg(&marker)
        .stdout(Stdio::piped());
        let mut g = Group::spawn(cmd, "test").await.unwrap();
        let mut line = String::new();
        let mut out = g.child().stdout.take().unwrap();
        let mut buf = [0u8; 32];
        while !line.ends_with('\n') {
            let n = out.read(&mut buf).await.unwrap();
            assert!(n > 0, "no grandchild pid");
            line.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        let grandchild: u32 = line.trim().parse().unwrap();
        assert!(running(grandchild));

        g.sever();
        let guard_pid = g.guard.id().unwrap();
        for _ in 0..200 {
            let leader_gone = g.exited().is_some();
            let guard_gone = g.guard.try_wait().unwrap().is_some();
            if leader_gone && guard_gone && !running(grandchild) {
                assert_eq!(
                    std::fs::read_to_string(&marker).unwrap_or_default().trim(),
                    "term",
                    "SIGTERM comes before SIGKILL"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the guard {guard_pid} left its group: leader exited {:?}, grandchild {grandchild} running {}",
            g.exited(),
            running(grandchild)
        );
    }
}
