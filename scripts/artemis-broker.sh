#!/usr/bin/env bash
# Runs the embedded Apache ActiveMQ Artemis broker of the worker's interop test (in the foreground).
#
#   scripts/artemis-broker.sh STATE_DIR
#
# Builds tests/interop/artemis with Maven when its jar is missing or older than its sources, makes a
# CA and a server certificate for localhost/127.0.0.1 (cached under target/artemis/tls), copies the
# CA to STATE_DIR/ca.pem, then execs the broker: AMQP 1.0 over TLS with SASL PLAIN on an ephemeral
# 127.0.0.1 port, announced in STATE_DIR/endpoint.json; queue stats in STATE_DIR/stats.json.
#
# Environment: ARTEMIS_QUEUE (default iot.messages), ARTEMIS_ACCESS_KEY_ID, ARTEMIS_ACCESS_KEY_SECRET
# (the one AccessKey whose signed IoT Platform logins the broker accepts), ARTEMIS_PUBLISHER_USER and
# ARTEMIS_PUBLISHER_PASSWORD (a plain account for putting test messages on the queue).
set -euo pipefail

state_dir=${1:?usage: $0 STATE_DIR}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
project=$root/tests/interop/artemis
build=$root/target/artemis/build
tls=$root/target/artemis/tls
jar=$build/artemis-interop-0.1.0.jar
mkdir -p "$state_dir" "$root/target/artemis"

for tool in java mvn openssl; do
  command -v "$tool" >/dev/null || { echo "artemis-broker: $tool is not installed (Java 17, Maven 3.8, OpenSSL)" >&2; exit 3; }
done

# One build and one certificate generation at a time, however many callers.
exec 9>"$root/target/artemis/.lock"
flock 9

if [[ ! -f $jar || -n $(find "$project/pom.xml" "$project/src" -newer "$jar" -type f | head -1) ]]; then
  echo "artemis-broker: building $project" >&2
  mvn -B -q -f "$project/pom.xml" package -DskipTests >&2
fi

keystore_password=iotsub-interop   # guards test-only key material under target/
if [[ ! -f $tls/server.p12 ]]; then
  echo "artemis-broker: making a CA and a server certificate in $tls" >&2
  rm -rf "$tls.tmp" && mkdir -p "$tls.tmp"
  (
    cd "$tls.tmp"
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout ca.key -out ca.pem \
      -subj "/CN=iotsub interop test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -sha256 -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" > server.ext
    openssl x509 -req -sha256 -days 825 -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
      -extfile server.ext -out server.pem 2>/dev/null
    openssl pkcs12 -export -name server -in server.pem -inkey server.key -certfile ca.pem \
      -out server.p12 -passout "pass:$keystore_password"
  )
  rm -rf "$tls" && mv "$tls.tmp" "$tls"
fi
cp "$tls/ca.pem" "$state_dir/ca.pem"
flock -u 9
exec 9>&-

exec java -Xmx256m -cp "$jar:$build/lib/*" dev.iotsub.interop.Broker \
  --state-dir "$state_dir" \
  --keystore "$tls/server.p12" --keystore-password "$keystore_password" \
  --queue "${ARTEMIS_QUEUE:-iot.messages}" \
  --access-key-id "${ARTEMIS_ACCESS_KEY_ID:?}" --access-key-secret "${ARTEMIS_ACCESS_KEY_SECRET:?}" \
  --publisher-user "${ARTEMIS_PUBLISHER_USER:-publisher}" --publisher-password "${ARTEMIS_PUBLISHER_PASSWORD:?}"
