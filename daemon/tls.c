#include "daemon/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* path, with a leading $CREDENTIALS_DIRECTORY/ or ${CREDENTIALS_DIRECTORY}/
 * replaced by the variable's value, into buf. Returns NULL (err set) when
 * the path names the variable and it is not set. */
static const char *expand(const char *key, const char *path, char *buf, size_t size,
                          struct error *err)
{
    static const char *const forms[] = {"$CREDENTIALS_DIRECTORY/", "${CREDENTIALS_DIRECTORY}/"};
    for (size_t i = 0; i < 2; i++) {
        size_t n = strlen(forms[i]);
        if (strncmp(path, forms[i], n) != 0)
            continue;
        const char *dir = getenv("CREDENTIALS_DIRECTORY");
        if (!dir || !*dir) {
            error_set(err,
                      "%s %s: CREDENTIALS_DIRECTORY is not set (is the credential given with "
                      "LoadCredential= in the unit?)",
                      key, path);
            return NULL;
        }
        snprintf(buf, size, "%s/%s", dir, path + n);
        return buf;
    }
    return path;
}

/* OpenSSL says "system lib" for a file it cannot open: say why first. */
static bool readable(const char *key, const char *path, struct error *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        error_set(err, "%s %s: %s", key, path, strerror(errno));
        return false;
    }
    fclose(f);
    return true;
}

/* OpenSSL's reason for the last failure, its queue emptied. */
static const char *reason(char *buf, size_t size)
{
    unsigned long code = ERR_peek_last_error();
    if (code == 0)
        snprintf(buf, size, "unknown error");
    else
        ERR_error_string_n(code, buf, size);
    ERR_clear_error();
    return buf;
}

SSL_CTX *tls_context_new(const struct daemon_config *d, struct error *err)
{
    char cert[4096], key[4096], ca[4096], why[256];
    const char *cert_path = expand("tls_cert", d->tls_cert, cert, sizeof cert, err);
    const char *key_path = cert_path ? expand("tls_key", d->tls_key, key, sizeof key, err) : NULL;
    const char *ca_path = d->tls_client_ca && key_path
                              ? expand("tls_client_ca", d->tls_client_ca, ca, sizeof ca, err)
                              : NULL;
    if (!key_path || (d->tls_client_ca && !ca_path))
        return NULL;
    if (!readable("tls_cert", cert_path, err) || !readable("tls_key", key_path, err) ||
        (ca_path && !readable("tls_client_ca", ca_path, err)))
        return NULL;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        error_set(err, "TLS: cannot make a context: %s", reason(why, sizeof why));
        return NULL;
    }
    /* A client that closes without close_notify is not an error worth
     * a log line (OpenSSL 3 reports it as one unless told). */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    /* Clients reconnect often; resumption saves them the full handshake. */
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"tariffd", 7);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
        error_set(err, "tls_cert %s: %s", cert_path, reason(why, sizeof why));
    } else if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
            error_set(err, "tls_key %s does not match the certificate in tls_cert %s", key_path,
                      cert_path);
            ERR_clear_error();
        } else {
            error_set(err, "tls_key %s: %s", key_path, reason(why, sizeof why));
        }
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
        error_set(err, "tls_key %s does not match the certificate in tls_cert %s", key_path,
                  cert_path);
        ERR_clear_error();
    } else if (ca_path && SSL_CTX_load_verify_locations(ctx, ca_path, NULL) != 1) {
        error_set(err, "tls_client_ca %s: %s", ca_path, reason(why, sizeof why));
    } else {
        if (ca_path) {
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_path);
            if (names)
                SSL_CTX_set_client_CA_list(ctx, names);
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        }
        return ctx;
    }
    SSL_CTX_free(ctx);
    return NULL;
}

void tls_context_free(SSL_CTX *ctx)
{
    SSL_CTX_free(ctx);
}
