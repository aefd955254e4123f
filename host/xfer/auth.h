/*
 * Authentication of transfer connections (auth.c): the key every rank
 * derives from the shared secret, and the tags of the challenge-response
 * (libsodium's crypto_auth, HMAC-SHA-512-256, checked in constant time).
 *
 * Handshake (handshake.c), on every connection before anything else:
 *
 *   client                                server
 *   AUTH_HELLO purpose, keyed; nc  --->
 *                                  <---   AUTH_CHALLENGE ns, tag_s
 *   checks tag_s
 *   AUTH_PROOF tag_c               --->   checks tag_c
 *   first message (HELLO/CONNECT)  --->
 *
 * with nc, ns 32 random bytes drawn by each side for this connection only
 * and tag_x = HMAC(key, "kvbm-xfer-v2" || role x || purpose || nc || ns).
 * Both sides prove knowledge of the key over nonces the other chose, so a
 * recorded handshake cannot be replayed, and the roles differ, so one side's
 * tag is never the answer the other side expects.
 *
 * Without a secret the same handshake runs with an all-zero key and the
 * keyed flag clear; such a rank talks only over loopback (bootstrap.c and
 * handshake.c refuse any other address), as before authentication existed.
 */
#ifndef KVBM_XFER_AUTH_H
#define KVBM_XFER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kvbm/status.h"
#include "wire.h"

#define KVBM__AUTH_KEY_BYTES 32u
/* Secrets shorter than this are refused: a guessable secret is no secret. */
#define KVBM__AUTH_SECRET_MIN 16u
/* A secret file larger than this is not a secret file. */
#define KVBM__AUTH_SECRET_MAX 4096u

/* What a connection is for; part of the tags, so a handshake for one
 * purpose is no proof for the other. */
typedef enum kvbm__auth_purpose {
    KVBM__PURPOSE_RENDEZVOUS = 1,
    KVBM__PURPOSE_MESH = 2,
} kvbm__auth_purpose_t;

typedef struct kvbm__auth {
    bool keyed; /* a secret was given */
    unsigned char key[KVBM__AUTH_KEY_BYTES];
} kvbm__auth_t;

/*
 * The key of the secret in @p secret / @p secret_len, or of the file at
 * @p secret_file (at most one of the two; neither: unkeyed). The file must
 * be a regular file of KVBM__AUTH_SECRET_MIN..MAX bytes that neither the
 * group nor others can read or write; its bytes are the secret, exactly
 * (no newline is stripped). Returns KVBM_OK, KVBM_ERR_INVALID_ARG (both
 * given, too short, bad file), KVBM_ERR_IO, KVBM_ERR_INTERNAL (libsodium
 * failed to initialise). Sets *auth_out only on success.
 */
kvbm_status_t kvbm__auth_init(const void *secret, size_t secret_len, const char *secret_file,
                              kvbm__auth_t *auth_out);
/* Wipes the key. */
void kvbm__auth_wipe(kvbm__auth_t *auth);
/* Fills @p buf with @p len random bytes (nonces, session ids). */
void kvbm__auth_random(void *buf, size_t len);
/* The tag of role 'c' (client) or 's' (server) over the two nonces. */
void kvbm__auth_tag(const kvbm__auth_t *auth, char role, uint32_t purpose,
                    const uint8_t nonce_c[KVBM__NONCE_BYTES],
                    const uint8_t nonce_s[KVBM__NONCE_BYTES], uint8_t tag[KVBM__TAG_BYTES]);
/* Whether @p tag is the tag of that role, compared in constant time. */
bool kvbm__auth_check(const kvbm__auth_t *auth, char role, uint32_t purpose,
                      const uint8_t nonce_c[KVBM__NONCE_BYTES],
                      const uint8_t nonce_s[KVBM__NONCE_BYTES], const uint8_t tag[KVBM__TAG_BYTES]);

#endif /* KVBM_XFER_AUTH_H */
