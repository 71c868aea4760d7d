//! `jiaoying simulate season`: a short season over the demo roster, through the real paths.
//! The yearly table read from the ledger alone must equal the one read from the state tables,
//! and the same seed must play the same season.

use jiaoying::config::Settings;
use jiaoying::store::ledger;
use jiaoying::tools::simulate::{self, Options};

use crate::helpers::repo;

async fn play(seed: u64, dir: &std::path::Path) -> (simulate::Table, simulate::Table, usize) {
    let settings =
        Settings::load(&repo().join("config/jiaoying.toml"), true).expect("the shipped config loads");
    let o = Options {
        seed,
        dir: repo().join("config/demo"),
        database: dir.join("season.db"),
        rains: 2,
        typhoons: 0,
        verbose: false,
    };
    let (core, from_ledger) = simulate::season(settings, &o).await.expect("the season plays");
    let from_tables = simulate::from_tables(&core).await.expect("the tables read");
    let entries = ledger::all_entries(&core.store)
        .await
        .expect("the ledger reads")
        .len();
    core.store.close().await;
    (from_ledger, from_tables, entries)
}

#[tokio::test]
async fn a_season_read_back_from_the_ledger_equals_the_state_tables_and_replays_from_its_seed() {
    let dir = tempfile::tempdir().unwrap();
    let (ledger, tables, entries) = play(11, dir.path()).await;
    assert_eq!(
        ledger, tables,
        "the ledger and the state tables tell the same season"
    );
    assert!(ledger.incidents >= 2, "two rains: {ledger:?}");
    assert!(
        ledger.callouts > 100 && ledger.answered > ledger.callouts / 2,
        "{ledger:?}"
    );
    assert!(ledger.township_callouts > 0 && ledger.township_callouts < ledger.callouts);
    assert!(ledger.median_answer_s > 0, "answers take minutes: {ledger:?}");

    let again = tempfile::tempdir().unwrap();
    let (replayed, _, entries_again) = play(11, again.path()).await;
    assert_eq!(replayed, ledger, "the same seed plays the same season");
    assert_eq!(entries_again, entries, "… down to the number of ledger entries");
}
