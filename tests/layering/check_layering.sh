#!/usr/bin/env bash
# The include rules between folders (docs/architecture.md, "The layers"): every #include "..." of a project
# header in a source file must point down the stack, never up (kernels/ sees only kernels/, engine/core/ and
# engine/util/); no file includes the removed kernels/cuda_ops.h; a kernels/ op header includes CUDA's
# headers only in its LAYERSKIP_WITH_CUDA part. Prints each violation as FILE:LINE: RULE and exits 1 when
# there is any. Usage: check_layering.sh SOURCE_DIR
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

# Each CUDA op is declared in its op's header beside the CPU op (kernels/<op>.h); the one header that held
# them all (kernels/cuda_ops.h) is gone, and no file of any folder includes it.
if [[ -e kernels/cuda_ops.h ]]; then
  echo "kernels/cuda_ops.h: declare each CUDA op in its op's header (kernels/<op>.h), not here"
  violations=$((violations + 1))
fi
while IFS=: read -r file line _; do
  echo "$file:$line: includes \"kernels/cuda_ops.h\"; include the op's own header (kernels/<op>.h)"
  violations=$((violations + 1))
done < <(find engine kernels transport flags coordinator worker cli bench tests proto -type f \
           \( -name '*.h' -o -name '*.cc' -o -name '*.cu' -o -name '*.cuh' \) -print0 2>/dev/null | sort -z |
         xargs -0 grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"kernels/cuda_ops\.h"' /dev/null || true)

# A kernels/ header other than the CUDA-only helpers (cuda_*.h, *.cuh) includes CUDA's headers only inside its
# `#if LAYERSKIP_WITH_CUDA` part, so a CPU-only build needs none (kernels/device_weight.h).
while IFS= read -r -d '' file; do
  while IFS=: read -r line include; do
    echo "$file:$line: $include outside #if LAYERSKIP_WITH_CUDA; a CPU-only build has no CUDA headers"
    violations=$((violations + 1))
  done < <(awk '/^[[:space:]]*#[[:space:]]*if/ { depth++; if ($0 ~ /LAYERSKIP_WITH_CUDA/) cuda = depth }
                /^[[:space:]]*#[[:space:]]*(else|elif)/ { if (cuda == depth) cuda = 0 }
                /^[[:space:]]*#[[:space:]]*endif/ { if (cuda == depth) cuda = 0; depth-- }
                /^[[:space:]]*#[[:space:]]*include[[:space:]]*<(cuda|cu[a-z]+_|nccl)/ && !cuda { print FNR ":" $0 }' "$file")
done < <(find kernels -maxdepth 1 -type f -name '*.h' ! -name 'cuda_*' -print0 | sort -z)

if (( violations )); then
  echo "layering: $violations violation(s)"
  exit 1
fi
echo "layering: ok"
