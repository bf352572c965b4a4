//! The price path and the book of one simulated market: a geometric random
//! walk with occasional jumps (or a walk pulled back to an anchor, for a
//! stablecoin), deterministic for a seed and a number of steps, and a book
//! of levels around its price. No clock, no I/O.

use std::hash::{Hash, Hasher};

use liquidity::Level;
use proto::Pair;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::{Decimal, RoundingStrategy};

const BPS: Decimal = Decimal::from_parts(10_000, 0, 0, false, 0);

/// How one simulated market moves and how deep its book is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketSpec {
    pub market: Pair,
    pub start_price: Decimal,
    /// Smallest price increment of the book.
    pub tick_size: Decimal,
    /// Standard deviation of one step's return, in basis points.
    pub volatility_bps: Decimal,
    /// Chance of a jump on a step, in millionths.
    pub jump_per_million: u32,
    /// Size of a jump, in basis points (up or down with equal chance).
    pub jump_bps: Decimal,
    /// A price the walk is pulled back to (a stablecoin's peg), and the
    /// share of the gap closed per step in basis points.
    pub anchor: Option<(Decimal, Decimal)>,
    /// Distance between the best bid and the best ask, in basis points.
    pub spread_bps: Decimal,
    /// Levels per side.
    pub levels: usize,
    /// Distance between neighbouring levels, in basis points.
    pub level_step_bps: Decimal,
    /// Size (base asset) of the best level, and what each level further
    /// out adds.
    pub base_size: Decimal,
    pub size_step: Decimal,
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap_or_default()
}

fn pair(base: &str, quote: &str) -> Pair {
    // Both tickers are constants known to be valid.
    format!("{base}/{quote}")
        .parse()
        .unwrap_or_else(|_| unreachable!("constant pair"))
}

impl MarketSpec {
    /// BTC/USD around 90,000: 2 bp per step, a rare 3% jump.
    pub fn btc_usd() -> Self {
        MarketSpec {
            market: pair("BTC", "USD"),
            start_price: dec("90000"),
            tick_size: dec("0.01"),
            volatility_bps: dec("2"),
            jump_per_million: 200,
            jump_bps: dec("300"),
            anchor: None,
            spread_bps: dec("2"),
            levels: 50,
            level_step_bps: dec("1"),
            base_size: dec("0.5"),
            size_step: dec("0.25"),
        }
    }

    /// ETH/USD around 3,000: a little more volatile than BTC.
    pub fn eth_usd() -> Self {
        MarketSpec {
            market: pair("ETH", "USD"),
            start_price: dec("3000"),
            tick_size: dec("0.01"),
            volatility_bps: dec("3"),
            jump_per_million: 300,
            jump_bps: dec("400"),
            anchor: None,
            spread_bps: dec("3"),
            levels: 50,
            level_step_bps: dec("1"),
            base_size: dec("10"),
            size_step: dec("5"),
        }
    }

    /// USDC/USD near 1, pulled back to the peg.
    pub fn usdc_usd() -> Self {
        MarketSpec {
            market: pair("USDC", "USD"),
            start_price: Decimal::ONE,
            tick_size: dec("0.0001"),
            volatility_bps: dec("0.5"),
            jump_per_million: 50,
            jump_bps: dec("20"),
            anchor: Some((Decimal::ONE, dec("500"))),
            spread_bps: dec("1"),
            levels: 50,
            level_step_bps: dec("1"),
            base_size: dec("100000"),
            size_step: dec("50000"),
        }
    }
}

/// The moving price of one market.
#[derive(Debug, Clone)]
pub struct PricePath {
    spec: MarketSpec,
    rng: StdRng,
    price: Decimal,
    steps: u64,
}

/// A per-market seed, so that markets move independently of one another
/// and of the order they are stepped in.
fn market_seed(seed: u64, market: &Pair) -> u64 {
    // FNV-1a over the market name: stable across builds, unlike std's
    // DefaultHasher.
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 ^= u64::from(*b);
                self.0 = self.0.wrapping_mul(0x100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    market.to_string().hash(&mut h);
    seed ^ h.finish()
}

impl PricePath {
    pub fn new(spec: MarketSpec, seed: u64) -> Self {
        let rng = StdRng::seed_from_u64(market_seed(seed, &spec.market));
        let price = spec.start_price;
        PricePath {
            spec,
            rng,
            price,
            steps: 0,
        }
    }

    pub fn spec(&self) -> &MarketSpec {
        &self.spec
    }

    pub fn price(&self) -> Decimal {
        self.price
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// A standard normal draw, approximated by the sum of twelve uniforms
    /// (Irwin–Hall) in exact decimals.
    fn normal(&mut self) -> Decimal {
        let sum: i64 = (0..12).map(|_| self.rng.gen_range(0..1_000_000i64)).sum();
        Decimal::new(sum - 6_000_000, 6)
    }

    fn floor_price(&self) -> Decimal {
        self.spec.tick_size.max(Decimal::new(1, 8))
    }

    /// Moves the price one step and returns it.
    pub fn step(&mut self) -> Decimal {
        let z = self.normal();
        let mut p = self.price * (Decimal::ONE + self.spec.volatility_bps / BPS * z);
        if self.rng.gen_range(0..1_000_000u32) < self.spec.jump_per_million {
            let up: bool = self.rng.gen();
            let j = self.spec.jump_bps / BPS;
            p *= if up {
                Decimal::ONE + j
            } else {
                Decimal::ONE - j
            };
        }
        if let Some((anchor, pull_bps)) = self.spec.anchor {
            p += (anchor - p) * pull_bps / BPS;
        }
        self.price = p.round_dp(10).max(self.floor_price());
        self.steps += 1;
        self.price
    }

    /// Sets the price (a scenario's shock).
    pub fn set_price(&mut self, price: Decimal) {
        self.price = price.max(self.floor_price());
    }

    /// Moves the price by `bps` basis points at once (negative: down).
    pub fn jump(&mut self, bps: Decimal) {
        let p = self.price * (Decimal::ONE + bps / BPS);
        self.set_price(p.round_dp(10));
    }

    /// The book around the current price: bids best first, asks best first,
    /// never crossed, prices on the tick.
    pub fn levels(&self) -> (Vec<Level>, Vec<Level>) {
        let s = &self.spec;
        let tick = s.tick_size;
        let on_tick = |p: Decimal, up: bool| {
            let strategy = if up {
                RoundingStrategy::ToPositiveInfinity
            } else {
                RoundingStrategy::ToNegativeInfinity
            };
            (p / tick).round_dp_with_strategy(0, strategy) * tick
        };
        let half = s.spread_bps / BPS / Decimal::TWO;
        let mut bids: Vec<Level> = Vec::with_capacity(s.levels);
        let mut asks: Vec<Level> = Vec::with_capacity(s.levels);
        for i in 0..s.levels {
            let away = half + Decimal::from(i) * s.level_step_bps / BPS;
            let size = s.base_size + Decimal::from(i) * s.size_step;
            let mut bid = on_tick(self.price * (Decimal::ONE - away), false);
            let mut ask = on_tick(self.price * (Decimal::ONE + away), true);
            if let Some(prev) = bids.last() {
                bid = bid.min(prev.price - tick);
            }
            match asks.last() {
                Some(prev) => ask = ask.max(prev.price + tick),
                None => {
                    if ask <= bid {
                        ask = bid + tick;
                    }
                }
            }
            if bid > Decimal::ZERO {
                bids.push(Level::new(bid.normalize(), size));
            }
            asks.push(Level::new(ask.normalize(), size));
        }
        (bids, asks)
    }
}
