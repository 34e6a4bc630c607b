//! Latency-gate fidelity probe: sends the same request N times through the latency gate's own
//! client and measurement (`gates::latency::measure`) and prints one JSON line: the latency
//! percentiles it observed and the client's own CPU time per request.
//!
//!     cargo run --release --example latency_probe -- INVOCATIONS_URL BODY_FILE N

use std::sync::Arc;
use std::time::Instant;

use stagegate::gates::latency::measure;
use stagegate::serving::Endpoint;

fn cpu_us() -> f64 {
    // SAFETY: getrusage writes into the struct we pass and reads nothing else.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

// The same multi-threaded runtime as `stagegate` itself.
#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: latency_probe URL BODY_FILE N");
        std::process::exit(2);
    }
    let body = std::fs::read_to_string(&args[2]).expect("body file");
    let n: u32 = args[3].parse().expect("N");
    let e = Arc::new(Endpoint::remote(
        args[1].clone(),
        std::time::Duration::from_secs(60),
    ));
    let (cpu0, t0) = (cpu_us(), Instant::now());
    let m = measure(&e, &body, 0, n, 1).await;
    let (cpu, wall) = (cpu_us() - cpu0, t0.elapsed().as_secs_f64() * 1e6);
    println!(
        "{{\"client\": \"stagegate\", \"requests\": {n}, \"errors\": {}, \"first_error\": {:?}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"wall_us_per_request\": {:.1}, \"cpu_us_per_request\": {:.1}}}",
        m.errors,
        m.first_error.clone().unwrap_or_default(),
        m.ms(0.5),
        m.ms(0.99),
        wall / n as f64,
        cpu / n as f64
    );
}
