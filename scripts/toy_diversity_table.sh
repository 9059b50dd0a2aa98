#!/usr/bin/env bash
# The toy pair's diversity table of README ("The built-in toy pair"): toy-feature diversity and mode coverage of the base (25 DDIM steps),
# the DMD student, the DP-DMD student (4 steps each) and hybrid k=1 on the DMD student, n samples of each of the
# prompts in data/toy_prompts.txt with the same seeds, plus seconds per image. Usage: scripts/toy_diversity_table.sh [OUT] [N]
set -euo pipefail
OUT=${1:-results/toy_diversity}
N=${2:-64}
CLI=${CLI:-.venv/bin/diversity-cli}
PROMPTS=$(mktemp)
grep -v '^#' data/toy_prompts.txt | grep . > "$PROMPTS"
$CLI generate model=toy method=base n="$N" prompts="$PROMPTS" out="$OUT"
$CLI generate model=toy method=distilled n="$N" prompts="$PROMPTS" out="$OUT"
$CLI generate model=toy method=hybrid k=1 n="$N" prompts="$PROMPTS" out="$OUT"
$CLI generate model=toy_dpdmd method=distilled n="$N" prompts="$PROMPTS" out="$OUT"
$CLI diversity out="$OUT" metric=[toy_features,toy_coverage] bootstrap=200
rm -f "$PROMPTS"
