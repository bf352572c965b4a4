//! swap-sim in CI: a few scenarios end with every invariant holding, and
//! the same seed replays to the same report bytes.

use std::time::Duration;

use simulations::sim::scenario::{Scenario, ScenarioChoice};
use simulations::sim::{self, SimOptions};

fn opts(seed: u64, scenario: Scenario, swaps: usize) -> SimOptions {
    SimOptions {
        seed,
        scenario: ScenarioChoice::One(scenario),
        swaps,
        external: None,
        chaos: 0,
        swapd: None,
        users_per_step: 5,
        deposit_window: Duration::from_secs(6),
    }
}

async fn report_json(o: &SimOptions) -> String {
    let (report, _) = sim::run(o).await.expect("simulation runs");
    assert!(report.ok(), "seed {}:\n{}", o.seed, report.summary());
    serde_json::to_string_pretty(&report).expect("report serialises")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_same_report() {
    let o = opts(5, Scenario::Happy, 10);
    let a = report_json(&o).await;
    let b = report_json(&o).await;
    assert_eq!(a, b, "two runs of seed 5 differ");
    assert!(a.contains("\"completed\": 10"), "{a}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_wallet_scenarios_hold_the_invariants() {
    for s in [
        Scenario::HardwareWallet,
        Scenario::Rbf,
        Scenario::Dust,
        Scenario::Reorg,
    ] {
        report_json(&opts(11, s, 3)).await;
    }
}
