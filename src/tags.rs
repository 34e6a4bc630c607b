//! What stagegate's tags on model versions are called (every key under the configurable
//! prefix, `stagegate.` by default), and how a long value is cut to fit one. Pure: the
//! decision core reads tags by these names, [`crate::report`] writes them.

/// Tag keys under the configured prefix (default `stagegate.`).
#[derive(Debug, Clone)]
pub struct TagNames {
    prefix: String,
}

impl TagNames {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn verdict(&self) -> String {
        self.key("verdict")
    }
    pub fn policy(&self) -> String {
        self.key("policy")
    }
    pub fn digest(&self) -> String {
        self.key("policy_digest")
    }
    pub fn evaluated_at(&self) -> String {
        self.key("evaluated_at")
    }
    pub fn gate(&self, gate: &str) -> String {
        self.key(&format!("gate.{gate}"))
    }
    pub fn report(&self) -> String {
        self.key("report")
    }
    pub fn action(&self) -> String {
        self.key("action")
    }
    pub fn replaced_by(&self) -> String {
        self.key("replaced_by")
    }
    pub fn replaced_at(&self) -> String {
        self.key("replaced_at")
    }
    pub fn replaced_version(&self) -> String {
        self.key("replaced_version")
    }
    pub fn bypass(&self) -> String {
        self.key("bypass")
    }
    pub fn rolled_back(&self) -> String {
        self.key("rolled_back")
    }
    pub fn restored_at(&self) -> String {
        self.key("restored_at")
    }
    /// The post-promotion analysis of a promoted version: `running`, `passed`,
    /// `failed: <metric> <value> vs <threshold>`, `inconclusive: …` or `ended: <why>`.
    pub fn analysis(&self) -> String {
        self.key("analysis")
    }

    /// The inputs fingerprint that marks the verdict current (see `inputs`).
    pub fn fingerprint(&self) -> String {
        self.key("fingerprint")
    }
}

/// Cut `s` to at most `max` characters, saying so.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(16)).collect();
    out.push_str(" …[truncated]");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_marks_truncation() {
        assert_eq!(clip("short", 10), "short");
        let c = clip(&"a".repeat(100), 40);
        assert!(c.chars().count() <= 40 && c.ends_with("[truncated]"));
    }
}
