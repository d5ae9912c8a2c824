/*
 * Queue topology: names derived from the configuration, and the retry tiers.
 *
 *   <exchange> (direct)      -> <queue>                 routing key <queue>
 *   ""  (default exchange)   -> <queue>.retry.<n>       TTL = delay n, dead-letters back to <exchange>/<queue>
 *   <exchange>.dlx (direct)  -> <queue>.dead            routing key <queue>
 *   <events_exchange> (topic) job.started | job.progress | job.completed | job.failed
 *
 * Retry tier n (1-based) holds a message for the n-th configured delay; a message that failed n times goes
 * to tier n, and after the last tier to the dead-letter queue.
 */
#ifndef MEDIAWORKER_TOPOLOGY_H
#define MEDIAWORKER_TOPOLOGY_H

#include <stddef.h>

#include "mediaworker/config.h"

#define MW_TOPOLOGY_MAX_TIERS 8
/* Room for any derived name: a configured name plus ".retry.<n>", ".dead" or ".dlx". */
#define MW_TOPOLOGY_NAME_MAX (MW_CONFIG_NAME_MAX + 32)

/*
 * Parses MW_RETRY_DELAYS ("10,60,300", seconds, each 1..86400) into delays_s. Returns the number of tiers
 * (0 for an empty string: no retry, transient failures go straight to the dead-letter queue) or
 * MW_ERR_CONFIG with a message in err.
 */
int mw_topology_parse_delays(const char *text, int *delays_s, int max, char *err, size_t err_size);

/* Tier (1..tiers) for a message that has now failed `failures` times, or 0 when it belongs in the DLQ. */
int mw_topology_retry_tier(int failures, int tiers);

/* Writes "<queue>.retry.<tier>", "<queue>.dead" and "<exchange>.dlx". */
void mw_topology_retry_queue(const struct mw_config *cfg, int tier, char *out, size_t size);
void mw_topology_dead_queue(const struct mw_config *cfg, char *out, size_t size);
void mw_topology_dead_exchange(const struct mw_config *cfg, char *out, size_t size);

#endif
