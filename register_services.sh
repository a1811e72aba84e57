#!/usr/bin/env bash
# Apply kong/kong.yaml (the single source of truth for routes) to a running Kong through its Admin API.
#
#   ./register_services.sh            # KONG_ADMIN_URL defaults to http://localhost:8001
#
# - DB-less Kong (GET / -> configuration.database == "off"): POST /config?check_hash=1 with the file;
#   Kong answers 304 when the configuration is already loaded (reported as "unchanged").
# - DB-backed Kong: `deck gateway sync` when a decK >= 1.28 is installed, otherwise idempotent Admin API
#   PUTs per entity (services, routes, consumers, jwt credentials, plugins with stable ids); entities that
#   are not in the file are left alone in that fallback (decK removes them).
# - The jwt credential's rsa_public_key in kong.yaml is a placeholder. It is replaced, in a temporary copy,
#   by the user-service's real public key: the PEM file MART_JWT_PUBLIC_KEY_FILE if set, otherwise the first
#   RSA key of the JWKS at MART_JWKS_URL (default http://localhost:8006/.well-known/jwks.json).
#   MART_ALLOW_PLACEHOLDER_KEY=1 applies the placeholder when no key can be had (protected routes then
#   answer 401 at the edge until the script is run again).
#
# Exit status: 0 when Kong holds the configuration (changed or not), non-zero with a message otherwise.
set -euo pipefail

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KONG_ADMIN_URL="${KONG_ADMIN_URL:-http://localhost:8001}"
KONG_ADMIN_URL="${KONG_ADMIN_URL%/}"
KONG_CONFIG_FILE="${KONG_CONFIG_FILE:-$ROOT_DIR/kong/kong.yaml}"
MART_JWKS_URL="${MART_JWKS_URL:-http://localhost:8006/.well-known/jwks.json}"
CURL_TIMEOUT="${CURL_TIMEOUT:-10}"

log() { printf 'register_services: %s\n' "$*"; }
die() { printf 'register_services: ERROR: %s\n' "$*" >&2; exit 1; }

command -v curl >/dev/null 2>&1 || die "curl is required"
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if [[ -x "$ROOT_DIR/.venv/bin/python" ]]; then PYTHON="$ROOT_DIR/.venv/bin/python"
  elif command -v python3 >/dev/null 2>&1; then PYTHON="python3"
  else die "python3 is required"; fi
fi
[[ -r "$KONG_CONFIG_FILE" ]] || die "cannot read $KONG_CONFIG_FILE"

WORK_DIR="$(mktemp -d)"
trap 'rm -rf "$WORK_DIR"' EXIT

# --- 1. Is Kong there, and is it DB-less? -------------------------------------------------------------
status="$(curl -sS -o "$WORK_DIR/root.json" -w '%{http_code}' --max-time "$CURL_TIMEOUT" \
  "$KONG_ADMIN_URL/" 2>"$WORK_DIR/curl.err")" \
  || die "Kong Admin API unreachable at $KONG_ADMIN_URL ($(tr '\n' ' ' <"$WORK_DIR/curl.err")). Is Kong running? Set KONG_ADMIN_URL."
[[ "$status" == "200" ]] || die "Kong Admin API at $KONG_ADMIN_URL answered HTTP $status to GET /"

read -r KONG_VERSION KONG_DATABASE < <("$PYTHON" - "$WORK_DIR/root.json" <<'PY'
import json, sys
try:
    info = json.load(open(sys.argv[1]))
except ValueError:
    print("? ?")
    raise SystemExit(0)
print(info.get("version", "?"), (info.get("configuration") or {}).get("database", "?"))
PY
)
[[ "$KONG_DATABASE" != "?" ]] || die "GET $KONG_ADMIN_URL/ did not return Kong's node information (not a Kong Admin API?)"
log "Kong $KONG_VERSION at $KONG_ADMIN_URL, database=$KONG_DATABASE"

# --- 2. The user-service public key --------------------------------------------------------------------
PEM_FILE="$WORK_DIR/jwt_public_key.pem"
if [[ -n "${MART_JWT_PUBLIC_KEY_FILE:-}" ]]; then
  [[ -r "$MART_JWT_PUBLIC_KEY_FILE" ]] || die "MART_JWT_PUBLIC_KEY_FILE=$MART_JWT_PUBLIC_KEY_FILE is not readable"
  grep -q -- '-----BEGIN PUBLIC KEY-----' "$MART_JWT_PUBLIC_KEY_FILE" \
    || die "$MART_JWT_PUBLIC_KEY_FILE is not a PEM public key (-----BEGIN PUBLIC KEY-----)"
  cp "$MART_JWT_PUBLIC_KEY_FILE" "$PEM_FILE"
  log "JWT public key from $MART_JWT_PUBLIC_KEY_FILE"
elif jwks_status="$(curl -sS -o "$WORK_DIR/jwks.json" -w '%{http_code}' --max-time "$CURL_TIMEOUT" \
      "$MART_JWKS_URL" 2>/dev/null)" && [[ "$jwks_status" == "200" ]]; then
  "$PYTHON" - "$WORK_DIR/jwks.json" "$PEM_FILE" <<'PY' || die "no usable RSA key in the JWKS at $MART_JWKS_URL"
# JWK (n, e) -> PEM SubjectPublicKeyInfo, standard library only.
import base64, json, sys, textwrap

def b64u(s):
    return int.from_bytes(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)), "big")

def der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b

def tlv(tag, body):
    return bytes([tag]) + der_len(len(body)) + body

def der_int(i):
    b = i.to_bytes(i.bit_length() // 8 + 1, "big")
    return tlv(0x02, b)

keys = [k for k in json.load(open(sys.argv[1])).get("keys", []) if k.get("kty") == "RSA"]
signing = [k for k in keys if k.get("use", "sig") == "sig"]
if not signing:
    raise SystemExit(1)
k = signing[0]
rsa_pub = tlv(0x30, der_int(b64u(k["n"])) + der_int(b64u(k["e"])))
alg_id = tlv(0x30, tlv(0x06, bytes.fromhex("2a864886f70d010101")) + b"\x05\x00")
spki = tlv(0x30, alg_id + tlv(0x03, b"\x00" + rsa_pub))
body = "\n".join(textwrap.wrap(base64.b64encode(spki).decode(), 64))
open(sys.argv[2], "w").write(f"-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n")
print(f"register_services: JWT public key kid={k.get('kid', '?')} from the JWKS ({len(keys)} RSA key(s))")
PY
  log "JWKS fetched from $MART_JWKS_URL"
elif [[ "${MART_ALLOW_PLACEHOLDER_KEY:-0}" == "1" ]]; then
  log "WARNING: no JWT public key (MART_JWT_PUBLIC_KEY_FILE unset, $MART_JWKS_URL unreachable);"
  log "WARNING: applying the placeholder key: protected routes answer 401 until this script runs again"
  : >"$PEM_FILE"
else
  die "cannot get the JWT public key: MART_JWT_PUBLIC_KEY_FILE is unset and $MART_JWKS_URL is unreachable (start user_service first, or set MART_ALLOW_PLACEHOLDER_KEY=1)"
fi

# --- 3. Render the configuration with the real key -----------------------------------------------------
RENDERED="$WORK_DIR/kong.yaml"
"$PYTHON" - "$KONG_CONFIG_FILE" "$PEM_FILE" "$RENDERED" <<'PY' || die "could not render $KONG_CONFIG_FILE"
import re, sys
src, pem_file, out = sys.argv[1:4]
text = open(src).read()
pem = open(pem_file).read().strip()
pattern = re.compile(r"^(?P<indent>[ \t]*)-----BEGIN PUBLIC KEY-----\n.*?^(?P=indent)-----END PUBLIC KEY-----$",
                     re.M | re.S)
found = pattern.findall(text)
if len(found) != 1:
    sys.exit(f"expected exactly one PEM public key block in {src}, found {len(found)}")
if pem:
    def repl(m):
        return "\n".join(m.group("indent") + line for line in pem.splitlines())
    text = pattern.sub(repl, text)
open(out, "w").write(text)
PY

# --- 4a. DB-less: POST /config --------------------------------------------------------------------------
if [[ "$KONG_DATABASE" == "off" ]]; then
  status="$(curl -sS -o "$WORK_DIR/config.out" -w '%{http_code}' --max-time 60 \
    -X POST "$KONG_ADMIN_URL/config?check_hash=1" -F "config=@$RENDERED" 2>"$WORK_DIR/curl.err")" \
    || die "POST $KONG_ADMIN_URL/config failed: $(tr '\n' ' ' <"$WORK_DIR/curl.err")"
  case "$status" in
    201|200) log "changed: declarative configuration loaded into DB-less Kong (HTTP $status)" ;;
    304) log "unchanged: Kong already runs this configuration (HTTP 304)" ;;
    *) cat "$WORK_DIR/config.out" >&2 || true; echo >&2
       die "Kong rejected the configuration: POST /config answered HTTP $status" ;;
  esac
  exit 0
fi

# --- 4b. DB-backed with decK ----------------------------------------------------------------------------
if command -v deck >/dev/null 2>&1 && deck gateway --help >/dev/null 2>&1; then
  log "DB-backed Kong: deck gateway sync ($(deck version 2>/dev/null | head -n1))"
  deck gateway sync --kong-addr "$KONG_ADMIN_URL" "$RENDERED" || die "deck gateway sync failed"
  exit 0
fi

# --- 4c. DB-backed without decK: idempotent PUTs -------------------------------------------------------
log "DB-backed Kong without decK >= 1.28: applying entities with Admin API PUTs"
"$PYTHON" - "$RENDERED" "$KONG_ADMIN_URL" <<'PY' || die "Admin API sync failed"
import json, sys, urllib.error, urllib.parse, urllib.request, uuid

try:
    import yaml
except ImportError:
    sys.exit("PyYAML is needed for the Admin API fallback: run `uv sync` (the script uses .venv/bin/python) "
             "or install decK >= 1.28")

path, admin = sys.argv[1], sys.argv[2]
conf = yaml.safe_load(open(path))
NS = uuid.UUID("6f1c3f0e-6c1b-4d52-9d0e-2f7a1c6a4b11")
changes = {"created": 0, "updated": 0, "unchanged": 0}


def call(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(admin + url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def subset_equal(want, have):
    if isinstance(want, dict):
        return isinstance(have, dict) and all(subset_equal(v, have.get(k)) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and sorted(map(json.dumps, want)) == sorted(map(json.dumps, have))
    return want == have


def put(url, body, label):
    status, current = call("GET", url)
    if status == 200 and subset_equal(body, current):
        changes["unchanged"] += 1
        return current
    status2, resp = call("PUT", url, body)
    if status2 not in (200, 201):
        sys.exit(f"PUT {url} ({label}) answered HTTP {status2}: {resp}")
    kind = "created" if status == 404 else "updated"
    changes[kind] += 1
    print(f"register_services: {kind}: {label}")
    return resp


def plugin_body(p, scope):
    body = {k: v for k, v in p.items() if k != "id"}
    body.update(scope)
    return p.get("id") or str(uuid.uuid5(NS, f"plugin:{json.dumps(scope, sort_keys=True)}:{p['name']}")), body


for svc in conf.get("services", []):
    routes = svc.get("routes", [])
    plugins = svc.get("plugins", [])
    body = {k: v for k, v in svc.items() if k not in ("routes", "plugins", "url")}
    if "url" in svc:
        u = urllib.parse.urlsplit(svc["url"])
        body.update(protocol=u.scheme, host=u.hostname,
                    port=u.port or (443 if u.scheme == "https" else 80), path=u.path or None)
    svc_id = put(f"/services/{svc['name']}", body, f"service {svc['name']}")["id"]
    for p in plugins:
        pid, pbody = plugin_body(p, {"service": {"id": svc_id}})
        put(f"/plugins/{pid}", pbody, f"plugin {p['name']} on service {svc['name']}")
    for r in routes:
        rbody = {k: v for k, v in r.items() if k != "plugins"}
        rbody["service"] = {"id": svc_id}
        route_id = put(f"/routes/{r['name']}", rbody, f"route {r['name']}")["id"]
        for p in r.get("plugins", []):
            pid, pbody = plugin_body(p, {"route": {"id": route_id}})
            put(f"/plugins/{pid}", pbody, f"plugin {p['name']} on route {r['name']}")

for c in conf.get("consumers", []):
    body = {k: v for k, v in c.items() if k not in ("jwt_secrets", "plugins")}
    put(f"/consumers/{c['username']}", body, f"consumer {c['username']}")
    for cred in c.get("jwt_secrets", []):
        put(f"/consumers/{c['username']}/jwt/{cred['key']}", cred, f"jwt credential {cred['key']}")

for p in conf.get("plugins", []):
    pid, pbody = plugin_body(p, {})
    put(f"/plugins/{pid}", pbody, f"global plugin {p['name']}")

print("register_services: summary: " + ", ".join(f"{k}={v}" for k, v in changes.items()))
PY
