#!/usr/bin/env bash
# Compiles the Solidity test contracts in simulations/simulators/contracts
# with solc-js (pinned) and writes <Name>.bin (creation bytecode, hex) and
# <Name>.abi.json beside each source. The outputs are committed, so building
# and testing the engine needs no Solidity compiler; run this after changing
# a contract. `--check` fails if the committed outputs are out of date.
set -euo pipefail
SOLC_VERSION=0.8.28
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/simulations/simulators/contracts"
tools="${XDG_CACHE_HOME:-$HOME/.cache}/swap-engine/solc-$SOLC_VERSION"
if [ ! -d "$tools/node_modules/solc" ]; then
  mkdir -p "$tools"
  npm install --prefix "$tools" --no-audit --no-fund --silent "solc@$SOLC_VERSION" >&2
fi
check=0
[ "${1:-}" = "--check" ] && check=1
NODE_PATH="$tools/node_modules" CHECK=$check DIR="$dir" node - <<'JS'
const solc = require("solc");
const fs = require("fs");
const path = require("path");
const dir = process.env.DIR;
let stale = 0;
for (const file of fs.readdirSync(dir).filter((f) => f.endsWith(".sol"))) {
  const input = {
    language: "Solidity",
    sources: { [file]: { content: fs.readFileSync(path.join(dir, file), "utf8") } },
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: "cancun",
      outputSelection: { "*": { "*": ["evm.bytecode.object", "abi"] } },
    },
  };
  const out = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (out.errors || []).filter((e) => e.severity === "error");
  for (const e of out.errors || []) console.error(e.formattedMessage);
  if (errors.length) process.exit(1);
  for (const [name, c] of Object.entries(out.contracts[file])) {
    const outputs = {
      [`${name}.bin`]: c.evm.bytecode.object + "\n",
      [`${name}.abi.json`]: JSON.stringify(c.abi, null, 2) + "\n",
    };
    for (const [f, text] of Object.entries(outputs)) {
      const p = path.join(dir, f);
      if (process.env.CHECK === "1") {
        if (!fs.existsSync(p) || fs.readFileSync(p, "utf8") !== text) {
          console.error(`${f} is out of date: run scripts/build-contracts.sh`);
          stale++;
        }
      } else {
        fs.writeFileSync(p, text);
      }
    }
  }
}
process.exit(stale ? 1 : 0);
JS
