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
                // Our own transaction, already mined, looks like this on a
                // rebroadcast: check its receipt before calling it a failure.
                if let (Network::Ethereum(_), Some(rpc)) = (network, self.0.eth_rpc()) {
                    let hash = alloy_primitives::keccak256(raw_tx);
                    if let Ok(Some(_)) = rpc.get_transaction_receipt(&hash).await {
                        return Err(BroadcastFailure::AlreadyKnown);
                    }
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
            Err(BroadcastError::Unavailable(m)) => Err(gateway::RelayError::Unavailable(m)),
            Err(e) => Err(gateway::RelayError::Rejected(e.to_string())),
        }
    }

    async fn bitcoin_fee_rate(&self, network: Network) -> Result<u64, String> {
        let rpc = match (network, self.0.bitcoin_rpc()) {
            (Network::Bitcoin(_), Some(rpc)) => rpc,
            _ => return Err(format!("no Bitcoin node for {network}")),
        };
        let estimate = rpc.estimate_smart_fee(2).await.map_err(|e| e.to_string())?;
        Ok(estimate
            .sat_per_kvb
            .map(|kvb| kvb.div_ceil(1000).max(1))
            .unwrap_or(FALLBACK_SAT_PER_VB))
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
