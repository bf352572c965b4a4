//! The hot wallet: keys, deposit addresses, and the driver that moves each
//! swap through the persisted state machine and carries out its actions
//! (execution, payouts, lock release).
//!
//! Every decision is persisted before it is acted on: a transition, the
//! event that caused it, the swap's status message and the actions it
//! decided commit together (the actions go out through the outbox on the
//! `swap-actions` topic). The action executor consumes that topic, so an
//! action whose transition committed is carried out even if the process
//! dies right after the commit; actions are idempotent by their ids.

pub mod keys;
pub mod keystore;
pub mod payments;
pub mod payout;
pub mod repo;
pub mod signer;
pub mod watch;

mod driver;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use proto::api::SwapView;
use proto::{Amount, Assets, BitcoinNetwork, EthereumNetwork, Network, QuoteId, SwapId};
use state_machine::machine::Policy;
use state_machine::store::SwapStore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use driver::HotWallet;

/// Bus topic of the actions decided by swap transitions.
pub const SWAP_ACTIONS: &str = "swap-actions";

/// Configuration of the hot wallet.
#[derive(Debug, Clone)]
pub struct HotWalletConfig {
    /// The encrypted keystore file (created on first start; a plaintext
    /// seed file found there is migrated, see [`keys::Keyring::open_or_create`]).
    pub seed_path: PathBuf,
    /// The keystore's passphrase.
    pub keystore_passphrase: keys::Passphrase,
    pub bitcoin_network: BitcoinNetwork,
    pub ethereum_network: EthereumNetwork,
    pub assets: Assets,
    pub policy: Policy,
    /// How long a customer has to deposit after accepting a quote.
    pub deposit_window: Duration,
    /// How often deadlines are checked.
    pub tick_interval: Duration,
    /// Largest fee per gas the wallet will pay, in wei.
    pub eth_max_fee_per_gas_cap: u128,
    /// Depth an output of the wallet needs before a payout spends it.
    pub btc_min_spend_confirmations: u32,
    /// Highest fee rate of a Bitcoin payment, whatever the node's estimate.
    pub btc_max_fee_rate_sat_per_vb: u64,
    /// Highest absolute fee of one Bitcoin payment.
    pub btc_max_fee_sats: u64,
    /// How long a payment that could not be made waits before another try.
    pub payment_retry_interval: Duration,
    /// Hot-wallet limits per asset; a payment over them waits for the
    /// desk's approval. Assets not listed have no limit.
    pub payout_limits: std::collections::BTreeMap<proto::AssetId, PayoutLimit>,
}

/// The most the hot wallet pays without the desk's approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayoutLimit {
    /// One payment above this waits for approval.
    pub per_payment: Amount,
    /// Payments of the last 24 hours above this total wait for approval.
    pub per_day: Amount,
}

/// Errors of the hot wallet's API.
#[derive(Debug, thiserror::Error)]
pub enum HotWalletError {
    #[error("swap {0} not found")]
    SwapNotFound(SwapId),
    #[error("{0}")]
    Invalid(String),
    #[error("payouts on {0} are not supported by this engine yet")]
    UnsupportedPayout(Network),
    #[error("idempotency key {0:?} was already used for a different quote")]
    IdempotencyConflict(String),
    #[error("chain access failed: {0}")]
    Chain(String),
    #[error("key error: {0}")]
    Keys(#[from] keys::KeyError),
    #[error("store error: {0}")]
    Store(#[from] state_machine::store::StoreError),
    #[error("database error: {0}")]
    Repo(#[from] repo::RepoError),
    #[error("{0}")]
    Internal(String),
}

/// A broadcast the node refused or could not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BroadcastFailure {
    /// The node has it already (mempool or chain): as good as a success.
    #[error("already known to the node")]
    AlreadyKnown,
    /// The node refused it for good (invalid, conflicting, fee too low).
    #[error("rejected by the node: {0}")]
    Rejected(String),
    /// The node could not be reached; retry later.
    #[error("node unavailable: {0}")]
    Unavailable(String),
}

/// EIP-1559 fees for the next transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eip1559Fees {
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
}

/// What the hot wallet needs of the node gateway.
#[async_trait]
pub trait ChainAccess: Send + Sync + 'static {
    /// Adds an address to the watch list; returns once it is persisted.
    async fn watch_address(&self, network: Network, address: &str) -> Result<(), String>;
    /// Watches one of the engine's own transactions.
    async fn watch_tx(&self, network: Network, txid: &str) -> Result<(), String>;
    /// Broadcasts a raw transaction; returns its txid.
    async fn broadcast(&self, network: Network, raw_tx: &[u8]) -> Result<String, BroadcastFailure>;
    /// The next nonce of `address`, counting pending transactions.
    async fn eth_pending_nonce(&self, network: Network, address: &str) -> Result<u64, String>;
    async fn eth_fees(&self, network: Network) -> Result<Eip1559Fees, String>;
    /// The node's fee estimate for a Bitcoin payment, in sat/vB.
    async fn btc_fee_rate(&self, network: Network) -> Result<u64, String>;
}

/// What the hot wallet needs of liquidity.
#[async_trait]
pub trait Execution: Send + Sync + 'static {
    /// Honour the locked price of `quote_id` for the deposit (and hedge).
    /// Idempotent per quote.
    async fn execute(
        &self,
        quote_id: QuoteId,
        swap_id: SwapId,
        deposit_amount: Amount,
    ) -> Result<(), String>;
    /// Release the lock of `quote_id`; releasing twice is harmless.
    async fn release(&self, quote_id: QuoteId) -> Result<(), String>;
}

/// What a gateway asks of the hot wallet to open a swap.
#[derive(Debug, Clone)]
pub struct OpenSwap {
    pub swap_id: SwapId,
    pub quote: proto::api::Quote,
    pub deposit_address: String,
    pub payout_address: String,
    pub refund_address: Option<String>,
    pub idempotency_key: String,
}

/// The hot wallet's API, in-process in embedded mode.
#[async_trait]
pub trait HotWalletApi: Send + Sync + 'static {
    /// A fresh deposit address on `network` for `swap_id`, persisted and
    /// watched before it is returned.
    async fn allocate_deposit_address(
        &self,
        network: Network,
        swap_id: SwapId,
    ) -> Result<String, HotWalletError>;
    /// Opens a swap; idempotent on the idempotency key.
    async fn open_swap(&self, open: OpenSwap) -> Result<SwapView, HotWalletError>;
    async fn swap(&self, swap_id: SwapId) -> Result<SwapView, HotWalletError>;
    async fn swap_by_idempotency_key(&self, key: &str) -> Result<Option<SwapView>, HotWalletError>;
    async fn provide_refund_address(
        &self,
        swap_id: SwapId,
        address: &str,
    ) -> Result<SwapView, HotWalletError>;
    /// Whether the engine can pay out on `network`.
    fn can_pay_out(&self, network: Network) -> bool;
    /// Payments over the hot wallet's limits, waiting for the desk.
    async fn payments_awaiting_approval(
        &self,
    ) -> Result<Vec<proto::api::DeskPayment>, HotWalletError>;
    /// Approves a waiting payment (`approver` names who did) and pays it.
    async fn approve_payment(
        &self,
        payment_id: &str,
        approver: &str,
    ) -> Result<proto::api::DeskPayment, HotWalletError>;
}

/// Everything the hot wallet runs with.
#[derive(Clone)]
pub struct HotWalletDeps {
    pub store: SwapStore,
    pub bus: infra::bus::SharedBus,
    pub chains: Arc<dyn ChainAccess>,
    pub execution: Arc<dyn Execution>,
}

impl std::fmt::Debug for HotWalletDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotWalletDeps").finish_non_exhaustive()
    }
}

/// Starts the hot wallet's tasks (outbox relay, chain-event consumer,
/// action executor, deadline ticker) on `tracker`; they stop on `shutdown`.
pub async fn start(
    config: HotWalletConfig,
    deps: HotWalletDeps,
    shutdown: CancellationToken,
    tracker: &TaskTracker,
) -> Result<HotWallet, HotWalletError> {
    HotWallet::start(config, deps, shutdown, tracker).await
}
