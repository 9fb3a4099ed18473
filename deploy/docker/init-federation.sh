#!/bin/sh
# Makes a two-institution Passerelle federation with the CLI alone: the CA,
# the TSA, the hash registry, the signed federation directory, and both
# institutions' keys and certificates. It is the init job of
# deploy/docker-compose.yaml, and test/e2e runs it on loopback folders.
#
# In production each institution generates its own keys (`passerelle keys
# generate`) and enrolls them (`passerelle keys enroll`, approved by the CA
# administrator); here one job does it for both, to get a demo federation up
# with one command.
#
# Every setting is an environment variable with the compose default. It runs
# once: if the trust directory already holds directory.pem it does nothing;
# a half-finished run (an error) leaves the volumes to be wiped
# (docker compose down -v) before trying again.
set -eu
umask 077

P=${PASSERELLE:-passerelle}
INSTANCE=${INSTANCE:-PAS}
MEMBER_A=${MEMBER_A:-$INSTANCE/GOV/1001}     # institution A: the consumer (client subsystem)
SUBSYSTEM_A=${SUBSYSTEM_A:-client}
MEMBER_B=${MEMBER_B:-$INSTANCE/GOV/2002}     # institution B: the provider (services subsystem)
SUBSYSTEM_B=${SUBSYSTEM_B:-services}
FEDERATION_MEMBER=${FEDERATION_MEMBER:-$INSTANCE/GOV/FEDERATION}  # bound into the directory signer's certificate

CA_HOST=${CA_HOST:-ca}
CA_PORT=${CA_PORT:-8888}
TSA_HOST=${TSA_HOST:-tsa}
TSA_PORT=${TSA_PORT:-3161}
REGISTRY_HOST=${REGISTRY_HOST:-registry}
REGISTRY_GRPC_PORT=${REGISTRY_GRPC_PORT:-7443}
REGISTRY_HTTP_PORT=${REGISTRY_HTTP_PORT:-8081}
REGISTRY_ORIGIN=${REGISTRY_ORIGIN:-registry.passerelle.example/log}
SS_A_HOST=${SS_A_HOST:-ss-a}
SS_B_HOST=${SS_B_HOST:-ss-b}
PROVIDER_PORT=${PROVIDER_PORT:-5500}
DIRECTORY_EXPIRY=${DIRECTORY_EXPIRY:-24h}
POLL_INTERVAL=${POLL_INTERVAL:-60s}

CA_DIR=${CA_DIR:-/var/lib/passerelle/ca}
TSA_DIR=${TSA_DIR:-/var/lib/passerelle/tsa}
REGISTRY_DIR=${REGISTRY_DIR:-/var/lib/passerelle/registry}
DIRECTORY_DIR=${DIRECTORY_DIR:-/var/lib/passerelle/directory}
SIGNER_DIR=${SIGNER_DIR:-/etc/passerelle/directory-signer}
TRUST_DIR=${TRUST_DIR:-/etc/passerelle/trust}
SS_A_KEYS=${SS_A_KEYS:-/federation/ss-a}
SS_B_KEYS=${SS_B_KEYS:-/federation/ss-b}

if [ -f "$TRUST_DIR/directory.pem" ]; then
    echo "init-federation: $TRUST_DIR/directory.pem exists: already initialized, nothing to do"
    exit 0
fi

OCSP_URL="http://$CA_HOST:$CA_PORT/ocsp"
step() { echo "==> $*"; }
# leaf FILE: the first certificate of a PEM chain.
leaf() { sed '/-----END CERTIFICATE-----/q' "$1"; }

step "CA ($INSTANCE), OCSP at $OCSP_URL"
"$P" ca init --dir "$CA_DIR" --instance "$INSTANCE" --ocsp-url "$OCSP_URL" --operator init

step "TSA, certified by the CA"
"$P" tsa init --dir "$TSA_DIR" --ca-dir "$CA_DIR" --operator init

step "hash registry $REGISTRY_ORIGIN"
"$P" registry init --dir "$REGISTRY_DIR" --origin "$REGISTRY_ORIGIN"
"$P" ca sign --dir "$CA_DIR" --csr "$REGISTRY_DIR/tls.csr" --usage registry \
    --host "$REGISTRY_HOST" --host localhost --out "$REGISTRY_DIR/tls.pem" --operator init

step "institutions' keys: $MEMBER_A on $SS_A_HOST, $MEMBER_B on $SS_B_HOST"
institution() { # MEMBER KEYS_DIR HOST
    for usage in auth sign; do
        "$P" keys generate --dir "$2" --member "$1" --usage "$usage"
    done
    "$P" ca sign --dir "$CA_DIR" --csr "$2/auth.csr" --member "$1" --usage auth \
        --host "$3" --host localhost --out "$2/auth.pem" --operator init
    "$P" ca sign --dir "$CA_DIR" --csr "$2/sign.csr" --member "$1" --usage sign \
        --out "$2/sign.pem" --operator init
    # The admin API's bearer token (0600, 64 hex digits).
    od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$2/admin.token"
    echo >> "$2/admin.token"
}
institution "$MEMBER_A" "$SS_A_KEYS" "$SS_A_HOST"
institution "$MEMBER_B" "$SS_B_KEYS" "$SS_B_HOST"

step "directory signer"
"$P" keys generate --dir "$SIGNER_DIR" --member "$FEDERATION_MEMBER" --usage directory
"$P" ca sign --dir "$CA_DIR" --csr "$SIGNER_DIR/directory.csr" --member "$FEDERATION_MEMBER" \
    --usage directory --cn "Passerelle $INSTANCE directory" --out "$SIGNER_DIR/directory.pem" --operator init

step "trust directory $TRUST_DIR"
umask 022
mkdir -p "$TRUST_DIR"
cp "$CA_DIR/ca.pem" "$TRUST_DIR/ca.pem"
leaf "$TSA_DIR/tsa.pem" > "$TRUST_DIR/tsa.pem"
cp "$REGISTRY_DIR/registry.vkey" "$TRUST_DIR/registry.vkey"

step "federation directory"
"$P" directory init --dir "$DIRECTORY_DIR" --instance "$INSTANCE" --expiry "$DIRECTORY_EXPIRY"
"$P" directory add-member --dir "$DIRECTORY_DIR" --member "$MEMBER_A" --name "Institution A" --subsystem "$SUBSYSTEM_A"
"$P" directory add-member --dir "$DIRECTORY_DIR" --member "$MEMBER_B" --name "Institution B" --subsystem "$SUBSYSTEM_B"
"$P" directory add-server --dir "$DIRECTORY_DIR" --owner "$MEMBER_A" --code ss1 \
    --address "$SS_A_HOST:$PROVIDER_PORT" --tls-cert "$SS_A_KEYS/auth.pem" --subsystem "$SUBSYSTEM_A"
"$P" directory add-server --dir "$DIRECTORY_DIR" --owner "$MEMBER_B" --code ss1 \
    --address "$SS_B_HOST:$PROVIDER_PORT" --tls-cert "$SS_B_KEYS/auth.pem" --subsystem "$SUBSYSTEM_B"
"$P" directory add-ca --dir "$DIRECTORY_DIR" --cert "$CA_DIR/ca.pem" --ocsp "$OCSP_URL"
"$P" directory add-tsa --dir "$DIRECTORY_DIR" --url "http://$TSA_HOST:$TSA_PORT/" --cert "$TSA_DIR/tsa.pem"
"$P" directory add-registry --dir "$DIRECTORY_DIR" --name "$REGISTRY_ORIGIN" \
    --grpc "$REGISTRY_HOST:$REGISTRY_GRPC_PORT" --http "http://$REGISTRY_HOST:$REGISTRY_HTTP_PORT/" \
    --verifier-key "$REGISTRY_DIR/registry.vkey"
"$P" directory set --dir "$DIRECTORY_DIR" --poll-interval "$POLL_INTERVAL"
"$P" directory sign --dir "$DIRECTORY_DIR" --key "$SIGNER_DIR/directory.key" --cert "$SIGNER_DIR/directory.pem"

# Last: its presence marks a finished run.
leaf "$SIGNER_DIR/directory.pem" > "$TRUST_DIR/directory.pem.tmp"
mv "$TRUST_DIR/directory.pem.tmp" "$TRUST_DIR/directory.pem"
"$P" directory verify --file "$DIRECTORY_DIR/directory.jws" --trust "$TRUST_DIR" --instance "$INSTANCE"
step "done"
