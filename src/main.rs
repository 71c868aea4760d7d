//! The `jiaoying` command line: parses arguments and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use jiaoying::app::{shutdown_signal, App};
use jiaoying::clock::Clock;
use jiaoying::config::Settings;
use jiaoying::core::{Core, Overrides};
use jiaoying::ingest::import::{self, Kind};
use jiaoying::store::Store;
use jiaoying::{app::telemetry, ingest, respond, tools::demo, tools::simulate};

/// 叫应 jiaoying: turns weather warnings into answered phone calls.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Configuration file (defaults apply to every key it leaves out).
    #[arg(
        long,
        global = true,
        default_value = "config/jiaoying.toml",
        env = "JIAOYING_CONFIG"
    )]
    config: PathBuf,
    /// Log lines on standard error: `text` for people, `json` (one object a line) for machines.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "JIAOYING_LOG_FORMAT"
    )]
    log_format: telemetry::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Simulate {
    /// A season: heavy-rain rounds and typhoons from April to October, people who answer at
    /// once, late or never, door-knocks, response levels IV→I. The same seed plays the same
    /// season. Example: `jiaoying simulate season --seed 2027`.
    Season {
        /// Seed of the season's script and of every person's behaviour.
        #[arg(long, default_value_t = 2027)]
        seed: u64,
        /// The demo roster (and its CAP file, made over for each warning).
        #[arg(long, default_value = "config/demo")]
        dir: PathBuf,
        /// The season's own database, recreated each run.
        #[arg(long, default_value = "data/season.db")]
        database: PathBuf,
        /// Heavy-rain rounds.
        #[arg(long, default_value_t = 13)]
        rains: usize,
        /// Typhoons (the last is the strongest: response level I).
        #[arg(long, default_value_t = 3)]
        typhoons: usize,
        /// A line per event instead of a progress bar.
        #[arg(long)]
        verbose: bool,
        /// The table as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Play a rainstorm red warning through the demo roster of Yulin, print the summary, then
    /// keep serving until Ctrl-C. Needs nothing but this checkout.
    Demo {
        /// Address for the answer pages and API.
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: String,
        /// The demo roster and CAP file.
        #[arg(long, default_value = "config/demo")]
        dir: PathBuf,
        /// The demo's own database, recreated each run.
        #[arg(long, default_value = "data/demo.db")]
        database: PathBuf,
        /// Answer deadline in the demo (real policies use minutes).
        #[arg(long, default_value = "4s", value_parser = jiaoying::config::parse_duration)]
        deadline: Duration,
        /// Exit after the summary instead of serving.
        #[arg(long)]
        no_serve: bool,
    },
    /// Simulate a whole flood season over the demo roster, on a simulated clock, through the
    /// real paths (ingest, queue, loopback gateway, SMS replies, escalation, response levels),
    /// and print the yearly table read back from the ledger.
    #[command(subcommand)]
    Simulate(Simulate),
    /// Run the daemon: HTTP API, answer pages, hooks, dispatch and escalation.
    Serve,
    /// Apply database migrations (serve also does this at start).
    Migrate,
    /// Import a roster file (CSV, XLSX or GeoJSON for boundaries): every row is checked first;
    /// nothing is written if one is bad.
    Import {
        kind: Kind,
        file: PathBuf,
        /// Check and report only.
        #[arg(long)]
        dry_run: bool,
        /// Write the good rows even when some are bad.
        #[arg(long)]
        skip_invalid: bool,
    },
    /// Feed CAP files as if they came from a feed.
    Ingest {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Activate a response level (应急响应) for a hazard in some regions, or end one.
    Respond {
        /// flood/防汛, typhoon/防台风, drought/抗旱, geohazard/地质灾害.
        #[arg(long, required_unless_present = "end")]
        hazard: Option<String>,
        /// I, II, III or IV (Ⅰ级 highest).
        #[arg(long, required_unless_present = "end")]
        level: Option<String>,
        /// Division codes, comma-separated; everything under them is included.
        #[arg(long, value_delimiter = ',', required_unless_present = "end")]
        regions: Vec<String>,
        /// When it lapses: `2026-06-12 18:00` (Asia/Shanghai), RFC 3339, or a duration (`48h`).
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        note: Option<String>,
        /// End the response with this id instead (stand-down).
        #[arg(long, conflicts_with_all = ["hazard", "level", "regions", "until", "note"])]
        end: Option<i64>,
    },
    /// After-action report of an incident: text, json, html (printable on A4), csv (one
    /// table, UTF-8 with BOM), xlsx (one sheet per table).
    Report {
        incident: i64,
        #[arg(long, default_value = "text", value_parser = jiaoying::record::export::Format::NAMES)]
        format: String,
        /// The table a CSV holds: summary, timeline, townships (default), counties,
        /// answer_times, unreached, door_knocks, evacuation, rounds, callouts.
        #[arg(long)]
        table: Option<String>,
        /// Which language leads (both are always shown).
        #[arg(long, default_value = "zh", value_parser = ["zh", "en"])]
        lang: String,
        /// Read this database instead of database.url (e.g. sqlite://data/demo.db).
        #[arg(long)]
        database: Option<String>,
        /// Write to this file instead of standard output (required for xlsx on a terminal).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Console users (logins for the web console): add, list, disable, change a password.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Tamper-evident ledger tools.
    Ledger {
        #[command(subcommand)]
        action: LedgerAction,
    },
    /// Parse and check the configuration and policies.
    CheckConfig,
    /// Check CAP files and Atom/RSS indexes: one `ok`/`refused` line per message; exit 1 when
    /// any is refused. Stores nothing, needs no database.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also list each lenient fix (deviation) under its message.
        #[arg(long)]
        verbose: bool,
    },
    /// Who a CAP message would call, why and on which channel; nothing is sent or stored.
    Preview {
        file: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Treat this response level (I–IV) as active when choosing the policy.
        #[arg(long)]
        level: Option<jiaoying::config::Level>,
    },
}

#[derive(Subcommand)]
enum UserAction {
    /// Add a console user. The password is read from --password-file (its first line), else
    /// asked twice on the terminal without echo; at least 10 characters.
    #[command(after_help = "Example: jiaoying user add zhang --role operator\n\
        Roles: admin (everything, users too), operator (stand-down, response levels, recorded calls, \
        imports), viewer (read only).")]
    Add {
        /// The login name (no spaces).
        name: String,
        /// admin, operator or viewer.
        #[arg(long, value_parser = jiaoying::tools::users::console_role)]
        role: jiaoying::config::Role,
        /// Read the password from this file's first line instead of asking.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// List console users, their roles and whether they are disabled.
    List,
    /// Disable a user: they cannot log in and their sessions end at once (kept for the record).
    Disable { name: String },
    /// Set a new password (asked twice, or --password-file); the user's sessions end.
    Passwd {
        name: String,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum LedgerAction {
    /// Replay the ledger: the hash chain, the signed checkpoints, and the state tables rebuilt
    /// from the entries against the live ones; prints `ok N entries` or the first problem
    /// (exit 1).
    Verify,
    /// Sign the chain head with the ledger key and append it to the checkpoint file.
    Checkpoint,
    /// Make a new ledger signing key in FILE (mode 0600) and print its public key.
    Keygen { file: PathBuf },
    /// The tamper trial (bench/tamper): copies of the database, one random change each, verify.
    #[command(hide = true)]
    Tamper {
        #[arg(long, default_value_t = 1000)]
        trials: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Needs no configuration, database or runtime: a pure check of the files.
    if let Command::Validate { files, verbose } = &cli.command {
        return validate_files(files, *verbose);
    }
    let format = cli.log_format;
    telemetry::init_as(format);
    // With JSON logs the last word is a log line too, so that every line of stderr parses.
    let fail = |e: String| {
        match format {
            telemetry::LogFormat::Json => tracing::error!("{e}"),
            telemetry::LogFormat::Text => eprintln!("error: {e}"),
        }
        ExitCode::FAILURE
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(format!("starting the runtime: {e}")),
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => fail(format!("{e:#}")),
    }
}

fn validate_files(files: &[PathBuf], verbose: bool) -> ExitCode {
    let mut refused = 0;
    for f in files {
        let name = f.display().to_string();
        let checked = match std::fs::read(f) {
            Ok(bytes) => jiaoying::ingest::validate::check(&name, &bytes, verbose),
            Err(e) => jiaoying::ingest::validate::refused_file(
                &name,
                &jiaoying::cap::CapError {
                    path: "file".into(),
                    reason: format!("cannot read: {e}"),
                },
            ),
        };
        refused += checked.refused;
        for line in checked.lines {
            println!("{line}");
        }
    }
    if refused > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let explicit = cli.config.as_os_str() != "config/jiaoying.toml";
    let settings = Settings::load(&cli.config, explicit)?;
    match cli.command {
        Command::Demo {
            bind,
            dir,
            database,
            deadline,
            no_serve,
        } => {
            let o = demo::Options {
                dir,
                database,
                bind,
                deadline,
                serve: !no_serve,
                marker: PathBuf::from(demo::DEMO_MARKER),
            };
            demo::run(settings, o).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate(Simulate::Season {
            seed,
            dir,
            database,
            rains,
            typhoons,
            verbose,
            json,
        }) => {
            let o = simulate::Options {
                seed,
                dir,
                database,
                rains,
                typhoons,
                verbose,
            };
            let (_, table) = simulate::season(settings, &o).await?;
            if json {
                println!("{}", serde_json::to_string(&table)?);
            } else {
                println!("{}", table.render());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            store(&settings).await?;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Import {
            kind,
            file,
            dry_run,
            skip_invalid,
        } => import_file(&settings, kind, &file, dry_run, skip_invalid).await,
        Command::Ingest { files } => ingest_files(settings, &files).await,
        Command::Respond {
            hazard,
            level,
            regions,
            until,
            note,
            end,
        } => {
            let req = respond::Request {
                hazard,
                level,
                regions,
                until,
                note,
                end,
            };
            let core = Core::open(settings, Overrides::default()).await?;
            let out = respond::submit(&core, &req, "cli").await?;
            println!("{}", out.describe());
            println!("messages are sent by `jiaoying serve`");
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            incident,
            format,
            table,
            lang,
            database,
            out,
        } => {
            let args = ReportArgs {
                incident,
                format: format.parse()?,
                table,
                lang: lang.parse()?,
                database,
            };
            report(&settings, args, out.as_deref()).await
        }
        Command::User { action } => user(&settings, action).await,
        Command::Ledger {
            action: LedgerAction::Verify,
        } => verify_ledger(&settings).await,
        Command::Ledger {
            action: LedgerAction::Checkpoint,
        } => {
            let store = Store::connect(&settings.database.url, settings.database.max_connections).await?;
            let now = Clock::system().now_ms();
            match jiaoying::audit::take(&store, &settings, now, "manual").await? {
                Some(c) => {
                    println!(
                        "检查点已签名 checkpoint signed: seq {} hash {} → {}",
                        c.seq, c.hash, settings.ledger.checkpoints
                    );
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    println!(
                        "无签名密钥 no ledger key: set {} or [ledger] signing_key_file (`jiaoying ledger keygen FILE`)",
                        jiaoying::audit::KEY_ENV
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Ledger {
            action: LedgerAction::Keygen { file },
        } => {
            let public = jiaoying::audit::keygen(&file)?;
            println!("{}", jiaoying::record::checkpoint::key_hex(&public));
            eprintln!(
                "密钥已写入 key written to {} (0600); set [ledger] signing_key_file to it, and public_key where only verifying",
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Ledger {
            action: LedgerAction::Tamper { trials, seed },
        } => jiaoying::tools::tamper::run(&settings, trials, seed).await,
        Command::Validate { .. } => unreachable!("handled before the runtime starts"),
        Command::CheckConfig => {
            check_config(&settings);
            Ok(ExitCode::SUCCESS)
        }
        Command::Preview { file, json, level } => preview(&settings, &file, json, level).await,
    }
}

/// The store of the settings, migrated.
async fn store(settings: &Settings) -> Result<Store> {
    let store = Store::connect(&settings.database.url, settings.database.max_connections).await?;
    store.migrate().await?;
    Ok(store)
}

async fn serve(settings: Settings) -> Result<ExitCode> {
    let core = Core::open(settings, Overrides::default()).await?;
    let app = App::bind(core).await?;
    tracing::info!(addr = %app.local_addr(), "jiaoying serving");
    let stop = CancellationToken::new();
    tokio::spawn(shutdown_signal(stop.clone()));
    app.run(stop).await?;
    Ok(ExitCode::SUCCESS)
}

async fn import_file(
    settings: &Settings,
    kind: Kind,
    file: &std::path::Path,
    dry_run: bool,
    skip_invalid: bool,
) -> Result<ExitCode> {
    let store = store(settings).await?;
    let r = import::import_by(
        &store,
        kind,
        file,
        dry_run,
        skip_invalid,
        Clock::system().now_ms(),
        &jiaoying::tools::users::cli_actor(),
    )
    .await?;
    for e in &r.errors {
        eprintln!("{}: {e}", file.display());
    }
    let verb = match (r.written, dry_run) {
        (true, _) => "已导入 imported",
        (false, true) => "已检查（试运行，未写入）checked, dry run: nothing written",
        (false, false) => "未导入（有错误行）nothing written: fix the bad rows or use --skip-invalid",
    };
    println!("{} 行 rows {verb}; {} 行有误 bad", r.rows, r.errors.len());
    Ok(if r.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn ingest_files(settings: Settings, files: &[PathBuf]) -> Result<ExitCode> {
    let core = Core::open(settings, Overrides::default()).await?;
    let mut failed = false;
    for f in files {
        let raw = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        match ingest::ingest_document(&core, &raw, &format!("file:{}", f.display())).await {
            Ok(messages) => {
                for m in messages {
                    let at = format!("{}#{}", f.display(), m.location);
                    match m.result {
                        ingest::MessageResult::Ingested(o) => {
                            println!("{at}: {}", serde_json::to_string(&o)?)
                        }
                        ingest::MessageResult::Refused(e) => {
                            failed = true;
                            println!("{at}: 拒收 refused: {e}");
                        }
                    }
                }
            }
            Err(e) => {
                failed = true;
                println!("{}: 拒收 refused: {e}", f.display());
            }
        }
    }
    println!("call-outs are sent by `jiaoying serve`");
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

struct ReportArgs {
    incident: i64,
    format: jiaoying::record::export::Format,
    table: Option<String>,
    lang: jiaoying::record::export::Lang,
    database: Option<String>,
}

/// The database a command that only reads opens: `--database`, else the configured one, else
/// (the default being absent) the demo's; missing or without schema, it says what to do.
async fn read_store(settings: &Settings, database: Option<String>) -> Result<Store> {
    let url = match database {
        Some(u) => u,
        None => {
            let (url, note) = demo::database_to_read(&settings.database.url);
            if let Some(n) = note {
                eprintln!("{n}");
            }
            url
        }
    };
    jiaoying::store::schema::open_existing(&url, settings.database.max_connections).await
}

async fn report(settings: &Settings, a: ReportArgs, out: Option<&std::path::Path>) -> Result<ExitCode> {
    use jiaoying::record::export;
    use std::io::{IsTerminal, Write};
    if out.is_none() && a.format.is_binary() && std::io::stdout().is_terminal() {
        anyhow::bail!(
            "--format xlsx writes a binary workbook: add --out FILE.xlsx (or redirect standard output)"
        );
    }
    let store = read_store(settings, a.database).await?;
    let mut r = jiaoying::store::reports::load(&store, a.incident)
        .await?
        .with_context(|| format!("no incident {}", a.incident))?;
    r.checkpoint = jiaoying::audit::latest(settings);
    let options = export::Options {
        lang: a.lang,
        // The one wall-clock read of the command: the "generated at" line, not a decision.
        generated_at: Clock::system().now_ms(),
        table: a.table,
    };
    let rendered = export::render(&r, a.format, &options)?;
    match out {
        Some(p) => std::fs::write(p, &rendered.bytes).with_context(|| format!("writing {}", p.display()))?,
        None => std::io::stdout().lock().write_all(&rendered.bytes)?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn user(settings: &Settings, action: UserAction) -> Result<ExitCode> {
    use jiaoying::tools::users;
    let store = store(settings).await?;
    let by = users::cli_actor();
    let now = Clock::system().now_ms();
    match action {
        UserAction::Add {
            name,
            role,
            password_file,
        } => {
            let pw = users::read_password(password_file.as_deref())?;
            users::add(&store, &name, role, pw, &by, now).await?;
            println!("已添加用户 added user {name} ({})", role.as_str());
        }
        UserAction::List => print!("{}", users::list(&store).await?),
        UserAction::Disable { name } => {
            users::disable(&store, &name, &by, now).await?;
            println!("已停用 disabled {name}; 其会话已结束 their sessions are ended");
        }
        UserAction::Passwd { name, password_file } => {
            let pw = users::read_password(password_file.as_deref())?;
            users::passwd(&store, &name, pw, &by, now).await?;
            println!("已更改密码 password changed for {name}; 其会话已结束 their sessions are ended");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify_ledger(settings: &Settings) -> Result<ExitCode> {
    let store = read_store(settings, None).await?;
    let (ok, lines) = jiaoying::audit::describe(&jiaoying::audit::verify(&store, settings).await?);
    for l in lines {
        println!("{l}");
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn check_config(settings: &Settings) {
    println!(
        "配置正确 configuration ok: {} policies, {} gateways",
        settings.policies.len(),
        settings.gateways.len()
    );
    println!("叫应规则（先匹配者生效 / first match wins）:");
    for (i, p) in settings.policies.iter().enumerate() {
        println!("  policy[{i}] {}", p.summary());
    }
}

async fn preview(
    settings: &Settings,
    file: &std::path::Path,
    json: bool,
    level: Option<jiaoying::config::Level>,
) -> Result<ExitCode> {
    let raw = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let store =
        jiaoying::store::schema::open_existing(&settings.database.url, settings.database.max_connections)
            .await?;
    let p = jiaoying::tools::preview::preview(settings, &store, &raw, level, Clock::system().now_ms())
        .await
        .with_context(|| format!("{}", file.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print!("{}", jiaoying::tools::preview::render(&p));
    }
    Ok(ExitCode::SUCCESS)
}
