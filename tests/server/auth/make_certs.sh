#!/usr/bin/env bash
# Writes a test PKI into DIR with the openssl command line: ca.pem (the CA), server.pem/.key
# (localhost, 127.0.0.1), alice.pem/.key (CN alice), nobody.pem/.key (CN nobody), expired.pem/.key
# (CN alice, expired in 2020), and rogue.pem/.key (CN alice, from another CA, rogue-ca.pem).
#   make_certs.sh DIR
set -euo pipefail
dir=$1
cd "$dir"
quiet() { "$@" 2>/dev/null; }

ca() {  # ca NAME: a self-signed CA
  quiet openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" -out "$1.pem" -days 2 \
    -subj "/CN=$1"
}
leaf() {  # leaf NAME CN CA [EXTFILE]: a key and a certificate signed by CA
  quiet openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2"
  quiet openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial \
    -out "$1.pem" -days 2 ${4:+-extfile "$4"}
}

ca ca
ca rogue-ca
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext
leaf server localhost ca server.ext
leaf alice alice ca
leaf nobody nobody ca
leaf rogue alice rogue-ca

# An expired certificate needs explicit dates, which only `openssl ca` sets.
touch index.txt
echo 01 >serial
cat >ca.cnf <<CNF
[ ca ]
default_ca = test_ca
[ test_ca ]
database = $dir/index.txt
new_certs_dir = $dir
serial = $dir/serial
default_md = sha256
policy = any
[ any ]
commonName = supplied
CNF
quiet openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout expired.key -out expired.csr -subj "/CN=alice"
quiet openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr \
  -out expired.pem -startdate 20200101000000Z -enddate 20200102000000Z -notext
