#!/bin/bash
# The health check compose.yaml runs (`kafka-broker-api-versions.sh --bootstrap-server HOST:PORT`): exits 0
# when the broker answers a Kafka ApiVersions request without error (api_versions.py, no JVM start).
set -euo pipefail
server="localhost:9092"
while (($#)); do
    case "$1" in
        --bootstrap-server) server="$2"; shift 2 ;;
        *) shift ;;
    esac
done
exec python3 /opt/kafka/bin/api_versions.py "$server"
