//! Parse throughput: how many CAP messages per second `cap::parse` (and `cap::extract` for a
//! wrapper) handles. `bench/parse` builds this in release mode and runs it; one JSON line per
//! figure on stdout.
//!
//! Usage: jiaoying-bench-parse TYPICAL.xml LARGEST.xml [WRAPPER.xml]

use std::time::{Duration, Instant};

use jiaoying::cap;

/// Runs `f` repeatedly for at least `budget`; returns calls per second.
fn rate(budget: Duration, mut f: impl FnMut() -> usize) -> (f64, usize) {
    let start = Instant::now();
    let (mut calls, mut msgs) = (0usize, 0usize);
    while start.elapsed() < budget || calls < 3 {
        msgs += f();
        calls += 1;
    }
    (msgs as f64 / start.elapsed().as_secs_f64(), calls)
}

fn figure(name: &str, path: &str, budget: Duration, wrapper: bool) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    // Fail loudly rather than time an error path.
    let count = if wrapper {
        let found = cap::extract(&bytes).map_err(|e| format!("{path}: {e}"))?;
        for f in &found {
            cap::parse(&f.bytes).map_err(|e| format!("{path}#{}: {e}", f.location))?;
        }
        found.len()
    } else {
        cap::parse(&bytes).map_err(|e| format!("{path}: {e}"))?;
        1
    };
    let (per_s, calls) = rate(budget, || {
        if wrapper {
            let found = cap::extract(&bytes).expect("checked above");
            found.iter().filter(|f| cap::parse(&f.bytes).is_ok()).count()
        } else {
            usize::from(cap::parse(&bytes).is_ok())
        }
    });
    println!(
        "{}",
        serde_json::json!({
            "figure": name,
            "msgs_per_s": per_s.round(),
            "mb_per_s": ((per_s / count as f64) * bytes.len() as f64 / 1e6 * 10.0).round() / 10.0,
            "bytes": bytes.len(),
            "msgs_per_file": count,
            "runs": calls,
            "file": path,
        })
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 || args.len() > 3 {
        eprintln!("usage: jiaoying-bench-parse TYPICAL.xml LARGEST.xml [WRAPPER.xml]");
        std::process::exit(2);
    }
    let budget = Duration::from_secs(3);
    let mut figures = vec![
        ("cap_parse_typical", &args[0], false),
        ("cap_parse_largest", &args[1], false),
    ];
    if let Some(w) = args.get(2) {
        figures.push(("cap_extract_parse_wrapper", w, true));
    }
    for (name, path, wrapper) in figures {
        if let Err(e) = figure(name, path, budget, wrapper) {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
