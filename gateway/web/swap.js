// The reference swap page: pick a pair, watch its live price, get a firm
// quote for an amount, accept it with payout and refund addresses, pay the
// deposit (address, QR code, payment URI) and follow the swap to the end.
// Everything goes over the client websocket (docs/websocket.md).
import { api, el, fill, fmtTime, randomKey, secondsUntil, wsUrl } from "/web/common.js";

const $ = (id) => document.getElementById(id);

// The usual road of a swap; side roads (expiry, refunds, review) are added
// to the timeline when the swap takes them.
const HAPPY_PATH = [
  ["awaiting_deposit", "Waiting for your deposit"],
  ["deposit_seen", "Deposit seen"],
  ["confirming", "Confirming"],
  ["deposit_confirmed", "Deposit confirmed"],
  ["executing", "Executing the trade"],
  ["payout_pending", "Payout being sent"],
  ["payout_broadcast", "Payout sent"],
  ["completed", "Completed"],
];
const LABELS = Object.fromEntries(HAPPY_PATH);
Object.assign(LABELS, {
  amount_mismatch: "Deposit amount differs from the quote",
  expired: "Expired",
  refund_required: "Refund needed",
  refunding: "Refunding",
  refunded: "Refunded",
  manual_review: "In manual review",
  failed: "Failed",
});

const state = {
  ws: null,
  pair: null,
  quote: null,
  swap: null,
  seen: [], // statuses in the order they arrived
  countdown: null,
  requests: 0,
  lastPrice: 0,
};

function send(msg) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(msg));
    return true;
  }
  return false;
}

function connect() {
  const ws = new WebSocket(wsUrl("/v1/ws"));
  state.ws = ws;
  ws.addEventListener("open", () => {
    if (state.pair) send({ type: "subscribe", pairs: [state.pair] });
    if (state.swap) send({ type: "watch_swaps", swap_ids: [state.swap.swap_id] });
  });
  ws.addEventListener("message", (ev) => onMessage(JSON.parse(ev.data)));
  ws.addEventListener("close", () => {
    $("price").textContent = "reconnecting…";
    setTimeout(connect, 1000);
  });
}

function onMessage(msg) {
  switch (msg.type) {
    case "prices": {
      if (msg.pair !== state.pair || msg.rungs.length === 0) return;
      const [base, quote] = msg.pair.split("/");
      const r = msg.rungs[0];
      $("price").textContent = `1 ${base} ≈ ${r.price} ${quote}`;
      $("price").dataset.at = msg.at;
      state.lastPrice = Date.now();
      break;
    }
    case "quote":
      showQuote(msg.quote);
      break;
    case "swap":
      showSwap(msg.swap);
      break;
    case "swap_status":
      if (state.swap && msg.swap.swap_id === state.swap.swap_id) showSwap(msg.swap);
      break;
    case "error": {
      const target = msg.request_id?.startsWith("accept") ? "accept-error" : "quote-error";
      if (msg.code === "trading_halted" && !msg.request_id) {
        $("price").textContent = "trading halted";
      }
      $(target).textContent = msg.message;
      break;
    }
    default:
      break;
  }
}

function selectPair(pair) {
  if (state.pair && state.pair !== pair) send({ type: "unsubscribe", pairs: [state.pair] });
  state.pair = pair;
  const [base, quote] = pair.split("/");
  $("from-asset").textContent = base;
  $("to-asset").textContent = quote;
  $("refund-asset").textContent = base;
  $("price").textContent = "waiting for a price…";
  send({ type: "subscribe", pairs: [pair] });
}

function requestQuote() {
  $("quote-error").textContent = "";
  const amount = $("amount").value.trim();
  if (!amount) {
    $("quote-error").textContent = "Type an amount.";
    return;
  }
  const [from, to] = state.pair.split("/");
  state.requests += 1;
  if (!send({ type: "rfq", request_id: `rfq-${state.requests}`, from, to, amount })) {
    $("quote-error").textContent = "Not connected; retrying.";
  }
}

function showQuote(quote) {
  state.quote = quote;
  $("quote").hidden = false;
  $("quote-in").textContent = `${quote.amount_in} ${quote.from}`;
  $("quote-out").textContent = `${quote.amount_out} ${quote.to}`;
  $("quote-price").textContent = `${quote.price} ${quote.to}/${quote.from}`;
  $("quote-fee").textContent = `${quote.network_fee} ${quote.to}`;
  $("accept").disabled = false;
  clearInterval(state.countdown);
  const tick = () => {
    const left = secondsUntil(quote.expires_at);
    $("countdown").textContent = String(left);
    if (left === 0) {
      clearInterval(state.countdown);
      $("accept").disabled = true;
      $("accept-error").textContent = "The quote expired; get a new one.";
    }
  };
  tick();
  state.countdown = setInterval(tick, 250);
}

function accept() {
  $("accept-error").textContent = "";
  const payout = $("payout-address").value.trim();
  const refund = $("refund-address").value.trim();
  if (!payout) {
    $("accept-error").textContent = "Type your payout address.";
    return;
  }
  state.requests += 1;
  send({
    type: "accept",
    request_id: `accept-${state.requests}`,
    quote_id: state.quote.quote_id,
    payout_address: payout,
    refund_address: refund || undefined,
    idempotency_key: randomKey("web"),
  });
}

function showSwap(swap) {
  const first = !state.swap;
  state.swap = swap;
  if (first) {
    clearInterval(state.countdown);
    $("step-quote").hidden = true;
    history.replaceState(null, "", `?swap=${swap.swap_id}`);
  }
  const d = swap.deposit;
  $("step-deposit").hidden = !["awaiting_deposit", "deposit_seen", "confirming"].includes(swap.status);
  $("deposit-amount").textContent = `${d.amount} ${d.asset}`;
  $("deposit-address").textContent = d.address;
  $("deposit-uri").textContent = d.payment_uri;
  $("deposit-uri").href = d.payment_uri;
  $("deposit-deadline").textContent = fmtTime(d.deadline);
  $("deposit-confirmations").textContent = String(d.required_confirmations);
  const qr = `/v1/swaps/${swap.swap_id}/qr.svg`;
  if ($("qr").getAttribute("src") !== qr) $("qr").src = qr;

  $("step-status").hidden = false;
  $("swap-id").textContent = swap.swap_id;
  $("status").textContent = LABELS[swap.status] ?? swap.status;
  $("status").dataset.status = swap.status;
  if (!state.seen.includes(swap.status)) state.seen.push(swap.status);
  $("status-reason").textContent = swap.reason ?? "";
  $("payout-tx").textContent = swap.payout?.txid
    ? `Payout ${swap.payout.amount ?? ""} ${swap.to} in transaction ${swap.payout.txid}`
    : "";
  renderTimeline(swap.status);
}

function renderTimeline(current) {
  const onPath = HAPPY_PATH.some(([s]) => s === current);
  const steps = HAPPY_PATH.map(([s]) => s);
  if (!onPath) {
    // Keep the happy-path steps reached, then the side road.
    const reached = steps.filter((s) => state.seen.includes(s));
    steps.splice(0, steps.length, ...reached, ...state.seen.filter((s) => !HAPPY_PATH.some(([h]) => h === s)));
  }
  const index = steps.indexOf(current);
  fill(
    $("timeline"),
    steps.map((s, i) =>
      el(
        "li",
        {
          class: i < index ? "done" : i === index ? "current" : "todo",
          dataset: { status: s },
        },
        LABELS[s] ?? s,
      ),
    ),
  );
}

// No tick for a while: ask the REST API why (halted, stale venues).
async function priceWatchdog() {
  if (!state.pair || Date.now() - state.lastPrice < 3000) return;
  try {
    await api(`/v1/prices?pair=${encodeURIComponent(state.pair)}`);
  } catch (e) {
    $("price").textContent = `no price now: ${e.message}`;
  }
}

async function init() {
  $("get-quote").addEventListener("click", requestQuote);
  $("accept").addEventListener("click", accept);
  $("pair").addEventListener("change", (e) => selectPair(e.target.value));
  $("amount").addEventListener("keydown", (e) => e.key === "Enter" && requestQuote());
  const pairs = await api("/v1/pairs");
  fill($("pair"), pairs.map((p) => el("option", { value: p }, p)));
  const resume = new URLSearchParams(location.search).get("swap");
  if (resume) {
    try {
      showSwap(await api(`/v1/swaps/${encodeURIComponent(resume)}`));
    } catch (e) {
      $("quote-error").textContent = e.message;
    }
  }
  state.pair = pairs[0] ?? null;
  if (state.pair) selectPair(state.pair);
  connect();
  setInterval(priceWatchdog, 3000);
}

init().catch((e) => {
  $("quote-error").textContent = `The engine did not answer: ${e.message}`;
});
