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

# Installs Debian's stunnel4 if no stunnel is on the PATH (the TLS tests terminate TLS in front
# of tansu with it) and exports KONSUMER_STUNNEL. Needs root (or sudo) for apt-get.
use_stunnel() {
    local found
    found="$(command -v stunnel4 || command -v stunnel || true)"
    if [ -z "$found" ]; then
        local sudo=""
        if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
        echo "installing stunnel4 (apt-get)" >&2
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q stunnel4 >&2 ||
            { $sudo apt-get update -q >&2 &&
                $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q stunnel4 >&2; }
        found="$(command -v stunnel4 || command -v stunnel)"
    fi
    KONSUMER_STUNNEL="$found"
    export KONSUMER_STUNNEL
    echo "KONSUMER_STUNNEL=$KONSUMER_STUNNEL" >&2
}
