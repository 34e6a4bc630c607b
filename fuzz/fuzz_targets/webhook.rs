//! A webhook delivery as the receiver sees it: signature verification over the raw body and
//! headers, then event parsing and routing (`stagegate::webhook`).
//!
//! Input: a flags byte, then `id \n timestamp \n signature \n secrets \n body` (the body is
//! the rest, newlines and all; secrets are comma-separated, none = webhooks disabled).
//! Flags: bit 0 appends a correct signature for the first secret, so the fuzzer reaches the
//! accepted path it could never forge; bits 1–3 drop the id, timestamp or signature header;
//! bits 4–7 put "now" 0–15 × 64 s after the timestamp, across the 300 s tolerance.
#![cfg_attr(fuzzing, no_main)]

use std::time::Duration;

#[cfg(fuzzing)]
use libfuzzer_sys::fuzz_target;
use stagegate::config::Secret;
use stagegate::webhook::{self, Headers, Rejection};

const TOLERANCE: Duration = Duration::from_secs(300);

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(5, |b| *b == b'\n');
    // Header values reach `verify` as &str (the handler drops values that are not text).
    let mut text = || parts.next().and_then(|p| std::str::from_utf8(p).ok());
    let (id, ts, sig, secrets) = (text(), text(), text(), text());
    let body = parts.next().unwrap_or_default();
    let secrets: Vec<Secret> = secrets
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(Secret::new)
        .collect();

    let mut sig = sig.map(str::to_string);
    if flags & 1 != 0
        && let (Some(first), Some(id), Some(ts)) = (secrets.first(), id, ts)
    {
        let good = webhook::signature_header(first.expose(), id, ts, body);
        sig = Some(match sig {
            Some(s) => format!("{s} {good}"),
            None => good,
        });
    }
    let headers = Headers {
        delivery_id: id.filter(|_| flags & 2 == 0),
        timestamp: ts.filter(|_| flags & 4 == 0),
        signature: sig.as_deref().filter(|_| flags & 8 == 0),
    };
    let ts_num = ts.and_then(|t| t.trim().parse::<u64>().ok());
    let now = ts_num
        .unwrap_or(0)
        .saturating_add(u64::from(flags >> 4) * 64);

    let verdict = webhook::verify(&headers, body, &secrets, TOLERANCE, now);
    // Every rejection has a status and a message (the handler sends both).
    if let Err(r) = &verdict {
        assert!(matches!(r.status(), 400 | 401 | 413));
        let _ = r.to_string();
    }
    // Oracle: a delivery signed with a configured secret, with every header present and a
    // fresh timestamp, is accepted — whatever else the signature header holds.
    let fresh = u64::from(flags >> 4) * 64 <= TOLERANCE.as_secs()
        && ts_num.is_some_and(|t| t.checked_add(u64::from(flags >> 4) * 64).is_some());
    if flags & 0b1111 == 1 && !secrets.is_empty() && id.is_some_and(|i| !i.is_empty()) && fresh {
        assert_eq!(
            verdict,
            Ok(id.unwrap()),
            "a correctly signed delivery was refused"
        );
    }
    if verdict.is_ok() {
        route(body);
    }
    // Parsing never runs on unverified bodies in the daemon; here it does too, so the parser
    // sees every body the fuzzer makes, not only the few it manages to sign.
    route(body);
});

fn route(body: &[u8]) {
    match webhook::parse(body) {
        Ok(event) => {
            assert!(!event.model.is_empty(), "an event without a model name");
            let _ = webhook::route(&event, "stagegate.");
        }
        Err(r) => assert!(matches!(r, Rejection::Malformed(_)), "{r:?}"),
    }
}
