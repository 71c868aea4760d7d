//! The ledger's anchor outside the database: the ed25519 key (from `JIAOYING_LEDGER_KEY` or
//! `[ledger] signing_key_file`, never from the database), the checkpoint file (one signed JSON
//! line per checkpoint, appended), the scheduled checkpoint job, and `ledger verify` as a whole
//! (signatures of the file, then `store::ledger::verify_full`).
//!
//! What is signed and how a checkpoint is checked is `record::checkpoint` (pure); the SQL is
//! `store::ledger`. This module must not write the database except the one job row, and must
//! never print or log the signing key.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use ed25519_dalek::{SigningKey, VerifyingKey};
use secrecy::ExposeSecret;

use crate::config::{self, Settings};
use crate::record::checkpoint::{self, Checkpoint};
use crate::store::jobs::{self, NewJob, Task};
use crate::store::ledger::{self, Problem, Verified};
use crate::store::Store;

/// The environment variable holding the signing key itself (hex).
pub const KEY_ENV: &str = "JIAOYING_LEDGER_KEY";

/// The dedupe key of the scheduled checkpoint job: one across instances.
pub const SCHEDULE_KEY: &str = "ledger-checkpoint";

/// The signing key, if one is configured (None: checkpoints are off).
pub fn signing_key(settings: &Settings) -> Result<Option<SigningKey>> {
    let Some(s) = config::secret(
        "ledger.signing_key_file",
        Some(KEY_ENV),
        settings.ledger.signing_key_file.as_deref(),
    )?
    else {
        return Ok(None);
    };
    checkpoint::signing_key(s.expose_secret())
        .map(Some)
        .map_err(|e| anyhow::anyhow!("ledger key ({KEY_ENV} or ledger.signing_key_file): {e}"))
}

/// The key checkpoints are checked with: the signing key's, else `[ledger] public_key`.
pub fn verifying_key(settings: &Settings) -> Result<Option<VerifyingKey>> {
    if let Some(k) = signing_key(settings)? {
        return Ok(Some(k.verifying_key()));
    }
    settings
        .ledger
        .public_key
        .as_deref()
        .map(|p| checkpoint::public_key(p).map_err(|e| anyhow::anyhow!("ledger.public_key: {e}")))
        .transpose()
}

/// Makes a new key in `path` (which must not exist), readable by its owner only. Returns the
/// public key.
pub fn keygen(path: &Path) -> Result<VerifyingKey> {
    let bytes: [u8; 32] = rand::random();
    let key = SigningKey::from_bytes(&bytes);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| {
        format!(
            "creating {} (an existing key is never overwritten)",
            path.display()
        )
    })?;
    writeln!(f, "{}", hex::encode(key.to_bytes()))?;
    f.sync_all()?;
    Ok(key.verifying_key())
}

/// Every checkpoint in the file, oldest first (no file: none).
pub fn read_all(path: &str) -> Result<Vec<Checkpoint>> {
    match std::fs::read_to_string(path) {
        Ok(text) => checkpoint::parse_lines(&text).map_err(|e| anyhow::anyhow!("{path}: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {path}")),
    }
}

/// The newest checkpoint in the file, for reports (None: none, or checkpoints are off).
pub fn latest(settings: &Settings) -> Option<Checkpoint> {
    read_all(&settings.ledger.checkpoints).ok()?.pop()
}

/// Signs the head and appends it to the checkpoint file. None: no key (checkpoints are off).
pub async fn take(store: &Store, settings: &Settings, now: i64, why: &str) -> Result<Option<Checkpoint>> {
    let Some(key) = signing_key(settings)? else {
        return Ok(None);
    };
    let (seq, hash) = ledger::head(store).await?;
    let c = checkpoint::sign(&key, seq, &hash, now, why);
    let path = Path::new(&settings.ledger.checkpoints);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    // One write of one whole line, flushed to disk: a crash leaves the file readable.
    f.write_all(format!("{}\n", serde_json::to_string(&c)?).as_bytes())?;
    f.sync_all()?;
    Ok(Some(c))
}

/// What `ledger verify` says about the checkpoints it used.
#[derive(Debug)]
pub struct Outcome {
    pub verified: Verified,
    /// How many checkpoints were checked; None: checkpoints are off (no key configured).
    pub checkpoints: Option<usize>,
}

/// `ledger verify`: a checkpoint line whose signature does not verify with the ledger's key
/// is refused (a forgery, or another key); the rest are held against the chain.
pub async fn verify(store: &Store, settings: &Settings) -> Result<Outcome> {
    let Some(key) = verifying_key(settings)? else {
        return Ok(Outcome {
            verified: ledger::verify_full(store, &[]).await?,
            checkpoints: None,
        });
    };
    let all = read_all(&settings.ledger.checkpoints)?;
    for c in &all {
        if let Err(e) = checkpoint::check_signature(c, &key) {
            return Ok(Outcome {
                verified: Verified {
                    entries: 0,
                    head_seq: 0,
                    problem: Some(Problem::Checkpoint(format!("refused: {e}"))),
                },
                checkpoints: Some(all.len()),
            });
        }
    }
    Ok(Outcome {
        verified: ledger::verify_full(store, &all).await?,
        checkpoints: Some(all.len()),
    })
}

/// The start of the next period after `now`: every instance computes the same instant.
pub fn next_period(now: i64, every_ms: i64) -> i64 {
    let every = every_ms.max(1000);
    (now.div_euclid(every) + 1) * every
}

/// Before serving: the scheduled checkpoint job exists once (whatever the instances), or the
/// daemon says once that checkpoints are off.
pub async fn ensure_job(store: &Store, settings: &Settings, now: i64) -> Result<()> {
    if signing_key(settings)?.is_none() {
        tracing::warn!(
            "ledger checkpoints are off: no key ({KEY_ENV} or [ledger] signing_key_file; `jiaoying ledger keygen FILE` makes one)"
        );
        return Ok(());
    }
    let every = settings.ledger.checkpoint_every.as_millis() as i64;
    let mut conn = store.pool().acquire().await?;
    jobs::insert_once(
        &mut conn,
        NewJob::checkpoint_schedule(next_period(now, every)),
        now,
    )
    .await
}

/// A checkpoint job has come: takes the checkpoint; returns when the job is due again
/// (the scheduled one) or None (a stand-down's, done once).
pub async fn run_job(store: &Store, settings: &Settings, task: &Task, now: i64) -> Result<Option<i64>> {
    let Task::Checkpoint { why } = task else {
        bail!("not a checkpoint job");
    };
    match take(store, settings, now, why).await? {
        Some(c) => tracing::info!(seq = c.seq, why = %why, "ledger checkpoint signed"),
        None => tracing::debug!(why = %why, "no ledger key: checkpoint skipped"),
    }
    let every = settings.ledger.checkpoint_every.as_millis() as i64;
    Ok((why == "schedule").then(|| next_period(now, every)))
}

/// The lines `ledger verify` prints (Chinese first), and whether the record holds.
pub fn describe(o: &Outcome) -> (bool, Vec<String>) {
    let mut lines = Vec::new();
    match o.checkpoints {
        None => lines.push(format!(
            "签名检查点未启用 checkpoints off: no ledger key ({KEY_ENV} or [ledger] signing_key_file), so a cut-off tail cannot be told"
        )),
        Some(n) => lines.push(format!("签名检查点 checkpoints: {n} checked")),
    }
    let v = &o.verified;
    match &v.problem {
        None => {
            lines.push(format!(
                "ok {} entries, head {}: 台账与状态表一致 hash chain intact and the state tables match the ledger",
                v.entries, v.head_seq
            ));
            (true, lines)
        }
        Some(p) => {
            lines.push(format!("台账不符 LEDGER DOES NOT HOLD: {p}"));
            (false, lines)
        }
    }
}
