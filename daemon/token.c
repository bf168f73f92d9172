/*
 * token: `tariffd token` (daemon/token.h).
 */
#include "daemon/token.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

/* Fills buf from getrandom(2). Flags 0: block until the pool is seeded,
 * which matters only right after boot and is exactly when a token must not
 * be guessable. Signals and short reads are retried. */
static bool random_bytes(uint8_t *buf, size_t len, struct error *err)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom(buf + got, len - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            error_set(err, "cannot read the kernel's random source (getrandom): %s",
                      strerror(errno));
            return false;
        }
        got += (size_t)n;
    }
    return true;
}

/* RFC 4648 section 5, without padding: 3 bytes make 4 characters. */
static void base64url(const uint8_t *in, size_t len, char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        size_t chars = len - i >= 3 ? 4 : len - i + 1;
        for (size_t c = 0; c < chars; c++)
            out[o++] = alphabet[(v >> (18 - 6 * c)) & 63];
    }
    out[o] = '\0';
}

bool token_new(char text[TOKEN_TEXT_LEN + 1], struct error *err)
{
    uint8_t raw[TOKEN_RANDOM_BYTES];
    if (!random_bytes(raw, sizeof raw, err))
        return false;
    base64url(raw, sizeof raw, text);
    OPENSSL_cleanse(raw, sizeof raw);
    return true;
}

bool token_sha256_hex(const char *text, size_t len, char hex[65], struct error *err)
{
    unsigned char digest[32];
    unsigned int n = 0;
    if (!EVP_Digest(text, len, digest, &n, EVP_sha256(), NULL) || n != sizeof digest) {
        error_set(err, "cannot compute SHA-256 (libcrypto EVP_Digest failed)");
        return false;
    }
    for (size_t i = 0; i < sizeof digest; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    return true;
}

int token_command(void)
{
    char text[TOKEN_TEXT_LEN + 1], hex[65];
    struct error err;
    if (!token_new(text, &err) || !token_sha256_hex(text, strlen(text), hex, &err)) {
        fprintf(stderr, "tariffd: %s\n", err.msg);
        return 1;
    }
    /* stdout holds only the two lines, so a script can take them apart;
     * the advice goes to stderr. */
    printf("%s\ntoken_sha256 = %s\n", text, hex);
    OPENSSL_cleanse(text, sizeof text);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "tariffd: cannot write the token to standard output: %s\n",
                strerror(errno));
        return 1;
    }
    fprintf(stderr, "The first line is the token: give it to the tenant's clients (it is shown "
                    "only now,\nand tariffd stores only its hash). Add the second line to the "
                    "tenant's [tenant ID]\nsection, beside any token_sha256 already there, "
                    "then reload (SIGHUP).\n");
    return 0;
}
