//! `jiaoying demo`: the whole flow on a fresh checkout with no other service. An embedded
//! SQLite database, Yulin's demo roster (config/demo), the loopback gateway, a rainstorm red
//! warning; then simulated people answer through the real inbound paths (SMS replies and the
//! answer page over HTTP), some stay silent and are escalated, and the after-action summary
//! is printed. Deadlines are shortened so that the ladder plays out in about half a minute.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::app::{shutdown_signal, App};
use crate::channel::event::{Event, What};
use crate::config::{Role, Settings};
use crate::core::{ApiToken, Core, Overrides};
use crate::domain::State;
use crate::store::jobs::Kind;
use crate::store::{callouts, reports, roster};
use crate::{answer::inbound, answer::token, ingest, ingest::import, record::report};

pub struct Options {
    pub dir: PathBuf,
    pub database: PathBuf,
    pub bind: String,
    pub deadline: Duration,
    pub serve: bool,
    /// Where to leave the URL of `database` for `report` (normally [`DEMO_MARKER`]).
    pub marker: PathBuf,
}

/// Best effort: without the marker `report` says which `--database` to pass instead.
fn leave_marker(marker: &Path, database: &Path) {
    let url = format!("sqlite://{}\n", database.display());
    let dir = marker.parent().filter(|d| !d.as_os_str().is_empty());
    let written = dir
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|_| std::fs::write(marker, url));
    if let Err(e) = written {
        tracing::warn!(error = %e, marker = %marker.display(), "could not leave the demo marker");
    }
}

/// The database every command uses when nothing says otherwise (config/jiaoying.toml).
pub const DEFAULT_DATABASE: &str = "sqlite://data/jiaoying.db";

/// Left by the demo beside the default database: the URL of the demo's own database. The demo
/// never writes the default database (it may be a real one); the commands that only read
/// (report, ledger verify) use this marker when the default database does not exist, so that
/// `jiaoying report 1` after `jiaoying demo` shows the demo's incident, as the README says.
pub const DEMO_MARKER: &str = "data/demo-database";

/// The database a read-only command should open, and a note to print when it is not the one
/// configured. Only the built-in default is ever replaced, only when its file is absent and
/// the demo left its marker: a configured or existing database is always what is read.
pub fn database_to_read(configured: &str) -> (String, Option<String>) {
    database_to_read_in(configured, Path::new("."))
}

/// [`database_to_read`] with relative paths taken from `base` (tests use a temp dir).
pub fn database_to_read_in(configured: &str, base: &Path) -> (String, Option<String>) {
    let keep = (configured.to_string(), None);
    if configured != DEFAULT_DATABASE || base.join("data/jiaoying.db").exists() {
        return keep;
    }
    let Ok(marker) = std::fs::read_to_string(base.join(DEMO_MARKER)) else {
        return keep;
    };
    let demo = marker.trim();
    let exists = crate::store::schema::sqlite_path(demo).is_some_and(|p| {
        let p = Path::new(p);
        if p.is_absolute() {
            p.exists()
        } else {
            base.join(p).exists()
        }
    });
    if !exists {
        return keep;
    }
    let note = format!(
        "注意 note: data/jiaoying.db 不存在 / does not exist; 读取演示数据库 reading the demo's database {demo} (written by `jiaoying demo`; --database URL reads another)"
    );
    (demo.to_string(), Some(note))
}

pub async fn run(mut settings: Settings, o: Options) -> Result<()> {
    let db = o.database.to_string_lossy().to_string();
    if db.starts_with("postgres://") {
        // An empty PostgreSQL database given by URL (bench/tamper plays the demo on both).
        settings.database.url = db;
    } else {
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", o.database.display()));
        }
        settings.database.url = format!("sqlite://{}", o.database.display());
    }
    settings.http.bind = o.bind.clone();
    settings.http.public_url = format!("http://{}", o.bind);
    settings.channels.sms = vec!["loopback".into()];
    settings.channels.voice = vec!["loopback".into()];
    settings.channels.email = vec!["loopback".into()];
    settings.dispatch.poll = Duration::from_millis(100);
    for p in &mut settings.policies {
        p.deadline = o.deadline;
    }
    let admin = format!("demo-{:016x}", rand::random::<u64>());
    let core = Core::open(
        settings,
        Overrides {
            answer_secret: Some(format!("{:032x}", rand::random::<u128>()).into()),
            clock: None,
            tokens: vec![ApiToken {
                name: "demo-admin".into(),
                role: Role::Admin,
                token: admin.clone().into(),
            }],
        },
    )
    .await?;
    leave_marker(&o.marker, &o.database);
    println!("== 叫应演示 jiaoying demo: 玉林市 (synthetic roster) ==");
    let started = Instant::now();
    import::import_all(&core.store, &o.dir, core.now())
        .await
        .context("importing the demo roster")?;
    println!(
        "名册 roster imported in {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        roster_counts(&core).await?
    );
    let app = App::bind(core.clone()).await?;
    let addr = app.local_addr();
    let stop = CancellationToken::new();
    let server = tokio::spawn(app.run(stop.clone()));

    let cap_path = o.dir.join("rainstorm-red.cap.xml");
    let raw =
        std::fs::read_to_string(&cap_path).with_context(|| format!("reading {}", cap_path.display()))?;
    let raw = as_of_now(&raw, core.clock.now()).into_bytes();
    let out = ingest::ingest(&core, &raw, "demo")
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let inc = out.incidents.first().context("the demo warning matched nobody")?;
    println!(
        "预警 warning #{} → 事件 incident {} (码 {}): {} call-outs",
        out.warning_id, inc.id, inc.code, inc.callouts
    );

    simulate(&core, inc.id, addr, o.deadline).await?;

    let r = reports::load(&core.store, inc.id).await?.context("report")?;
    println!("\n{}", report::table(&r));
    if let Some([median, p90, max]) = r.answer_seconds {
        println!("应答用时 time to answer: median {median:.1}s, p90 {p90:.1}s, max {max:.1}s");
    }
    println!(
        "未叫醒（需人工电话）unreached, phone by hand: {}",
        r.unreached.len()
    );
    for p in r.unreached.iter().take(10) {
        println!(
            "  {} {} {} {}",
            p.name,
            crate::target::roster::role_label(&p.role),
            p.place,
            p.phone.as_deref().unwrap_or("-")
        );
    }
    // The whole check (chain, checkpoints, state tables against the ledger), as `ledger verify`.
    let (_, lines) = crate::audit::describe(&crate::audit::verify(&core.store, &core.settings).await?);
    for l in lines {
        println!("台账 ledger: {l}");
    }
    if !o.serve {
        stop.cancel();
        return server.await?;
    }
    let sample = r
        .callouts
        .first()
        .map(|c| token::sign(&core.token_key, c.id, core.clock.now_secs() + 86_400));
    // A console login for whoever runs the demo: a fresh password each run (the database is
    // recreated each run too), printed once here.
    let demo_password = format!("demo-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
    crate::tools::users::add(
        &core.store,
        "demo",
        Role::Operator,
        demo_password.clone(),
        "demo",
        core.now(),
    )
    .await?;
    println!("\nServing on http://{addr} until Ctrl-C:");
    println!("  console 值班台:       http://{addr}/  (登录 login: demo / {demo_password}, role operator)");
    if let Some(t) = sample {
        println!("  answer page 答复页面:  http://{addr}/a/{t}");
    }
    println!(
        "  incident JSON:        curl -H 'Authorization: Bearer {admin}' http://{addr}/api/v1/incidents/{}",
        inc.id
    );
    println!("  report:               curl -H 'Authorization: Bearer {admin}' 'http://{addr}/api/v1/incidents/{}/report?format=text'", inc.id);
    println!("  report (HTML, A4):    curl -H 'Authorization: Bearer {admin}' -o report.html 'http://{addr}/api/v1/incidents/{}/report?format=html'", inc.id);
    println!(
        "  report (Excel):       jiaoying report {} --format xlsx --out report.xlsx",
        inc.id
    );
    println!("  OpenAPI:              http://{addr}/api/v1/openapi.json");
    shutdown_signal(stop.clone()).await;
    server.await?
}

/// `1574 regions, 5204 contacts, …` as stored.
async fn roster_counts(core: &Core) -> Result<String> {
    let n = roster::sizes(&core.store).await?;
    Ok(format!(
        "{} 区划 regions, {} 责任人 contacts, {} 风险点 risk points, {} 值班 duty lines",
        n.regions, n.contacts, n.risk_points, n.duty_shifts
    ))
}

/// People answer: most by SMS (village leaders with an evacuation count), some through the
/// answer page, about one in seven never; of the backups and superiors then called, two in
/// three answer. Ends when every deadline has been dealt with.
async fn simulate(core: &Core, incident: i64, addr: std::net::SocketAddr, deadline: Duration) -> Result<()> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut handled = std::collections::HashSet::new();
    let limit = deadline * 8 + Duration::from_secs(30);
    let mut last = (0, 0, 0, 0);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let callouts = callouts::callouts_of_incident(&core.store, incident).await?;
        for c in callouts.iter().filter(|c| c.sent_at.is_some()) {
            if !handled.insert(c.id) {
                continue;
            }
            let first_wave = c.parent_id.is_none();
            let silent = if first_wave { c.id % 7 == 0 } else { c.id % 3 == 0 };
            if silent {
                continue;
            }
            let phone = c.phone.clone().unwrap_or_default();
            if first_wave && c.id % 7 == 1 {
                let t = token::sign(&core.token_key, c.id, core.clock.now_secs() + 3600);
                http.post(format!("http://{addr}/a/{t}"))
                    .form(&[("action", "ack")])
                    .send()
                    .await?
                    .error_for_status()?;
            } else {
                let text = if c.role == "village_leader" {
                    format!("已转移{}人", 20 + (c.id * 37) % 180)
                } else {
                    "收到".to_string()
                };
                let reply = Event {
                    id: String::new(),
                    what: What::Reply { from: phone, text },
                };
                inbound::heard(core, "loopback", &[reply]).await?;
            }
        }
        let open =
            core.store.pending_jobs(Kind::Deadline).await? + core.store.pending_jobs(Kind::Send).await?;
        let answered = callouts.iter().filter(|c| c.state == State::Acknowledged).count();
        let escalated = callouts.iter().filter(|c| c.state == State::Escalated).count();
        let now = (callouts.len(), answered, escalated, open);
        if now != last {
            println!(
                "  {:>4.1}s  叫应 call-outs {:>4}  应答 answered {:>4}  升级 escalated {:>3}  待办 jobs {:>4}",
                started.elapsed().as_secs_f64(),
                now.0,
                now.1,
                now.2,
                now.3
            );
            last = now;
        }
        if open == 0 || started.elapsed() > limit {
            return Ok(());
        }
    }
}

/// The demo file's warning moved to now (a past `expires` would rightly stop escalation):
/// sent/effective/onset become now, expires six hours later.
pub fn as_of_now(cap: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    let bj = chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8");
    let fmt =
        |t: chrono::DateTime<chrono::Utc>| t.with_timezone(&bj).format("%Y-%m-%dT%H:%M:%S+08:00").to_string();
    let mut out = cap.to_string();
    for (tag, at) in [
        ("sent", now),
        ("effective", now),
        ("onset", now),
        ("expires", now + chrono::Duration::hours(6)),
    ] {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        if let (Some(a), Some(b)) = (out.find(&open), out.find(&close)) {
            if a < b {
                out.replace_range(a + open.len()..b, &fmt(at));
            }
        }
    }
    out
}
