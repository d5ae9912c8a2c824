/*
 * Exponential backoff with jitter, shared by broker reconnects and Data Service retries.
 *
 * The delay for attempt n (0-based) is drawn uniformly from [d/2, d] where d = min(cap, base * 2^n):
 * "equal jitter", so many workers that lost the same broker at the same moment do not come back in step,
 * while no delay collapses to zero.
 */
#ifndef MEDIAWORKER_BACKOFF_H
#define MEDIAWORKER_BACKOFF_H

#include <stdint.h>

/* Delay in milliseconds for attempt (0-based); random is any uniformly distributed 32-bit value. */
int64_t mw_backoff_delay_ms(int attempt, int64_t base_ms, int64_t cap_ms, uint32_t random);

/* A random 32-bit value for mw_backoff_delay_ms (thread-safe, not for cryptography). */
uint32_t mw_backoff_random(void);

#endif
