#!/usr/bin/env bash
# Set up, train the bundled English→German demo on the CPU, show translations and test BLEU.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup.sh
run=runs/demo-$(date +%Y%m%d-%H%M%S)
.venv/bin/seq2seq train recipes/demo.yaml --out "$run"
echo
echo "== a few held-out sentences =="
head -n 6 data/demo/test.en > "$run/sample.en"
.venv/bin/seq2seq -q translate "$run" -i "$run/sample.en" -o "$run/sample.de"
paste -d '\n' "$run/sample.en" "$run/sample.de" /dev/null | sed 's/^/  /'
echo "== BLEU and chrF on the 300 held-out test sentences (data/demo/test.*) =="
.venv/bin/seq2seq -q evaluate "$run" --source data/demo/test.en --reference data/demo/test.de \
  --metric bleu,chrf -o "$run/test.hyp.de"
echo "run dir: $run   wall time: $(( $(date +%s) - start )) s"
