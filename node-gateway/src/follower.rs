//! The follower tasks: one per chain, polling its node, driving a
//! [`ChainTracker`] (and for Bitcoin a [`MempoolTracker`]), publishing the
//! events and persisting the cursor after them.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bitcoin::{BlockHash, Txid};
use infra::db::Db;
use proto::event::ChainEvent;
use proto::{AssetId, Network};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::bitcoin_rpc::BitcoinRpc;
use crate::eth_rpc::{BlockTag, EthBlock, EthRpc, ERC20_TRANSFER_TOPIC};
use crate::nodes::NodePool;
use crate::publish::{Publisher, ShuttingDown};
use crate::rpc::RpcError;
use crate::store;
use crate::tracker::{BlockRef, ChainTracker, Matched, MempoolTracker, TrackedBlock};
use crate::watch::WatchList;
use crate::Erc20Token;

/// The best block the gateway has processed on a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTip {
    pub height: u64,
    pub hash: String,
}

pub(crate) type SharedTips = Arc<RwLock<HashMap<Network, ChainTip>>>;

/// Extra blocks remembered beyond `max_depth`, for reorgs deeper than the
/// confirmations reported.
const REORG_MARGIN: usize = 100;

#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("shutting down")]
    ShuttingDown,
    #[error("node has no block at height {0}")]
    NoBlock(u64),
}

impl From<ShuttingDown> for FollowError {
    fn from(_: ShuttingDown) -> Self {
        FollowError::ShuttingDown
    }
}

/// What a follower needs from a chain's node.
#[async_trait]
pub(crate) trait ChainSource: Send + Sync {
    /// Health-checks the chain's nodes and settles which one the calls
    /// below go to (failover); before every poll.
    async fn select_node(&mut self) -> Result<(), RpcError>;
    async fn best_height(&self) -> Result<u64, RpcError>;
    /// The best-chain block hash at `height`; `None` above the tip.
    async fn hash_at(&self, height: u64) -> Result<Option<String>, RpcError>;
    /// The best-chain block at `height`, matched against the watch list.
    async fn block_at(&self, height: u64) -> Result<Option<(BlockRef, Vec<Matched>)>, RpcError>;
    /// A block by hash (possibly no longer in the best chain), matched.
    async fn block_by_hash(&self, hash: &str)
        -> Result<Option<(BlockRef, Vec<Matched>)>, RpcError>;
    /// Called when the node's chain is shorter than ours: `true` when the
    /// node simply has not reached our tip yet (syncing, or a lagging node),
    /// so nothing is disconnected; `false` when our tip is off its chain.
    async fn lagging_behind(&self, _tip: &BlockRef) -> Result<bool, RpcError> {
        Ok(false)
    }
    /// The node's finalized block (height, hash), where it has one.
    async fn finalized(&self) -> Result<Option<(u64, String)>, RpcError> {
        Ok(None)
    }
    /// The watched items of `txids` were confirmed in a connected block
    /// (called before their events are published).
    fn confirmed(&mut self, _txids: &[String]) {}
    /// Items of a block just reorganised away (see
    /// [`MempoolTracker::unconfirmed`]); Bitcoin only: an Ethereum node
    /// keeps no such promise about its pool.
    fn unconfirmed(&mut self, _txid: &str, _matches: Vec<Matched>) {}
    /// Looks at the mempool after the blocks are processed.
    async fn poll_mempool(&mut self, _tracker: &ChainTracker) -> Result<Vec<ChainEvent>, RpcError> {
        Ok(Vec::new())
    }
}

/// Follows one chain until shutdown.
pub(crate) struct Follower<S> {
    pub(crate) source: S,
    pub(crate) tracker: ChainTracker,
    pub(crate) db: Db,
    pub(crate) publisher: Publisher,
    pub(crate) tips: SharedTips,
    pub(crate) poll_interval: Duration,
    /// Woken when a node announces a new head (websocket), to poll at once.
    pub(crate) wake: Option<Arc<Notify>>,
    /// The last finalized height reported (from memory: after a restart the
    /// same finalized block is reported again, with the same event id).
    pub(crate) finalized: Option<u64>,
    /// Our tip when the node was last asked for its finalized block:
    /// finality only moves with new blocks, so it is asked once per tip.
    pub(crate) finalized_asked_at: Option<String>,
    pub(crate) shutdown: CancellationToken,
}

pub(crate) fn keep_for(max_depth: u64) -> usize {
    max_depth as usize + REORG_MARGIN
}

impl<S: ChainSource> Follower<S> {
    pub(crate) async fn run(mut self) {
        let network = self.tracker.network();
        let span = tracing::info_span!("node_gateway.follow", %network);
        let _ = tracing::Instrument::instrument(
            async move {
                let mut restored = false;
                loop {
                    let result = if restored {
                        self.poll_once().await
                    } else {
                        self.restore().await.map(|()| restored = true)
                    };
                    match result {
                        Ok(()) => {}
                        Err(FollowError::ShuttingDown) => break,
                        Err(e) => tracing::warn!(error = %e, "following the node failed; retrying"),
                    }
                    let woken = async {
                        match &self.wake {
                            Some(w) => w.notified().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        _ = self.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(self.poll_interval) => {}
                        _ = woken => tracing::trace!("new head announced"),
                    }
                }
                tracing::info!("follower stopped");
            },
            span,
        )
        .await;
    }

    fn set_tip(&self) {
        if let Some(t) = self.tracker.tip() {
            let mut tips = self.tips.write().unwrap_or_else(|e| e.into_inner());
            tips.insert(
                self.tracker.network(),
                ChainTip {
                    height: t.height,
                    hash: t.hash.clone(),
                },
            );
        }
    }

    /// Saves the cursor, retrying database errors until it sticks.
    async fn persist(&self) -> Result<(), FollowError> {
        let Some(tip) = self.tracker.tip().cloned() else {
            return Ok(());
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            match store::save_tip(
                &self.db,
                self.tracker.network(),
                &tip,
                self.tracker.keep() as u64,
            )
            .await
            {
                Ok(()) => {
                    self.set_tip();
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(error = %e, height = tip.height, "saving the chain cursor failed; retrying");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return Err(FollowError::ShuttingDown),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Loads the cursor and recent blocks, refetches the last `max_depth`
    /// of them and re-emits their confirmations; on first start, begins at
    /// the node's tip.
    async fn restore(&mut self) -> Result<(), FollowError> {
        let network = self.tracker.network();
        let refs = loop {
            match store::load_chain(&self.db, network).await {
                Ok(r) => break r,
                Err(e) => {
                    tracing::warn!(error = %e, "loading the chain cursor failed; retrying");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return Err(FollowError::ShuttingDown),
                        _ = tokio::time::sleep(self.poll_interval) => {}
                    }
                }
            }
        };
        self.source.select_node().await?;
        if refs.is_empty() {
            let best = self.source.best_height().await?;
            let (block, matches) = self
                .source
                .block_at(best)
                .await?
                .ok_or(FollowError::NoBlock(best))?;
            tracing::info!(height = block.height, hash = %block.hash, "first start: following from the node's tip");
            let events = self
                .tracker
                .connect(block, matches)
                .map_err(|e| RpcError::Decode {
                    method: "block".into(),
                    reason: e.to_string(),
                })?;
            self.publisher.publish_all(&events).await?;
            self.persist().await?;
            return self.report_tip(None).await;
        }
        let n = refs.len();
        let max_depth = self.tracker.max_depth() as usize;
        let mut blocks = Vec::with_capacity(n);
        for (i, r) in refs.into_iter().enumerate() {
            let matches = if n - i <= max_depth {
                match self.source.block_by_hash(&r.hash).await? {
                    Some((_, m)) => Some(m),
                    None => {
                        tracing::warn!(hash = %r.hash, "node does not know a block we followed; its matches are lost");
                        Some(Vec::new())
                    }
                }
            } else {
                None
            };
            blocks.push(TrackedBlock { block: r, matches });
        }
        let events = self.tracker.restore(blocks);
        if let Some(t) = self.tracker.tip() {
            tracing::info!(height = t.height, hash = %t.hash, replayed = events.len(), "resuming from the cursor");
        }
        self.publisher.publish_all(&events).await?;
        self.set_tip();
        // Again (same event id) in case it was not published before a stop.
        self.report_tip(None).await
    }

    /// One poll: [`Self::follow_blocks`], then a [`ChainEvent::Tip`] when
    /// it moved the tip, the finalized block, and the mempool.
    async fn poll_once(&mut self) -> Result<(), FollowError> {
        let before = self.tracker.tip().map(|t| t.hash.clone());
        let caught_up = self.follow_blocks().await;
        self.report_tip(before.as_deref()).await?;
        if !caught_up? {
            return Ok(());
        }
        self.report_finalized().await?;
        let events = self.source.poll_mempool(&self.tracker).await?;
        self.publisher.publish_all(&events).await?;
        Ok(())
    }

    /// Publishes the tip when it is not `before` (after block events, so a
    /// consumer that sees the tip has seen the blocks below it).
    async fn report_tip(&self, before: Option<&str>) -> Result<(), FollowError> {
        let Some(tip) = self.tracker.tip() else {
            return Ok(());
        };
        if before == Some(tip.hash.as_str()) {
            return Ok(());
        }
        let event = ChainEvent::Tip {
            network: self.tracker.network(),
            height: tip.height,
            hash: tip.hash.clone(),
        };
        self.publisher
            .publish_all(std::slice::from_ref(&event))
            .await?;
        Ok(())
    }

    /// Walks back over blocks the node no longer has in its best chain and
    /// connects the node's new blocks one by one. `Ok(false)` when it
    /// stopped early (the node is behind us, or reorganised while read).
    async fn follow_blocks(&mut self) -> Result<bool, FollowError> {
        self.source.select_node().await?;
        // Walk back to the common ancestor.
        let mut resume_at = None;
        while let Some(tip) = self.tracker.tip().cloned() {
            let node_hash = self.source.hash_at(tip.height).await?;
            if node_hash.as_deref() == Some(tip.hash.as_str()) {
                break;
            }
            if node_hash.is_none() && self.source.lagging_behind(&tip).await? {
                tracing::info!(
                    height = tip.height,
                    "node is behind our tip; waiting for it"
                );
                return Ok(false);
            }
            if self.tracker.tip_matches_unknown() {
                let m = match self.source.block_by_hash(&tip.hash).await? {
                    Some((_, m)) => m,
                    None => {
                        tracing::error!(hash = %tip.hash, "reorganised-away block unknown to the node; cannot say which watched items it held");
                        Vec::new()
                    }
                };
                self.tracker.set_tip_matches(m);
            }
            let Some((gone, events)) = self.tracker.step_back_if_stale(node_hash.as_deref()) else {
                break;
            };
            tracing::info!(height = gone.height, hash = %gone.hash, "block disconnected by a reorganisation");
            let mut pending: std::collections::BTreeMap<String, Vec<Matched>> =
                std::collections::BTreeMap::new();
            for m in events.iter().filter_map(Matched::of_event) {
                pending.entry(m.txid().to_owned()).or_default().push(m);
            }
            for (txid, matches) in pending {
                self.source.unconfirmed(&txid, matches);
            }
            self.publisher.publish_all(&events).await?;
            if self.tracker.is_empty() {
                tracing::error!(
                    height = gone.height,
                    "reorganisation deeper than the blocks remembered; resuming at that height"
                );
                resume_at = Some(gone.height);
            } else {
                self.persist().await?;
            }
        }

        // Connect the new blocks.
        let best = self.source.best_height().await?;
        let mut next = match (self.tracker.tip(), resume_at) {
            (Some(t), _) => t.height + 1,
            (None, Some(h)) => h.min(best),
            (None, None) => best,
        };
        while next <= best {
            if self.shutdown.is_cancelled() {
                return Err(FollowError::ShuttingDown);
            }
            let Some((block, matches)) = self.source.block_at(next).await? else {
                break;
            };
            let (height, hash) = (block.height, block.hash.clone());
            let txids: Vec<String> = matches.iter().map(|m| m.txid().to_owned()).collect();
            match self.tracker.connect(block, matches) {
                Ok(events) => {
                    self.source.confirmed(&txids);
                    self.publisher.publish_all(&events).await?;
                    self.persist().await?;
                    tracing::debug!(height, %hash, events = events.len(), "block connected");
                    next += 1;
                }
                Err(e) => {
                    // The node reorganised while we read; walk back next poll.
                    tracing::info!(error = %e, "chain changed while connecting");
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Reports the node's finalized block when it has advanced and lies on
    /// the chain followed (a block we connected, or below what we remember).
    async fn report_finalized(&mut self) -> Result<(), FollowError> {
        let Some(tip_hash) = self.tracker.tip().map(|t| t.hash.clone()) else {
            return Ok(());
        };
        if self.finalized_asked_at.as_ref() == Some(&tip_hash) {
            return Ok(());
        }
        let Some((height, hash)) = self.source.finalized().await? else {
            self.finalized_asked_at = Some(tip_hash);
            return Ok(());
        };
        self.finalized_asked_at = Some(tip_hash);
        let Some(tip) = self.tracker.tip() else {
            return Ok(());
        };
        if height > tip.height || self.finalized.is_some_and(|f| f >= height) {
            return Ok(());
        }
        let ours = self.tracker.blocks().find(|b| b.block.height == height);
        if ours.is_some_and(|b| b.block.hash != hash) {
            tracing::warn!(height, %hash, "the node's finalized block is not on the chain followed; not reported");
            return Ok(());
        }
        let event = ChainEvent::Finalized {
            network: self.tracker.network(),
            height,
            hash,
        };
        self.publisher
            .publish_all(std::slice::from_ref(&event))
            .await?;
        self.finalized = Some(height);
        Ok(())
    }
}

/// Bitcoin Core as a [`ChainSource`], with mempool tracking.
pub(crate) struct BitcoinSource {
    pub(crate) network: Network,
    pub(crate) nodes: NodePool<BitcoinRpc>,
    pub(crate) watch: Arc<WatchList>,
    pub(crate) asset: AssetId,
    pub(crate) mempool: MempoolTracker,
}

impl BitcoinSource {
    fn rpc(&self) -> &BitcoinRpc {
        self.nodes.active()
    }

    fn parse_hash(hash: &str) -> Result<BlockHash, RpcError> {
        BlockHash::from_str(hash).map_err(|e| RpcError::Decode {
            method: "getblock".into(),
            reason: format!("{hash:?} is not a block hash: {e}"),
        })
    }

    async fn fetch(
        &self,
        hash: &BlockHash,
        height: Option<u64>,
    ) -> Result<Option<(BlockRef, Vec<Matched>)>, RpcError> {
        let Some(block) = self.rpc().get_block(hash).await? else {
            return Ok(None);
        };
        let height = match height {
            Some(h) => h,
            None => self.rpc().get_block_header_info(hash).await?.height,
        };
        let matches = self
            .watch
            .match_bitcoin_block(self.network, &block, &self.asset);
        Ok(Some((
            BlockRef {
                height,
                hash: hash.to_string(),
                parent_hash: block.header.prev_blockhash.to_string(),
            },
            matches,
        )))
    }
}

#[async_trait]
impl ChainSource for BitcoinSource {
    async fn select_node(&mut self) -> Result<(), RpcError> {
        self.nodes.check().await.map(|_| ())
    }

    async fn best_height(&self) -> Result<u64, RpcError> {
        self.rpc().get_block_count().await
    }

    async fn hash_at(&self, height: u64) -> Result<Option<String>, RpcError> {
        Ok(self
            .rpc()
            .get_block_hash(height)
            .await?
            .map(|h| h.to_string()))
    }

    async fn block_at(&self, height: u64) -> Result<Option<(BlockRef, Vec<Matched>)>, RpcError> {
        let Some(hash) = self.rpc().get_block_hash(height).await? else {
            return Ok(None);
        };
        self.fetch(&hash, Some(height)).await
    }

    async fn block_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<(BlockRef, Vec<Matched>)>, RpcError> {
        let h = Self::parse_hash(hash)?;
        self.fetch(&h, None).await
    }

    async fn lagging_behind(&self, tip: &BlockRef) -> Result<bool, RpcError> {
        let hash = Self::parse_hash(&tip.hash)?;
        match self.rpc().get_block_header_info(&hash).await {
            // Known but off the active chain: stale, unless the node is
            // still downloading the blocks of headers it has.
            Ok(info) if info.confirmations < 0 => {
                let chain = self.rpc().get_blockchain_info().await?;
                Ok(chain.headers > chain.blocks || chain.initialblockdownload)
            }
            Ok(_) => Ok(false),
            // Unknown to the node: it has not seen our blocks yet.
            Err(e) if e.node_code() == Some(-5) => Ok(true),
            Err(e) => Err(e),
        }
    }

    fn confirmed(&mut self, txids: &[String]) {
        for t in txids {
            self.mempool.confirmed(t);
        }
    }

    fn unconfirmed(&mut self, txid: &str, matches: Vec<Matched>) {
        self.mempool.unconfirmed(txid, matches);
    }

    async fn poll_mempool(&mut self, tracker: &ChainTracker) -> Result<Vec<ChainEvent>, RpcError> {
        for t in self.watch.take_new_txids(self.network) {
            self.mempool.forget(&t);
        }
        let txids = self.rpc().get_raw_mempool().await?;
        let best = self.rpc().get_best_block_hash().await?;
        let strs: Vec<String> = txids.iter().map(Txid::to_string).collect();
        let unknown: Vec<Txid> = self
            .mempool
            .unknown(&strs)
            .into_iter()
            .filter_map(|s| Txid::from_str(s).ok())
            .collect();
        let txs = self.rpc().get_raw_transactions(&unknown).await?;
        let mut events = Vec::new();
        for (txid, tx) in unknown.iter().zip(txs) {
            let id = txid.to_string();
            match tx {
                Some(tx) => {
                    let matches = self.watch.match_bitcoin_tx(self.network, &tx, &self.asset);
                    events.extend(self.mempool.add(&id, &tx, matches));
                }
                None => self.mempool.add_gone(&id),
            }
        }
        // Departures are judged only against a snapshot taken while our tip
        // was the node's tip, so a transaction just mined is not "dropped".
        if tracker.tip().map(|t| t.hash.as_str()) == Some(best.to_string().as_str()) {
            let current: HashSet<String> = strs.into_iter().collect();
            events.extend(
                self.mempool
                    .departed(&current, |t| tracker.has_confirmed(t)),
            );
        }
        Ok(events)
    }
}

/// An Ethereum node as a [`ChainSource`]: native transfers from block
/// transactions (reverted ones left out), ERC-20 `Transfer` logs of the
/// configured tokens, and the pending pool when the node offers
/// `txpool_content`.
pub(crate) struct EthSource {
    pub(crate) network: Network,
    pub(crate) nodes: NodePool<EthRpc>,
    pub(crate) watch: Arc<WatchList>,
    pub(crate) asset: AssetId,
    pub(crate) tokens: Vec<Erc20Token>,
    /// Set once the tokens' `decimals()` were compared with the config.
    pub(crate) tokens_checked: bool,
    pub(crate) mempool: MempoolTracker,
    /// Cleared when the node does not offer `txpool_content`.
    pub(crate) pool_supported: bool,
}

/// `decimals()`.
const DECIMALS_SELECTOR: [u8; 4] = [0x31, 0x3c, 0xe5, 0x67];

impl EthSource {
    fn rpc(&self) -> &EthRpc {
        self.nodes.active()
    }

    /// Compares each configured token's decimals with its contract's, once;
    /// a mismatch is logged as an error (amounts stay base units either way).
    async fn check_tokens(&mut self) {
        for t in &self.tokens {
            let answer = self
                .rpc()
                .call(&t.contract, &DECIMALS_SELECTOR, BlockTag::Latest)
                .await;
            match answer {
                Ok(out) if out.len() == 32 && out[..31].iter().all(|b| *b == 0) => {
                    if out[31] != t.decimals {
                        tracing::error!(contract = %t.contract, asset = %t.asset, configured = t.decimals, contract_says = out[31], "token decimals differ from the configuration");
                    }
                }
                Ok(out) => {
                    tracing::error!(contract = %t.contract, asset = %t.asset, bytes = out.len(), "token contract gave no decimals(); is the address right?")
                }
                Err(e) => {
                    tracing::warn!(contract = %t.contract, error = %e, "could not ask the token for its decimals");
                    return;
                }
            }
        }
        self.tokens_checked = true;
    }

    /// The block's place and what in it matched: native transfers whose
    /// transaction succeeded, watched transactions (with whether they
    /// reverted), then ERC-20 transfers to watched addresses. `on_best_chain`: the block was
    /// fetched by height, so a receipt from another block means the chain
    /// moved while reading (an error; the next poll walks back).
    async fn matched(
        &self,
        block: EthBlock,
        on_best_chain: bool,
    ) -> Result<(BlockRef, Vec<Matched>), RpcError> {
        let mut matches = Vec::new();
        for m in self
            .watch
            .match_eth_block(self.network, &block, &self.asset)
        {
            match m {
                Matched::Output { ref txid, .. } => {
                    if !self.succeeded(txid, &block.hash, on_best_chain).await? {
                        tracing::info!(%txid, "transfer to a watched address reverted; not a deposit");
                        continue;
                    }
                    matches.push(m);
                }
                Matched::Tx { txid, .. } => {
                    let reverted = !self.succeeded(&txid, &block.hash, on_best_chain).await?;
                    if reverted {
                        tracing::warn!(%txid, "watched transaction mined but reverted");
                    }
                    matches.push(Matched::Tx { txid, reverted });
                }
            }
        }
        if !self.tokens.is_empty() && !self.watch.is_empty(self.network) {
            let contracts: Vec<_> = self.tokens.iter().map(|t| t.contract).collect();
            let logs = self
                .rpc()
                .get_logs_in_block(&block.hash, &contracts, &ERC20_TRANSFER_TOPIC)
                .await?;
            matches.extend(self.watch.match_erc20_logs(self.network, &logs, |c| {
                self.tokens
                    .iter()
                    .find(|t| t.contract == *c)
                    .map(|t| t.asset.clone())
            }));
        }
        Ok((
            BlockRef {
                height: block.height(),
                hash: format!("0x{}", hex::encode(block.hash)),
                parent_hash: format!("0x{}", hex::encode(block.parent_hash)),
            },
            matches,
        ))
    }

    /// Whether transaction `txid` of block `block_hash` succeeded (receipt
    /// status 1). For a block off the best chain whose receipt the node no
    /// longer has, `true`: the block is about to be disconnected, and what
    /// it says next is an unconfirmation.
    async fn succeeded(
        &self,
        txid: &str,
        block_hash: &alloy_primitives::B256,
        on_best_chain: bool,
    ) -> Result<bool, RpcError> {
        let hash = alloy_primitives::B256::from_str(txid).map_err(|e| RpcError::Decode {
            method: "eth_getBlockByNumber".into(),
            reason: format!("{txid:?} is not a transaction hash: {e}"),
        })?;
        match self.rpc().get_transaction_receipt(&hash).await? {
            Some(r) if r.block_hash.as_ref() == Some(block_hash) => Ok(r.succeeded()),
            // A block off the best chain (being disconnected): its receipts
            // are gone; report the match so it is unconfirmed if it was
            // confirmed (an unconfirmation of something never confirmed is
            // harmless).
            _ if !on_best_chain => Ok(true),
            _ => Err(RpcError::Decode {
                method: "eth_getTransactionReceipt".into(),
                reason: format!("no receipt of {txid} in block {block_hash:#x}: the chain moved"),
            }),
        }
    }
}

#[async_trait]
impl ChainSource for EthSource {
    async fn select_node(&mut self) -> Result<(), RpcError> {
        self.nodes.check().await?;
        if !self.tokens_checked {
            self.check_tokens().await;
        }
        Ok(())
    }

    async fn best_height(&self) -> Result<u64, RpcError> {
        self.rpc().block_number().await
    }

    async fn hash_at(&self, height: u64) -> Result<Option<String>, RpcError> {
        Ok(self
            .rpc()
            .get_block_hash(height)
            .await?
            .map(|h| format!("0x{}", hex::encode(h))))
    }

    async fn block_at(&self, height: u64) -> Result<Option<(BlockRef, Vec<Matched>)>, RpcError> {
        match self
            .rpc()
            .get_block_by_number(BlockTag::Number(height))
            .await?
        {
            Some(b) => self.matched(b, true).await.map(Some),
            None => Ok(None),
        }
    }

    async fn block_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<(BlockRef, Vec<Matched>)>, RpcError> {
        let h = alloy_primitives::B256::from_str(hash).map_err(|e| RpcError::Decode {
            method: "eth_getBlockByHash".into(),
            reason: format!("{hash:?} is not a block hash: {e}"),
        })?;
        match self.rpc().get_block_by_hash(&h).await? {
            Some(b) => self.matched(b, false).await.map(Some),
            None => Ok(None),
        }
    }

    async fn finalized(&self) -> Result<Option<(u64, String)>, RpcError> {
        match self.rpc().get_block_by_number(BlockTag::Finalized).await {
            Ok(Some(b)) => Ok(Some((b.height(), format!("0x{}", hex::encode(b.hash))))),
            Ok(None) => Ok(None),
            // Nodes without the tag (pre-merge chains) answer with an error.
            Err(RpcError::Node { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A node whose head is below our tip has not reached it yet (a
    /// lagging node, or one that just went back to build another branch):
    /// wait for it rather than disconnect blocks it may still confirm.
    async fn lagging_behind(&self, tip: &BlockRef) -> Result<bool, RpcError> {
        Ok(self.rpc().block_number().await? < tip.height)
    }

    fn confirmed(&mut self, txids: &[String]) {
        for t in txids {
            self.mempool.confirmed(t);
        }
    }

    async fn poll_mempool(&mut self, tracker: &ChainTracker) -> Result<Vec<ChainEvent>, RpcError> {
        if !self.pool_supported {
            return Ok(Vec::new());
        }
        for t in self.watch.take_new_txids(self.network) {
            self.mempool.forget(&t);
        }
        let pool = match self.rpc().txpool_pending().await {
            Ok(p) => p,
            Err(e) if e.node_code() == Some(-32601) => {
                tracing::info!("node has no txpool_content; pending transactions are not reported");
                self.pool_supported = false;
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let head = self.rpc().block_number().await?;
        let head_hash = self.hash_at(head).await?;
        let ids: Vec<String> = pool
            .iter()
            .map(|t| format!("0x{}", hex::encode(t.hash)))
            .collect();
        let unknown: HashSet<String> = self.mempool.unknown(&ids).into_iter().cloned().collect();
        let mut events = Vec::new();
        for (id, tx) in ids.iter().zip(&pool) {
            if unknown.contains(id) {
                let mut matches = self.watch.match_eth_tx(self.network, tx, &self.asset);
                matches.extend(self.watch.match_erc20_call(self.network, tx, |c| {
                    self.tokens
                        .iter()
                        .find(|t| t.contract == *c)
                        .map(|t| t.asset.clone())
                }));
                let spends = vec![format!("{:#x}:{}", tx.from, tx.nonce.to::<u64>())];
                events.extend(self.mempool.add_spending(id, spends, matches));
            }
        }
        // Departures only against a pool read while our tip was the head.
        if head_hash.is_some() && tracker.tip().map(|t| &t.hash) == head_hash.as_ref() {
            let current: HashSet<String> = ids.into_iter().collect();
            events.extend(
                self.mempool
                    .departed(&current, |t| tracker.has_confirmed(t)),
            );
        }
        Ok(events)
    }
}
