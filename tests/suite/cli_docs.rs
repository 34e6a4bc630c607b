//! The command line's own documentation: shell completions, man pages and the `--config` help.
//! No MLflow is needed; the subcommands are read from `stagegate --help`, so a new one is
//! covered without touching this file.

use std::process::{Command, Output};

fn stagegate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stagegate"))
        .args(args)
        .env_remove("STAGEGATE_CONFIG")
        .output()
        .expect("run stagegate")
}

fn stdout_of(args: &[&str]) -> String {
    let out = stagegate(args);
    assert!(
        out.status.success(),
        "stagegate {args:?} exited {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The subcommands `stagegate --help` lists (its `Commands:` section), without `help`.
fn subcommands() -> Vec<String> {
    let help = stdout_of(&["--help"]);
    let listed: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect();
    for known in ["run", "evaluate", "check", "webhook", "status", "rollback"] {
        assert!(
            listed.iter().any(|c| c == known),
            "{known} missing from {listed:?}"
        );
    }
    listed
}

#[test]
fn completion_scripts_name_every_subcommand_and_bash_parses_its_own() {
    let commands = subcommands();
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout_of(&["completions", shell]);
        assert!(script.len() > 200, "{shell} script is nearly empty");
        for c in commands.iter().map(String::as_str).chain(["register"]) {
            assert!(script.contains(c), "{shell} completions do not mention {c}");
        }
        assert!(
            script.contains("--config"),
            "{shell} completions lack --config"
        );
    }
    let bash = stdout_of(&["completions", "bash"]);
    let mut check = Command::new("bash")
        .arg("-n")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("bash");
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), bash.as_bytes()).unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "bash -n rejects the script: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    // An unknown shell is refused by name, with the ones that exist.
    let out = stagegate(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tcsh") && err.contains("bash"), "{err}");
}

#[test]
fn the_man_page_names_every_subcommand_and_out_writes_one_page_each() {
    let commands = subcommands();
    let page = stdout_of(&["man"]);
    assert!(page.contains(".TH stagegate 1"), "not a roff man page");
    for c in &commands {
        assert!(
            page.contains(c.as_str()),
            "the man page does not mention {c}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    stdout_of(&["man", "--out", out.to_str().unwrap()]);
    for c in &commands {
        let file = out.join(format!("stagegate-{c}.1"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(text.contains(".TH"), "{} is not a man page", file.display());
    }
    let evaluate = std::fs::read_to_string(out.join("stagegate-evaluate.1")).unwrap();
    assert!(evaluate.contains("STAGEGATE_CONFIG"), "{evaluate}");
    assert!(out.join("stagegate.1").is_file());
    assert!(out.join("stagegate-webhook-register.1").is_file());
}

#[test]
fn every_config_option_explains_its_search_order() {
    let with_config = [
        vec!["run"],
        vec!["evaluate"],
        vec!["check"],
        vec!["webhook", "register"],
        vec!["status"],
        vec!["rollback"],
    ];
    for cmd in with_config {
        let mut args = cmd.clone();
        args.push("--help");
        let help = stdout_of(&args);
        let order = help
            .find("Search order:")
            .map(|i| &help[i..])
            .unwrap_or_else(|| panic!("`{cmd:?} --help` gives no search order:\n{help}"));
        // Each place in the order it is tried.
        let at: Vec<usize> = [
            "--config FILE",
            "$STAGEGATE_CONFIG",
            "./stagegate.toml",
            "/etc/stagegate/stagegate.toml",
        ]
        .iter()
        .map(|s| {
            order
                .find(s)
                .unwrap_or_else(|| panic!("`{cmd:?} --help` lacks {s}:\n{help}"))
        })
        .collect();
        assert!(
            at.windows(2).all(|w| w[0] < w[1]),
            "`{cmd:?} --help` gives the places out of order:\n{help}"
        );
        assert!(help.contains("STAGEGATE_<SECTION>__<KEY>"), "{help}");
    }
}
