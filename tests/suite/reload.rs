//! A reload (SIGHUP) of a running daemon: the retry settings take effect at once, and the
//! settings only a restart applies are named in a warning.

use crate::common;

use std::time::Duration;

use common::daemon::{Daemon, SECRET, now_unix};
use common::*;

const WAIT: Duration = Duration::from_secs(60);

/// MLflow is a closed port, so every reconcile fails (transiently) and is retried while
/// attempts are left: an hour later, never within the test.
fn body(prefix: &str, count: usize, max_attempts: u32) -> String {
    format!(
        "[webhooks]\nsecrets = [\"{SECRET}\"]\n\n[poll]\nschedule = \"0 0 0 1 1 *\"\n\n\
         [workers]\ncount = {count}\nmax_attempts = {max_attempts}\nbackoff = \"1h\"\n\n\
         [[policies]]\nname = \"p\"\nmodels = [\"{prefix}*\"]\n{STAGE_TARGETS}\n"
    )
}

/// A tag set on `model`: a reason to reconcile it, with no re-checks.
fn tag_event(model: &str) -> String {
    format!(
        r#"{{"entity":"model_version_tag","action":"set","timestamp":"x","data":{{"name":"{model}","version":"1","key":"k","value":"v"}}}}"#
    )
}

/// Whether one line of the daemon's log says `what` about `model`.
fn logged(d: &Daemon, what: &str, model: &str) -> bool {
    let model = format!("model=\"{model}\"");
    d.log()
        .lines()
        .any(|l| l.contains(what) && l.contains(&model))
}

#[test]
fn a_reload_applies_the_retry_settings_and_names_what_waits_for_a_restart() {
    let prefix = unique("reload");
    let d = Daemon::start("http://127.0.0.1:9", &body(&prefix, 2, 5));
    let first = format!("{prefix}-a");
    let (s, b) = d.deliver("first", now_unix(), SECRET, &tag_event(&first));
    assert_eq!(s, 202, "{b}");
    d.wait_for("the first failure to be retried", WAIT, || {
        logged(&d, "reconcile failed; retrying", &first)
    });
    assert!(!d.log().contains("take effect at the next restart"));

    d.write_config(&body(&prefix, 3, 1));
    d.signal("HUP");
    d.wait_for("the reload", WAIT, || {
        d.log().contains("configuration reloaded")
    });
    let warning = d
        .log()
        .lines()
        .find(|l| l.contains("take effect at the next restart"))
        .map(str::to_string)
        .expect("a warning about the settings that wait for a restart");
    assert!(
        warning.contains("WARN") && warning.contains("workers.count"),
        "{warning}"
    );
    assert!(!warning.contains("state.path"), "unchanged: {warning}");

    // One attempt now: the next failure is not retried.
    let second = format!("{prefix}-b");
    let (s, b) = d.deliver("second", now_unix(), SECRET, &tag_event(&second));
    assert_eq!(s, 202, "{b}");
    d.wait_for("the second failure to be given up", WAIT, || {
        logged(&d, "giving up until the next trigger", &second)
    });
    assert!(
        !logged(&d, "reconcile failed; retrying", &second),
        "{}",
        d.log()
    );
}
