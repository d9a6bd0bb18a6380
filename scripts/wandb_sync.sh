#!/usr/bin/env bash
# Upload the offline wandb runs under a directory (default: outputs), e.g. after copying a sweep back from a cluster
# whose nodes cannot reach wandb. Each run keeps its id (run key + sweep + code version), so syncing twice, or
# syncing a run that was resumed, updates the same wandb run instead of making a new one.
#
#   bash scripts/wandb_sync.sh outputs/sweeps/methods_x_scales             # every offline run of one sweep
#   WANDB_PROJECT=my_project bash scripts/wandb_sync.sh outputs            # into another project
#   bash scripts/wandb_sync.sh --dry-run outputs                           # list what would be synced
#
# Needs `wandb login` (or WANDB_API_KEY) on the machine that runs it; the runs stay where they are.
set -euo pipefail

dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then
    dry_run=1
    shift
fi
root="${1:-outputs}"
if [[ ! -d "$root" ]]; then
    echo "wandb_sync.sh: $root is not a directory (give a run, sweep or outputs directory)" >&2
    exit 1
fi
wandb_bin="${WANDB_BIN:-wandb}"
mapfile -t runs < <(find "$root" -type d -name "offline-run-*" -path "*/wandb/*" | sort)
if [[ ${#runs[@]} -eq 0 ]]; then
    echo "wandb_sync.sh: no offline wandb runs under $root (runs made with logger=wandb leave <run dir>/wandb/offline-run-*)" >&2
    exit 1
fi
echo "${#runs[@]} offline run(s) under $root"
if [[ $dry_run -eq 1 ]]; then
    printf '%s\n' "${runs[@]}"
    exit 0
fi
project_args=()
if [[ -n "${WANDB_PROJECT:-}" ]]; then
    project_args=(--project "$WANDB_PROJECT")
fi
"$wandb_bin" sync "${project_args[@]}" "${runs[@]}"
