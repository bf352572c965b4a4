//! Signing material for wallets that sign elsewhere (hardware wallets,
//! offline signers): a BIP174 PSBT that pays a swap's Bitcoin deposit from
//! UTXOs the wallet lists, and the check that a transaction a wallet asks
//! the engine to relay really pays the swap's deposit.
//!
//! Pure: no I/O, no clock. The fee rate comes in from the caller.

use std::collections::BTreeMap;
use std::str::FromStr;

use alloy_primitives::U256;
use base64::Engine as _;
use bitcoin::absolute::LockTime;
use bitcoin::bip32::{DerivationPath, Fingerprint};
use bitcoin::psbt::{Input, Output, Psbt};
use bitcoin::transaction::Version;
use bitcoin::{
    Address as BtcAddress, Amount as Sats, OutPoint, PublicKey, ScriptBuf, Sequence, Transaction,
    TxIn, TxOut, Txid, Witness, XOnlyPublicKey,
};
use proto::api::{DepositInstructions, ErrorCode, KeyOrigin, PsbtInput, PsbtRequest, PsbtResponse};
use proto::{Address, Amount, Network};

use crate::error::Failure;

/// Bitcoin has eight decimals.
const BTC_DECIMALS: u8 = 8;
/// Most inputs one PSBT may spend.
pub const MAX_INPUTS: usize = 500;
/// The highest fee rate a client may ask for, in sat/vB: beyond this a typo
/// would burn the user's money.
pub const MAX_FEE_RATE: u64 = 2_000;

fn invalid(code: ErrorCode, message: impl Into<String>) -> Failure {
    Failure::new(code, message)
}

/// Virtual bytes an input of this script type adds once signed (BIP141
/// weight / 4, rounded up): what the fee is computed from.
fn input_vbytes(script: &ScriptBuf) -> Option<u64> {
    if script.is_p2wpkh() {
        Some(68)
    } else if script.is_p2tr() {
        Some(58)
    } else if script.is_p2pkh() {
        Some(148)
    } else {
        None
    }
}

fn output_vbytes(script: &ScriptBuf) -> u64 {
    // value (8) + script length (1) + script.
    9 + script.len() as u64
}

fn parse_origin(origin: &KeyOrigin) -> Result<(Fingerprint, DerivationPath), Failure> {
    let fingerprint = Fingerprint::from_str(&origin.fingerprint).map_err(|_| {
        Failure::bad_request(format!(
            "key origin fingerprint {:?} is not 8 hex digits",
            origin.fingerprint
        ))
    })?;
    let path = DerivationPath::from_str(&origin.path).map_err(|_| {
        Failure::bad_request(format!(
            "key origin path {:?} is not a BIP32 path such as m/84'/0'/0'/0/7",
            origin.path
        ))
    })?;
    Ok((fingerprint, path))
}

/// Adds the key origin to a PSBT input or output of the given script type:
/// `bip32_derivation` for ECDSA keys, `tap_internal_key` and
/// `tap_key_origins` for taproot key-path spends (BIP371).
/// A key's origin as PSBT fields: ECDSA `bip32_derivation`, or the taproot
/// internal key.
type OriginFields = (
    BTreeMap<bitcoin::secp256k1::PublicKey, (Fingerprint, DerivationPath)>,
    Option<XOnlyPublicKey>,
);

fn origin_fields(script: &ScriptBuf, origin: &KeyOrigin) -> Result<OriginFields, Failure> {
    let source = parse_origin(origin)?;
    let bytes = hex::decode(&origin.pubkey)
        .map_err(|_| Failure::bad_request("key origin pubkey is not hex"))?;
    if script.is_p2tr() {
        let key = XOnlyPublicKey::from_slice(&bytes).map_err(|_| {
            Failure::bad_request("a taproot key origin needs the 32-byte x-only internal key")
        })?;
        Ok((BTreeMap::new(), Some(key)))
    } else {
        let key = PublicKey::from_slice(&bytes)
            .map_err(|_| Failure::bad_request("key origin pubkey is not a valid public key"))?;
        if script.is_p2wpkh()
            && ScriptBuf::new_p2wpkh(&key.wpubkey_hash().map_err(|_| {
                Failure::bad_request("a P2WPKH key origin needs a compressed public key")
            })?) != *script
        {
            return Err(Failure::bad_request(
                "key origin pubkey does not belong to the input's address",
            ));
        }
        Ok((BTreeMap::from([(key.inner, source)]), None))
    }
}

struct CheckedInput {
    outpoint: OutPoint,
    txout: TxOut,
    previous_tx: Option<Transaction>,
    origin: Option<KeyOrigin>,
}

fn check_input(network: Network, i: usize, input: &PsbtInput) -> Result<CheckedInput, Failure> {
    let what = format!("input {i}");
    let txid = Txid::from_str(&input.txid)
        .map_err(|_| Failure::bad_request(format!("{what}: txid is not 64 hex digits")))?;
    let address = Address::parse(network, &input.address)
        .map_err(|e| invalid(ErrorCode::InvalidAddress, format!("{what}: {e}")))?;
    let script = address
        .as_bitcoin()
        .map(BtcAddress::script_pubkey)
        .ok_or_else(|| {
            invalid(
                ErrorCode::InvalidAddress,
                format!("{what}: not a Bitcoin address"),
            )
        })?;
    if input_vbytes(&script).is_none() {
        return Err(invalid(
            ErrorCode::InvalidAddress,
            format!("{what}: only P2WPKH, P2TR and P2PKH inputs can be priced and signed by standard signers here"),
        ));
    }
    let amount = Amount::parse_decimal(&input.amount, BTC_DECIMALS)
        .map_err(|e| invalid(ErrorCode::InvalidAmount, format!("{what}: amount: {e}")))?;
    let sats = u64::try_from(amount.base_units())
        .ok()
        .filter(|s| *s > 0 && *s <= 21_000_000 * 100_000_000)
        .ok_or_else(|| {
            invalid(
                ErrorCode::InvalidAmount,
                format!("{what}: amount out of range"),
            )
        })?;
    let txout = TxOut {
        value: Sats::from_sat(sats),
        script_pubkey: script.clone(),
    };
    let previous_tx = match &input.previous_tx {
        None if script.is_p2pkh() => {
            return Err(Failure::bad_request(format!(
                "{what}: a P2PKH input needs previous_tx (the whole funding transaction, hex) for signers to check its amount"
            )))
        }
        None => None,
        Some(raw) => {
            let tx: Transaction = hex::decode(raw)
                .ok()
                .and_then(|b| bitcoin::consensus::deserialize(&b).ok())
                .ok_or_else(|| {
                    Failure::bad_request(format!("{what}: previous_tx is not a hex transaction"))
                })?;
            if tx.compute_txid() != txid {
                return Err(Failure::bad_request(format!(
                    "{what}: previous_tx has txid {}, not {txid}",
                    tx.compute_txid()
                )));
            }
            if tx.output.get(input.vout as usize) != Some(&txout) {
                return Err(Failure::bad_request(format!(
                    "{what}: output {} of previous_tx does not pay {} to {}",
                    input.vout, input.amount, input.address
                )));
            }
            Some(tx)
        }
    };
    Ok(CheckedInput {
        outpoint: OutPoint::new(txid, input.vout),
        txout,
        previous_tx,
        origin: input.key_origin.clone(),
    })
}

/// The PSBT paying `deposit` from the client's inputs at `fee_rate` sat/vB,
/// with change (if above dust) to the client's change address.
pub fn deposit_psbt(
    deposit: &DepositInstructions,
    request: &PsbtRequest,
    fee_rate: u64,
) -> Result<PsbtResponse, Failure> {
    let network = deposit.network;
    if !matches!(network, Network::Bitcoin(_)) {
        return Err(Failure::bad_request(format!(
            "this swap's deposit is on {network}: a PSBT is for Bitcoin deposits; use the unsigned Ethereum transaction"
        )));
    }
    if request.inputs.is_empty() {
        return Err(Failure::bad_request(
            "inputs: list at least one UTXO to spend",
        ));
    }
    if request.inputs.len() > MAX_INPUTS {
        return Err(Failure::bad_request(format!(
            "inputs: at most {MAX_INPUTS} per PSBT"
        )));
    }
    if fee_rate == 0 || fee_rate > MAX_FEE_RATE {
        return Err(Failure::bad_request(format!(
            "fee rate {fee_rate} sat/vB is outside 1..={MAX_FEE_RATE}"
        )));
    }
    let inputs = request
        .inputs
        .iter()
        .enumerate()
        .map(|(i, input)| check_input(network, i, input))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = std::collections::HashSet::new();
    for i in &inputs {
        if !seen.insert(i.outpoint) {
            return Err(Failure::bad_request(format!(
                "input {}:{} is listed twice",
                i.outpoint.txid, i.outpoint.vout
            )));
        }
    }
    let deposit_script = deposit_script(deposit)?;
    let pay = u64::try_from(deposit.amount_base_units.base_units())
        .map_err(|_| Failure::new(ErrorCode::Internal, "deposit amount out of range"))?;
    let change_script = Address::parse(network, &request.change_address)
        .map_err(|e| invalid(ErrorCode::InvalidAddress, format!("change_address: {e}")))?
        .as_bitcoin()
        .map(BtcAddress::script_pubkey)
        .ok_or_else(|| {
            invalid(
                ErrorCode::InvalidAddress,
                "change_address: not a Bitcoin address",
            )
        })?;

    let total: u64 = inputs.iter().map(|i| i.txout.value.to_sat()).sum();
    let segwit = inputs.iter().any(|i| !i.txout.script_pubkey.is_p2pkh());
    // version + locktime + counts (10), the segwit marker and flag (0.5).
    let base = 10 + u64::from(segwit);
    let in_vb: u64 = inputs
        .iter()
        .map(|i| input_vbytes(&i.txout.script_pubkey).unwrap_or(148))
        .sum();
    let without_change = base + in_vb + output_vbytes(&deposit_script);
    let with_change = without_change + output_vbytes(&change_script);
    let short = |fee: u64| {
        invalid(
            ErrorCode::InvalidAmount,
            format!(
                "inputs total {} BTC; the deposit needs {} BTC plus {} BTC fee at {fee_rate} sat/vB",
                Amount::from_base_units(u128::from(total)).to_decimal_string(BTC_DECIMALS),
                deposit.amount,
                Amount::from_base_units(u128::from(fee)).to_decimal_string(BTC_DECIMALS)
            ),
        )
    };
    let fee_no_change = without_change * fee_rate;
    let remainder = total
        .checked_sub(pay)
        .and_then(|r| r.checked_sub(fee_no_change))
        .ok_or_else(|| short(fee_no_change))?;
    let fee_change = with_change * fee_rate;
    let (change, fee, vsize) = match remainder.checked_sub(fee_change - fee_no_change) {
        Some(c) if c >= hot_wallet::payout::dust_limit_sats(&change_script) => {
            (Some(c), fee_change, with_change)
        }
        _ => (None, total - pay, without_change),
    };

    let mut outputs = vec![TxOut {
        value: Sats::from_sat(pay),
        script_pubkey: deposit_script,
    }];
    if let Some(c) = change {
        outputs.push(TxOut {
            value: Sats::from_sat(c),
            script_pubkey: change_script.clone(),
        });
    }
    let unsigned = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: inputs
            .iter()
            .map(|i| TxIn {
                previous_output: i.outpoint,
                script_sig: ScriptBuf::new(),
                // Replaceable (BIP125), so a stuck deposit can be bumped.
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            })
            .collect(),
        output: outputs,
    };
    let mut psbt = Psbt::from_unsigned_tx(unsigned)
        .map_err(|e| Failure::new(ErrorCode::Internal, format!("psbt: {e}")))?;
    for (slot, input) in psbt.inputs.iter_mut().zip(&inputs) {
        *slot = psbt_input(input)?;
    }
    if let (Some(_), Some(origin)) = (change, &request.change_key_origin) {
        let (bip32, tap) = origin_fields(&change_script, origin)?;
        let mut out = Output {
            bip32_derivation: bip32,
            ..Output::default()
        };
        if let Some(key) = tap {
            out.tap_internal_key = Some(key);
            out.tap_key_origins
                .insert(key, (Vec::new(), parse_origin(origin)?));
        }
        psbt.outputs[1] = out;
    }
    let fee_amount = Amount::from_base_units(u128::from(fee));
    Ok(PsbtResponse {
        psbt: base64::engine::general_purpose::STANDARD.encode(psbt.serialize()),
        fee: fee_amount.to_decimal_string(BTC_DECIMALS),
        fee_base_units: fee_amount,
        fee_rate_sat_vb: fee_rate,
        vsize,
        change: change
            .map(|c| Amount::from_base_units(u128::from(c)).to_decimal_string(BTC_DECIMALS)),
    })
}

fn psbt_input(input: &CheckedInput) -> Result<Input, Failure> {
    let script = &input.txout.script_pubkey;
    let mut out = Input::default();
    if script.is_p2pkh() {
        out.non_witness_utxo = input.previous_tx.clone();
    } else {
        out.witness_utxo = Some(input.txout.clone());
        // Segwit v0 signers (since the 2020 fee attack) want the whole
        // previous transaction too when they can have it.
        if !script.is_p2tr() {
            out.non_witness_utxo = input.previous_tx.clone();
        }
    }
    if let Some(origin) = &input.origin {
        let (bip32, tap) = origin_fields(script, origin)?;
        out.bip32_derivation = bip32;
        if let Some(key) = tap {
            out.tap_internal_key = Some(key);
            out.tap_key_origins
                .insert(key, (Vec::new(), parse_origin(origin)?));
        }
    }
    Ok(out)
}

/// Checks that a signed transaction a client asks the engine to relay pays
/// the swap's deposit: on Bitcoin an output to the deposit address; on
/// Ethereum a transaction to the deposit address (native) or to the token
/// contract (ERC-20 `transfer`, when `token_contract` is the deposit asset's
/// contract).
pub fn check_relay(
    deposit: &DepositInstructions,
    token_contract: Option<alloy_primitives::Address>,
    raw: &[u8],
) -> Result<(), Failure> {
    match deposit.network {
        Network::Bitcoin(_) => {
            let tx: Transaction = bitcoin::consensus::deserialize(raw).map_err(|e| {
                Failure::bad_request(format!("raw_tx is not a Bitcoin transaction: {e}"))
            })?;
            let script = deposit_script(deposit)?;
            if tx.output.iter().any(|o| o.script_pubkey == script) {
                Ok(())
            } else {
                Err(Failure::bad_request(format!(
                    "the transaction has no output paying this swap's deposit address {}",
                    deposit.address
                )))
            }
        }
        Network::Ethereum(_) => check_eth_relay(deposit, token_contract, raw),
    }
}

fn check_eth_relay(
    deposit: &DepositInstructions,
    token_contract: Option<alloy_primitives::Address>,
    raw: &[u8],
) -> Result<(), Failure> {
    use alloy_consensus::Transaction as _;
    use alloy_eips::eip2718::Decodable2718;
    let mut buf = raw;
    let tx = alloy_consensus::TxEnvelope::decode_2718(&mut buf).map_err(|e| {
        Failure::bad_request(format!("raw_tx is not a signed Ethereum transaction: {e}"))
    })?;
    if !buf.is_empty() {
        return Err(Failure::bad_request(
            "raw_tx has bytes after the transaction",
        ));
    }
    let deposit_to = deposit_eth_address(deposit)?;
    let to = tx.to().ok_or_else(|| {
        Failure::bad_request("the transaction creates a contract; it does not pay the deposit")
    })?;
    let pays = match token_contract {
        None => to == deposit_to,
        // transfer(deposit, amount) on the token, whatever the amount.
        Some(token) => {
            let input = tx.input();
            to == token
                && input.len() == 68
                && input[..36] == erc20_transfer_calldata(deposit_to, U256::ZERO)[..36]
        }
    };
    if pays {
        Ok(())
    } else {
        Err(Failure::bad_request(format!(
            "the transaction does not pay this swap's deposit address {} in {}",
            deposit.address, deposit.asset
        )))
    }
}

/// What the node says for an Ethereum transaction from the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthTxParams {
    pub chain_id: u64,
    pub nonce: u64,
    pub gas_limit: u64,
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
}

/// Recipient, value and call data paying `deposit`: ETH straight to the
/// deposit address, or a token's `transfer(deposit, amount)`.
pub fn eth_deposit_call(
    deposit: &DepositInstructions,
    token_contract: Option<alloy_primitives::Address>,
) -> Result<
    (
        alloy_primitives::Address,
        alloy_primitives::U256,
        alloy_primitives::Bytes,
    ),
    Failure,
> {
    use alloy_primitives::Bytes;
    if !matches!(deposit.network, Network::Ethereum(_)) {
        return Err(Failure::bad_request(format!(
            "this swap's deposit is on {}: an Ethereum transaction is for ETH and token deposits; use the PSBT",
            deposit.network
        )));
    }
    let deposit_to = deposit_eth_address(deposit)?;
    let amount = U256::from(deposit.amount_base_units.base_units());
    Ok(match token_contract {
        None => (deposit_to, amount, Bytes::new()),
        Some(token) => (
            token,
            U256::ZERO,
            Bytes::from(erc20_transfer_calldata(deposit_to, amount)),
        ),
    })
}

/// ERC-20 `transfer(address,uint256)` call data (selector `0xa9059cbb`).
fn erc20_transfer_calldata(to: alloy_primitives::Address, amount: U256) -> Vec<u8> {
    let mut data = Vec::with_capacity(68);
    data.extend_from_slice(&[0xa9, 0x05, 0x9c, 0xbb]);
    data.extend_from_slice(&[0u8; 12]);
    data.extend_from_slice(to.as_slice());
    data.extend_from_slice(&amount.to_be_bytes::<32>());
    data
}

/// The swap's deposit address as a Bitcoin script.
fn deposit_script(deposit: &DepositInstructions) -> Result<ScriptBuf, Failure> {
    Address::parse(deposit.network, &deposit.address)
        .ok()
        .and_then(|a| a.as_bitcoin().map(BtcAddress::script_pubkey))
        .ok_or_else(|| {
            Failure::new(
                ErrorCode::Internal,
                "the swap's deposit address does not parse",
            )
        })
}

/// The swap's deposit address as an Ethereum address.
fn deposit_eth_address(
    deposit: &DepositInstructions,
) -> Result<alloy_primitives::Address, Failure> {
    Address::parse(deposit.network, &deposit.address)
        .ok()
        .and_then(|a| a.as_ethereum())
        .ok_or_else(|| {
            Failure::new(
                ErrorCode::Internal,
                "the swap's deposit address does not parse",
            )
        })
}

/// The unsigned EIP-1559 transaction paying `deposit` from `from`.
pub fn eth_deposit_tx(
    deposit: &DepositInstructions,
    token_contract: Option<alloy_primitives::Address>,
    from: alloy_primitives::Address,
    params: EthTxParams,
) -> Result<proto::api::UnsignedEthTransaction, Failure> {
    use alloy_consensus::{SignableTransaction, TxEip1559};
    let (to, value, data) = eth_deposit_call(deposit, token_contract)?;
    let tx = TxEip1559 {
        chain_id: params.chain_id,
        nonce: params.nonce,
        gas_limit: params.gas_limit,
        max_fee_per_gas: params.max_fee_per_gas,
        max_priority_fee_per_gas: params.max_priority_fee_per_gas,
        to: alloy_primitives::TxKind::Call(to),
        value,
        access_list: Default::default(),
        input: data.clone(),
    };
    let mut payload = Vec::new();
    tx.encode_for_signing(&mut payload);
    Ok(proto::api::UnsignedEthTransaction {
        tx_type: "0x2".into(),
        chain_id: format!("{:#x}", params.chain_id),
        nonce: format!("{:#x}", params.nonce),
        from: from.to_checksum(None),
        to: to.to_checksum(None),
        value: format!("{value:#x}"),
        data: format!("0x{}", hex::encode(&data)),
        gas: format!("{:#x}", params.gas_limit),
        max_fee_per_gas: format!("{:#x}", params.max_fee_per_gas),
        max_priority_fee_per_gas: format!("{:#x}", params.max_priority_fee_per_gas),
        unsigned_payload: format!("0x{}", hex::encode(&payload)),
        signing_hash: format!("{:#x}", tx.signature_hash()),
    })
}

/// Parses the hex a client sends as `raw_tx` (with or without `0x`).
pub fn parse_raw_tx(raw: &str) -> Result<Vec<u8>, Failure> {
    let s = raw.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    if s.is_empty() {
        return Err(Failure::bad_request("raw_tx is empty"));
    }
    if s.len() > 2 * 400_000 {
        return Err(Failure::bad_request("raw_tx is larger than 400,000 bytes"));
    }
    hex::decode(s).map_err(|_| Failure::bad_request("raw_tx is not hex"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{AssetId, BitcoinNetwork};

    const NET: Network = Network::Bitcoin(BitcoinNetwork::Regtest);
    // BIP84 test vector addresses (regtest spelling of the same keys is not
    // needed: any valid regtest addresses do).
    const DEPOSIT: &str = "bcrt1q8ydwjeukq4qwkdmeqktk3lg2a74fmumdc7msg0";
    const USER: &str = "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw";
    const CHANGE: &str = "bcrt1q6rlaztmgg45n9ajh22rd64gkeqnmjygc5fxdl4";

    fn deposit(sats: u128) -> DepositInstructions {
        DepositInstructions {
            network: NET,
            asset: AssetId::new("BTC").unwrap(),
            address: DEPOSIT.into(),
            amount: Amount::from_base_units(sats).to_decimal_string(8),
            amount_base_units: Amount::from_base_units(sats),
            deadline: chrono::Utc::now(),
            payment_uri: String::new(),
            required_confirmations: 1,
        }
    }

    fn input(n: u8, amount: &str) -> PsbtInput {
        PsbtInput {
            txid: hex::encode([n; 32]),
            vout: 0,
            address: USER.into(),
            amount: amount.into(),
            previous_tx: None,
            key_origin: None,
        }
    }

    #[test]
    fn key_origins_are_read_from_scanned_descriptors() {
        let pk = "03a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd";
        let o =
            key_origin_from_desc(&format!("wpkh([d34db33f/84'/1'/0'/0/7]{pk})#abcdefgh")).unwrap();
        assert_eq!(o.fingerprint, "d34db33f");
        assert_eq!(o.path, "m/84'/1'/0'/0/7");
        assert_eq!(o.pubkey, pk);
        let x = &pk[2..];
        let o = key_origin_from_desc(&format!("tr([D34DB33F/86h/1h/0h/1/0]{x})")).unwrap();
        assert_eq!((o.path.as_str(), o.pubkey.len()), ("m/86'/1'/0'/1/0", 64));
        assert_eq!(key_origin_from_desc("addr(bcrt1qxyz)#q"), None);
        assert_eq!(key_origin_from_desc(&format!("wpkh({pk})")), None);
    }

    #[test]
    fn descriptors_are_checked_and_a_bare_tpub_is_a_bip84_account() {
        let tpub = "tpubDC8msFGeGuwnKG9Upg7DM2b4DaRqg3CUZa5g8v2SRQ6K4NSkxUgd7HsL2XVWbVm39yBA4LAxysQAm397zwQSQoQgewGiYZqrA9DsP4zbQ1M";
        let got = scan_descriptors(&[tpub.to_owned(), "addr(bcrt1q)".to_owned()]).unwrap();
        assert_eq!(
            got,
            [
                format!("wpkh({tpub}/0/*)"),
                format!("wpkh({tpub}/1/*)"),
                "addr(bcrt1q)".to_owned()
            ]
        );
        assert!(scan_descriptors(&["nope".to_owned()]).is_err());
        assert!(scan_descriptors(&["".to_owned()]).is_err());
        assert!(scan_descriptors(&vec!["addr(x)".to_owned(); 9]).is_err());
    }

    fn request(inputs: Vec<PsbtInput>) -> PsbtRequest {
        PsbtRequest {
            inputs,
            descriptors: vec![],
            change_address: CHANGE.into(),
            change_key_origin: None,
            fee_rate_sat_vb: None,
        }
    }

    fn decode(r: &PsbtResponse) -> Psbt {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&r.psbt)
            .unwrap();
        Psbt::deserialize(&bytes).unwrap()
    }

    #[test]
    fn pays_the_exact_amount_with_change_and_the_stated_fee() {
        let r = deposit_psbt(
            &deposit(500_000),
            &request(vec![input(1, "0.006"), input(2, "0.0005")]),
            2,
        )
        .unwrap();
        let psbt = decode(&r);
        let tx = &psbt.unsigned_tx;
        assert_eq!(tx.output[0].value.to_sat(), 500_000);
        // 10.5 overhead rounded up + 2 × 68 + 31 + 31 vB.
        assert_eq!(r.vsize, 11 + 136 + 62);
        assert_eq!(psbt.fee().unwrap().to_sat(), 2 * r.vsize);
        assert_eq!(r.fee_base_units.base_units(), u128::from(2 * r.vsize));
        assert_eq!(tx.output[1].value.to_sat(), 650_000 - 500_000 - 2 * r.vsize);
        assert!(psbt.inputs.iter().all(|i| i.witness_utxo.is_some()));
        assert!(tx.input.iter().all(|i| i.sequence.is_rbf()));
    }

    #[test]
    fn change_below_dust_goes_to_the_fee() {
        // 500,000 + fee without change (11 + 68 + 31 = 110 vB at 1) + 300 left.
        let r = deposit_psbt(&deposit(500_000), &request(vec![input(1, "0.0050041")]), 1).unwrap();
        let psbt = decode(&r);
        assert_eq!(psbt.unsigned_tx.output.len(), 1);
        assert_eq!(r.change, None);
        assert_eq!(psbt.fee().unwrap().to_sat(), 410);
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let d = deposit(500_000);
        let err = |req: PsbtRequest, rate: u64| deposit_psbt(&d, &req, rate).unwrap_err().error;
        let e = err(request(vec![input(1, "0.005")]), 1);
        assert_eq!(e.code, ErrorCode::InvalidAmount);
        assert!(
            e.message.contains("inputs total 0.005 BTC"),
            "{}",
            e.message
        );
        assert!(err(request(vec![]), 1).message.contains("at least one"));
        assert!(err(request(vec![input(1, "0.01"), input(1, "0.01")]), 1)
            .message
            .contains("listed twice"));
        assert!(err(request(vec![input(1, "0.01")]), 0)
            .message
            .contains("fee rate"));
        let mut mainnet = input(1, "0.01");
        mainnet.address = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq".into();
        assert_eq!(
            err(request(vec![mainnet]), 1).code,
            ErrorCode::InvalidAddress
        );
        let mut legacy = input(1, "0.01");
        legacy.address = "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn".into();
        assert!(err(request(vec![legacy]), 1)
            .message
            .contains("previous_tx"));
        let mut bad_origin = input(1, "0.01");
        bad_origin.key_origin = Some(KeyOrigin {
            fingerprint: "00000000".into(),
            path: "m/84'/1'/0'/0/0".into(),
            // A valid key that is not the input's.
            pubkey: "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798".into(),
        });
        assert!(err(request(vec![bad_origin]), 1)
            .message
            .contains("does not belong"));
        let mut eth = deposit(1);
        eth.network = Network::Ethereum(proto::EthereumNetwork::Dev);
        assert!(deposit_psbt(&eth, &request(vec![input(1, "1")]), 1).is_err());
    }

    #[test]
    fn a_relay_must_pay_the_deposit() {
        let d = deposit(500_000);
        let tx = |to: &str| {
            let script = Address::parse(NET, to)
                .unwrap()
                .as_bitcoin()
                .unwrap()
                .script_pubkey();
            bitcoin::consensus::serialize(&Transaction {
                version: Version::TWO,
                lock_time: LockTime::ZERO,
                input: vec![TxIn::default()],
                output: vec![TxOut {
                    value: Sats::from_sat(500_000),
                    script_pubkey: script,
                }],
            })
        };
        assert!(check_relay(&d, None, &tx(DEPOSIT)).is_ok());
        assert!(check_relay(&d, None, &tx(USER)).is_err());
        assert!(check_relay(&d, None, b"garbage").is_err());
        assert!(parse_raw_tx("0xzz").is_err());
        assert_eq!(parse_raw_tx("0x0102").unwrap(), vec![1, 2]);
    }
}

/// A UTXO the node found for the client's descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundUtxo {
    pub txid: String,
    pub vout: u32,
    pub script_pubkey: bitcoin::ScriptBuf,
    pub value_sats: u64,
    /// The output's own descriptor, its key with origin
    /// (`wpkh([d34db33f/84'/1'/0'/0/3]02…)#…`).
    pub desc: String,
    pub coinbase: bool,
    pub height: u64,
}

const MAX_DESCRIPTORS: usize = 8;
const MAX_DESCRIPTOR_LEN: usize = 1000;
const COINBASE_MATURITY: u64 = 100;

/// The descriptors to scan for: each checked for size and characters; a
/// bare xpub/tpub becomes its BIP84 receive and change chains. The node
/// checks the rest (syntax, checksum, network).
pub fn scan_descriptors(descriptors: &[String]) -> Result<Vec<String>, Failure> {
    if descriptors.len() > MAX_DESCRIPTORS {
        return Err(Failure::bad_request(format!(
            "descriptors: at most {MAX_DESCRIPTORS}"
        )));
    }
    let mut out = Vec::new();
    for (i, d) in descriptors.iter().enumerate() {
        let d = d.trim();
        if d.is_empty()
            || d.len() > MAX_DESCRIPTOR_LEN
            || !d.is_ascii()
            || d.chars().any(|c| c.is_ascii_control())
        {
            return Err(Failure::bad_request(format!(
                "descriptors[{i}]: 1 to {MAX_DESCRIPTOR_LEN} printable ASCII characters"
            )));
        }
        if d.contains('(') {
            out.push(d.to_owned());
        } else if d.parse::<bitcoin::bip32::Xpub>().is_ok() {
            out.push(format!("wpkh({d}/0/*)"));
            out.push(format!("wpkh({d}/1/*)"));
        } else {
            return Err(Failure::bad_request(format!(
                "descriptors[{i}]: neither an output descriptor nor an xpub"
            )));
        }
    }
    Ok(out)
}

/// The key origin in an output's descriptor, as the PSBT needs it:
/// `…([fingerprint/path]pubkey)…`.
pub fn key_origin_from_desc(desc: &str) -> Option<proto::api::KeyOrigin> {
    let start = desc.find('[')? + 1;
    let end = start + desc[start..].find(']')?;
    let (fingerprint, path) = desc[start..end]
        .split_once('/')
        .unwrap_or((&desc[start..end], ""));
    if fingerprint.len() != 8 || !fingerprint.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let rest = &desc[end + 1..];
    let key_len = rest
        .find(|c: char| !c.is_ascii_hexdigit())
        .unwrap_or(rest.len());
    let pubkey = &rest[..key_len];
    if pubkey.len() != 66 && pubkey.len() != 64 {
        return None;
    }
    let path = if path.is_empty() {
        "m".to_owned()
    } else {
        format!("m/{}", path.replace('h', "'"))
    };
    Some(proto::api::KeyOrigin {
        fingerprint: fingerprint.to_ascii_lowercase(),
        path,
        pubkey: pubkey.to_ascii_lowercase(),
    })
}

/// PSBT inputs from scanned UTXOs: immature coinbase outputs are left out;
/// each input carries its address, amount and the key origin its
/// descriptor names.
pub fn inputs_from_scan(
    network: Network,
    tip_height: u64,
    found: &[FoundUtxo],
) -> Result<Vec<proto::api::PsbtInput>, Failure> {
    let Network::Bitcoin(btc) = network else {
        return Err(Failure::bad_request("descriptors are for Bitcoin deposits"));
    };
    let inputs: Vec<proto::api::PsbtInput> = found
        .iter()
        .filter(|u| !u.coinbase || tip_height + 1 >= u.height + COINBASE_MATURITY)
        .filter_map(|u| {
            let address = BtcAddress::from_script(&u.script_pubkey, btc.to_bitcoin()).ok()?;
            Some(proto::api::PsbtInput {
                txid: u.txid.clone(),
                vout: u.vout,
                address: address.to_string(),
                amount: proto::Amount::from_base_units(u128::from(u.value_sats))
                    .to_decimal_string(8),
                previous_tx: None,
                key_origin: key_origin_from_desc(&u.desc),
            })
        })
        .collect();
    if inputs.is_empty() {
        return Err(Failure::bad_request(
            "descriptors: the node found no spendable confirmed UTXO for them",
        ));
    }
    Ok(inputs)
}
