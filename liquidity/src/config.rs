//! Configuration of the liquidity engine: assets and their limits, markets,
//! spread and fees, quote lifetime and signing key, staleness.

use std::collections::BTreeMap;

use proto::{Amount, AssetId, Assets, Pair};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// What the engine allows and holds for one asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetPolicy {
    /// Smallest amount of a swap's side in this asset, in whole units.
    pub min_amount: Decimal,
    /// Largest amount of a swap's side in this asset, in whole units.
    pub max_amount: Decimal,
    /// The network fee of paying this asset out, in its base units; taken
    /// out of the amount the client receives.
    pub network_fee: Amount,
    /// Inventory the house can pay out, in base units.
    pub inventory: Amount,
    /// Basis points added to the price per whole unit of exposure: a swap
    /// that grows an exposure the house already has is priced worse.
    pub skew_bps_per_unit: Decimal,
    /// Sizes (whole units of this asset sold) of the indicative ladder.
    pub ladder: Vec<Decimal>,
    /// The largest exposure (whole units, either sign) before trading turns
    /// `Reducing`: only quotes that bring it back are given. `None`: no
    /// limit.
    #[serde(default)]
    pub max_exposure: Option<Decimal>,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiquidityConfig {
    /// The assets clients swap.
    pub assets: Assets,
    /// Limits, fees and inventory of every tradable asset.
    pub policies: BTreeMap<AssetId, AssetPolicy>,
    /// The currency venues quote in, through which pairs cross (`USD`).
    pub usd: AssetId,
    /// The markets books are taken for, e.g. `BTC/USD`. A pair is priced
    /// on a direct market if there is one, otherwise through `usd`.
    pub markets: Vec<Pair>,
    /// The house's spread, in basis points of the amount.
    pub spread_bps: Decimal,
    /// A venue's taker fee, in basis points, charged on every leg.
    pub venue_fee_bps: Decimal,
    /// The inventory skew never moves the price by more than this.
    pub max_skew_bps: Decimal,
    /// The largest a single quote may be worth, in USD.
    pub max_notional_usd: Decimal,
    /// A venue's book older than this is left out of the aggregated book.
    pub stale_after_ms: u64,
    /// How long a firm quote is valid.
    pub quote_ttl_ms: u64,
    /// How long an unlocked quote is kept after it expired, so that a late
    /// lock says "expired" rather than "not found".
    pub quote_retention_ms: u64,
    /// The HMAC-SHA256 key quotes are signed with (hex).
    pub signing_key_hex: String,
    /// How often the service checks venue staleness (automatic halt).
    pub risk_check_interval_ms: u64,
}

impl LiquidityConfig {
    /// A configuration for development and tests: BTC, ETH and stablecoins
    /// priced through `USD` markets with realistic limits, the policies of
    /// every asset in `assets` that it knows.
    pub fn dev(assets: Assets, signing_key_hex: &str) -> Self {
        let usd = AssetId::new("USD").expect("USD is a valid ticker");
        let mut policies = BTreeMap::new();
        let mut markets = Vec::new();
        for spec in assets.iter() {
            let d = |s: &str| s.parse::<Decimal>().expect("literal decimal");
            let (min, max, fee_units, inventory_units, skew, ladder, max_exposure) =
                match spec.id.as_str() {
                    "BTC" => (
                        "0.0001",
                        "10",
                        "0.00002",
                        "50",
                        "0.5",
                        vec!["0.01", "0.1", "1"],
                        "25",
                    ),
                    "ETH" => (
                        "0.002",
                        "300",
                        "0.0005",
                        "1500",
                        "0.02",
                        vec!["0.1", "1", "10"],
                        "750",
                    ),
                    _ => (
                        "5",
                        "500000",
                        "2",
                        "5000000",
                        "0.00001",
                        vec!["100", "1000", "10000"],
                        "2500000",
                    ),
                };
            let to_units =
                |s: &str| Amount::from_decimal_floor(d(s), spec.decimals).unwrap_or(Amount::ZERO);
            policies.insert(
                spec.id.clone(),
                AssetPolicy {
                    min_amount: d(min),
                    max_amount: d(max),
                    network_fee: to_units(fee_units),
                    inventory: to_units(inventory_units),
                    skew_bps_per_unit: d(skew),
                    ladder: ladder.into_iter().map(d).collect(),
                    max_exposure: Some(d(max_exposure)),
                },
            );
            if let Ok(p) = Pair::new(spec.id.clone(), usd.clone()) {
                markets.push(p);
            }
        }
        LiquidityConfig {
            assets,
            policies,
            usd,
            markets,
            spread_bps: Decimal::from(20),
            venue_fee_bps: Decimal::from(10),
            max_skew_bps: Decimal::from(100),
            max_notional_usd: Decimal::from(1_000_000),
            stale_after_ms: 10_000,
            quote_ttl_ms: 30_000,
            quote_retention_ms: 300_000,
            signing_key_hex: signing_key_hex.to_owned(),
            risk_check_interval_ms: 500,
        }
    }
}
