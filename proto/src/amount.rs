//! Amounts of an asset as unsigned integers in the asset's base units
//! (satoshis, wei, a token's smallest unit), with checked arithmetic and
//! exact conversion to and from decimal strings.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// An amount in base units. Which asset it counts is carried beside it;
/// the number of decimals is needed only to read or print it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(u128);

/// Why a decimal string or a computation did not give an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount is empty")]
    Empty,
    #[error("amount {0:?} is negative; amounts are zero or more")]
    Negative(String),
    #[error("amount {input:?} has {found} decimal places, but the asset has only {max}")]
    TooPrecise {
        input: String,
        found: usize,
        max: u8,
    },
    #[error("amount {0:?} is not a decimal number (digits with at most one '.')")]
    Invalid(String),
    #[error("amount {0:?} is too large")]
    Overflow(String),
    #[error("arithmetic overflow")]
    ArithmeticOverflow,
    #[error("result would be negative")]
    Underflow,
}

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub const fn from_base_units(units: u128) -> Self {
        Amount(units)
    }

    pub const fn base_units(self) -> u128 {
        self.0
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Amount) -> Result<Amount, AmountError> {
        self.0
            .checked_add(other.0)
            .map(Amount)
            .ok_or(AmountError::ArithmeticOverflow)
    }

    pub fn checked_sub(self, other: Amount) -> Result<Amount, AmountError> {
        self.0
            .checked_sub(other.0)
            .map(Amount)
            .ok_or(AmountError::Underflow)
    }

    pub fn saturating_sub(self, other: Amount) -> Amount {
        Amount(self.0.saturating_sub(other.0))
    }

    /// Parses a decimal string in whole units of an asset with `decimals`
    /// decimal places: `"0.015"` BTC (8 decimals) is 1,500,000 satoshis.
    /// More decimals than the asset has is an error, never a silent rounding.
    pub fn parse_decimal(input: &str, decimals: u8) -> Result<Amount, AmountError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(AmountError::Empty);
        }
        if s.starts_with('-') {
            return Err(AmountError::Negative(input.to_owned()));
        }
        let s = s.strip_prefix('+').unwrap_or(s);
        let (int_part, frac_part) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if (int_part.is_empty() && frac_part.is_empty())
            || !int_part.bytes().all(|b| b.is_ascii_digit())
            || !frac_part.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(AmountError::Invalid(input.to_owned()));
        }
        let significant_frac = frac_part.trim_end_matches('0');
        if significant_frac.len() > decimals as usize {
            return Err(AmountError::TooPrecise {
                input: input.to_owned(),
                found: significant_frac.len(),
                max: decimals,
            });
        }
        let overflow = || AmountError::Overflow(input.to_owned());
        let scale = 10u128.checked_pow(decimals as u32).ok_or_else(overflow)?;
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| overflow())?
        };
        let mut frac: u128 = 0;
        for (i, b) in significant_frac.bytes().enumerate() {
            let digit = u128::from(b - b'0');
            let place = 10u128.pow(decimals as u32 - 1 - i as u32);
            frac += digit * place;
        }
        whole
            .checked_mul(scale)
            .and_then(|w| w.checked_add(frac))
            .map(Amount)
            .ok_or_else(overflow)
    }

    /// Prints the amount in whole units with exactly the significant
    /// decimals: 1,500,000 satoshis is `"0.015"`, zero is `"0"`.
    pub fn to_decimal_string(self, decimals: u8) -> String {
        let scale = 10u128.pow(decimals as u32);
        let whole = self.0 / scale;
        let frac = self.0 % scale;
        if frac == 0 {
            return whole.to_string();
        }
        let frac = format!("{:0width$}", frac, width = decimals as usize);
        format!("{}.{}", whole, frac.trim_end_matches('0'))
    }

    /// The amount as an exact decimal in whole units.
    pub fn to_decimal(self, decimals: u8) -> Result<Decimal, AmountError> {
        let units = i128::try_from(self.0).map_err(|_| AmountError::ArithmeticOverflow)?;
        Decimal::try_from_i128_with_scale(units, decimals as u32)
            .map(|d| d.normalize())
            .map_err(|_| AmountError::ArithmeticOverflow)
    }

    /// Converts a decimal in whole units to base units, rounding down
    /// (toward zero). Use for amounts the house pays.
    pub fn from_decimal_floor(value: Decimal, decimals: u8) -> Result<Amount, AmountError> {
        Self::from_decimal_rounded(value, decimals, false)
    }

    /// Converts a decimal in whole units to base units, rounding up.
    /// Use for amounts the house receives.
    pub fn from_decimal_ceil(value: Decimal, decimals: u8) -> Result<Amount, AmountError> {
        Self::from_decimal_rounded(value, decimals, true)
    }

    fn from_decimal_rounded(value: Decimal, decimals: u8, up: bool) -> Result<Amount, AmountError> {
        use rust_decimal::RoundingStrategy;
        if value.is_sign_negative() && !value.is_zero() {
            return Err(AmountError::Negative(value.to_string()));
        }
        // Round at the asset's precision inside Decimal (no growth), then
        // scale the mantissa up in u128, where 18 decimals always fit.
        let strategy = if up {
            RoundingStrategy::AwayFromZero
        } else {
            RoundingStrategy::ToZero
        };
        let rounded = value.round_dp_with_strategy(decimals as u32, strategy);
        let mantissa = u128::try_from(rounded.mantissa())
            .map_err(|_| AmountError::Negative(value.to_string()))?;
        let shift = (decimals as u32)
            .checked_sub(rounded.scale())
            .ok_or(AmountError::ArithmeticOverflow)?;
        10u128
            .checked_pow(shift)
            .and_then(|f| mantissa.checked_mul(f))
            .map(Amount)
            .ok_or_else(|| AmountError::Overflow(value.to_string()))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Serialised as a string of base units, so that JSON readers whose numbers
/// are doubles lose nothing.
impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(serde::de::Error::custom(format!(
                "amount {s:?} must be a string of base units (digits only)"
            )));
        }
        s.parse::<u128>()
            .map(Amount)
            .map_err(|_| serde::de::Error::custom(format!("amount {s:?} is too large")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn check(input: &str, decimals: u8, expect: Result<u128, &str>) {
        let got = Amount::parse_decimal(input, decimals);
        match expect {
            Ok(units) => assert_eq!(got, Ok(Amount(units)), "input {input:?}"),
            Err(msg) => {
                let err = got.expect_err(input).to_string();
                assert!(
                    err.contains(msg),
                    "{input:?}: {err:?} should contain {msg:?}"
                );
            }
        }
    }

    #[test]
    fn parses_decimal_strings() {
        check("0.015", 8, Ok(1_500_000));
        check("1", 8, Ok(100_000_000));
        check("1.", 8, Ok(100_000_000));
        check(".5", 8, Ok(50_000_000));
        check("0.10000000000", 8, Ok(10_000_000));
        check("21000000", 8, Ok(2_100_000_000_000_000));
        check("1.000000000000000001", 18, Ok(1_000_000_000_000_000_001));
        check("0", 6, Ok(0));
        check(" 2.5 ", 6, Ok(2_500_000));
        check("", 8, Err("empty"));
        check("-1", 8, Err("negative"));
        check(
            "0.000000001",
            8,
            Err("has 9 decimal places, but the asset has only 8"),
        );
        check("1e5", 8, Err("not a decimal number"));
        check("1.2.3", 8, Err("not a decimal number"));
        check(".", 8, Err("not a decimal number"));
        check("0x10", 8, Err("not a decimal number"));
        check("1,5", 8, Err("not a decimal number"));
        check(
            "999999999999999999999999999999999999999",
            18,
            Err("too large"),
        );
    }

    #[test]
    fn prints_decimal_strings() {
        assert_eq!(Amount(1_500_000).to_decimal_string(8), "0.015");
        assert_eq!(Amount(0).to_decimal_string(8), "0");
        assert_eq!(Amount(100_000_000).to_decimal_string(8), "1");
        assert_eq!(Amount(1).to_decimal_string(18), "0.000000000000000001");
        assert_eq!(Amount(123).to_decimal_string(0), "123");
    }

    #[test]
    fn rounding_directions() {
        let v = dec!(0.123456789);
        assert_eq!(
            Amount::from_decimal_floor(v, 8).unwrap(),
            Amount(12_345_678)
        );
        assert_eq!(Amount::from_decimal_ceil(v, 8).unwrap(), Amount(12_345_679));
        assert_eq!(
            Amount::from_decimal_ceil(dec!(0.1), 8).unwrap(),
            Amount(10_000_000)
        );
        assert!(Amount::from_decimal_floor(dec!(-0.1), 8).is_err());
    }

    #[test]
    fn serde_as_base_unit_string() {
        let a = Amount(340_282_366_920_938_463_463_374_607_431_768_211_455);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, "\"340282366920938463463374607431768211455\"");
        assert_eq!(serde_json::from_str::<Amount>(&json).unwrap(), a);
        assert!(serde_json::from_str::<Amount>("\"-1\"").is_err());
        assert!(serde_json::from_str::<Amount>("\"1.5\"").is_err());
        assert!(serde_json::from_str::<Amount>("15").is_err());
    }

    #[test]
    fn checked_arithmetic() {
        assert_eq!(
            Amount(1).checked_sub(Amount(2)),
            Err(AmountError::Underflow)
        );
        assert_eq!(
            Amount(u128::MAX).checked_add(Amount(1)),
            Err(AmountError::ArithmeticOverflow)
        );
    }

    proptest! {
        #[test]
        fn decimal_string_round_trips(units in any::<u64>(), decimals in 0u8..=18) {
            let a = Amount(units as u128);
            let s = a.to_decimal_string(decimals);
            prop_assert_eq!(Amount::parse_decimal(&s, decimals), Ok(a));
            let d = a.to_decimal(decimals).unwrap();
            prop_assert_eq!(Amount::from_decimal_floor(d, decimals), Ok(a));
            prop_assert_eq!(Amount::from_decimal_ceil(d, decimals), Ok(a));
        }

        #[test]
        fn floor_and_ceil_bracket_the_value(mantissa in 0i64..i64::MAX, scale in 0u32..=20, decimals in 0u8..=18) {
            let v = Decimal::new(mantissa, scale);
            let lo = Amount::from_decimal_floor(v, decimals).unwrap();
            let hi = Amount::from_decimal_ceil(v, decimals).unwrap();
            prop_assert!(hi.base_units() - lo.base_units() <= 1);
            // Compare as decimals where Decimal's 96-bit mantissa holds them.
            let (Ok(lo), Ok(hi)) = (lo.to_decimal(decimals), hi.to_decimal(decimals)) else {
                return Ok(());
            };
            prop_assert!(lo <= v && v <= hi);
            let one_unit = Decimal::new(1, decimals as u32);
            prop_assert!(hi - lo <= one_unit);
        }
    }
}
