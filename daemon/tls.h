/*
 * tls: the TLS context of the listen_tls listeners (OpenSSL), built from
 * tls_cert, tls_key and tls_client_ca at start and again at every reload,
 * so a certificate rotates without a restart (docs/design.md section 3).
 *
 * TLS 1.2 and 1.3 only, OpenSSL's system defaults for ciphers. With
 * tls_client_ca a client must present a certificate signed by it.
 *
 * Under systemd the key may come from a credential: a path that starts
 * with $CREDENTIALS_DIRECTORY/ (or ${CREDENTIALS_DIRECTORY}/) is read
 * from the directory systemd names in that variable (LoadCredential=),
 * so the key need not be readable by the service's user otherwise.
 *
 * A context is reference-counted by OpenSSL: connections made with an
 * old one keep it until they close, tls_context_free only drops the
 * daemon's reference.
 */
#ifndef DAEMON_TLS_H
#define DAEMON_TLS_H

#include "tariff/config.h"
#include "tariff/errors.h"

typedef struct ssl_ctx_st SSL_CTX;

/* A context for d's certificate, key and client CA; NULL with err set
 * (naming the file and OpenSSL's reason) when one cannot be read or the
 * key does not match the certificate. d must have tls_cert and tls_key. */
SSL_CTX *tls_context_new(const struct daemon_config *d, struct error *err);

void tls_context_free(SSL_CTX *ctx);

#endif
