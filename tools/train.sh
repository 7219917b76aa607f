#!/usr/bin/env bash
# Trains the bundled small model (assets/model) from scratch and regenerates everything derived from it:
# the speech bank, the model, the parity cases, the held-out eval set and the demo recording. Seeded: the
# same machine gives the same files. Not part of CI (about 24 hours on 2 cores); the results are committed.
#
#   tools/train.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3  # Debian's Python, where python3-torch lives
WORK=tools/train/work

PACKAGES=(python3-torch python3-numpy libopenblas0-pthread espeak-ng sox)
tools/apt_install.sh "${PACKAGES[@]}"
tools/setup.sh  # builds conflux (for the evaluation at the end)

mkdir -p "$WORK"
[ -f "$WORK/bank_train.npz" ] || $PY tools/train/speech.py "$WORK" 12000
# The shipped model's schedule: 5000 steps from scratch; a warm restart continuing the same seeded data
# stream to step 8000; then a speech-heavy phase (more command and combined turns, fewer scene turns),
# begun on a 20000-step cosine and cut at 8500, then on a cosine ending at 12500, cut at 12000; then a
# second speech-heavy phase on a new 20000-step cosine cut at 13500, a phase with more scene turns again
# on a cosine ending at 17500, cut at 17000, and a low-rate phase (2.1e-4 down) cut at 18000; then 32
# extra typed scene questions per batch (frames drawn at twice the patch grid) on a warm restart (4.4e-4
# at 18000) cut at 18500; the same with the auxiliary shape head (weight 0.5), cut at 20500; and with that
# head's weight raised to 1.5, cut at 24500 (two releases ago); then phases 11 and 12 (below).
$PY tools/train/train.py --out assets/model --steps 5000 | tee "$WORK/train.log"
$PY tools/train/train.py --out assets/model --steps 8000 --resume | tee -a "$WORK/train.log"
$PY tools/train/train.py --out assets/model --steps 20000 --stop-at 8500 --resume --mix 0.6,0.1,0.3 | tee -a "$WORK/train.log"
$PY tools/train/train.py --out assets/model --steps 12500 --stop-at 12000 --resume --mix 0.5,0.2,0.3 | tee -a "$WORK/train.log"
$PY tools/train/train.py --out assets/model --steps 20000 --stop-at 13500 --resume --mix 0.6,0.15,0.25 | tee -a "$WORK/train.log"
$PY tools/train/train.py --out assets/model --steps 17500 --stop-at 17000 --resume --mix 0.45,0.3,0.25 | tee -a "$WORK/train.log"
$PY tools/train/train.py --out assets/model --lr 1e-3 --steps 22000 --stop-at 18000 --resume --mix 0.45,0.35,0.2 | tee -a "$WORK/train.log"
# Phases 8-10 share one schedule and data mix; they differ in where they stop and in the auxiliary head.
SHAPES=(--lr 1.5e-3 --steps 26000 --resume --mix 0.55,0.1,0.35 --extra-scenes 32 --render-scale 2)
$PY tools/train/train.py --out assets/model "${SHAPES[@]}" --stop-at 18500 | tee -a "$WORK/train.log"
$PY tools/train/train.py --out assets/model "${SHAPES[@]}" --stop-at 20500 --aux-shape 0.5 --aux-layer 3 | tee -a "$WORK/train.log"
$PY tools/train/train.py --out assets/model "${SHAPES[@]}" --stop-at 24500 --aux-shape 1.5 --aux-layer 3 | tee -a "$WORK/train.log"
# Phase 11: the same mix and heads from the step 24500 export with a fresh optimizer (the state of that
# release was lost; a shape head started as a linear probe), at ~2.9e-4 falling slowly (--lr 7.5e-4 on a
# 40000-step cosine); the previous release is the mean of its exports at 25250, 25500 and 25750.
$PY tools/train/train.py --out "$WORK/p11" --init-from assets/model --start-step 24500 --lr 7.5e-4 --steps 40000 \
  --stop-at 25750 --mix 0.55,0.1,0.35 --extra-scenes 32 --render-scale 2 --aux-shape 1.5 --aux-layer 3 \
  --eval-every 250 --keep-exports | tee -a "$WORK/train.log"
$PY tools/train/average.py "$WORK/p11-avg" "$WORK/p11-step25250" "$WORK/p11-step25500" "$WORK/p11-step25750"
cp "$WORK/p11-avg/model.safetensors" assets/model/model.safetensors
# Phase 12, thinking: every turn laid out as the session runs a thinking model with the frame shown again
# at turn end (--think), from the phase 11 average with a fresh optimizer, shares 45/10/45, at ~4e-4
# falling slowly (--lr 1.2e-3 on a 40000-step cosine), exported every 250 steps and then 125. At 26750
# the answer's tokens are weighted 5 against the thought's and fewer of the extra questions ask for a
# whole description; at 27000 frameless turns that must read the answer off a given thought join the
# batches (24, then 48 from 27375). The release is the mean of the exports from 27125 to 27500, and the
# exports' generation_config.json turns thinking and the frame at turn end on.
THINK=(--lr 1.2e-3 --steps 40000 --mix 0.45,0.1,0.45 --extra-scenes 32 --render-scale 2 --aux-shape 1.5 --aux-layer 3
  --keep-exports --think)
$PY tools/train/train.py --out "$WORK/p12" --init-from assets/model --start-step 25750 \
  "${THINK[@]}" --extra-describe 0.3 --eval-every 250 --stop-at 26750 | tee -a "$WORK/train.log"
$PY tools/train/train.py --out "$WORK/p12" --resume "${THINK[@]}" --extra-describe 0.15 \
  --answer-weight 5 --eval-every 250 --stop-at 27000 | tee -a "$WORK/train.log"
$PY tools/train/train.py --out "$WORK/p12" --resume "${THINK[@]}" --extra-describe 0.15 \
  --answer-weight 5 --blind-lookups 24 --eval-every 125 --stop-at 27375 | tee -a "$WORK/train.log"
$PY tools/train/train.py --out "$WORK/p12" --resume "${THINK[@]}" --extra-describe 0.15 \
  --answer-weight 5 --blind-lookups 48 --eval-every 125 --stop-at 27500 | tee -a "$WORK/train.log"
# Phase 13, the question restated: the thought of a question about the frame (any but "what do you see")
# ends with the question as text (--restate-question), so the answer is a lookup from text to text. Phase
# 12's run continues so to 28250; then 900 steps of typed frameless lookups alone (lookups.py: 600, and
# 300 more with a fresh optimizer), after which the model answers from a given thought (192 of 192 held
# out) and has forgotten the rest; then phase 12's recipe, restated, from that export with a fresh
# optimizer to 29250. The previous release is the mean of the exports from 28875 to 29250.
RESTATE=(--extra-describe 0.15 --answer-weight 5 --blind-lookups 48 --restate-question --eval-every 125)
$PY tools/train/train.py --out "$WORK/p13" --resume "${THINK[@]}" "${RESTATE[@]}" --stop-at 28250 \
  | tee -a "$WORK/train.log"
$PY tools/train/lookups.py --init-from "$WORK/p13-step28250" --out "$WORK/lookups600" --steps 600 \
  --restate-question | tee -a "$WORK/train.log"
$PY tools/train/lookups.py --init-from "$WORK/lookups600" --out "$WORK/lookups900" --steps 300 \
  --restate-question | tee -a "$WORK/train.log"
$PY tools/train/train.py --out "$WORK/p13b" --init-from "$WORK/lookups900" --start-step 28250 "${THINK[@]}" \
  "${RESTATE[@]}" --stop-at 29250 | tee -a "$WORK/train.log"
$PY tools/train/average.py "$WORK/p13-avg" "$WORK/p13b-step28875" "$WORK/p13b-step29000" "$WORK/p13b-step29125" \
  "$WORK/p13b-step29250"
# Phase 14, hearing: phase 13b's run continued with more spoken turns (shares 60/5/35, 24 sequences, 24
# extra typed scene questions and 32 frameless lookups per step) and a training-only head that reads each
# audio frame's log-mel spectrum off its token after layer 1 (--aux-spectrum 0.5), to step 30500. The
# previous release is the mean of the exports from 29875 to 30375.
HEARING=(--batch 24 --mix 0.6,0.05,0.35 --extra-scenes 24 --blind-lookups 32 --aux-spectrum 0.5 --aux-spectrum-layer 1)
$PY tools/train/train.py --out "$WORK/p14" --resume "${THINK[@]}" "${RESTATE[@]}" "${HEARING[@]}" --stop-at 30500 \
  | tee -a "$WORK/train.log"
# Phase 15, digit strings: phase 14 continued with a second bank in which every two-digit string is spoken
# 5 times and every three-digit string twice (--digit-bank), to step 32250. The previous release was the
# mean of the exports from 30625 to 31125; this release is the mean of those from 31750 to 32250.
[ -f "$WORK/bank_digits.npz" ] || $PY tools/train/speech.py "$WORK" --digits 5 2
$PY tools/train/train.py --out "$WORK/p15" --resume "${THINK[@]}" "${RESTATE[@]}" "${HEARING[@]}" --digit-bank \
  --stop-at 32250 | tee -a "$WORK/train.log"
$PY tools/train/average.py "$WORK/p15-avg" "$WORK/p15-step31750" "$WORK/p15-step31875" "$WORK/p15-step32000" \
  "$WORK/p15-step32125" "$WORK/p15-step32250"
for f in model.safetensors generation_config.json; do cp "$WORK/p15-avg/$f" assets/model/; done
$PY tools/train/parity.py --model assets/model --out tests/data/small-model
$PY tools/train/make_recordings.py eval --out tests/data/eval-set --per-task 8
$PY tools/train/make_recordings.py demo --out assets/demo
build/app/conflux eval --model assets/model --set tests/data/eval-set
