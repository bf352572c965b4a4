//! Price locks: a firm quote bound to one swap, and the inventory of the
//! outgoing asset it reserves. The book of locks is plain data; the service
//! keeps it behind one mutex so that check-and-reserve is atomic.

use std::collections::BTreeMap;

use proto::api::Quote;
use proto::{Amount, AssetId, QuoteId, SwapId, Timestamp};
use rust_decimal::Decimal;

use crate::api::{LockStatus, PriceLock};
use crate::error::LiquidityError;

/// Inventory per asset, what locks reserve of it, and the locks.
#[derive(Debug, Clone, Default)]
pub struct LockBook {
    /// What the house holds and can pay out, in base units.
    inventory: BTreeMap<AssetId, Amount>,
    /// Reserved by live (unexecuted) locks.
    reserved: BTreeMap<AssetId, Amount>,
    locks: BTreeMap<QuoteId, PriceLock>,
    /// Decimals per asset, to speak of amounts in whole units.
    decimals: BTreeMap<AssetId, u8>,
}

impl LockBook {
    /// A book over `inventory` (base units), with each asset's decimals.
    pub fn new(inventory: BTreeMap<AssetId, Amount>, decimals: BTreeMap<AssetId, u8>) -> Self {
        LockBook {
            inventory,
            decimals,
            ..Default::default()
        }
    }

    fn whole(&self, asset: &AssetId, a: Amount) -> Decimal {
        let d = self.decimals.get(asset).copied().unwrap_or(0);
        a.to_decimal(d).unwrap_or(Decimal::MAX)
    }

    pub fn inventory(&self, asset: &AssetId) -> Amount {
        self.inventory.get(asset).copied().unwrap_or_default()
    }

    pub fn reserved(&self, asset: &AssetId) -> Amount {
        self.reserved.get(asset).copied().unwrap_or_default()
    }

    /// Inventory not reserved by any lock.
    pub fn available(&self, asset: &AssetId) -> Amount {
        self.inventory(asset).saturating_sub(self.reserved(asset))
    }

    pub fn get(&self, quote_id: &QuoteId) -> Option<&PriceLock> {
        self.locks.get(quote_id)
    }

    pub fn is_locked(&self, quote_id: &QuoteId) -> bool {
        self.locks.contains_key(quote_id)
    }

    pub fn locks(&self) -> impl Iterator<Item = &PriceLock> {
        self.locks.values()
    }

    fn insufficient(&self, asset: &AssetId, wanted: Amount) -> LiquidityError {
        LiquidityError::InsufficientInventory {
            asset: asset.clone(),
            wanted: self.whole(asset, wanted),
            available: self.whole(asset, self.available(asset)),
        }
    }

    /// Refuses an amount (base units) the house could not pay out now.
    pub fn check_available(&self, asset: &AssetId, wanted: Amount) -> Result<(), LiquidityError> {
        if wanted > self.available(asset) {
            return Err(self.insufficient(asset, wanted));
        }
        Ok(())
    }

    /// Locks `quote` for `swap_id` at `now`: the quote must not be expired
    /// nor locked by another swap, and the payout must fit in the
    /// inventory not yet reserved.
    pub fn lock(
        &mut self,
        quote: &Quote,
        swap_id: SwapId,
        now: Timestamp,
    ) -> Result<PriceLock, LiquidityError> {
        if let Some(existing) = self.locks.get(&quote.quote_id) {
            if existing.swap_id == swap_id {
                return Ok(existing.clone());
            }
            return Err(LiquidityError::QuoteAlreadyUsed {
                quote_id: quote.quote_id,
                swap_id: existing.swap_id,
            });
        }
        if now >= quote.expires_at {
            return Err(LiquidityError::QuoteExpired {
                quote_id: quote.quote_id,
                expired_at: quote.expires_at,
            });
        }
        let asset = &quote.to;
        let amount = quote.amount_out_base_units;
        self.check_available(asset, amount)?;
        let reserved = self
            .reserved(asset)
            .checked_add(amount)
            .map_err(|_| self.insufficient(asset, amount))?;
        self.reserved.insert(asset.clone(), reserved);
        let lock = PriceLock {
            quote_id: quote.quote_id,
            swap_id,
            quote: quote.clone(),
            reserved_asset: asset.clone(),
            reserved: amount,
            locked_at: now,
            status: LockStatus::Locked,
        };
        self.locks.insert(quote.quote_id, lock.clone());
        Ok(lock)
    }

    /// Frees a live lock's reservation. Not locked: nothing to do. Executed:
    /// refused, the inventory already left.
    pub fn release(&mut self, quote_id: &QuoteId) -> Result<Option<PriceLock>, LiquidityError> {
        match self.locks.get(quote_id) {
            None => Ok(None),
            Some(l) if l.status == LockStatus::Executed => Err(LiquidityError::QuoteAlreadyUsed {
                quote_id: *quote_id,
                swap_id: l.swap_id,
            }),
            Some(_) => {
                let lock = self
                    .locks
                    .remove(quote_id)
                    .ok_or(LiquidityError::NotLocked(*quote_id))?;
                let r = self
                    .reserved(&lock.reserved_asset)
                    .saturating_sub(lock.reserved);
                self.reserved.insert(lock.reserved_asset.clone(), r);
                Ok(Some(lock))
            }
        }
    }

    /// Marks a live lock executed: its reservation leaves the inventory,
    /// and the deposit (`deposit` of `quote.from`) joins it. Returns the
    /// lock, and whether this call executed it (false: it already was).
    pub fn execute(
        &mut self,
        quote_id: &QuoteId,
        deposit: Amount,
    ) -> Result<(PriceLock, bool), LiquidityError> {
        let lock = self
            .locks
            .get_mut(quote_id)
            .ok_or(LiquidityError::NotLocked(*quote_id))?;
        if lock.status == LockStatus::Executed {
            return Ok((lock.clone(), false));
        }
        lock.status = LockStatus::Executed;
        let lock = lock.clone();
        let asset = &lock.reserved_asset;
        let r = self.reserved(asset).saturating_sub(lock.reserved);
        self.reserved.insert(asset.clone(), r);
        let inv = self.inventory(asset).saturating_sub(lock.reserved);
        self.inventory.insert(asset.clone(), inv);
        let from = &lock.quote.from;
        let inv = self
            .inventory(from)
            .checked_add(deposit)
            .unwrap_or(Amount::from_base_units(u128::MAX));
        self.inventory.insert(from.clone(), inv);
        Ok((lock, true))
    }

    /// Puts back locks persisted before a restart. Live ones reserve their
    /// inventory again (even past the configured inventory: the promise was
    /// made); executed ones are remembered so they stay used. A lock already
    /// present is left as it is.
    pub fn restore(&mut self, lock: PriceLock) {
        if self.locks.contains_key(&lock.quote_id) {
            return;
        }
        if lock.status == LockStatus::Locked {
            let r = self
                .reserved(&lock.reserved_asset)
                .checked_add(lock.reserved)
                .unwrap_or(Amount::from_base_units(u128::MAX));
            self.reserved.insert(lock.reserved_asset.clone(), r);
        }
        self.locks.insert(lock.quote_id, lock);
    }
}
