/*
 * Attempt counts producers cannot forge.
 *
 * A retried or dead-lettered copy carries x-mw-attempt (failed attempts so far), and the verdict sends a
 * message to the dead-letter queue once the count passes the last tier. A producer, or a user whose values
 * a producer forwards into headers, could set x-mw-attempt: 999 to make any transient failure skip every
 * retry. So the worker signs the count it writes (x-mw-attempt-sig: HMAC-SHA256 over the count, the message
 * id and the body's SHA-256, under a key the workers of one queue share) and believes only counts whose
 * signature holds; any other count is 0. The key is MW_ATTEMPT_KEY, or else derived from RABBITMQ_URL,
 * which the workers of a queue share and a user never sees.
 */
#ifndef MEDIAWORKER_ATTEMPT_H
#define MEDIAWORKER_ATTEMPT_H

#include <stddef.h>
#include <stdint.h>

#include "mediaworker/config.h"

#define MW_ATTEMPT_KEY_SIZE 32
/* Hex signature with its terminator. */
#define MW_ATTEMPT_SIG_SIZE 65

/* The signing key of cfg: from MW_ATTEMPT_KEY when set, else from RABBITMQ_URL and the queue name. */
void mw_attempt_key(const struct mw_config *cfg, uint8_t key[MW_ATTEMPT_KEY_SIZE]);

/* Writes the signature of attempts for the message (its id's bytes as sent, and its body) into sig. */
int mw_attempt_sign(const uint8_t key[MW_ATTEMPT_KEY_SIZE], int attempts, const void *message_id, size_t id_size,
                    const void *body, size_t body_size, char sig[MW_ATTEMPT_SIG_SIZE]);

/* 1 when sig (sig_size bytes, not terminated) is the signature of attempts for the message, else 0. */
int mw_attempt_verify(const uint8_t key[MW_ATTEMPT_KEY_SIZE], int attempts, const void *message_id,
                      size_t id_size, const void *body, size_t body_size, const char *sig, size_t sig_size);

#endif
