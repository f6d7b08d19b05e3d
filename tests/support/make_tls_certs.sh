#!/bin/sh
# tests/support/make_tls_certs.sh DIR — a test CA and what it signed, for TLS to Redis in the tests and the bench:
# ca.pem, server.pem/server.key (CN localhost, SAN DNS:localhost and IP:127.0.0.1), client.pem/client.key, and
# other-ca.pem, a CA that signed nothing (the "wrong CA"). EC P-256 keys: quick to make. other-ca.pem comes last,
# so its presence says the set is complete (redis_fixture.cpp reuses a complete set).
set -e
mkdir -p "$1"
cd "$1"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key ca.key; key other-ca.key; key server.key; key client.key
openssl req -x509 -new -key ca.key -out ca.pem -days 3650 -subj "/CN=rateguard test CA"
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > server.ext
openssl req -new -key server.key -out server.csr -subj "/CN=localhost"
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 3650 \
  -extfile server.ext 2>/dev/null
openssl req -new -key client.key -out client.csr -subj "/CN=rateguard test client"
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 3650 2>/dev/null
openssl req -x509 -new -key other-ca.key -out other-ca.tmp -days 3650 -subj "/CN=another CA"
chmod 644 ./*.key  # the tests' daemons read the client key after dropping to nobody
mv other-ca.tmp other-ca.pem
