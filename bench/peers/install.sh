#!/usr/bin/env bash
# Install the peers into their own virtualenvs: bash bench/peers/install.sh [WORK_DIR]
# WORK_DIR (default ../peers-work, outside the repository) gets joeynmt/venv and opennmt/venv.
# Both use the CPU build of torch 2.13.0 pinned by constraints.txt, as seq2seq does.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(realpath -m "${1:-$REPO/../peers-work}")
PY=${PYTHON:-python3.11}
PIN=(-c "$REPO/constraints.txt")
mkdir -p "$WORK/joeynmt" "$WORK/opennmt"

if [ ! -x "$WORK/joeynmt/venv/bin/python" ] || ! "$WORK/joeynmt/venv/bin/python" -c "import joeynmt" 2>/dev/null; then
  "$PY" -m venv "$WORK/joeynmt/venv"
  # JoeyNMT 2.3.0 imports importlib_metadata without declaring it
  "$WORK/joeynmt/venv/bin/pip" install -q "${PIN[@]}" torch==2.13.0 joeynmt==2.3.0 \
    importlib_metadata sentencepiece sacrebleu
fi

if [ ! -x "$WORK/opennmt/venv/bin/python" ] || ! "$WORK/opennmt/venv/bin/python" -c "import onmt" 2>/dev/null; then
  "$PY" -m venv "$WORK/opennmt/venv"
  # OpenNMT-py 3.5.1 pins torch<2.3: install it without dependencies, then the rest by hand
  "$WORK/opennmt/venv/bin/pip" install -q "${PIN[@]}" torch==2.13.0
  "$WORK/opennmt/venv/bin/pip" install -q --no-deps OpenNMT-py==3.5.1
  "$WORK/opennmt/venv/bin/pip" install -q "${PIN[@]}" configargparse "ctranslate2>=4,<5" \
    "tensorboard>=2.3" flask waitress "pyonmttok>=1.37,<2" pyyaml sacrebleu rapidfuzz \
    pyahocorasick fasttext-wheel spacy six sentencepiece
fi
"$WORK/joeynmt/venv/bin/python" -c "import joeynmt, torch; print('joeynmt', joeynmt.__version__, 'torch', torch.__version__)"
"$WORK/opennmt/venv/bin/python" -c "import onmt, torch; print('onmt', onmt.__version__, 'torch', torch.__version__)"
echo "peers installed in $WORK"
