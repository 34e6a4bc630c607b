//! Child processes that never outlive their owner: each runs in its own process group, and
//! dropping the handle kills the whole group — on completion, timeout, cancellation (a dropped
//! future), daemon shutdown and panic alike. `mlflow models serve` forks uvicorn and a command
//! gate may fork anything, so killing only the direct child would leak the rest.

use std::process::ExitStatus;

use tokio::process::{Child, Command};

pub struct Group {
    child: Child,
    pgid: i32,
}

impl Group {
    /// Spawn `cmd` as the leader of a new process group.
    pub fn spawn(mut cmd: Command) -> std::io::Result<Group> {
        cmd.process_group(0).kill_on_drop(true);
        let child = cmd.spawn()?;
        let pgid = child.id().map(|id| id as i32).unwrap_or(0);
        Ok(Group { child, pgid })
    }

    pub fn id(&self) -> i32 {
        self.pgid
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The exit status, if the leader has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Kill every process of the group.
    pub fn kill(&mut self) {
        if self.pgid > 0 {
            // SAFETY: kill(2) takes no pointers; a negative pid addresses the process group we
            // created, so nothing outside it can be hit.
            unsafe {
                libc::kill(-self.pgid, libc::SIGKILL);
            }
        }
        let _ = self.child.start_kill();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
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

    #[tokio::test]
    async fn dropping_the_handle_kills_the_grandchildren_too() {
        let mut cmd = Command::new("sh");
        // The shell forks a long sleep and waits for it.
        cmd.args(["-c", "sleep 300 & wait"]);
        let g = Group::spawn(cmd).unwrap();
        let pgid = g.id();
        assert!(group_alive(pgid));
        drop(g);
        for _ in 0..100 {
            if !group_alive(pgid) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("process group {pgid} outlived its handle");
    }
}
