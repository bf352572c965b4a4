//! Several nodes per chain: [`NodePool`] health-checks each node before a
//! follower's poll, keeps the best tip any node reports, and keeps the
//! follower on a node that answers, is not stalled and is within
//! `max_lag_blocks` of that best tip; [`choose`] is the pure decision.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::bitcoin_rpc::BitcoinRpc;
use crate::eth_rpc::EthRpc;
use crate::rpc::RpcError;

/// How a chain's nodes are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverConfig {
    /// A node whose best height is more than this below the best height any
    /// node reports is behind: the follower leaves it.
    pub max_lag_blocks: u64,
    /// A node whose height has not moved for this long while another node
    /// reports a higher one is stalled: the follower leaves it.
    pub stall_after: Duration,
    /// How long a health check waits for a node's answer.
    pub check_timeout: Duration,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            max_lag_blocks: 2,
            stall_after: Duration::from_secs(60),
            check_timeout: Duration::from_secs(5),
        }
    }
}

/// A node client the pool can health-check.
#[async_trait]
pub(crate) trait NodeClient: Send + Sync + 'static {
    async fn best_height(&self) -> Result<u64, RpcError>;
    fn url(&self) -> &str;
}

#[async_trait]
impl NodeClient for BitcoinRpc {
    async fn best_height(&self) -> Result<u64, RpcError> {
        self.get_block_count().await
    }
    fn url(&self) -> &str {
        BitcoinRpc::url(self)
    }
}

#[async_trait]
impl NodeClient for EthRpc {
    async fn best_height(&self) -> Result<u64, RpcError> {
        self.block_number().await
    }
    fn url(&self) -> &str {
        EthRpc::url(self)
    }
}

/// What a health check found out about one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeHealth {
    /// The node's best height; `None` when it did not answer.
    pub height: Option<u64>,
    /// Its height has not moved for `stall_after`.
    pub idle: bool,
}

/// Which node to follow: `current` while it answers, is within `max_lag`
/// of the best height reported and is not idle below that height; else the
/// highest node that is not idle below the best (lowest index on ties),
/// else the highest that answered. `None` when no node answered.
pub fn choose(current: usize, nodes: &[NodeHealth], max_lag: u64) -> Option<usize> {
    let best = nodes.iter().filter_map(|n| n.height).max()?;
    let fit = |n: &NodeHealth| match n.height {
        Some(h) => h.saturating_add(max_lag) >= best && !(n.idle && h < best),
        None => false,
    };
    if nodes.get(current).is_some_and(fit) {
        return Some(current);
    }
    let highest = |pred: &dyn Fn(&NodeHealth) -> bool| {
        nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| pred(n))
            .filter_map(|(i, n)| n.height.map(|h| (h, i)))
            // Highest height, then lowest index.
            .max_by(|(ha, ia), (hb, ib)| ha.cmp(hb).then(ib.cmp(ia)))
            .map(|(_, i)| i)
    };
    highest(&fit).or_else(|| highest(&|n: &NodeHealth| n.height.is_some()))
}

/// The nodes of one chain and which one is active; cheap to clone (the
/// handle's broadcasts and RPC loans follow the follower's choice).
#[derive(Debug)]
pub(crate) struct NodeSet<R> {
    rpcs: Vec<Arc<R>>,
    active: Arc<AtomicUsize>,
}

impl<R> Clone for NodeSet<R> {
    fn clone(&self) -> Self {
        NodeSet {
            rpcs: self.rpcs.clone(),
            active: self.active.clone(),
        }
    }
}

impl<R> NodeSet<R> {
    /// `rpcs` must not be empty (checked by the configuration).
    pub(crate) fn new(rpcs: Vec<Arc<R>>) -> Self {
        NodeSet {
            rpcs,
            active: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub(crate) fn active_index(&self) -> usize {
        self.active.load(Ordering::Relaxed).min(self.rpcs.len() - 1)
    }

    /// The node followed now.
    pub(crate) fn active(&self) -> &Arc<R> {
        &self.rpcs[self.active_index()]
    }
}

/// A [`NodeSet`] with each node's health, owned by the chain's follower.
#[derive(Debug)]
pub(crate) struct NodePool<R> {
    set: NodeSet<R>,
    /// Per node: last height and when it last moved.
    seen: Vec<Option<(u64, Instant)>>,
    config: FailoverConfig,
}

impl<R: NodeClient> NodePool<R> {
    pub(crate) fn new(set: NodeSet<R>, config: FailoverConfig) -> Self {
        let n = set.rpcs.len();
        NodePool {
            set,
            seen: vec![None; n],
            config,
        }
    }

    pub(crate) fn active(&self) -> &R {
        self.set.active()
    }

    /// Asks every node for its height (concurrently, each within
    /// `check_timeout`) and switches the active node when it is down,
    /// stalled or behind. Returns the active node's height, or an error when
    /// no node answered.
    pub(crate) async fn check(&mut self) -> Result<u64, RpcError> {
        let timeout = self.config.check_timeout;
        let answers = futures::future::join_all(self.set.rpcs.iter().map(|rpc| async move {
            match tokio::time::timeout(timeout, rpc.best_height()).await {
                Ok(r) => r,
                Err(_) => Err(RpcError::Transport {
                    url: rpc.url().to_owned(),
                    reason: format!("no answer within {} ms", timeout.as_millis()),
                }),
            }
        }))
        .await;
        let now = Instant::now();
        let mut health = Vec::with_capacity(answers.len());
        let mut first_error = None;
        for (i, answer) in answers.into_iter().enumerate() {
            match answer {
                Ok(h) => {
                    let moved = match self.seen[i] {
                        Some((old, at)) if old == h => at,
                        _ => now,
                    };
                    self.seen[i] = Some((h, moved));
                    health.push(NodeHealth {
                        height: Some(h),
                        idle: now.duration_since(moved) >= self.config.stall_after,
                    });
                }
                Err(e) => {
                    tracing::debug!(node = self.set.rpcs[i].url(), error = %e, "node health check failed");
                    health.push(NodeHealth {
                        height: None,
                        idle: false,
                    });
                    first_error.get_or_insert(e);
                }
            }
        }
        let current = self.set.active_index();
        let Some(next) = choose(current, &health, self.config.max_lag_blocks) else {
            return Err(first_error.unwrap_or_else(|| RpcError::Transport {
                url: String::new(),
                reason: "no node configured".into(),
            }));
        };
        if next != current {
            tracing::warn!(
                from = self.set.rpcs[current].url(),
                from_height = ?health[current].height,
                to = self.set.rpcs[next].url(),
                to_height = ?health[next].height,
                "failing over to another node"
            );
            self.set.active.store(next, Ordering::Relaxed);
        }
        // `choose` only picks a node that answered.
        Ok(health[next].height.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(h: u64) -> NodeHealth {
        NodeHealth {
            height: Some(h),
            idle: false,
        }
    }
    fn idle(h: u64) -> NodeHealth {
        NodeHealth {
            height: Some(h),
            idle: true,
        }
    }
    const DOWN: NodeHealth = NodeHealth {
        height: None,
        idle: false,
    };

    #[test]
    fn chooses_by_health_lag_and_stall() {
        let cases: &[(usize, &[NodeHealth], u64, Option<usize>)] = &[
            // Healthy active node stays, also a little behind.
            (0, &[up(10), up(10)], 2, Some(0)),
            (0, &[up(9), up(11)], 2, Some(0)),
            // Behind by more than K: leave it for the highest.
            (0, &[up(8), up(11), up(10)], 2, Some(1)),
            (0, &[up(8), up(11)], 0, Some(1)),
            // Down: the next highest, lowest index on ties.
            (0, &[DOWN, up(5), up(5)], 2, Some(1)),
            (1, &[up(5), DOWN, up(6)], 2, Some(2)),
            // Idle below the best tip is stalled even within K.
            (0, &[idle(10), up(11)], 2, Some(1)),
            // Every node idle at the same tip: a quiet chain, stay.
            (0, &[idle(10), idle(10)], 2, Some(0)),
            // Nobody answers.
            (0, &[DOWN, DOWN], 2, None),
            // An out-of-range current index still finds a node.
            (7, &[up(3)], 2, Some(0)),
        ];
        for (current, nodes, lag, want) in cases {
            assert_eq!(
                choose(*current, nodes, *lag),
                *want,
                "current {current}, nodes {nodes:?}, lag {lag}"
            );
        }
    }
}
