//! `jiaoying simulate season --seed N`: a whole flood season played over the demo roster
//! through the real paths — CAP ingest, planning, the job queue, the loopback gateway, SMS
//! replies through `answer::inbound`, escalation up the ladder to the door-knock, response
//! levels activated and ended, stand-downs — on a frozen clock that jumps from one moment
//! that matters to the next, so a season of six months plays in seconds and the same seed
//! gives the same season.
//!
//! What the office reports each year (叫应台账年报) is then read back from the ledger alone
//! ([`from_ledger`], a pure fold) and, for comparison, from the state tables ([`from_tables`]);
//! the two must agree, which is the point: the ledger proves the record.
//!
//! This module owns the season's script (what happens when, who answers how) and the table.
//! It must not decide anything the core decides (who is called, when to escalate): it only
//! posts warnings, answers as people would, and moves the clock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;

use crate::answer::inbound;
use crate::app::worker;
use crate::channel::event::{Event, What};
use crate::clock::Clock;
use crate::config::Settings;
use crate::core::{Core, Overrides};
use crate::deliver::standdown;
use crate::domain::State;
use crate::record::ledger::Entry;
use crate::respond::{self, Request};
use crate::store::{answers, callouts, incidents, ledger, responses, roster};
use crate::{ingest, ingest::import};

/// Who runs the simulation: the bot answering as people would, in the ledger's `actor`.
const ACTOR: &str = "simulate";

pub struct Options {
    pub seed: u64,
    pub dir: PathBuf,
    pub database: PathBuf,
    /// Heavy-rain rounds (暴雨过程) in the season.
    pub rains: usize,
    pub typhoons: usize,
    /// Print a line per event.
    pub verbose: bool,
}

/// The yearly table (SPEC §1's "1194 个(次) … 46007 人").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Table {
    /// Incidents opened (warnings and response activations that called someone).
    pub incidents: u64,
    /// First call-outs to township officials (乡镇叫应): the township leader and duty holders.
    pub township_callouts: u64,
    /// Every call-out, the ladder's included (door-knock tasks not).
    pub callouts: u64,
    /// Call-outs answered (a person woken and confirming), late answers included.
    pub answered: u64,
    /// People moved (转移人数): the latest count of each reporter per incident, summed.
    pub moved: i64,
    /// Response activations by level (应急响应启动次数).
    pub responses: BTreeMap<String, u64>,
    /// Seconds from the first call-out to its answer, median over answered first call-outs.
    pub median_answer_s: i64,
    /// Call-outs at the end of the ladder with no answer (未叫醒).
    pub unreached: u64,
    /// Door-knock results (上门叫应) by result.
    pub knocks: BTreeMap<String, u64>,
}

impl Table {
    pub fn answer_rate(&self) -> f64 {
        if self.callouts == 0 {
            0.0
        } else {
            self.answered as f64 / self.callouts as f64
        }
    }

    pub fn render(&self) -> String {
        let levels = ["IV", "III", "II", "I"]
            .iter()
            .map(|l| format!("{l} 级 {}", self.responses.get(*l).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("，");
        let knocks = self
            .knocks
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join("，");
        format!(
            "汛期叫应年报 season report (from the ledger)\n\
             事件 incidents ................................. {}\n\
             重点乡镇叫应 township call-outs .................. {}\n\
             叫应总数 call-outs (ladder included) ............. {}\n\
             应答 answered ................................... {} ({:.1}%)\n\
             应答用时中位数 median time to answer ............. {}m{:02}s\n\
             转移群众 people moved ............................ {}\n\
             应急响应启动 response activations ................ {}\n\
             上门叫应 door knocks ............................. {}\n\
             叫应到底仍未叫醒 unreached after the ladder ....... {}",
            self.incidents,
            self.township_callouts,
            self.callouts,
            self.answered,
            self.answer_rate() * 100.0,
            self.median_answer_s / 60,
            self.median_answer_s % 60,
            self.moved,
            levels,
            if knocks.is_empty() {
                "0".to_string()
            } else {
                knocks
            },
            self.unreached,
        )
    }
}

/// The table from the ledger alone: a pure fold over its entries, in order.
pub fn from_ledger(entries: &[Entry]) -> Table {
    let mut t = Table::default();
    let mut planned_at: HashMap<i64, i64> = HashMap::new();
    let mut knock_tasks: HashSet<i64> = HashSet::new();
    let mut answered: HashMap<i64, i64> = HashMap::new();
    let mut unreached: HashSet<i64> = HashSet::new();
    // (incident, reporter) → moved, the latest report winning.
    let mut moved: HashMap<(i64, String), i64> = HashMap::new();
    let mut knocks: HashMap<i64, String> = HashMap::new();
    for e in entries {
        let body: serde_json::Value = serde_json::from_str(&e.body).unwrap_or_default();
        let subject_id = |prefix: &str| e.subject.strip_prefix(prefix).and_then(|s| s.parse::<i64>().ok());
        match e.kind.as_str() {
            "incident.opened" => t.incidents += 1,
            "callout.planned" => {
                if let Some(id) = subject_id("callout:") {
                    planned_at.insert(id, e.at);
                    t.callouts += 1;
                    if body["region"].as_str().is_some_and(|r| r.len() == 9) {
                        t.township_callouts += 1;
                    }
                }
            }
            "callout.escalated" => {
                let news = body["new_callouts"].as_array().cloned().unwrap_or_default();
                let knock = body["to"].to_string().contains("knock");
                for id in news.iter().filter_map(|v| v.as_i64()) {
                    if knock {
                        knock_tasks.insert(id);
                    } else {
                        t.callouts += 1;
                    }
                }
            }
            "ack.recorded" => {
                if let Some(id) = subject_id("callout:") {
                    answered.entry(id).or_insert(e.at);
                }
            }
            "callout.unreached" => {
                if let Some(id) = subject_id("callout:") {
                    unreached.insert(id);
                }
            }
            "evacuation.reported" => {
                if let (Some(inc), Some(reporter)) = (subject_id("incident:"), body["reporter"].as_str()) {
                    moved.insert((inc, reporter.to_string()), body["moved"].as_i64().unwrap_or(0));
                }
            }
            "knock.result" => {
                if let (Some(task), Some(r)) = (body["task"].as_i64(), body["result"].as_str()) {
                    knocks.insert(task, r.to_string());
                }
            }
            "response.activated" => {
                if let Some(level) = body["level"].as_str() {
                    *t.responses.entry(level.to_string()).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    t.answered = answered.keys().filter(|id| !knock_tasks.contains(id)).count() as u64;
    t.unreached = unreached.iter().filter(|id| !answered.contains_key(id)).count() as u64;
    t.moved = moved.values().sum();
    let waits: Vec<i64> = answered
        .iter()
        .filter_map(|(id, at)| planned_at.get(id).map(|p| at - p))
        .collect();
    t.median_answer_s = median_s(waits);
    for r in knocks.into_values() {
        *t.knocks.entry(r).or_default() += 1;
    }
    t
}

fn median_s(mut ms: Vec<i64>) -> i64 {
    if ms.is_empty() {
        return 0;
    }
    ms.sort_unstable();
    ms[ms.len() / 2] / 1000
}

/// The same table from the state tables (call-outs, evacuations, knocks, responses), through
/// the store's own reads: what the live report would say.
pub async fn from_tables(core: &Core) -> Result<Table> {
    let mut t = Table::default();
    let all = incidents::list(&core.store, i64::MAX).await?;
    let mut waits = Vec::new();
    for inc in &all {
        let cs = callouts::callouts_of_incident(&core.store, inc.id).await?;
        if cs.is_empty() {
            continue;
        }
        t.incidents += 1;
        for c in &cs {
            if c.knock {
                continue;
            }
            t.callouts += 1;
            if c.parent_id.is_none() && c.region_code.as_str().len() == 9 {
                t.township_callouts += 1;
            }
            if let Some(at) = c.acked_at {
                t.answered += 1;
                if c.parent_id.is_none() {
                    waits.push(at - c.created_at);
                }
            }
            if c.state == State::Unreached {
                t.unreached += 1;
            }
        }
        t.moved += answers::latest_evacuations(&core.store, inc.id)
            .await?
            .iter()
            .map(|e| e.moved)
            .sum::<i64>();
        for (_, result, _) in answers::knock_results(&core.store, inc.id).await? {
            *t.knocks.entry(result.as_str().to_string()).or_default() += 1;
        }
    }
    for r in responses::list(&core.store, i64::MAX).await? {
        *t.responses.entry(r.level.as_str().to_string()).or_default() += 1;
    }
    t.median_answer_s = median_s(waits);
    Ok(t)
}

/// Plays the season and returns the core (for the tests' second look) with the table read
/// from the ledger.
pub async fn season(mut settings: Settings, o: &Options) -> Result<(Arc<Core>, Table)> {
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", o.database.display()));
    }
    settings.database.url = format!("sqlite://{}", o.database.display());
    settings.channels.sms = vec!["loopback".into()];
    settings.channels.voice = vec!["loopback".into()];
    settings.channels.email = vec!["loopback".into()];
    let script = script(o);
    let clock =
        Clock::frozen(script.first().map_or_else(season_start, |a| a.at) - chrono::Duration::hours(1));
    let core = Core::open(
        settings,
        Overrides {
            answer_secret: Some(format!("{:032x}", o.seed as u128 * 0x9e37_79b9 + 1).into()),
            clock: Some(clock.clone()),
            tokens: Vec::new(),
        },
    )
    .await?;
    import::import_all(&core.store, &o.dir, core.now())
        .await
        .context("importing the demo roster")?;
    let mut play = Play {
        core: core.clone(),
        seed: o.seed,
        cap: std::fs::read_to_string(o.dir.join("rainstorm-red.cap.xml"))
            .context("reading the demo CAP file")?,
        incidents: HashMap::new(),
        responses: HashMap::new(),
        seen: HashSet::new(),
        due: BTreeMap::new(),
        evacuating: HashSet::new(),
        closed: HashSet::new(),
        counties: roster::load_regions(&core.store)
            .await?
            .into_iter()
            .filter(|r| r.code.as_str().len() == 6 && !r.code.as_str().ends_with("00"))
            .map(|r| r.code.as_str().to_string())
            .collect(),
    };
    let bar = indicatif::ProgressBar::new(script.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").expect("a valid template"),
    );
    if o.verbose {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    for (i, step) in script.iter().enumerate() {
        let until = step.at.timestamp_millis();
        play.run_until(&clock, until).await?;
        clock.advance_ms(until - clock.now_ms());
        let said = play.act(&step.what).await?;
        if o.verbose {
            println!("{} {}", step.at.with_timezone(&bj()).format("%m-%d %H:%M"), said);
        }
        bar.set_position(i as u64 + 1);
        bar.set_message(said);
    }
    let end = clock.now_ms() + 24 * 3_600_000;
    play.run_until(&clock, end).await?;
    bar.finish_and_clear();
    let entries = ledger::all_entries(&core.store).await?;
    Ok((core, from_ledger(&entries)))
}

/// One moment of the season.
#[derive(Debug, Clone)]
struct Step {
    at: DateTime<Utc>,
    what: Act,
}

#[derive(Debug, Clone)]
enum Act {
    /// A warning from the city observatory: `key` names it for a later update or stand-down.
    Warn {
        key: String,
        hazard: Hazard,
        colour: &'static str,
        counties: Vec<usize>,
        /// Updates the warning `key` (an upgrade: 橙色→红色).
        update: bool,
    },
    StandDown {
        key: String,
    },
    Activate {
        key: String,
        hazard: &'static str,
        level: &'static str,
        counties: Vec<usize>,
    },
    End {
        key: String,
    },
}

#[derive(Debug, Clone, Copy)]
enum Hazard {
    Rain,
    Typhoon,
}

fn bj() -> chrono::FixedOffset {
    chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8")
}

/// 1 April of a fixed year, Beijing: the season's start (a fixed date, not today's).
fn season_start() -> DateTime<Utc> {
    bj().with_ymd_and_hms(2027, 4, 1, 0, 0, 0)
        .single()
        .expect("a valid date")
        .with_timezone(&Utc)
}

/// splitmix64: a seeded, version-stable stream (no dependency whose algorithm may change).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The season's script, from the seed alone: heavy-rain rounds from April to September, most
/// at night, each over one or two counties (red ones with a level-IV flood response), and
/// typhoons in July–September over three to five counties, the response raised IV → III → II → I as
/// the strongest comes ashore.
fn script(o: &Options) -> Vec<Step> {
    let mut rng = Rng(o.seed);
    let start = season_start();
    let mut steps = Vec::new();
    let colours = [
        "red", "orange", "orange", "yellow", "red", "orange", "blue", "orange", "yellow",
    ];
    let n_counties = 7u64;
    for i in 0..o.rains {
        let day = 7 + (i as i64) * 170 / o.rains.max(1) as i64 + rng.below(8) as i64;
        let hour = [22, 23, 0, 1, 2, 3, 4, 5, 18, 20][rng.below(10) as usize];
        let at = start
            + chrono::Duration::days(day)
            + chrono::Duration::hours(hour)
            + chrono::Duration::minutes(rng.below(60) as i64);
        let colour = colours[rng.below(colours.len() as u64) as usize];
        let k = 1 + rng.below(2) as usize;
        let mut counties: Vec<usize> = Vec::new();
        while counties.len() < k {
            let c = rng.below(n_counties) as usize;
            if !counties.contains(&c) {
                counties.push(c);
            }
        }
        let key = format!("rain{i}");
        if colour == "red" {
            steps.push(Step {
                at: at + chrono::Duration::minutes(30),
                what: Act::Activate {
                    key: format!("{key}-flood"),
                    hazard: "flood",
                    level: "IV",
                    counties: counties.clone(),
                },
            });
            steps.push(Step {
                at: at + chrono::Duration::hours(18),
                what: Act::End {
                    key: format!("{key}-flood"),
                },
            });
        }
        steps.push(Step {
            at,
            what: Act::Warn {
                key: key.clone(),
                hazard: Hazard::Rain,
                colour,
                counties,
                update: false,
            },
        });
        steps.push(Step {
            at: at + chrono::Duration::hours(8),
            what: Act::StandDown { key },
        });
    }
    for i in 0..o.typhoons {
        // A typhoon's track crosses three to five of the seven counties.
        let mut all: Vec<usize> = Vec::new();
        let k = 3 + rng.below(3) as usize;
        while all.len() < k {
            let c = rng.below(n_counties) as usize;
            if !all.contains(&c) {
                all.push(c);
            }
        }
        let day = 100 + (i as i64) * 70 / o.typhoons.max(1) as i64 + rng.below(10) as i64;
        let landfall = start + chrono::Duration::days(day) + chrono::Duration::hours(rng.below(24) as i64);
        let key = format!("typhoon{i}");
        // The last typhoon of the season is the strongest: the response goes up to level I.
        let levels: &[&'static str] = match o.typhoons - i {
            1 => &["IV", "III", "II", "I"],
            2 => &["IV", "III"],
            _ => &["IV"],
        };
        for (n, level) in levels.iter().enumerate() {
            let at = landfall - chrono::Duration::hours(24 - 6 * n as i64);
            if n > 0 {
                steps.push(Step {
                    at,
                    what: Act::End {
                        key: format!("{key}-{}", levels[n - 1]),
                    },
                });
            }
            steps.push(Step {
                at: at + chrono::Duration::minutes(1),
                what: Act::Activate {
                    key: format!("{key}-{level}"),
                    hazard: "typhoon",
                    level,
                    counties: all.clone(),
                },
            });
        }
        steps.push(Step {
            at: landfall + chrono::Duration::hours(24),
            what: Act::End {
                key: format!("{key}-{}", levels[levels.len() - 1]),
            },
        });
        steps.push(Step {
            at: landfall - chrono::Duration::hours(8),
            what: Act::Warn {
                key: key.clone(),
                hazard: Hazard::Typhoon,
                colour: "orange",
                counties: all.clone(),
                update: false,
            },
        });
        steps.push(Step {
            at: landfall - chrono::Duration::hours(3),
            what: Act::Warn {
                key: key.clone(),
                hazard: Hazard::Typhoon,
                colour: "red",
                counties: all.clone(),
                update: true,
            },
        });
        steps.push(Step {
            at: landfall + chrono::Duration::hours(12),
            what: Act::StandDown { key },
        });
    }
    steps.sort_by_key(|s| s.at);
    steps
}

/// A warning of the season: its incidents (id, code) and its first message (for an Update).
struct Warned {
    incidents: Vec<(i64, String)>,
    identifier: String,
    sent: DateTime<Utc>,
}

/// The season in play: what it has opened, and the answers people will give and when.
struct Play {
    core: Arc<Core>,
    seed: u64,
    cap: String,
    /// Warning key → what it opened.
    incidents: HashMap<String, Warned>,
    responses: HashMap<String, (i64, Option<(i64, String)>)>,
    /// Call-outs whose answer (or silence) is decided.
    seen: HashSet<i64>,
    /// Answer time (ms) → the replies then due: (phone, text).
    due: BTreeMap<(i64, i64), (String, String)>,
    /// Incidents that ask for evacuation counts (red and orange).
    evacuating: HashSet<i64>,
    /// Incidents stood down: nobody is asked anything more there.
    closed: HashSet<i64>,
    counties: Vec<String>,
}

impl Play {
    fn county_codes(&self, idx: &[usize]) -> Vec<String> {
        idx.iter()
            .filter_map(|i| self.counties.get(*i).cloned())
            .collect()
    }

    async fn act(&mut self, what: &Act) -> Result<String> {
        let core = self.core.clone();
        Ok(match what {
            Act::Warn {
                key,
                hazard,
                colour,
                counties,
                update,
            } => {
                let codes = self.county_codes(counties);
                let now = core.clock.now();
                let previous = self.incidents.get(key).map(|w| (w.identifier.clone(), w.sent));
                let identifier = format!("45090041600000_sim{}_{}", self.seed, now.timestamp());
                let raw = self.cap_for(
                    &identifier,
                    *hazard,
                    colour,
                    &codes,
                    now,
                    previous.filter(|_| *update),
                );
                let out = ingest::ingest(&core, raw.as_bytes(), "simulate")
                    .await
                    .map_err(|e| anyhow::anyhow!("the simulated warning {key}: {e}"))?;
                let made: Vec<(i64, String)> = out.incidents.iter().map(|i| (i.id, i.code.clone())).collect();
                if matches!(*colour, "red" | "orange") {
                    self.evacuating.extend(made.iter().map(|m| m.0));
                }
                let n: usize = out.incidents.iter().map(|i| i.callouts).sum();
                let entry = self.incidents.entry(key.clone()).or_insert(Warned {
                    incidents: Vec::new(),
                    identifier: identifier.clone(),
                    sent: now,
                });
                for m in made {
                    if !entry.incidents.contains(&m) {
                        entry.incidents.push(m);
                    }
                }
                format!("{key}: {colour} warning, {} counties, {n} call-outs", codes.len())
            }
            Act::StandDown { key } => {
                let mut closed = 0;
                for (id, _) in self
                    .incidents
                    .get(key)
                    .map(|w| w.incidents.clone())
                    .unwrap_or_default()
                {
                    self.closed.insert(id);
                    if standdown::stand_down(&core, id, ACTOR).await?.is_some() {
                        closed += 1;
                    }
                }
                format!("{key}: stood down ({closed} incidents)")
            }
            Act::Activate {
                key,
                hazard,
                level,
                counties,
            } => {
                let req = Request {
                    hazard: Some(hazard.to_string()),
                    level: Some(level.to_string()),
                    regions: self.county_codes(counties),
                    until: Some("72h".into()),
                    note: None,
                    end: None,
                };
                match respond::submit(&core, &req, ACTOR).await? {
                    respond::Outcome::Activated {
                        response,
                        incident,
                        code,
                        callouts,
                        ..
                    } => {
                        self.responses.insert(key.clone(), (response, incident.zip(code)));
                        format!("{key}: {hazard} response {level}, {callouts} call-outs")
                    }
                    other => other.describe(),
                }
            }
            Act::End { key } => match self.responses.get(key) {
                Some((id, incident)) => {
                    self.closed.extend(incident.as_ref().map(|i| i.0));
                    respond::end(&core, *id, ACTOR).await?;
                    format!("{key}: ended")
                }
                None => format!("{key}: was never activated"),
            },
        })
    }

    /// The demo's CAP message made over for this warning.
    fn cap_for(
        &self,
        identifier: &str,
        hazard: Hazard,
        colour: &str,
        codes: &[String],
        now: DateTime<Utc>,
        update: Option<(String, DateTime<Utc>)>,
    ) -> String {
        let fmt = |t: DateTime<Utc>| {
            t.with_timezone(&bj())
                .format("%Y-%m-%dT%H:%M:%S+08:00")
                .to_string()
        };
        let (zh, event) = match colour {
            "red" => ("红色", "red"),
            "orange" => ("橙色", "orange"),
            "yellow" => ("黄色", "yellow"),
            _ => ("蓝色", "blue"),
        };
        let name = match hazard {
            Hazard::Rain => format!("暴雨{zh}预警"),
            Hazard::Typhoon => format!("台风{zh}预警"),
        };
        let sender = "450900000000@yulin.weather.demo";
        let mut x = self.cap.clone();
        let swap = |x: &mut String, tag: &str, value: &str| {
            let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
            if let (Some(a), Some(b)) = (x.find(&open), x.find(&close)) {
                x.replace_range(a + open.len()..b, value);
            }
        };
        swap(&mut x, "identifier", identifier);
        swap(&mut x, "sent", &fmt(now));
        swap(&mut x, "effective", &fmt(now));
        swap(&mut x, "onset", &fmt(now));
        swap(&mut x, "expires", &fmt(now + chrono::Duration::hours(12)));
        swap(&mut x, "event", &name);
        swap(
            &mut x,
            "headline",
            &format!("玉林市气象台发布{name}信号（模拟 simulated）"),
        );
        if let Some((prev, sent)) = update {
            x = x.replace(
                "<msgType>Alert</msgType>",
                &format!(
                    "<msgType>Update</msgType>\n  <references>{sender},{prev},{}</references>",
                    fmt(sent)
                ),
            );
        }
        // The colour parameter, and the area: the chosen counties by geocode, no polygon.
        x = x.replace("<value>red</value>", &format!("<value>{event}</value>"));
        if let (Some(a), Some(b)) = (x.find("<area>"), x.find("</area>")) {
            let geocodes: String = codes
                .iter()
                .map(|c| format!("<geocode><valueName>GB2260</valueName><value>{c}</value></geocode>"))
                .collect();
            x.replace_range(
                a..b + "</area>".len(),
                &format!("<area><areaDesc>玉林市（模拟）</areaDesc>{geocodes}</area>"),
            );
        }
        if matches!(hazard, Hazard::Typhoon) {
            x = x.replace("<value>11B03</value>", "<value>11B01</value>");
        }
        x
    }

    /// Runs the queue and the people's answers up to `until`, jumping the frozen clock from one
    /// moment that matters (a job falling due, an answer given) to the next.
    async fn run_until(&mut self, clock: &Clock, until: i64) -> Result<()> {
        loop {
            worker::drain(&self.core, ACTOR).await?;
            self.decide().await?;
            let now = clock.now_ms();
            let next_job = self.core.store.next_job_due().await?;
            let next_answer = self.due.keys().next().map(|k| k.0);
            let next = [next_job, next_answer].into_iter().flatten().min();
            let Some(next) = next.filter(|n| *n <= until) else {
                return Ok(());
            };
            if next > now {
                clock.advance_ms(next - now);
            }
            self.answer_due(clock.now_ms()).await?;
        }
    }

    /// Decides, once per call-out, whether and when its person answers: most within minutes,
    /// some late (after the deadline, once the ladder has moved on), some never; a village
    /// leader in an evacuating incident reports the people moved. Door-knock tasks are
    /// answered by the officer at the door.
    async fn decide(&mut self) -> Result<()> {
        let open: Vec<(i64, String)> = self
            .incidents
            .values()
            .flat_map(|w| w.incidents.clone())
            .chain(self.responses.values().filter_map(|r| r.1.clone()))
            .filter(|(id, _)| !self.closed.contains(id))
            .collect();
        for (incident, code) in open {
            for c in callouts::callouts_of_incident(&self.core.store, incident).await? {
                let Some(sent) = c.sent_at else { continue };
                if !self.seen.insert(c.id) {
                    continue;
                }
                let Some(phone) = c.phone.clone() else { continue };
                let person = mix(self.seed ^ mix(c.contact_id as u64));
                let this = mix(person ^ c.id as u64);
                // A storm has cut the lines in a few townships: nobody there answers, and the
                // ladder climbs to the county and the door.
                let township = c.region_code.as_str().get(..9).unwrap_or_default();
                let cut = mix(self.seed ^ mix(incident as u64) ^ mix(township.parse::<u64>().unwrap_or(0)));
                if township.len() == 9 && cut % 100 < 3 && !c.knock {
                    continue;
                }
                let minute = 60_000;
                let (delay, text) = if c.knock {
                    let r = match this % 10 {
                        0 => "2",
                        1..=3 => "3",
                        _ => "1",
                    };
                    ((15 + this % 30) as i64 * minute, format!("{code} {r}"))
                } else {
                    let delay = match person % 100 {
                        0..=71 => (1 + this % 4) as i64 * minute,
                        72..=85 => (6 + this % 20) as i64 * minute,
                        86..=94 if c.parent_id.is_some() || c.rung > 0 => (1 + this % 3) as i64 * minute,
                        _ => continue,
                    };
                    let text = if self.evacuating.contains(&incident) && c.role == "village_leader" {
                        format!("{code} 已转移{}人", (this >> 8) % 22)
                    } else {
                        format!("{code} 收到")
                    };
                    (delay, text)
                };
                // On the minute: people answer in waves the clock can jump between, not at
                // thousands of distinct milliseconds.
                let at = ((sent + delay) / minute + 1) * minute;
                self.due.insert((at, c.id), (phone, text));
            }
        }
        Ok(())
    }

    async fn answer_due(&mut self, now: i64) -> Result<()> {
        let later = self.due.split_off(&(now + 1, i64::MIN));
        let due = std::mem::replace(&mut self.due, later);
        for (phone, text) in due.into_values() {
            let reply = Event {
                id: String::new(),
                what: What::Reply { from: phone, text },
            };
            inbound::heard(&self.core, "loopback", &[reply]).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(seed: u64) -> Options {
        Options {
            seed,
            dir: PathBuf::new(),
            database: PathBuf::new(),
            rains: 13,
            typhoons: 3,
            verbose: false,
        }
    }

    #[test]
    fn the_script_is_the_seeds_alone() {
        let a = script(&opts(7));
        let b = script(&opts(7));
        let c = script(&opts(8));
        let show = |s: &[Step]| {
            s.iter()
                .map(|x| format!("{} {:?}", x.at, x.what))
                .collect::<Vec<_>>()
        };
        assert_eq!(show(&a), show(&b));
        assert_ne!(show(&a), show(&c));
        let warnings = a
            .iter()
            .filter(|s| matches!(s.what, Act::Warn { update: false, .. }))
            .count();
        assert_eq!(warnings, 16, "13 rains and 3 typhoons");
        let level_one = a
            .iter()
            .filter(|s| matches!(s.what, Act::Activate { level: "I", .. }))
            .count();
        assert_eq!(level_one, 1, "the strongest typhoon only");
        assert!(a.windows(2).all(|w| w[0].at <= w[1].at), "in time order");
    }

    #[test]
    fn the_ledger_fold_counts_what_happened() {
        let e = |seq: i64, at: i64, kind: &str, subject: &str, body: serde_json::Value| Entry {
            seq,
            at,
            kind: kind.into(),
            subject: subject.into(),
            body: body.to_string(),
            prev_hash: String::new(),
            hash: String::new(),
        };
        let entries = vec![
            e(1, 0, "incident.opened", "incident:1", serde_json::json!({})),
            e(
                2,
                0,
                "callout.planned",
                "callout:1",
                serde_json::json!({"region": "450921101"}),
            ),
            e(
                3,
                0,
                "callout.planned",
                "callout:2",
                serde_json::json!({"region": "450921101201"}),
            ),
            e(4, 60_000, "ack.recorded", "callout:1", serde_json::json!({})),
            e(
                5,
                300_000,
                "callout.escalated",
                "callout:2",
                serde_json::json!({"to": "backup", "new_callouts": [3]}),
            ),
            e(
                6,
                600_000,
                "callout.unreached",
                "callout:3",
                serde_json::json!({}),
            ),
            e(
                7,
                9,
                "evacuation.reported",
                "incident:1",
                serde_json::json!({"reporter": "a", "moved": 5}),
            ),
            e(
                8,
                9,
                "evacuation.reported",
                "incident:1",
                serde_json::json!({"reporter": "a", "moved": 7}),
            ),
            e(
                9,
                9,
                "response.activated",
                "response:1",
                serde_json::json!({"level": "IV"}),
            ),
        ];
        let t = from_ledger(&entries);
        assert_eq!(t.incidents, 1);
        assert_eq!(t.callouts, 3);
        assert_eq!(t.township_callouts, 1);
        assert_eq!(t.answered, 1);
        assert_eq!(t.unreached, 1);
        assert_eq!(t.moved, 7, "the latest report of a reporter counts, not the sum");
        assert_eq!(t.median_answer_s, 60);
        assert_eq!(t.responses.get("IV"), Some(&1));
    }
}
