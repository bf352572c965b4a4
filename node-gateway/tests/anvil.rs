//! Against anvil (Foundry's dev node; `scripts/anvil.sh` installs it and
//! exports `ANVIL_BIN`), each test starting its own on a free port: a
//! native deposit and an ERC-20 deposit (TestToken, deployed by the test)
//! are seen, confirmed to depth N, reorganised away (evm_snapshot /
//! evm_revert, then a different branch) and confirmed again, with exactly
//! the expected events; a reverted transfer is never confirmed as a
//! deposit; new heads arrive by websocket subscription.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use alloy_primitives::{Address, B256, U256};
use anyhow::{anyhow, bail, Context};
use common::{init_tracing, open_bus, output_status, tx_status, wait_for, Bus, Events};
use infra::db::Db;
use node_gateway::{
    ChainsConfig, Erc20Token, EthRpc, EthereumChainConfig, EthereumNode, FailoverConfig,
    NodeGateway,
};
use proto::event::{ChainEvent, TxStatus};
use proto::{Amount, AssetId, EthereumNetwork, Network};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const NET: Network = Network::Ethereum(EthereumNetwork::Dev);
const TOKEN_BIN: &str = include_str!("../../simulations/simulators/contracts/TestToken.bin");

/// An anvil process on a free port, killed when dropped.
struct Anvil {
    _child: tokio::process::Child,
    port: u16,
    rpc: EthRpc,
}

impl Anvil {
    /// Starts anvil without automatic mining: transactions wait in its
    /// pool until the test mines.
    async fn start() -> anyhow::Result<Anvil> {
        let bin = std::env::var("ANVIL_BIN").map_err(|_| {
            anyhow!(
                "ANVIL_BIN is not set: run `eval \"$(scripts/anvil.sh)\"` (installs anvil from npm \
                 and exports ANVIL_BIN), then run the tests again"
            )
        })?;
        let port = {
            let l = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            l.local_addr()?.port()
        };
        let child = tokio::process::Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--no-mining", "--chain-id", "31337", "--silent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {bin}"))?;
        let rpc = EthRpc::new(&format!("http://127.0.0.1:{port}"))?;
        for _ in 0..200 {
            if rpc.chain_id().await.is_ok() {
                return Ok(Anvil {
                    _child: child,
                    port,
                    rpc,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("anvil on port {port} did not answer within 10 s")
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        Ok(self.rpc.call_raw(method, params).await?)
    }

    async fn accounts(&self) -> anyhow::Result<Vec<Address>> {
        Ok(serde_json::from_value(
            self.call("eth_accounts", json!([])).await?,
        )?)
    }

    async fn mine(&self, blocks: u64) -> anyhow::Result<()> {
        self.call("anvil_mine", json!([format!("{blocks:#x}")]))
            .await?;
        Ok(())
    }

    /// Sends from an unlocked account; returns the transaction hash.
    async fn send(&self, tx: Value) -> anyhow::Result<String> {
        let h = self.call("eth_sendTransaction", json!([tx])).await?;
        h.as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("eth_sendTransaction answered {h}"))
    }

    async fn receipt(&self, txid: &str) -> anyhow::Result<Value> {
        self.call("eth_getTransactionReceipt", json!([txid])).await
    }

    /// Deploys TestToken (`name`, `symbol`, `decimals`, `supply` to `from`).
    async fn deploy_token(
        &self,
        from: Address,
        decimals: u8,
        supply: u128,
    ) -> anyhow::Result<Address> {
        let mut data = hex::decode(TOKEN_BIN.trim())?;
        data.extend(constructor_args("Test Dollar", "TUSD", decimals, supply));
        let txid = self
            .send(json!({
                "from": from,
                "data": format!("0x{}", hex::encode(data)),
                "gas": "0x300000",
            }))
            .await?;
        self.mine(1).await?;
        let r = self.receipt(&txid).await?;
        let addr = r["contractAddress"]
            .as_str()
            .ok_or_else(|| anyhow!("no contract address in {r}"))?;
        Ok(addr.parse()?)
    }
}

fn word(x: U256) -> [u8; 32] {
    x.to_be_bytes()
}

/// ABI encoding of `(string, string, uint8, uint256)`.
fn constructor_args(name: &str, symbol: &str, decimals: u8, supply: u128) -> Vec<u8> {
    fn tail(s: &str) -> Vec<u8> {
        let mut out = word(U256::from(s.len())).to_vec();
        let mut bytes = s.as_bytes().to_vec();
        bytes.resize(s.len().div_ceil(32) * 32, 0);
        out.extend(bytes);
        out
    }
    let (t1, t2) = (tail(name), tail(symbol));
    let mut out = Vec::new();
    out.extend(word(U256::from(4 * 32)));
    out.extend(word(U256::from(4 * 32 + t1.len())));
    out.extend(word(U256::from(decimals)));
    out.extend(word(U256::from(supply)));
    out.extend(t1);
    out.extend(t2);
    out
}

/// Calldata of `approve(spender, value)`.
fn approve_call(spender: Address, value: u128) -> String {
    let mut data = vec![0x09, 0x5e, 0xa7, 0xb3];
    data.extend(spender.into_word().0);
    data.extend(word(U256::from(value)));
    format!("0x{}", hex::encode(data))
}

/// Calldata of `transferFrom(from, to, value)`.
fn transfer_from_call(from: Address, to: Address, value: u128) -> String {
    let mut data = vec![0x23, 0xb8, 0x72, 0xdd];
    data.extend(from.into_word().0);
    data.extend(to.into_word().0);
    data.extend(word(U256::from(value)));
    format!("0x{}", hex::encode(data))
}

/// Calldata of `transfer(to, value)`.
fn transfer_call(to: Address, value: u128) -> String {
    let mut data = vec![0xa9, 0x05, 0x9c, 0xbb];
    data.extend(to.into_word().0);
    data.extend(word(U256::from(value)));
    format!("0x{}", hex::encode(data))
}

fn config(anvil: &Anvil, poll: Duration, tokens: Vec<Erc20Token>) -> anyhow::Result<ChainsConfig> {
    Ok(ChainsConfig {
        bitcoin: None,
        ethereum: Some(EthereumChainConfig {
            network: EthereumNetwork::Dev,
            nodes: vec![EthereumNode {
                rpc_url: anvil.url(),
                ws_url: Some(anvil.ws_url()),
            }],
            poll_interval: poll,
            max_depth: 3,
            eth_asset: AssetId::new("ETH")?,
            tokens,
            failover: FailoverConfig::default(),
        }),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_and_erc20_deposits_confirmed_reorganised_and_confirmed_again() -> anyhow::Result<()>
{
    deposits_on(Bus::Local).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_and_erc20_deposits_confirmed_reorganised_and_confirmed_again_on_kafka(
) -> anyhow::Result<()> {
    deposits_on(Bus::Kafka).await
}

async fn deposits_on(bus: Bus) -> anyhow::Result<()> {
    init_tracing();
    let anvil = Anvil::start().await?;
    let accounts = anvil.accounts().await?;
    let (deployer, payer, other) = (accounts[0], accounts[1], accounts[2]);
    let token = anvil.deploy_token(deployer, 6, 1_000_000_000_000).await?;

    let dir = tempfile::tempdir()?;
    let db = Db::connect(&format!(
        "sqlite:{}",
        dir.path().join("engine.db").display()
    ))
    .await?;
    let bus = open_bus(bus, &db).await?;
    let mut events = Events::open(&bus, "test").await?;
    let tusd = AssetId::new("TUSD")?;
    let stop = CancellationToken::new();
    let gw = NodeGateway::start(
        config(
            &anvil,
            Duration::from_millis(50),
            vec![Erc20Token {
                contract: token,
                asset: tusd.clone(),
                decimals: 6,
            }],
        )?,
        db.clone(),
        bus.clone(),
        stop.clone(),
    )
    .await?;
    let head = anvil.rpc.block_number().await?;
    wait_for(|| gw.tip(NET).is_some_and(|t| t.height == head)).await?;

    let user = Address::repeat_byte(0x42);
    let deposit_address = gw.watch_address(NET, &format!("{user:#x}")).await?;
    // The token contract as a watched address too: plain ETH sent to it
    // reverts (it has no receive function).
    gw.watch_address(NET, &format!("{token:#x}")).await?;
    let snapshot = anvil.call("evm_snapshot", json!([])).await?;

    // A native deposit, signed once so the very same transaction can be
    // sent again on the other branch.
    let nonce = anvil
        .rpc
        .get_transaction_count(&payer, node_gateway::BlockTag::Latest)
        .await?;
    let raw = anvil
        .call(
            "eth_signTransaction",
            json!([{
                "from": payer, "to": user, "value": "0xde0b6b3a7640000", "gas": "0x5208",
                "nonce": format!("{nonce:#x}"), "chainId": "0x7a69",
                "maxFeePerGas": "0x3b9aca000", "maxPriorityFeePerGas": "0x3b9aca00",
            }]),
        )
        .await?;
    let raw = raw
        .as_str()
        .ok_or_else(|| anyhow!("signed tx: {raw}"))?
        .to_owned();
    let native = anvil
        .call("eth_sendRawTransaction", json!([raw]))
        .await?
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let erc20 = anvil
        .send(json!({ "from": deployer, "to": token, "data": transfer_call(user, 1_500_000), "gas": "0x30000" }))
        .await?;
    let reverted = anvil
        .send(json!({ "from": other, "to": token, "value": "0x1", "gas": "0x30000" }))
        .await?;
    events
        .wait("native deposit seen", |e| {
            matches!(output_status(e, &native), Some(TxStatus::Seen))
        })
        .await?;

    // The pending token transfer is seen as the output its log will be.
    let seen = events
        .wait("token deposit seen", |e| {
            matches!(output_status(e, &erc20), Some(TxStatus::Seen))
        })
        .await?;
    assert!(
        matches!(&seen, ChainEvent::Output { output: 1, asset, amount, .. } if *asset == tusd && *amount == Amount::from_base_units(1_500_000)),
        "{seen:?}"
    );

    anvil.mine(3).await?;
    let r = anvil.receipt(&erc20).await?;
    let b1 = r["blockHash"].as_str().unwrap_or_default().to_owned();
    let h1 = head + 1;
    // Its log's index in the block is not its output: the native deposit's
    // transaction may come first in the block.
    assert!(r["logs"][0]["logIndex"].is_string());
    assert_eq!(anvil.receipt(&reverted).await?["status"], "0x0");
    let at = |txid: &str, depth: u64| {
        let txid = txid.to_owned();
        let b1 = b1.clone();
        move |e: &ChainEvent| matches!(output_status(e, &txid), Some(TxStatus::Confirmed { block_hash, depth: d, .. }) if *block_hash == b1 && *d == depth)
    };
    events.wait("native at depth 3", at(&native, 3)).await?;
    let token_deposit = events.wait("token at depth 3", at(&erc20, 3)).await?;
    let ChainEvent::Output {
        output,
        address,
        asset,
        amount,
        ..
    } = token_deposit
    else {
        unreachable!()
    };
    assert_eq!(
        (output, address.as_str(), &asset, amount),
        (
            1,
            deposit_address.as_str(),
            &tusd,
            Amount::from_base_units(1_500_000)
        )
    );

    // Back before the deposits; a different, longer branch.
    assert_eq!(anvil.call("evm_revert", json!([snapshot])).await?, true);
    anvil.mine(4).await?;
    events
        .wait("token deposit unconfirmed", |e| {
            matches!(output_status(e, &erc20), Some(TxStatus::Unconfirmed { block_hash }) if *block_hash == b1)
        })
        .await?;
    // The same signed deposit again, on the new branch.
    let mined_again = anvil.receipt(&native).await?;
    if mined_again.is_null() {
        anvil.call("eth_sendRawTransaction", json!([raw])).await?;
        anvil.mine(1).await?;
    }
    let r = anvil.receipt(&native).await?;
    let b1_again = r["blockHash"].as_str().unwrap_or_default().to_owned();
    let h1_again = u64::from_str_radix(
        r["blockNumber"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("0x"),
        16,
    )?;
    assert_ne!(b1_again, b1);
    events
        .wait("native deposit confirmed again", |e| {
            matches!(output_status(e, &native), Some(TxStatus::Confirmed { block_hash, depth: 1, .. }) if *block_hash == b1_again)
        })
        .await?;
    events.drain(Duration::from_millis(500)).await?;

    let c = |hash: &str, height: u64, depth: u64| TxStatus::Confirmed {
        block_height: height,
        block_hash: hash.to_owned(),
        depth,
    };
    assert_eq!(
        events.output_statuses(&native),
        vec![
            TxStatus::Seen,
            c(&b1, h1, 1),
            c(&b1, h1, 2),
            c(&b1, h1, 3),
            TxStatus::Unconfirmed {
                block_hash: b1.clone()
            },
            c(&b1_again, h1_again, 1),
        ]
    );
    assert_eq!(
        events.output_statuses(&erc20),
        vec![
            TxStatus::Seen,
            c(&b1, h1, 1),
            c(&b1, h1, 2),
            c(&b1, h1, 3),
            TxStatus::Unconfirmed {
                block_hash: b1.clone()
            },
        ]
    );
    // The reverted transfer is no deposit: seen while pending, then gone.
    assert_eq!(
        events.output_statuses(&reverted),
        vec![TxStatus::Seen, TxStatus::Dropped { replaced_by: None }]
    );

    stop.cancel();
    gw.stopped().await;
    Ok(())
}

/// The engine's own transactions: one that is mined but reverts is
/// confirmed as reverted, one that succeeds is not; a pending
/// `transferFrom` to a watched address is seen as output 1 and confirmed
/// as output 1; each poll that moves the tip reports it after its blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_reverted_transactions_pending_transfer_from_and_tips() -> anyhow::Result<()> {
    init_tracing();
    let anvil = Anvil::start().await?;
    let accounts = anvil.accounts().await?;
    let (deployer, payer, hot) = (accounts[0], accounts[1], accounts[2]);
    let token = anvil.deploy_token(deployer, 6, 1_000_000_000_000).await?;
    anvil
        .send(json!({ "from": deployer, "to": token, "data": approve_call(payer, 5_000), "gas": "0x30000" }))
        .await?;
    anvil.mine(1).await?;

    let dir = tempfile::tempdir()?;
    let db = Db::connect(&format!(
        "sqlite:{}",
        dir.path().join("engine.db").display()
    ))
    .await?;
    let bus = open_bus(Bus::Local, &db).await?;
    let mut events = Events::open(&bus, "test").await?;
    let tusd = AssetId::new("TUSD")?;
    let stop = CancellationToken::new();
    let gw = NodeGateway::start(
        config(
            &anvil,
            Duration::from_millis(50),
            vec![Erc20Token {
                contract: token,
                asset: tusd.clone(),
                decimals: 6,
            }],
        )?,
        db.clone(),
        bus.clone(),
        stop.clone(),
    )
    .await?;
    let head = anvil.rpc.block_number().await?;
    wait_for(|| gw.tip(NET).is_some_and(|t| t.height == head)).await?;
    let user = Address::repeat_byte(0x42);
    gw.watch_address(NET, &format!("{user:#x}")).await?;

    // Plain ETH to the token contract reverts (it has no receive function).
    let failing = anvil
        .send(json!({ "from": hot, "to": token, "value": "0x1", "gas": "0x30000" }))
        .await?;
    let paying = anvil
        .send(json!({ "from": hot, "to": Address::repeat_byte(0x55), "value": "0x1", "gas": "0x5208" }))
        .await?;
    gw.watch_tx(NET, &failing).await?;
    gw.watch_tx(NET, &paying).await?;
    let pulled = anvil
        .send(json!({ "from": payer, "to": token, "data": transfer_from_call(deployer, user, 700), "gas": "0x30000" }))
        .await?;
    let seen = events
        .wait("transferFrom seen", |e| {
            matches!(output_status(e, &pulled), Some(TxStatus::Seen))
        })
        .await?;
    assert!(
        matches!(&seen, ChainEvent::Output { output: 1, amount, .. } if *amount == Amount::from_base_units(700)),
        "{seen:?}"
    );
    for t in [&failing, &paying] {
        events
            .wait("own transaction seen", |e| {
                matches!(tx_status(e, t), Some(TxStatus::Seen))
            })
            .await?;
    }

    anvil.mine(1).await?;
    assert_eq!(anvil.receipt(&failing).await?["status"], "0x0");
    assert_eq!(anvil.receipt(&paying).await?["status"], "0x1");
    let confirmed = |txid: &str| {
        let txid = txid.to_owned();
        move |e: &ChainEvent| matches!(e, ChainEvent::Transaction { txid: t, status: TxStatus::Confirmed { depth: 1, .. }, .. } if *t == txid)
    };
    let f = events
        .wait("failing confirmed", confirmed(&failing))
        .await?;
    let p = events.wait("paying confirmed", confirmed(&paying)).await?;
    assert!(
        matches!(f, ChainEvent::Transaction { reverted: true, .. }),
        "{f:?}"
    );
    assert!(
        matches!(
            p,
            ChainEvent::Transaction {
                reverted: false,
                ..
            }
        ),
        "{p:?}"
    );
    let deposit = events
        .wait("transferFrom confirmed", |e| {
            matches!(
                output_status(e, &pulled),
                Some(TxStatus::Confirmed { depth: 1, .. })
            )
        })
        .await?;
    assert!(
        matches!(&deposit, ChainEvent::Output { output: 1, address, asset, .. } if *asset == tusd && address.eq_ignore_ascii_case(&format!("{user:#x}"))),
        "{deposit:?}"
    );
    anvil.mine(2).await?;
    wait_for(|| gw.tip(NET).is_some_and(|t| t.height == head + 3)).await?;
    events.drain(Duration::from_millis(300)).await?;

    // Seen, then confirmed as reverted at depths 1..=3; never dropped.
    let statuses: Vec<(bool, TxStatus)> = events
        .all
        .iter()
        .filter_map(|e| match e {
            ChainEvent::Transaction {
                txid,
                reverted,
                status,
                ..
            } if *txid == failing => Some((*reverted, status.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(statuses.len(), 4, "{statuses:?}");
    assert_eq!(statuses[0], (false, TxStatus::Seen));
    for (i, (reverted, s)) in statuses[1..].iter().enumerate() {
        assert!(
            *reverted && matches!(s, TxStatus::Confirmed { depth, .. } if *depth == i as u64 + 1),
            "{statuses:?}"
        );
    }
    // Every tip follows the block it names; the last is the node's head.
    let mut connected = std::collections::HashSet::new();
    let mut tips = Vec::new();
    for e in &events.all {
        match e {
            ChainEvent::BlockConnected { hash, .. } => {
                connected.insert(hash.clone());
            }
            ChainEvent::Tip { height, hash, .. } => {
                assert!(connected.contains(hash), "tip {hash} before its block");
                tips.push(*height);
            }
            _ => {}
        }
    }
    assert!(tips.windows(2).all(|w| w[0] < w[1]), "{tips:?}");
    assert_eq!(tips.first(), Some(&head));
    assert_eq!(tips.last(), Some(&(head + 3)));
    stop.cancel();
    gw.stopped().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_heads_arrive_by_websocket_between_slow_polls() -> anyhow::Result<()> {
    init_tracing();
    let anvil = Anvil::start().await?;
    let dir = tempfile::tempdir()?;
    let db = Db::connect(&format!(
        "sqlite:{}",
        dir.path().join("engine.db").display()
    ))
    .await?;
    let bus = open_bus(Bus::Local, &db).await?;
    let stop = CancellationToken::new();
    // Polling once a minute: only the subscription can bring these blocks
    // in time.
    let gw = NodeGateway::start(
        config(&anvil, Duration::from_secs(60), Vec::new())?,
        db.clone(),
        bus.clone(),
        stop.clone(),
    )
    .await?;
    let head = anvil.rpc.block_number().await?;
    wait_for(|| gw.tip(NET).is_some_and(|t| t.height == head)).await?;
    for i in 1..=3 {
        // Let the subscription settle before the first block.
        tokio::time::sleep(Duration::from_millis(300)).await;
        anvil.mine(1).await?;
        wait_for(|| gw.tip(NET).is_some_and(|t| t.height == head + i)).await?;
    }
    let hash: B256 = anvil
        .rpc
        .get_block_hash(head + 3)
        .await?
        .ok_or_else(|| anyhow!("no block"))?;
    assert_eq!(
        gw.tip(NET).map(|t| t.hash),
        Some(format!("0x{}", hex::encode(hash)))
    );
    stop.cancel();
    gw.stopped().await;
    Ok(())
}

/// Two nodes (proxies in front of one anvil, so one chain): the followed
/// one is killed mid-run; the other takes over with every depth once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_ethereum_node_fails_over_with_nothing_missed() -> anyhow::Result<()> {
    init_tracing();
    let anvil = Anvil::start().await?;
    let upstream = SocketAddr::from(([127, 0, 0, 1], anvil.port));
    let (url_a, kill_a) = common::proxy(upstream).await?;
    let (url_b, kill_b) = common::proxy(upstream).await?;
    let dir = tempfile::tempdir()?;
    let db = Db::connect(&format!(
        "sqlite:{}",
        dir.path().join("engine.db").display()
    ))
    .await?;
    let bus = open_bus(Bus::Local, &db).await?;
    let mut events = Events::open(&bus, "test").await?;
    let stop = CancellationToken::new();
    let node = |url: &str| EthereumNode {
        rpc_url: url.to_owned(),
        ws_url: None,
    };
    let gw = NodeGateway::start(
        ChainsConfig {
            bitcoin: None,
            ethereum: Some(EthereumChainConfig {
                network: EthereumNetwork::Dev,
                nodes: vec![node(&url_a), node(&url_b)],
                poll_interval: Duration::from_millis(50),
                max_depth: 3,
                eth_asset: AssetId::new("ETH")?,
                tokens: Vec::new(),
                failover: FailoverConfig {
                    max_lag_blocks: 2,
                    stall_after: Duration::from_secs(2),
                    check_timeout: Duration::from_millis(500),
                },
            }),
        },
        db.clone(),
        bus.clone(),
        stop.clone(),
    )
    .await?;
    let head = anvil.rpc.block_number().await?;
    wait_for(|| gw.tip(NET).is_some_and(|t| t.height == head)).await?;
    assert_eq!(gw.eth_rpc().expect("ethereum").url(), url_a);

    let user = Address::repeat_byte(0x42);
    gw.watch_address(NET, &format!("{user:#x}")).await?;
    let payer = anvil.accounts().await?[1];
    let txid = anvil
        .send(json!({ "from": payer, "to": user, "value": "0x1000", "gas": "0x5208" }))
        .await?;
    events
        .wait("deposit seen", |e| {
            matches!(output_status(e, &txid), Some(TxStatus::Seen))
        })
        .await?;
    anvil.mine(1).await?;
    let confirmed = |depth: u64| {
        let txid = txid.clone();
        move |e: &ChainEvent| matches!(output_status(e, &txid), Some(TxStatus::Confirmed { depth: d, .. }) if *d == depth)
    };
    events.wait("deposit at depth 1", confirmed(1)).await?;

    kill_a.cancel();
    anvil.mine(2).await?;
    events.wait("deposit at depth 3", confirmed(3)).await?;
    wait_for(|| gw.tip(NET).is_some_and(|t| t.height == head + 3)).await?;
    assert_eq!(gw.eth_rpc().expect("ethereum").url(), url_b);
    events.drain(Duration::from_millis(300)).await?;

    let statuses = events.output_statuses(&txid);
    assert_eq!(statuses.len(), 4, "{statuses:?}");
    assert_eq!(statuses[0], TxStatus::Seen);
    for (i, s) in statuses[1..].iter().enumerate() {
        assert!(
            matches!(s, TxStatus::Confirmed { depth, block_height, .. } if *depth == i as u64 + 1 && *block_height == head + 1),
            "{statuses:?}"
        );
    }
    let heights: Vec<u64> = events
        .all
        .iter()
        .filter_map(|e| match e {
            ChainEvent::BlockConnected { height, .. } => Some(*height),
            _ => None,
        })
        .collect();
    assert_eq!(heights, vec![head, head + 1, head + 2, head + 3]);
    stop.cancel();
    gw.stopped().await;
    kill_b.cancel();
    Ok(())
}

/// The websocket drops (its proxy is cut) while blocks are mined and comes
/// back on the same address: the resubscription makes the follower connect
/// every block it missed, with polling once a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_missed_while_the_websocket_was_down_are_backfilled() -> anyhow::Result<()> {
    init_tracing();
    let anvil = Anvil::start().await?;
    let upstream = SocketAddr::from(([127, 0, 0, 1], anvil.port));
    let (ws_addr, cut) = common::proxy_on(SocketAddr::from(([127, 0, 0, 1], 0)), upstream).await?;
    let dir = tempfile::tempdir()?;
    let db = Db::connect(&format!(
        "sqlite:{}",
        dir.path().join("engine.db").display()
    ))
    .await?;
    let bus = open_bus(Bus::Local, &db).await?;
    let mut events = Events::open(&bus, "test").await?;
    let mut config = config(&anvil, Duration::from_secs(60), Vec::new())?;
    if let Some(e) = config.ethereum.as_mut() {
        e.nodes[0].ws_url = Some(format!("ws://{ws_addr}"));
    }
    let stop = CancellationToken::new();
    let gw = NodeGateway::start(config, db.clone(), bus.clone(), stop.clone()).await?;
    let head = anvil.rpc.block_number().await?;
    wait_for(|| gw.tip(NET).is_some_and(|t| t.height == head)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    anvil.mine(1).await?;
    wait_for(|| gw.tip(NET).is_some_and(|t| t.height == head + 1)).await?;

    cut.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    anvil.mine(3).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        gw.tip(NET).map(|t| t.height),
        Some(head + 1),
        "no heads without the websocket (polling is once a minute)"
    );
    let (_, back) = common::proxy_on(ws_addr, upstream).await?;
    wait_for(|| gw.tip(NET).is_some_and(|t| t.height == head + 4)).await?;
    events.drain(Duration::from_millis(300)).await?;
    let heights: Vec<u64> = events
        .all
        .iter()
        .filter_map(|e| match e {
            ChainEvent::BlockConnected { height, .. } => Some(*height),
            _ => None,
        })
        .collect();
    assert_eq!(heights, vec![head, head + 1, head + 2, head + 3, head + 4]);
    stop.cancel();
    gw.stopped().await;
    back.cancel();
    Ok(())
}
