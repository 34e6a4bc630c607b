//! The root cause of a failed `mlflow models serve`, read from its log (pure). The log's last
//! lines are usually MLflow's outer wrapper (`Exception: Command '['bash', '-c', 'exec uvicorn
//! …']' returned non zero return code`), while what went wrong — an `AttributeError` from an
//! incompatible library, a `ModuleNotFoundError` — is in an earlier traceback, printed by the
//! uvicorn process before it exited. A gate's message leads with that line.

/// The longest root-cause line kept (exception messages can embed whole inputs).
const MAX_CHARS: usize = 300;

/// How one traceback is linked to the one printed before it.
#[derive(Clone, Copy, PartialEq)]
enum Link {
    /// "The above exception was the direct cause of the following exception": the earlier one
    /// is the root.
    Cause,
    /// "During handling of the above exception, another exception occurred": the later one is
    /// what failed; the earlier was being handled.
    Context,
}

/// The line that names what really went wrong, if the log shows one: the exception of the
/// last traceback chain that does not involve a subprocess wrapper (within a chain, the
/// innermost cause); failing that, the last error a logger printed (uvicorn's `ERROR:` lines).
/// The last, because a server that logged a handled error and went on before failing (or
/// dying mid-gate) failed of the later one.
pub fn root_cause(log: &str) -> Option<String> {
    let exceptions = exceptions(log);
    let mut chains: Vec<Vec<&str>> = Vec::new();
    for (line, link) in exceptions {
        match (link, chains.last_mut()) {
            (Some(link), Some(chain)) => {
                // Keep the chain's root first: a context replaces it, a consequence does not.
                if link == Link::Context {
                    chain.insert(0, line);
                } else {
                    chain.push(line);
                }
            }
            _ => chains.push(vec![line]),
        }
    }
    // A chain with a wrapper in it is MLflow restating the failure, whatever else it says.
    let from_tracebacks = chains
        .iter()
        .rev()
        .find(|chain| !chain.iter().any(|l| is_wrapper(l)))
        .map(|chain| chain[0]);
    from_tracebacks
        .or_else(|| log.lines().rev().find_map(logged_error))
        .map(shorten)
}

/// Each traceback's exception line, in order, with how it links to the previous traceback.
fn exceptions(log: &str) -> Vec<(&str, Option<Link>)> {
    let mut out = Vec::new();
    let mut in_traceback = false;
    let mut link = None;
    for line in log.lines() {
        let t = line.trim_end();
        if t.ends_with("Traceback (most recent call last):") {
            in_traceback = true;
        } else if in_traceback {
            // Frames, source lines and carets are indented; the exception is the first line
            // that is not and reads like one (other output may interleave).
            if !t.starts_with([' ', '\t']) && looks_like_exception(t) {
                out.push((t, link.take()));
                in_traceback = false;
            }
        } else if t.contains("was the direct cause of the following exception") {
            link = Some(Link::Cause);
        } else if t.contains("During handling of the above exception") {
            link = Some(Link::Context);
        }
    }
    out
}

/// `Name` or `dotted.Name: message`, as Python prints an exception.
fn looks_like_exception(line: &str) -> bool {
    let name = line.split_once(':').map_or(line, |(n, _)| n);
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && (line.len() == name.len() || line[name.len()..].starts_with(": "))
}

/// The failure of the process MLflow ran, restated by MLflow or by `subprocess`: never the
/// root cause.
fn is_wrapper(line: &str) -> bool {
    [
        "CalledProcessError",
        "ShellCommandException",
        "returned non zero",
        "returned non-zero",
    ]
    .iter()
    .any(|w| line.contains(w))
}

/// An error line as uvicorn (`ERROR:    …`) or MLflow's logger (`2025/01/01 10:00:00 ERROR
/// mlflow…: …`) prints it.
fn logged_error(line: &str) -> Option<&str> {
    let t = line.trim();
    let msg = t.strip_prefix("ERROR:").or_else(|| {
        t.starts_with(|c: char| c.is_ascii_digit())
            .then(|| t.split_once(" ERROR ").map(|(_, m)| m))
            .flatten()
    })?;
    let msg = msg.trim();
    (!msg.is_empty() && !is_wrapper(msg)).then_some(msg)
}

fn shorten(line: &str) -> String {
    match line.char_indices().nth(MAX_CHARS) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real `mlflow models serve` logs (tests/fixtures/serving_logs), each ending with
    /// MLflow's "returned non zero return code" wrapper, and the line each must yield.
    #[test]
    fn real_logs_name_the_exception_behind_mlflows_wrapper() {
        let cases = [
            // A library raising AttributeError on import, as an incompatible starlette does.
            (
                "import_attribute_error.log",
                "AttributeError: module 'x' has no attribute 'missing_attr'",
            ),
            // ModuleNotFoundError, "the direct cause of" a RuntimeError: the innermost cause.
            (
                "chained_module_not_found.log",
                "ModuleNotFoundError: No module named 'sklearn_native_core'",
            ),
            // No traceback from uvicorn, only its error line.
            (
                "uvicorn_cannot_import_app.log",
                "Error loading ASGI app. Could not import module \"no_such_scoring_module\".",
            ),
        ];
        for (name, want) in cases {
            let path = format!(
                "{}/tests/fixtures/serving_logs/{name}",
                env!("CARGO_MANIFEST_DIR")
            );
            let log = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(log.contains("returned non zero return code"), "{name}");
            assert_eq!(root_cause(&log).as_deref(), Some(want), "{name}");
        }
    }

    /// Shapes the real logs above do not show, and the line each must yield.
    #[test]
    fn chains_earlier_errors_interleaved_output_and_logger_lines() {
        let cases = [
            // Raised while handling a KeyError: the later exception is what failed.
            (
                "Traceback (most recent call last):\n  File \"a.py\", line 1, in <module>\n    cache['model']\nKeyError: 'model'\n\nDuring handling of the above exception, another exception occurred:\n\nTraceback (most recent call last):\n  File \"a.py\", line 3, in <module>\n    import lightgbm\nModuleNotFoundError: No module named 'lightgbm'\nTraceback (most recent call last):\n  File \"mlflow\", line 8, in <module>\nsubprocess.CalledProcessError: Command '['bash', '-c', 'exec uvicorn']' returned non-zero exit status 1.\n",
                "ModuleNotFoundError: No module named 'lightgbm'",
            ),
            // An error handled earlier (the server went on), then the fatal one, then MLflow's
            // wrapper chained to an exception of its own.
            (
                "Traceback (most recent call last):\n  File \"plugins.py\", line 4, in load\nImportError: optional plugin 'x' unavailable\n2025/01/01 10:00:00 WARNING mlflow: going on without plugin 'x'\nTraceback (most recent call last):\n  File \"app.py\", line 6, in <module>\nAttributeError: module 'starlette.routing' has no attribute 'Mount'\nTraceback (most recent call last):\n  File \"cli.py\", line 9, in serve\nsubprocess.CalledProcessError: Command '['bash', '-c', 'exec uvicorn']' returned non-zero exit status 1.\n\nThe above exception was the direct cause of the following exception:\n\nTraceback (most recent call last):\n  File \"cli.py\", line 12, in serve\nmlflow.exceptions.MlflowException: the model server failed\n",
                "AttributeError: module 'starlette.routing' has no attribute 'Mount'",
            ),
            // A log line amid the frames; a SyntaxError's caret lines.
            (
                "Traceback (most recent call last):\n  File \"m.py\", line 2\n    def f(:\n          ^\n2025/01/01 10:00:00 INFO mlflow: still here\nSyntaxError: invalid syntax\n",
                "SyntaxError: invalid syntax",
            ),
            // No traceback: MLflow's logger said it.
            (
                "2025/01/01 10:00:00 INFO mlflow.models: Selected backend\n2025/01/01 10:00:01 ERROR mlflow.pyfunc: Model requires lightgbm, which is not installed\n",
                "mlflow.pyfunc: Model requires lightgbm, which is not installed",
            ),
        ];
        for (log, want) in cases {
            assert_eq!(root_cause(log).as_deref(), Some(want), "{log}");
        }
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let long = format!(
            "Traceback (most recent call last):\nValueError: {}\n",
            "é".repeat(400)
        );
        let got = root_cause(&long).unwrap();
        assert_eq!(got.chars().count(), MAX_CHARS + 1);
        assert!(got.ends_with('…'));
    }

    #[test]
    fn only_wrappers_or_nothing_gives_no_root_cause() {
        let wrapper = "Traceback (most recent call last):\n  File \"x\", line 1\nException: Command '['bash', '-c', 'exec uvicorn']' returned non zero return code. Return code = 1\n";
        assert_eq!(root_cause(wrapper), None);
        assert_eq!(root_cause(""), None);
        assert_eq!(
            root_cause(
                "INFO:     Started server process [1]\nINFO:     Waiting for application startup.\n"
            ),
            None
        );
    }
}
