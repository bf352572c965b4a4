//! The swap as clients see it ([`proto::api::SwapView`]): amounts printed in
//! whole units with the assets' decimals, and the deposit's payment URI.

use proto::api::{DepositInstructions, DepositView, PaymentView, SwapStatus, SwapView};
use proto::{Address, AssetId, Assets};

use super::{Deposit, DepositKey, Disposition, Payment, Swap};

/// Why a swap could not be shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("asset {0} of the swap is not among the deployment's assets")]
    UnknownAsset(AssetId),
    #[error("deposit address {address:?} of the swap is not valid: {reason}")]
    InvalidDepositAddress { address: String, reason: String },
}

fn decimals(assets: &Assets, id: &AssetId) -> Result<u8, ViewError> {
    assets
        .get(id)
        .map(|a| a.decimals)
        .map_err(|_| ViewError::UnknownAsset(id.clone()))
}

pub(super) fn view(swap: &Swap, assets: &Assets) -> Result<SwapView, ViewError> {
    let t = &swap.terms;
    let from_spec = assets
        .get(&t.from)
        .map_err(|_| ViewError::UnknownAsset(t.from.clone()))?;
    let from_dp = from_spec.decimals;
    let to_dp = decimals(assets, &t.to)?;
    let address = Address::parse(t.deposit_network, &t.deposit_address).map_err(|e| {
        ViewError::InvalidDepositAddress {
            address: t.deposit_address.clone(),
            reason: e.to_string(),
        }
    })?;
    let payment_uri = match &address {
        Address::Bitcoin(a) => proto::uri::bip21(a, t.deposit_amount, None),
        Address::Ethereum(a) => {
            proto::uri::eip681(from_spec, a, t.deposit_amount).unwrap_or_default()
        }
    };
    let required = swap.terms.policy.required_confirmations(t.deposit_amount);
    let status = swap.status();
    let deposits = swap
        .deposits
        .iter()
        .map(|(key, d)| deposit_view(swap, status, key, d, from_dp))
        .collect();
    let payment_view = |p: &Payment| {
        let dp = if p.order.asset == t.to {
            to_dp
        } else {
            from_dp
        };
        PaymentView {
            payment_id: p.order.payment_id.clone(),
            asset: p.order.asset.clone(),
            address: p.order.address.clone(),
            amount: p.order.amount.to_decimal_string(dp),
            amount_base_units: p.order.amount,
            txid: p.txid.clone(),
            status: p.status.as_str().to_owned(),
            confirmations: p.confirmations,
        }
    };
    let (amount_out, price) = match &swap.requote {
        Some(r) => (r.payout_amount, r.price),
        None => (t.payout_amount, t.price),
    };
    Ok(SwapView {
        swap_id: t.swap_id,
        status,
        quote_id: t.quote_id,
        from: t.from.clone(),
        to: t.to.clone(),
        amount_in: t.deposit_amount.to_decimal_string(from_dp),
        amount_out: amount_out.to_decimal_string(to_dp),
        price,
        deposit: DepositInstructions {
            network: t.deposit_network,
            asset: t.from.clone(),
            address: t.deposit_address.clone(),
            amount: t.deposit_amount.to_decimal_string(from_dp),
            amount_base_units: t.deposit_amount,
            deadline: t.deadline,
            payment_uri,
            required_confirmations: required,
        },
        payout_address: t.payout_address.clone(),
        refund_address: swap.refund_address.clone(),
        deposits,
        payout: swap.payout.as_ref().map(payment_view),
        refunds: swap.refunds.values().map(payment_view).collect(),
        reason: swap.reason.clone(),
        created_at: swap.created_at,
        updated_at: swap.updated_at,
    })
}

fn deposit_view(
    swap: &Swap,
    status: SwapStatus,
    key: &DepositKey,
    d: &Deposit,
    decimals: u8,
) -> DepositView {
    let disposition = match d.disposition {
        Disposition::Applied if status == SwapStatus::Completed => "applied",
        Disposition::Applied if d.confirmations >= u64::from(swap.required_confirmations()) => {
            "confirmed"
        }
        Disposition::Applied | Disposition::Pending => "pending",
        Disposition::Refund => "refunding",
        Disposition::Refunded => "refunded",
        Disposition::Review => "review",
        Disposition::Dust => "dust",
        Disposition::Dropped => "dropped",
    };
    DepositView {
        txid: key.txid.clone(),
        output: key.output,
        amount: d.amount.to_decimal_string(decimals),
        amount_base_units: d.amount,
        confirmations: d.confirmations,
        disposition: disposition.to_owned(),
    }
}
