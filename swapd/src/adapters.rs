//! In-process wiring between services: the node gateway as the hot
//! wallet's chain access, liquidity as its execution venue.

use std::sync::Arc;

use async_trait::async_trait;
use hot_wallet::{BroadcastFailure, ChainAccess, Eip1559Fees, Execution};
use liquidity::LiquidityApi;
use node_gateway::eth_rpc::BlockTag;
use node_gateway::BroadcastError;
use node_gateway::NodeGateway;
use proto::{Amount, Network, QuoteId, SwapId};

/// The node gateway, as the hot wallet sees it.
#[derive(Debug, Clone)]
pub struct NodeChains(pub NodeGateway);

#[async_trait]
impl ChainAccess for NodeChains {
    async fn watch_address(&self, network: Network, address: &str) -> Result<(), String> {
        self.0
            .watch_address(network, address)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn watch_tx(&self, network: Network, txid: &str) -> Result<(), String> {
        self.0
            .watch_tx(network, txid)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn broadcast(&self, network: Network, raw_tx: &[u8]) -> Result<String, BroadcastFailure> {
        match self.0.broadcast(network, raw_tx).await {
            Ok(txid) => Ok(txid),
            Err(e) if e.is_already_known() => Err(BroadcastFailure::AlreadyKnown),
            Err(BroadcastError::Unavailable(m)) => Err(BroadcastFailure::Unavailable(m)),
            Err(BroadcastError::NonceTooLow(m)) => {
                if already_mined(&self.0, network, raw_tx).await {
                    return Err(BroadcastFailure::AlreadyKnown);
                }
                Err(BroadcastFailure::Rejected(format!("nonce too low: {m}")))
            }
            Err(e) => Err(BroadcastFailure::Rejected(e.to_string())),
        }
    }

    async fn eth_pending_nonce(&self, network: Network, address: &str) -> Result<u64, String> {
        let rpc = self.eth(network)?;
        let addr: alloy_primitives::Address =
            address.parse().map_err(|e| format!("{address}: {e}"))?;
        rpc.get_transaction_count(&addr, BlockTag::Pending)
            .await
            .map_err(|e| e.to_string())
    }

    async fn btc_fee_rate(&self, network: Network) -> Result<u64, String> {
        bitcoin_fee_rate(&self.0, network).await
    }

    async fn eth_fees(&self, network: Network) -> Result<Eip1559Fees, String> {
        let rpc = self.eth(network)?;
        let tip = rpc
            .max_priority_fee_per_gas()
            .await
            .map_err(|e| e.to_string())?;
        let block = rpc
            .get_block_by_number(BlockTag::Latest)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the node has no latest block")?;
        let base = block.base_fee_per_gas.map(|b| b.to::<u128>()).unwrap_or(0);
        // Room for the base fee to double before the payout gets stuck.
        Ok(Eip1559Fees {
            max_fee_per_gas: base.saturating_mul(2).saturating_add(tip),
            max_priority_fee_per_gas: tip,
        })
    }
}

impl NodeChains {
    fn eth(&self, network: Network) -> Result<Arc<node_gateway::eth_rpc::EthRpc>, String> {
        match network {
            Network::Ethereum(_) => self
                .0
                .eth_rpc()
                .ok_or_else(|| format!("no Ethereum node configured for {network}")),
            Network::Bitcoin(_) => Err(format!("{network} is not an Ethereum network")),
        }
    }
}

/// The node's fee estimate for confirmation within 2 blocks, in sat/vB
/// (rounded up); a fixed fallback when the node has no estimate yet (a
/// fresh regtest chain). Deposit PSBTs and the hot wallet's payouts both
/// use it.
async fn bitcoin_fee_rate(nodes: &NodeGateway, network: Network) -> Result<u64, String> {
    let rpc = match (network, nodes.bitcoin_rpc()) {
        (Network::Bitcoin(_), Some(rpc)) => rpc,
        _ => return Err(format!("no Bitcoin node for {network}")),
    };
    let estimate = rpc.estimate_smart_fee(2).await.map_err(|e| e.to_string())?;
    Ok(estimate
        .sat_per_kvb
        .map(|kvb| kvb.div_ceil(1000).max(1))
        .unwrap_or(FALLBACK_SAT_PER_VB))
}

/// Liquidity, as the hot wallet sees it.
#[derive(Clone)]
pub struct LiquidityExecution(pub Arc<dyn LiquidityApi>);

impl std::fmt::Debug for LiquidityExecution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiquidityExecution")
    }
}

#[async_trait]
impl Execution for LiquidityExecution {
    async fn execute(
        &self,
        quote_id: QuoteId,
        _swap_id: SwapId,
        deposit_amount: Amount,
    ) -> Result<(), String> {
        self.0
            .execute(quote_id, deposit_amount)
            .await
            .map_err(|e| e.to_string())
    }

    async fn release(&self, quote_id: QuoteId) -> Result<(), String> {
        self.0.release(quote_id).await.map_err(|e| e.to_string())
    }
}

/// The node gateway, as the client gateway sees it: relaying wallets'
/// signed deposits and fee estimates for their PSBTs.
#[derive(Debug, Clone)]
pub struct RelayChains(pub NodeGateway);

/// Regtest and quiet networks have no fee data; this is bitcoind's own
/// fallback fee (`-fallbackfee`, 20 sat/vB) for that case.
const FALLBACK_SAT_PER_VB: u64 = 20;

#[async_trait]
impl gateway::DepositChains for RelayChains {
    async fn relay(&self, network: Network, raw_tx: &[u8]) -> Result<String, gateway::RelayError> {
        match self.0.broadcast(network, raw_tx).await {
            Ok(txid) => Ok(txid),
            Err(e) if e.is_already_known() => local_txid(network, raw_tx)
                .ok_or_else(|| gateway::RelayError::Rejected(e.to_string())),
            Err(e @ BroadcastError::NonceTooLow(_)) => match local_txid(network, raw_tx) {
                Some(txid) if already_mined(&self.0, network, raw_tx).await => Ok(txid),
                _ => Err(gateway::RelayError::Rejected(e.to_string())),
            },
            Err(BroadcastError::Unavailable(m)) => Err(gateway::RelayError::Unavailable(m)),
            Err(e) => Err(gateway::RelayError::Rejected(e.to_string())),
        }
    }

    async fn bitcoin_fee_rate(&self, network: Network) -> Result<u64, String> {
        bitcoin_fee_rate(&self.0, network).await
    }

    async fn scan_utxos(
        &self,
        network: Network,
        descriptors: &[String],
    ) -> Result<(u64, Vec<gateway::signing::FoundUtxo>), gateway::RelayError> {
        let rpc = match (network, self.0.bitcoin_rpc()) {
            (Network::Bitcoin(_), Some(rpc)) => rpc,
            _ => {
                return Err(gateway::RelayError::Rejected(format!(
                    "no Bitcoin node for {network}"
                )))
            }
        };
        let objects: Vec<node_gateway::bitcoin_rpc::ScanObject> = descriptors
            .iter()
            .map(|d| node_gateway::bitcoin_rpc::ScanObject {
                desc: d.clone(),
                range: None,
            })
            .collect();
        let scan = rpc.scan_tx_out_set(&objects).await.map_err(|e| match e {
            node_gateway::RpcError::Node { .. } => gateway::RelayError::Rejected(e.to_string()),
            other => gateway::RelayError::Unavailable(other.to_string()),
        })?;
        Ok((
            scan.height,
            scan.unspents
                .into_iter()
                .map(|u| gateway::signing::FoundUtxo {
                    txid: u.txid.to_string(),
                    vout: u.vout,
                    script_pubkey: u.script_pubkey,
                    value_sats: u.value_sats,
                    desc: u.desc,
                    coinbase: u.coinbase,
                    height: u.height,
                })
                .collect(),
        ))
    }

    async fn ethereum_params(
        &self,
        network: Network,
        from: alloy_primitives::Address,
        to: alloy_primitives::Address,
        value: alloy_primitives::U256,
        data: alloy_primitives::Bytes,
    ) -> Result<gateway::signing::EthTxParams, String> {
        let Network::Ethereum(net) = network else {
            return Err(format!("{network} is not an Ethereum network"));
        };
        let chains = NodeChains(self.0.clone());
        let rpc = chains.eth(network)?;
        let chain_id = rpc.chain_id().await.map_err(|e| e.to_string())?;
        if chain_id != net.chain_id() {
            return Err(format!(
                "the node is on chain {chain_id}, not {network} ({})",
                net.chain_id()
            ));
        }
        let nonce = rpc
            .get_transaction_count(&from, BlockTag::Pending)
            .await
            .map_err(|e| e.to_string())?;
        let gas: alloy_primitives::U64 = serde_json::from_value(
            rpc.call_raw(
                "eth_estimateGas",
                serde_json::json!([{"from": from, "to": to, "value": value, "data": data}]),
            )
            .await
            .map_err(|e| e.to_string())?,
        )
        .map_err(|e| format!("eth_estimateGas answer: {e}"))?;
        let fees = chains.eth_fees(network).await?;
        Ok(gateway::signing::EthTxParams {
            chain_id,
            nonce,
            gas_limit: gas.to(),
            max_fee_per_gas: fees.max_fee_per_gas,
            max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
        })
    }
}

/// Whether an Ethereum transaction refused with "nonce too low" is this very
/// transaction, already mined (what a rebroadcast of a mined transaction
/// looks like), by its receipt.
async fn already_mined(nodes: &NodeGateway, network: Network, raw_tx: &[u8]) -> bool {
    match (network, nodes.eth_rpc()) {
        (Network::Ethereum(_), Some(rpc)) => {
            let hash = alloy_primitives::keccak256(raw_tx);
            matches!(rpc.get_transaction_receipt(&hash).await, Ok(Some(_)))
        }
        _ => false,
    }
}

/// The id of a serialised transaction, as chain events spell it.
fn local_txid(network: Network, raw_tx: &[u8]) -> Option<String> {
    match network {
        Network::Bitcoin(_) => bitcoin::consensus::deserialize::<bitcoin::Transaction>(raw_tx)
            .ok()
            .map(|tx| tx.compute_txid().to_string()),
        Network::Ethereum(_) => Some(format!("{:#x}", alloy_primitives::keccak256(raw_tx))),
    }
}

/// What the gateway's readiness and desk learn about the bus and the chains.
#[derive(Debug)]
pub struct EngineProbes {
    pub bus: infra::bus::LocalBus,
    pub nodes: NodeGateway,
    /// The chains the node gateway was configured to follow.
    pub networks: Vec<Network>,
}

#[async_trait]
impl gateway::ops::Probes for EngineProbes {
    async fn bus(&self) -> Result<Vec<gateway::ops::BusLagView>, String> {
        let lags = self.bus.consumer_lag().await.map_err(|e| e.to_string())?;
        Ok(lags
            .into_iter()
            .map(|l| gateway::ops::BusLagView {
                group: l.group,
                topic: l.topic,
                messages: l.messages,
            })
            .collect())
    }

    fn chains(&self) -> Vec<gateway::ops::ChainView> {
        self.networks
            .iter()
            .map(|n| gateway::ops::ChainView {
                network: n.to_string(),
                tip_height: self.nodes.tip(*n).map(|t| t.height),
            })
            .collect()
    }
}

/// The desk's hedge and P&L panels, backed by liquidity's hedger.
#[derive(Clone)]
pub struct LiquidityPanels(pub Arc<liquidity::Liquidity>);

impl std::fmt::Debug for LiquidityPanels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiquidityPanels")
    }
}

#[async_trait]
impl gateway::ops::DeskPanels for LiquidityPanels {
    async fn hedges(&self) -> Option<Result<Vec<gateway::ops::HedgeView>, gateway::Failure>> {
        use liquidity::hedge::HedgeStatus;
        let mut orders: Vec<gateway::ops::HedgeView> = self
            .0
            .hedges()
            .into_iter()
            .map(|o| gateway::ops::HedgeView {
                client_order_id: o.client_order_id,
                swap_id: Some(o.swap_id.to_string()),
                venue: o.venue,
                market: o.market.to_string(),
                side: o.side.as_str().to_owned(),
                amount: o.qty.normalize().to_string(),
                filled: o.filled_qty.normalize().to_string(),
                average_price: o.avg_price.map(|p| p.normalize().to_string()),
                status: match o.status {
                    HedgeStatus::Pending => "open".to_owned(),
                    HedgeStatus::Filled => "filled".to_owned(),
                    HedgeStatus::PartiallyFilled => "partially_filled".to_owned(),
                    HedgeStatus::Rejected { reason } => format!("rejected: {reason}"),
                    HedgeStatus::GaveUp { reason } => format!("gave_up: {reason}"),
                },
                created_at: o.created_at,
            })
            .collect();
        orders.sort_by_key(|o| std::cmp::Reverse(o.created_at));
        Some(Ok(orders))
    }

    async fn pnl(&self) -> Option<Result<gateway::ops::PnlView, gateway::Failure>> {
        let per_asset = self.0.pnl();
        let realized: rust_decimal::Decimal = per_asset.values().map(|p| p.realized).sum();
        let unrealized: rust_decimal::Decimal = per_asset.values().map(|p| p.unrealized).sum();
        Some(Ok(gateway::ops::PnlView {
            currency: "USD".to_owned(),
            realized: realized.round_dp(2).to_string(),
            unrealized: unrealized.round_dp(2).to_string(),
            assets: per_asset
                .into_iter()
                .map(|(asset, p)| gateway::ops::AssetPnl {
                    asset: asset.to_string(),
                    position: p.position.normalize().to_string(),
                    realized: p.realized.round_dp(2).to_string(),
                    unrealized: p.unrealized.round_dp(2).to_string(),
                })
                .collect(),
            at: chrono::Utc::now(),
        }))
    }
}
