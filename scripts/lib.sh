# Shared by the scripts: source it from the repository root.

# Installs tansu if needed (scripts/install-tansu.sh, cached under ~/.cache/konsumer) and exports
# KONSUMER_TANSU, the binary the tests and benchmarks start.
use_tansu() {
    local out
    out="$(bash scripts/install-tansu.sh)"
    KONSUMER_TANSU="$(printf '%s\n' "$out" | tail -n 1)"
    export KONSUMER_TANSU
    echo "KONSUMER_TANSU=$KONSUMER_TANSU" >&2
}
