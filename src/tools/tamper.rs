//! The tamper trial (`jiaoying ledger tamper`, run by bench/tamper): on copies of a database
//! (SQLite: a file copy; PostgreSQL: `CREATE DATABASE … TEMPLATE …`), one random change at a
//! time from `store::tamper`, then the whole `ledger verify` in-process against the copy with a
//! checkpoint of the untouched head; prints one JSON line with the share detected. Loopback
//! only: it touches nothing but the database it is given and its copies.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};

use crate::config::Settings;
use crate::record::checkpoint;
use crate::store::{ledger, tamper, Store};

pub async fn run(settings: &Settings, trials: usize, seed: u64) -> Result<ExitCode> {
    let url = settings.database.url.clone();
    let started = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // The checkpoint a deployment would hold: the untouched head, signed by a key the copies
    // never see.
    let src = Store::connect(&url, 2).await?;
    let key = ed25519_dalek::SigningKey::from_bytes(&rng.gen());
    let (seq, hash) = ledger::head(&src).await?;
    let cp = checkpoint::sign(&key, seq, &hash, 0, "tamper-trial");
    checkpoint::check_signature(&cp, &key.verifying_key()).map_err(anyhow::Error::msg)?;
    let cps = [cp];
    let base = ledger::verify_full(&src, &cps).await?;
    if let Some(p) = base.problem {
        bail!("the untouched database does not verify, so a trial would prove nothing: {p}");
    }
    tamper::flush(&src).await?;
    src.close().await;
    let backend = if url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    };
    let (admin, pg_src) = match backend {
        "postgres" => {
            let (base_url, db) = url.rsplit_once('/').context("a postgres url ends in /DATABASE")?;
            (
                Some(Store::connect(&format!("{base_url}/postgres"), 2).await?),
                Some((base_url.to_string(), db.to_string())),
            )
        }
        _ => (None, None),
    };
    let sqlite_path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let sqlite_path = sqlite_path.split('?').next().unwrap_or(sqlite_path).to_string();
    let copy_path = std::env::temp_dir().join(format!("jiaoying-tamper-{}.db", std::process::id()));

    let mut by_kind: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut detected = 0;
    for trial in 0..trials {
        let copy = match (&admin, &pg_src) {
            (Some(admin), Some((base_url, db))) => {
                let name = format!("{db}_tamper");
                tamper::pg_copy(admin, &name, db).await?;
                Store::connect(&format!("{base_url}/{name}"), 2).await?
            }
            _ => {
                std::fs::copy(&sqlite_path, &copy_path).with_context(|| format!("copying {sqlite_path}"))?;
                Store::connect(&format!("sqlite://{}", copy_path.display()), 1).await?
            }
        };
        // A kind that finds nothing to change (an empty table) is drawn again.
        let (kind, what) = loop {
            let kind = tamper::KINDS[rng.gen_range(0..tamper::KINDS.len())];
            let what = tamper::tamper(&copy, kind, &mut rng).await?;
            if !what.contains("nothing") {
                break (kind, what);
            }
        };
        let v = ledger::verify_full(&copy, &cps).await?;
        let e = by_kind.entry(kind).or_default();
        e.0 += 1;
        match &v.problem {
            Some(p) => {
                detected += 1;
                e.1 += 1;
                tracing::debug!(trial, kind, change = %what, found = %p, "detected");
            }
            None => eprintln!("trial {trial}: NOT detected: {kind}: {what}"),
        }
        copy.close().await;
        if let (Some(admin), Some((_, db))) = (&admin, &pg_src) {
            tamper::pg_drop(admin, &format!("{db}_tamper")).await?;
        }
    }
    let _ = std::fs::remove_file(&copy_path);
    let by_kind: BTreeMap<&str, serde_json::Value> = by_kind
        .into_iter()
        .map(|(k, (n, d))| (k, serde_json::json!({"trials": n, "detected": d})))
        .collect();
    println!(
        "{}",
        serde_json::json!({"figure": "tamper", "backend": backend, "trials": trials, "detected": detected,
            "share": if trials == 0 { 0.0 } else { detected as f64 / trials as f64 },
            "entries": seq, "by_kind": by_kind, "seed": seed,
            "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0})
    );
    Ok(if detected == trials {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
