#include <stdint.h>

#include <libavutil/random_seed.h>

#include "mediaworker/backoff.h"

int64_t mw_backoff_delay_ms(int attempt, int64_t base_ms, int64_t cap_ms, uint32_t random)
{
    int64_t delay = base_ms;
    int64_t half;

    if (attempt < 0)
        attempt = 0;
    for (int i = 0; i < attempt && delay < cap_ms; i++)
        delay *= 2;
    if (delay > cap_ms)
        delay = cap_ms;
    half = delay / 2;
    return half + (half > 0 ? (int64_t)(random % (uint64_t)(delay - half + 1)) : 0);
}

uint32_t mw_backoff_random(void)
{
    /* av_get_random_seed reads /dev/urandom once per call; backoffs are rare enough for that. */
    return av_get_random_seed();
}
