#!/bin/bash
# KAFKA_FOO_BAR=v -> foo.bar=v in server.properties, as the official apache/kafka image does ("__" -> "_",
# "___" -> "-"); KAFKA_HEAP_OPTS and KAFKA_OPTS go to the JVM. Formats the storage with CLUSTER_ID once.
set -euo pipefail
PROPS=/opt/kafka/config/server.properties
CP="/opt/kafka/libs/*"
LOG4J="-Dlog4j2.configurationFile=/opt/kafka/bin/log4j2.properties"
: "${CLUSTER_ID:?CLUSTER_ID must be set}"

: >"$PROPS"
while IFS='=' read -r name value; do
    case "$name" in
        KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS) continue ;;
        KAFKA_*) ;;
        *) continue ;;
    esac
    key="${name#KAFKA_}"
    key="${key,,}"
    key="${key//___/-}"
    key="${key//__/@}"
    key="${key//_/.}"
    key="${key//@/_}"
    printf '%s=%s\n' "$key" "$value" >>"$PROPS"
done < <(env)

log_dirs="$(sed -n 's/^log\.dirs=//p' "$PROPS")"
if [[ -n "$log_dirs" && ! -f "${log_dirs%%,*}/meta.properties" ]]; then
    java -Xmx256m "$LOG4J" -cp "$CP" kafka.tools.StorageTool format --ignore-formatted -t "$CLUSTER_ID" -c "$PROPS"
fi
# shellcheck disable=SC2086  # the *_OPTS variables are lists of JVM flags
exec java ${KAFKA_HEAP_OPTS:-} ${KAFKA_OPTS:-} -server -XX:+UseG1GC -Djava.awt.headless=true "$LOG4J" \
    -cp "$CP" kafka.Kafka "$PROPS"
