#!/usr/bin/env bash
# The include rules between folders (docs/architecture.md, "The layers"): every #include "..." of a project
# header in a source file must point down the stack, never up. Prints each violation as
# FILE:LINE: RULE and exits 1 when there is any. Usage: check_layering.sh SOURCE_DIR
set -euo pipefail
cd "${1:-$(dirname "${BASH_SOURCE[0]}")/../..}"

# rule: files under FOLDER may include project headers only under the ALLOWED folders.
#   FOLDER                ALLOWED (space-separated prefixes)
rules=(
  "engine/util/|engine/util/"
  "engine/core/|engine/core/ engine/util/"
  "kernels/|kernels/ engine/core/ engine/util/"
  "engine/model/|engine/model/ engine/core/ engine/util/"
  "engine/tokenizer/|engine/tokenizer/ engine/util/"
  "engine/|engine/ kernels/"
  "transport/|transport/ engine/util/"
  "flags/|flags/"
)
# Project folders: an include that starts with one of these is a project header (others are system,
# Abseil, generated protos, nlohmann, ...).
project="engine/ kernels/ coordinator/ worker/ transport/ cli/ flags/ bench/ tests/ proto/"

violations=0
while IFS= read -r -d '' file; do
  allowed=""
  for rule in "${rules[@]}"; do
    folder="${rule%%|*}"
    if [[ "$file" == "$folder"* ]]; then allowed="${rule#*|}"; break; fi
  done
  [[ -z "$allowed" ]] && continue
  while IFS=: read -r line include; do
    inc="${include#*\"}"; inc="${inc%%\"*}"
    is_project=0
    for p in $project; do [[ "$inc" == "$p"* ]] && is_project=1; done
    (( is_project )) || continue
    ok=0
    for a in $allowed; do [[ "$inc" == "$a"* ]] && ok=1; done
    if (( !ok )); then
      echo "$file:$line: includes \"$inc\"; files under ${file%%/*}/... may include only: $allowed"
      violations=$((violations + 1))
    fi
  done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file" || true)
done < <(find engine kernels transport flags -type f \( -name '*.h' -o -name '*.cc' -o -name '*.cu' -o -name '*.cuh' \) -print0 | sort -z)

if (( violations )); then
  echo "layering: $violations include(s) point up the stack"
  exit 1
fi
echo "layering: ok"
