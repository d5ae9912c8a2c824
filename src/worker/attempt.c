#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <libavutil/error.h>
#include <libavutil/hmac.h>
#include <libavutil/mem.h>
#include <libavutil/sha.h>

#include "mediaworker/attempt.h"

static int sha256(const void *a, size_t a_size, const void *b, size_t b_size, uint8_t out[32])
{
    struct AVSHA *sha = av_sha_alloc();

    if (!sha)
        return AVERROR(ENOMEM);
    av_sha_init(sha, 256);
    av_sha_update(sha, a, a_size);
    if (b_size)
        av_sha_update(sha, b, b_size);
    av_sha_final(sha, out);
    av_free(sha);
    return 0;
}

void mw_attempt_key(const struct mw_config *cfg, uint8_t key[MW_ATTEMPT_KEY_SIZE])
{
    const char *secret = cfg->attempt_key[0] ? cfg->attempt_key : cfg->rabbitmq_url;
    char label[MW_CONFIG_NAME_MAX + 32];

    /* The queue in the label: workers of another queue on the same broker do not vouch for ours. */
    snprintf(label, sizeof(label), "mediaworker attempt key\n%s\n", cfg->queue);
    if (sha256(label, strlen(label), secret, strlen(secret), key) < 0)
        memset(key, 0, MW_ATTEMPT_KEY_SIZE);
}

int mw_attempt_sign(const uint8_t key[MW_ATTEMPT_KEY_SIZE], int attempts, const void *message_id, size_t id_size,
                    const void *body, size_t body_size, char sig[MW_ATTEMPT_SIG_SIZE])
{
    AVHMAC *hmac = av_hmac_alloc(AV_HMAC_SHA256);
    uint8_t body_hash[32], mac[32];
    char count[32];
    int ret;

    sig[0] = '\0';
    if (!hmac)
        return AVERROR(ENOMEM);
    if ((ret = sha256(body, body_size, NULL, 0, body_hash)) < 0) {
        av_hmac_free(hmac);
        return ret;
    }
    /* Length-delimited parts, so that no two different (count, id, body) make the same input. */
    snprintf(count, sizeof(count), "%d\n%zu\n", attempts, id_size);
    av_hmac_init(hmac, key, MW_ATTEMPT_KEY_SIZE);
    av_hmac_update(hmac, (const uint8_t *)count, (unsigned)strlen(count));
    av_hmac_update(hmac, message_id, (unsigned)id_size);
    av_hmac_update(hmac, body_hash, sizeof(body_hash));
    ret = av_hmac_final(hmac, mac, sizeof(mac));
    av_hmac_free(hmac);
    if (ret < 0)
        return ret;
    for (int i = 0; i < 32; i++)
        snprintf(sig + 2 * i, 3, "%02x", mac[i]);
    return 0;
}

int mw_attempt_verify(const uint8_t key[MW_ATTEMPT_KEY_SIZE], int attempts, const void *message_id,
                      size_t id_size, const void *body, size_t body_size, const char *sig, size_t sig_size)
{
    char expected[MW_ATTEMPT_SIG_SIZE];
    unsigned char differ = 0;

    if (sig_size != MW_ATTEMPT_SIG_SIZE - 1 ||
        mw_attempt_sign(key, attempts, message_id, id_size, body, body_size, expected) < 0)
        return 0;
    /* Constant time: the comparison must not tell a forger how many leading characters were right. */
    for (size_t i = 0; i < sig_size; i++)
        differ |= (unsigned char)(expected[i] ^ sig[i]);
    return !differ;
}
