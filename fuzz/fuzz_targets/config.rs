//! Config loading as `stagegate check` and the daemon do it: TOML, `STAGEGATE_*__*`
//! overrides, validation (`stagegate::config::from_text`), then what the daemon asks of a
//! loaded config: which policy a model falls under, and each policy's digest.
//!
//! Input: the TOML text, then optionally a NUL byte and `NAME=VALUE` lines, the environment
//! (given as a list: setting process variables from a fuzzer would race).
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
use libfuzzer_sys::fuzz_target;
use stagegate::config;

fuzz_target!(|data: &[u8]| {
    let (toml, env) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    // The loader reads the file as UTF-8 text; anything else fails before parsing.
    let Ok(toml) = std::str::from_utf8(toml) else {
        return;
    };
    let env: Vec<(String, String)> = String::from_utf8_lossy(env)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match config::from_text(toml, "stagegate.toml", env) {
        Ok(c) => {
            for model in ["m", "fraud-model", "", "a/b*c"] {
                let _ = c.policy_for(model);
            }
            for p in &c.policies {
                assert_eq!(p.digest(), p.digest(), "a policy digest is not stable");
            }
        }
        // Every refusal names where it came from.
        Err(e) => assert!(!e.source_name.is_empty() && !e.to_string().is_empty()),
    }
});
