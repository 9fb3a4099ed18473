#!/usr/bin/env bash
# The nginx baseline of `make bench`: two Debian nginx instances on loopback
# making the same hops as a security-server pair, without signing or logging.
#
#   client --HTTP--> nginx A --mTLS (TLS 1.3, keep-alive)--> nginx B --HTTP--> backend
#
# Certificates come from a throwaway openssl CA (ECDSA P-256, as the sandbox).
# nginx B routes /soap/ to the SOAP backend and everything else to the REST
# backend.
#
#   scripts/bench-nginx.sh start DIR REST_HOSTPORT SOAP_HOSTPORT LOADGEN
#       writes DIR/nginx.env (NGINX_URL, NGINX_PIDS) once both answer
#   scripts/bench-nginx.sh stop DIR
set -euo pipefail

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR ..." >&2; exit 2; }

stop() {
  for f in "$dir"/a/nginx.pid "$dir"/b/nginx.pid; do
    [ -s "$f" ] || continue
    pid=$(cat "$f")
    kill -QUIT "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$f"
  done
}

if [ "$cmd" = stop ]; then stop; exit 0; fi
[ "$cmd" = start ] || { echo "usage: $0 start|stop DIR ..." >&2; exit 2; }
rest=${3:?REST backend host:port}
soap=${4:?SOAP backend host:port}
loadgen=${5:?loadgen binary}
command -v nginx >/dev/null || { echo "bench-nginx: nginx is not installed" >&2; exit 1; }

mkdir -p "$dir/pki" "$dir/a" "$dir/b"
# The workers (user nobody when started as root) write nothing but must
# traverse the prefix; keys stay 0600, read by the master before it forks.
chmod 0755 "$dir" "$dir/a" "$dir/b"
pki=$dir/pki
if [ ! -s "$pki/ca.pem" ]; then
  (
    cd "$pki"
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=bench nginx CA" -out ca.pem 2>/dev/null
    for who in a b; do
      openssl ecparam -name prime256v1 -genkey -noout -out "$who.key" 2>/dev/null
      openssl req -new -key "$who.key" -subj "/CN=$who.bench.local" -out "$who.csr" 2>/dev/null
      printf 'subjectAltName=DNS:%s.bench.local,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\n' "$who" > "$who.ext"
      openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -sha256 \
        -extfile "$who.ext" -out "$who.pem" 2>/dev/null
    done
    chmod 0600 ./*.key
  )
fi

common() { # $1 = instance dir
  cat <<EOF
daemon off;
master_process on;
worker_processes auto;
pid $1/nginx.pid;
error_log $1/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; multi_accept on; }
EOF
}
temps() { # $1 = instance dir
  for t in client_body proxy fastcgi uwsgi scgi; do echo "  ${t}_temp_path $1/tmp-$t;"; done
}
proxy_opts='proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering on;'

write_configs() { # $1 = port A, $2 = port B
  {
    common "$dir/b"
    cat <<EOF
http {
  access_log off;
$(temps "$dir/b")
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  upstream rest { server $rest; keepalive 256; }
  upstream soap { server $soap; keepalive 256; }
  server {
    listen 127.0.0.1:$2 ssl backlog=4096;
    ssl_certificate $pki/b.pem;
    ssl_certificate_key $pki/b.key;
    ssl_client_certificate $pki/ca.pem;
    ssl_verify_client on;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:b:10m;
    location /soap/ { proxy_pass http://soap/; $proxy_opts }
    location / { proxy_pass http://rest; $proxy_opts }
  }
}
EOF
  } > "$dir/b/nginx.conf"
  {
    common "$dir/a"
    cat <<EOF
http {
  access_log off;
$(temps "$dir/a")
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  upstream b { server 127.0.0.1:$2; keepalive 256; }
  server {
    listen 127.0.0.1:$1 backlog=4096;
    location / {
      proxy_pass https://b;
      $proxy_opts
      proxy_ssl_certificate $pki/a.pem;
      proxy_ssl_certificate_key $pki/a.key;
      proxy_ssl_trusted_certificate $pki/ca.pem;
      proxy_ssl_verify on;
      proxy_ssl_name b.bench.local;
      proxy_ssl_protocols TLSv1.2 TLSv1.3;
      proxy_ssl_session_reuse on;
    }
  }
}
EOF
  } > "$dir/a/nginx.conf"
}

start_one() { # $1 = instance dir; returns once its pid file exists, or fails
  nginx -p "$1" -c "$1/nginx.conf" -e "$1/error.log" >"$1/stdout.log" 2>&1 &
  local launcher=$!
  for _ in $(seq 50); do
    [ -s "$1/nginx.pid" ] && return 0
    kill -0 "$launcher" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# nginx wants its ports in its configuration: take two the OS just had free
# and try again with new ones if another process took them in between.
for attempt in 1 2 3; do
  read -r pa pb < <("$loadgen" freeport -n 2)
  write_configs "$pa" "$pb"
  nginx -t -p "$dir/b" -c "$dir/b/nginx.conf" -e "$dir/b/error.log" >/dev/null 2>&1 || { cat "$dir/b/error.log" >&2; exit 1; }
  if start_one "$dir/b" && start_one "$dir/a"; then
    url="http://127.0.0.1:$pa"
    for _ in $(seq 50); do
      if curl -fsS -o /dev/null "$url/bench?x=1" 2>/dev/null; then
        printf 'NGINX_URL=%s\nNGINX_PIDS=%s,%s\n' "$url" "$(cat "$dir/a/nginx.pid")" "$(cat "$dir/b/nginx.pid")" > "$dir/nginx.env"
        exit 0
      fi
      sleep 0.1
    done
  fi
  echo "bench-nginx: attempt $attempt failed:" >&2
  tail -n 5 "$dir"/a/error.log "$dir"/b/error.log >&2 2>/dev/null || true
  stop
done
exit 1
