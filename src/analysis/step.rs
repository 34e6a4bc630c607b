//! What a running analysis does next, from the registry as it is now (pure). Never told why it
//! is asked: a restart, a takeover, a timer or a webhook all ask the same question, and the
//! answer only depends on the analysis row and the champion the registry names now.

use crate::store::AnalysisRow;

/// What the registry says now, as far as an analysis cares.
#[derive(Debug, Clone, PartialEq)]
pub struct Now<'a> {
    /// The version at the policy's promote target now.
    pub champion: Option<&'a str>,
    /// The watched version carries `stagegate.rolled_back`.
    pub rolled_back: bool,
    /// Acting is paused (for every replica).
    pub paused: bool,
    /// The store's clock, unix ms.
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Nothing before this many ms.
    Wait(i64),
    /// Take the next round of measurements.
    Measure,
    /// The analysis no longer watches the champion: end it with this reason.
    End(String),
}

pub fn next(a: &AnalysisRow, now: &Now) -> Next {
    if now.champion != Some(a.version.as_str()) {
        return Next::End(gone(a, now));
    }
    if now.paused {
        // Nothing is measured, and so nothing is rolled back, while paused: the rounds wait
        // (a resume queues the model at once).
        return Next::Wait(5_000);
    }
    match a.due_at - now.at_ms {
        wait if wait > 0 => Next::Wait(wait),
        _ => Next::Measure,
    }
}

/// Why the watched version is no longer the champion.
fn gone(a: &AnalysisRow, now: &Now) -> String {
    let previous = a.previous.as_deref();
    match now.champion {
        _ if now.rolled_back => format!("v{} was rolled back", a.version),
        Some(c) if Some(c) == previous => {
            format!("v{c}, the replaced champion, is back (moved by hand)")
        }
        Some(c) if newer(c, &a.version) => format!("superseded by v{c}"),
        Some(c) => format!("the champion was moved by hand to v{c}"),
        None => "the promote target names no version any more (moved by hand)".into(),
    }
}

fn newer(a: &str, b: &str) -> bool {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x > y,
        _ => false,
    }
}

/// A running analysis row, for tests.
#[cfg(test)]
pub(crate) fn test_row(version: &str, previous: Option<&str>, due_at: i64) -> AnalysisRow {
    AnalysisRow {
        id: 1,
        model: "m".into(),
        version: version.into(),
        previous: previous.map(str::to_string),
        target: "alias:champion".into(),
        policy: "p".into(),
        status: "running".into(),
        reason: None,
        step: 0,
        measurements: serde_json::json!({}),
        started_at: String::new(),
        due_at,
        finished_at: None,
        settled_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::test_row as row;
    use super::*;

    fn now(champion: Option<&str>) -> Now<'_> {
        Now {
            champion,
            rolled_back: false,
            paused: false,
            at_ms: 10_000,
        }
    }

    #[test]
    fn a_watched_champion_is_measured_when_due_and_waits_otherwise() {
        assert_eq!(
            next(&row("5", Some("4"), 9_000), &now(Some("5"))),
            Next::Measure
        );
        assert_eq!(
            next(&row("5", Some("4"), 10_000), &now(Some("5"))),
            Next::Measure
        );
        assert_eq!(
            next(&row("5", Some("4"), 12_500), &now(Some("5"))),
            Next::Wait(2_500)
        );
        let paused = Now {
            paused: true,
            ..now(Some("5"))
        };
        assert!(matches!(
            next(&row("5", Some("4"), 0), &paused),
            Next::Wait(_)
        ));
    }

    #[test]
    fn a_champion_that_changed_ends_the_analysis_with_why() {
        let end = |a: AnalysisRow, n: Now| match next(&a, &n) {
            Next::End(why) => why,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            end(row("5", Some("4"), 0), now(Some("6"))),
            "superseded by v6"
        );
        assert!(end(row("5", Some("4"), 0), now(Some("4"))).contains("moved by hand"));
        assert!(end(row("5", Some("4"), 0), now(Some("3"))).contains("moved by hand to v3"));
        assert!(end(row("5", None, 0), now(None)).contains("names no version"));
        let rolled = Now {
            rolled_back: true,
            ..now(Some("4"))
        };
        assert_eq!(end(row("5", Some("4"), 0), rolled), "v5 was rolled back");
        // Paused or not, a champion that changed is not watched any more.
        let paused = Now {
            paused: true,
            ..now(Some("6"))
        };
        assert_eq!(end(row("5", Some("4"), 0), paused), "superseded by v6");
    }
}
