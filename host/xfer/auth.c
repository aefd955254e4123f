/* The key and the challenge-response tags of auth.h, on libsodium. */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "core/check.h"
#include "core/error.h"
#include "core/log.h"

/* Domain of every tag, and the BLAKE2b key that turns a secret into the
 * HMAC key (at least crypto_generichash_KEYBYTES_MIN bytes). */
static const char TAG_DOMAIN[] = "kvbm-xfer-v2";
static const char KEY_DOMAIN[] = "kvbm-xfer-key-v2";

/* Reads a secret file into @p buf (KVBM__AUTH_SECRET_MAX bytes). */
static kvbm_status_t read_secret_file(const char *path, unsigned char *buf, size_t *len_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        int err = errno;
        kvbm__log(KVBM_LOG_ERROR, "secret file %s: %s", path, strerror(err));
        return kvbm__fail(err == ENOENT || err == ELOOP ? KVBM_ERR_INVALID_ARG : KVBM_ERR_IO,
                          "secret file %s: %s", path, strerror(err));
    }
    kvbm_status_t status = KVBM_OK;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        status = KVBM_SYS_ERROR("fstat");
        goto close_fd;
    }
    if (!S_ISREG(st.st_mode) || (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        kvbm__log(KVBM_LOG_ERROR,
                  "secret file %s refused: not a regular file, or the group or others may "
                  "access it (chmod 600)",
                  path);
        status = kvbm__fail(KVBM_ERR_INVALID_ARG,
                            "secret file %s: not a regular file, or the group or others may "
                            "access it (chmod 600)",
                            path);
        goto close_fd;
    }
    if (st.st_size < (off_t)KVBM__AUTH_SECRET_MIN || st.st_size > (off_t)KVBM__AUTH_SECRET_MAX) {
        kvbm__log(KVBM_LOG_ERROR, "secret file %s refused: %lld bytes, not %u..%u", path,
                  (long long)st.st_size, KVBM__AUTH_SECRET_MIN, KVBM__AUTH_SECRET_MAX);
        status = kvbm__fail(KVBM_ERR_INVALID_ARG, "secret file %s: %lld bytes, not %u..%u", path,
                            (long long)st.st_size, KVBM__AUTH_SECRET_MIN, KVBM__AUTH_SECRET_MAX);
        goto close_fd;
    }
    size_t have = 0, want = (size_t)st.st_size;
    while (have < want) {
        ssize_t n = read(fd, buf + have, want - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            status = n < 0 ? KVBM_SYS_ERROR("read") : KVBM_ERR_IO;
            goto close_fd;
        }
        have += (size_t)n;
    }
    *len_out = have;
close_fd:
    close(fd);
    return status;
}

kvbm_status_t kvbm__auth_init(const void *secret, size_t secret_len, const char *secret_file,
                              kvbm__auth_t *auth_out)
{
    if (secret != NULL && secret_file != NULL)
        return kvbm__fail(KVBM_ERR_INVALID_ARG,
                          "xfer config: secret and secret_file are both set (one at most)");
    if (secret == NULL && secret_len != 0)
        return kvbm__fail(KVBM_ERR_INVALID_ARG, "xfer config: secret_len %zu without a secret",
                          secret_len);
    if (sodium_init() < 0) {
        kvbm__log(KVBM_LOG_ERROR, "libsodium failed to initialise");
        return KVBM_ERR_INTERNAL;
    }
    kvbm__auth_t auth = {.keyed = false};
    if (secret == NULL && secret_file == NULL) {
        *auth_out = auth; /* unkeyed: loopback only */
        return KVBM_OK;
    }
    unsigned char file_buf[KVBM__AUTH_SECRET_MAX];
    const unsigned char *bytes = secret;
    size_t len = secret_len;
    if (secret_file != NULL) {
        kvbm_status_t status = read_secret_file(secret_file, file_buf, &len);
        if (status != KVBM_OK) {
            sodium_memzero(file_buf, sizeof(file_buf));
            return status;
        }
        bytes = file_buf;
    }
    kvbm_status_t status = KVBM_OK;
    if (len < KVBM__AUTH_SECRET_MIN) {
        kvbm__log(KVBM_LOG_ERROR, "secret refused: %zu bytes, at least %u needed", len,
                  KVBM__AUTH_SECRET_MIN);
        status = kvbm__fail(KVBM_ERR_INVALID_ARG,
                            "xfer config: a secret of %zu bytes, at least %u "
                            "needed",
                            len, KVBM__AUTH_SECRET_MIN);
    } else {
        auth.keyed = true;
        crypto_generichash(auth.key, sizeof(auth.key), bytes, len,
                           (const unsigned char *)KEY_DOMAIN, sizeof(KEY_DOMAIN) - 1);
        *auth_out = auth;
    }
    sodium_memzero(file_buf, sizeof(file_buf));
    sodium_memzero(&auth, sizeof(auth));
    return status;
}

void kvbm__auth_wipe(kvbm__auth_t *auth)
{
    sodium_memzero(auth, sizeof(*auth));
}

void kvbm__auth_random(void *buf, size_t len)
{
    randombytes_buf(buf, len);
}

/* The bytes a tag covers. */
static size_t transcript(char role, uint32_t purpose, const uint8_t *nonce_c,
                         const uint8_t *nonce_s, unsigned char *out)
{
    size_t n = 0;
    memcpy(out + n, TAG_DOMAIN, sizeof(TAG_DOMAIN) - 1);
    n += sizeof(TAG_DOMAIN) - 1;
    out[n++] = (unsigned char)role;
    for (int i = 0; i < 4; i++)
        out[n++] = (unsigned char)(purpose >> (8 * i));
    memcpy(out + n, nonce_c, KVBM__NONCE_BYTES);
    n += KVBM__NONCE_BYTES;
    memcpy(out + n, nonce_s, KVBM__NONCE_BYTES);
    n += KVBM__NONCE_BYTES;
    return n;
}

/* Domain, role, purpose, both nonces. */
#define TRANSCRIPT_MAX (sizeof(TAG_DOMAIN) + 5 + (size_t)2 * KVBM__NONCE_BYTES)

void kvbm__auth_tag(const kvbm__auth_t *auth, char role, uint32_t purpose,
                    const uint8_t nonce_c[KVBM__NONCE_BYTES],
                    const uint8_t nonce_s[KVBM__NONCE_BYTES], uint8_t tag[KVBM__TAG_BYTES])
{
    _Static_assert(crypto_auth_BYTES == KVBM__TAG_BYTES, "tag size");
    _Static_assert(crypto_auth_KEYBYTES == KVBM__AUTH_KEY_BYTES, "key size");
    unsigned char msg[TRANSCRIPT_MAX];
    size_t n = transcript(role, purpose, nonce_c, nonce_s, msg);
    crypto_auth(tag, msg, n, auth->key);
}

bool kvbm__auth_check(const kvbm__auth_t *auth, char role, uint32_t purpose,
                      const uint8_t nonce_c[KVBM__NONCE_BYTES],
                      const uint8_t nonce_s[KVBM__NONCE_BYTES], const uint8_t tag[KVBM__TAG_BYTES])
{
    unsigned char msg[TRANSCRIPT_MAX];
    size_t n = transcript(role, purpose, nonce_c, nonce_s, msg);
    return crypto_auth_verify(tag, msg, n, auth->key) == 0;
}
